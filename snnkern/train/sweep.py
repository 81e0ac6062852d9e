"""The envelope-power sweep of the IPD tutorial (seed 000): repeated trainings per power, mean +/- std."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .config import TrainConfig
from .distributed import world_size_from_env
from .errors import ConfigError
from .loop import CHECKPOINT, train, write_json

SWEPT_METRICS = ("test_accuracy", "test_abs_error_deg", "train_accuracy")


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)  # metrics.json writes NaN as null


def _run_config(base: TrainConfig, value: float, r: int, out: str) -> TrainConfig:
    cfg_out = os.path.join(out, f"power_{value:g}_seed_{base.seed + r}")
    # --resume continues the runs that have a checkpoint and starts the others
    resume = base.resume and os.path.exists(os.path.join(cfg_out, CHECKPOINT))
    return replace(base, envelope_power=float(value), seed=base.seed + r, plots=False, resume=resume, out=cfg_out)


def validate_sweep(values: Sequence[float], repeats: int, base: TrainConfig, out: str, world_size: int = 1) -> None:
    """Check the sweep's options and every run's configuration before the first training."""
    if not values:
        raise ConfigError("--values: give at least one envelope power")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"--repeats must be an integer >= 1; got {repeats!r}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out!r} is a file, not a folder")
    if base.envelope_power is not None:
        raise ConfigError("--envelope-power is what the sweep varies: give the powers with --values")
    folders: dict[str, float] = {}
    for value in values:
        for r in range(repeats):
            cfg = _run_config(base, value, r, out)
            cfg.resolved().validate(world_size)
            if r == 0 and cfg.out in folders:
                raise ConfigError(
                    f"--values: {folders[cfg.out]!r} and {value!r} name the same run folder {cfg.out}; "
                    "give each power once (6 significant digits tell them apart)"
                )
            folders[cfg.out or ""] = value


def sweep_envelope_power(values: Sequence[float], repeats: int, base: TrainConfig, out: str) -> dict[str, Any]:
    """Repeat the seed-000 training (``base.model``) for each envelope power; mean +/- std of the metrics."""
    from .. import plots  # needs matplotlib: fail before the trainings, not after them

    validate_sweep(values, repeats, base, out, world_size_from_env())
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if rank == 0:
        os.makedirs(out, exist_ok=True)
    rows = []
    for value in values:
        for r in range(repeats):
            cfg = _run_config(base, value, r, out)
            m = train(cfg)
            rows.append(dict(envelope_power=float(value), seed=cfg.seed, **{k: _number(m[k]) for k in SWEPT_METRICS}))
    summary = []
    for value in values:
        sel = [r for r in rows if r["envelope_power"] == float(value)]
        entry = dict(envelope_power=float(value), repeats=len(sel))
        for key in SWEPT_METRICS:
            arr = np.array([r[key] for r in sel])
            entry[key + "_mean"], entry[key + "_std"] = float(arr.mean()), float(arr.std())
        summary.append(entry)
    result = dict(runs=rows, summary=summary)
    if rank != 0:
        return result
    write_json(os.path.join(out, "sweep.json"), result)
    plots.sweep_figure(os.path.join(out, "sweep_envelope_power.png"), summary)
    for e in summary:
        print(
            f"envelope power {e['envelope_power']:g}: test accuracy {e['test_accuracy_mean']:.1f} +/- "
            f"{e['test_accuracy_std']:.1f} %, abs error {e['test_abs_error_deg_mean']:.1f} +/- "
            f"{e['test_abs_error_deg_std']:.1f} deg ({e['repeats']} runs)"
        )
    return result
