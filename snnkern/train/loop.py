"""The training loop: epochs, early stopping, checkpoints, metrics.json and the plots."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict
from typing import Any, TypedDict

import numpy as np
import torch

from .._optional import require
from .checkpoints import load_checkpoint, rng_states, save_checkpoint
from .config import TrainConfig
from .tasks import make_task


class LoopState(TypedDict):
    """The state of the loop, saved in every checkpoint (and restored by ``--resume``)."""

    epoch: int  # epochs done
    history: dict[str, list[float]]  # train_loss, val_loss, epoch_seconds: one entry per epoch
    best_state: dict[str, torch.Tensor] | None  # weights of the lowest validation loss so far
    best_val: float
    best_epoch: int | None
    stopped: bool  # early stopping ended the run


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model; writes checkpoint.pt, metrics.json and the PNG plots into ``cfg.out``."""
    # the optional packages first: a missing one should fail before the training, not after it
    tqdm = require("tqdm.auto", "the training progress bar").tqdm
    if cfg.plots:
        from .. import plots
    cfg = cfg.resolved()
    os.makedirs(cfg.out, exist_ok=True)
    ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
    task = make_task(cfg)
    model, optimizer = task.model, task.optimizer
    state = LoopState(
        epoch=0,
        history=dict(train_loss=[], val_loss=[], epoch_seconds=[]),
        best_state=None,
        best_val=float("inf"),
        best_epoch=None,
        stopped=False,
    )
    if cfg.resume:
        ckpt = load_checkpoint(ckpt_path, cfg.model, model, optimizer, cfg.device)
        state = LoopState(
            epoch=ckpt["epoch"],
            history=ckpt["history"],
            best_state=ckpt["best_state"],
            best_val=ckpt["best_val"],
            best_epoch=ckpt["best_epoch"],
            stopped=ckpt["stopped"],
        )
        cfg.log(f"resumed from {ckpt_path} after epoch {state['epoch']}")
    hist = state["history"]
    bar = tqdm(
        range(state["epoch"], cfg.epochs),
        initial=state["epoch"],
        total=cfg.epochs,
        desc=cfg.model,
        disable=not cfg.progress,
    )
    for epoch in bar:
        if state["stopped"]:
            break
        loss, seconds = task.train_epoch(epoch)
        hist["train_loss"].append(loss)
        hist["epoch_seconds"].append(seconds)
        if task.has_validation:
            val = task.validation_loss(epoch)
            hist["val_loss"].append(val)
            if val < state["best_val"]:
                state["best_val"], state["best_epoch"] = val, epoch
                state["best_state"] = copy.deepcopy(model.state_dict())
            p = cfg.patience
            # seed 001: stop when the oldest of the last `patience` validation losses is the lowest
            if p and epoch > p and int(np.argmin(hist["val_loss"][-p:])) == 0:
                state["stopped"] = True
                best = "?" if state["best_epoch"] is None else state["best_epoch"] + 1  # None: all losses NaN
                cfg.log(f"early stop after epoch {epoch + 1}; best validation loss at epoch {best}")
        bar.set_postfix(loss=f"{loss:.4f}", **({"val": f"{hist['val_loss'][-1]:.4f}"} if task.has_validation else {}))
        state["epoch"] = epoch + 1
        save_checkpoint(
            ckpt_path,
            dict(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                rng=rng_states(),
                config=asdict(cfg),
                **state,
            ),
        )
    bar.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    results = task.evaluate()
    epoch_seconds = hist["epoch_seconds"]
    metrics = {k: v for k, v in results.items() if not k.startswith("_")}
    metrics.update(
        model=cfg.model,
        seed=cfg.seed,
        epochs_run=state["epoch"],
        best_epoch=state["best_epoch"],
        seconds_per_epoch=float(np.median(epoch_seconds)) if epoch_seconds else None,
        final_train_loss=hist["train_loss"][-1] if hist["train_loss"] else None,
        device=cfg.device,
        backend=cfg.backend or os.environ.get("SNNKERN_BACKEND", "compiled"),
        config=asdict(cfg),
    )
    if cfg.compare_naive:
        naive_s = task.naive_epoch_seconds()
        metrics["naive_seconds_per_epoch"] = naive_s
        metrics["speedup_vs_naive"] = naive_s / metrics["seconds_per_epoch"] if epoch_seconds else None
    with open(os.path.join(cfg.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    if cfg.plots:
        plots.training_figures(cfg.out, cfg.model, hist, results, task.model.weight_matrices())
    cfg.log(_summary_line(cfg, metrics))
    return metrics


def _summary_line(cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    line = f"{cfg.model}: test accuracy {metrics['test_accuracy']:.1f} %"
    if "test_abs_error_deg" in metrics:
        line += f", test abs error {metrics['test_abs_error_deg']:.1f} deg"
    line += f", train accuracy {metrics['train_accuracy']:.1f} %"
    if metrics["seconds_per_epoch"] is not None:
        line += f", {metrics['seconds_per_epoch']:.3f} s/epoch"
    if cfg.compare_naive:
        line += (
            f", naive loop {metrics['naive_seconds_per_epoch']:.3f} s/epoch"
            f" (speedup x{metrics['speedup_vs_naive']:.1f})"
        )
    return line
