"""Norse's LIF neurons on snnkern's fused scan.

``from snnkern.compat.norse import LIFCell, LIF, LIFBoxCell, LIFRecurrentCell, LIFRecurrent``
replaces the classes of ``norse.torch``: same constructors (``p=LIFParameters(...)``, ``dt``,
``record_states``, ``input_weights``, ``recurrent_weights``, ``autapses``), same calls
(``z, state = cell(x, state)``; ``z_seq, state = lif(x_seq, state)`` time-major), same state
types (``LIFFeedForwardState``, ``LIFState``, ``LIFBoxFeedForwardState``), same numbers. The
classes derive from Norse's, so ``isinstance`` checks and ``norse.torch.SequentialState`` keep
working. :class:`LIFBox` (no Norse class) runs a whole sequence of ``LIFBoxCell`` steps.

Norse (1.1) integrates with forward Euler; with ``k = dt * tau_mem_inv`` one step is::

    LIF:     c = i + x                          (LIFRecurrent: i + W_in x + W_rec z_prev)
             v' = v + k ((v_leak - v) + c)       z = H(v' - v_th)
             v  <- (1 - z) v' + z v_reset        i <- c - dt tau_syn_inv c
    LIFBox:  v' = v + k (x + v_leak - v)         z = H(v' - v_th)
             v  <- (1 - z) v' + z v_reset  (reset_value)   or   v' - z v_th  (reset_subtract)

which is :func:`snnkern.lif` with ``ordering="charge_first"``, ``alpha = 1 - k``, the input
scaled by ``k`` (done here, before the scan), ``v_leak``, ``threshold = v_th`` and ``reset="zero"``
with ``v_reset`` (or ``"subtract"``); the synaptic current runs as ``alpha_syn = 1 - dt
tau_syn_inv`` with ``current_first=True`` (the current is scaled by ``k`` inside the scan and
scaled back for the returned state). The reset is detached in the recurrent neurons, not in the
feed-forward ones, as in Norse. Initial states are Norse's own (``v = v_leak``, float32 for
``LIF``/``LIFRecurrent``, ``i = 0``). ``LIFRecurrent`` runs :func:`snnkern.recurrent_lif` with
``recurrent_weights`` ``[hidden, hidden]`` (``[out, in]``, as Norse) after one matmul with
``input_weights`` ``[hidden, input]`` over the whole sequence.

Surrogates (``p.method``): ``"super"`` maps to ``FastSigmoid`` with the scale the installed Norse
uses (Norse 1.1's SuperSpike ignores ``p.alpha`` and uses ``1 / (|x| + 1)^2``: scale 1; a Norse
that uses ``alpha`` gets ``FastSigmoid(alpha)``); ``"triangle"`` (``alpha * relu(1 - |x|)``) maps
to ``Triangle(alpha)`` when ``v_th == 1``. Refused by name: ``"heaviside"`` (no gradient),
``"tanh"``, ``"circ"``, ``"heavi_erfc"``, ``"adjoint"``, per-neuron or learnable ``v_leak`` and
``v_reset``, custom ``reset_method`` functions, sparse inputs, and ``dt * tau_mem_inv`` or
``dt * tau_syn_inv`` outside [0, 1] (Euler decays that are not decays); the sequence modules
also need ``dt * tau_mem_inv > 0``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .. import surrogate as sk
from ..reference_ops import reset_membrane

if TYPE_CHECKING:
    _PeerLIFBoxCell = nn.Module
    _PeerLIFCell = nn.Module
    _PeerLIF = nn.Module
    _PeerLIFRecurrentCell = nn.Module
    _PeerLIFRecurrent = nn.Module
    _PeerSNN = nn.Module
    LIFParameters: Any
    LIFBoxParameters: Any
    LIFFeedForwardState: Any
    LIFState: Any
    LIFBoxFeedForwardState: Any
    reset_value: Any
    reset_subtract: Any
    lif_box_feed_forward_step: Any
    norse_threshold: Any
else:
    import norse.torch as _norse
    from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, LIFState
    from norse.torch.functional.lif_box import (
        LIFBoxFeedForwardState,
        LIFBoxParameters,
        lif_box_feed_forward_step,
    )
    from norse.torch.functional.reset import reset_subtract, reset_value
    from norse.torch.functional.threshold import threshold as norse_threshold
    from norse.torch.module.snn import SNN as _PeerSNN

    _PeerLIFBoxCell = _norse.LIFBoxCell
    _PeerLIFCell = _norse.LIFCell
    _PeerLIF = _norse.LIF
    _PeerLIFRecurrentCell = _norse.LIFRecurrentCell
    _PeerLIFRecurrent = _norse.LIFRecurrent

__all__ = [
    "LIFBoxCell",
    "LIFBox",
    "LIFCell",
    "LIF",
    "LIFRecurrentCell",
    "LIFRecurrent",
    "surrogate_from_norse",
    "converters",
]

_REFUSED_METHODS = {
    "heaviside": "Norse's plain Heaviside passes no gradient through the spikes",
    "tanh": "no snnkern surrogate has the derivative 1 - tanh(alpha x)^2",
    "circ": "no snnkern surrogate has HeaviCirc's derivative",
    "heavi_erfc": "no snnkern surrogate has the erfc derivative",
    "adjoint": "Norse's adjoint (EventProp-style) gradients are not snnkern's backward pass",
}


def _number(value: Any) -> float | None:
    """A python number from a number or a one-element tensor that needs no gradient, else None."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.requires_grad:
            return None
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@functools.cache
def _superspike_scale(alpha: float) -> float:
    """The scale of the fast sigmoid ``1 / (scale |x| + 1)^2`` that the installed Norse's
    SuperSpike uses for ``alpha``: probed, since Norse 1.1 ignores ``alpha`` (scale 1) where
    earlier versions used it."""
    points = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(norse_threshold(points, "super", alpha).sum(), points)
    for scale in (1.0, alpha):
        if torch.allclose(grad, 1.0 / (scale * points.detach().abs() + 1.0) ** 2, rtol=1e-12, atol=0.0):
            return scale
    raise NotImplementedError(
        f"method='super': the installed Norse's SuperSpike derivative {grad.tolist()} at {points.tolist()} is "
        "not a fast sigmoid 1/(scale |x| + 1)^2 snnkern knows"
    )


def surrogate_from_norse(method: str, alpha: Any, v_th: Any = 1.0) -> sk.Surrogate:
    """The snnkern surrogate with the derivative of Norse's threshold ``method`` (``p.method``,
    ``p.alpha``, ``p.v_th``): ``"super"`` -> ``FastSigmoid`` (the installed Norse's scale),
    ``"triangle"`` -> ``Triangle(alpha)`` when ``v_th == 1``; others raise ``NotImplementedError``."""
    if method in _REFUSED_METHODS:
        raise NotImplementedError(f"method={method!r}: {_REFUSED_METHODS[method]}; use 'super' or 'triangle'")
    if method not in ("super", "triangle"):
        raise NotImplementedError(f"method={method!r}: not a Norse threshold method snnkern maps ('super', 'triangle')")
    a = _number(alpha)
    if a is None or not math.isfinite(a) or a <= 0:
        raise NotImplementedError(f"method={method!r} with alpha={alpha!r}: snnkern needs a fixed number alpha > 0")
    if method == "super":
        return sk.FastSigmoid(_superspike_scale(a))
    th = v_th if isinstance(v_th, torch.Tensor) else torch.as_tensor(v_th)
    if th.requires_grad or not bool((th == 1).all()):
        raise NotImplementedError(
            "method='triangle': Norse's alpha * relu(1 - |v - v_th|) is snnkern's Triangle(alpha) only with a fixed "
            f"v_th == 1 (snnkern's triangle is relative to the threshold), got v_th={v_th!r}"
        )
    return sk.Triangle(a)


def _resting(value: Any, name: str) -> float:
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise NotImplementedError(
            f"{name}={value!r}: snnkern takes one fixed {name} for the layer (a number); per-neuron or learnable "
            f"{name} is not supported"
        )
    return number


def _in_unit_interval(value: Any, what: str, positive: bool = False) -> None:
    if torch.compiler.is_compiling():
        return
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(float(value))
    low_ok = (t > 0) if positive else (t >= 0)
    if not bool((low_ok & (t <= 1)).all()):
        bounds = "(0, 1]" if positive else "[0, 1]"
        raise ValueError(
            f"{what} must lie in {bounds} (forward Euler: the decay per step is 1 - {what}), got {value!r}"
        )


def _dense(x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor input, got {type(x).__name__}")
    if x.is_sparse:
        raise NotImplementedError("sparse input tensors: snnkern's scan takes dense tensors; call .to_dense()")


class _Dynamics(NamedTuple):
    """One layer's Euler step as snnkern takes it."""

    k: float | torch.Tensor  # dt * tau_mem_inv, as Norse computes it (scales the input)
    alpha: float | torch.Tensor  # 1 - k (accumulate dtype)
    syn_rate: float | torch.Tensor | None  # -dt * tau_syn_inv (Norse's current update), None: box
    alpha_syn: float | torch.Tensor | None  # 1 + syn_rate (accumulate dtype)
    options: dict[str, Any]  # the other snnkern.lif options


def _to_acc(value: float | torch.Tensor, x: torch.Tensor) -> float | torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return value


def _beside(value: Any, x: torch.Tensor) -> Any:
    """A parameter tensor on the input's device (Norse's default parameters are 0-D CPU tensors,
    which torch combines with CUDA inputs; snnkern's ops take their tensors on the input's device)."""
    return value.to(x.device) if isinstance(value, torch.Tensor) else value


def _dynamics(p: Any, dt: float, x: torch.Tensor, *, box: bool, detach_reset: bool, sequence: bool) -> _Dynamics:
    if p.method == "adjoint":
        surrogate_from_norse("adjoint", p.alpha)
    k = _beside(dt * p.tau_mem_inv, x)
    _in_unit_interval(k, "dt * tau_mem_inv", positive=sequence and not box)
    syn_rate = alpha_syn = None
    if not box:
        syn_rate = _beside(-dt * p.tau_syn_inv, x)
        _in_unit_interval(-syn_rate, "dt * tau_syn_inv")
        alpha_syn = 1 + _to_acc(syn_rate, x)
    if box:
        if p.reset_method is reset_value:
            reset = "zero"
        elif p.reset_method is reset_subtract:
            reset = "subtract"
        else:
            raise NotImplementedError(
                f"reset_method={p.reset_method!r}: snnkern maps Norse's reset_value and reset_subtract only"
            )
    else:
        reset = "zero"
    v_leak = _resting(p.v_leak, "v_leak")
    v_reset = _resting(p.v_reset, "v_reset")
    options = dict(
        threshold=_beside(p.v_th, x),
        reset=reset,
        v_reset=v_reset,
        v_leak=v_leak,
        ordering="charge_first",
        detach_reset=detach_reset,
        surrogate=surrogate_from_norse(p.method, p.alpha, p.v_th),
    )
    return _Dynamics(k, 1 - _to_acc(k, x), syn_rate, alpha_syn, options)


def _step_lanes(x: torch.Tensor) -> torch.Tensor:
    """One step ``[batch, *neurons]`` as a sequence of one step ``[1, batch, *neurons]``."""
    return x.unsqueeze(0) if x.dim() >= 2 else x.reshape(1, 1, -1)


def _sequence_lanes(x: torch.Tensor) -> torch.Tensor:
    """A time-major sequence as ``[T, batch, *neurons]`` (at least 3-D)."""
    if x.dim() < 1:
        raise ValueError("a sequence module takes a time-major tensor [T, batch, *neurons]")
    return x if x.dim() >= 3 else x.reshape(x.shape[0], 1, -1)


def _state(v: Any, lanes: torch.Size, x: torch.Tensor) -> torch.Tensor:
    """snnkern's packed state [3, batch, *neurons] from Norse's membrane (broadcast, as Norse does)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    v0 = torch.broadcast_to(torch.as_tensor(v, device=x.device), lanes).to(acc)
    return torch.stack([v0, torch.zeros_like(v0), torch.zeros_like(v0)])


def _after_reset(membrane: torch.Tensor, spikes: torch.Tensor, d: _Dynamics) -> torch.Tensor:
    """Norse's membrane after the reset from snnkern's before-reset trace (record_states)."""
    o = d.options
    return reset_membrane(membrane, spikes, o["reset"], o["threshold"], o["v_reset"], o["detach_reset"])


def _current_trace(x: torch.Tensor, i0: torch.Tensor, d: _Dynamics, backend: str | None) -> torch.Tensor:
    """Norse's current ``c_t = i_t + x_t`` (before its decay) for every step of ``x`` [T, B, ...]."""
    assert d.alpha_syn is not None
    first = x.clone()
    first[0] = first[0] + i0
    return ops.leaky(first, d.alpha_syn, batch_first=False, backend=backend).membrane


class LIFBoxCell(_PeerLIFBoxCell):
    """Norse's ``LIFBoxCell`` (LIF without a current, one step) running on :func:`snnkern.lif`.

    ``forward(input_tensor, state=None)`` -> ``(z, LIFBoxFeedForwardState(v))``. ``backend``:
    snnkern's backend ("compiled", "reference" or None for the default).
    """

    initial_state: Callable[[torch.Tensor], Any]  # Norse's (typing only)
    p: Any
    dt: float

    def __init__(self, p: Any = None, dt: float = 0.001, *, backend: str | None = None) -> None:
        super().__init__(LIFBoxParameters() if p is None else p, dt=dt)
        self.backend = backend
        _dynamics(self.p, self.dt, torch.zeros(()), box=True, detach_reset=False, sequence=False)

    def forward(self, input_tensor: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        _dense(input_tensor)
        if state is None:
            state = self.initial_state(input_tensor)
        d = _dynamics(self.p, self.dt, input_tensor, box=True, detach_reset=False, sequence=False)
        x = _step_lanes(input_tensor)
        result = ops.lif(
            d.k * x,
            d.alpha,
            state=_state(state.v, x.shape[1:], x),
            batch_first=False,
            backend=self.backend,
            **d.options,
        )
        shape = input_tensor.shape
        return result.spikes[0].reshape(shape), LIFBoxFeedForwardState(v=result.state[0].reshape(shape))


class LIFBox(_PeerSNN):
    """A whole time-major sequence of Norse ``LIFBoxCell`` steps in one fused scan (Norse has no
    such module; it equals looping the cell). ``forward(input_tensor [T, B, ...], state=None)`` ->
    ``(z_seq, LIFBoxFeedForwardState)``; with ``record_states=True`` the state holds the membrane
    after every step ``[T, B, ...]``."""

    p: Any
    dt: float
    record_states: bool

    def __init__(
        self, p: Any = None, dt: float = 0.001, record_states: bool = False, *, backend: str | None = None
    ) -> None:
        p = LIFBoxParameters() if p is None else p
        super().__init__(
            activation=lif_box_feed_forward_step,
            state_fallback=self.initial_state,
            p=p,
            dt=dt,
            record_states=record_states,
        )
        self.backend = backend
        _dynamics(self.p, self.dt, torch.zeros(()), box=True, detach_reset=False, sequence=True)

    def initial_state(self, input_tensor: torch.Tensor) -> Any:
        v = torch.as_tensor(self.p.v_leak).detach().clone()
        return LIFBoxFeedForwardState(v=v.requires_grad_(True))

    def forward(self, input_tensor: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        _dense(input_tensor)
        if state is None:
            state = self.initial_state(input_tensor)
        d = _dynamics(self.p, self.dt, input_tensor, box=True, detach_reset=False, sequence=True)
        x = _sequence_lanes(input_tensor)
        result = ops.lif(
            d.k * x,
            d.alpha,
            state=_state(state.v, x.shape[1:], x),
            return_membrane=self.record_states,
            batch_first=False,
            backend=self.backend,
            **d.options,
        )
        spikes = result.spikes.reshape(input_tensor.shape)
        if self.record_states:
            assert result.membrane is not None
            v = _after_reset(result.membrane.reshape(input_tensor.shape), spikes, d)
            return spikes, LIFBoxFeedForwardState(v=v)
        return spikes, LIFBoxFeedForwardState(v=result.state[0].reshape(input_tensor.shape[1:]))


def _lif_parameters(p: Any) -> Any:
    """Norse's ``LIFParameters`` (its defaults for None), refusing at construction the one method
    that would fail only at the first call."""
    p = LIFParameters() if p is None else p
    if p.method == "adjoint":
        surrogate_from_norse("adjoint", p.alpha)
    return p


class LIFCell(_PeerLIFCell):
    """Norse's ``LIFCell`` (one step of a LIF neuron with a synaptic current) on :func:`snnkern.lif`.

    ``forward(input_tensor, state=None)`` -> ``(z, LIFFeedForwardState(v, i))``.
    """

    initial_state: Callable[[torch.Tensor], Any]  # Norse's (typing only)
    p: Any
    dt: float

    def __init__(self, p: Any = None, *, backend: str | None = None, **kwargs: Any) -> None:
        super().__init__(_lif_parameters(p), **kwargs)
        self.backend = backend
        _dynamics(self.p, self.dt, torch.zeros(()), box=False, detach_reset=False, sequence=False)

    def forward(self, input_tensor: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        _dense(input_tensor)
        if state is None:
            state = self.initial_state(input_tensor)
        d = _dynamics(self.p, self.dt, input_tensor, box=False, detach_reset=False, sequence=False)
        current = state.i + input_tensor  # Norse's jump
        x = _step_lanes(current)
        result = ops.lif(
            d.k * x,
            d.alpha,
            state=_state(state.v, x.shape[1:], x),
            batch_first=False,
            backend=self.backend,
            **d.options,
        )
        shape = current.shape
        i = current + d.syn_rate * current  # Norse's decay, as Norse computes it
        return result.spikes[0].reshape(shape), LIFFeedForwardState(v=result.state[0].reshape(shape), i=i)


def _final_current(result_state: torch.Tensor, d: _Dynamics, x: torch.Tensor) -> torch.Tensor:
    """Norse's current after the last step from snnkern's (scaled by k) one."""
    assert d.syn_rate is not None
    c = result_state[1] / _to_acc(d.k, x)
    return c + d.syn_rate * c


class LIF(_PeerLIF):
    """Norse's ``LIF`` (a time-major sequence ``[T, B, ...]`` of LIF steps) in one fused scan.

    ``forward(input_tensor, state=None)`` -> ``(z_seq, LIFFeedForwardState)``, the state after the
    last step (every step's with ``record_states=True``).
    """

    initial_state: Callable[[torch.Tensor], Any]  # Norse's (typing only)
    p: Any
    dt: float
    record_states: bool

    def __init__(self, p: Any = None, *, backend: str | None = None, **kwargs: Any) -> None:
        super().__init__(_lif_parameters(p), **kwargs)
        self.backend = backend
        _dynamics(self.p, self.dt, torch.zeros(()), box=False, detach_reset=False, sequence=True)

    def forward(self, input_tensor: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        _dense(input_tensor)
        if state is None:
            state = self.initial_state(input_tensor)
        d = _dynamics(self.p, self.dt, input_tensor, box=False, detach_reset=False, sequence=True)
        x = _sequence_lanes(input_tensor)
        lanes = x.shape[1:]
        i0 = torch.broadcast_to(torch.as_tensor(state.i, device=x.device), lanes)
        drive = d.k * x
        drive[0] = drive[0] + d.k * i0  # Norse adds its current to the first step's input
        result = ops.lif(
            drive,
            d.alpha,
            alpha_syn=d.alpha_syn,
            current_first=True,
            state=_state(state.v, lanes, x),
            return_membrane=self.record_states,
            batch_first=False,
            backend=self.backend,
            **d.options,
        )
        shape = input_tensor.shape
        spikes = result.spikes.reshape(shape)
        if self.record_states:
            assert result.membrane is not None and d.syn_rate is not None
            v = _after_reset(result.membrane.reshape(shape), spikes, d)
            c = _current_trace(x, i0, d, self.backend).reshape(shape)
            return spikes, LIFFeedForwardState(v=v, i=c + d.syn_rate * c)
        return spikes, LIFFeedForwardState(
            v=result.state[0].reshape(shape[1:]), i=_final_current(result.state, d, x).reshape(shape[1:])
        )


class LIFRecurrentCell(_PeerLIFRecurrentCell):
    """Norse's ``LIFRecurrentCell`` (one step, input and recurrent weights) on :func:`snnkern.lif`.

    ``forward(input_tensor [..., input_size], state=None)`` -> ``(z, LIFState(z, v, i))``.
    """

    initial_state: Callable[[torch.Tensor], Any]  # Norse's (typing only)
    p: Any
    dt: float
    input_weights: torch.Tensor
    recurrent_weights: torch.Tensor

    def __init__(
        self, input_size: int, hidden_size: int, p: Any = None, *, backend: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(input_size, hidden_size, _lif_parameters(p), **kwargs)
        self.backend = backend
        _dynamics(self.p, self.dt, torch.zeros(()), box=False, detach_reset=True, sequence=False)

    def forward(self, input_tensor: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        _dense(input_tensor)
        if state is None:
            state = self.initial_state(input_tensor)
        d = _dynamics(self.p, self.dt, input_tensor, box=False, detach_reset=True, sequence=False)
        current = state.i + F.linear(input_tensor, self.input_weights) + F.linear(state.z, self.recurrent_weights)
        x = _step_lanes(current)
        result = ops.lif(
            d.k * x,
            d.alpha,
            state=_state(state.v, x.shape[1:], x),
            batch_first=False,
            backend=self.backend,
            **d.options,
        )
        shape = current.shape
        z = result.spikes[0].reshape(shape)
        i = current + d.syn_rate * current
        return z, LIFState(z=z, v=result.state[0].reshape(shape), i=i)


class LIFRecurrent(_PeerLIFRecurrent):
    """Norse's ``LIFRecurrent`` (a time-major sequence ``[T, B, input_size]``) on
    :func:`snnkern.recurrent_lif`: the input weights applied to the whole sequence in one matmul,
    the recurrence ``W_rec z_{t-1}`` inside the fused scan.

    ``forward(input_tensor, state=None)`` -> ``(z_seq, LIFState)``, the state after the last step
    (every step's with ``record_states=True``).
    """

    initial_state: Callable[[torch.Tensor], Any]  # Norse's (typing only)
    p: Any
    dt: float
    record_states: bool
    input_weights: torch.Tensor
    recurrent_weights: torch.Tensor

    def __init__(
        self, input_size: int, hidden_size: int, p: Any = None, *, backend: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(input_size, hidden_size, _lif_parameters(p), **kwargs)
        self.backend = backend
        _dynamics(self.p, self.dt, torch.zeros(()), box=False, detach_reset=True, sequence=True)

    def forward(self, input_tensor: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        _dense(input_tensor)
        if input_tensor.dim() < 2:
            raise ValueError("LIFRecurrent takes a time-major tensor [T, ..., input_size]")
        if state is None:
            state = self.initial_state(input_tensor)
        d = _dynamics(self.p, self.dt, input_tensor, box=False, detach_reset=True, sequence=True)
        hidden = self.recurrent_weights.shape[0]
        steps = input_tensor.shape[0]
        out_shape = (*input_tensor.shape[:-1], hidden)
        projected = F.linear(input_tensor, self.input_weights).reshape(steps, -1, hidden)
        lanes = projected.shape[1:]
        i0 = torch.broadcast_to(torch.as_tensor(state.i, device=projected.device), out_shape[1:]).reshape(lanes)
        z0 = torch.broadcast_to(state.z, out_shape[1:]).reshape(lanes).to(projected.dtype)
        k = d.k
        drive = k * projected
        drive[0] = drive[0] + k * i0
        k_rows = k.reshape(-1, 1) if isinstance(k, torch.Tensor) and k.dim() else k
        result = ops.recurrent_lif(
            drive,
            k_rows * self.recurrent_weights,
            d.alpha,
            alpha_syn=d.alpha_syn,
            current_first=True,
            state=_state(torch.broadcast_to(torch.as_tensor(state.v), out_shape[1:]).reshape(lanes), lanes, projected),
            spikes=z0,
            return_membrane=self.record_states,
            batch_first=False,
            backend=self.backend,
            **d.options,
        )
        spikes = result.spikes
        if self.record_states:
            assert result.membrane is not None and d.syn_rate is not None
            v = _after_reset(result.membrane, spikes, d)
            previous = torch.cat([z0.unsqueeze(0), spikes[:-1]])
            c = _current_trace(projected + F.linear(previous, self.recurrent_weights), i0, d, self.backend)
            z_seq = spikes.reshape(out_shape)
            return z_seq, LIFState(z=z_seq, v=v.reshape(out_shape), i=(c + d.syn_rate * c).reshape(out_shape))
        last = spikes[-1] if steps else z0
        return spikes.reshape(out_shape), LIFState(
            z=last.reshape(out_shape[1:]),
            v=result.state[0].reshape(out_shape[1:]),
            i=_final_current(result.state, d, projected).reshape(out_shape[1:]),
        )


# --- conversion ------------------------------------------------------------------------------


def _copy_weight(w: Any) -> Any:
    if isinstance(w, nn.Parameter):
        return nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
    return w.detach().clone() if isinstance(w, torch.Tensor) else w


def _exact(peer: nn.Module, cls: type) -> None:
    if type(peer) is not cls:
        raise NotImplementedError(
            f"{type(peer).__module__}.{type(peer).__name__}: snnkern converts {cls.__module__}.{cls.__name__} "
            "itself, not a subclass (its dynamics may differ)"
        )


def _finish(new: nn.Module, peer: nn.Module) -> nn.Module:
    new.train(peer.training)
    return new


def _recurrent_kwargs(peer: Any) -> dict[str, Any]:
    return dict(
        input_weights=_copy_weight(peer.input_weights),
        recurrent_weights=_copy_weight(peer.recurrent_weights),
        autapses=peer.autapses,
        dt=peer.dt,
    )


def _sizes(peer: Any) -> tuple[int, int]:
    return int(peer.input_size), int(peer.hidden_size)


# Norse class -> (its snnkern class, how to build that from a Norse module)
_CONVERSIONS: dict[type, tuple[type, Callable[[Any], nn.Module]]] = {
    _PeerLIFBoxCell: (LIFBoxCell, lambda peer: LIFBoxCell(peer.p, dt=peer.dt)),
    _PeerLIFCell: (LIFCell, lambda peer: LIFCell(peer.p, dt=peer.dt)),
    _PeerLIF: (LIF, lambda peer: LIF(peer.p, dt=peer.dt, record_states=peer.record_states)),
    _PeerLIFRecurrentCell: (
        LIFRecurrentCell,
        lambda peer: LIFRecurrentCell(*_sizes(peer), peer.p, **_recurrent_kwargs(peer)),
    ),
    _PeerLIFRecurrent: (
        LIFRecurrent,
        lambda peer: LIFRecurrent(*_sizes(peer), peer.p, record_states=peer.record_states, **_recurrent_kwargs(peer)),
    ),
}


def _converter(peer_cls: type) -> Callable[[nn.Module], nn.Module]:
    ours, build = _CONVERSIONS[peer_cls]

    def convert(peer: nn.Module) -> nn.Module:
        if isinstance(peer, ours):  # already snnkern's (the classes derive from Norse's)
            return peer
        _exact(peer, peer_cls)
        return _finish(build(peer), peer)

    convert.__name__ = f"{ours.__name__}_from_norse"
    return convert


def converters() -> dict[type, Callable[[nn.Module], nn.Module]]:
    """For :func:`snnkern.compat.convert`: Norse's ``LIFBoxCell``, ``LIFCell``, ``LIF``,
    ``LIFRecurrentCell`` and ``LIFRecurrent`` -> the function that builds their snnkern
    equivalent. The parameter tuple ``p`` is shared with the Norse module (Norse modules hold the
    caller's tensors, learnable ones included); the input and recurrent weights are copied. A module
    that is already snnkern's is returned as it is. Match modules by exact type: snnkern's classes
    derive from Norse's."""
    return {peer_cls: _converter(peer_cls) for peer_cls in _CONVERSIONS}
