"""The training tasks: data, model, optimiser and loss of each seed model, and their evaluation.

A task offers, for the training loop (:mod:`snnkern.train.loop`):

* ``steps_per_epoch`` and ``epoch_order(epoch)``: the permutation of the training set for an
  epoch (drawn from a generator seeded with (seed, epoch), after the epoch's noise offset), the
  same on every rank;
* ``step_loss(net, order, step)``: the loss of this rank's shard of global batch ``step``
  (``net`` is the model, or its DistributedDataParallel wrapper);
* ``validation_loss(epoch)`` where the seed has a validation set, ``evaluate()`` (metrics, and
  arrays for the plots under keys starting with ``_``), both sharded over the ranks;
* ``naive_epoch_seconds()`` (one epoch of the seed's loop from :mod:`snnkern.seed_loops` on the
  same data and weights), ``train_epoch(epoch) -> (mean loss, seconds)`` (one plain epoch in one
  process, for the benchmarks), ``data_fingerprint()`` and ``warnings`` (data problems to report).
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
from torch import nn
from torch.types import Device

from .. import seed_loops
from ..data.ipd import IPDConfig, IPDDataset, continuise
from ..data.shd import (
    SHD_CLASSES,
    SHD_UNITS,
    SHDData,
    dense_batch,
    generate_shd_folder,
    load_shd,
    shd_batches,
    spikes_outside_window,
)
from ..models import IPDSNN, IPDMembraneOnly, SHDRecurrentSNN, dales_ipd_snn
from .config import ResolvedTrainConfig
from .distributed import Dist
from .errors import ConfigError, DataError, DataFileNotFoundError, RunFolderError

_T = TypeVar("_T")


def _model_option(cfg: ResolvedTrainConfig, name: str, value: _T | None) -> _T:
    """``value``, the option ``name`` of a model that has a default for it (see DEFAULTS)."""
    if value is None:
        raise ConfigError(f"the option {name} is not set, and model {cfg.model!r} has no default for it")
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


class _Task:
    """What the IPD and SHD tasks share: sharding of the global batches over the ranks."""

    cfg: ResolvedTrainConfig
    dist: Dist
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    has_validation: bool = False
    warnings: list[str]

    def _init(self, cfg: ResolvedTrainConfig, dist: Dist | None) -> None:
        self.cfg, self.dist, self.device = cfg, dist or Dist(), torch.device(cfg.device)
        self.warnings = []

    @property
    def num_train(self) -> int:
        raise NotImplementedError

    @property
    def steps_per_epoch(self) -> int:
        return self.num_train // self.cfg.batch_size  # the last partial batch is dropped, as in the seeds

    def _global_batch(self, order: torch.Tensor, step: int) -> torch.Tensor:
        """This rank's contiguous shard of global batch ``step`` of the permutation ``order``."""
        b = self.cfg.batch_size // self.dist.world_size
        start = step * self.cfg.batch_size + self.dist.rank * b
        return order[start : start + b]

    def epoch_order(self, epoch: int) -> torch.Tensor:
        raise NotImplementedError

    def step_loss(self, net: Callable[..., Any], order: torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One training epoch in this process (all of every batch, no reductions): (mean loss, seconds)."""
        start = time.perf_counter()
        self.model.train()
        order = self.epoch_order(epoch)
        losses = []
        for step in range(self.steps_per_epoch):
            loss = self.step_loss(self.model, order, step)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        return float(np.mean(losses)), time.perf_counter() - start

    def data_fingerprint(self) -> dict[str, str] | None:
        return None


class IPDTask(_Task):
    """IPD data, model and loss for ``ipd``, ``ipd-membrane`` and ``ipd-dales``."""

    def __init__(self, cfg: ResolvedTrainConfig, dist: Dist | None = None) -> None:
        self._init(cfg, dist)
        self.ipd_config = IPDConfig(
            anf_per_ear=_model_option(cfg, "anf_per_ear", cfg.anf_per_ear),
            envelope_power=_model_option(cfg, "envelope_power", cfg.envelope_power),
            phase_offset=bool(cfg.noise_offsets),
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

    @property
    def num_train(self) -> int:
        return len(self.train_set)

    def _order(self, dataset: IPDDataset, gen: torch.Generator) -> torch.Tensor:
        # as IPDDataset.batches(shuffle=True) draws it
        return torch.randperm(len(dataset), generator=gen, device=gen.device).to(self.device)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        gen = _epoch_generator(self.cfg.seed, epoch, self.device)
        self.train_set.redraw_offset(gen)
        return self._order(self.train_set, gen)

    def step_loss(self, net: Callable[..., Any], order: torch.Tensor, step: int) -> torch.Tensor:
        idx = self._global_batch(order, step)
        return self.loss(net(self.train_set.spikes[idx].to(torch.float32)), self.train_set.labels[idx])

    def _batches(
        self, dataset: IPDDataset, gen: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return dataset.batches(self.cfg.batch_size, generator=gen, shuffle=True)

    @torch.no_grad()
    def validation_loss(self, epoch: int) -> float:
        """Mean loss over the validation batches (each batch's loss: the mean over the ranks' shards)."""
        if self.val_set is None:
            raise RuntimeError(f"model {self.cfg.model!r} has no validation set")
        gen = _epoch_generator(self.cfg.seed + 7919, epoch, self.device)
        self.val_set.redraw_offset(gen)
        order = self._order(self.val_set, gen)
        losses = []
        for k in range(len(self.val_set) // self.cfg.batch_size):
            idx = self._global_batch(order, k)
            losses.append(self.loss(self.model(self.val_set.spikes[idx].to(torch.float32)), self.val_set.labels[idx]))
        values = self.dist.mean(torch.stack(losses).to(torch.float64).cpu())
        return float(np.mean(values.numpy()))

    @torch.no_grad()
    def _predict(self, dataset: IPDDataset) -> torch.Tensor:
        """Class predictions of every sample (this rank predicts its contiguous shard; gathered)."""
        self.model.eval()
        part, preds = self.dist.shard(len(dataset)), []
        for k in range(part.start, part.stop, self.cfg.batch_size):
            x = dataset.spikes[k : min(k + self.cfg.batch_size, part.stop)].to(torch.float32)
            preds.append(self.model(x).mean(dim=1).argmax(dim=1).cpu())
        mine = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
        return self.dist.gather(mine)

    def _analyse(self, dataset: IPDDataset) -> dict[str, Any]:
        n_cls = self.ipd_config.num_classes
        pred, true, ipd = self._predict(dataset), dataset.labels.cpu(), dataset.ipds.cpu()
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
        x = self.test_set.spikes[:1].to(torch.float32)
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


def _load_split(path: str) -> SHDData:
    try:
        return load_shd(path)
    except FileNotFoundError as error:
        raise DataFileNotFoundError(str(error)) from None
    except ValueError as error:
        raise DataError(str(error)) from None


def load_shd_splits(cfg: ResolvedTrainConfig) -> tuple[SHDData, SHDData, list[str], dict[str, str]]:
    """Generate (without ``--data``) and read the SHD train and test files, and check them together.

    Returns the two splits, warnings to report (spikes outside the time window, classes without
    training samples) and their content fingerprints. Raises DataError for data that cannot train
    (no samples, test labels the model cannot output, a window that drops every spike).
    """
    nb_steps = _model_option(cfg, "nb_steps", cfg.nb_steps)
    max_time = _model_option(cfg, "max_time", cfg.max_time)
    if cfg.data is None:
        folder = os.path.join(cfg.out, "shd_data")
        cfg.log(f"no --data given: synthetic SHD-format files in {folder}")
        try:
            train_path, test_path = generate_shd_folder(
                folder,
                _model_option(cfg, "shd_train_samples", cfg.shd_train_samples),
                _model_option(cfg, "shd_test_samples", cfg.shd_test_samples),
                seed=cfg.seed,
                overwrite=cfg.overwrite,
                log=cfg.log,
            )
        except FileExistsError as error:
            raise RunFolderError(str(error)) from None
    else:
        train_path = os.path.join(cfg.data, "shd_train.h5")
        test_path = os.path.join(cfg.data, "shd_test.h5")
    train, test = _load_split(train_path), _load_split(test_path)
    if len(train) == 0:
        raise DataError(f"{train_path!r} holds no samples: nothing to train on")
    if len(test) == 0:
        raise DataError(f"{test_path!r} holds no samples: nothing to evaluate on")
    if cfg.batch_size > len(train):
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the {len(train)} training samples of {train_path!r}: "
            f"no batch to train on; use a batch size <= {len(train)}"
        )
    warnings = []
    num_classes = max(SHD_CLASSES, train.num_classes)
    bad = sorted({int(v) for v in test.labels[test.labels >= num_classes]})
    if bad:
        raise DataError(
            f"{test_path!r} has labels {bad[:10]} outside the classes 0..{num_classes - 1} of the training data "
            f"({train_path!r}): the train and test files do not belong together"
        )
    unseen = sorted(set(test.labels.tolist()) - set(train.labels.tolist()))
    if unseen:
        warnings.append(f"{test_path}: test classes {unseen[:20]} have no training samples in {train_path}")
    for path, split in ((train_path, train), (test_path, test)):
        report = spikes_outside_window(split, nb_steps, max_time)
        if report.total and report.outside == report.total:
            raise DataError(
                f"{path!r}: the window of --nb-steps {nb_steps} and --max-time {max_time:g} s ends at "
                f"{report.window_end:.4g} s and drops every spike (times span {report.t_min:.4g} .. "
                f"{report.t_max:.4g} s); --max-time is in seconds"
            )
        if report.outside:
            warnings.append(report.describe(path, nb_steps, max_time))
    fingerprint = {"train": train.fingerprint(), "test": test.fingerprint()}
    return train, test, warnings, fingerprint


class SHDTask(_Task):
    """SHD (or synthetic SHD-format) data with seed 004's recurrent model."""

    has_validation = False

    def __init__(self, cfg: ResolvedTrainConfig, dist: Dist | None = None) -> None:
        self._init(cfg, dist)
        self.tau_syn = _model_option(cfg, "tau_syn", cfg.tau_syn)
        self.nb_steps = _model_option(cfg, "nb_steps", cfg.nb_steps)
        self.max_time = _model_option(cfg, "max_time", cfg.max_time)
        # rank 0 reads (or generates) and checks the files, the others get the data from it
        self.train_set, self.test_set, warnings, self._fingerprint = self.dist.run_on_main(
            functools.partial(load_shd_splits, cfg)
        )
        self.warnings.extend(warnings)
        self.num_classes = max(SHD_CLASSES, self.train_set.num_classes)
        torch.manual_seed(cfg.seed)
        self.model: SHDRecurrentSNN = SHDRecurrentSNN(
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

    @property
    def num_train(self) -> int:
        return len(self.train_set)

    def data_fingerprint(self) -> dict[str, str] | None:
        return self._fingerprint

    def validation_loss(self, epoch: int) -> float:
        raise RuntimeError("seed 004 (shd) has no validation set")

    def _dense(self, data: SHDData, idx: Iterable[int]) -> torch.Tensor:
        idx = list(idx)
        return dense_batch(
            [data.times[i] for i in idx],
            [data.units[i] for i in idx],
            self.nb_steps,
            SHD_UNITS,
            self.max_time,
            self.device,
        )

    def epoch_order(self, epoch: int) -> torch.Tensor:
        # as shd_batches(shuffle=True) draws it
        return torch.randperm(len(self.train_set), generator=_epoch_generator(self.cfg.seed, epoch, "cpu"))

    def step_loss(self, net: Callable[..., Any], order: torch.Tensor, step: int) -> torch.Tensor:
        idx = self._global_batch(order, step).numpy()
        x = self._dense(self.train_set, idx)
        y = torch.as_tensor(self.train_set.labels[idx], device=self.device)
        return self.loss(net(x)[0], y)

    def _batches(self, data: SHDData, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        c = self.cfg
        return shd_batches(
            data, c.batch_size, self.nb_steps, SHD_UNITS, self.max_time, shuffle=True, generator=gen, device=self.device
        )

    @torch.no_grad()
    def _analyse(self, data: SHDData) -> tuple[float, np.ndarray]:
        self.model.eval()
        part, preds = self.dist.shard(len(data)), []
        for k in range(part.start, part.stop, self.cfg.batch_size):
            x = self._dense(data, range(k, min(k + self.cfg.batch_size, part.stop)))
            preds.append(self.model(x)[0].max(dim=1).values.argmax(dim=1).cpu())
        mine = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
        pred = self.dist.gather(mine).numpy()
        return 100.0 * float(np.mean(pred == data.labels)), _confusion(pred, data.labels, self.num_classes)

    def evaluate(self) -> dict[str, Any]:
        train_acc, _ = self._analyse(self.train_set)
        test_acc, confusion = self._analyse(self.test_set)
        x = self._dense(self.test_set, [0])
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


def make_task(cfg: ResolvedTrainConfig, dist: Dist | None = None) -> IPDTask | SHDTask:
    """The task of ``cfg.model``; ``cfg`` must be :meth:`TrainConfig.resolved`."""
    return SHDTask(cfg, dist) if cfg.model == "shd" else IPDTask(cfg, dist)
