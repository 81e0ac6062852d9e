"""Options of a training run, the seed models' defaults, and the checks of every option.

:meth:`TrainConfig.validate` checks every option before any work (no folder created, no data
generated, nothing loaded) and raises :class:`~snnkern.train.errors.ConfigError` naming the
command-line option and its allowed range. ``train()`` calls it; so does the command line.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, fields
from typing import Any

import torch

from ..eprop import FEEDBACKS
from ..models.evidence import rate_regularization
from .errors import ConfigError, DataFileNotFoundError

IPD_MODELS = ("ipd", "ipd-membrane", "ipd-dales")
MODELS = IPD_MODELS + ("shd", "evidence")

RULES = ("bptt", "eprop")  # evidence: backpropagation through time, or e-prop (snnkern.eprop)
FEEDBACK = FEEDBACKS  # e-prop's feedback weights: fixed random, or the readout's own (snnkern.eprop)
# The firing-rate regularisation's defaults are those of snnkern.models.evidence.rate_regularization.
_RATE_REG = {k: p.default for k, p in inspect.signature(rate_regularization).parameters.items() if k != "spikes"}

_IPD_DATA = dict(train_batches=64, test_batches=32, anf_per_ear=100, envelope_power=2.0)

DEFAULTS: dict[str, dict[str, Any]] = {
    "ipd": dict(epochs=10, lr=0.01, batch_size=64, hidden=100, tau=20.0, **_IPD_DATA),
    "ipd-membrane": dict(epochs=10, lr=0.01, batch_size=64, hidden=0, tau=20.0, **_IPD_DATA),
    "ipd-dales": dict(epochs=150, lr=0.005, batch_size=64, hidden=30, tau=5.0, ie_ratio=0.5, patience=10, **_IPD_DATA),
    "shd": dict(
        epochs=200,
        lr=2e-4,
        batch_size=256,
        hidden=128,
        tau=10.0,
        tau_syn=5.0,
        nb_steps=100,
        max_time=1.0,
        shd_train_samples=2560,
        shd_test_samples=768,
    ),
    # seed 003 (NEST's e-prop example): 50 regular + 50 adaptive neurons, Adam lr 5e-3, batch 32 (its
    # README: 64 in the reference, 32 converges); fresh trials every iteration, 20 epochs of 25
    # iterations. The trial's durations are the seed's (EvidenceConfig's defaults).
    "evidence": dict(
        epochs=20,
        lr=5e-3,
        batch_size=32,
        hidden=100,
        tau=20.0,
        rule="eprop",
        iterations=25,
        val_batches=4,
        c_reg=_RATE_REG["c_reg"],
        f_target=_RATE_REG["f_target"],
        n_cues=7,
        cue_steps=100,
        spacing_steps=50,
        delay_steps=1050,
        recall_steps=150,
    ),
}

# The options only some models have (a value given for another model is refused, not ignored).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    name: tuple(m for m in MODELS if name in DEFAULTS[m])
    for name in sorted({k for d in DEFAULTS.values() for k in d})
    if not all(name in DEFAULTS[m] for m in MODELS)
}
APPLIES_TO |= {"noise_offsets": IPD_MODELS, "data": ("shd",), "feedback": ("evidence",)}

# Options that --resume may change (the rest must equal the checkpoint's; see check_resume_options).
# ``epochs``: the total to reach; ``data``: the folder may move, its files must be the same
# (their SHA-256 is in the checkpoint); device/backend/world size: the run continues, but the
# bitwise equality with an uninterrupted run holds only on the same device, backend and number
# of processes (otherwise to float tolerance).
CHANGEABLE_ON_RESUME = (
    "epochs",
    "out",
    "resume",
    "overwrite",
    "data",
    "device",
    "backend",
    "progress",
    "plots",
    "compare_naive",
)

MAX_SEED = 2**32 - 1


def flag(name: str) -> str:
    """The command-line option of the field ``name``: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Options of one training run; ``None`` means the model's default from :data:`DEFAULTS`.

    Options that only some models have (:data:`APPLIES_TO`) stay ``None`` for the others; giving
    one to a model without it is an error (:meth:`validate`).
    """

    model: str = "ipd"
    epochs: int | None = None  # 0: evaluation only
    seed: int = 0
    device: str = "cpu"
    hidden: int | None = None
    tau: float | None = None  # ms (membrane time constant)
    tau_syn: float | None = None  # ms (shd only)
    batch_size: int | None = None  # the global batch: split over the processes of a distributed run
    lr: float | None = None
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    # IPD
    train_batches: int | None = None
    test_batches: int | None = None
    envelope_power: float | None = None
    anf_per_ear: int | None = None
    ie_ratio: float | None = None
    patience: int | None = None  # early stopping (ipd-dales); 0 disables
    noise_offsets: bool | None = None  # default: on for ipd-dales only
    # SHD
    data: str | None = None
    nb_steps: int | None = None
    max_time: float | None = None  # seconds
    shd_train_samples: int | None = None
    shd_test_samples: int | None = None
    # evidence accumulation (seed 003)
    rule: str | None = None  # bptt or eprop
    feedback: str | None = None  # eprop: random or symmetric (default random)
    iterations: int | None = None  # training iterations per epoch (each on a fresh batch)
    val_batches: int | None = None  # batches of validation trials (a fixed set, never trained on)
    c_reg: float | None = None  # strength of the firing-rate regularisation
    f_target: float | None = None  # its target rate, spikes per 1 ms step (0.01 = 10 Hz)
    n_cues: int | None = None
    cue_steps: int | None = None
    spacing_steps: int | None = None
    delay_steps: int | None = None  # background-only steps after the last cue (EvidenceConfig.background_steps)
    recall_steps: int | None = None
    # run
    compare_naive: bool = False
    plots: bool = True
    progress: bool = True
    backend: str | None = None

    def resolved(self) -> ResolvedTrainConfig:
        """This configuration with the model's defaults filled in where it says ``None``."""
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}; got {self.model!r}")
        d = DEFAULTS[self.model]
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        values |= {k: (values[k] if values[k] is not None else v) for k, v in d.items()}
        if self.model in IPD_MODELS:
            offsets = self.noise_offsets
            values["noise_offsets"] = offsets if offsets is not None else self.model == "ipd-dales"
        if self.model == "evidence" and values["rule"] == "eprop" and values["feedback"] is None:
            values["feedback"] = "random"  # the seed's fixed random feedback weights
        values["out"] = self.out if self.out is not None else os.path.join("runs", self.model)
        return ResolvedTrainConfig(**values)

    def log(self, msg: str) -> None:
        """Print a progress line unless the run is quiet (``progress=False``)."""
        if self.progress:
            print(msg, flush=True)

    def validate(self, world_size: int = 1) -> None:
        """Check every option; raise :class:`ConfigError` naming the first bad one and its range.

        Checks the values this configuration has (call it on :meth:`resolved` to check the
        defaults too). ``world_size``: the number of processes of a distributed run.
        """
        _validate(self, world_size)


class ResolvedTrainConfig(TrainConfig):
    """A :class:`TrainConfig` after :meth:`TrainConfig.resolved`: the options every model has a
    default for are set. The model-specific ones (:data:`APPLIES_TO`) stay ``None`` for the
    models without them."""

    epochs: int
    hidden: int
    tau: float
    batch_size: int
    lr: float
    out: str


# ---------------------------------------------------------------------------------------- checks


def _int(cfg: TrainConfig, name: str, minimum: int, maximum: int | None = None, what: str = "") -> None:
    value = getattr(cfg, name)
    if value is None:
        return
    rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{flag(name)} must be an integer {rng}{what}; got {value!r}")


def _float(
    cfg: TrainConfig,
    name: str,
    low: float,
    high: float = math.inf,
    low_open: bool = True,
    unit: str = "",
    what: str = "",
) -> None:
    value = getattr(cfg, name)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        if math.isinf(high):
            rng = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            rng = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigError(f"{flag(name)} must be {rng}{unit}{what}; got {value!r}")


def _validate(cfg: TrainConfig, world_size: int) -> None:
    if cfg.model not in MODELS:
        raise ConfigError(f"model must be one of {', '.join(MODELS)}; got {cfg.model!r}")
    for name, models in APPLIES_TO.items():
        if getattr(cfg, name) is not None and cfg.model not in models:
            raise ConfigError(
                f"{flag(name)} applies to the model{'s' if len(models) > 1 else ''} {', '.join(models)}, "
                f"not {cfg.model}"
            )
    if cfg.model == "ipd-membrane" and cfg.hidden not in (None, 0):
        raise ConfigError(f"--hidden does not apply to ipd-membrane (it has no hidden layer); got {cfg.hidden!r}")
    _int(cfg, "epochs", 0, what=" (0: evaluate without training)")
    _int(cfg, "seed", 0, MAX_SEED)
    if cfg.model != "ipd-membrane":
        _int(cfg, "hidden", 1)
    _float(cfg, "tau", 0.0, unit=" (ms)")
    _float(cfg, "tau_syn", 0.0, unit=" (ms)")
    _int(cfg, "batch_size", 1)
    _float(cfg, "lr", 0.0)
    _int(cfg, "train_batches", 1)
    _int(cfg, "test_batches", 1)
    _int(cfg, "anf_per_ear", 1)
    _float(cfg, "envelope_power", 0.0, low_open=False)
    _float(cfg, "ie_ratio", 0.0, 1.0, low_open=False, what=" (the fraction of inhibitory presynaptic units)")
    _int(cfg, "patience", 0, what=" (0: no early stopping)")
    _int(cfg, "nb_steps", 2, what=" (time bins; the binning floor(t * (nb_steps - 1) / max_time) needs 2)")
    _float(cfg, "max_time", 0.0, unit=" (seconds)", what=" (a window <= 0 drops every spike)")
    _int(cfg, "shd_train_samples", 1)
    _int(cfg, "shd_test_samples", 1)
    _validate_evidence(cfg)
    if cfg.backend not in (None, "compiled", "reference"):
        raise ConfigError(f"--backend must be compiled or reference; got {cfg.backend!r}")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run in --out, or start afresh")
    _validate_device(cfg.device, world_size)
    if cfg.model == "evidence" and cfg.compare_naive:
        raise ConfigError(
            "--compare-naive does not apply to evidence: seed 003 is a NEST simulation, with no PyTorch loop "
            "to time against (--backend reference runs snnkern's plain PyTorch loop)"
        )
    if world_size > 1 and cfg.compare_naive:
        raise ConfigError("--compare-naive times the seed's loop in one process: run it without torchrun")
    if cfg.batch_size is not None and world_size > 1 and cfg.batch_size % world_size:
        raise ConfigError(
            f"--batch-size is the global batch, split evenly over the {world_size} processes: it must be a "
            f"multiple of {world_size}; got {cfg.batch_size}"
        )
    if (
        cfg.model == "shd"
        and cfg.data is None
        and cfg.batch_size is not None
        and cfg.shd_train_samples is not None
        and cfg.batch_size > cfg.shd_train_samples
    ):
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the training data (--shd-train-samples "
            f"{cfg.shd_train_samples}): no batch to train on; use a batch size <= {cfg.shd_train_samples}"
        )
    _validate_paths(cfg)
    _validate_memory(cfg)


def _validate_evidence(cfg: TrainConfig) -> None:
    """The options of the evidence-accumulation task (seed 003)."""
    if cfg.rule is not None and cfg.rule not in RULES:
        raise ConfigError(f"--rule must be one of {', '.join(RULES)}; got {cfg.rule!r}")
    if cfg.feedback is not None:
        if cfg.feedback not in FEEDBACK:
            raise ConfigError(f"--feedback must be one of {', '.join(FEEDBACK)}; got {cfg.feedback!r}")
        if cfg.rule == "bptt":
            raise ConfigError(
                "--feedback applies to --rule eprop (its learning signals); bptt backpropagates through the "
                "readout weights themselves"
            )
    _int(cfg, "iterations", 1, what=" (training iterations per epoch)")
    _int(cfg, "val_batches", 1)
    _float(cfg, "c_reg", 0.0, low_open=False)
    _float(cfg, "f_target", 0.0, 1.0, low_open=False, what=" (spikes per 1 ms step: 0.01 is 10 Hz)")
    _int(cfg, "n_cues", 1)
    if cfg.n_cues is not None and cfg.n_cues % 2 == 0:
        raise ConfigError(f"--n-cues must be odd, so that one side always has the majority; got {cfg.n_cues}")
    _int(cfg, "cue_steps", 1)
    _int(cfg, "spacing_steps", 0)
    _int(cfg, "delay_steps", 0)
    _int(cfg, "recall_steps", 1)


def _validate_device(device: str, world_size: int) -> None:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N; got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N; got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device here (torch.cuda.is_available() is False)")
        if world_size > 1 and dev.index is not None:
            raise ConfigError(
                f"--device {device}: under torchrun give --device cuda; process LOCAL_RANK uses cuda:LOCAL_RANK"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {device}: there are {count} CUDA devices (cuda:0 .. cuda:{count - 1})")


def _validate_paths(cfg: TrainConfig) -> None:
    if cfg.out is not None and not str(cfg.out).strip():
        raise ConfigError("--out must name a folder; got an empty string")
    if cfg.out and os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise ConfigError(f"--out {cfg.out!r} is a file, not a folder")
    if cfg.data is not None:
        if not os.path.isdir(cfg.data):
            raise DataFileNotFoundError(
                f"SHD file not found: --data {cfg.data!r} is not a folder. Put the official shd_train.h5 / "
                "shd_test.h5 there (https://zenkelab.org/datasets/), or omit --data to generate synthetic "
                "SHD-format files."
            )
        for name in ("shd_train.h5", "shd_test.h5"):
            path = os.path.join(cfg.data, name)
            if not os.path.isfile(path):
                raise DataFileNotFoundError(
                    f"SHD file not found: {path!r}. Put the official shd_train.h5 / shd_test.h5 in --data "
                    "(https://zenkelab.org/datasets/), or omit --data to generate synthetic SHD-format files."
                )


def _memory_limit(device: str) -> tuple[float, str] | None:
    dev = torch.device(device)
    if dev.type == "cuda":
        return float(torch.cuda.get_device_properties(dev.index or 0).total_memory), "GPU memory"
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "memory"
    except (ValueError, OSError, AttributeError):
        return None


def _validate_memory(cfg: TrainConfig) -> None:
    """Refuse sizes whose data, weights or activations alone exceed the machine's memory."""
    try:
        r = cfg.resolved()
    except ConfigError:
        return
    limit = _memory_limit(r.device)
    if limit is None:
        return
    h, b = r.hidden, r.batch_size
    parts: dict[str, float] = {}
    if r.model in IPD_MODELS:
        a, steps = r.anf_per_ear or 0, 100
        samples = b * ((r.train_batches or 0) * (2 if r.model == "ipd-dales" else 1) + (r.test_batches or 0))
        per_value = 5 if r.noise_offsets else 1  # bool spikes (+ float32 uniforms with noise offsets)
        parts["the IPD data (--batch-size x --train-batches/--test-batches x --anf-per-ear)"] = (
            samples * steps * 2 * a * per_value
        )
        parts["the weights (--hidden x --anf-per-ear)"] = 16.0 * (2 * a * h + 12 * h + 24 * a)
        parts["one batch's activations (--batch-size x --hidden/--anf-per-ear)"] = 4.0 * b * steps * (2 * a + 8 * h)
    elif r.model == "evidence":
        steps = (r.n_cues or 0) * ((r.cue_steps or 0) + (r.spacing_steps or 0))
        steps += (r.delay_steps or 0) + (r.recall_steps or 0)
        parts["the weights (--hidden)"] = 16.0 * (40 * h + h * h + 4 * h)
        # input spikes and their uniforms, and about 12 float traces per neuron and step for backward
        parts["one batch's activations (--batch-size x trial steps x --hidden)"] = 4.0 * b * steps * (80 + 12 * h)
    else:
        steps = r.nb_steps or 0
        parts["the weights (--hidden)"] = 16.0 * (700 * h + h * h + 20 * h)
        parts["one batch's activations (--batch-size x --nb-steps x --hidden)"] = 4.0 * b * steps * (700 + 8 * h)
    total, (available, what) = sum(parts.values()), limit
    if total > available:
        worst = max(parts, key=lambda k: parts[k])
        raise ConfigError(
            f"these options need about {total / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB of "
            f"{what} here; the largest part is {worst}: {parts[worst] / 2**30:.1f} GiB"
        )


def check_resume_options(saved: dict[str, Any], cfg: ResolvedTrainConfig, path: str) -> list[str]:
    """The differences between the options of a checkpoint and of this run that --resume refuses.

    Options in :data:`CHANGEABLE_ON_RESUME` may differ, and so may options that do not apply to
    the model (an older snnkern stored them all).
    """
    diffs = []
    for f in fields(cfg):
        name = f.name
        if name in CHANGEABLE_ON_RESUME or name not in saved:
            continue
        if name in APPLIES_TO and cfg.model not in APPLIES_TO[name]:
            continue
        old, new = saved[name], getattr(cfg, name)
        if old != new:
            diffs.append(f"{flag(name)}: checkpoint {old!r}, now {new!r}")
    return diffs
