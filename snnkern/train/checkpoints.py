"""Checkpoints: weights, optimiser, loop state (mid-epoch position included) and the global RNG states.

A checkpoint is data, not code: it holds only tensors, numbers, strings and plain containers,
and is read with ``torch.load(weights_only=True)``, which refuses anything else (a file crafted to
run code when unpickled is rejected without running it). Every problem reading one raises
:class:`~snnkern.train.errors.CheckpointError` naming the file and what is wrong.

Writes go to ``PATH.tmp``, are flushed to disk, then renamed over ``PATH``: a run killed while
saving keeps its previous checkpoint.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, CheckpointNotFoundError

FORMAT = "snnkern-train-checkpoint"
VERSION = 2
REQUIRED_KEYS = ("model", "optimizer", "rng", "config", "epoch", "history")


def rng_states() -> dict[str, Any]:
    """The global torch, numpy, python (and CUDA) RNG states, as tensors and plain values only."""
    # Saving (not drawing from) numpy's legacy global RNG: --resume restores it for any code that
    # draws from it, so the Generator API NPY002 asks for does not apply.
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"].cpu())
    npy = states["numpy"]
    if isinstance(npy, dict):
        keys = np.asarray(npy["keys"].cpu().numpy(), dtype=np.uint32)
        npy = (npy["bit_generator"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(npy)  # noqa: NPY002 (restores the global state rng_states saved)
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def save_checkpoint(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format marker) to ``path`` atomically."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _numpy_globals() -> list[Any]:
    """The numpy constructors a checkpoint of snnkern 0.1 holds (its numpy RNG state): data only."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _first_line(error: BaseException) -> str:
    """The line of an error message that says what is wrong (torch.load's are long)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for k, line in enumerate(lines):
        if "Unsupported global" in line:
            return line[line.index("Unsupported global") :].split(" was not an allowed global")[0]
        if line.endswith("WeightsUnpickler error:") and k + 1 < len(lines):
            return "WeightsUnpickler: " + lines[k + 1]
    return lines[0] if lines else type(error).__name__


def read_checkpoint(path: str, device: torch.device | str | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``); check its keys."""
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"--resume: no checkpoint at {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors, numbers, strings and plain "
                f"containers ({_first_line(error)}): refusing to load it, since unpickling such a file can "
                "run arbitrary code. It was not written by snnkern's training loop."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is not a readable checkpoint (truncated or corrupted file, or not written by "
            f"torch.save; refusing to unpickle it further): {_first_line(error)}"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        raise CheckpointError(
            f"checkpoint {path} is not a readable checkpoint (truncated or corrupted file?): {_first_line(error)}"
        ) from None
    except zipfile.BadZipFile as error:
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (corrupted archive): {error}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(ckpt).__name__}, not a snnkern training checkpoint (a dict)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks the key(s) {missing}: not a snnkern training checkpoint "
            f"(expected {list(REQUIRED_KEYS)})"
        )
    if "format" in ckpt and ckpt["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {ckpt['format']!r}, not {FORMAT!r}")
    if isinstance(ckpt.get("version"), int) and ckpt["version"] > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {ckpt['version']}, newer than this snnkern reads ({VERSION})"
        )
    config, epoch, step = ckpt["config"], ckpt["epoch"], ckpt.get("step", 0)
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise CheckpointError(f"checkpoint {path}: its 'config' is not a dict of options with a model name")
    if not (isinstance(epoch, int) and epoch >= 0 and isinstance(step, int) and step >= 0):
        raise CheckpointError(f"checkpoint {path}: invalid position epoch={epoch!r}, step={step!r}")
    history = ckpt["history"]
    if not isinstance(history, dict) or not isinstance(history.get("train_loss"), list):
        raise CheckpointError(f"checkpoint {path}: its 'history' is not a dict with a train_loss list")
    for key in ("model", "optimizer"):
        if not isinstance(ckpt[key], dict):
            raise CheckpointError(f"checkpoint {path}: {key!r} is a {type(ckpt[key]).__name__}, not a state dict")
    return ckpt


def restore_checkpoint(
    ckpt: dict[str, Any], path: str, model_name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Load weights, optimiser and RNG states of ``ckpt`` (read from ``path``) into a ``model_name`` run."""
    saved_model = ckpt["config"]["model"]
    if saved_model != model_name:
        raise CheckpointError(f"checkpoint {path} is for model {saved_model!r}, not {model_name!r}")
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit the {model_name} model of these options: "
            + " ".join(str(error).split())
        ) from None
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as error:
        raise CheckpointError(f"checkpoint {path}: its optimiser state does not fit the model: {error}") from None
    try:
        set_rng_states(ckpt["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise CheckpointError(f"checkpoint {path}: invalid RNG states ({type(error).__name__}: {error})") from None


def load_checkpoint(
    path: str,
    model_name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str | None,
) -> dict[str, Any]:
    """Restore weights, optimiser and RNG states saved by a run of ``model_name``; returns the checkpoint."""
    ckpt = read_checkpoint(path, device)
    restore_checkpoint(ckpt, path, model_name, model, optimizer)
    return ckpt
