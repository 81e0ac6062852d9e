"""The training loop: run folder, epochs and steps, early stopping, checkpoints, metrics.json, plots.

One step is: the gradients zeroed, this rank's shard of the global batch forward, the loss
all-reduced (with the preemption flag), a non-finite loss stops the run *before* the update,
backward (DDP averages the gradients; e-prop sets them itself), a non-finite gradient stops the
run before the update, the optimiser step. An iteration-based task (``evidence``: fresh trials
every step) counts the progress bar in steps and writes its per-step history to metrics.json.

A checkpoint is written after every epoch, and after the current step when SIGTERM/SIGINT
arrives (:mod:`snnkern.train.preemption`). It holds the position (epoch and step within the
epoch), so ``--resume`` continues mid-epoch: the epoch's permutation and noise offset are drawn
again from their (seed, epoch) generators and the steps already done are skipped, which gives
bitwise the weights of an uninterrupted run (same device, backend and number of processes).

Run folder rules (``--out``): a folder holding a run (checkpoint.pt or metrics.json) is refused
unless ``--resume`` (continue it; the options must equal the checkpoint's except those in
:data:`~snnkern.train.config.CHANGEABLE_ON_RESUME`) or ``--overwrite`` (its checkpoint and metrics
are deleted first). Two runs cannot use one folder at once (a lock file, ``.snnkern-run.lock``).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from types import ModuleType
from typing import IO, Any, TypedDict

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .._optional import require
from .checkpoints import read_checkpoint, restore_checkpoint, rng_states, save_checkpoint
from .config import CHANGEABLE_ON_RESUME, ResolvedTrainConfig, TrainConfig, check_resume_options, flag
from .distributed import Dist, session, world_size_from_env
from .errors import (
    CheckpointError,
    CheckpointNotFoundError,
    NonFiniteLossError,
    Preempted,
    ResumeError,
    RunFolderError,
    TrainError,
)
from .preemption import PreemptionGuard, run_test_hooks
from .tasks import Task, make_task

try:
    import fcntl
except ImportError:  # not on Windows: no folder lock there
    fcntl = None  # type: ignore[assignment]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
LOCK = ".snnkern-run.lock"


class LoopState(TypedDict):
    """The state of the loop, saved in every checkpoint (and restored by ``--resume``)."""

    epoch: int  # epochs done
    step: int  # steps done in epoch `epoch` (0 at an epoch boundary)
    # train_loss, val_loss, epoch_seconds (and the task's epoch_metrics): one entry per epoch;
    # step_loss (and step_NAME of the task's step_metrics): one per step
    history: dict[str, list[float]]
    partial_seconds: float  # training seconds of the steps done in epoch `epoch`
    best_state: dict[str, torch.Tensor] | None  # weights of the lowest validation loss so far
    best_val: float
    best_epoch: int | None
    stopped: bool  # early stopping ended the run


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None`` and numpy scalars as Python numbers (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as strict JSON (``allow_nan=False``: no NaN or Infinity tokens), atomically."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False)
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(path + ".tmp", path)


def _no_buffer_sync() -> dict[str, Any]:
    """DDP's option not to broadcast the buffers (Dale's signs never change) at every forward."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model; writes checkpoint.pt, metrics.json and the PNG plots into ``cfg.out``.

    Checks every option first (:meth:`TrainConfig.validate`). Under torchrun, trains with
    DistributedDataParallel (see :mod:`snnkern.train.distributed`). Raises
    :class:`~snnkern.train.errors.TrainError` subclasses for the problems the command line reports.
    """
    # the optional packages first: a missing one should fail before the training, not after it
    tqdm = require("tqdm.auto", "the training progress bar").tqdm
    plots: ModuleType | None = None
    if cfg.plots:
        from .. import plots
    resolved = cfg.resolved()
    resolved.validate(world_size_from_env())
    with session(resolved.device) as dist, PreemptionGuard() as guard:
        resolved = replace(resolved, device=dist.device(resolved.device))
        if not dist.is_main:
            resolved = replace(resolved, progress=False)
        return _Run(resolved, dist, guard, tqdm, plots).run()


class _Run:
    def __init__(
        self, cfg: ResolvedTrainConfig, dist: Dist, guard: PreemptionGuard, tqdm: Any, plots: ModuleType | None
    ) -> None:
        self.cfg, self.dist, self.guard, self.tqdm, self.plots = cfg, dist, guard, tqdm, plots
        self.ckpt_path = os.path.join(cfg.out, CHECKPOINT)
        self.metrics_path = os.path.join(cfg.out, METRICS)
        self.last_saved: tuple[int, int] | None = None  # (epoch, step) of the checkpoint on disk
        self._lock: IO[str] | None = None

    # ----------------------------------------------------------------------------- run folder

    def _take_folder(self) -> dict[str, Any] | None:
        """Rank 0: check the run folder (and lock it); the checkpoint to resume from, if any."""
        cfg = self.cfg
        if not os.path.isdir(cfg.out):
            if cfg.resume:
                raise CheckpointNotFoundError(f"--resume: no checkpoint at {self.ckpt_path} (no folder {cfg.out})")
            try:
                os.makedirs(cfg.out, exist_ok=True)
            except OSError as error:
                raise RunFolderError(f"--out {cfg.out}: cannot create the folder ({error})") from None
        self._lock_folder()
        if cfg.resume:
            ckpt = read_checkpoint(self.ckpt_path)
            if ckpt["config"]["model"] != cfg.model:
                raise CheckpointError(
                    f"checkpoint {self.ckpt_path} is for model {ckpt['config']['model']!r}, not {cfg.model!r}"
                )
            diffs = check_resume_options(ckpt["config"], cfg, self.ckpt_path)
            if diffs:
                names = {"progress": "--no-progress", "plots": "--no-plots"}
                changeable = ", ".join(
                    names.get(n, flag(n)) for n in CHANGEABLE_ON_RESUME if n not in ("out", "resume", "overwrite")
                )
                raise ResumeError(
                    f"--resume: these options differ from those of the checkpoint {self.ckpt_path}:\n  "
                    + "\n  ".join(diffs)
                    + f"\nOnly {changeable} may change on resume. Give the checkpoint's values, or start a "
                    "new run (another --out, or --overwrite)."
                )
            return ckpt
        present = [p for p in (self.ckpt_path, self.metrics_path) if os.path.exists(p)]
        if present and not cfg.overwrite:
            what = ", ".join(os.path.basename(p) for p in present)
            raise RunFolderError(
                f"--out {cfg.out} holds another run ({what}): continue it with --resume, start afresh with "
                "--overwrite (deletes its checkpoint and metrics), or choose another --out"
            )
        for p in (self.ckpt_path, self.ckpt_path + ".tmp", self.metrics_path):
            if os.path.exists(p):
                os.remove(p)
        return None

    def _lock_folder(self) -> None:
        if fcntl is None:
            return
        path = os.path.join(self.cfg.out, LOCK)
        f = open(path, "a+")  # noqa: SIM115 (held open for the whole run)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            owner = f.read().strip() or "?"
            f.close()
            raise RunFolderError(
                f"--out {self.cfg.out} is in use by another run (process {owner}): wait for it, or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock = f

    def _release_folder(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ---------------------------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            self._release_folder()

    def _run(self) -> dict[str, Any]:
        cfg, dist = self.cfg, self.dist
        ckpt = dist.run_on_main(self._take_folder)
        task = make_task(cfg, dist)
        self.task = task
        for warning in task.warnings:
            self._warn(warning)
        model, optimizer = task.model, task.optimizer
        state = LoopState(
            epoch=0,
            step=0,
            history=dict(train_loss=[], val_loss=[], epoch_seconds=[], step_loss=[]),
            partial_seconds=0.0,
            best_state=None,
            best_val=float("inf"),
            best_epoch=None,
            stopped=False,
        )
        if ckpt is not None:
            self._check_data(ckpt, task)
            restore_checkpoint(ckpt, self.ckpt_path, cfg.model, model, optimizer)
            state = LoopState(
                epoch=ckpt["epoch"],
                step=ckpt.get("step", 0),
                history=ckpt["history"],
                partial_seconds=float(ckpt.get("partial_seconds", 0.0)),
                best_state=ckpt.get("best_state"),
                best_val=float(ckpt.get("best_val", float("inf"))),
                best_epoch=ckpt.get("best_epoch"),
                stopped=bool(ckpt.get("stopped", False)),
            )
            for key in ("val_loss", "epoch_seconds", "step_loss"):
                state["history"].setdefault(key, [])
            if state["step"] > task.steps_per_epoch:
                raise CheckpointError(
                    f"checkpoint {self.ckpt_path} stopped at step {state['step']} of an epoch, but an epoch of "
                    f"these data has {task.steps_per_epoch} steps"
                )
            self.last_saved = (state["epoch"], state["step"])
            where = f"epoch {state['epoch']}" + (f", step {state['step']}" if state["step"] else "")
            cfg.log(f"resumed from {self.ckpt_path} after {where}")
            if state["epoch"] >= cfg.epochs and not state["stopped"]:
                cfg.log(f"the checkpoint has run {state['epoch']} epochs (--epochs {cfg.epochs}): evaluating it")
        net: torch.nn.Module = model
        if dist.enabled:
            net = DistributedDataParallel(
                model,
                device_ids=[dist.local_rank] if torch.device(cfg.device).type == "cuda" else None,
                find_unused_parameters=False,
                **_no_buffer_sync(),
            )
        self._train(state, net)
        # nothing left to checkpoint: a signal during the evaluation stops the run at once
        self.guard.stop_now = self._stopped_in_evaluation
        if self.dist.any(self.guard.requested):  # a signal during the setup of an evaluation-only run
            raise self._stopped_in_evaluation(self.guard.signum or signal.SIGTERM)
        return self._finish(state)

    def _stopped_in_evaluation(self, signum: int) -> Preempted:
        return Preempted.by(
            signum,
            f"stopped by {signal.Signals(signum).name} before the final evaluation: the checkpoint "
            f"{self.ckpt_path} holds the whole training; --resume evaluates it",
        )

    def _check_data(self, ckpt: dict[str, Any], task: Task) -> None:
        saved, now = ckpt.get("data"), task.data_fingerprint()
        if saved is not None and now is not None and saved != now:
            split = ", ".join(k for k in now if saved.get(k) != now[k])
            raise ResumeError(
                f"--resume: the SHD data ({split}) differ from the data the checkpoint {self.ckpt_path} was trained "
                "on (their contents' SHA-256 is in the checkpoint); give the same files, or start a new run"
            )

    def _warn(self, message: str) -> None:
        if self.dist.is_main:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------ training

    def _payload(self, state: LoopState) -> dict[str, Any]:
        return dict(
            model=self.task.model.state_dict(),
            optimizer=self.task.optimizer.state_dict(),
            rng=rng_states(),
            config=asdict(self.cfg),
            world_size=self.dist.world_size,
            data=self.task.data_fingerprint(),
            **state,
        )

    def _save(self, state: LoopState) -> None:
        if self.dist.is_main:
            try:
                save_checkpoint(self.ckpt_path, self._payload(state))
            except OSError as error:
                raise CheckpointError(f"cannot write the checkpoint {self.ckpt_path}: {error}") from None
        self.last_saved = (state["epoch"], state["step"])

    def _train(self, state: LoopState, net: torch.nn.Module) -> None:
        cfg, task, dist = self.cfg, self.task, self.dist
        hist, steps = state["history"], task.steps_per_epoch
        # an iteration-based task counts the bar in steps (iterations), the others in epochs
        per_step = task.iteration_based
        total = cfg.epochs * steps if per_step else cfg.epochs
        done = state["epoch"] * steps + state["step"] if per_step else state["epoch"]
        bar = self.tqdm(
            total=total,
            initial=min(done, total),
            desc=cfg.model,
            disable=not cfg.progress,
            unit="it" if per_step else "epoch",
        )
        try:
            if state["epoch"] < cfg.epochs and not state["stopped"] and dist.any(self.guard.requested):
                self._preempt(state, "before the first step")  # a signal during the setup
            while state["epoch"] < cfg.epochs and not state["stopped"]:
                epoch = state["epoch"]
                order = task.epoch_order(epoch)
                task.model.train()
                start = time.perf_counter()
                for step in range(state["step"], steps):
                    task.optimizer.zero_grad()
                    loss = task.step_loss(net, order, step)
                    run_test_hooks(epoch * steps + step, dist.rank, self.guard)
                    value, stop = dist.reduce_step(loss, self.guard.requested)
                    if not math.isfinite(value):
                        self._non_finite(state, f"non-finite training loss ({value})", epoch, step)
                    task.backward(loss)
                    self._check_gradients(state, epoch, step, value)
                    task.optimizer.step()
                    hist["step_loss"].append(value)
                    for name, v in task.step_metrics().items():
                        hist.setdefault(f"step_{name}", []).append(v)
                    state["step"] = step + 1
                    if per_step:
                        bar.set_postfix(loss=f"{value:.4f}")
                        bar.update(1)
                    if stop or (not dist.enabled and self.guard.requested):
                        state["partial_seconds"] += time.perf_counter() - start
                        self._preempt(state, f"after epoch {epoch + 1}, step {step + 1} of {steps}")
                seconds = state["partial_seconds"] + time.perf_counter() - start
                loss_mean = float(np.mean(hist["step_loss"][-steps:])) if steps else float("nan")
                hist["train_loss"].append(loss_mean)
                hist["epoch_seconds"].append(seconds)
                postfix = {"loss": f"{loss_mean:.4f}"}
                if task.has_validation:
                    val = task.validation_loss(epoch)
                    hist["val_loss"].append(val)
                    postfix["val"] = f"{val:.4f}"
                    for name, v in task.epoch_metrics().items():
                        hist.setdefault(name, []).append(v)
                        postfix[name.replace("recall_", "")] = f"{v:.3f}"
                    if task.keeps_best and val < state["best_val"]:
                        state["best_val"], state["best_epoch"] = val, epoch
                        state["best_state"] = copy.deepcopy(task.model.state_dict())
                    p = cfg.patience
                    # seed 001: stop when the oldest of the last `patience` validation losses is the lowest
                    if p and epoch > p and int(np.argmin(hist["val_loss"][-p:])) == 0:
                        state["stopped"] = True
                        best = "?" if state["best_epoch"] is None else state["best_epoch"] + 1  # None: all NaN
                        cfg.log(f"early stop after epoch {epoch + 1}; best validation loss at epoch {best}")
                bar.set_postfix(**postfix)
                if not per_step:
                    bar.update(1)
                state["epoch"], state["step"], state["partial_seconds"] = epoch + 1, 0, 0.0
                self._save(state)
                if dist.any(self.guard.requested):
                    self._preempt(state, f"after epoch {epoch + 1}", saved=True)
        finally:
            bar.close()

    def _check_gradients(self, state: LoopState, epoch: int, step: int, loss: float) -> None:
        grads = [(n, p.grad) for n, p in self.task.model.named_parameters() if p.grad is not None]
        if not grads or bool(torch.stack([torch.isfinite(g).all() for _, g in grads]).all()):
            return
        names = [n for n, g in grads if not bool(torch.isfinite(g).all())]
        self._non_finite(state, f"non-finite gradient of {', '.join(names)} (the loss was {loss:.6g})", epoch, step)

    def _write_metrics(self, metrics: dict[str, Any]) -> None:
        try:
            write_json(self.metrics_path, metrics)
        except OSError as error:
            raise TrainError(f"cannot write {self.metrics_path}: {error}") from None

    def _where_saved(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written yet"
        epoch, step = self.last_saved
        return f"the last good checkpoint, {self.ckpt_path}, is from after epoch {epoch}" + (
            f", step {step}" if step else ""
        )

    def _non_finite(self, state: LoopState, what: str, epoch: int, step: int) -> None:
        message = (
            f"{what} at epoch {epoch + 1}, step {step + 1} of {self.task.steps_per_epoch}: training stopped "
            f"before this step's update; {self._where_saved()}. Try a lower --lr (now {self.cfg.lr:g})."
        )
        if self.dist.is_main:
            self._write_metrics(
                dict(
                    status="failed",
                    error=message,
                    model=self.cfg.model,
                    epochs_run=state["epoch"],
                    history=state["history"],
                    config=asdict(self.cfg),
                ),
            )
        raise NonFiniteLossError(message)

    def _preempt(self, state: LoopState, where: str, saved: bool = False) -> None:
        if not saved:
            self._save(state)
        self.dist.barrier()  # every rank waits for rank 0's checkpoint before exiting
        name = self.guard.name if self.guard.requested else "a signal to another rank"
        raise Preempted.by(
            self.guard.signum or signal.SIGTERM,
            f"stopped by {name} {where}: checkpoint written to {self.ckpt_path}. "
            "Continue with the same command and --resume.",
        )

    # ------------------------------------------------------------------------------- results

    def _finish(self, state: LoopState) -> dict[str, Any]:
        cfg, task, hist = self.cfg, self.task, state["history"]
        if state["best_state"] is not None:
            task.model.load_state_dict(state["best_state"])
        results = task.evaluate()
        epoch_seconds = hist["epoch_seconds"]
        seconds_per_epoch = float(np.median(epoch_seconds)) if epoch_seconds else None
        metrics = {k: v for k, v in results.items() if not k.startswith("_")}
        metrics.update(
            status="finished",
            model=cfg.model,
            seed=cfg.seed,
            epochs_run=state["epoch"],
            best_epoch=state["best_epoch"],
            seconds_per_epoch=seconds_per_epoch,
            final_train_loss=hist["train_loss"][-1] if hist["train_loss"] else None,
            device=cfg.device,
            backend=cfg.backend or os.environ.get("SNNKERN_BACKEND", "compiled"),
            world_size=self.dist.world_size,
            global_batch_size=cfg.batch_size,
            steps_per_epoch=task.steps_per_epoch,
            samples_per_second=(
                task.steps_per_epoch * cfg.batch_size / seconds_per_epoch if seconds_per_epoch else None
            ),
            data_warnings=task.warnings,
            # per step: in the checkpoint; an iteration-based task has no epochs over a fixed set,
            # so its per-step (per-iteration) history goes here too
            history={k: v for k, v in hist.items() if task.iteration_based or not k.startswith("step_")},
            config=asdict(cfg),
        )
        if task.iteration_based:
            metrics.update(
                iterations_run=state["epoch"] * task.steps_per_epoch,
                seconds_per_iteration=seconds_per_epoch / task.steps_per_epoch if seconds_per_epoch else None,
            )
        if cfg.compare_naive:
            naive_s = task.naive_epoch_seconds()
            metrics["naive_seconds_per_epoch"] = naive_s
            metrics["speedup_vs_naive"] = naive_s / metrics["seconds_per_epoch"] if epoch_seconds else None
        metrics = json_safe(metrics)
        if self.dist.is_main:
            self._write_metrics(metrics)
            if self.plots is not None and cfg.model == "evidence":
                self.plots.evidence_figures(cfg.out, hist, results, task.steps_per_epoch)
            elif self.plots is not None:
                self.plots.training_figures(cfg.out, cfg.model, hist, results, task.model.weight_matrices())
        cfg.log(_summary_line(cfg, metrics))
        return metrics


def _summary_line(cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    def num(key: str, fmt: str) -> str:
        value = metrics.get(key)
        return format(value, fmt) if isinstance(value, (int, float)) else "n/a"

    if "recall_error" in metrics:  # evidence
        line = (
            f"{cfg.model} ({metrics.get('rule')}): recall error {num('recall_error', '.3f')} on "
            f"{metrics.get('validation_trials')} validation trials after {metrics.get('iterations_run')} iterations"
        )
        if metrics.get("seconds_per_iteration") is not None:
            line += f", {metrics['seconds_per_iteration']:.3f} s/iteration"
        return line
    line = f"{cfg.model}: test accuracy {num('test_accuracy', '.1f')} %"
    if "test_abs_error_deg" in metrics:
        line += f", test abs error {num('test_abs_error_deg', '.1f')} deg"
    line += f", train accuracy {num('train_accuracy', '.1f')} %"
    if metrics["seconds_per_epoch"] is not None:
        line += f", {metrics['seconds_per_epoch']:.3f} s/epoch"
    if cfg.compare_naive:
        line += (
            f", naive loop {num('naive_seconds_per_epoch', '.3f')} s/epoch (speedup x{num('speedup_vs_naive', '.1f')})"
        )
    return line
