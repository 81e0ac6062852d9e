"""The training tasks: data, model, optimiser and loss of each seed model, and their evaluation.

A task offers ``train_epoch(epoch) -> (mean loss, seconds)``, ``evaluate() -> dict`` (metrics, and
arrays for the plots under keys starting with ``_``), ``naive_epoch_seconds()`` (one epoch of the
seed's loop from :mod:`snnkern.seed_loops` on the same data and weights) and, where the seed has a
validation set, ``validation_loss(epoch)``.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.types import Device

from .. import seed_loops
from ..data.ipd import IPDConfig, IPDDataset, continuise
from ..data.shd import SHD_CLASSES, SHD_UNITS, SHDData, dense_batch, generate_shd_folder, load_shd, shd_batches
from ..models import IPDSNN, IPDMembraneOnly, SHDRecurrentSNN, dales_ipd_snn
from .config import ResolvedTrainConfig

_T = TypeVar("_T")


def _model_option(cfg: ResolvedTrainConfig, name: str, value: _T | None) -> _T:
    """``value``, the option ``name`` of a model that has a default for it (see DEFAULTS)."""
    if value is None:
        raise ValueError(f"the option {name} is not set, and model {cfg.model!r} has no default for it")
    return value


def _epoch_generator(seed: int, epoch: int, device: Device) -> torch.Generator:
    # one generator per (seed, epoch): a resumed run draws exactly what an uninterrupted one would
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + 1)


def _training_pass(
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
) -> tuple[float, float]:
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


class IPDTask:
    """IPD data, model and loss for ``ipd``, ``ipd-membrane`` and ``ipd-dales``."""

    def __init__(self, cfg: ResolvedTrainConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.ipd_config = IPDConfig(
            anf_per_ear=cfg.anf_per_ear, envelope_power=cfg.envelope_power, phase_offset=bool(cfg.noise_offsets)
        )
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        bs = cfg.batch_size
        train_batches = _model_option(cfg, "train_batches", cfg.train_batches)
        test_batches = _model_option(cfg, "test_batches", cfg.test_batches)
        self.train_set = IPDDataset(bs * train_batches, self.ipd_config, gen, self.device)
        self.has_validation = cfg.model == "ipd-dales"
        self.val_set = (
            IPDDataset(bs * train_batches, self.ipd_config, gen, self.device) if self.has_validation else None
        )
        self.test_set = IPDDataset(bs * test_batches, self.ipd_config, gen, self.device)
        torch.manual_seed(cfg.seed)
        n_in, n_cls, tau = self.ipd_config.input_size, self.ipd_config.num_classes, cfg.tau * 1e-3
        self.model: IPDMembraneOnly | IPDSNN
        if cfg.model == "ipd-membrane":
            self.model = IPDMembraneOnly(n_in, n_cls, tau=tau, backend=cfg.backend)
        elif cfg.model == "ipd":
            self.model = IPDSNN(n_in, cfg.hidden, n_cls, tau=tau, backend=cfg.backend)
        else:
            ie_ratio = _model_option(cfg, "ie_ratio", cfg.ie_ratio)
            self.model = dales_ipd_snn(n_in, cfg.hidden, n_cls, tau=tau, ie_ratio=ie_ratio, backend=cfg.backend)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    @staticmethod
    def loss(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(torch.log_softmax(output.mean(dim=1), dim=1), labels)

    def _batches(
        self, dataset: IPDDataset, gen: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return dataset.batches(self.cfg.batch_size, generator=gen, shuffle=True)

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        gen = _epoch_generator(self.cfg.seed, epoch, self.device)
        self.train_set.redraw_offset(gen)
        self.model.train()
        return _training_pass(
            ((self.model(x), y) for x, y, _ in self._batches(self.train_set, gen)), self.loss, self.optimizer
        )

    @torch.no_grad()
    def validation_loss(self, epoch: int) -> float:
        if self.val_set is None:
            raise RuntimeError(f"model {self.cfg.model!r} has no validation set")
        gen = _epoch_generator(self.cfg.seed + 7919, epoch, self.device)
        self.val_set.redraw_offset(gen)
        return float(np.mean([self.loss(self.model(x), y).item() for x, y, _ in self._batches(self.val_set, gen)]))

    @torch.no_grad()
    def _analyse(self, dataset: IPDDataset) -> dict[str, Any]:
        self.model.eval()
        n_cls = self.ipd_config.num_classes
        preds, labels, ipds = [], [], []
        for x, y, ipd in dataset.batches(self.cfg.batch_size, shuffle=False):
            preds.append(self.model(x).mean(dim=1).argmax(dim=1).cpu())
            labels.append(y.cpu())
            ipds.append(ipd.cpu())
        pred, true, ipd = torch.cat(preds), torch.cat(labels), torch.cat(ipds)
        est = continuise(pred, n_cls)
        return dict(
            accuracy=100.0 * float((pred == true).float().mean()),
            abs_error_deg=float((ipd - est).abs().mean() * 180 / math.pi),
            confusion=_confusion(pred.numpy(), true.numpy(), n_cls),
            ipd_true=ipd.numpy(),
            ipd_est=est.numpy(),
        )

    def evaluate(self) -> dict[str, Any]:
        # the test set gets its own fixed noise offset (seed 001 mode), drawn independently of training
        self.test_set.redraw_offset(torch.Generator(device=self.device).manual_seed(self.cfg.seed + 104729))
        train, test = self._analyse(self.train_set), self._analyse(self.test_set)
        x = next(self.test_set.batches(self.cfg.batch_size, shuffle=False))[0][:1]
        with torch.no_grad():
            raster = self.model(x, return_hidden=True)[1][0] if hasattr(self.model, "hidden") else x[0]
        return dict(
            train_accuracy=train["accuracy"],
            train_abs_error_deg=train["abs_error_deg"],
            test_accuracy=test["accuracy"],
            test_abs_error_deg=test["abs_error_deg"],
            _confusion=test["confusion"],
            _ipd_true=test["ipd_true"],
            _ipd_est=test["ipd_est"],
            _raster=raster.cpu().numpy(),
            _raster_label="hidden neuron" if hasattr(self.model, "hidden") else "input neuron",
        )

    def naive_epoch_seconds(self) -> float:
        """One training epoch with the seed's naive loop (snnkern.seed_loops) on the same data and weights."""
        m = self.model
        alpha = math.exp(-self.ipd_config.dt / (self.cfg.tau * 1e-3))
        run: Callable[[torch.Tensor], torch.Tensor]
        if isinstance(m, IPDMembraneOnly):  # ipd-membrane
            W = m.readout.linear.weight.detach().T.clone().requires_grad_(True)
            params, run = [W], functools.partial(seed_loops.seed000_membrane_only, W=W, alpha=alpha)
        else:
            W1 = m.hidden.linear.weight.detach().T.clone().requires_grad_(True)
            W2 = m.readout.linear.weight.detach().T.clone().requires_grad_(True)
            params = [W1, W2]
            if self.cfg.model == "ipd":
                run = functools.partial(seed_loops.seed000_snn, W1=W1, W2=W2, alpha=alpha)
            else:
                ie_ratio = _model_option(self.cfg, "ie_ratio", self.cfg.ie_ratio)
                signs = (
                    seed_loops.dales_signs(W1.shape[0], ie_ratio, device=self.device),
                    seed_loops.dales_signs(W2.shape[0], ie_ratio, device=self.device),
                )
                run = functools.partial(seed_loops.seed001_snn, w1=W1, w2=W2, signs=signs, alpha=alpha)

        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        gen = _epoch_generator(self.cfg.seed, 0, self.device)
        return _training_pass(((run(x), y) for x, y, _ in self._batches(self.train_set, gen)), self.loss, opt)[1]


class SHDTask:
    """SHD (or synthetic SHD-format) data with seed 004's recurrent model."""

    has_validation = False

    def __init__(self, cfg: ResolvedTrainConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.tau_syn = _model_option(cfg, "tau_syn", cfg.tau_syn)
        if cfg.data is None:
            folder = os.path.join(cfg.out, "shd_data")
            cfg.log(f"no --data given: generating synthetic SHD-format files in {folder}")
            train_path, test_path = generate_shd_folder(
                folder, cfg.shd_train_samples, cfg.shd_test_samples, seed=cfg.seed
            )
        else:
            train_path = os.path.join(cfg.data, "shd_train.h5")
            test_path = os.path.join(cfg.data, "shd_test.h5")
        self.train_set, self.test_set = load_shd(train_path), load_shd(test_path)
        self.num_classes = max(SHD_CLASSES, self.train_set.num_classes)
        torch.manual_seed(cfg.seed)
        self.model = SHDRecurrentSNN(
            SHD_UNITS,
            cfg.hidden,
            self.num_classes,
            tau_mem=cfg.tau * 1e-3,
            tau_syn=self.tau_syn * 1e-3,
            backend=cfg.backend,
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))

    @staticmethod
    def loss(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.max(dim=1).values, labels)

    def validation_loss(self, epoch: int) -> float:
        raise RuntimeError("seed 004 (shd) has no validation set")

    def _batches(self, data: SHDData, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        c = self.cfg
        return shd_batches(
            data, c.batch_size, c.nb_steps, SHD_UNITS, c.max_time, shuffle=True, generator=gen, device=self.device
        )

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        gen = _epoch_generator(self.cfg.seed, epoch, "cpu")
        self.model.train()
        return _training_pass(
            ((self.model(x)[0], y) for x, y in self._batches(self.train_set, gen)), self.loss, self.optimizer
        )

    @torch.no_grad()
    def _analyse(self, data: SHDData) -> tuple[float, np.ndarray]:
        self.model.eval()
        c, preds = self.cfg, []
        for k in range(0, len(data), c.batch_size):
            x = dense_batch(
                data.times[k : k + c.batch_size],
                data.units[k : k + c.batch_size],
                c.nb_steps,
                SHD_UNITS,
                c.max_time,
                self.device,
            )
            preds.append(self.model(x)[0].max(dim=1).values.argmax(dim=1).cpu())
        pred = torch.cat(preds).numpy()
        return 100.0 * float(np.mean(pred == data.labels)), _confusion(pred, data.labels, self.num_classes)

    def evaluate(self) -> dict[str, Any]:
        train_acc, _ = self._analyse(self.train_set)
        test_acc, confusion = self._analyse(self.test_set)
        c = self.cfg
        x = dense_batch(
            self.test_set.times[:1], self.test_set.units[:1], c.nb_steps, SHD_UNITS, c.max_time, self.device
        )
        with torch.no_grad():
            raster = self.model(x)[1][0]
        return dict(
            train_accuracy=train_acc,
            test_accuracy=test_acc,
            _confusion=confusion,
            _raster=raster.cpu().numpy(),
            _raster_label="hidden neuron",
        )

    def naive_epoch_seconds(self) -> float:
        m = self.model
        w1 = m.hidden.linear.weight.detach().T.clone().requires_grad_(True)
        v1 = m.hidden.recurrent_weight.detach().T.clone().requires_grad_(True)
        w2 = m.readout.linear.weight.detach().T.clone().requires_grad_(True)
        alpha, beta = math.exp(-1.0 / self.tau_syn), math.exp(-1.0 / self.cfg.tau)
        opt = torch.optim.Adam([w1, w2, v1], lr=self.cfg.lr, betas=(0.9, 0.999))
        batches = self._batches(self.train_set, _epoch_generator(self.cfg.seed, 0, "cpu"))
        outputs = ((seed_loops.seed004_snn(x, w1, w2, v1, alpha, beta)[0], y) for x, y in batches)
        return _training_pass(outputs, self.loss, opt)[1]


def make_task(cfg: ResolvedTrainConfig) -> IPDTask | SHDTask:
    """The task of ``cfg.model``; ``cfg`` must be :meth:`TrainConfig.resolved`."""
    return SHDTask(cfg) if cfg.model == "shd" else IPDTask(cfg)
