"""Options of a training run and the seed models' defaults."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Dict, Optional

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

    def log(self, msg: str) -> None:
        """Print a progress line unless the run is quiet (``progress=False``)."""
        if self.progress:
            print(msg, flush=True)
