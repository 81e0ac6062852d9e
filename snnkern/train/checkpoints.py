"""Per-epoch checkpoints: weights, optimiser, loop state and the global RNG states."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    """The global torch, numpy, python (and CUDA) RNG states."""
    # Saving (not drawing from) numpy's legacy global RNG: --resume restores it for any code that
    # draws from it, so the Generator API NPY002 asks for does not apply.
    numpy_state = np.random.get_state()  # noqa: NPY002
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])  # noqa: NPY002 (restores the global state rng_states saved)
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str, payload: dict[str, Any]) -> None:
    # write then rename, so an interrupted save never leaves a truncated checkpoint behind
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: str,
    model_name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str | None,
) -> dict[str, Any]:
    """Restore weights, optimiser and RNG states saved by a run of ``model_name``; returns the checkpoint."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if ckpt["config"]["model"] != model_name:
        raise ValueError(f"checkpoint {path} is for model {ckpt['config']['model']!r}, not {model_name!r}")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_states(ckpt["rng"])
    return ckpt
