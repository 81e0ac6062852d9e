"""Sinabs' ``LIF``, ``IAF`` and ``ExpLeak`` layers (and their ``Squeeze`` and ``Recurrent`` forms)
on snnkern's fused scans.

``from snnkern.compat.sinabs import LIF, IAF`` replaces ``from sinabs.layers import LIF, IAF``:
same constructor, parameters and state buffers (state_dicts load either way), batch-first
``[B, T, *]`` input, the same numbers. Sinabs (3.x) runs, per step::

    i_syn = alpha_syn (i_syn + x)                  (tau_syn given; else i_syn = x)
    v_mem = alpha_mem v_mem + c i_syn              c = 1 - alpha_mem if norm_input else 1
    s     = spike_fn(v_mem)                        MultiSpike: (v > 0) trunc(v / theta); SingleSpike: v >= theta
    v_mem = v_mem - theta s                        MembraneSubtract;  MembraneReset(0): v_mem (s == 0)

with ``alpha = exp(-1/tau)`` (``alpha_mem = 1`` for IAF). That is :func:`snnkern.lif` with
``ordering="charge_first"``, ``current_first=True``, the input scaled by ``c alpha_syn`` (done
here; the synaptic state then holds ``c i_syn``), ``spike="multi"`` or ``"binary"`` and
``reset="subtract"`` or ``"zero"`` (with ``detach_reset``: Sinabs' MembraneReset multiplies by a
comparison, which has no gradient).

Differences: SingleSpike fires at ``v >= theta``, snnkern's binary spike at ``v > theta`` (only
an exact equality differs; MultiSpike is the same formula in both). What snnkern cannot express
is refused with the option's name (``NotImplementedError``): ``min_v_mem``, surrogates other
than ``SingleExponential`` with ``grad_scale=1``, ``MembraneReset`` with a reset value other than
0 or with MultiSpike, ``MembraneSubtract(subtract_value=...)``, ``MaxSpike`` with a maximum,
custom functions, a threshold that requires grad; for the recurrent layers a ``rec_connect``
other than a square ``nn.Linear``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import ops
from .. import surrogate as sk
from .._types import LIFResult
from ..reference_ops import reset_membrane

if TYPE_CHECKING:
    _StatefulLayer = nn.Module
else:
    # With Sinabs installed the layers are StatefulLayers, so that sinabs.utils.reset_states and
    # zero_grad find them; they keep their own state handling either way.
    try:
        from sinabs.layers import StatefulLayer as _StatefulLayer
    except ImportError:
        _StatefulLayer = nn.Module

__all__ = [
    "LIF",
    "IAF",
    "ExpLeak",
    "LIFSqueeze",
    "IAFSqueeze",
    "ExpLeakSqueeze",
    "LIFRecurrent",
    "IAFRecurrent",
    "DEFAULT",
    "converters",
]

_SINABS_ACTIVATION = "sinabs.activation"


def _peer_name(obj: Any) -> str | None:
    """The Sinabs activation class name of ``obj`` (a class or an instance), or None if it is
    not one of Sinabs' own."""
    cls = obj if isinstance(obj, type) else type(obj)
    module = getattr(cls, "__module__", "") or ""
    if module != _SINABS_ACTIVATION and not module.startswith(_SINABS_ACTIVATION + "."):
        return None
    return cls.__name__


def _spike_mode(spike_fn: Any) -> str | None:
    """snnkern's ``spike`` for Sinabs' ``spike_fn``; None for no spike function (the layer then
    outputs its membrane)."""
    if spike_fn is None:
        return None
    name = _peer_name(spike_fn)
    if name == "MultiSpike" and isinstance(spike_fn, type):
        return "multi"
    if name == "SingleSpike" and isinstance(spike_fn, type):
        return "binary"
    if name == "MaxSpike" and not isinstance(spike_fn, type):
        if getattr(spike_fn, "max_num_spikes_per_bin", None) is None:
            return "multi"
        raise NotImplementedError(
            f"spike_fn=MaxSpike(max_num_spikes_per_bin={spike_fn.max_num_spikes_per_bin}): snnkern's spike "
            "counts have no maximum; use MultiSpike (MaxSpike without a maximum)"
        )
    raise NotImplementedError(
        f"spike_fn={spike_fn!r}: snnkern supports Sinabs' MultiSpike and SingleSpike (the classes), "
        "MaxSpike() without a maximum, or None"
    )


def _reset_mode(reset_fn: Any, spike: str) -> tuple[str, bool]:
    """snnkern's (reset, detach_reset) for Sinabs' ``reset_fn``."""
    name = _peer_name(reset_fn)
    if name == "MembraneSubtract":
        if getattr(reset_fn, "subtract_value", None) is not None:
            raise NotImplementedError(
                f"reset_fn=MembraneSubtract(subtract_value={reset_fn.subtract_value}): snnkern's subtract "
                "reset removes the threshold; leave subtract_value=None"
            )
        return "subtract", False
    if name == "MembraneReset":
        if spike == "multi":
            raise NotImplementedError(
                "reset_fn=MembraneReset with spike_fn=MultiSpike: snnkern's spike counts need the subtract "
                "reset (use MembraneSubtract, or SingleSpike)"
            )
        if getattr(reset_fn, "reset_value", 0.0) != 0.0:
            raise NotImplementedError(
                f"reset_fn=MembraneReset(reset_value={reset_fn.reset_value}): Sinabs adds the reset value to "
                "every neuron's membrane each step, spiking or not, which snnkern does not express; only "
                "reset_value=0 is supported"
            )
        # Sinabs multiplies by (spikes == 0): a comparison, no gradient through the spike.
        return "zero", True
    raise NotImplementedError(
        f"reset_fn={reset_fn!r}: snnkern supports Sinabs' MembraneSubtract() and MembraneReset(reset_value=0)"
    )


def _surrogate(surrogate_grad_fn: Any) -> sk.Surrogate:
    if isinstance(surrogate_grad_fn, sk.Surrogate):
        return surrogate_grad_fn
    name = _peer_name(surrogate_grad_fn)
    if name == "SingleExponential" and not isinstance(surrogate_grad_fn, type):
        scale, width = surrogate_grad_fn.grad_scale, surrogate_grad_fn.grad_width
        if scale != 1.0:
            raise NotImplementedError(
                f"surrogate_grad_fn=SingleExponential(grad_scale={scale}): snnkern's Exponential surrogate has "
                "grad_scale 1"
            )
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
            raise ValueError(f"surrogate_grad_fn=SingleExponential(grad_width={width!r}): needs a number > 0")
        return sk.Exponential(float(width))
    raise NotImplementedError(
        f"surrogate_grad_fn={surrogate_grad_fn!r}: snnkern maps Sinabs' SingleExponential(grad_scale=1) "
        "(to snnkern.surrogate.Exponential) or takes a snnkern.surrogate.Surrogate; Heaviside, Gaussian, "
        "MultiGaussian, PeriodicExponential and custom functions have no fused equivalent"
    )


class _SinabsDefault:
    """The default of a Sinabs activation argument (``spike_fn=None`` means no spikes in Sinabs,
    so None cannot stand for the default)."""

    def __repr__(self) -> str:
        return "<Sinabs' default>"


DEFAULT: Any = _SinabsDefault()


def _default_activations() -> tuple[Any, Any, Any]:
    """Sinabs' defaults (MultiSpike, MembraneSubtract(), SingleExponential()) as its own objects
    when Sinabs is installed, else as their snnkern meaning ("multi", "subtract", Exponential(0.5))."""
    try:
        peer = importlib.import_module("sinabs.activation")
    except ImportError:
        return "multi", "subtract", sk.Exponential(0.5)
    return peer.MultiSpike, peer.MembraneSubtract(), peer.SingleExponential()


_SNN_RESETS = {"subtract": ("subtract", False), "zero": ("zero", True)}


def _resolve(spike_fn: Any, reset_fn: Any, surrogate_grad_fn: Any) -> tuple[str | None, str, bool, sk.Surrogate]:
    """(spike, reset, detach_reset, surrogate) of :func:`snnkern.lif` for Sinabs' functions; the
    snnkern names ("multi"/"binary", "subtract"/"zero", a Surrogate) are taken as well."""
    spike = spike_fn if isinstance(spike_fn, str) and spike_fn in ("multi", "binary") else _spike_mode(spike_fn)
    if spike is None:  # Sinabs skips the reset (and the surrogate) without a spike function
        return None, "none", False, sk.Sigmoid()
    if isinstance(reset_fn, str) and reset_fn in _SNN_RESETS:
        reset, detach = _SNN_RESETS[reset_fn]
        if spike == "multi" and reset == "zero":
            raise NotImplementedError("reset_fn='zero' with spike counts (MultiSpike): use the subtract reset")
    else:
        reset, detach = _reset_mode(reset_fn, spike)
    return spike, reset, detach, _surrogate(surrogate_grad_fn)


class LIF(_StatefulLayer):
    """Sinabs' ``LIF`` layer (``sinabs.layers.LIF``) running on :func:`snnkern.lif`.

    Args (Sinabs' own, with its defaults; ``DEFAULT`` stands for Sinabs' default function):
        tau_mem: membrane time constant (steps), a float or a tensor broadcastable to the neuron
            shape; ``alpha_mem = exp(-1/tau_mem)``. Learnable (a Parameter), as in Sinabs.
        tau_syn: synaptic time constant, or None for no synaptic current.
        spike_threshold: threshold (a fixed Parameter, requires_grad False as in Sinabs).
        spike_fn: ``MultiSpike`` (default; spike counts), ``SingleSpike``, ``MaxSpike()`` without
            a maximum, or None (no spikes: the layer outputs its membrane).
        reset_fn: ``MembraneSubtract()`` (default) or ``MembraneReset(reset_value=0)``.
        surrogate_grad_fn: ``SingleExponential(grad_width, grad_scale=1)`` (default width 0.5),
            or a snnkern surrogate.
        min_v_mem: must be None (a lower bound on the membrane is not supported).
        train_alphas: learn ``alpha_mem``/``alpha_syn`` instead of the time constants.
        shape: initialise the state with this shape ``(B, *neurons)``.
        norm_input: scale the input by ``1 - alpha_mem`` (default True).
        record_states: keep ``recordings`` {"v_mem", "i_syn"}: the states after each step,
            ``[B, T, *]``.
        backend: snnkern's backend, "compiled" or "reference" (None: the default).

    State buffers ``v_mem`` (and ``i_syn``), shape ``[B, *neurons]`` after the first call,
    carried between calls with their autograd graph as in Sinabs (``reset_states()``,
    ``zero_grad()`` or ``sinabs.utils.reset_states`` cut it).
    """

    # The buffers and parameters are those Sinabs registers, by name (state_dicts load either way).
    v_mem: torch.Tensor
    i_syn: torch.Tensor | None  # a buffer with tau_syn, else None
    tau_mem: nn.Parameter | None
    tau_syn: nn.Parameter | None
    alpha_mem: nn.Parameter
    alpha_syn: nn.Parameter | None
    spike_threshold: nn.Parameter | None
    min_v_mem: nn.Parameter | None
    _time_constant: bool = True  # takes tau_mem, train_alphas and norm_input (not the IAF layers)
    _activations: bool = True  # takes spike_fn, reset_fn, surrogate_grad_fn and tau_syn (not ExpLeak)

    def __init__(
        self,
        tau_mem: float | torch.Tensor,
        tau_syn: float | torch.Tensor | None = None,
        spike_threshold: float | torch.Tensor | None = 1.0,
        spike_fn: Any = DEFAULT,
        reset_fn: Any = DEFAULT,
        surrogate_grad_fn: Any = DEFAULT,
        min_v_mem: float | torch.Tensor | None = None,
        train_alphas: bool = False,
        shape: torch.Size | tuple[int, ...] | None = None,
        norm_input: bool = True,
        record_states: bool = False,
        backend: str | None = None,
    ) -> None:
        nn.Module.__init__(self)
        if min_v_mem is not None:
            raise NotImplementedError(
                f"min_v_mem={min_v_mem}: a lower bound on the membrane is not supported by snnkern"
            )
        if backend is not None and backend not in ops.BACKENDS:
            raise ValueError(f"backend={backend!r}: snnkern's backends are {ops.BACKENDS} (or None for the default)")
        self.register_buffer("v_mem", torch.zeros(0))
        if tau_syn is not None:
            self.register_buffer("i_syn", torch.zeros(0))
        default_spike, default_reset, default_surrogate = _default_activations()
        self.spike_fn = default_spike if spike_fn is DEFAULT else spike_fn
        self.reset_fn = default_reset if reset_fn is DEFAULT else reset_fn
        self.surrogate_grad_fn = default_surrogate if surrogate_grad_fn is DEFAULT else surrogate_grad_fn
        self.backend = backend
        self.train_alphas = bool(train_alphas)
        self.norm_input = bool(norm_input)
        self.record_states = bool(record_states)
        self.recordings: dict[str, torch.Tensor] = {}
        if self.train_alphas:
            self.alpha_mem = _decay_parameter(tau_mem, as_alpha=True)
            self.alpha_syn = None if tau_syn is None else _decay_parameter(tau_syn, as_alpha=True)
        else:
            self.tau_mem = _decay_parameter(tau_mem, as_alpha=False)
            self.tau_syn = None if tau_syn is None else _decay_parameter(tau_syn, as_alpha=False)
        self.min_v_mem = None
        self.spike_threshold = (
            None if spike_threshold is None else nn.Parameter(_float_tensor(spike_threshold), requires_grad=False)
        )
        self.snn_options()  # refuse unsupported options now, by name
        if shape:
            self.init_state_with_shape(shape)

    # --- Sinabs' interface ----------------------------------------------------------------

    @property
    def alpha_mem_calculated(self) -> torch.Tensor:
        """``alpha_mem``, from ``tau_mem`` unless the alphas are trained."""
        if self.train_alphas:
            return self.alpha_mem
        assert self.tau_mem is not None
        return torch.exp(-1.0 / self.tau_mem)

    @property
    def alpha_syn_calculated(self) -> torch.Tensor | None:
        if self.train_alphas:
            return self.alpha_syn
        return None if self.tau_syn is None else torch.exp(-1.0 / self.tau_syn)

    @property
    def tau_mem_calculated(self) -> torch.Tensor | None:
        if self.train_alphas:
            return -1.0 / torch.log(self.alpha_mem)
        return self.tau_mem

    @property
    def tau_syn_calculated(self) -> torch.Tensor | None:
        if self.train_alphas:
            return None if self.alpha_syn is None else -1.0 / torch.log(self.alpha_syn)
        return self.tau_syn

    @property
    def shape(self) -> torch.Size | None:
        return self.v_mem.shape if self.is_state_initialised() else None

    @property
    def does_spike(self) -> bool:
        return self.spike_fn is not None

    def is_state_initialised(self) -> bool:
        return all(b.shape != torch.Size([0]) for b in self.buffers(recurse=False))

    def state_has_shape(self, shape: tuple[int, ...] | torch.Size) -> bool:
        return all(b.shape == torch.Size(shape) for b in self.buffers(recurse=False))

    def has_trailing_dimension(self, trailing_dim: tuple[int, ...] | list[int] | torch.Size) -> bool:
        return all(b.shape[1:] == torch.Size(trailing_dim) for b in self.buffers(recurse=False))

    def init_state_with_shape(self, shape: tuple[int, ...] | torch.Size, randomize: bool = False) -> None:
        """Zero state of shape ``(B, *neurons)`` (in the default dtype, as Sinabs makes it)."""
        for name, buffer in self.named_buffers(recurse=False):
            self.register_buffer(name, torch.zeros(shape, device=buffer.device))
        self.reset_states(randomize=randomize)

    def reset_states(self, randomize: bool = False, value_ranges: dict[str, tuple[float, float]] | None = None) -> None:
        """Zero the state (or draw it uniformly, per state in ``value_ranges``, default [0, 1]),
        cut from the autograd graph. The buffers are new tensors: after a call they are views of
        the scan's state, which in-place ops must not touch."""
        if not self.is_state_initialised():
            return
        for name, buffer in self.named_buffers(recurse=False):
            fresh = torch.zeros_like(buffer, requires_grad=False)
            if randomize:
                low, high = value_ranges[name] if value_ranges and name in value_ranges else (0.0, 1.0)
                nn.init.uniform_(fresh)
                fresh = fresh * (high - low) + low
            self.register_buffer(name, fresh)

    def handle_state_batch_size_mismatch(self, new_batch_size: int) -> None:
        """A new batch size: rows of the old state drawn at random, as Sinabs does."""
        for name, buffer in self.named_buffers(recurse=False):
            rows = torch.randint(low=0, high=buffer.shape[0], size=(new_batch_size,)).to(buffer.device)
            self.register_buffer(name, torch.index_select(buffer, 0, rows))

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the parameters' gradients and cut the state from the autograd graph."""
        super().zero_grad(set_to_none)
        if self.is_state_initialised():
            for name, b in self.named_buffers(recurse=False):
                self.register_buffer(name, b.detach())

    @property
    def _param_dict(self) -> dict[str, Any]:
        """The constructor arguments of an equal layer (Sinabs' ``arg_dict``)."""
        tau_mem, tau_syn = self.tau_mem_calculated, self.tau_syn_calculated
        return dict(
            tau_mem=None if tau_mem is None else tau_mem.detach(),
            tau_syn=None if tau_syn is None else tau_syn.detach(),
            spike_threshold=None if self.spike_threshold is None else self.spike_threshold.detach(),
            spike_fn=self.spike_fn,
            reset_fn=self.reset_fn,
            surrogate_grad_fn=self.surrogate_grad_fn,
            train_alphas=self.train_alphas,
            shape=self.shape,
            min_v_mem=None,
            norm_input=self.norm_input,
            record_states=self.record_states,
            backend=self.backend,
        )

    @property
    def arg_dict(self) -> dict[str, Any]:
        return self._param_dict

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> LIF:
        new = self.__class__(**self._param_dict)
        for name, param in self.named_parameters(recurse=False):
            getattr(new, name).data = param.data.clone()
        for name, buffer in self.named_buffers(recurse=False):
            new.register_buffer(name, buffer.detach().clone())
        new.train(self.training)
        return new

    def __repr__(self) -> str:
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        spike, reset, _, surrogate = self.snn_options()
        return f"spike={spike!r}, reset={reset!r}, norm_input={self.norm_input}, surrogate={surrogate}"

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The state buffers take the shape of the saved state (the layers start with shape [0]).
        for name, buffer in self.named_buffers(recurse=False):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, torch.Tensor) and saved.shape != buffer.shape:
                self.register_buffer(name, torch.zeros(saved.shape, dtype=buffer.dtype, device=buffer.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # --- snnkern ---------------------------------------------------------------------------

    def snn_options(self) -> tuple[str | None, str, bool, sk.Surrogate]:
        """(spike, reset, detach_reset, surrogate) of :func:`snnkern.lif` for this layer's
        Sinabs options; spike None: no spike function. Raises naming an unsupported option."""
        if self.min_v_mem is not None:
            raise NotImplementedError("min_v_mem: a lower bound on the membrane is not supported by snnkern")
        spike, reset, detach, surrogate = _resolve(self.spike_fn, self.reset_fn, self.surrogate_grad_fn)
        if spike is not None and self.spike_threshold is None:
            raise ValueError("spike_threshold=None: a spiking layer needs a threshold")
        return spike, reset, detach, surrogate

    def _membrane_decay(self) -> float | torch.Tensor:
        return self.alpha_mem_calculated

    def _prepare_state(self, batch: int, trailing: list[int]) -> None:
        if not self.is_state_initialised():
            self.init_state_with_shape((batch, *trailing))
        if not self.state_has_shape((batch, *trailing)):
            if not self.has_trailing_dimension(trailing):
                self.init_state_with_shape((batch, *trailing))
            else:
                self.handle_state_batch_size_mismatch(batch)

    def forward(self, input_data: torch.Tensor) -> torch.Tensor:
        """``input_data`` ``[B, T, *neurons]`` -> spikes (counts with MultiSpike) of that shape,
        or the membrane after each step without a spike function."""
        if not isinstance(input_data, torch.Tensor) or input_data.dim() < 2:
            raise ValueError("the input must be a tensor [batch, time, *neurons]")
        spike, reset, detach, surrogate = self.snn_options()
        batch, _, *trailing = input_data.shape
        self._prepare_state(batch, trailing)
        one = not trailing  # [B, T]: one neuron per batch row, run as [B, T, 1]
        x = input_data.unsqueeze(-1) if one else input_data
        alpha = self._membrane_decay()
        alpha_syn = self.alpha_syn_calculated
        # Sinabs drives the membrane with c i_syn, i_syn <- alpha_syn (i_syn + x): the scan runs on
        # the input scaled by c alpha_syn and keeps c i_syn as its current.
        c: float | torch.Tensor = (1.0 - alpha) if self.norm_input else 1.0
        scale = c if alpha_syn is None else c * alpha_syn
        v0 = self.v_mem.to(x.dtype)
        zeros = torch.zeros_like(v0)
        i0 = zeros
        if alpha_syn is not None:
            if self.norm_input:
                _check_invertible(alpha)
            i0 = self.get_buffer("i_syn").to(x.dtype) * c
        if one:
            v0, i0, zeros = v0.unsqueeze(-1), i0.unsqueeze(-1), zeros.unsqueeze(-1)
        threshold: float | torch.Tensor = 1.0  # unused without a spike function (no reset)
        if spike is not None:
            assert self.spike_threshold is not None
            if self.spike_threshold.requires_grad:
                raise NotImplementedError(
                    "spike_threshold requires grad: Sinabs differentiates the threshold only through the "
                    "subtract reset, snnkern also through the spike; keep it fixed (requires_grad=False)"
                )
            threshold = self.spike_threshold.detach()
        options: dict[str, Any] = dict(
            alpha_syn=alpha_syn,
            threshold=threshold,
            reset=reset,
            detach_reset=detach,
            ordering="charge_first",
            current_first=True,
            spike=spike or "binary",
            surrogate=surrogate,
            state=torch.stack([v0, i0, zeros]),
            return_membrane=self.record_states or spike is None,
            backend=self.backend,
        )
        result, drive = self._scan(x, scale, alpha, options)
        spikes, state, membrane = result.spikes, result.state, result.membrane
        if one:
            spikes, state = spikes.squeeze(-1), state.squeeze(-1)
            membrane = None if membrane is None else membrane.squeeze(-1)
        self.v_mem = state[0]
        if alpha_syn is not None:
            self.i_syn = state[1] if isinstance(c, float) else state[1] / c
        else:
            self.i_syn = None
        recordings: dict[str, torch.Tensor] = {}
        if self.record_states:
            assert membrane is not None
            recordings["v_mem"] = self._after_reset(membrane, spikes, reset, detach)
            if alpha_syn is not None:
                # The synaptic current after each step: the leaky trace of the scaled drive.
                trace = ops.leaky(drive(), alpha_syn, state=torch.stack([i0, zeros, zeros]), backend=self.backend)
                current = trace.membrane.squeeze(-1) if one else trace.membrane
                recordings["i_syn"] = current if isinstance(c, float) else current / c
        self.recordings = recordings
        out = spikes if spike is not None else membrane
        assert out is not None
        self.firing_rate = out.mean()
        return out

    def _scan(
        self, x: torch.Tensor, scale: float | torch.Tensor, alpha: float | torch.Tensor, options: dict[str, Any]
    ) -> tuple[LIFResult, Callable[[], torch.Tensor]]:
        """The fused scan of the input ``x`` scaled by ``scale``; and a function giving the
        whole (scaled) drive of the synaptic current, for the recordings."""
        xin = x if isinstance(scale, float) and scale == 1.0 else x * scale
        return ops.lif(xin, alpha, **options), lambda: xin

    def _after_reset(self, membrane: torch.Tensor, spikes: torch.Tensor, reset: str, detach: bool) -> torch.Tensor:
        """Sinabs records the membrane after the reset; snnkern returns it before."""
        threshold = 0.0 if self.spike_threshold is None else self.spike_threshold.detach()
        return reset_membrane(membrane, spikes, reset, threshold, 0.0, detach)

    # --- conversion ------------------------------------------------------------------------

    @classmethod
    def from_sinabs(cls, layer: Any, backend: str | None = None) -> LIF:
        """The snnkern layer of the Sinabs layer of the same class name (``LIF``, ``IAF``, their
        ``Squeeze`` and ``Recurrent`` forms): same options and state; it takes over the layer's
        Parameter objects (and ``rec_connect``), so an optimiser built before the conversion keeps
        training them."""
        peer_cls = type(layer)
        if peer_cls.__name__ != cls.__name__ or not peer_cls.__module__.startswith("sinabs.layers"):
            raise TypeError(
                f"{peer_cls.__module__}.{peer_cls.__name__} is not sinabs.layers.{cls.__name__}: its dynamics may "
                f"differ, so it is not converted to snnkern's {cls.__name__}"
            )
        if layer.min_v_mem is not None:
            raise NotImplementedError(
                f"min_v_mem={layer.min_v_mem.item()}: a lower bound on the membrane is not supported"
            )
        args: dict[str, Any] = dict(record_states=layer.record_states, backend=backend)
        if cls._activations:
            args.update(
                spike_fn=layer.spike_fn,
                reset_fn=layer.reset_fn,
                surrogate_grad_fn=layer.surrogate_grad_fn,
                tau_syn=None if layer.tau_syn_calculated is None else 2.0,  # values: the Parameters, below
            )
        if cls._time_constant:
            args.update(tau_mem=2.0, train_alphas=layer.train_alphas, norm_input=layer.norm_input)
        if issubclass(cls, LIFRecurrent):
            args.update(rec_connect=layer.rec_connect)
        if issubclass(cls, _Squeeze):
            args.update(batch_size=layer.batch_size, num_timesteps=layer.num_timesteps)
        new = cls(**args)
        for name, param in layer.named_parameters(recurse=False):
            setattr(new, name, param)
        if layer.spike_threshold is None:
            new.spike_threshold = None
        for name, buffer in layer.named_buffers(recurse=False):
            new.register_buffer(name, buffer)  # the state itself, with its graph
        new.train(layer.training)
        return new


def _float_tensor(value: Any) -> torch.Tensor:
    t = torch.as_tensor(value)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _decay_parameter(tau: float | torch.Tensor, as_alpha: bool) -> nn.Parameter:
    """A time constant as Sinabs stores it (float32), or its decay exp(-1/tau) with train_alphas."""
    t = torch.as_tensor(tau, dtype=torch.float32)
    return nn.Parameter(torch.exp(-1.0 / t) if as_alpha else t)


def _check_invertible(alpha: float | torch.Tensor) -> None:
    """norm_input with a synaptic current: the scan keeps c i_syn, c = 1 - alpha_mem, and gives
    i_syn back divided by c."""
    if isinstance(alpha, torch.Tensor) and (torch.compiler.is_compiling() or alpha.device.type == "meta"):
        return
    if bool(torch.as_tensor(alpha == 1.0).any()):
        raise NotImplementedError(
            "norm_input=True with tau_syn and alpha_mem = 1 (tau_mem = inf): the input never reaches the "
            "membrane and snnkern's scan cannot keep i_syn; use norm_input=False"
        )


class LIFRecurrent(LIF):
    """Sinabs' ``LIFRecurrent`` (``sinabs.layers.LIFRecurrent``) on :func:`snnkern.recurrent_lif`.

    ``rec_connect`` must be a ``torch.nn.Linear(N, N)`` and the input ``[B, T, N]``: Sinabs adds
    ``rec_connect(s_{t-1})`` to the input of step ``t`` (nothing at the first step of a call,
    as its recurrent input starts from zero at every call), which is the fused recurrent op with
    the weight and the input scaled as the layer's input (the bias joins the input from the
    second step on). A spike function is required (Sinabs would feed the membrane back without
    one). ``record_states`` records the states after each step (Sinabs 3.1.3's own recordings of
    this layer hold the next step's values, a bug of its loop).
    """

    rec_connect: nn.Linear

    def __init__(
        self,
        tau_mem: float | torch.Tensor,
        rec_connect: nn.Module,
        tau_syn: float | torch.Tensor | None = None,
        spike_threshold: float | torch.Tensor | None = 1.0,
        spike_fn: Any = DEFAULT,
        reset_fn: Any = DEFAULT,
        surrogate_grad_fn: Any = DEFAULT,
        min_v_mem: float | torch.Tensor | None = None,
        train_alphas: bool = False,
        shape: torch.Size | tuple[int, ...] | None = None,
        norm_input: bool = True,
        record_states: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(
            tau_mem=tau_mem,
            tau_syn=tau_syn,
            spike_threshold=spike_threshold,
            spike_fn=spike_fn,
            reset_fn=reset_fn,
            surrogate_grad_fn=surrogate_grad_fn,
            min_v_mem=min_v_mem,
            train_alphas=train_alphas,
            shape=shape,
            norm_input=norm_input,
            record_states=record_states,
            backend=backend,
        )
        if type(rec_connect) is not nn.Linear or rec_connect.in_features != rec_connect.out_features:
            raise NotImplementedError(
                f"rec_connect={rec_connect!r}: snnkern's fused recurrent layer takes a square torch.nn.Linear "
                "(neurons x neurons); keep the Sinabs layer for other connections"
            )
        self.rec_connect = rec_connect
        if self.snn_options()[0] is None:
            raise NotImplementedError(
                "spike_fn=None: a recurrent layer without spikes feeds back its membrane; not supported"
            )

    def _prepare_state(self, batch: int, trailing: list[int]) -> None:
        # Sinabs' recurrent layers start from zero on any change of shape (no batch resampling).
        if len(trailing) != 1 or trailing[0] != self.rec_connect.in_features:
            raise ValueError(
                f"the input must be [batch, time, {self.rec_connect.in_features}] for rec_connect, got neuron "
                f"shape {trailing}"
            )
        if not self.is_state_initialised() or not self.state_has_shape((batch, *trailing)):
            self.init_state_with_shape((batch, *trailing))

    def _scan(
        self, x: torch.Tensor, scale: float | torch.Tensor, alpha: float | torch.Tensor, options: dict[str, Any]
    ) -> tuple[LIFResult, Callable[[], torch.Tensor]]:
        weight, bias = self.rec_connect.weight, self.rec_connect.bias
        if bias is not None and x.shape[1] > 1:  # rec_connect's bias joins from the second step on
            x = torch.cat([x[:, :1], x[:, 1:] + bias], dim=1)
        if isinstance(scale, float):
            xin, w = (x, weight) if scale == 1.0 else (x * scale, weight * scale)
        else:  # a decay per neuron (or one): scales the rows of the weight, the neurons it feeds
            xin = x * scale
            w = weight * (scale.reshape(-1, 1) if scale.numel() > 1 else scale)
        result = ops.recurrent_lif(xin, w, alpha, **options)

        def drive() -> torch.Tensor:
            before = torch.cat([torch.zeros_like(result.spikes[:, :1]), result.spikes[:, :-1]], dim=1)
            return xin + nn.functional.linear(before, w)

        return result, drive

    @property
    def _param_dict(self) -> dict[str, Any]:
        return dict(super()._param_dict, rec_connect=self.rec_connect)


class _NoLeak:
    """The integrate-and-fire forms (``class IAF(_NoLeak, LIF)``): ``alpha_mem = 1``, no membrane
    time constant, no input scaling."""

    _time_constant = False

    @property
    def alpha_mem_calculated(self) -> torch.Tensor:
        return torch.tensor(1.0)

    def _membrane_decay(self) -> float | torch.Tensor:
        return 1.0

    @property
    def _param_dict(self) -> dict[str, Any]:
        args = super()._param_dict  # type: ignore[misc]  # the layer class after this mixin
        for name in ("tau_mem", "train_alphas", "norm_input"):
            args.pop(name)
        return args


class IAF(_NoLeak, LIF):
    """Sinabs' ``IAF`` (``sinabs.layers.IAF``): a LIF with ``alpha_mem = 1`` and no input scaling."""

    def __init__(
        self,
        spike_threshold: float | torch.Tensor = 1.0,
        spike_fn: Any = DEFAULT,
        reset_fn: Any = DEFAULT,
        surrogate_grad_fn: Any = DEFAULT,
        tau_syn: float | torch.Tensor | None = None,
        min_v_mem: float | None = None,
        shape: torch.Size | tuple[int, ...] | None = None,
        record_states: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(
            tau_mem=math.inf,
            tau_syn=tau_syn,
            spike_threshold=spike_threshold,
            spike_fn=spike_fn,
            reset_fn=reset_fn,
            surrogate_grad_fn=surrogate_grad_fn,
            min_v_mem=min_v_mem,
            shape=shape,
            norm_input=False,
            record_states=record_states,
            backend=backend,
        )
        self.tau_mem = None  # IAF has no membrane time constant (as in Sinabs)


class IAFRecurrent(_NoLeak, LIFRecurrent):
    """Sinabs' ``IAFRecurrent``: :class:`LIFRecurrent` with ``alpha_mem = 1``, no input scaling."""

    def __init__(
        self,
        rec_connect: nn.Module,
        spike_threshold: float | torch.Tensor | None = 1.0,
        spike_fn: Any = DEFAULT,
        reset_fn: Any = DEFAULT,
        surrogate_grad_fn: Any = DEFAULT,
        tau_syn: float | torch.Tensor | None = None,
        min_v_mem: float | torch.Tensor | None = None,
        shape: torch.Size | tuple[int, ...] | None = None,
        record_states: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(
            tau_mem=math.inf,
            rec_connect=rec_connect,
            tau_syn=tau_syn,
            spike_threshold=spike_threshold,
            spike_fn=spike_fn,
            reset_fn=reset_fn,
            surrogate_grad_fn=surrogate_grad_fn,
            min_v_mem=min_v_mem,
            shape=shape,
            norm_input=False,
            record_states=record_states,
            backend=backend,
        )
        self.tau_mem = None


class ExpLeak(LIF):
    """Sinabs' ``ExpLeak`` (``sinabs.layers.ExpLeak``): a leaky integrator, the :class:`LIF` without
    spike function or synaptic current; it returns the membrane after each step."""

    _activations = False

    def __init__(
        self,
        tau_mem: float | torch.Tensor,
        shape: torch.Size | tuple[int, ...] | None = None,
        train_alphas: bool = False,
        min_v_mem: float | torch.Tensor | None = None,
        norm_input: bool = False,
        record_states: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(
            tau_mem=tau_mem,
            tau_syn=None,
            spike_threshold=None,
            spike_fn=None,
            reset_fn=None,
            surrogate_grad_fn=None,
            min_v_mem=min_v_mem,
            train_alphas=train_alphas,
            shape=shape,
            norm_input=norm_input,
            record_states=record_states,
            backend=backend,
        )

    @property
    def _param_dict(self) -> dict[str, Any]:
        args = super()._param_dict
        for name in ("tau_syn", "spike_fn", "reset_fn", "surrogate_grad_fn", "spike_threshold"):
            args.pop(name)
        return args


class _Squeeze:
    """Sinabs' ``*Squeeze`` layers: input ``[B*T, *neurons]``, unflattened by ``batch_size`` or
    ``num_timesteps``, then the layer it is mixed into (``class LIFSqueeze(_Squeeze, LIF)``)."""

    batch_size: int
    num_timesteps: int

    def __init__(self, batch_size: int | None = None, num_timesteps: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # the layer class after this mixin
        if not batch_size and not num_timesteps:
            raise TypeError("give batch_size or num_timesteps")
        self.batch_size = int(batch_size) if batch_size else -1
        self.num_timesteps = int(num_timesteps) if num_timesteps else -1

    def forward(self, input_data: torch.Tensor) -> torch.Tensor:
        layer_forward = super().forward  # type: ignore[misc]
        out = layer_forward(input_data.reshape(self.batch_size, self.num_timesteps, *input_data.shape[1:]))
        return out.flatten(0, 1)

    @property
    def _param_dict(self) -> dict[str, Any]:
        layer_args = super()._param_dict  # type: ignore[misc]
        return dict(layer_args, batch_size=self.batch_size, num_timesteps=self.num_timesteps)


class LIFSqueeze(_Squeeze, LIF):
    """Sinabs' ``LIFSqueeze``: :class:`LIF` on ``[B*T, *neurons]`` input."""


class IAFSqueeze(_Squeeze, IAF):
    """Sinabs' ``IAFSqueeze``: :class:`IAF` on ``[B*T, *neurons]`` input."""


class ExpLeakSqueeze(_Squeeze, ExpLeak):
    """Sinabs' ``ExpLeakSqueeze``: :class:`ExpLeak` on ``[B*T, *neurons]`` input."""


def converters() -> dict[type, Callable[[nn.Module], nn.Module]]:
    """For :func:`snnkern.compat.convert`: Sinabs' neuron layers -> the function that builds their
    snnkern equivalent (raises ImportError without Sinabs). Look the classes up by exact type:
    Sinabs derives layers with other shapes or dynamics from LIF (the Squeeze forms, ExpLeak), and
    each function refuses (TypeError) a layer of another class. ALIF layers are not converted."""
    peer = importlib.import_module("sinabs.layers")
    pairs: list[tuple[type, type[LIF]]] = [
        (peer.LIF, LIF),
        (peer.IAF, IAF),
        (peer.LIFSqueeze, LIFSqueeze),
        (peer.IAFSqueeze, IAFSqueeze),
        (peer.LIFRecurrent, LIFRecurrent),
        (peer.IAFRecurrent, IAFRecurrent),
        (peer.ExpLeak, ExpLeak),
        (peer.ExpLeakSqueeze, ExpLeakSqueeze),
    ]

    def make(compat: type[LIF]) -> Callable[[nn.Module], nn.Module]:
        return lambda layer: compat.from_sinabs(layer)

    return {p: make(c) for p, c in pairs}
