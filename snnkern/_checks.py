"""Argument checking shared by the compiled ops and the reference backend.

Every public entry point calls ``prepare_lif_args`` or ``prepare_leaky_args`` so that bad
input gets the same clear error whichever backend runs.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from .surrogate import Sigmoid, Surrogate

# The names of the options. The compiled kernels switch on integer codes, which the extension
# exports by these names (snnkern._C.ORDERINGS, ...; csrc/ops.cpp); tests check that both agree.
ORDERINGS = ("delayed", "spike_first", "update_first", "charge_first")
RESETS = ("zero", "subtract", "none")
SPIKES = ("binary", "multi")  # a 0/1 spike, or a spike count (membrane // threshold)
# Rows of the packed neuron state tensor [STATE_SIZE, batch, neurons]: membrane, synaptic current,
# previous membrane (snnkern._C.STATE_ROWS).
STATE_ROWS = ("v", "i", "w")
STATE_V, STATE_I, STATE_W = (STATE_ROWS.index(row) for row in ("v", "i", "w"))
STATE_SIZE = len(STATE_ROWS)
# Neurons with threshold adaptation or a refractory period carry two more rows: the adaptation
# ``a`` and the refractory counter (steps left in which the neuron cannot fire).
ADAPTIVE_STATE_ROWS = (*STATE_ROWS, "a", "refractory")
STATE_A, STATE_REFRACTORY = (ADAPTIVE_STATE_ROWS.index(row) for row in ("a", "refractory"))
ADAPTIVE_STATE_SIZE = len(ADAPTIVE_STATE_ROWS)

Decay = float | torch.Tensor


def decay(tau: float, dt: float) -> float:
    """The per-step decay factor ``exp(-dt / tau)`` of a time constant ``tau`` (same unit as ``dt``)."""
    for name, value in (("tau", tau), ("dt", dt)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite time > 0, got {value!r}")
    return math.exp(-dt / tau)


class Layout(NamedTuple):
    """How the caller's sequence ``x`` maps onto the kernels' lanes ``[B, T, N]``.

    Neurons are independent in a feed-forward scan, so a time-major ``[T, B, *neurons]`` tensor
    that is contiguous runs as one "batch row" of ``B * N`` neurons (``folded``): no copy. Any
    other layout is viewed (or, where strides do not allow, copied) as ``[B, T, N]``.
    """

    batch: int
    neuron_shape: tuple[int, ...]
    batch_first: bool
    folded: bool  # time-major x running as [1, T, B * N]

    def sequence(self, t: torch.Tensor) -> torch.Tensor:
        """A kernel sequence [B', T, N'] back in the caller's layout and shape."""
        if self.folded:
            return t.view(t.shape[1], self.batch, *self.neuron_shape)
        t = t.reshape(self.batch, t.shape[1], *self.neuron_shape)
        return t if self.batch_first else t.transpose(0, 1)

    def state(self, s: torch.Tensor) -> torch.Tensor:
        """A kernel state [STATE_SIZE, B', N'] as [STATE_SIZE, batch, *neurons]."""
        return s.reshape(s.shape[0], self.batch, *self.neuron_shape)


class LIFArgs(NamedTuple):
    x: torch.Tensor  # [B', T, N'] lanes (Layout)
    alpha: torch.Tensor  # [N'], accumulate dtype (float64 for float64 x, else float32)
    alpha_syn: torch.Tensor | None
    threshold: torch.Tensor  # [N'], accumulate dtype
    state: torch.Tensor  # [STATE_SIZE, B', N'], accumulate dtype
    ordering: str
    reset: str
    v_reset: float
    v_leak: float
    detach_reset: bool
    current_first: bool
    spike: str
    surrogate: Surrogate
    layout: Layout
    adaptation: torch.Tensor | None  # [2, N']: rows decay rho, strength beta; accumulate dtype
    refractory: int  # steps after a spike in which the neuron cannot fire

    @property
    def extended(self) -> bool:
        """Whether the state has the adaptation and refractory rows (ADAPTIVE_STATE_SIZE)."""
        return self.adaptation is not None or self.refractory > 0


def _check_input(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(
            f"{name} must have shape [batch, time, *neurons] (or [time, batch, *neurons] with "
            f"batch_first=False), at least 3-D, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _lanes(x: torch.Tensor, batch_first: bool, foldable: bool = True) -> tuple[torch.Tensor, Layout]:
    """``x`` as the kernels' [B', T, N'] and the layout to restore the outputs."""
    _check_input(x)
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first must be a bool, got {batch_first!r}")
    xb = x if batch_first else x.transpose(0, 1)
    b, t, *neurons = xb.shape
    n = math.prod(neurons)
    folded = foldable and not batch_first and x.is_contiguous() and not xb.is_contiguous()
    layout = Layout(b, tuple(neurons), batch_first, folded)
    return (x.view(1, t, b * n) if folded else xb.reshape(b, t, n)), layout


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


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a tensor of ``shape`` expands to ``target`` (torch.broadcast_shapes costs tens of
    microseconds per call, as much as a short fused scan)."""
    if len(shape) > len(target):
        return False
    return all(n in (1, m) for n, m in zip(reversed(shape), reversed(target), strict=False))


def _per_neuron(value: float | torch.Tensor, name: str, x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """A per-neuron parameter as the kernels' [N'] in the accumulate dtype, from a float or a
    tensor broadcastable to the neuron shape."""
    acc = accumulate_dtype(x.dtype)
    lanes = x.shape[0] * x.shape[2]
    if isinstance(value, torch.Tensor):
        _check_beside(value, name, x, same_dtype=False)
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if not _broadcasts_to(tuple(value.shape), layout.neuron_shape):
            raise ValueError(
                f"{name} must be a scalar or a tensor broadcastable to the neuron shape "
                f"{list(layout.neuron_shape)}, got shape {tuple(value.shape)}"
            )
        t = value.to(acc).expand(layout.neuron_shape)
        if layout.folded:
            t = t.expand(layout.batch, *layout.neuron_shape)
        return t.reshape(lanes if layout.folded else x.shape[2])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return torch.full((x.shape[2],), float(value), dtype=acc, device=x.device)


def _as_decay(value: Decay, name: str, x: torch.Tensor, layout: Layout) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) and isinstance(value, (int, float)) and not (0 <= value <= 1):
        raise ValueError(f"{name} must lie in [0, 1] (a decay exp(-dt/tau)), got {value!r}")  # also NaN
    in_range = lambda t: bool(((t >= 0) & (t <= 1)).all())  # noqa: E731
    if isinstance(value, torch.Tensor) and _values_checkable(value) and value.numel() and not in_range(value):
        raise ValueError(f"{name} must lie in [0, 1] (a decay exp(-dt/tau)); got values outside, NaN or inf")
    return _per_neuron(value, name, x, layout)


def _as_threshold(value: float | torch.Tensor, x: torch.Tensor, layout: Layout, positive: str | None) -> torch.Tensor:
    """``positive``: why the threshold must be > 0 here (None: any finite value)."""
    if isinstance(value, torch.Tensor):
        if _values_checkable(value) and value.numel() and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                raise ValueError("threshold must be finite; got NaN or inf values")
            if positive and not bool((value > 0).all()):
                raise ValueError(f"threshold must be > 0 {positive}; got values <= 0")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"threshold must be a finite number, got {value!r}")
        if positive and value <= 0:
            raise ValueError(f"threshold must be > 0 {positive}, got {value!r}")
    return _per_neuron(value, "threshold", x, layout)


def _as_state(state: torch.Tensor | None, x: torch.Tensor, layout: Layout, rows: int = STATE_SIZE) -> torch.Tensor:
    """``rows``: STATE_SIZE, or ADAPTIVE_STATE_SIZE for neurons with adaptation or refractoriness."""
    b, _, n = x.shape
    if state is None:
        return x.new_zeros(rows, b, n, dtype=accumulate_dtype(x.dtype))
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"state must be a torch.Tensor, got {type(state).__name__}")
    expected = (rows, layout.batch, *layout.neuron_shape)
    if tuple(state.shape) != expected:
        why = " for neurons with adaptation or a refractory period" if rows != STATE_SIZE else ""
        raise ValueError(
            f"state must have shape [{rows}, batch, *neurons] = {list(expected)}{why} "
            f"(as returned by a previous call), got shape {tuple(state.shape)}"
        )
    _check_beside(state, "state", x, same_dtype=False)
    if not state.is_floating_point():
        raise ValueError(f"state must be a floating-point tensor, got dtype {state.dtype}")
    return state.to(accumulate_dtype(x.dtype)).reshape(rows, b, n)


def _as_adaptation(
    decay_value: Decay | None, strength: float | torch.Tensor, x: torch.Tensor, layout: Layout
) -> torch.Tensor | None:
    """The adaptation parameters as the kernels' [2, N']: decay rho, strength beta."""
    if decay_value is None:
        if isinstance(strength, torch.Tensor) or strength != 0:
            raise ValueError("adaptation_strength needs adaptation_decay (the decay of the adaptation state)")
        return None
    rho = _as_decay(decay_value, "adaptation_decay", x, layout)
    checkable = isinstance(strength, torch.Tensor) and _values_checkable(strength) and strength.is_floating_point()
    if isinstance(strength, torch.Tensor):
        if checkable and strength.numel() and not bool(torch.isfinite(strength).all()):
            raise ValueError("adaptation_strength must be finite; got NaN or inf values")
    elif isinstance(strength, (int, float)) and not isinstance(strength, bool) and not math.isfinite(strength):
        raise ValueError(f"adaptation_strength must be a finite number, got {strength!r}")
    return torch.stack([rho, _per_neuron(strength, "adaptation_strength", x, layout)])


def _as_refractory(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"refractory must be a number of steps >= 0 (an int), got {value!r}")
    return value


def _check_finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def prepare_lif_args(
    x: torch.Tensor,
    alpha: Decay,
    *,
    alpha_syn: Decay | None = None,
    state: torch.Tensor | None = None,
    threshold: float | torch.Tensor = 1.0,
    ordering: str = "spike_first",
    reset: str = "zero",
    v_reset: float = 0.0,
    v_leak: float = 0.0,
    detach_reset: bool = False,
    current_first: bool = False,
    spike: str = "binary",
    surrogate: Surrogate = Sigmoid(),
    batch_first: bool = True,
    foldable: bool = True,
    adaptation_decay: Decay | None = None,
    adaptation_strength: float | torch.Tensor = 0.0,
    refractory: int = 0,
) -> LIFArgs:
    """Checks every argument of :func:`snnkern.lif` (the options by name) and brings the tensors
    into the kernels' lanes (:class:`Layout`)."""
    x3, layout = _lanes(x, batch_first, foldable)
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {sorted(ORDERINGS)}, got {ordering!r}")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {sorted(RESETS)}, got {reset!r}")
    if spike not in SPIKES:
        raise ValueError(f"spike must be one of {sorted(SPIKES)}, got {spike!r}")
    if not isinstance(surrogate, Surrogate):
        raise TypeError(f"surrogate must be a snnkern.surrogate.Surrogate (e.g. Sigmoid(5.0)), got {surrogate!r}")
    if spike == "multi":
        if reset == "zero":
            raise ValueError("spike='multi' (spike counts) needs reset='subtract' or 'none', got reset='zero'")
        if isinstance(threshold, torch.Tensor) and threshold.requires_grad:
            raise ValueError("a learnable threshold (one that requires grad) needs spike='binary', got spike='multi'")
    refractory = _as_refractory(refractory)
    if spike == "multi" and (adaptation_decay is not None or refractory):
        raise ValueError("adaptation and refractory periods need spike='binary', got spike='multi'")
    positive = None
    if spike == "multi":
        positive = "for spike='multi' (spike counts are membrane // threshold)"
    elif surrogate.scaled_by_threshold:
        positive = f"for the {type(surrogate).__name__} surrogate, whose width scales with it"
    adaptation = _as_adaptation(adaptation_decay, adaptation_strength, x3, layout)
    rows = ADAPTIVE_STATE_SIZE if adaptation is not None or refractory else STATE_SIZE
    return LIFArgs(
        x=x3,
        alpha=_as_decay(alpha, "alpha", x3, layout),
        alpha_syn=None if alpha_syn is None else _as_decay(alpha_syn, "alpha_syn", x3, layout),
        threshold=_as_threshold(threshold, x3, layout, positive),
        state=_as_state(state, x3, layout, rows),
        ordering=ordering,
        reset=reset,
        v_reset=_check_finite(v_reset, "v_reset"),
        v_leak=_check_finite(v_leak, "v_leak"),
        detach_reset=bool(detach_reset),
        current_first=bool(current_first),
        spike=spike,
        surrogate=surrogate,
        layout=layout,
        adaptation=adaptation,
        refractory=refractory,
    )


def prepare_leaky_args(
    x: torch.Tensor, alpha: Decay, alpha_syn: Decay | None, state: torch.Tensor | None, batch_first: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, Layout]:
    """Checks of :func:`snnkern.leaky`; returns (x, alpha, alpha_syn, state) as the op takes them
    and the layout to restore its outputs."""
    x3, layout = _lanes(x, batch_first)
    return (
        x3,
        _as_decay(alpha, "alpha", x3, layout),
        None if alpha_syn is None else _as_decay(alpha_syn, "alpha_syn", x3, layout),
        _as_state(state, x3, layout),
        layout,
    )


class RecurrentArgs(NamedTuple):
    lif: LIFArgs
    weight: torch.Tensor  # [N, N]
    spikes: torch.Tensor  # [B, N], the spikes of the step before the first


def prepare_recurrent_args(
    x: torch.Tensor, weight: torch.Tensor, spikes: torch.Tensor | None, alpha: Decay, **options: Any
) -> RecurrentArgs:
    """Checks of :func:`snnkern.recurrent_lif`: ``options`` those of :func:`prepare_lif_args`."""
    if isinstance(x, torch.Tensor) and x.dim() != 3:
        raise ValueError(
            f"x must have shape [batch, time, neurons] (3-D; or [time, batch, neurons] with "
            f"batch_first=False) for a recurrent layer, got shape {tuple(x.shape)}"
        )
    a = prepare_lif_args(x, alpha, foldable=False, **options)
    b, _, n = a.x.shape
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
