"""Options of a training run and the seed models' defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

MODELS = ("ipd", "ipd-membrane", "ipd-dales", "shd")

DEFAULTS: dict[str, dict[str, Any]] = {
    "ipd": dict(epochs=10, lr=0.01, batch_size=64, hidden=100, tau=20.0, train_batches=64, test_batches=32),
    "ipd-membrane": dict(epochs=10, lr=0.01, batch_size=64, hidden=0, tau=20.0, train_batches=64, test_batches=32),
    "ipd-dales": dict(
        epochs=150,
        lr=0.005,
        batch_size=64,
        hidden=30,
        tau=5.0,
        train_batches=64,
        test_batches=32,
        ie_ratio=0.5,
        patience=10,
    ),
    "shd": dict(epochs=200, lr=2e-4, batch_size=256, hidden=128, tau=10.0, tau_syn=5.0),
}


@dataclass
class TrainConfig:
    """Options of one training run; ``None`` means the model's default from :data:`DEFAULTS`."""

    model: str = "ipd"
    epochs: int | None = None
    seed: int = 0
    device: str = "cpu"
    hidden: int | None = None
    tau: float | None = None  # ms (membrane time constant)
    tau_syn: float | None = None  # ms (shd only)
    batch_size: int | None = None
    lr: float | None = None
    out: str | None = None
    resume: bool = False
    # IPD
    train_batches: int | None = None
    test_batches: int | None = None
    envelope_power: float = 2.0
    anf_per_ear: int = 100
    ie_ratio: float | None = None
    patience: int | None = None  # early stopping (ipd-dales); 0 disables
    noise_offsets: bool | None = None  # default: on for ipd-dales only
    # SHD
    data: str | None = None
    nb_steps: int = 100
    max_time: float = 1.0
    shd_train_samples: int = 2560
    shd_test_samples: int = 768
    # run
    compare_naive: bool = False
    plots: bool = True
    progress: bool = True
    backend: str | None = None

    def resolved(self) -> ResolvedTrainConfig:
        """This configuration with the model's defaults filled in where it says ``None``."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        d = DEFAULTS[self.model]
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        values |= {
            k: (getattr(self, k) if getattr(self, k) is not None else d.get(k))
            for k in (
                "epochs",
                "hidden",
                "tau",
                "tau_syn",
                "batch_size",
                "lr",
                "train_batches",
                "test_batches",
                "ie_ratio",
                "patience",
            )
        }
        values["noise_offsets"] = self.noise_offsets if self.noise_offsets is not None else self.model == "ipd-dales"
        values["out"] = self.out or os.path.join("runs", self.model)
        return ResolvedTrainConfig(**values)

    def log(self, msg: str) -> None:
        """Print a progress line unless the run is quiet (``progress=False``)."""
        if self.progress:
            print(msg, flush=True)


class ResolvedTrainConfig(TrainConfig):
    """A :class:`TrainConfig` after :meth:`TrainConfig.resolved`: the options every model has a
    default for are set. The model-specific ones (``train_batches``, ``test_batches``,
    ``ie_ratio``, ``patience``, ``tau_syn``) stay ``None`` for the models without them."""

    epochs: int
    hidden: int
    tau: float
    batch_size: int
    lr: float
    out: str
    noise_offsets: bool
