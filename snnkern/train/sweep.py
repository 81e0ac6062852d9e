"""The envelope-power sweep of the IPD tutorial (seed 000): repeated trainings per power, mean +/- std."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .config import TrainConfig
from .loop import train

SWEPT_METRICS = ("test_accuracy", "test_abs_error_deg", "train_accuracy")


def sweep_envelope_power(values: Sequence[float], repeats: int, base: TrainConfig, out: str) -> dict[str, Any]:
    """Repeat the seed-000 training (``base.model``) for each envelope power; mean +/- std of the metrics."""
    from .. import plots  # needs matplotlib: fail before the trainings, not after them

    os.makedirs(out, exist_ok=True)
    rows = []
    for value in values:
        for r in range(repeats):
            cfg = replace(
                base,
                envelope_power=float(value),
                seed=base.seed + r,
                plots=False,
                resume=False,
                out=os.path.join(out, f"power_{value:g}_seed_{base.seed + r}"),
            )
            m = train(cfg)
            rows.append(dict(envelope_power=float(value), seed=cfg.seed, **{k: m[k] for k in SWEPT_METRICS}))
    summary = []
    for value in values:
        sel = [r for r in rows if r["envelope_power"] == float(value)]
        entry = dict(envelope_power=float(value), repeats=len(sel))
        for key in SWEPT_METRICS:
            arr = np.array([r[key] for r in sel])
            entry[key + "_mean"], entry[key + "_std"] = float(arr.mean()), float(arr.std())
        summary.append(entry)
    result = dict(runs=rows, summary=summary)
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump(result, f, indent=2)
    plots.sweep_figure(os.path.join(out, "sweep_envelope_power.png"), summary)
    for e in summary:
        print(
            f"envelope power {e['envelope_power']:g}: test accuracy {e['test_accuracy_mean']:.1f} +/- "
            f"{e['test_accuracy_std']:.1f} %, abs error {e['test_abs_error_deg_mean']:.1f} +/- "
            f"{e['test_abs_error_deg_std']:.1f} deg ({e['repeats']} runs)"
        )
    return result
