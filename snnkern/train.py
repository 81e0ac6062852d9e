"""Training of the seed models: ``python -m snnkern train MODEL`` (see :mod:`snnkern.__main__`).

Models and their defaults (the seeds' hyperparameters):

* ``ipd``          seed 000: 100 hidden LIF, tau 20 ms, Adam lr 0.01, batch 64, 64 training and
                   32 test batches, 10 epochs, log-softmax + NLL on the time-mean of the readout.
* ``ipd-membrane`` seed 000's membrane-only baseline (same settings, no hidden layer).
* ``ipd-dales``    seed 001: 30 hidden, tau 5 ms, Dale's law (ie_ratio 0.5), lr 0.005, phase-noise
                   offsets re-drawn every epoch, a validation set as large as the training set,
                   early stopping on the validation loss (patience 10) keeping the best weights,
                   at most 150 epochs.
* ``shd``          seed 004: 128 recurrent hidden two-state LIF, tau_mem 10 ms, tau_syn 5 ms, Adam
                   lr 2e-4, batch 256, nb_steps 100, max_time 1.0 s, cross-entropy on the max over
                   time of the readout, 200 epochs.

Reproducibility: the data come from a ``torch.Generator`` seeded with ``--seed``; each epoch's
shuffling and noise offset come from a generator seeded with (seed, epoch), so an interrupted
run continued with ``--resume`` from its per-epoch checkpoint gives the same weights as an
uninterrupted one. The checkpoint also stores the global RNG states.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import seed_loops
from .data.ipd import IPDConfig, IPDDataset, continuise
from .data.shd import SHD_CLASSES, SHD_UNITS, dense_batch, generate_shd_folder, load_shd, shd_batches
from .models import IPDMembraneOnly, IPDSNN, SHDRecurrentSNN, dales_ipd_snn

MODELS = ("ipd", "ipd-membrane", "ipd-dales", "shd")

DEFAULTS: Dict[str, dict] = {
    "ipd": dict(epochs=10, lr=0.01, batch_size=64, hidden=100, tau=20.0, train_batches=64, test_batches=32),
    "ipd-membrane": dict(epochs=10, lr=0.01, batch_size=64, hidden=0, tau=20.0, train_batches=64, test_batches=32),
    "ipd-dales": dict(epochs=150, lr=0.005, batch_size=64, hidden=30, tau=5.0, train_batches=64, test_batches=32,
                      ie_ratio=0.5, patience=10),
    "shd": dict(epochs=200, lr=2e-4, batch_size=256, hidden=128, tau=10.0, tau_syn=5.0),
}


@dataclass
class TrainConfig:
    """Options of one training run; ``None`` means the model's default from :data:`DEFAULTS`."""

    model: str = "ipd"
    epochs: Optional[int] = None
    seed: int = 0
    device: str = "cpu"
    hidden: Optional[int] = None
    tau: Optional[float] = None             # ms (membrane time constant)
    tau_syn: Optional[float] = None         # ms (shd only)
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    out: Optional[str] = None
    resume: bool = False
    # IPD
    train_batches: Optional[int] = None
    test_batches: Optional[int] = None
    envelope_power: float = 2.0
    anf_per_ear: int = 100
    ie_ratio: Optional[float] = None
    patience: Optional[int] = None          # early stopping (ipd-dales); 0 disables
    noise_offsets: Optional[bool] = None    # default: on for ipd-dales only
    # SHD
    data: Optional[str] = None
    nb_steps: int = 100
    max_time: float = 1.0
    shd_train_samples: int = 2560
    shd_test_samples: int = 768
    # run
    compare_naive: bool = False
    plots: bool = True
    progress: bool = True
    backend: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        d = DEFAULTS[self.model]
        values = {k: (getattr(self, k) if getattr(self, k) is not None else d.get(k))
                  for k in ("epochs", "hidden", "tau", "tau_syn", "batch_size", "lr", "train_batches",
                            "test_batches", "ie_ratio", "patience")}
        values["noise_offsets"] = self.noise_offsets if self.noise_offsets is not None else self.model == "ipd-dales"
        values["out"] = self.out or os.path.join("runs", self.model)
        return replace(self, **values)


def _log(cfg, msg):
    if cfg.progress:
        print(msg, flush=True)


def _epoch_generator(seed: int, epoch: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + 1)


def _training_pass(outputs, loss_fn, optimizer):
    """One optimiser step per (output, labels) pair; returns (mean loss, seconds)."""
    losses, start = [], time.perf_counter()
    for out, y in outputs:
        loss = loss_fn(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses)), time.perf_counter() - start


def _confusion(pred: np.ndarray, true: np.ndarray, n: int) -> np.ndarray:
    """Counts ``[estimated, true]`` (seed 000's orientation)."""
    c = np.zeros((n, n))
    np.add.at(c, (pred, true), 1)
    return c


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------

class IPDTask:
    """IPD data, model and loss for ``ipd``, ``ipd-membrane`` and ``ipd-dales``."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.ipd_config = IPDConfig(anf_per_ear=cfg.anf_per_ear, envelope_power=cfg.envelope_power,
                                    phase_offset=bool(cfg.noise_offsets))
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        bs = cfg.batch_size
        self.train_set = IPDDataset(bs * cfg.train_batches, self.ipd_config, gen, self.device)
        self.has_validation = cfg.model == "ipd-dales"
        self.val_set = IPDDataset(bs * cfg.train_batches, self.ipd_config, gen, self.device) \
            if self.has_validation else None
        self.test_set = IPDDataset(bs * cfg.test_batches, self.ipd_config, gen, self.device)
        torch.manual_seed(cfg.seed)
        n_in, n_cls, tau = self.ipd_config.input_size, self.ipd_config.num_classes, cfg.tau * 1e-3
        if cfg.model == "ipd-membrane":
            self.model = IPDMembraneOnly(n_in, n_cls, tau=tau, backend=cfg.backend)
        elif cfg.model == "ipd":
            self.model = IPDSNN(n_in, cfg.hidden, n_cls, tau=tau, backend=cfg.backend)
        else:
            self.model = dales_ipd_snn(n_in, cfg.hidden, n_cls, tau=tau, ie_ratio=cfg.ie_ratio, backend=cfg.backend)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    @staticmethod
    def loss(output, labels):
        return F.nll_loss(torch.log_softmax(output.mean(dim=1), dim=1), labels)

    def _batches(self, dataset, gen):
        return dataset.batches(self.cfg.batch_size, generator=gen, shuffle=True)

    def train_epoch(self, epoch: int, bar=None):
        gen = _epoch_generator(self.cfg.seed, epoch, self.device)
        self.train_set.redraw_offset(gen)
        self.model.train()
        return _training_pass(((self.model(x), y) for x, y, _ in self._batches(self.train_set, gen)),
                              self.loss, self.optimizer)

    @torch.no_grad()
    def validation_loss(self, epoch: int) -> float:
        gen = _epoch_generator(self.cfg.seed + 7919, epoch, self.device)
        self.val_set.redraw_offset(gen)
        return float(np.mean([self.loss(self.model(x), y).item() for x, y, _ in self._batches(self.val_set, gen)]))

    @torch.no_grad()
    def _analyse(self, dataset) -> dict:
        self.model.eval()
        n_cls = self.ipd_config.num_classes
        preds, labels, ipds = [], [], []
        for x, y, ipd in dataset.batches(self.cfg.batch_size, shuffle=False):
            preds.append(self.model(x).mean(dim=1).argmax(dim=1).cpu())
            labels.append(y.cpu())
            ipds.append(ipd.cpu())
        pred, true, ipd = torch.cat(preds), torch.cat(labels), torch.cat(ipds)
        est = continuise(pred, n_cls)
        return dict(accuracy=100.0 * float((pred == true).float().mean()),
                    abs_error_deg=float((ipd - est).abs().mean() * 180 / math.pi),
                    confusion=_confusion(pred.numpy(), true.numpy(), n_cls),
                    ipd_true=ipd.numpy(), ipd_est=est.numpy())

    def evaluate(self) -> dict:
        # the test set gets its own fixed noise offset (seed 001 mode), drawn independently of training
        self.test_set.redraw_offset(torch.Generator(device=self.device).manual_seed(self.cfg.seed + 104729))
        train, test = self._analyse(self.train_set), self._analyse(self.test_set)
        x = next(self.test_set.batches(self.cfg.batch_size, shuffle=False))[0][:1]
        with torch.no_grad():
            raster = self.model(x, return_hidden=True)[1][0] if hasattr(self.model, "hidden") else x[0]
        return dict(train_accuracy=train["accuracy"], train_abs_error_deg=train["abs_error_deg"],
                    test_accuracy=test["accuracy"], test_abs_error_deg=test["abs_error_deg"],
                    _confusion=test["confusion"], _ipd_true=test["ipd_true"], _ipd_est=test["ipd_est"],
                    _raster=raster.cpu().numpy(), _raster_label="hidden neuron" if hasattr(self.model, "hidden")
                    else "input neuron")

    def naive_epoch_seconds(self) -> float:
        """One training epoch with the seed's naive loop (snnkern.seed_loops) on the same data and weights."""
        m = self.model
        alpha = math.exp(-self.ipd_config.dt / (self.cfg.tau * 1e-3))
        if self.cfg.model == "ipd-membrane":
            W = m.readout.linear.weight.detach().T.clone().requires_grad_(True)
            params, run = [W], (lambda x: seed_loops.seed000_membrane_only(x, W, alpha))
        else:
            W1 = m.hidden.linear.weight.detach().T.clone().requires_grad_(True)
            W2 = m.readout.linear.weight.detach().T.clone().requires_grad_(True)
            params = [W1, W2]
            if self.cfg.model == "ipd":
                def run(x):
                    return seed_loops.seed000_snn(x, W1, W2, alpha)
            else:
                signs = (seed_loops.dales_signs(W1.shape[0], self.cfg.ie_ratio, device=self.device),
                         seed_loops.dales_signs(W2.shape[0], self.cfg.ie_ratio, device=self.device))

                def run(x):
                    return seed_loops.seed001_snn(x, W1, W2, signs, alpha)
        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        gen = _epoch_generator(self.cfg.seed, 0, self.device)
        start = time.perf_counter()
        for x, y, _ in self._batches(self.train_set, gen):
            loss = self.loss(run(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


class SHDTask:
    """SHD (or synthetic SHD-format) data with seed 004's recurrent model."""

    has_validation = False

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        if cfg.data is None:
            folder = os.path.join(cfg.out, "shd_data")
            _log(cfg, f"no --data given: generating synthetic SHD-format files in {folder}")
            train_path, test_path = generate_shd_folder(folder, cfg.shd_train_samples, cfg.shd_test_samples,
                                                        seed=cfg.seed)
        else:
            train_path = os.path.join(cfg.data, "shd_train.h5")
            test_path = os.path.join(cfg.data, "shd_test.h5")
        self.train_set, self.test_set = load_shd(train_path), load_shd(test_path)
        self.num_classes = max(SHD_CLASSES, self.train_set.num_classes)
        torch.manual_seed(cfg.seed)
        self.model = SHDRecurrentSNN(SHD_UNITS, cfg.hidden, self.num_classes, tau_mem=cfg.tau * 1e-3,
                                     tau_syn=cfg.tau_syn * 1e-3, backend=cfg.backend).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))

    @staticmethod
    def loss(output, labels):
        return F.cross_entropy(output.max(dim=1).values, labels)

    def _batches(self, data, gen, shuffle=True):
        c = self.cfg
        return shd_batches(data, c.batch_size, c.nb_steps, SHD_UNITS, c.max_time, shuffle=shuffle, generator=gen,
                           device=self.device)

    def train_epoch(self, epoch: int, bar=None):
        gen = _epoch_generator(self.cfg.seed, epoch, "cpu")
        self.model.train()
        return _training_pass(((self.model(x)[0], y) for x, y in self._batches(self.train_set, gen)),
                              self.loss, self.optimizer)

    @torch.no_grad()
    def _analyse(self, data):
        self.model.eval()
        c, preds = self.cfg, []
        for k in range(0, len(data), c.batch_size):
            x = dense_batch(data.times[k:k + c.batch_size], data.units[k:k + c.batch_size], c.nb_steps, SHD_UNITS,
                            c.max_time, self.device)
            preds.append(self.model(x)[0].max(dim=1).values.argmax(dim=1).cpu())
        pred = torch.cat(preds).numpy()
        return 100.0 * float(np.mean(pred == data.labels)), _confusion(pred, data.labels, self.num_classes)

    def evaluate(self) -> dict:
        train_acc, _ = self._analyse(self.train_set)
        test_acc, confusion = self._analyse(self.test_set)
        c = self.cfg
        x = dense_batch(self.test_set.times[:1], self.test_set.units[:1], c.nb_steps, SHD_UNITS, c.max_time,
                        self.device)
        with torch.no_grad():
            raster = self.model(x)[1][0]
        return dict(train_accuracy=train_acc, test_accuracy=test_acc, _confusion=confusion,
                    _raster=raster.cpu().numpy(), _raster_label="hidden neuron")

    def naive_epoch_seconds(self) -> float:
        m = self.model
        w1 = m.hidden.linear.weight.detach().T.clone().requires_grad_(True)
        v1 = m.hidden.recurrent_weight.detach().T.clone().requires_grad_(True)
        w2 = m.readout.linear.weight.detach().T.clone().requires_grad_(True)
        alpha, beta = math.exp(-1.0 / self.cfg.tau_syn), math.exp(-1.0 / self.cfg.tau)
        opt = torch.optim.Adam([w1, w2, v1], lr=self.cfg.lr, betas=(0.9, 0.999))
        start = time.perf_counter()
        for x, y in self._batches(self.train_set, _epoch_generator(self.cfg.seed, 0, "cpu")):
            out, _ = seed_loops.seed004_snn(x, w1, w2, v1, alpha, beta)
            loss = self.loss(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def make_task(cfg: TrainConfig):
    return SHDTask(cfg) if cfg.model == "shd" else IPDTask(cfg)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def _rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------------------------

def train(cfg: TrainConfig) -> dict:
    """Train one model; writes checkpoint.pt, metrics.json and the PNG plots into ``cfg.out``."""
    from tqdm.auto import tqdm

    cfg = cfg.resolved()
    os.makedirs(cfg.out, exist_ok=True)
    ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
    task = make_task(cfg)
    model, optimizer = task.model, task.optimizer
    state = dict(epoch=0, history=dict(train_loss=[], val_loss=[], epoch_seconds=[]), best_state=None,
                 best_val=float("inf"), best_epoch=None, stopped=False)
    if cfg.resume:
        if not os.path.exists(ckpt_path):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, map_location=cfg.device, weights_only=False)
        if ckpt["config"]["model"] != cfg.model:
            raise ValueError(f"checkpoint {ckpt_path} is for model {ckpt['config']['model']!r}, not {cfg.model!r}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_states(ckpt["rng"])
        state.update({k: ckpt[k] for k in state})
        _log(cfg, f"resumed from {ckpt_path} after epoch {state['epoch']}")
    hist = state["history"]
    bar = tqdm(range(state["epoch"], cfg.epochs), initial=state["epoch"], total=cfg.epochs, desc=cfg.model,
               disable=not cfg.progress)
    for epoch in bar:
        if state["stopped"]:
            break
        loss, seconds = task.train_epoch(epoch, bar)
        hist["train_loss"].append(loss)
        hist["epoch_seconds"].append(seconds)
        if task.has_validation:
            val = task.validation_loss(epoch)
            hist["val_loss"].append(val)
            if val < state["best_val"]:
                state.update(best_val=val, best_epoch=epoch, best_state=copy.deepcopy(model.state_dict()))
            p = cfg.patience
            # seed 001: stop when the oldest of the last `patience` validation losses is the lowest
            if p and epoch > p and int(np.argmin(hist["val_loss"][-p:])) == 0:
                state["stopped"] = True
                _log(cfg, f"early stop after epoch {epoch + 1}; best validation loss at epoch {state['best_epoch'] + 1}")
        bar.set_postfix(loss=f"{loss:.4f}", **({"val": f"{hist['val_loss'][-1]:.4f}"} if task.has_validation else {}))
        state["epoch"] = epoch + 1
        save_checkpoint(ckpt_path, dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                                        rng=_rng_states(), config=asdict(cfg), **state))
    bar.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    results = task.evaluate()
    seconds = hist["epoch_seconds"]
    metrics = {k: v for k, v in results.items() if not k.startswith("_")}
    metrics.update(model=cfg.model, seed=cfg.seed, epochs_run=state["epoch"], best_epoch=state["best_epoch"],
                   seconds_per_epoch=float(np.median(seconds)) if seconds else None,
                   final_train_loss=hist["train_loss"][-1] if hist["train_loss"] else None,
                   device=cfg.device, backend=cfg.backend or os.environ.get("SNNKERN_BACKEND", "compiled"),
                   config={k: v for k, v in asdict(cfg).items() if k not in ("extra",)})
    if cfg.compare_naive:
        naive_s = task.naive_epoch_seconds()
        metrics["naive_seconds_per_epoch"] = naive_s
        metrics["speedup_vs_naive"] = naive_s / metrics["seconds_per_epoch"] if seconds else None
    with open(os.path.join(cfg.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    if cfg.plots:
        from . import plots
        plots.training_figures(cfg.out, cfg.model, hist, results, task.model.weight_matrices())
    line = f"{cfg.model}: test accuracy {metrics['test_accuracy']:.1f} %"
    if "test_abs_error_deg" in metrics:
        line += f", test abs error {metrics['test_abs_error_deg']:.1f} deg"
    line += f", train accuracy {metrics['train_accuracy']:.1f} %"
    if seconds:
        line += f", {metrics['seconds_per_epoch']:.3f} s/epoch"
    if cfg.compare_naive:
        line += f", naive loop {metrics['naive_seconds_per_epoch']:.3f} s/epoch (speedup x{metrics['speedup_vs_naive']:.1f})"
    _log(cfg, line)
    return metrics


def sweep_envelope_power(values, repeats: int, base: TrainConfig, out: str) -> dict:
    """Repeat the seed-000 training (``base.model``) for each envelope power; mean +/- std of the metrics."""
    os.makedirs(out, exist_ok=True)
    rows = []
    for value in values:
        for r in range(repeats):
            cfg = replace(base, envelope_power=float(value), seed=base.seed + r, plots=False, resume=False,
                          out=os.path.join(out, f"power_{value:g}_seed_{base.seed + r}"))
            m = train(cfg)
            rows.append(dict(envelope_power=float(value), seed=cfg.seed, test_accuracy=m["test_accuracy"],
                             test_abs_error_deg=m["test_abs_error_deg"], train_accuracy=m["train_accuracy"]))
    summary = []
    for value in values:
        sel = [r for r in rows if r["envelope_power"] == float(value)]
        entry = dict(envelope_power=float(value), repeats=len(sel))
        for key in ("test_accuracy", "test_abs_error_deg", "train_accuracy"):
            arr = np.array([r[key] for r in sel])
            entry[key + "_mean"], entry[key + "_std"] = float(arr.mean()), float(arr.std())
        summary.append(entry)
    result = dict(runs=rows, summary=summary)
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump(result, f, indent=2)
    from . import plots
    plots.sweep_figure(os.path.join(out, "sweep_envelope_power.png"), summary)
    for e in summary:
        print(f"envelope power {e['envelope_power']:g}: test accuracy {e['test_accuracy_mean']:.1f} +/- "
              f"{e['test_accuracy_std']:.1f} %, abs error {e['test_abs_error_deg_mean']:.1f} +/- "
              f"{e['test_abs_error_deg_std']:.1f} deg ({e['repeats']} runs)")
    return result
