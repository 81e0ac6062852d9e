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
  process, for the benchmarks), ``data_fingerprint()`` and ``warnings`` (data problems to report);
* ``backward(loss)`` (``loss.backward()``; e-prop sets the gradients itself), ``step_metrics()``
  and ``epoch_metrics()`` (values the loop records per step and per validation beside the losses),
  ``keeps_best`` (evaluate the weights of the lowest validation loss) and ``iteration_based``
  (fresh data every step: the per-step history goes into metrics.json).

:class:`EvidenceTask` (seed 003) has no fixed training set: an "epoch" is ``--iterations``
iterations, each on a fresh batch drawn from a generator seeded with (seed, iteration), and the
validation set is a fixed set of trials from a separate stream.
"""

from __future__ import annotations

import copy
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

from .. import eprop, seed_loops
from ..data.evidence import EvidenceConfig, generate
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
from ..models import IPDSNN, EvidenceNetwork, IPDMembraneOnly, SHDRecurrentSNN, dales_ipd_snn
from ..models.evidence import EvidenceOutput, decisions, rate_regularization, recall_loss
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
    keeps_best: bool = False  # the final evaluation takes the weights of the lowest validation loss
    iteration_based: bool = False  # fresh data every step (no epochs over a fixed set)
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

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of this step's ``loss`` (called after ``step_loss``, on zeroed gradients)."""
        loss.backward()

    def step_metrics(self) -> dict[str, float]:
        """Values of the last step to record beside its loss (reduced over the ranks): ``step_NAME``."""
        return {}

    def epoch_metrics(self) -> dict[str, float]:
        """Values of the last validation to record beside its loss, one entry per epoch."""
        return {}

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One training epoch in this process (all of every batch, no reductions): (mean loss, seconds)."""
        start = time.perf_counter()
        self.model.train()
        order = self.epoch_order(epoch)
        losses = []
        for step in range(self.steps_per_epoch):
            self.optimizer.zero_grad()
            loss = self.step_loss(self.model, order, step)
            self.backward(loss)
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
        self.has_validation = self.keeps_best = cfg.model == "ipd-dales"
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


# The data streams of the evidence task: one generator per (seed, stream, index).
TRAIN_STREAM, VALIDATION_STREAM = 0, 1


def stream_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """The CPU generator of item ``index`` (a training iteration, a validation batch) of a data
    ``stream``: the same (seed, stream, index) draws the same trials wherever and whenever it runs,
    so a resumed run draws exactly what an uninterrupted one would."""
    state = np.random.SeedSequence([seed, stream, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class EvidenceTask(_Task):
    """Seed 003's evidence accumulation: :class:`~snnkern.models.EvidenceNetwork` trained with BPTT
    (autograd through the fused ops) or e-prop (:func:`snnkern.eprop.eprop_gradients`).

    There is no fixed training set: iteration ``i`` (counted over the whole run) trains on a fresh
    global batch drawn from :func:`stream_generator` ``(seed, TRAIN_STREAM, i)``; an epoch is
    ``--iterations`` iterations, followed by the validation, a checkpoint and a progress update. The
    validation set is ``--val-batches`` batches drawn from ``(seed, VALIDATION_STREAM, k)``: the same
    trials every epoch and in the final evaluation, never trained on. Every rank draws the whole
    global batch and trains on its contiguous shard.
    """

    has_validation = True
    iteration_based = True

    def __init__(self, cfg: ResolvedTrainConfig, dist: Dist | None = None) -> None:
        self._init(cfg, dist)
        self.task_config = EvidenceConfig(
            n_cues=_model_option(cfg, "n_cues", cfg.n_cues),
            cue_steps=_model_option(cfg, "cue_steps", cfg.cue_steps),
            spacing_steps=_model_option(cfg, "spacing_steps", cfg.spacing_steps),
            background_steps=_model_option(cfg, "delay_steps", cfg.delay_steps),
            recall_steps=_model_option(cfg, "recall_steps", cfg.recall_steps),
        )
        self.window = slice(self.task_config.recall_start, self.task_config.steps)
        self.rule = _model_option(cfg, "rule", cfg.rule)
        self.feedback = cfg.feedback
        # the feedback weights of the learning signals: the run's under e-prop; under bptt the readout
        # weights (symmetric), through which the readout error reaches the neurons
        self.signal_feedback = "symmetric" if self.rule == "bptt" else _model_option(cfg, "feedback", cfg.feedback)
        self.iterations = _model_option(cfg, "iterations", cfg.iterations)
        self.val_batches = _model_option(cfg, "val_batches", cfg.val_batches)
        self.c_reg = _model_option(cfg, "c_reg", cfg.c_reg)
        self.f_target = _model_option(cfg, "f_target", cfg.f_target)
        n_regular = cfg.hidden // 2  # the seed's half regular, half adaptive neurons
        self.model: EvidenceNetwork = EvidenceNetwork(
            self.task_config.input_size,
            n_regular,
            cfg.hidden - n_regular,
            tau_m=cfg.tau,
            generator=torch.Generator().manual_seed(cfg.seed),
            backend=cfg.backend,
        ).to(self.device)
        # the weights before training (a resumed run rebuilds them from the seed): for the plots
        self.initial_state = copy.deepcopy(self.model.state_dict())
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
        self._step_error = torch.zeros(())
        self._validation: dict[str, float] = {}

    @property
    def steps_per_epoch(self) -> int:
        return self.iterations

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The iterations of ``epoch``, counted over the whole run."""
        return torch.arange(epoch * self.iterations, (epoch + 1) * self.iterations)

    def batch(self, stream: int, index: int, shard: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Input spikes [B, T, 40] and targets [B] of item ``index`` of ``stream``: this rank's shard
        of the global batch (the whole batch with ``shard=False``), on the task's device."""
        data = generate(self.task_config, self.cfg.batch_size, stream_generator(self.cfg.seed, stream, index))
        x, y = data.spikes, data.targets
        if shard and self.dist.enabled:
            b = self.cfg.batch_size // self.dist.world_size
            x, y = x[self.dist.rank * b : (self.dist.rank + 1) * b], y[self.dist.rank * b : (self.dist.rank + 1) * b]
        return x.to(self.device), y.to(self.device)

    def loss(self, out: EvidenceOutput, targets: torch.Tensor) -> torch.Tensor:
        """The seed's loss: cross-entropy over the recall window plus the firing-rate regularisation."""
        return recall_loss(out.readout, targets, self.window) + rate_regularization(
            out.spikes, f_target=self.f_target, c_reg=self.c_reg
        )

    def _errors(self, out: EvidenceOutput, targets: torch.Tensor) -> torch.Tensor:
        return (decisions(out.readout.detach(), self.window) != targets).to(torch.float64).mean()

    def step_loss(self, net: Callable[..., Any], order: torch.Tensor, step: int) -> torch.Tensor:
        x, y = self.batch(TRAIN_STREAM, int(order[step]))
        if self.rule == "bptt":
            out = net(x)
            loss = self.loss(out, y)
            self._step_error = self._errors(out, y)
            return loss
        # e-prop's gradients come with its forward pass: set here (after the loop's zero_grad),
        # with the loss and the decisions of that pass, the same quantities as under bptt.
        m = self.model
        values = eprop.eprop_gradients(
            m, x, y, self.window, feedback=self.signal_feedback, c_reg=self.c_reg, f_target=self.f_target
        )
        self._step_error = torch.tensor(values["recall_error"], dtype=torch.float64)
        return torch.tensor(values["loss"], dtype=torch.float64)

    def backward(self, loss: torch.Tensor) -> None:
        if self.rule == "bptt":
            loss.backward()
            return
        m = self.model
        if m.recurrent_weight.grad is not None:
            m.recurrent_weight.grad.mul_(m.recurrent_mask)  # no autapses: the diagonal stays at zero
        if self.dist.enabled:  # DDP averages only the gradients autograd computes
            for p in m.parameters():
                if p.grad is not None:
                    p.grad.copy_(self.dist.mean(p.grad.detach().to(torch.float64).cpu()))

    def step_metrics(self) -> dict[str, float]:
        return {"recall_error": float(self.dist.mean(self._step_error.reshape(1).cpu())[0])}

    @torch.no_grad()
    def _validate(self, model: EvidenceNetwork) -> dict[str, float]:
        """Loss, recall error and firing rate on the validation set (the ranks' shards reduced)."""
        model.eval()
        rows = []
        for k in range(self.val_batches):
            x, y = self.batch(VALIDATION_STREAM, k)
            out = model(x)
            rate = out.spikes.to(torch.float64).mean()
            rows.append(
                torch.stack([self.loss(out, y).to(torch.float64).cpu(), self._errors(out, y).cpu(), rate.cpu()])
            )
        loss, error, rate = self.dist.mean(torch.stack(rows).to(torch.float64)).mean(dim=0).tolist()
        model.train()
        return dict(loss=loss, recall_error=error, firing_rate_hz=rate * 1000.0)  # 1 ms per step

    def validation_loss(self, epoch: int) -> float:
        values = self._validate(self.model)
        self._validation = {"val_recall_error": values["recall_error"]}
        return values["loss"]

    def epoch_metrics(self) -> dict[str, float]:
        return self._validation

    def evaluate(self) -> dict[str, Any]:
        values = self._validate(self.model)
        results: dict[str, Any] = dict(
            recall_error=values["recall_error"],
            validation_loss=values["loss"],
            validation_trials=self.val_batches * self.cfg.batch_size,
            firing_rate_hz=values["firing_rate_hz"],
            rule=self.rule,
            feedback=self.feedback,
            trial_steps=self.task_config.steps,
        )
        if self.dist.is_main:
            x, y = self.batch(VALIDATION_STREAM, 0, shard=False)
            x, y = x[:1], y[:1]
            before = copy.deepcopy(self.model)
            before.load_state_dict(self.initial_state)
            results["_trial_before"] = self.trial_signals(before, x, y)
            results["_trial_after"] = self.trial_signals(self.model, x, y)
            results["_weights_before"] = self.weights(before)
            results["_weights_after"] = self.weights(self.model)
        return results

    @staticmethod
    def weights(model: EvidenceNetwork) -> dict[str, np.ndarray]:
        """:meth:`EvidenceNetwork.weight_matrices` as numpy arrays ``[pre, post]``, copied."""
        return {k: w.cpu().numpy().copy() for k, w in model.weight_matrices().items()}

    def trial_signals(self, model: EvidenceNetwork, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """The traces of one trial ``x`` [1, T, 40], ``y`` [1] for the plots, as numpy arrays [T, ...].

        Spikes, readout, membrane, adaptive threshold, pseudo-derivative ``psi`` and learning signal
        are those of :func:`snnkern.eprop.trial_signals`, with the run's feedback weights under
        e-prop and the readout weights (symmetric feedback) under bptt: there the learning signal is
        the readout error sent back through the readout weights. ``sources`` names the feedback.
        """
        feedback = self.signal_feedback
        signals = eprop.trial_signals(model, x, y, self.window, feedback=feedback, backend=self.cfg.backend)
        readout = signals.readout[0].detach().cpu()
        probability = torch.softmax(readout, dim=-1)
        target = torch.zeros_like(probability)
        target[self.window, int(y[0])] = 1.0
        traces = {k: getattr(signals, k)[0].detach().cpu() for k in ("membrane", "threshold", "psi", "learning_signal")}
        weights = "the readout weights, transposed" if feedback == "symmetric" else "fixed random weights"
        return dict(
            inputs=x[0].cpu().numpy(),
            spikes=signals.spikes[0].cpu().numpy(),
            readout=readout.numpy(),
            probability=probability.numpy(),
            target=target.numpy(),
            **{k: v.to(torch.float32).numpy() for k, v in traces.items()},
            sources=dict(
                learning_signal=f"(1 - kappa) B err_t, readout error err_t; feedback {feedback}: B = {weights}"
            ),
            n_regular=int((model.adaptation_strength == 0).sum()),
            populations={k: (v.start, v.stop) for k, v in self.task_config.populations.items()},
            window=(self.window.start, self.window.stop),
            label=int(y[0]),
            decision=int(decisions(signals.readout, self.window)[0]),
        )

    def naive_epoch_seconds(self) -> float:
        raise ConfigError("--compare-naive does not apply to evidence (seed 003 has no PyTorch loop)")


Task = IPDTask | SHDTask | EvidenceTask


def make_task(cfg: ResolvedTrainConfig, dist: Dist | None = None) -> Task:
    """The task of ``cfg.model``; ``cfg`` must be :meth:`TrainConfig.resolved`."""
    if cfg.model == "evidence":
        return EvidenceTask(cfg, dist)
    return SHDTask(cfg, dist) if cfg.model == "shd" else IPDTask(cfg, dist)
