"""Drop-in ``torch.nn`` layers built on the fused ops :func:`snnkern.lif` and :func:`snnkern.leaky`.

Two kinds: neuron-only modules (:class:`LIFNeuron`, :class:`LeakyNeuron`) that apply the fused
neurons to whatever the previous layer produced, any neuron shape, batch- or time-major, with
:class:`TimeFolded` to run per-step layers (convolutions, pooling, batch norm) over the time
axis; and projection+neuron layers (:class:`LIF`, :class:`RecurrentLIF`, :class:`LeakyReadout`),
batch-first: inputs ``[batch, time, in_features]``, outputs ``[batch, time, out_features]``.
Weights follow the ``torch.nn.Linear`` convention ``[out_features, in_features]`` (the seeds
write ``x @ W`` with ``W`` of shape ``[in, out]``, i.e. ``W = layer.weight.T``).

Time constants are given either as a decay ``alpha`` (``exp(-dt/tau)``) or as ``tau`` and
``dt`` (same unit). ``learn_alpha=True`` makes the decay a learnable per-neuron parameter
(clamped to ``[0, 1]`` in forward).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.types import Device

from . import ops
from ._checks import Decay, decay
from ._types import LIFResult
from .surrogate import Sigmoid, Surrogate

__all__ = [
    "DaleLinear",
    "LIF",
    "LIFNeuron",
    "LeakyNeuron",
    "LeakyReadout",
    "RecurrentLIF",
    "TimeFolded",
    "dale_signs",
    "effective_weight",
    "seed_uniform_",
]


def seed_uniform_(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Initialise ``weight`` [out, in] as the IPD seeds do (000/001 ``init_weight_matrices``).

    The seeds store ``W`` as ``[in, out]`` and compute the bound from PyTorch's fan-in of that
    tensor, which is its *second* dimension: ``U(-1/sqrt(out), 1/sqrt(out))``.
    """
    bound = 1.0 / math.sqrt(weight.shape[0])
    with torch.no_grad():
        return weight.uniform_(-bound, bound, generator=generator)


def dale_signs(n_pre: int, ie_ratio: float, device: Device = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Signs of the presynaptic units, shape [n_pre]: the first ``int(ie_ratio * n_pre)`` are -1."""
    if not 0.0 <= ie_ratio <= 1.0:
        raise ValueError(f"ie_ratio must lie in [0, 1], got {ie_ratio!r}")
    signs = torch.ones(n_pre, device=device, dtype=dtype or torch.get_default_dtype())
    signs[: int(ie_ratio * n_pre)] = -1.0
    return signs


class DaleLinear(nn.Module):
    """Linear map obeying Dale's law (seed 001, the IPD tutorial's Dale's-law variant).

    Each presynaptic (input) unit is either inhibitory or excitatory: the effective weight is
    ``|w| * sign``, with ``sign`` fixed per input column. The first ``int(ie_ratio * in_features)``
    inputs are inhibitory.

    Shapes: input ``[..., in_features]``, output ``[..., out_features]``;
    ``weight`` ``[out_features, in_features]``; buffer ``signs`` ``[in_features]``.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None
    signs: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        ie_ratio: float = 0.5,
        bias: bool = False,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.ie_ratio = in_features, out_features, float(ie_ratio)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None
        self.register_buffer("signs", dale_signs(in_features, ie_ratio, device=device, dtype=dtype))
        seed_uniform_(self.weight)

    def effective_weight(self) -> torch.Tensor:
        """``|w| * sign`` of shape [out_features, in_features]."""
        return self.weight.abs() * self.signs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ie_ratio={self.ie_ratio}"


def _resolve_decay(alpha: float | None, tau: float | None, dt: float, name: str) -> float | None:
    if alpha is not None and tau is not None:
        raise ValueError(f"give either {name} or its time constant, not both")
    if tau is not None:
        return decay(tau, dt)
    if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {alpha!r}")
    return None if alpha is None else float(alpha)


def _make_projection(
    in_features: int,
    out_features: int,
    bias: bool,
    dale_ie_ratio: float | None,
    device: Device,
    dtype: torch.dtype | None,
) -> nn.Linear | DaleLinear:
    if dale_ie_ratio is None:
        return nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
    return DaleLinear(in_features, out_features, ie_ratio=dale_ie_ratio, bias=bias, device=device, dtype=dtype)


def effective_weight(linear: nn.Module) -> torch.Tensor:
    """The weight a projection applies: ``|w| * sign`` for :class:`DaleLinear`, else ``weight``."""
    if isinstance(linear, DaleLinear):
        return linear.effective_weight()
    weight = linear.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(linear).__name__} has no weight tensor: not a projection")
    return weight


class _ProjectedScan(nn.Module):
    """Base of the layers: an input projection followed by a scan with membrane (and synaptic) decays.

    ``sparse_input=True`` runs the projection with :func:`snnkern.spike_linear`, which skips the
    zeros of the input: much faster on the CPU when the input is a spike train.
    """

    in_features: int
    out_features: int
    sparse_input: bool
    linear: nn.Linear | DaleLinear
    backend: str | None
    learn_alpha: bool
    # Python floats, or learnable Parameters [neurons] (learn_alpha); alpha_syn None: one state.
    alpha: Decay
    alpha_syn: Decay | None

    def _setup_projection(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        dale_ie_ratio: float | None,
        init: str,
        sparse_input: bool,
        device: Device,
        dtype: torch.dtype | None,
    ) -> None:
        self.in_features, self.out_features = in_features, out_features
        self.sparse_input = bool(sparse_input)
        self.linear = _make_projection(in_features, out_features, bias, dale_ie_ratio, device, dtype)
        if init == "seed":
            seed_uniform_(self.linear.weight)
        elif init != "default":
            raise ValueError(f"init must be 'default' or 'seed', got {init!r}")

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input current ``[batch, time, out_features]`` of the input ``x``."""
        if not self.sparse_input:
            return self.linear(x)
        return ops.spike_linear(x, effective_weight(self.linear), self.linear.bias, backend=self.backend)

    def _setup_decays(
        self,
        n: int,
        alpha: float | None,
        tau: float | None,
        alpha_syn: float | None,
        tau_syn: float | None,
        dt: float,
        learn_alpha: bool,
        device: Device,
        dtype: torch.dtype | None,
    ) -> None:
        a = _resolve_decay(alpha, tau, dt, "alpha")
        if a is None:
            raise ValueError("give the membrane decay as alpha=exp(-dt/tau) or as tau= (and dt=)")
        a_syn = _resolve_decay(alpha_syn, tau_syn, dt, "alpha_syn")
        self.learn_alpha = bool(learn_alpha)
        for name, value in (("alpha", a), ("alpha_syn", a_syn)):
            if value is None:
                setattr(self, name, None)
                continue
            if learn_alpha:
                t = torch.full((n,), value, device=device, dtype=dtype or torch.get_default_dtype())
                setattr(self, name, nn.Parameter(t))
            else:  # a python float: the op builds it in the input's dtype at full precision
                setattr(self, name, value)

    def _decays(self) -> tuple[Decay, Decay | None]:
        a, a_syn = self.alpha, self.alpha_syn
        if self.learn_alpha:  # Parameters: clamped, an optimiser step may leave [0, 1]
            if isinstance(a, torch.Tensor):
                a = a.clamp(0.0, 1.0)
            if isinstance(a_syn, torch.Tensor):
                a_syn = a_syn.clamp(0.0, 1.0)
        return a, a_syn


class LIF(_ProjectedScan):
    """Linear input projection followed by a fused LIF scan over time.

    ``forward(x, state=None)``: ``x`` ``[batch, time, in_features]`` (``[time, batch,
    in_features]`` with ``batch_first=False``) -> spikes ``[batch, time, out_features]`` (in the
    layout of ``x``); with ``return_state=True`` it returns ``(spikes, state)``, ``state``
    ``[3, batch, out_features]`` to continue a sequence.
    The options (``threshold``, ``reset``, ``detach_reset``, ``ordering``, ``surrogate``,
    ``alpha_syn``, ``adaptation_decay``, ``adaptation_strength``, ``refractory``) are those of
    :func:`snnkern.lif`; with adaptation or a refractory period the state has 5 rows.
    ``dale_ie_ratio`` replaces the projection by a :class:`DaleLinear`. ``init="seed"`` initialises
    the weight as seeds 000/001.
    ``sparse_input=True``: the input is a spike train, projected event-driven (see
    :func:`snnkern.spike_linear`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        alpha: float | None = None,
        tau: float | None = None,
        dt: float = 1e-3,
        alpha_syn: float | None = None,
        tau_syn: float | None = None,
        learn_alpha: bool = False,
        threshold: float = 1.0,
        reset: str = "zero",
        detach_reset: bool = False,
        ordering: str = "spike_first",
        surrogate: Surrogate = Sigmoid(),
        adaptation_decay: float | None = None,
        adaptation_strength: float | torch.Tensor = 0.0,
        refractory: int = 0,
        bias: bool = False,
        dale_ie_ratio: float | None = None,
        init: str = "default",
        sparse_input: bool = False,
        return_state: bool = False,
        batch_first: bool = True,
        backend: str | None = None,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self._setup_projection(in_features, out_features, bias, dale_ie_ratio, init, sparse_input, device, dtype)
        self._setup_decays(out_features, alpha, tau, alpha_syn, tau_syn, dt, learn_alpha, device, dtype)
        self.threshold, self.reset, self.detach_reset = threshold, reset, detach_reset
        self.ordering, self.surrogate = ordering, surrogate
        self.adaptation_decay, self.refractory = adaptation_decay, refractory
        if isinstance(adaptation_strength, torch.Tensor):  # per neuron: moves with the module
            self.register_buffer("adaptation_strength", adaptation_strength.detach().clone())
        else:
            self.adaptation_strength = adaptation_strength
        self.return_state, self.batch_first = return_state, bool(batch_first)

    def _adaptation_options(self) -> dict[str, Any]:
        return dict(
            adaptation_decay=self.adaptation_decay,
            adaptation_strength=self.adaptation_strength,
            refractory=self.refractory,
        )

    def scan(self, current: torch.Tensor, state: torch.Tensor | None = None) -> LIFResult:
        """Run the LIF scan on an already projected current [batch, time, out_features]."""
        a, a_syn = self._decays()
        return ops.lif(
            current,
            a,
            alpha_syn=a_syn,
            threshold=self.threshold,
            reset=self.reset,
            detach_reset=self.detach_reset,
            ordering=self.ordering,
            surrogate=self.surrogate,
            state=state,
            batch_first=self.batch_first,
            backend=self.backend,
            **self._adaptation_options(),
        )

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        result = self.scan(self.project(x), state)
        return (result.spikes, result.state) if self.return_state else result.spikes

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, ordering={self.ordering!r}, "
            f"reset={self.reset!r}, detach_reset={self.detach_reset}, surrogate={self.surrogate}"
        )


class RecurrentLIF(LIF):
    """LIF layer with recurrent connections from the previous step's spikes (seed 004).

    The input current at step t is ``linear(x_t) + recurrent(s_{t-1})``, with
    ``recurrent_weight`` ``[out_features, out_features]`` (seed 004 ``v1`` is its transpose).
    The whole time loop runs in the fused op :func:`snnkern.recurrent_lif`.

    ``forward(x, state=None)``: ``x`` ``[batch, time, in_features]`` -> spikes
    ``[batch, time, out_features]`` (and ``state`` with ``return_state=True``, a tuple
    ``(neuron_state [3, batch, out], last_spikes [batch, out])``).
    Defaults follow seed 004: ``ordering="spike_first"``, ``detach_reset=True``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        ordering: str = "spike_first",
        detach_reset: bool = True,
        init: str = "default",
        **kwargs: Any,
    ) -> None:
        super().__init__(in_features, out_features, ordering=ordering, detach_reset=detach_reset, init=init, **kwargs)
        dev, dt = self.linear.weight.device, self.linear.weight.dtype
        self.recurrent_weight = nn.Parameter(torch.empty(out_features, out_features, device=dev, dtype=dt))
        nn.init.normal_(self.recurrent_weight, 0.0, 1.0 / math.sqrt(out_features))

    # The state of a recurrent layer is (neuron state, last spikes), not LIF's neuron state
    # alone: the signature differs from LIF.forward on purpose.
    def forward(  # type: ignore[override]
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        current = self.project(x)
        neuron_state, last_spikes = (None, None) if state is None else state
        a, a_syn = self._decays()
        result = ops.recurrent_lif(
            current,
            self.recurrent_weight,
            a,
            alpha_syn=a_syn,
            threshold=self.threshold,
            reset=self.reset,
            detach_reset=self.detach_reset,
            ordering=self.ordering,
            surrogate=self.surrogate,
            state=neuron_state,
            spikes=last_spikes,
            batch_first=self.batch_first,
            backend=self.backend,
            **self._adaptation_options(),
        )
        if not self.return_state:
            return result.spikes
        time_dim = 1 if self.batch_first else 0
        if result.spikes.shape[time_dim]:
            last_spikes = result.spikes.select(time_dim, -1)
        elif last_spikes is None:
            last_spikes = current.new_zeros(current.shape[1 - time_dim], current.shape[2])
        return result.spikes, (result.state, last_spikes)


class LeakyReadout(_ProjectedScan):
    """Non-spiking leaky integrator readout (one state, or two with ``alpha_syn``/``tau_syn``).

    ``forward(x, state=None)``: ``x`` ``[batch, time, in_features]`` -> membrane
    ``[batch, time, out_features]``, the potential *after* each step (see :func:`snnkern.leaky`);
    with ``return_state=True`` also the state ``[3, batch, out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        alpha: float | None = None,
        tau: float | None = None,
        dt: float = 1e-3,
        alpha_syn: float | None = None,
        tau_syn: float | None = None,
        learn_alpha: bool = False,
        bias: bool = False,
        dale_ie_ratio: float | None = None,
        init: str = "default",
        sparse_input: bool = False,
        return_state: bool = False,
        batch_first: bool = True,
        backend: str | None = None,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self._setup_projection(in_features, out_features, bias, dale_ie_ratio, init, sparse_input, device, dtype)
        self._setup_decays(out_features, alpha, tau, alpha_syn, tau_syn, dt, learn_alpha, device, dtype)
        self.return_state, self.batch_first = return_state, bool(batch_first)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        a, a_syn = self._decays()
        result = ops.leaky(
            self.project(x), a, alpha_syn=a_syn, state=state, batch_first=self.batch_first, backend=self.backend
        )
        return (result.membrane, result.state) if self.return_state else result.membrane

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class TimeFolded(nn.Module):
    """Runs a per-step layer (``nn.Conv2d``, pooling, ``nn.BatchNorm2d``, ``nn.Linear``, ...) over
    every time step in one call, by folding time into the batch.

    ``forward(x)``: ``x`` ``[batch, time, *features]`` -> ``[batch, time, *module_output]``; a
    time-major ``[time, batch, *features]`` works the same way (the two leading dimensions are
    folded and unfolded in place). Batch norm then normalises over batch and time together, as
    SpikingJelly's multi-step containers do.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"TimeFolded: x must be a tensor [batch, time, ...] (at least 2-D), got {shape}")
        out = self.module(x.flatten(0, 1))
        return out.unflatten(0, x.shape[:2])


class _Neuron(nn.Module):
    """Base of the neuron-only modules: decays (and threshold) as floats or learnable tensors of
    ``shape`` (broadcast to the neuron shape: ``()`` one value for all, ``(C, 1, 1)`` per
    channel, or the full neuron shape), and the optional state kept between calls."""

    state: torch.Tensor | None
    alpha: Decay
    alpha_syn: Decay | None

    def _setup(
        self,
        alpha: float | None,
        tau: float | None,
        alpha_syn: float | None,
        tau_syn: float | None,
        dt: float,
        shape: tuple[int, ...],
        learn_alpha: bool,
        batch_first: bool,
        stateful: bool,
        backend: str | None,
        device: Device,
        dtype: torch.dtype | None,
    ) -> None:
        a = _resolve_decay(alpha, tau, dt, "alpha")
        if a is None:
            raise ValueError("give the membrane decay as alpha=exp(-dt/tau) or as tau= (and dt=)")
        a_syn = _resolve_decay(alpha_syn, tau_syn, dt, "alpha_syn")
        self.shape = tuple(int(n) for n in shape)
        self.learn_alpha, self.batch_first, self.stateful, self.backend = (
            bool(learn_alpha),
            bool(batch_first),
            bool(stateful),
            backend,
        )
        for name, value in (("alpha", a), ("alpha_syn", a_syn)):
            setattr(self, name, None if value is None else self._parameter(value, learn_alpha, device, dtype))
        self.state = None

    def _parameter(self, value: float, learn: bool, device: Device, dtype: torch.dtype | None) -> Decay:
        if not learn:
            return value
        return nn.Parameter(
            torch.full(self.shape, float(value), device=device, dtype=dtype or torch.get_default_dtype())
        )

    def _decays(self) -> tuple[Decay, Decay | None]:
        a, a_syn = self.alpha, self.alpha_syn
        if isinstance(a, torch.Tensor):  # learnable: an optimiser step may leave [0, 1]
            a = a.clamp(0.0, 1.0)
        if isinstance(a_syn, torch.Tensor):
            a_syn = a_syn.clamp(0.0, 1.0)
        return a, a_syn

    def _initial_state(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor | None:
        if state is not None or not self.stateful or self.state is None:
            return state
        batch = x.shape[0] if self.batch_first else x.shape[1]
        expected = (self.state.shape[0], batch, *x.shape[2:])
        if tuple(self.state.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}: the kept state has shape {tuple(self.state.shape)} but this input needs "
                f"{list(expected)}; call reset_state() before feeding a batch of another shape"
            )
        return self.state

    def _keep(self, state: torch.Tensor) -> None:
        if self.stateful:
            self.state = state

    def reset_state(self) -> None:
        """Forget the kept state (and with it the autograd graph that produced it)."""
        self.state = None

    def detach_state(self) -> None:
        """Keep the state's values but cut the graph (truncated backpropagation through time)."""
        if self.state is not None:
            self.state = self.state.detach()


class LIFNeuron(_Neuron):
    """Fused LIF neurons without a projection: ``x`` is the input current of every neuron.

    ``forward(x, state=None)``: ``x`` ``[batch, time, *neurons]`` (or ``[time, batch, *neurons]``
    with ``batch_first=False``) -> spikes of the same shape; with ``return_state=True`` also the
    state ``[3, batch, *neurons]``. Every option is that of :func:`snnkern.lif`.

    ``learn_alpha`` / ``learn_threshold`` make the decays / the threshold learnable tensors of
    ``shape`` (default ``()``: one value shared by all neurons; ``(C, 1, 1)``: one per channel).
    ``stateful=True`` keeps the state between calls, for a sequence fed in chunks or step by step;
    ``reset_state()`` forgets it (and its autograd graph), ``detach_state()`` cuts the graph only.
    Without ``stateful`` (the default) every call starts from ``state`` or zeros.
    """

    threshold: float | torch.Tensor

    def __init__(
        self,
        *,
        alpha: float | None = None,
        tau: float | None = None,
        dt: float = 1e-3,
        alpha_syn: float | None = None,
        tau_syn: float | None = None,
        threshold: float = 1.0,
        reset: str = "zero",
        v_reset: float = 0.0,
        v_leak: float = 0.0,
        detach_reset: bool = False,
        ordering: str = "spike_first",
        current_first: bool = False,
        spike: str = "binary",
        surrogate: Surrogate = Sigmoid(),
        shape: tuple[int, ...] = (),
        learn_alpha: bool = False,
        learn_threshold: bool = False,
        batch_first: bool = True,
        stateful: bool = False,
        return_state: bool = False,
        backend: str | None = None,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._setup(
            alpha, tau, alpha_syn, tau_syn, dt, shape, learn_alpha, batch_first, stateful, backend, device, dtype
        )
        self.threshold = self._parameter(threshold, learn_threshold, device, dtype)
        self.options: dict[str, Any] = dict(
            reset=reset,
            v_reset=v_reset,
            v_leak=v_leak,
            detach_reset=detach_reset,
            ordering=ordering,
            current_first=current_first,
            spike=spike,
            surrogate=surrogate,
        )
        self.return_state = return_state
        # Check the options now, not at the first forward.
        ops.lif(torch.zeros(1, 0, 1), 0.5, threshold=float(threshold), backend="reference", **self.options)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        a, a_syn = self._decays()
        result = ops.lif(
            x,
            a,
            alpha_syn=a_syn,
            threshold=self.threshold,
            state=self._initial_state(x, state),
            batch_first=self.batch_first,
            backend=self.backend,
            **self.options,
        )
        self._keep(result.state)
        return (result.spikes, result.state) if self.return_state else result.spikes

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"batch_first={self.batch_first}, stateful={self.stateful}, {options}"


class LeakyNeuron(_Neuron):
    """Non-spiking leaky integrators without a projection (readouts): ``forward(x, state=None)``
    -> the membrane after each step, shape and layout of ``x``; options and state as
    :class:`LIFNeuron`."""

    def __init__(
        self,
        *,
        alpha: float | None = None,
        tau: float | None = None,
        dt: float = 1e-3,
        alpha_syn: float | None = None,
        tau_syn: float | None = None,
        shape: tuple[int, ...] = (),
        learn_alpha: bool = False,
        batch_first: bool = True,
        stateful: bool = False,
        return_state: bool = False,
        backend: str | None = None,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._setup(
            alpha, tau, alpha_syn, tau_syn, dt, shape, learn_alpha, batch_first, stateful, backend, device, dtype
        )
        self.return_state = return_state

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        a, a_syn = self._decays()
        result = ops.leaky(
            x,
            a,
            alpha_syn=a_syn,
            state=self._initial_state(x, state),
            batch_first=self.batch_first,
            backend=self.backend,
        )
        self._keep(result.state)
        return (result.membrane, result.state) if self.return_state else result.membrane

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}, stateful={self.stateful}"
