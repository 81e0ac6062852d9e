"""Models in and out through NIR, the Neuromorphic Intermediate Representation (``pip install nir``).

:func:`export` turns a model of snnkern layers into a ``nir.NIRGraph``, :func:`write` also saves
it to a ``.nir`` file, and :func:`load` builds a module of snnkern layers from a graph or a file
(written by snnkern, snnTorch, Norse, Sinabs, SpikingJelly, ...). The loaded module runs the whole
graph on ``[batch, time, ...]`` input: per-step layers through :class:`snnkern.nn.TimeFolded`,
neurons through the fused :class:`snnkern.nn.LIFNeuron` / :class:`snnkern.nn.LeakyNeuron`, and a
recurrent LIF <-> Linear pair through :func:`snnkern.recurrent_lif`.

NIR describes neurons in continuous time (``tau dv/dt = (v_leak - v) + r I``); a simulator picks a
time step ``dt`` and a discretisation. Both are arguments here, written into the graph's metadata
on export and read back from it by default on load:

``"exact"``
    decay ``alpha = exp(-dt / tau)``, input factor ``r (1 - alpha)``: the exact solution for an
    input held constant over the step (LIF, LI; the synaptic current of CubaLIF / CubaLI likewise
    with ``w_in``).
``"euler"``
    decay ``alpha = 1 - dt / tau``, input factor ``r dt / tau`` (forward Euler: snnTorch,
    SpikingJelly and Norse read NIR this way).

IF and I (no leak) take ``r dt`` in both. A CubaLIF / CubaLI membrane is driven by the current
*after* the step's input (snnkern ``current_first=True``), as every peer reads NIR. The neurons
charge, fire (``v > v_threshold``) and reset to ``v_reset`` in one step (snnkern
``ordering="charge_first"``, ``reset="zero"``). ``docs/nir.md`` lists which choice reproduces
which peer.

What NIR cannot express is refused on export with an error naming the option, or, with
``lossy=True``, exported as the closest node with a :class:`LossyExportWarning`: the orderings
``"delayed"``, ``"spike_first"`` and ``"update_first"``; ``reset="subtract"`` and ``"none"``;
``spike="multi"``; a two-state neuron with ``current_first=False`` (and
:class:`snnkern.nn.LeakyNeuron` with ``alpha_syn``, which has that convention). Gradient-only
options (surrogate, ``detach_reset``) are kept in each node's metadata and restored by
:func:`load`, together with the exact decays, so that snnkern -> NIR -> snnkern is bit for bit.
"""

from __future__ import annotations

import itertools
import keyword
import math
import operator
import os
import re
import sys
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from . import ops
from .nn import LIF, DaleLinear, LeakyNeuron, LeakyReadout, LIFNeuron, RecurrentLIF, TimeFolded, effective_weight
from .surrogate import ATan, Exponential, FastSigmoid, Sigmoid, Surrogate, Triangle

__all__ = [
    "export",
    "write",
    "load",
    "GraphExecutor",
    "NIRNeuron",
    "RecurrentNeuron",
    "Scale",
    "SumPool2d",
    "NIRError",
    "LossyExportWarning",
    "DISCRETISATIONS",
]

DISCRETISATIONS = ("exact", "euler")

# Relative tolerance within which a decay / input factor recorded by snnkern in a node's metadata
# is taken as the exact value of the one recomputed from the node's continuous parameters.
_RECORDED_RTOL = 1e-9
# An input factor within this many ulps (of the parameters' precision) of 1 is 1: the peers write
# r = tau / dt next to tau = dt / (1 - beta), whose product with dt / tau is 1 up to rounding.
_UNIT_ULPS = 4

_SUPPORTED = (
    "Input, Output, Linear, Affine, Scale, Conv1d, Conv2d, Flatten, SumPool2d, AvgPool2d, "
    "LIF, CubaLIF, IF, LI, CubaLI, I and subgraphs (NIRGraph; a LIF/CubaLIF <-> Linear/Affine loop)"
)
_SURROGATES: dict[str, type[Surrogate]] = {cls.name: cls for cls in (Sigmoid, FastSigmoid, Triangle, ATan, Exponential)}


class NIRError(ValueError):
    """A model that NIR cannot express, or a graph / file that snnkern cannot run; the message
    names the node (or module) and the option or parameter."""


class LossyExportWarning(UserWarning):
    """``export(..., lossy=True)`` replaced an option NIR cannot express by the closest one."""


def _stacklevel() -> int:
    """The stacklevel of a warning that points at the first caller outside this module."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    return level


def _nir() -> Any:
    """The ``nir`` package, imported on first use (an optional dependency)."""
    try:
        import nir  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - exercised only without nir
        raise ImportError(
            "snnkern.nir needs the NIR package: pip install nir (or pip install 'snnkern[nir]')"
        ) from error
    return nir


# ============================================================================================
# Modules a loaded graph is made of
# ============================================================================================


def _as_buffer(value: torch.Tensor | float) -> torch.Tensor:
    """A tensor keeps its dtype; a number becomes a tensor of torch's default dtype."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return torch.tensor(value, dtype=torch.get_default_dtype())


class Scale(nn.Module):
    """Elementwise scaling ``x * scale`` (NIR ``Scale``); ``scale`` broadcasts against the trailing
    (neuron) dimensions of ``x``, any layout."""

    scale: torch.Tensor

    def __init__(self, scale: torch.Tensor | float) -> None:
        super().__init__()
        self.register_buffer("scale", _as_buffer(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"shape={tuple(self.scale.shape)}"


def _pair(value: Any) -> tuple[int, int]:
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    if arr.size == 2:
        return int(arr[0]), int(arr[1])
    raise NIRError(f"expected one or two integers, got {value!r}")


class SumPool2d(nn.Module):
    """Sum pooling of one step ``[N, C, H, W]`` (NIR ``SumPool2d``): the exact sum of each window
    (zero padding); run it over time in :class:`snnkern.nn.TimeFolded`."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = self.kernel_size if stride is None else _pair(stride)
        self.padding = _pair(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # divisor 1: the window sum itself, no division and multiplication that would round
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, divisor_override=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class NIRNeuron(nn.Module):
    """One NIR neuron node: its input factor (``r``, ``w_in`` and ``dt / tau`` folded by the
    discretisation), then snnkern's fused neurons.

    ``forward(x)``: ``x * scale``, through ``synapse`` (a :class:`snnkern.nn.LeakyNeuron`, only
    for CubaLI, whose membrane sees the current after the step's input), then ``neuron``
    (:class:`snnkern.nn.LIFNeuron` for LIF, IF and CubaLIF, :class:`snnkern.nn.LeakyNeuron` for
    LI, I and CubaLI's membrane). ``scale`` None means a factor of exactly 1.
    """

    scale: torch.Tensor | None

    def __init__(
        self,
        neuron: LIFNeuron | LeakyNeuron,
        scale: torch.Tensor | float | None = None,
        synapse: LeakyNeuron | None = None,
    ) -> None:
        super().__init__()
        if synapse is not None and (not isinstance(neuron, LeakyNeuron) or neuron.alpha_syn is not None):
            raise ValueError("NIRNeuron: a synapse goes only before a one-state LeakyNeuron (NIR CubaLI)")
        self.neuron = neuron
        self.synapse = synapse
        if scale is None:
            self.scale = None
        else:
            self.register_buffer("scale", _as_buffer(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = x * self.scale
        if self.synapse is not None:
            x = _tensor(self.synapse(x))
        return _tensor(self.neuron(x))


class RecurrentNeuron(nn.Module):
    """LIF neurons whose spikes feed back through ``weight`` (a NIR LIF/CubaLIF <-> Linear/Affine
    loop): the input of step t is ``scale * (x_t + bias + z_{t-1} @ weight.T)``, run by the fused
    :func:`snnkern.recurrent_lif` with the decays, threshold and options of ``neuron`` (a
    :class:`snnkern.nn.LIFNeuron` that holds them).

    ``forward(x)``: ``x`` ``[batch, time, neurons]`` -> spikes of the same shape. ``weight``
    ``[neurons, neurons]`` (``[out, in]``), ``bias`` ``[neurons]`` or None, ``scale`` (the
    input factor) ``[neurons]`` / scalar or None for exactly 1.
    """

    scale: torch.Tensor | None
    bias: nn.Parameter | None

    def __init__(
        self,
        neuron: LIFNeuron,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        scale: torch.Tensor | float | None = None,
    ) -> None:
        super().__init__()
        if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
            raise ValueError(f"RecurrentNeuron: weight must be square [n, n], got {tuple(weight.shape)}")
        self.neuron = neuron
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        if scale is None:
            self.scale = None
        else:
            self.register_buffer("scale", _as_buffer(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight: torch.Tensor = self.weight
        if self.bias is not None:
            x = x + self.bias
        if self.scale is not None:
            x = x * self.scale
            weight = weight * self.scale.reshape(-1, 1) if self.scale.dim() else weight * self.scale
        n = self.neuron
        alpha, alpha_syn = n._decays()
        return ops.recurrent_lif(
            x,
            weight,
            alpha,
            alpha_syn=alpha_syn,
            threshold=n.threshold,
            batch_first=n.batch_first,
            backend=n.backend,
            **n.options,
        ).spikes

    def extra_repr(self) -> str:
        return f"neurons={self.weight.shape[0]}, bias={self.bias is not None}"


class GraphExecutor(nn.Module):
    """Runs a NIR graph that is not a chain: each node's input is the sum of the outputs of the
    nodes with an edge into it, in topological order (recurrent loops were collapsed into
    :class:`RecurrentNeuron` modules before).

    ``forward(x)``: ``x`` ``[batch, time, ...]`` goes to the graph's input node; returns the one
    output, or a dict ``{output node: tensor}`` when there are several.
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        order: list[str],
        sources: Mapping[str, list[str]],
        input_name: str,
        outputs: Mapping[str, list[str]],
    ) -> None:
        super().__init__()
        self.nodes = nn.ModuleDict(modules)
        self.order = list(order)
        self.sources = {k: list(v) for k, v in sources.items()}
        self.input_name = input_name
        self.outputs = {k: list(v) for k, v in outputs.items()}

    def forward(self, x: torch.Tensor) -> Any:
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for name in self.order:
            values[name] = self.nodes[name](_sum([values[s] for s in self.sources[name]]))
        results = {k: _sum([values[s] for s in v]) for k, v in self.outputs.items()}
        if len(results) == 1:
            return next(iter(results.values()))
        return results


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    out = values[0]
    for v in values[1:]:
        out = out + v
    return out


def _tensor(out: Any) -> torch.Tensor:
    """The output of a neuron module (return_state off): a tensor."""
    if isinstance(out, tuple):
        return out[0]
    return out


# ============================================================================================
# Discretisation
# ============================================================================================


def _check_dt(dt: Any, where: str) -> float:
    if isinstance(dt, (np.ndarray, np.generic)):
        dt = np.asarray(dt).item()
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise NIRError(f"{where}: dt must be a finite time step > 0, got {dt!r}")
    return float(dt)


def _check_discretisation(discretisation: Any, where: str) -> str:
    if isinstance(discretisation, bytes):
        discretisation = discretisation.decode()
    if discretisation not in DISCRETISATIONS:
        raise NIRError(f"{where}: discretisation must be one of {DISCRETISATIONS}, got {discretisation!r}")
    return str(discretisation)


def _decay_of(tau: np.ndarray, dt: float, discretisation: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = dt / tau  # tau = inf: 0 (no leak); tau = 0: inf (no memory)
    return np.exp(-ratio) if discretisation == "exact" else 1.0 - ratio


def _factor_of(tau: np.ndarray, alpha: np.ndarray, dt: float, discretisation: str) -> np.ndarray:
    """Input factor per unit of r (or w_in): ``1 - alpha`` (exact) or ``dt / tau`` (Euler)."""
    if discretisation == "exact":
        return 1.0 - alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        return dt / tau


def _tau_of(alpha: np.ndarray, dt: float, discretisation: str) -> np.ndarray:
    """Inverse of :func:`_decay_of` for alpha in [0, 1)."""
    with np.errstate(divide="ignore"):
        if discretisation == "exact":
            return -dt / np.log(alpha)  # alpha = 0: tau = 0
        return dt / (1.0 - alpha)


def _unit_factor(alpha: np.ndarray, tau: np.ndarray, dt: float, discretisation: str) -> np.ndarray:
    """The ``r`` (or ``w_in``) that makes the input factor 1 (a snnkern neuron adds its input)."""
    return 1.0 / _factor_of(tau, alpha, dt, discretisation)


# ============================================================================================
# Export
# ============================================================================================


_NEURON_MODULES = (LIFNeuron, LeakyNeuron, NIRNeuron)
_LAYER_MODULES = (LIF, RecurrentLIF, LeakyReadout, RecurrentNeuron)
_BYPASS_MODULES = (nn.Identity, nn.Dropout)


def _leaf_types() -> tuple[type[nn.Module], ...]:
    return (*_NEURON_MODULES, *_LAYER_MODULES, TimeFolded, DaleLinear, Scale, SumPool2d)


class _Tracer(torch.fx.Tracer):
    """torch.fx tracer that stops at snnkern's layers (their forward calls the fused ops)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _leaf_types()) or super().is_leaf_module(m, module_qualified_name)


def _np(value: Any) -> np.ndarray:
    """A parameter (torch tensor, numpy array or number) as a float64 numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    return np.array(value, dtype=np.float64)


class _Exporter:
    def __init__(self, dt: float, discretisation: str, lossy: bool) -> None:
        self.nir = _nir()
        self.dt, self.discretisation, self.lossy = dt, discretisation, lossy
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []

    # -- refusals --------------------------------------------------------------------------

    def refuse(self, where: str, option: str, why: str, closest: str) -> None:
        if not self.lossy:
            raise NIRError(
                f"{where}: {option} cannot be expressed in NIR: {why}. Pass lossy=True to export {closest} "
                "instead (with a warning)"
            )
        warnings.warn(f"{where}: {option} exported as {closest}: {why}", LossyExportWarning, stacklevel=_stacklevel())

    # -- names and edges -------------------------------------------------------------------

    def unique(self, name: str) -> str:
        base = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "node"
        out, i = base, 1
        while out in self.nodes:
            out, i = f"{base}_{i}", i + 1
        return out

    def add(self, name: str, node: Any) -> str:
        name = self.unique(name)
        self.nodes[name] = node
        return name

    def chain(self, names: list[str]) -> None:
        self.edges.extend(itertools.pairwise(names))

    # -- neurons ---------------------------------------------------------------------------

    def neuron_node(self, where: str, spec: dict[str, Any], shape: tuple[int, ...]) -> Any:
        """The NIR node of one snnkern neuron layer described by ``spec``, neuron ``shape``."""
        nir, dt, disc = self.nir, self.dt, self.discretisation

        def full(value: Any) -> np.ndarray:
            try:
                return np.ascontiguousarray(np.broadcast_to(_np(value), shape))
            except ValueError as error:
                raise NIRError(
                    f"{where}: a parameter of shape {np.shape(_np(value))} does not fit the neurons {shape}"
                ) from error

        alpha = full(spec["alpha"])
        alpha_syn = None if spec.get("alpha_syn") is None else full(spec["alpha_syn"])
        scale = full(spec.get("scale", 1.0))
        metadata: dict[str, Any] = {"snnkern_alpha": alpha.copy(), "snnkern_scale": scale.copy()}
        if alpha_syn is not None:
            metadata["snnkern_alpha_syn"] = alpha_syn.copy()

        if not spec["spiking"]:
            if alpha_syn is not None:  # one current, then the membrane
                if not spec.get("current_first", False):
                    self.refuse(
                        where,
                        "a two-state LeakyNeuron (alpha_syn)",
                        "snnkern.leaky drives the membrane with the current of the step before, NIR's CubaLI "
                        "with the current after the step's input (current_first=True)",
                        "a CubaLI node",
                    )
                self.check_finite_tau(where, alpha, "alpha")
                self.check_finite_tau(where, alpha_syn, "alpha_syn")
                tau_mem, tau_syn = _tau_of(alpha, dt, disc), _tau_of(alpha_syn, dt, disc)
                return nir.CubaLI(
                    tau_syn=tau_syn,
                    tau_mem=tau_mem,
                    r=_unit_factor(alpha, tau_mem, dt, disc),
                    v_leak=np.zeros(shape),
                    w_in=scale * _unit_factor(alpha_syn, tau_syn, dt, disc),
                    metadata=metadata,
                )
            if np.all(alpha == 1.0):
                return nir.I(r=scale / dt, metadata=metadata)
            self.check_finite_tau(where, alpha, "alpha")
            tau = _tau_of(alpha, dt, disc)
            return nir.LI(
                tau=tau, r=scale * _unit_factor(alpha, tau, dt, disc), v_leak=np.zeros(shape), metadata=metadata
            )

        ordering = spec.get("ordering", "charge_first")
        if ordering != "charge_first":
            self.refuse(
                where,
                f"ordering={ordering!r}",
                "NIR's neurons charge, fire and reset in one step (snnkern ordering='charge_first')",
                "ordering='charge_first'",
            )
        reset = spec.get("reset", "zero")
        if reset != "zero":
            self.refuse(
                where,
                f"reset={reset!r}",
                "NIR's LIF resets the membrane to v_reset after a spike (snnkern reset='zero'); it has no "
                "reset by subtraction and no neuron without reset",
                "a reset to v_reset",
            )
        if spec.get("spike", "binary") != "binary":
            self.refuse(where, "spike='multi'", "NIR's neurons emit single spikes (0/1), not counts", "spike='binary'")
        if alpha_syn is not None and not spec.get("current_first", False):
            self.refuse(
                where,
                "current_first=False",
                "NIR's CubaLIF drives the membrane with the current after the step's input, as snnTorch, "
                "Norse and SpikingJelly read it (snnkern current_first=True)",
                "current_first=True",
            )
        threshold = full(spec.get("threshold", 1.0))
        v_reset = full(spec.get("v_reset", 0.0))
        v_leak = full(spec.get("v_leak", 0.0))
        metadata["snnkern_detach_reset"] = bool(spec.get("detach_reset", False))
        surrogate = spec.get("surrogate")
        if isinstance(surrogate, Surrogate):
            metadata["snnkern_surrogate"] = surrogate.name
            metadata["snnkern_surrogate_param"] = float(surrogate.param)

        if alpha_syn is None:
            if np.all(alpha == 1.0):
                return nir.IF(r=scale / dt, v_threshold=threshold, v_reset=v_reset, metadata=metadata)
            self.check_finite_tau(where, alpha, "alpha")
            tau = _tau_of(alpha, dt, disc)
            return nir.LIF(
                tau=tau,
                r=scale * _unit_factor(alpha, tau, dt, disc),
                v_leak=v_leak,
                v_threshold=threshold,
                v_reset=v_reset,
                metadata=metadata,
            )
        self.check_finite_tau(where, alpha, "alpha")
        self.check_finite_tau(where, alpha_syn, "alpha_syn")
        tau_mem, tau_syn = _tau_of(alpha, dt, disc), _tau_of(alpha_syn, dt, disc)
        return nir.CubaLIF(
            tau_syn=tau_syn,
            tau_mem=tau_mem,
            r=_unit_factor(alpha, tau_mem, dt, disc),
            v_leak=v_leak,
            v_threshold=threshold,
            v_reset=v_reset,
            w_in=scale * _unit_factor(alpha_syn, tau_syn, dt, disc),
            metadata=metadata,
        )

    @staticmethod
    def check_finite_tau(where: str, alpha: np.ndarray, name: str) -> None:
        if np.any(alpha >= 1.0):
            raise NIRError(
                f"{where}: {name} = 1 (no decay) has no finite NIR time constant; NIR expresses a neuron "
                "without leak only as IF / I, with no synaptic current and the same for all neurons"
            )
        if np.any(alpha < 0.0) or np.any(~np.isfinite(alpha)):
            raise NIRError(f"{where}: {name} must lie in [0, 1]")

    def neuron_spec(self, module: nn.Module) -> dict[str, Any]:
        """The neuron description of a LIFNeuron / LeakyNeuron / NIRNeuron / layer."""
        if isinstance(module, NIRNeuron):
            spec = self.neuron_spec(module.neuron)
            scale = 1.0 if module.scale is None else module.scale
            if module.synapse is not None:  # CubaLI: synapse then a one-state membrane
                syn_alpha, _ = module.synapse._decays()
                spec.update(alpha_syn=syn_alpha, current_first=True)
            spec["scale"] = scale
            return spec
        if isinstance(module, LIFNeuron):
            alpha, alpha_syn = module._decays()
            return dict(spiking=True, alpha=alpha, alpha_syn=alpha_syn, threshold=module.threshold, **module.options)
        if isinstance(module, LeakyNeuron):
            alpha, alpha_syn = module._decays()
            return dict(spiking=False, alpha=alpha, alpha_syn=alpha_syn, current_first=False)
        if isinstance(module, (LIF, RecurrentLIF)):
            alpha, alpha_syn = module._decays()
            return dict(
                spiking=True,
                alpha=alpha,
                alpha_syn=alpha_syn,
                threshold=module.threshold,
                reset=module.reset,
                detach_reset=module.detach_reset,
                ordering=module.ordering,
                surrogate=module.surrogate,
                current_first=False,
            )
        if isinstance(module, LeakyReadout):
            alpha, alpha_syn = module._decays()
            return dict(spiking=False, alpha=alpha, alpha_syn=alpha_syn, current_first=False)
        raise TypeError(type(module).__name__)  # pragma: no cover - callers pass only these

    # -- per-step layers -------------------------------------------------------------------

    def linear_node(self, where: str, module: nn.Module, in_shape: tuple[int, ...]) -> Any:
        if len(in_shape) != 1:
            raise NIRError(
                f"{where}: {type(module).__name__} on input of shape {in_shape} per step; NIR's Linear maps "
                "vectors: flatten first (TimeFolded(nn.Flatten()))"
            )
        weight = _np(effective_weight(module))
        bias = getattr(module, "bias", None)
        if bias is None:
            return self.nir.Linear(weight=weight)
        return self.nir.Affine(weight=weight, bias=_np(bias))

    def step_nodes(self, where: str, module: nn.Module, in_shape: tuple[int, ...], ref: torch.Tensor) -> list[Any]:
        """NIR nodes of a per-step layer applied to one step of per-sample shape ``in_shape``."""
        nir = self.nir
        if isinstance(module, nn.Sequential):
            out: list[Any] = []
            for i, layer in enumerate(module):
                out += self.step_nodes(f"{where}.{i}", layer, in_shape, ref)
                with torch.no_grad():
                    in_shape = tuple(layer(ref.new_zeros((1, *in_shape))).shape[1:])
            return out
        if isinstance(module, _BYPASS_MODULES):
            return []
        if isinstance(module, (nn.Linear, DaleLinear)):
            return [self.linear_node(where, module, in_shape)]
        if isinstance(module, Scale):
            return [nir.Scale(scale=np.ascontiguousarray(np.broadcast_to(_np(module.scale), in_shape)))]
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            if module.padding_mode != "zeros":
                raise NIRError(f"{where}: padding_mode={module.padding_mode!r}: NIR convolutions pad with zeros")
            weight = _np(module.weight)
            bias = np.zeros(weight.shape[0]) if module.bias is None else _np(module.bias)
            padding: Any = module.padding if isinstance(module.padding, str) else tuple(module.padding)
            if isinstance(module, nn.Conv1d):
                return [
                    nir.Conv1d(
                        input_shape=int(in_shape[-1]),
                        weight=weight,
                        stride=int(module.stride[0]),
                        padding=padding if isinstance(padding, str) else int(padding[0]),
                        dilation=int(module.dilation[0]),
                        groups=int(module.groups),
                        bias=bias,
                    )
                ]
            return [
                nir.Conv2d(
                    input_shape=(int(in_shape[-2]), int(in_shape[-1])),
                    weight=weight,
                    stride=tuple(int(s) for s in module.stride),
                    padding=padding,
                    dilation=tuple(int(d) for d in module.dilation),
                    groups=int(module.groups),
                    bias=bias,
                )
            ]
        if isinstance(module, nn.Flatten):
            start, end = module.start_dim, module.end_dim
            if start == 0 or end == 0:
                raise NIRError(f"{where}: nn.Flatten({start}, {end}) inside TimeFolded flattens the batch dimension")
            return [
                nir.Flatten(
                    input_type={"input": np.array(in_shape)},
                    start_dim=start - 1 if start > 0 else start,
                    end_dim=end - 1 if end > 0 else end,
                )
            ]
        if isinstance(module, nn.AvgPool2d):
            if module.ceil_mode or module.divisor_override is not None:
                raise NIRError(f"{where}: AvgPool2d with ceil_mode or divisor_override has no NIR node")
            padding = _pair(module.padding)
            if any(padding) and not module.count_include_pad:
                raise NIRError(f"{where}: AvgPool2d with count_include_pad=False and padding has no NIR node")
            kernel = _pair(module.kernel_size)
            stride = kernel if module.stride is None else _pair(module.stride)
            return [nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))]
        if isinstance(module, SumPool2d) or (isinstance(module, nn.LPPool2d) and float(module.norm_type) == 1.0):
            if isinstance(module, nn.LPPool2d):
                if module.ceil_mode:
                    raise NIRError(f"{where}: LPPool2d with ceil_mode has no NIR node")
                kernel = _pair(module.kernel_size)
                stride = kernel if module.stride is None else _pair(module.stride)
                padding = (0, 0)
            else:
                kernel, stride, padding = module.kernel_size, module.stride, module.padding
            return [nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))]
        hint = ""
        if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
            hint = " (NIR has no max pooling: use nn.AvgPool2d or snnkern.nir.SumPool2d)"
        raise NIRError(
            f"{where}: {type(module).__name__} has no NIR node{hint}; NIR 1.0 has Linear, Affine, Scale, Conv1d, "
            "Conv2d, Flatten, SumPool2d, AvgPool2d and neurons"
        )

    # -- modules ---------------------------------------------------------------------------

    def module_nodes(
        self, name: str, module: nn.Module, in_shape: tuple[int, ...], ref: torch.Tensor
    ) -> list[str] | None:
        """Adds the NIR nodes of one module applied to ``[batch, time, *in_shape]``; returns their
        names in order (None: the module passes its input through)."""
        nir = self.nir
        where = f"{name} ({type(module).__name__})"
        if isinstance(module, _BYPASS_MODULES):
            return None
        if isinstance(module, TimeFolded):
            nodes = self.step_nodes(where, module.module, in_shape, ref)
            if not nodes:
                return None
            names = [self.add(name if len(nodes) == 1 else f"{name}_{i}", n) for i, n in enumerate(nodes)]
            self.chain(names)
            return names
        if isinstance(module, (nn.Linear, DaleLinear, Scale)):
            return [self.add(name, self.step_nodes(where, module, in_shape, ref)[0])]
        if isinstance(module, nn.Flatten):
            start, end = module.start_dim, module.end_dim
            if start < 2 or 0 <= end < 2:
                raise NIRError(
                    f"{where}: nn.Flatten({start}, {end}) on [batch, time, ...] mixes batch or time into the "
                    "features; flatten each step with TimeFolded(nn.Flatten())"
                )
            node = nir.Flatten(
                input_type={"input": np.array(in_shape)}, start_dim=start - 2, end_dim=end - 2 if end > 0 else end
            )
            return [self.add(name, node)]
        if isinstance(module, _NEURON_MODULES):
            return [self.add(name, self.neuron_node(where, self.neuron_spec(module), in_shape))]
        if isinstance(module, RecurrentLIF):  # before LIF, its base class
            linear = self.add(f"{name}_linear", self.linear_node(where, module.linear, in_shape))
            spec = self.neuron_spec(module)
            recurrent = self.recurrent_graph(where, spec, module.recurrent_weight, None)
            rec = self.add(name, recurrent)
            self.chain([linear, rec])
            return [linear, rec]
        if isinstance(module, (LIF, LeakyReadout)):
            linear = self.add(f"{name}_linear", self.linear_node(where, module.linear, in_shape))
            neuron = self.add(name, self.neuron_node(where, self.neuron_spec(module), (module.out_features,)))
            self.chain([linear, neuron])
            return [linear, neuron]
        if isinstance(module, RecurrentNeuron):
            spec = self.neuron_spec(module.neuron)
            if module.scale is not None:
                spec["scale"] = module.scale
            return [self.add(name, self.recurrent_graph(where, spec, module.weight, module.bias))]
        raise NIRError(
            f"{where}: no NIR node for this module; export takes snnkern's neurons and layers, nn.Linear, "
            "DaleLinear, snnkern.nir.Scale and per-step layers in TimeFolded (Conv1d, Conv2d, Flatten, "
            "AvgPool2d, SumPool2d)"
        )

    def recurrent_graph(self, where: str, spec: dict[str, Any], weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
        """The recurrent subgraph snnTorch writes: input -> lif <-> w_rec, lif -> output."""
        nir = self.nir
        n = int(weight.shape[0])
        w = _np(weight)
        w_rec = nir.Linear(weight=w) if bias is None else nir.Affine(weight=w, bias=_np(bias))
        return nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array([n])),
                "lif": self.neuron_node(where, spec, (n,)),
                "w_rec": w_rec,
                "output": nir.Output(output_type=np.array([n])),
            },
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            metadata={},
        )

    # -- folding ---------------------------------------------------------------------------

    def fold_scales(self) -> None:
        """A Scale whose only consumer is a neuron with input factor 1, and which is that neuron's
        only input, becomes the neuron's r (w_in for CubaLIF / CubaLI): the form peers read."""
        nir = self.nir
        for name in list(self.nodes):
            node = self.nodes[name]
            if not isinstance(node, nir.Scale):
                continue
            outs = [d for s, d in self.edges if s == name]
            if len(outs) != 1 or not isinstance(
                self.nodes[outs[0]], (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI)
            ):
                continue
            target = self.nodes[outs[0]]
            if [s for s, d in self.edges if d == outs[0]] != [name]:
                continue
            recorded = target.metadata.get("snnkern_scale")
            if recorded is None or not np.all(recorded == 1.0):
                continue
            s = np.broadcast_to(np.asarray(node.scale, dtype=np.float64), np.shape(recorded))
            if isinstance(target, (nir.CubaLIF, nir.CubaLI)):
                target.w_in = target.w_in * s
            else:
                target.r = target.r * s
            target.metadata["snnkern_scale"] = np.array(s)
            self.edges = [(s_, outs[0] if d == name else d) for s_, d in self.edges if s_ != name]
            del self.nodes[name]


def _stateful_neurons(model: nn.Module) -> list[tuple[LIFNeuron | LeakyNeuron, torch.Tensor | None]]:
    return [(m, m.state) for m in model.modules() if isinstance(m, (LIFNeuron, LeakyNeuron)) and m.stateful]


def export(
    model: nn.Module,
    sample_input: torch.Tensor,
    *,
    dt: float,
    discretisation: str = "exact",
    lossy: bool = False,
) -> Any:
    """The NIR graph of ``model``, a module of snnkern layers on ``[batch, time, ...]`` input.

    Args:
        model: an ``nn.Sequential`` (or any module whose forward only calls layers and adds their
            outputs; it is traced with ``torch.fx``) of :class:`snnkern.nn.LIFNeuron`,
            :class:`~snnkern.nn.LeakyNeuron`, :class:`~snnkern.nn.LIF`,
            :class:`~snnkern.nn.RecurrentLIF`, :class:`~snnkern.nn.LeakyReadout`, ``nn.Linear``,
            :class:`~snnkern.nn.DaleLinear` (its effective weight), :class:`Scale`, and per-step
            layers in :class:`~snnkern.nn.TimeFolded` (``Conv1d``, ``Conv2d``, ``Flatten``,
            ``AvgPool2d``, :class:`SumPool2d` / ``LPPool2d(1, ...)``); or a module made by :func:`load`.
        sample_input: a ``[batch, time, ...]`` input; it is run once to find every layer's shape
            (the state of ``stateful`` neurons is kept as it was).
        dt: the time step the decays stand for (any unit; NIR's time constants come out in it).
        discretisation: ``"exact"`` (``tau = -dt / ln(alpha)``) or ``"euler"``
            (``tau = dt / (1 - alpha)``); ``r`` and ``w_in`` are chosen so that the input factor of
            the discretisation equals the layer's (1 for snnkern's neurons).
        lossy: export options NIR cannot express as the closest node, with a warning, instead of
            raising :class:`NIRError`.

    Returns:
        a ``nir.NIRGraph`` with ``metadata`` ``{"dt", "discretisation", "source": "snnkern"}``.
    """
    nir = _nir()
    dt = _check_dt(dt, "export")
    discretisation = _check_discretisation(discretisation, "export")
    if not isinstance(model, nn.Module):
        raise TypeError(f"export: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(sample_input, torch.Tensor) or sample_input.dim() < 3:
        shape = tuple(sample_input.shape) if isinstance(sample_input, torch.Tensor) else type(sample_input).__name__
        raise NIRError(f"export: sample_input must be a tensor [batch, time, *features], got {shape}")
    root = (
        nn.Sequential(OrderedDict([(type(model).__name__.lower(), model)]))
        if isinstance(model, _leaf_types())
        else model
    )
    try:
        traced = _Tracer().trace(root)
    except Exception as error:  # any tracing failure means the same here
        raise NIRError(
            f"export: could not trace {type(model).__name__} with torch.fx ({error}); export takes nn.Sequential "
            "models and modules whose forward only calls layers and adds their outputs"
        ) from error
    gm = torch.fx.GraphModule(root, traced)
    from torch.fx.passes.shape_prop import ShapeProp

    kept = _stateful_neurons(model)
    try:
        for m, _ in kept:  # the sample starts from rest; the kept states come back afterwards
            m.state = None
        with torch.no_grad():
            ShapeProp(gm).propagate(sample_input)
    except Exception as error:  # ShapeProp wraps the layer's error in a RuntimeError
        cause = error.__cause__ or error
        raise NIRError(
            f"export: running {type(model).__name__} on sample_input {tuple(sample_input.shape)} failed: "
            f"{type(cause).__name__}: {cause}"
        ) from error
    finally:
        for m, state in kept:
            m.state = state

    ex = _Exporter(dt, discretisation, lossy)
    sources: dict[torch.fx.Node, list[str]] = {}
    input_name: str | None = None
    outputs: list[tuple[str, list[str], tuple[int, ...]]] = []

    def shape_of(node: Any) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
        if meta is None or not hasattr(meta, "shape"):
            raise NIRError(f"export: {node} does not produce a tensor")
        return tuple(int(s) for s in meta.shape)

    def srcs(arg: Any, where: str) -> list[str]:
        if not isinstance(arg, torch.fx.Node) or arg not in sources:
            raise NIRError(f"export: {where} takes {arg!r}, which is not the output of a layer")
        return sources[arg]

    for node in traced.nodes:
        if node.op == "placeholder":
            if input_name is None:
                input_name = "input"
                ex.nodes["input"] = nir.Input(input_type=np.array(sample_input.shape[2:]))
                sources[node] = ["input"]
            elif node.users:
                raise NIRError(f"export: the forward argument {node.target!r} is used; NIR graphs have one input")
        elif node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            tensor_args = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, torch.fx.Node)]
            if len(tensor_args) != 1:
                raise NIRError(
                    f"export: {node.target} ({type(module).__name__}) is called with {len(tensor_args)} inputs"
                )
            inputs = srcs(tensor_args[0], str(node.target))
            in_shape = shape_of(tensor_args[0])[2:]
            names = ex.module_nodes(str(node.target), module, in_shape, sample_input)
            if names is None:
                sources[node] = inputs
            else:
                ex.edges.extend((s, names[0]) for s in inputs)
                sources[node] = [names[-1]]
        elif node.op in ("call_function", "call_method") and node.target in (operator.add, torch.add, "add", "__add__"):
            if node.kwargs or len(node.args) != 2:
                raise NIRError(f"export: {node.target} with other arguments than two layer outputs has no NIR form")
            sources[node] = srcs(node.args[0], "a sum") + srcs(node.args[1], "a sum")
        elif node.op == "output":
            result = node.args[0]
            if isinstance(result, torch.fx.Node):
                outputs.append(("output", srcs(result, "the output"), shape_of(result)[2:]))
            elif isinstance(result, dict):
                for key, value in result.items():
                    outputs.append((f"output_{key}", srcs(value, "an output"), shape_of(value)[2:]))
            elif isinstance(result, (tuple, list)):
                for i, value in enumerate(result):
                    outputs.append((f"output_{i}", srcs(value, "an output"), shape_of(value)[2:]))
            else:
                raise NIRError(f"export: the model returns {type(result).__name__}, not tensors")
        else:
            target = getattr(node.target, "__name__", node.target)
            raise NIRError(
                f"export: the operation {node.op} {target!r} in {type(model).__name__}.forward has no NIR form; "
                "NIR graphs hold layers and sums of their outputs"
            )
    if input_name is None:
        raise NIRError("export: the model takes no input")
    for name, srcs_, shape in outputs:
        out = ex.unique(name)
        ex.nodes[out] = nir.Output(output_type=np.array(shape))
        ex.edges.extend((s, out) for s in srcs_)
    ex.fold_scales()
    metadata = {"dt": dt, "discretisation": discretisation, "source": "snnkern"}
    try:
        return nir.NIRGraph(nodes=ex.nodes, edges=ex.edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError) as error:
        raise NIRError(f"export: the graph fails NIR's type check: {error}") from error


def write(
    model: nn.Module,
    path: str | os.PathLike[str],
    sample_input: torch.Tensor,
    *,
    dt: float,
    discretisation: str = "exact",
    lossy: bool = False,
) -> Any:
    """:func:`export` ``model`` and write the graph to ``path`` (a ``.nir`` HDF5 file, ``nir.write``);
    returns the graph."""
    graph = export(model, sample_input, dt=dt, discretisation=discretisation, lossy=lossy)
    _nir().write(path, graph)
    return graph


# ============================================================================================
# Load
# ============================================================================================


def _array(node: Any, field: str, where: str) -> tuple[np.ndarray, np.dtype]:
    """A node parameter as float64, and the dtype it was stored in."""
    value = getattr(node, field, None)
    if value is None:
        raise NIRError(f"{where}: the parameter {field} is missing")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    raw = np.asarray(value)
    if raw.dtype.kind not in "fiub":
        raise NIRError(f"{where}: the parameter {field} is not numeric ({raw.dtype})")
    if raw.size == 0:
        raise NIRError(f"{where}: the parameter {field} is empty")
    out = raw.astype(np.float64)
    if np.any(np.isnan(out)):
        raise NIRError(f"{where}: the parameter {field} holds NaN")
    return out, (raw.dtype if raw.dtype.kind == "f" else np.dtype(np.float64))


def _uniform(values: np.ndarray) -> float | None:
    flat = values.reshape(-1)
    return float(flat[0]) if bool(np.all(flat == flat[0])) else None


class _Loader:
    def __init__(self, dt: float, discretisation: str, dtype: torch.dtype) -> None:
        self.nir = _nir()
        self.dt, self.discretisation, self.dtype = dt, discretisation, dtype

    # -- parameters ------------------------------------------------------------------------

    @staticmethod
    def unit(values: np.ndarray, precision: np.dtype) -> np.ndarray:
        """An input factor within a few ulps (of the parameters' precision) of 1 is 1: the peers
        write r = tau / dt beside tau = dt / (1 - beta) (and w_in = tau_syn / dt) to mean a unit
        factor, which their float32 rounding leaves at 1 +- 1e-7."""
        eps = float(np.finfo(precision if precision.itemsize < 8 else np.float64).eps)
        return np.where(np.abs(values - 1.0) <= _UNIT_ULPS * eps, 1.0, values)

    @staticmethod
    def recorded(node: Any, key: str, values: np.ndarray) -> np.ndarray:
        """snnkern's exact value from the node's metadata where it matches ``values``."""
        md = getattr(node, "metadata", None) or {}
        if key not in md:
            return values
        try:
            rec = np.broadcast_to(np.asarray(md[key], dtype=np.float64), values.shape)
        except (ValueError, TypeError):
            return values
        if np.allclose(rec, values, rtol=_RECORDED_RTOL, atol=1e-12):
            return np.array(rec)
        return values

    def decay(self, where: str, node: Any, field: str, key: str) -> tuple[np.ndarray, np.ndarray, np.dtype]:
        tau, precision = _array(node, field, where)
        if np.any(tau < 0):
            raise NIRError(f"{where}: {field} must be >= 0, got {tau.min()}")
        alpha = _decay_of(tau, self.dt, self.discretisation)
        if np.any(alpha < 0):
            raise NIRError(
                f"{where}: the Euler decay 1 - dt/{field} = {alpha.min():.4g} is negative (dt = {self.dt} > {field} = "
                f"{tau.min():.4g}); load with a smaller dt or discretisation='exact'"
            )
        alpha = self.recorded(node, key, alpha)
        return alpha, tau, precision

    def tensor(self, values: np.ndarray | float) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64)).to(self.dtype)

    def uniform_param(self, where: str, node: Any, field: str) -> float:
        values, _ = _array(node, field, where)
        value = _uniform(values)
        if value is None:
            raise NIRError(
                f"{where}: {field} differs between neurons; snnkern's neurons take one {field} for all neurons"
            )
        return value

    def surrogate(self, node: Any) -> dict[str, Any]:
        md = getattr(node, "metadata", None) or {}
        out: dict[str, Any] = {}
        name = md.get("snnkern_surrogate")
        if isinstance(name, bytes):
            name = name.decode()
        if name in _SURROGATES and "snnkern_surrogate_param" in md:
            out["surrogate"] = _SURROGATES[name](float(np.asarray(md["snnkern_surrogate_param"])))
        if "snnkern_detach_reset" in md:
            out["detach_reset"] = bool(np.asarray(md["snnkern_detach_reset"]))
        return out

    def lif_neuron(self, where: str, node: Any, alpha: np.ndarray, alpha_syn: np.ndarray | None) -> LIFNeuron:
        threshold, _ = _array(node, "v_threshold", where)
        v_reset = self.uniform_param(where, node, "v_reset") if getattr(node, "v_reset", None) is not None else 0.0
        v_leak = self.uniform_param(where, node, "v_leak") if hasattr(node, "v_leak") else 0.0
        params = {"alpha": alpha, "threshold": threshold} | ({} if alpha_syn is None else {"alpha_syn": alpha_syn})
        uniform = {k: _uniform(v) for k, v in params.items()}
        shape = np.broadcast_shapes(*(v.shape for k, v in params.items() if uniform[k] is None))
        a_u, s_u, t_u = uniform["alpha"], uniform.get("alpha_syn"), uniform["threshold"]
        neuron = LIFNeuron(
            alpha=a_u if a_u is not None else 0.5,
            alpha_syn=None if alpha_syn is None else (s_u if s_u is not None else 0.5),
            threshold=t_u if t_u is not None else 1.0,
            reset="zero",
            v_reset=v_reset,
            v_leak=v_leak,
            ordering="charge_first",
            current_first=True,
            shape=tuple(int(s) for s in shape),
            learn_alpha=a_u is None or (alpha_syn is not None and s_u is None),
            learn_threshold=t_u is None,
            dtype=self.dtype,
            **self.surrogate(node),
        )
        self.fill(neuron, "alpha", alpha)
        if alpha_syn is not None:
            self.fill(neuron, "alpha_syn", alpha_syn)
        self.fill(neuron, "threshold", threshold)
        return neuron

    def leaky_neuron(self, alpha: np.ndarray) -> LeakyNeuron:
        a_u = _uniform(alpha)
        neuron = LeakyNeuron(
            alpha=a_u if a_u is not None else 0.5,
            shape=alpha.shape,
            learn_alpha=a_u is None,
            dtype=self.dtype,
        )
        self.fill(neuron, "alpha", alpha)
        return neuron

    def fill(self, neuron: nn.Module, name: str, values: np.ndarray) -> None:
        param = getattr(neuron, name)
        if isinstance(param, torch.Tensor):
            with torch.no_grad():
                param.copy_(
                    self.tensor(values).reshape(param.shape) if values.size == param.numel() else self.tensor(values)
                )

    def scale(self, factor: np.ndarray) -> torch.Tensor | None:
        if np.all(factor == 1.0):
            return None
        u = _uniform(factor)
        return self.tensor(u if u is not None else factor)

    # -- nodes -----------------------------------------------------------------------------

    def neuron(self, where: str, node: Any) -> tuple[NIRNeuron, np.ndarray]:
        """The module of a neuron node and its input factor."""
        nir, dt, disc = self.nir, self.dt, self.discretisation
        if isinstance(node, (nir.IF, nir.I)):
            r, precision = _array(node, "r", where)
            factor = self.recorded(node, "snnkern_scale", self.unit(r * dt, precision))
            one = np.ones(r.shape)
            if isinstance(node, nir.IF):
                return NIRNeuron(self.lif_neuron(where, node, one, None), self.scale(factor)), factor
            return NIRNeuron(self.leaky_neuron(one), self.scale(factor)), factor
        if isinstance(node, (nir.LIF, nir.LI)):
            alpha, tau, p_tau = self.decay(where, node, "tau", "snnkern_alpha")
            r, p_r = _array(node, "r", where)
            precision = min(p_tau, p_r, key=lambda d: d.itemsize)
            factor = self.unit(r * _factor_of(tau, _decay_of(tau, dt, disc), dt, disc), precision)
            factor = self.recorded(node, "snnkern_scale", factor)
            if isinstance(node, nir.LIF):
                return NIRNeuron(self.lif_neuron(where, node, alpha, None), self.scale(factor)), factor
            if self.uniform_param(where, node, "v_leak") != 0.0:
                raise NIRError(f"{where}: v_leak != 0; snnkern's leaky integrator has no resting potential")
            return NIRNeuron(self.leaky_neuron(alpha), self.scale(factor)), factor
        # CubaLIF, CubaLI: the current I (tau_syn, w_in) drives the membrane (tau_mem, r)
        alpha, tau_mem, p_mem = self.decay(where, node, "tau_mem", "snnkern_alpha")
        alpha_syn, tau_syn, p_syn = self.decay(where, node, "tau_syn", "snnkern_alpha_syn")
        r, p_r = _array(node, "r", where)
        w_in, p_w = _array(node, "w_in", where)
        precision = min(p_mem, p_syn, p_r, p_w, key=lambda d: d.itemsize)
        f_mem = self.unit(r * _factor_of(tau_mem, _decay_of(tau_mem, dt, disc), dt, disc), precision)
        f_syn = self.unit(w_in * _factor_of(tau_syn, _decay_of(tau_syn, dt, disc), dt, disc), precision)
        factor = self.recorded(node, "snnkern_scale", self.unit(f_mem * f_syn, precision))
        if isinstance(node, nir.CubaLIF):
            return NIRNeuron(self.lif_neuron(where, node, alpha, alpha_syn), self.scale(factor)), factor
        if self.uniform_param(where, node, "v_leak") != 0.0:
            raise NIRError(f"{where}: v_leak != 0; snnkern's leaky integrator has no resting potential")
        return NIRNeuron(self.leaky_neuron(alpha), self.scale(factor), synapse=self.leaky_neuron(alpha_syn)), factor

    def recurrent(self, where: str, neuron_node: Any, weight_node: Any) -> RecurrentNeuron:
        nir = self.nir
        module, factor = self.neuron(where, neuron_node)
        lif = module.neuron
        if not isinstance(lif, LIFNeuron):  # pragma: no cover - callers pass LIF / CubaLIF only
            raise NIRError(f"{where}: a recurrent loop needs spiking neurons")
        weight, _ = _array(weight_node, "weight", where)
        n = weight.shape[0]
        if weight.ndim != 2 or weight.shape[1] != n:
            raise NIRError(f"{where}: the recurrent weight must be square, got shape {weight.shape}")
        bias = None
        if isinstance(weight_node, nir.Affine):
            b, _ = _array(weight_node, "bias", where)
            bias = None if np.all(b == 0) else self.tensor(b)
        return RecurrentNeuron(lif, self.tensor(weight), bias, self.scale(factor))

    def layer(self, where: str, node: Any) -> nn.Module:
        nir = self.nir
        if isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)):
            return self.neuron(where, node)[0]
        if isinstance(node, (nir.Linear, nir.Affine)):
            weight, _ = _array(node, "weight", where)
            if weight.ndim != 2:
                raise NIRError(f"{where}: weight of shape {weight.shape}; snnkern loads 2-D weights [out, in]")
            bias = isinstance(node, nir.Affine)
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias, dtype=self.dtype)
            with torch.no_grad():
                linear.weight.copy_(self.tensor(weight))
                if linear.bias is not None:
                    b, _ = _array(node, "bias", where)
                    linear.bias.copy_(self.tensor(b).reshape(-1))
            return linear
        if isinstance(node, nir.Scale):
            scale, _ = _array(node, "scale", where)
            return Scale(self.tensor(scale))
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):
            return TimeFolded(self.conv(where, node))
        if isinstance(node, nir.Flatten):
            start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
            return TimeFolded(nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end))
        if isinstance(node, nir.SumPool2d):
            return TimeFolded(SumPool2d(node.kernel_size, node.stride, node.padding))
        if isinstance(node, nir.AvgPool2d):
            return TimeFolded(nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding)))
        raise NIRError(f"{where}: NIR node type {type(node).__name__} is not supported; snnkern loads {_SUPPORTED}")

    def conv(self, where: str, node: Any) -> nn.Module:
        nir = self.nir
        weight, _ = _array(node, "weight", where)
        two = isinstance(node, nir.Conv2d)
        if weight.ndim != (4 if two else 3):
            raise NIRError(f"{where}: weight of shape {weight.shape} is not that of a {type(node).__name__}")
        groups = int(np.asarray(node.groups))

        def ints(value: Any) -> Any:
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str):
                return value
            arr = np.asarray(value).reshape(-1)
            if two:
                return _pair(arr)
            return int(arr[0])

        conv_cls = nn.Conv2d if two else nn.Conv1d
        conv = conv_cls(
            weight.shape[1] * groups,
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=ints(node.stride),
            padding=ints(node.padding),
            dilation=ints(node.dilation),
            groups=groups,
            bias=True,
            dtype=self.dtype,
        )
        bias = np.zeros(weight.shape[0]) if node.bias is None else _array(node, "bias", where)[0]
        with torch.no_grad():
            conv.weight.copy_(self.tensor(weight))
            assert conv.bias is not None
            conv.bias.copy_(self.tensor(bias).reshape(-1))
        return conv

    # -- graphs ----------------------------------------------------------------------------

    def graph(self, graph: Any, where: str, nested: bool = False) -> nn.Module:
        nir = self.nir
        nodes: dict[str, Any] = dict(graph.nodes)
        edges = [(_text(a), _text(b)) for a, b in graph.edges]
        duplicates = sorted({e for e in edges if edges.count(e) > 1})
        if duplicates:
            raise NIRError(f"{where}: duplicate edges {duplicates}")
        for a, b in edges:
            for end in (a, b):
                if end not in nodes:
                    raise NIRError(
                        f"{where}: the edge ({a!r}, {b!r}) names the node {end!r}, which is not in the graph"
                    )
        inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
        outs = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
        if len(inputs) != 1:
            raise NIRError(f"{where}: the graph has {len(inputs)} Input nodes {inputs}; snnkern runs graphs with one")
        if not outs:
            raise NIRError(f"{where}: the graph has no Output node")
        for name in outs:
            if any(a == name for a, _ in edges):
                raise NIRError(f"{where}: the Output node {name!r} has outgoing edges")
        if any(b == inputs[0] for _, b in edges):
            raise NIRError(f"{where}: the Input node {inputs[0]!r} has incoming edges")

        modules: dict[str, nn.Module] = {}
        # Recurrent loops in this graph: neuron <-> weight, the weight fed only by the neuron.
        for a, b in list(edges):
            if (b, a) not in edges or a not in nodes or b not in nodes:
                continue
            neuron_node, weight_node = nodes[a], nodes[b]
            if not isinstance(neuron_node, (nir.LIF, nir.CubaLIF)) or not isinstance(
                weight_node, (nir.Linear, nir.Affine)
            ):
                continue
            if [e for e in edges if e[1] == b] != [(a, b)] or [e for e in edges if e[0] == b] != [(b, a)]:
                continue
            modules[a] = self.recurrent(f"{where}{a} ({type(neuron_node).__name__} <-> {b})", neuron_node, weight_node)
            edges = [e for e in edges if b not in e]
            del nodes[b]

        for name, node in nodes.items():
            if name in modules or isinstance(node, (nir.Input, nir.Output)):
                continue
            node_where = f"{where}{name} ({type(node).__name__})"
            if isinstance(node, nir.NIRGraph):
                modules[name] = self.graph(node, f"{where}{name}/", nested=True)
            else:
                modules[name] = self.layer(node_where, node)

        sources = {k: [a for a, b in edges if b == k] for k in nodes}
        for name in modules:
            if not sources[name]:
                raise NIRError(f"{where}{name} ({type(nodes[name]).__name__}): no edge leads into this node")
        # topological order (Kahn); what remains is a cycle snnkern cannot run
        order: list[str] = []
        done = {inputs[0]}
        pending = [k for k in nodes if k in modules]
        while pending:
            ready = [k for k in pending if all(s in done for s in sources[k])]
            if not ready:
                raise NIRError(
                    f"{where}: the nodes {sorted(pending)} form a cycle (or hang off one) that is not a recurrent "
                    "LIF/CubaLIF <-> Linear/Affine pair; snnkern runs only that recurrence"
                )
            for k in ready:
                order.append(k)
                done.add(k)
            pending = [k for k in pending if k not in done]
        for name in outs:
            missing = [s for s in sources[name] if s not in done]
            if missing or not sources[name]:
                raise NIRError(f"{where}{name} (Output): not reached from the input")

        chain = self.chain(inputs[0], outs, order, sources)
        taken: set[str] = set()
        if chain is not None:
            if nested and len(chain) == 1:
                return modules[chain[0]]
            return nn.Sequential(OrderedDict((_module_name(k, taken), modules[k]) for k in chain))
        names = {k: _module_name(k, taken) for k in [inputs[0], *order]}
        return GraphExecutor(
            {names[k]: modules[k] for k in order},
            [names[k] for k in order],
            {names[k]: [names[s] for s in sources[k]] for k in order},
            names[inputs[0]],
            {o: [names[s] for s in sources[o]] for o in outs},
        )

    @staticmethod
    def chain(input_name: str, outs: list[str], order: list[str], sources: dict[str, list[str]]) -> list[str] | None:
        """The nodes in order if the graph is input -> a -> b -> ... -> output."""
        if len(outs) != 1 or len(sources[outs[0]]) != 1:
            return None
        chain: list[str] = []
        node = sources[outs[0]][0]
        while node != input_name:
            if len(sources[node]) != 1:
                return None
            chain.append(node)
            node = sources[node][0]
        chain.reverse()
        if sorted(chain) != sorted(order):
            return None
        users = [s for k in [*order, outs[0]] for s in sources[k]]
        if len(users) != len(set(users)):  # a node feeding two others is no chain
            return None
        return chain


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _module_name(name: str, taken: set[str]) -> str:
    out = re.sub(r"[^0-9A-Za-z_]", "_", name) or "node"
    if keyword.iskeyword(out) or hasattr(nn.ModuleDict(), out) or hasattr(nn.Sequential(), out):
        out = f"node_{out}"
    base, i = out, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def _scan_file(path: str) -> None:
    """Checks that ``path`` is a NIR file of node types this nir package knows, naming the first
    node that is not (nir.read itself fails with a bare assertion)."""
    nir = _nir()
    try:
        import h5py  # nir's own dependency
    except ImportError:  # pragma: no cover - nir requires h5py
        return
    known = set(nir.ir.__all__) - {"NIRNode", "str2NIRNode", "dict2NIRNode"}
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise NIRError(f"load: {path} is not a NIR (HDF5) file: {error}") from error
    with f:
        if "node" not in f:
            raise NIRError(f"load: {path} holds no NIR graph (no 'node' group)")

        def walk(group: Any, where: str) -> None:
            kind = _text(group["type"][()]) if "type" in group else None
            if kind is None:
                raise NIRError(f"load: {path}: the node {where or '/'} has no type")
            if kind not in known:
                raise NIRError(
                    f"load: {path}: the node {where!r} has the unknown NIR type {kind!r} (this nir package knows "
                    f"{sorted(known)})"
                )
            if kind == "NIRGraph" and "nodes" in group:
                for key in group["nodes"]:
                    walk(group["nodes"][key], f"{where}/{key}" if where else key)

        walk(f["node"], "")


def load(
    graph_or_path: Any,
    *,
    dt: float | None = None,
    discretisation: str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """A module of snnkern layers that runs a NIR graph on ``[batch, time, ...]`` input.

    Args:
        graph_or_path: a ``nir.NIRGraph`` (or a single node) or the path of a ``.nir`` file.
        dt: the time step; default: the graph's ``metadata["dt"]`` (written by :func:`export`).
            Graphs of other libraries carry none: snnTorch and SpikingJelly export with
            ``dt=1e-4`` and Euler, Sinabs in steps (``dt=1``, exact); see ``docs/nir.md``.
        discretisation: ``"exact"`` or ``"euler"``; default: the graph's
            ``metadata["discretisation"]``.
        dtype: dtype of the weights and per-neuron parameters (default: torch's default dtype).

    Returns:
        an ``nn.Sequential`` for a chain of nodes, else a :class:`GraphExecutor`; neurons are
        :class:`NIRNeuron` (LIF, IF, CubaLIF, LI, I, CubaLI) and :class:`RecurrentNeuron`
        (a LIF/CubaLIF <-> Linear/Affine loop, flat or as snnTorch's subgraph), per-step layers
        :class:`snnkern.nn.TimeFolded`. Every neuron starts each call from rest (zero membrane).

    Raises:
        FileNotFoundError: no file at the path.
        NIRError: a node type or parameter snnkern cannot run, an inconsistent graph (named).
    """
    nir = _nir()
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = os.fspath(graph_or_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load: no NIR file at {path}")
        _scan_file(path)
        try:
            graph = nir.read(path, type_check=False)
        except Exception as error:  # nir.read fails with asserts, KeyErrors, ...
            raise NIRError(f"load: could not read the NIR graph in {path}: {type(error).__name__}: {error}") from error
    else:
        graph = graph_or_path
    if not isinstance(graph, nir.NIRNode):
        raise TypeError(f"load: expected a nir.NIRGraph or a path, got {type(graph).__name__}")
    if not isinstance(graph, nir.NIRGraph):  # a single node: Input -> node -> Output
        graph = nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array([1])),
                "node": graph,
                "output": nir.Output(output_type=np.array([1])),
            },
            edges=[("input", "node"), ("node", "output")],
            type_check=False,
        )
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None:
        if "dt" not in metadata:
            raise NIRError(
                "load: the graph records no time step: pass dt= (snnTorch and SpikingJelly export with dt=1e-4 and "
                "discretisation='euler', Sinabs with dt=1 and 'exact'; see docs/nir.md)"
            )
        dt = metadata["dt"]
    dt = _check_dt(dt, "load")
    if discretisation is None:
        if "discretisation" not in metadata:
            raise NIRError(
                "load: the graph records no discretisation: pass discretisation='exact' or 'euler' (snnTorch, "
                "SpikingJelly and Norse read NIR with Euler)"
            )
        discretisation = metadata["discretisation"]
    discretisation = _check_discretisation(discretisation, "load")
    loader = _Loader(dt, discretisation, dtype or torch.get_default_dtype())
    return loader.graph(graph, "")
