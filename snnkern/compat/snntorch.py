"""snnTorch's ``Leaky`` and ``Synaptic`` neurons on snnkern's fused scan.

``from snnkern.compat.snntorch import Leaky, Synaptic`` replaces ``snntorch.Leaky`` and
``snntorch.Synaptic``: same constructor, same parameters and buffers (state_dicts load both
ways), same single-step call ``spk, mem = lif(x_t, mem)`` (``spk, syn, mem = lif(x_t, syn, mem)``),
same numbers. The classes derive from snnTorch's, so ``isinstance`` checks and snnTorch's
helpers (``utils.reset``, ``detach_hidden``, ``reset_mem``, ``init_leaky``) keep working. The
fast path is :meth:`Leaky.sequence` / :meth:`Synaptic.sequence`: the whole time-major sequence
``[T, B, ...]`` in one fused scan, returning the traces the step loop would stack.

snnTorch (1.0) steps the membrane ``U`` of a layer as follows, with ``R = [U_t > theta]`` the
reset of the previous membrane, held constant in backward, ``beta`` clamped to [0, 1] and ``S``
the spike (Heaviside forward, surrogate derivative backward)::

    Leaky    subtract: U_{t+1} = beta U_t + X_t - theta R          S_t = H(U_{t+1} - theta)
             zero:     U_{t+1} = beta (1 - R) U_t + X_t
             none:     U_{t+1} = beta U_t + X_t
    Synaptic I_{t+1} = alpha I_t + X_t,  P = beta U_t + I_{t+1}
             subtract: U_{t+1} = P - theta R;  zero: P (1 - R);  none: P

which is :func:`snnkern.lif` with ``batch_first=False`` and

    ====================================  ==========================================================
    snnTorch                              snnkern.lif
    ====================================  ==========================================================
    Leaky subtract / none                 ordering="update_first", detach_reset=True
    Leaky zero                            ordering="charge_first", detach_reset=True, starting from
                                          the reset initial membrane ``U_0 (1 - [U_0 > theta])``
                                          (snnTorch resets the *old* membrane before the decay,
                                          so its ``U_{t+1}`` is snnkern's pre-reset ``p_t``)
    Synaptic (any reset)                  ordering="update_first", current_first=True,
                                          alpha_syn=alpha, detach_reset=True
    reset_delay=False, zero reset         ordering="charge_first", detach_reset=False (snnTorch
                                          resets with the spike itself, gradient included)
    ====================================  ==========================================================

Refused by name (``NotImplementedError``), because snnkern cannot express them exactly:
``inhibition=True``, ``state_quant``, ``surrogate_disable=True``, surrogates other than
``atan``, ``fast_sigmoid``, ``sigmoid`` (and the default, ``atan(alpha=2)``), and
``reset_delay=False`` with ``reset_mechanism="subtract"``. With ``reset_delay=False`` and the
zero reset, an initial membrane above the threshold or a negative threshold is refused
(``ValueError``): only there does snnTorch's "avoid double reset" term differ from a plain reset.

Differences that do not change the numbers: snnTorch returns float32 spikes for any input dtype,
snnkern spikes in the dtype of the input; snnTorch's ``sigmoid`` surrogate gives NaN where
``slope * |U - theta|`` exceeds about 709 (exp overflow), snnkern's gives 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import ops
from .. import surrogate as sk

if TYPE_CHECKING:
    _PeerLeaky = nn.Module
    _PeerSynaptic = nn.Module
else:
    import snntorch as _snntorch

    _PeerLeaky = _snntorch.Leaky
    _PeerSynaptic = _snntorch.Synaptic

__all__ = ["Leaky", "Synaptic", "surrogate_from_snntorch", "converters"]

# snnTorch's surrogate factories (snntorch.surrogate.<name>(param) returns a closure `inner`
# holding `param`) -> the snnkern surrogate with the same derivative, and the closure variable.
_SNNTORCH_SURROGATES: dict[str, tuple[type[sk.Surrogate], str]] = {
    "atan": (sk.ATan, "alpha"),  # (alpha/2) / (1 + (pi/2 alpha y)^2)
    "fast_sigmoid": (sk.FastSigmoid, "slope"),  # 1 / (slope |y| + 1)^2
    "sigmoid": (sk.Sigmoid, "slope"),  # slope e^{-slope y} / (e^{-slope y} + 1)^2 = slope s (1 - s)
}
_SNNTORCH_DEFAULT = sk.ATan(2.0)  # spike_grad=None: snntorch.surrogate.atan()


def surrogate_from_snntorch(spike_grad: Any) -> sk.Surrogate:
    """The snnkern surrogate with the derivative of snnTorch's ``spike_grad``.

    ``None`` (snnTorch's default, ``atan(alpha=2.0)``) -> ``ATan(2.0)``; ``snntorch.surrogate``
    ``atan(alpha)`` -> ``ATan(alpha)``, ``fast_sigmoid(slope)`` -> ``FastSigmoid(slope)``,
    ``sigmoid(slope)`` -> ``Sigmoid(slope)``; a snnkern surrogate passes through. Any other
    function raises ``NotImplementedError`` naming it.
    """
    if spike_grad is None:
        return _SNNTORCH_DEFAULT
    if isinstance(spike_grad, sk.Surrogate):
        return spike_grad
    qualname = getattr(spike_grad, "__qualname__", "")
    factory = qualname.split(".")[0]
    code = getattr(spike_grad, "__code__", None)
    if (
        getattr(spike_grad, "__module__", None) == "snntorch.surrogate"
        and qualname == f"{factory}.<locals>.inner"
        and factory in _SNNTORCH_SURROGATES
        and code is not None
    ):
        cls, param_name = _SNNTORCH_SURROGATES[factory]
        cells = spike_grad.__closure__ or ()
        closure = {name: cell.cell_contents for name, cell in zip(code.co_freevars, cells, strict=True)}
        value = closure.get(param_name)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.requires_grad:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise NotImplementedError(
                f"spike_grad=snntorch.surrogate.{factory}({param_name}={value!r}): snnkern's surrogates take a "
                "fixed number > 0"
            )
        return cls(float(value))
    name = (
        f"snntorch.surrogate.{factory}()"
        if getattr(spike_grad, "__module__", None) == "snntorch.surrogate"
        else qualname
    )
    raise NotImplementedError(
        f"spike_grad={name or spike_grad!r}: snnkern maps snnTorch's atan(alpha), fast_sigmoid(slope) and "
        "sigmoid(slope) surrogates (or takes a snnkern.surrogate.Surrogate); this one has no fused equivalent"
    )


def _check_options(
    spike_grad: Any,
    surrogate_disable: bool,
    inhibition: bool,
    state_quant: Any,
    reset_mechanism: str,
    reset_delay: bool,
) -> None:
    """Refuse, by name, what the fused scan cannot express (before snnTorch registers the layer)."""
    if surrogate_disable:
        raise NotImplementedError(
            "surrogate_disable=True: snnTorch then passes no gradient through the spikes; snnkern's spikes "
            "always take a surrogate derivative"
        )
    if inhibition:
        raise NotImplementedError(
            "inhibition=True: only the neuron with the largest membrane fires, a coupling across neurons that "
            "snnkern's scan of independent neurons does not express"
        )
    if state_quant:
        raise NotImplementedError("state_quant: quantised membrane and current states are not supported by snnkern")
    if reset_mechanism == "subtract" and not reset_delay:
        raise NotImplementedError(
            "reset_delay=False with reset_mechanism='subtract': snnTorch fires on beta*U + I - theta*R - theta "
            "(R = [U > theta] of the previous membrane, not yet subtracted from the spike decision) but leaves "
            "U = beta*U + I - theta*S, so a membrane still above threshold after a reset needs 2*theta to fire "
            "again; no snnkern ordering has that rule (use reset_delay=True, or reset_mechanism='zero')"
        )
    surrogate_from_snntorch(spike_grad)


def _step_lanes(x: torch.Tensor) -> torch.Tensor:
    """One step ``[batch, *neurons]`` as a sequence of one step ``[1, batch, *neurons]`` (a 0-D or
    1-D step runs as one batch row)."""
    return x.unsqueeze(0) if x.dim() >= 2 else x.reshape(1, 1, -1)


def _sequence_lanes(x: torch.Tensor) -> torch.Tensor:
    """A time-major sequence as ``[T, batch, *neurons]`` (at least 3-D)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError("sequence() takes a time-major tensor [T, batch, *neurons]")
    return x if x.dim() >= 3 else x.reshape(x.shape[0], 1, -1)


def _starts_above(mem: torch.Tensor, theta: torch.Tensor) -> bool:
    """Whether a reset_delay=False step would start from a membrane snnTorch resets twice: one
    above the threshold, or a negative threshold (where the reset value 0 lies above it)."""
    if torch.compiler.is_compiling():
        return False
    return bool((theta < 0).any()) or bool((mem > theta).any())


def _floating(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An integer parameter (``beta=1``, ``threshold=1``: snnTorch keeps torch.as_tensor's int64) as
    floats; floating tensors pass unchanged."""
    return t if t.is_floating_point() else t.to(dtype)


def _accumulate(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _SnnTorchScan:
    """What Leaky and Synaptic share: the mapping onto :func:`snnkern.lif`."""

    # Set by snnTorch's constructor (typing only; the attributes are snnTorch's).
    beta: torch.Tensor
    threshold: torch.Tensor
    graded_spikes_factor: torch.Tensor
    spike_grad: Any
    surrogate_disable: bool
    inhibition: bool
    state_quant: Any
    init_hidden: bool
    output: bool
    reset_delay: bool
    _reset_mechanism: str
    backend: str | None
    _synaptic: bool = False

    def snn_surrogate(self) -> sk.Surrogate:
        """The snnkern surrogate of ``spike_grad``."""
        return surrogate_from_snntorch(self.spike_grad)

    def lif_options(self) -> dict[str, Any]:
        """The :func:`snnkern.lif` options (besides the decays and the state) this layer runs with."""
        _check_options(
            self.spike_grad,
            self.surrogate_disable,
            self.inhibition,
            self.state_quant,
            self._reset_mechanism,
            self.reset_delay,
        )
        reset = self._reset_mechanism
        if reset == "none" or self.reset_delay:
            charge_first = reset == "zero" and not self._synaptic
            ordering, detach = ("charge_first" if charge_first else "update_first"), True
        else:  # reset_delay=False, zero reset (subtract is refused above)
            ordering, detach = "charge_first", False
        return dict(
            threshold=self.threshold,
            reset=reset,
            ordering=ordering,
            detach_reset=detach,
            current_first=self._synaptic,
            surrogate=self.snn_surrogate(),
        )

    def _graded(self, spikes: torch.Tensor) -> torch.Tensor:
        gsf = self.graded_spikes_factor
        if gsf.requires_grad or bool((gsf != 1).any()):
            return spikes * gsf
        return spikes

    def _scan(
        self, x: torch.Tensor, mem: torch.Tensor, syn: torch.Tensor | None, syn_trace: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Run ``x`` ``[T, B, *neurons]`` from the membrane ``mem`` (and current ``syn``), both
        ``[B, *neurons]``: (spikes, membrane trace, final current, current trace)."""
        options = self.lif_options()
        theta = self.threshold
        v0 = mem
        if options["ordering"] == "charge_first" and options["detach_reset"]:
            # Leaky's zero reset: snnTorch resets the stored membrane at the start of a step.
            v0 = (1 - (mem - theta > 0).to(mem.dtype)) * mem
        elif options["ordering"] == "charge_first" and _starts_above(mem, theta):
            # reset_delay=False: exact while no step starts above threshold (see the module notes).
            raise ValueError(
                "reset_delay=False with reset_mechanism='zero' needs an initial membrane <= threshold and a "
                "threshold >= 0: otherwise snnTorch's double-reset correction (spk - reset) changes the "
                "membrane in a way snnkern does not express"
            )
        acc = _accumulate(x)
        options["threshold"] = _floating(theta, acc)
        v0 = v0.to(acc)
        i0 = torch.zeros_like(v0) if syn is None else syn.to(acc)
        state = torch.stack([v0, i0, torch.zeros_like(v0)])
        alpha_syn = _floating(self.alpha.clamp(0, 1), acc) if self._synaptic else None  # type: ignore[attr-defined]
        result = ops.lif(
            x,
            _floating(self.beta.clamp(0, 1), acc),
            alpha_syn=alpha_syn,
            state=state,
            return_membrane=True,
            batch_first=False,
            backend=self.backend,
            **options,
        )
        spikes, membrane = result.spikes, result.membrane
        assert membrane is not None
        if not self.reset_delay and self._reset_mechanism == "zero":
            membrane = membrane - spikes * membrane  # snnTorch returns the membrane after the reset
        current_trace = None
        if syn_trace and alpha_syn is not None:
            zeros = torch.zeros_like(i0)
            current_trace = ops.leaky(
                x, alpha_syn, state=torch.stack([i0, zeros, zeros]), batch_first=False, backend=self.backend
            ).membrane
        current = result.state[1] if self._synaptic else None
        return self._graded(spikes), membrane, current, current_trace

    def _initial(self, stored: torch.Tensor, given: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """snnTorch's rule: the given state, else the stored one; zeros where its shape is not the step's."""
        value = stored if given is None else given
        return value if value.shape == like.shape else torch.zeros_like(like)


class Leaky(_SnnTorchScan, _PeerLeaky):
    """snnTorch's ``Leaky`` (first-order LIF) running on :func:`snnkern.lif`.

    Takes snnTorch's arguments (see the module notes for what maps and what is refused), plus
    ``backend`` ("compiled", "reference" or None for snnkern's default).

    ``forward(input_, mem=None)``: one step ``[B, *neurons]``, returning what snnTorch returns
    (``(spk, mem)``; ``spk`` alone with ``init_hidden=True`` unless ``output=True``).
    ``sequence(input_, mem=None)``: the whole sequence ``[T, B, *neurons]`` in one fused scan,
    returning ``(spk_rec, mem_rec)`` ``[T, B, *neurons]`` as the step loop stacks them, and
    keeping the last membrane as the step loop does.
    """

    mem: torch.Tensor

    def __init__(
        self,
        beta: float | torch.Tensor,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: Any = False,
        output: bool = False,
        graded_spikes_factor: float | torch.Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        reset_delay: bool = True,
        *,
        backend: str | None = None,
    ) -> None:
        if reset_mechanism not in ("subtract", "zero", "none"):
            raise ValueError(f"reset_mechanism must be 'subtract', 'zero' or 'none', got {reset_mechanism!r}")
        _check_options(spike_grad, surrogate_disable, inhibition, state_quant, reset_mechanism, reset_delay)
        super().__init__(
            beta,
            threshold=threshold,
            spike_grad=spike_grad,
            surrogate_disable=surrogate_disable,
            init_hidden=init_hidden,
            inhibition=inhibition,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            reset_mechanism=reset_mechanism,
            state_quant=state_quant,
            output=output,
            graded_spikes_factor=graded_spikes_factor,
            learn_graded_spikes_factor=learn_graded_spikes_factor,
            reset_delay=reset_delay,
        )
        self.backend = backend

    def _arguments(self, mem: torch.Tensor | None) -> None:
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")

    def forward(
        self, input_: torch.Tensor, mem: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._arguments(mem)
        mem0 = self._initial(self.mem, mem, input_)
        x = _step_lanes(input_)
        spikes, membrane, _, _ = self._scan(x, mem0.reshape(x.shape[1:]), None, False)
        self.mem = membrane[0].reshape(input_.shape)
        spk = spikes[0].reshape(input_.shape)
        if self.init_hidden and not self.output:
            return spk
        return spk, self.mem

    def sequence(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole sequence ``input_`` ``[T, B, *neurons]`` in one fused scan: ``(spk_rec, mem_rec)``,
        equal to stacking ``spk, mem = self(input_[t], mem)`` over t."""
        self._arguments(mem)
        x = _sequence_lanes(input_)
        mem0 = self._initial(self.mem, mem, input_[0] if input_.shape[0] else input_.new_zeros(input_.shape[1:]))
        spikes, membrane, _, _ = self._scan(x, mem0.reshape(x.shape[1:]), None, False)
        spikes, membrane = spikes.reshape(input_.shape), membrane.reshape(input_.shape)
        if input_.shape[0]:
            self.mem = membrane[-1]
        return spikes, membrane

    @classmethod
    def from_snntorch(cls, peer: nn.Module, backend: str | None = None) -> Leaky:
        """The snnkern layer of a ``snntorch.Leaky``: same options, copies of its parameters and buffers."""
        new = cls(
            _copy(peer.beta),
            learn_beta=isinstance(peer.beta, nn.Parameter),
            graded_spikes_factor=_copy(peer.graded_spikes_factor),
            learn_graded_spikes_factor=isinstance(peer.graded_spikes_factor, nn.Parameter),
            **_shared_options(peer, "Leaky", (_PeerLeaky, cls), backend),
        )
        return _finish_copy(new, peer, ("mem",))


class Synaptic(_SnnTorchScan, _PeerSynaptic):
    """snnTorch's ``Synaptic`` (LIF with a synaptic current) running on :func:`snnkern.lif`.

    ``forward(input_, syn=None, mem=None)``: one step, returning ``(spk, syn, mem)`` (``spk``
    alone with ``init_hidden=True`` unless ``output=True``). ``sequence(input_, syn=None,
    mem=None)``: the whole sequence ``[T, B, *neurons]`` in one fused scan, returning
    ``(spk_rec, syn_rec, mem_rec)``.
    """

    mem: torch.Tensor
    syn: torch.Tensor
    alpha: torch.Tensor
    _synaptic = True

    def __init__(
        self,
        alpha: float | torch.Tensor,
        beta: float | torch.Tensor,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: Any = False,
        output: bool = False,
        reset_delay: bool = True,
        *,
        backend: str | None = None,
    ) -> None:
        if reset_mechanism not in ("subtract", "zero", "none"):
            raise ValueError(f"reset_mechanism must be 'subtract', 'zero' or 'none', got {reset_mechanism!r}")
        _check_options(spike_grad, surrogate_disable, inhibition, state_quant, reset_mechanism, reset_delay)
        super().__init__(
            alpha,
            beta,
            threshold=threshold,
            spike_grad=spike_grad,
            surrogate_disable=surrogate_disable,
            init_hidden=init_hidden,
            inhibition=inhibition,
            learn_alpha=learn_alpha,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            reset_mechanism=reset_mechanism,
            state_quant=state_quant,
            output=output,
            reset_delay=reset_delay,
        )
        self.backend = backend

    def _arguments(self, syn: torch.Tensor | None, mem: torch.Tensor | None) -> None:
        if self.init_hidden and (mem is not None or syn is not None):
            raise TypeError("`mem` or `syn` should not be passed as an argument while `init_hidden=True`")

    def forward(
        self, input_: torch.Tensor, syn: torch.Tensor | None = None, mem: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._arguments(syn, mem)
        syn0 = self._initial(self.syn, syn, input_)
        mem0 = self._initial(self.mem, mem, input_)
        x = _step_lanes(input_)
        spikes, membrane, current, _ = self._scan(x, mem0.reshape(x.shape[1:]), syn0.reshape(x.shape[1:]), False)
        assert current is not None
        self.syn = current.reshape(input_.shape).to(membrane.dtype)
        self.mem = membrane[0].reshape(input_.shape)
        spk = spikes[0].reshape(input_.shape)
        if self.init_hidden and not self.output:
            return spk
        return spk, self.syn, self.mem

    def sequence(
        self, input_: torch.Tensor, syn: torch.Tensor | None = None, mem: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole sequence ``input_`` ``[T, B, *neurons]`` in one fused scan: ``(spk_rec, syn_rec,
        mem_rec)``, equal to stacking ``spk, syn, mem = self(input_[t], syn, mem)`` over t."""
        self._arguments(syn, mem)
        x = _sequence_lanes(input_)
        step = input_[0] if input_.shape[0] else input_.new_zeros(input_.shape[1:])
        syn0 = self._initial(self.syn, syn, step)
        mem0 = self._initial(self.mem, mem, step)
        spikes, membrane, _, currents = self._scan(x, mem0.reshape(x.shape[1:]), syn0.reshape(x.shape[1:]), True)
        assert currents is not None
        spikes, membrane = spikes.reshape(input_.shape), membrane.reshape(input_.shape)
        currents = currents.reshape(input_.shape)
        if input_.shape[0]:
            self.syn, self.mem = currents[-1], membrane[-1]
        return spikes, currents, membrane

    @classmethod
    def from_snntorch(cls, peer: nn.Module, backend: str | None = None) -> Synaptic:
        """The snnkern layer of a ``snntorch.Synaptic``: same options, copies of its parameters and buffers."""
        new = cls(
            _copy(peer.alpha),
            _copy(peer.beta),
            learn_alpha=isinstance(peer.alpha, nn.Parameter),
            learn_beta=isinstance(peer.beta, nn.Parameter),
            **_shared_options(peer, "Synaptic", (_PeerSynaptic, cls), backend),
        )
        return _finish_copy(new, peer, ("syn", "mem"))


def _shared_options(peer: nn.Module, name: str, types: tuple[type, ...], backend: str | None) -> dict[str, Any]:
    """The constructor arguments that Leaky and Synaptic share, read off a snnTorch layer of one
    of ``types`` (the peer's class or ours: a subclass may have other dynamics)."""
    if type(peer) not in types:
        raise NotImplementedError(
            f"{type(peer).__module__}.{type(peer).__name__}: snnkern converts snntorch.{name} itself, not a "
            "subclass (its dynamics may differ)"
        )
    return dict(
        threshold=_copy(peer.threshold),
        spike_grad=peer.spike_grad,
        surrogate_disable=bool(peer.surrogate_disable),
        init_hidden=bool(peer.init_hidden),
        inhibition=bool(peer.inhibition),
        learn_threshold=isinstance(peer.threshold, nn.Parameter),
        reset_mechanism=str(peer.reset_mechanism),
        state_quant=peer.state_quant,
        output=bool(peer.output),
        reset_delay=bool(peer.reset_delay),
        backend=backend if backend is not None else getattr(peer, "backend", None),
    )


def _copy(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _finish_copy(new: Any, peer: nn.Module, states: tuple[str, ...]) -> Any:
    # The graded-spikes factor is not a Synaptic argument; the state_dict carries it (and every
    # other parameter and buffer, reset_mechanism_val included) across.
    device = peer.threshold.device
    assert isinstance(device, torch.device)
    new.load_state_dict(peer.state_dict())
    if isinstance(peer.graded_spikes_factor, nn.Parameter) != isinstance(new.graded_spikes_factor, nn.Parameter):
        new.graded_spikes_factor = (
            nn.Parameter(_copy(peer.graded_spikes_factor))
            if isinstance(peer.graded_spikes_factor, nn.Parameter)
            else _copy(peer.graded_spikes_factor)
        )
    new = new.to(device)
    for name in states:  # the hidden state (non-persistent buffers), as the peer holds it now
        setattr(new, name, _copy(getattr(peer, name)))
    new.train(peer.training)
    return new


def converters() -> dict[type, Callable[[nn.Module], nn.Module]]:
    """For :func:`snnkern.compat.convert`: snnTorch's ``Leaky`` and ``Synaptic`` -> the function that
    builds their snnkern equivalent (a copy of their parameters, buffers and hidden state). A layer
    that is already snnkern's is returned as it is. Match modules by exact type: snnkern's classes
    derive from snnTorch's."""
    return {_PeerLeaky: _leaky_from_snntorch, _PeerSynaptic: _synaptic_from_snntorch}


def _leaky_from_snntorch(peer: nn.Module) -> nn.Module:
    return peer if isinstance(peer, Leaky) else Leaky.from_snntorch(peer)


def _synaptic_from_snntorch(peer: nn.Module) -> nn.Module:
    return peer if isinstance(peer, Synaptic) else Synaptic.from_snntorch(peer)
