"""SpikingJelly's ``LIFNode`` on snnkern's fused scan.

``from snnkern.compat.spikingjelly import LIFNode`` replaces
``from spikingjelly.activation_based.neuron import LIFNode``: same constructor, same state
(``v``, ``v_seq``), same step modes, same numbers. SpikingJelly's neuron (version 2, the
``activation_based`` package) runs, per step, with ``H`` the charged membrane::

    decay_input=True:   H = V + (X - (V - V_reset)) / tau
    decay_input=False:  H = V - (V - V_reset) / tau + X          (V_reset None: 0 here)
    S = heaviside(H - V_threshold)
    V = H (1 - S) + V_reset S      (hard reset)   or   V = H - V_threshold S   (V_reset None)

which is :func:`snnkern.lif` with ``ordering="charge_first"``, Euler decay
``alpha = 1 - 1/tau``, leak towards ``v_leak = V_reset`` (0 for the soft reset), the input
divided by ``tau`` when ``decay_input`` (done here, before the scan), and ``reset="zero"`` with
``v_reset = V_reset`` or ``reset="subtract"``.

Multi-step mode (``step_mode="m"``, input ``[T, N, *]``) runs the whole sequence in one fused
scan; single-step mode (``"s"``, input ``[N, *]``) runs a scan of one step per call. Both keep
the membrane ``v`` between calls until :meth:`LIFNode.reset` (SpikingJelly's
``functional.reset_net`` calls it).

Differences: SpikingJelly's spike is ``H - V_threshold >= 0``, snnkern's ``> 0``: they differ
only where the membrane equals the threshold exactly. Surrogates map where the derivative is the
same function (:func:`surrogate_from_spikingjelly`); any other is refused by name.
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
from ..reference_ops import reset_membrane

if TYPE_CHECKING:
    _MemoryModule = nn.Module
else:
    # With SpikingJelly installed the node is one of its MemoryModules, so that its network
    # helpers (functional.reset_net, detach_net, set_step_mode) take it without a warning. The
    # node keeps its own state and methods either way.
    try:
        from spikingjelly.activation_based.base import MemoryModule as _MemoryModule
    except ImportError:
        _MemoryModule = nn.Module

__all__ = ["LIFNode", "surrogate_from_spikingjelly", "converters"]

_SJ_SURROGATE_MODULE = "spikingjelly.activation_based.surrogate"
# SpikingJelly 2 has no backend argument; 0.0.0.0.14 chose its own kernels with it. Those names
# select snnkern's default backend here.
_PEER_BACKENDS = ("torch", "cupy", "triton")
_SJ_DEFAULT_SIGMOID_ALPHA = 4.0  # SpikingJelly's Sigmoid() default


def surrogate_from_spikingjelly(function: Any, v_threshold: float = 1.0) -> sk.Surrogate:
    """The snnkern surrogate whose derivative is that of SpikingJelly's surrogate ``function``.

    Maps, with ``y = H - V_threshold``:

    - ``Sigmoid(alpha)`` (``alpha s (1 - s)``, ``s = sigmoid(alpha y)``) -> ``Sigmoid(alpha)``
    - ``ATan(alpha)`` (``(alpha/2) / (1 + (pi/2 alpha y)^2)``) -> ``ATan(alpha)``
    - ``SuperSpike(alpha=1)`` (``alpha / (|y| + 1)^2``) -> ``FastSigmoid(1)``
    - ``PiecewiseQuadratic(alpha)`` with ``alpha * v_threshold == 1``
      (``max(0, alpha - alpha^2 |y|)``) -> ``Triangle(alpha)``

    A snnkern :class:`~snnkern.surrogate.Surrogate` passes through. Anything else (other
    classes, other parameters, ``spiking=False``, a tensor ``alpha``) raises ``NotImplementedError``.
    """
    if isinstance(function, sk.Surrogate):
        return function
    if function is None:
        return sk.Sigmoid(_SJ_DEFAULT_SIGMOID_ALPHA)
    name = type(function).__name__
    if type(function).__module__ != _SJ_SURROGATE_MODULE:
        raise NotImplementedError(
            f"surrogate_function={function!r}: snnkern maps SpikingJelly's own surrogates "
            "(activation_based.surrogate Sigmoid, ATan, SuperSpike, PiecewiseQuadratic) or a "
            "snnkern.surrogate.Surrogate; a custom surrogate has no fused equivalent"
        )
    if not getattr(function, "spiking", True):
        raise NotImplementedError(
            f"surrogate_function={name}(spiking=False): the primitive (non-spiking) mode has no snnkern "
            "equivalent; snnkern's neurons always emit spikes"
        )
    alpha = getattr(function, "alpha", None)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise NotImplementedError(
            f"surrogate_function={name}(alpha={alpha!r}): snnkern needs a fixed python number alpha > 0 "
            "(a learnable or tensor alpha is not supported)"
        )
    alpha = float(alpha)
    if name == "Sigmoid":
        return sk.Sigmoid(alpha)
    if name == "ATan":
        return sk.ATan(alpha)
    if name == "SuperSpike":
        if alpha != 1.0:
            raise NotImplementedError(
                f"surrogate_function=SuperSpike(alpha={alpha}): its derivative alpha / (|y| + 1)^2 matches "
                "snnkern's FastSigmoid(1) only for alpha = 1"
            )
        return sk.FastSigmoid(1.0)
    if name == "PiecewiseQuadratic":
        if not v_threshold > 0 or not math.isclose(alpha * v_threshold, 1.0, rel_tol=1e-12, abs_tol=0.0):
            raise NotImplementedError(
                f"surrogate_function=PiecewiseQuadratic(alpha={alpha}) with v_threshold={v_threshold}: its "
                "derivative max(0, alpha - alpha^2 |y|) is snnkern's Triangle(alpha) only when "
                "alpha * v_threshold == 1"
            )
        return sk.Triangle(alpha)
    raise NotImplementedError(
        f"surrogate_function={name}: no snnkern surrogate has its derivative; use Sigmoid, ATan, "
        "SuperSpike(alpha=1) or PiecewiseQuadratic(alpha=1/v_threshold), or a snnkern.surrogate.Surrogate"
    )


class LIFNode(_MemoryModule):
    """SpikingJelly's ``LIFNode`` (``activation_based.neuron``) running on :func:`snnkern.lif`.

    Args:
        tau: membrane time constant (> 1, in steps); the decay per step is ``1 - 1/tau``.
        decay_input: divide the input by ``tau`` (SpikingJelly's default True).
        v_threshold: spike threshold.
        v_reset: the potential a spike resets the membrane to, or None for a soft reset
            (subtract ``v_threshold``). Also the resting potential the membrane leaks towards
            (0 for the soft reset), and the initial membrane.
        surrogate_function: SpikingJelly surrogate (mapped by :func:`surrogate_from_spikingjelly`)
            or a snnkern surrogate; default SpikingJelly's ``Sigmoid(alpha=4)``.
        detach_reset: no gradient through the reset's spike.
        step_mode: "s" (input ``[N, *]``, one step per call) or "m" (input ``[T, N, *]``,
            time-major, the fused path).
        store_v_seq: keep the membrane after each step (after the reset) in ``v_seq``
            ``[T, N, *]``; in single-step mode each call appends its step until :meth:`reset`.
        backend: (keyword) snnkern's backend, "compiled" or "reference" (None: the default).
            SpikingJelly 0.0.0.0.14's "torch" and "cupy" are accepted and mean the default.

    The positional order is SpikingJelly 2's (``store_v_seq`` eighth).

    State: ``v``, a float (before the first call and after :meth:`reset`) or a tensor ``[N, *]``,
    the membrane after the last step, carrying its autograd graph as SpikingJelly's does (cut
    it with :meth:`detach`).
    """

    v: float | torch.Tensor
    v_seq: torch.Tensor | None

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Any = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or not tau > 1:
            raise ValueError(f"tau must be a finite number > 1 (as SpikingJelly requires), got {tau!r}")
        if isinstance(v_threshold, bool) or not isinstance(v_threshold, (int, float)) or not math.isfinite(v_threshold):
            raise ValueError(f"v_threshold must be a finite number, got {v_threshold!r}")
        if v_reset is not None and (
            isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)) or not math.isfinite(v_reset)
        ):
            raise ValueError(f"v_reset must be a finite number or None (soft reset), got {v_reset!r}")
        if not isinstance(detach_reset, bool):
            raise TypeError(f"detach_reset must be a bool, got {detach_reset!r}")
        if backend in _PEER_BACKENDS:
            backend = None
        if backend is not None and backend not in ops.BACKENDS:
            raise ValueError(
                f"backend={backend!r}: snnkern's backends are {ops.BACKENDS} (or None for the default); "
                f"SpikingJelly's {_PEER_BACKENDS} also select the default"
            )
        self.tau = float(tau)
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = detach_reset
        self.backend = backend
        self.step_mode = step_mode
        self.surrogate_function = surrogate_function
        self.snn_surrogate()  # refuse an unsupported surrogate now, by name
        self.store_v_seq = bool(store_v_seq)
        self.v = self._v_init()
        self.v_seq = None

    # --- SpikingJelly's interface ---------------------------------------------------------

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' (single step) or 'm' (multi-step), got {value!r}")
        self._step_mode = value

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s", "m")

    def reset(self) -> None:
        """Back to the initial membrane (``v_reset``, 0 for the soft reset); forget ``v_seq``."""
        self.v = self._v_init()
        self.v_seq = None

    def detach(self) -> None:
        """Cut the state from the autograd graph of earlier steps (truncated BPTT)."""
        if isinstance(self.v, torch.Tensor):
            self.v = self.v.detach()
        if self.v_seq is not None:
            self.v_seq = self.v_seq.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            return self.multi_step_forward(x)
        return self.single_step_forward(x)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, *]`` -> spikes ``[N, *]``."""
        spikes, _ = self._scan(x.unsqueeze(0), with_v_seq=False)
        if self.store_v_seq and isinstance(self.v, torch.Tensor):
            self._append_v_seq(self.v)
        return spikes[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A sequence: ``x_seq`` ``[T, N, *]`` -> spikes ``[T, N, *]`` (one fused scan)."""
        spikes, v_seq = self._scan(x_seq, with_v_seq=self.store_v_seq)
        self.v_seq = v_seq
        return spikes

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
            f"step_mode={self.step_mode}, tau={self.tau}, decay_input={self.decay_input}, "
            f"surrogate={self.snn_surrogate()}, backend={self.backend}"
        )

    # --- snnkern ---------------------------------------------------------------------------

    def snn_surrogate(self) -> sk.Surrogate:
        """The snnkern surrogate of ``surrogate_function`` (checked against ``v_threshold``)."""
        return surrogate_from_spikingjelly(self.surrogate_function, self.v_threshold)

    def lif_options(self) -> dict[str, Any]:
        """The :func:`snnkern.lif` options this node runs with (the input already divided by
        ``tau`` when ``decay_input``)."""
        soft = self.v_reset is None
        return dict(
            threshold=self.v_threshold,
            reset="subtract" if soft else "zero",
            v_reset=0.0 if soft else self.v_reset,
            v_leak=0.0 if soft else self.v_reset,
            detach_reset=self.detach_reset,
            ordering="charge_first",
            surrogate=self.snn_surrogate(),
        )

    @property
    def alpha(self) -> float:
        """The decay per step, ``1 - 1/tau`` (forward Euler)."""
        return 1.0 - 1.0 / self.tau

    def _v_init(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def _initial_v(self, step_shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        """The membrane to start from, as SpikingJelly materialises it: the stored tensor, or a
        fresh one filled with the stored float (or with the initial value when the input's shape
        changed)."""
        v = self.v
        if isinstance(v, torch.Tensor):
            if v.shape == step_shape:
                return v.to(dtype=like.dtype, device=like.device)
            v = self._v_init()
        return torch.full(step_shape, float(v), dtype=like.dtype, device=like.device)

    def _scan(self, x_seq: torch.Tensor, with_v_seq: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(x_seq, torch.Tensor):
            raise TypeError(f"LIFNode takes a torch.Tensor, got {type(x_seq).__name__}")
        if x_seq.dim() < 1:
            raise ValueError("LIFNode in step_mode 'm' takes [T, N, *] sequences")
        step_shape = x_seq.shape[1:]
        t, n = x_seq.shape[0], math.prod(step_shape)
        v0 = self._initial_v(step_shape, x_seq)
        # Every option is a scalar: all elements of a step are independent lanes, so the scan
        # runs on [T, 1, n] (a view of a contiguous input, no copy).
        xin = x_seq / self.tau if self.decay_input else x_seq
        state = torch.stack([v0.reshape(1, n), v0.new_zeros(1, n), v0.new_zeros(1, n)])
        options = self.lif_options()
        result = ops.lif(
            xin.reshape(t, 1, n),
            self.alpha,
            state=state,
            return_membrane=with_v_seq,
            batch_first=False,
            backend=self.backend,
            **options,
        )
        self.v = result.state[0].reshape(step_shape).to(x_seq.dtype)
        spikes = result.spikes.reshape(x_seq.shape)
        if not with_v_seq:
            return spikes, None
        assert result.membrane is not None
        # SpikingJelly records the membrane after the reset; snnkern returns it before.
        h = result.membrane.reshape(x_seq.shape)
        return spikes, reset_membrane(
            h, spikes, options["reset"], self.v_threshold, options["v_reset"], self.detach_reset
        )

    def _append_v_seq(self, v: torch.Tensor) -> None:
        step = v.unsqueeze(0)
        seq = self.v_seq
        if seq is None or seq.shape[1:] != step.shape[1:] or seq.device != step.device or seq.dtype != step.dtype:
            self.v_seq = step.clone()
        else:
            self.v_seq = torch.cat((seq, step))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> LIFNode:
        # .to(), .double(), .cuda() move the state too, as SpikingJelly's memories move.
        if isinstance(self.v, torch.Tensor):
            self.v = fn(self.v)
        return super()._apply(fn) if recurse else super()._apply(fn, recurse)

    # --- conversion ------------------------------------------------------------------------

    @classmethod
    def from_spikingjelly(cls, node: Any, backend: str | None = None) -> LIFNode:
        """The snnkern node of a SpikingJelly ``LIFNode``: same options and state (``v``, ``v_seq``)."""
        if not _is_peer_lif_node(node):
            raise TypeError(
                f"{type(node).__module__}.{type(node).__name__} is not SpikingJelly's LIFNode itself: its "
                "dynamics may differ, snnkern converts only activation_based.neuron.LIFNode"
            )
        if getattr(node, "_neuron_precision", None) is not None:
            raise NotImplementedError(
                "the SpikingJelly LIFNode has a neuron precision set (its precision tools): snnkern runs in "
                "the dtype of the input; clear it before converting"
            )
        new = cls(
            tau=node.tau,
            decay_input=node.decay_input,
            v_threshold=node.v_threshold,
            v_reset=node.v_reset,
            surrogate_function=node.surrogate_function,
            detach_reset=node.detach_reset,
            step_mode=node.step_mode,
            store_v_seq=node.store_v_seq,
            backend=backend,
        )
        new.v = node.v
        new.v_seq = node.v_seq
        new.train(node.training)
        return new


def _peer_lif_node() -> type:
    """SpikingJelly's LIFNode class (ImportError without SpikingJelly)."""
    cls: type = importlib.import_module("spikingjelly.activation_based.neuron").LIFNode
    return cls


def _is_peer_lif_node(node: Any) -> bool:
    """``node`` is SpikingJelly's LIFNode itself, not a subclass with other dynamics."""
    return type(node) is _peer_lif_node()


def converters() -> dict[type, Callable[[nn.Module], nn.Module]]:
    """For :func:`snnkern.compat.convert`: SpikingJelly's neuron classes -> the function that
    builds their snnkern equivalent (raises ImportError without SpikingJelly)."""
    return {_peer_lif_node(): LIFNode.from_spikingjelly}
