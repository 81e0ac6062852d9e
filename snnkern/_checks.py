"""Argument checking shared by the compiled ops and the reference backend.

Every public entry point calls ``prepare_lif_args`` or ``prepare_leaky_args`` so that bad
input gets the same clear error whichever backend runs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .surrogate import Surrogate

# The names of the options. The compiled kernels switch on integer codes, which the extension
# exports by these names (snnkern._C.ORDERINGS, ...; csrc/ops.cpp); tests check that both agree.
ORDERINGS = ("delayed", "spike_first", "update_first")
RESETS = ("zero", "subtract", "none")
# Rows of the packed neuron state tensor [STATE_SIZE, batch, neurons]: membrane, synaptic current,
# previous membrane (snnkern._C.STATE_ROWS).
STATE_ROWS = ("v", "i", "w")
STATE_V, STATE_I, STATE_W = (STATE_ROWS.index(row) for row in ("v", "i", "w"))
STATE_SIZE = len(STATE_ROWS)

Decay = float | torch.Tensor


def decay(tau: float, dt: float) -> float:
    """The per-step decay factor ``exp(-dt / tau)`` of a time constant ``tau`` (same unit as ``dt``)."""
    for name, value in (("tau", tau), ("dt", dt)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite time > 0, got {value!r}")
    return math.exp(-dt / tau)


class LIFArgs(NamedTuple):
    x: torch.Tensor
    alpha: torch.Tensor  # [N], accumulate dtype (float64 for float64 x, else float32)
    alpha_syn: torch.Tensor | None
    state: torch.Tensor  # [STATE_SIZE, B, N], accumulate dtype
    threshold: float
    ordering: str
    reset: str
    detach_reset: bool
    surrogate: Surrogate


def _check_input(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape [batch, time, neurons] (3-D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_beside(t: torch.Tensor, name: str, x: torch.Tensor, same_dtype: bool = True) -> None:
    """``t`` must be on the device of ``x`` (and, with same_dtype, have its dtype, unless autocast
    is on for that device: the ops' autocast rules then cast both)."""
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}; put both on one device")
    autocast = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
    if same_dtype and t.dtype != x.dtype and not (autocast and t.is_floating_point()):
        raise ValueError(f"{name} has dtype {t.dtype}, expected the dtype of x, {x.dtype}")


def _values_checkable(t: torch.Tensor) -> bool:
    # Value checks need the data on the host: skip them while torch.compile traces.
    return not torch.compiler.is_compiling() and t.device.type != "meta"


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in, and keep the decays and the state in: float64 for float64
    sequences, float32 for float32, float16 and bfloat16 ones (half-precision inputs keep their
    time constants exact: alpha 0.99 would round to 0.98828 in bfloat16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _as_decay(value: Decay, name: str, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[2]
    if isinstance(value, torch.Tensor):
        _check_beside(value, name, x, same_dtype=False)
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] not in (1, n)):
            raise ValueError(f"{name} must be a scalar or have shape [neurons] = [{n}], got shape {tuple(value.shape)}")
        if _values_checkable(value) and value.numel() and not bool(((value >= 0) & (value <= 1)).all()):
            raise ValueError(f"{name} must lie in [0, 1] (a decay exp(-dt/tau)); got values outside, NaN or inf")
        return value.to(accumulate_dtype(x.dtype)).reshape(-1).expand(n)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if not (0 <= value <= 1):  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1] (a decay exp(-dt/tau)), got {value!r}")
    return torch.full((n,), float(value), dtype=accumulate_dtype(x.dtype), device=x.device)


def _as_state(state: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    b, _, n = x.shape
    if state is None:
        return x.new_zeros(STATE_SIZE, b, n, dtype=accumulate_dtype(x.dtype))
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"state must be a torch.Tensor, got {type(state).__name__}")
    if tuple(state.shape) != (STATE_SIZE, b, n):
        raise ValueError(
            f"state must have shape [{STATE_SIZE}, batch, neurons] = [{STATE_SIZE}, {b}, {n}] "
            f"(as returned by a previous call), got shape {tuple(state.shape)}"
        )
    _check_beside(state, "state", x, same_dtype=False)
    if not state.is_floating_point():
        raise ValueError(f"state must be a floating-point tensor, got dtype {state.dtype}")
    return state.to(accumulate_dtype(x.dtype))


def _check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def prepare_lif_args(
    x: torch.Tensor,
    alpha: Decay,
    alpha_syn: Decay | None,
    state: torch.Tensor | None,
    threshold: float,
    ordering: str,
    reset: str,
    detach_reset: bool,
    surrogate: Surrogate,
) -> LIFArgs:
    _check_input(x)
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {sorted(ORDERINGS)}, got {ordering!r}")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {sorted(RESETS)}, got {reset!r}")
    if not isinstance(surrogate, Surrogate):
        raise TypeError(f"surrogate must be a snnkern.surrogate.Surrogate (e.g. Sigmoid(5.0)), got {surrogate!r}")
    return LIFArgs(
        x=x,
        alpha=_as_decay(alpha, "alpha", x),
        alpha_syn=None if alpha_syn is None else _as_decay(alpha_syn, "alpha_syn", x),
        state=_as_state(state, x),
        threshold=_check_positive(threshold, "threshold"),
        ordering=ordering,
        reset=reset,
        detach_reset=bool(detach_reset),
        surrogate=surrogate,
    )


def prepare_leaky_args(
    x: torch.Tensor, alpha: Decay, alpha_syn: Decay | None, state: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Checks of :func:`snnkern.leaky`; returns (x, alpha, alpha_syn, state) as the op takes them."""
    _check_input(x)
    return (
        x,
        _as_decay(alpha, "alpha", x),
        None if alpha_syn is None else _as_decay(alpha_syn, "alpha_syn", x),
        _as_state(state, x),
    )


class RecurrentArgs(NamedTuple):
    lif: LIFArgs
    weight: torch.Tensor  # [N, N]
    spikes: torch.Tensor  # [B, N], the spikes of the step before the first


def prepare_recurrent_args(
    x: torch.Tensor,
    weight: torch.Tensor,
    spikes: torch.Tensor | None,
    alpha: Decay,
    alpha_syn: Decay | None,
    state: torch.Tensor | None,
    threshold: float,
    ordering: str,
    reset: str,
    detach_reset: bool,
    surrogate: Surrogate,
) -> RecurrentArgs:
    a = prepare_lif_args(x, alpha, alpha_syn, state, threshold, ordering, reset, detach_reset, surrogate)
    b, _, n = x.shape
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor of shape [neurons, neurons], got {type(weight).__name__}")
    if tuple(weight.shape) != (n, n):
        raise ValueError(
            f"weight must have shape [neurons, neurons] = [{n}, {n}] ([out, in], as "
            f"torch.nn.Linear), got shape {tuple(weight.shape)}"
        )
    _check_beside(weight, "weight", x)
    if spikes is None:
        spikes = x.new_zeros(b, n)
    elif not isinstance(spikes, torch.Tensor):
        raise TypeError(f"spikes must be a torch.Tensor of shape [batch, neurons], got {type(spikes).__name__}")
    elif tuple(spikes.shape) != (b, n):
        raise ValueError(
            f"spikes (those of the step before the first) must have shape [batch, neurons] = "
            f"[{b}, {n}], got shape {tuple(spikes.shape)}"
        )
    else:
        _check_beside(spikes, "spikes", x, same_dtype=False)
    return RecurrentArgs(a, weight, spikes.to(x.dtype))


def prepare_spike_linear_args(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Checks of :func:`snnkern.spike_linear`; returns (x as [rows, in_features], weight, bias)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [..., in_features], got {type(x).__name__}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor [out_features, in_features], got {type(weight).__name__}")
    if x.dim() < 1:
        raise ValueError("x must have at least one dimension [..., in_features], got a scalar")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point (spikes as 0/1 values), got dtype {x.dtype}")
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"weight must have shape [out_features, in_features] = [*, {x.shape[-1]}] to match the "
            f"last dimension of x, got shape {tuple(weight.shape)}"
        )
    _check_beside(weight, "weight", x)
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor [out_features] or None, got {type(bias).__name__}")
        _check_beside(bias, "bias", x)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias must have shape [out_features] = [{weight.shape[0]}], got {tuple(bias.shape)}")
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1]), weight, bias
