"""The fused ops: python wrappers, autograd and fake-tensor registration.

The op schemas live in ``csrc/ops.cpp`` (one TORCH_LIBRARY), the kernels in ``csrc/cpu`` and
``csrc/cuda``. Here each forward op gets its backward op wired in with
``torch.library.register_autograd`` and every op a fake kernel, so that
``torch.compile(fullgraph=True)`` traces through them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

import torch

from . import reference_ops
from ._checks import (
    Decay,
    LIFArgs,
    accumulate_dtype,
    prepare_leaky_args,
    prepare_lif_args,
    prepare_recurrent_args,
    prepare_spike_linear_args,
)
from ._types import LeakyResult, LIFResult
from .surrogate import Sigmoid, Surrogate

_C_ERROR: ImportError | None = None
try:
    from . import _C
except ImportError as error:  # pragma: no cover - exercised only without a build
    # _C keeps the type of the module (its stub, _C.pyi) for the code that runs only with a
    # build; None says there is none, and every entry point checks for it first.
    _C = None  # type: ignore[assignment]
    _C_ERROR = error

BACKENDS = ("compiled", "reference")
DEFAULT_BACKEND = os.environ.get("SNNKERN_BACKEND", "compiled")
if DEFAULT_BACKEND not in BACKENDS:
    raise ImportError(f"SNNKERN_BACKEND must be one of {BACKENDS}, got {DEFAULT_BACKEND!r}")
if _C is None and DEFAULT_BACKEND != "reference":
    raise ImportError(
        "snnkern's compiled extension snnkern._C is not built or failed to load "
        f"({_C_ERROR}). Build it from the source tree with `pip install --no-build-isolation -e .`, "
        "or set SNNKERN_BACKEND=reference to use the slow pure-PyTorch reference loops explicitly."
    )


def compiled_with_cuda() -> bool:
    """True when the extension was built with its CUDA kernels."""
    return _C is not None and bool(_C.with_cuda)


def build_info() -> str:
    """What the extension was built with, e.g. ``cpu=avx2,openmp=on,cuda=8.0/9.0+PTX``."""
    return "not built (reference backend only)" if _C is None else str(_C.build_info)


def op_options(a: LIFArgs) -> tuple[int, int, float, float, bool, bool, bool, int, float, int]:
    """The option arguments of the compiled scan ops for checked arguments ``a``, in the order of
    the op schemas (csrc/ops.cpp): the codes of ordering and reset (exported by the extension),
    v_reset, v_leak, detach_reset, current_first, multispike, the surrogate's code and parameter,
    the refractory period."""
    return (
        _C.ORDERINGS[a.ordering],
        _C.RESETS[a.reset],
        a.v_reset,
        a.v_leak,
        a.detach_reset,
        a.current_first,
        a.spike == "multi",
        _C.SURROGATES[a.surrogate.name],
        float(a.surrogate.param),
        a.refractory,
    )


def _resolve_backend(backend: str | None, x: torch.Tensor) -> str:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape [batch, time, neurons], got {type(x).__name__}")
    backend = DEFAULT_BACKEND if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "compiled":
        if _C is None:
            raise RuntimeError(
                "backend='compiled' needs the built extension snnkern._C; run `pip install --no-build-isolation -e .`"
            )
        if x.device.type == "cuda" and not compiled_with_cuda():
            raise RuntimeError(
                "x is a CUDA tensor but this snnkern build has no CUDA kernels. Rebuild with a CUDA "
                "build of torch and nvcc on the PATH: `SNNKERN_CUDA=1 pip install --no-build-isolation -e .`"
            )
        if x.device.type not in ("cpu", "cuda", "meta"):
            raise RuntimeError(f"snnkern's kernels run on cpu and cuda tensors, got device {x.device}")
    return backend


@contextlib.contextmanager
def _functorch_guard(op: str) -> Iterator[None]:
    """torch.func's grad and vjp cannot go through the fused ops (their autograd comes from
    torch.library, which functorch does not support); say so by name instead of torch's
    message about autograd.Function."""
    try:
        yield
    except RuntimeError as error:
        if torch._C._functorch.maybe_current_level() is None:
            raise
        raise RuntimeError(
            f"snnkern.{op}: torch.func transforms that differentiate (grad, vjp, jacrev, ...) do not go "
            "through the fused kernels; differentiate them with torch.autograd.grad or .backward(), or call "
            f"snnkern.{op} with backend='reference' inside torch.func (vmap alone works with both backends)"
        ) from error


def _check_values() -> bool:
    """Whether the op must check the values of its parameters itself: under torch.compile, where
    python sees no values (snnkern._checks skips its value checks there); eager python has
    checked them already."""
    return torch.compiler.is_compiling()


def _requires_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# --------------------------------------------------------------------------------------------
# Public functional API
# --------------------------------------------------------------------------------------------


def lif(
    x: torch.Tensor,
    alpha: Decay,
    *,
    alpha_syn: Decay | None = None,
    threshold: float | torch.Tensor = 1.0,
    reset: str = "zero",
    v_reset: float = 0.0,
    v_leak: float = 0.0,
    detach_reset: bool = False,
    ordering: str = "spike_first",
    current_first: bool = False,
    spike: str = "binary",
    surrogate: Surrogate = Sigmoid(),
    adaptation_decay: Decay | None = None,
    adaptation_strength: float | torch.Tensor = 0.0,
    refractory: int = 0,
    state: torch.Tensor | None = None,
    return_membrane: bool = False,
    batch_first: bool = True,
    backend: str | None = None,
) -> LIFResult:
    """Leaky integrate-and-fire neurons over a whole sequence, forward and backward fused.

    Args:
        x: input current, ``[batch, time, *neurons]``, or ``[time, batch, *neurons]`` with
            ``batch_first=False`` (a contiguous time-major tensor runs without a copy).
        alpha: membrane decay per step, ``exp(-dt/tau_mem)`` (or ``1 - dt/tau_mem`` for forward
            Euler): a float or a tensor broadcastable to the neuron shape (learnable and
            heterogeneous time constants get a gradient).
        alpha_syn: decay of a synaptic-current state: the input feeds the current ``i`` and the
            current drives the membrane. None: the input drives the membrane directly.
        threshold: spike threshold, a float or a tensor broadcastable to the neuron shape
            (a learnable threshold gets a gradient); any finite value, > 0 for the surrogates
            whose width scales with it and for ``spike="multi"``.
        reset: "zero" (hard reset to ``v_reset``), "subtract" (minus threshold) or "none".
        v_reset: the potential a hard reset sets (reset="zero").
        v_leak: the resting potential the membrane decays towards.
        detach_reset: stop the gradient through the reset spike (seed 004 detaches, 000 does not).
        ordering: "delayed" (seeds 000/001), "spike_first" (seed 004), "update_first"
            (snnTorch, seed 003) or "charge_first" (charge, fire and reset in one step:
            SpikingJelly, Norse, Sinabs, NIR); see :mod:`snnkern.reference_ops` for the equations.
        current_first: with ``alpha_syn``, the current takes ``x_t`` before it drives the
            membrane of the same step (snnTorch's Synaptic, Sinabs); False: the membrane sees the
            current of the step before (seed 004, Norse).
        spike: "binary" (0/1) or "multi" (spike counts ``trunc(u / threshold)``, Sinabs' MultiSpike).
        surrogate: derivative used for the spike in backward (:mod:`snnkern.surrogate`).
        adaptation_decay: threshold adaptation (adaptive LIF, seed 003): the decay rho of the
            adaptation state ``a_{t+1} = rho a_t + r_t`` (a float or per-neuron tensor, learnable);
            the neuron fires at ``threshold + adaptation_strength * a_t``. None: no adaptation.
        adaptation_strength: beta, per neuron (a float or a tensor, learnable); 0 is a regular
            neuron, so one layer can mix regular and adaptive neurons.
        refractory: steps after a spike in which the neuron cannot fire (and its surrogate
            derivative is 0). NEST's ``t_ref`` of 5 steps blocks 4: ``refractory=4``.
        state: ``[3, batch, *neurons]`` from a previous call, to continue a sequence; zeros if None.
            With adaptation or a refractory period ``[5, batch, *neurons]``: rows v, i, w, then
            the adaptation ``a`` and the refractory counter (steps left).
        return_membrane: also return the membrane trace each spike was thresholded from.
        batch_first: True for x [batch, time, ...], False for [time, batch, ...] (torch.nn.RNN's
            convention); the outputs keep the layout of x.
        backend: "compiled" (default) or "reference" (the pure-PyTorch loops).

    Returns:
        :class:`LIFResult` (spikes, membrane or None, state).
    """
    options: dict[str, Any] = dict(
        alpha_syn=alpha_syn,
        threshold=threshold,
        reset=reset,
        v_reset=v_reset,
        v_leak=v_leak,
        detach_reset=detach_reset,
        ordering=ordering,
        current_first=current_first,
        spike=spike,
        surrogate=surrogate,
        batch_first=batch_first,
        adaptation_decay=adaptation_decay,
        adaptation_strength=adaptation_strength,
        refractory=refractory,
    )
    if _resolve_backend(backend, x) == "reference":
        return reference_ops.lif(x, alpha, state=state, return_membrane=return_membrane, **options)
    a = prepare_lif_args(x, alpha, state=state, **options)
    save = _requires_grad(a.x, a.alpha, a.alpha_syn, a.threshold, a.adaptation, a.state)
    with _functorch_guard("lif"):
        spikes, membrane, state_out, _ = torch.ops.snnkern.lif_forward(
            a.x,
            a.alpha,
            a.alpha_syn,
            a.threshold,
            a.adaptation,
            a.state,
            *op_options(a),
            return_membrane,
            save,
            _check_values(),
        )
    return _result(a, spikes, membrane if return_membrane else None, state_out)


def _result(a: LIFArgs, spikes: torch.Tensor, membrane: torch.Tensor | None, state: torch.Tensor) -> LIFResult:
    """The kernels' outputs in the caller's layout (:class:`snnkern._checks.Layout`)."""
    return LIFResult(
        a.layout.sequence(spikes),
        None if membrane is None else a.layout.sequence(membrane),
        a.layout.state(state),
    )


def recurrent_lif(
    x: torch.Tensor,
    weight: torch.Tensor,
    alpha: Decay,
    *,
    alpha_syn: Decay | None = None,
    threshold: float | torch.Tensor = 1.0,
    reset: str = "zero",
    v_reset: float = 0.0,
    v_leak: float = 0.0,
    detach_reset: bool = False,
    ordering: str = "spike_first",
    current_first: bool = False,
    spike: str = "binary",
    surrogate: Surrogate = Sigmoid(),
    adaptation_decay: Decay | None = None,
    adaptation_strength: float | torch.Tensor = 0.0,
    refractory: int = 0,
    state: torch.Tensor | None = None,
    spikes: torch.Tensor | None = None,
    return_membrane: bool = False,
    batch_first: bool = True,
    backend: str | None = None,
) -> LIFResult:
    """A recurrently connected layer of LIF neurons, the whole time loop in one op.

    The input of step t is ``x_t + z_{t-1} @ weight.T``: the external current plus the
    recurrent input of the layer's own spikes one step earlier (seed 004). All other arguments
    and the neuron step are those of :func:`lif`; x is [batch, time, neurons] (or
    [time, batch, neurons] with ``batch_first=False``, which the op copies to batch-first).

    Args:
        weight: recurrent weights [neurons, neurons], ``[out, in]`` as ``torch.nn.Linear``.
        spikes: [batch, neurons], the spikes of the step before the first (zeros if None); to
            continue a sequence pass the last step's spikes with ``state=result.state``.

    Each batch row runs its whole time loop in one task (CPU) or thread block (CUDA, up to 1024
    neurons; wider layers run one launch per step), the neuron state held across steps; the
    recurrent input of a step is gathered from the rows of ``weight`` of the neurons that fired.
    Backward runs the loop in reverse with the transposed product on the input gradient and forms
    the weight gradient in one product over all steps (event-driven on the CPU). A neuron that did
    not fire adds nothing to the next step's input, even where its weights are not finite (on
    CUDA above 1024 neurons the product is dense: 0 * inf is NaN there).
    """
    options: dict[str, Any] = dict(
        alpha_syn=alpha_syn,
        threshold=threshold,
        reset=reset,
        v_reset=v_reset,
        v_leak=v_leak,
        detach_reset=detach_reset,
        ordering=ordering,
        current_first=current_first,
        spike=spike,
        surrogate=surrogate,
        batch_first=batch_first,
        adaptation_decay=adaptation_decay,
        adaptation_strength=adaptation_strength,
        refractory=refractory,
    )
    if _resolve_backend(backend, x) == "reference":
        return reference_ops.recurrent_lif(
            x, weight, alpha, state=state, spikes=spikes, return_membrane=return_membrane, **options
        )
    r = prepare_recurrent_args(x, weight, spikes, alpha, state=state, **options)
    a = r.lif
    save = _requires_grad(a.x, r.weight, a.alpha, a.alpha_syn, a.threshold, a.adaptation, a.state, r.spikes)
    with _functorch_guard("recurrent_lif"):
        spikes_out, membrane, state_out, _ = torch.ops.snnkern.recurrent_lif_forward(
            a.x,
            r.weight,
            a.alpha,
            a.alpha_syn,
            a.threshold,
            a.adaptation,
            a.state,
            r.spikes,
            *op_options(a),
            return_membrane,
            save,
            _check_values(),
        )
    return _result(a, spikes_out, membrane if return_membrane else None, state_out)


def spike_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, backend: str | None = None
) -> torch.Tensor:
    """``x @ weight.T + bias`` for a mostly-zero input such as spike trains.

    On the CPU only the nonzero entries of ``x`` touch the weights, in the forward and in the
    weight gradient, so the cost follows the number of spikes rather than the size of ``x``:
    use it where the input is sparse (a few tens of percent nonzero or less). The result equals
    ``torch.nn.functional.linear`` up to float rounding for finite weights. A zero entry of
    ``x`` skips its weights on the CPU, so it contributes 0 even against an inf or NaN weight
    (where ``F.linear`` gives NaN); on CUDA it runs cuBLAS, with IEEE arithmetic.

    Args:
        x: [..., in_features], any values (spike counts too); zeros are skipped.
        weight: [out_features, in_features], as ``torch.nn.Linear``.
        bias: [out_features] or None.
    """
    x2d, weight, bias = prepare_spike_linear_args(x, weight, bias)
    if _resolve_backend(backend, x) == "reference":
        return reference_ops.spike_linear(x, weight, bias)
    with _functorch_guard("spike_linear"):
        # On the CPU both products (forward and weight gradient) read the nonzeros of binary rows
        # from spike events made once, not from a scan of x each (csrc/cpu/spike_matmul.h).
        events = torch.ops.snnkern.spike_events(x2d.detach()) if x2d.device.type == "cpu" else None
        out = torch.ops.snnkern.spike_matmul(x2d, weight.t(), events).view(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


def leaky(
    x: torch.Tensor,
    alpha: Decay,
    *,
    alpha_syn: Decay | None = None,
    state: torch.Tensor | None = None,
    batch_first: bool = True,
    backend: str | None = None,
) -> LeakyResult:
    """Non-spiking leaky integrator (readout): ``v_{t+1} = alpha v_t + x_t``.

    With ``alpha_syn`` the input passes through a synaptic current first (seed 004's readout):
    ``v_{t+1} = alpha v_t + i_t``, ``i_{t+1} = alpha_syn i_t + x_t``. The membrane trace holds
    ``v_{t+1}``, the potential after step t; seeds that record ``v_0 = 0`` first prepend it.
    Shapes and layouts as :func:`lif`.
    """
    if _resolve_backend(backend, x) == "reference":
        return reference_ops.leaky(x, alpha, alpha_syn=alpha_syn, state=state, batch_first=batch_first)
    x, alpha, alpha_syn, state, layout = prepare_leaky_args(x, alpha, alpha_syn, state, batch_first)
    save = _requires_grad(x, alpha, alpha_syn, state)
    with _functorch_guard("leaky"):
        membrane, state_out, _ = torch.ops.snnkern.leaky_forward(x, alpha, alpha_syn, state, save, _check_values())
    return LeakyResult(layout.sequence(membrane), layout.state(state_out))


# --------------------------------------------------------------------------------------------
# Autograd and fake kernels of the compiled ops
# --------------------------------------------------------------------------------------------

if _C is not None:
    # The option arguments of every scan op (SNNKERN_OPTIONS in csrc/ops.cpp), by name: the fake
    # kernels and the autograd formulas pass them through unchanged.
    _OPTIONS = (
        "ordering",
        "reset",
        "v_reset",
        "v_leak",
        "detach_reset",
        "current_first",
        "multispike",
        "surrogate",
        "surrogate_param",
        "refractory",
    )

    def _saved_shape(x: torch.Tensor, adaptation: torch.Tensor | None, refractory: int) -> tuple[int, ...]:
        """What a forward saves for backward: [B, T, N], or [3, B, T, N] (pre-reset membrane, a_t,
        c_t) for neurons with adaptation or a refractory period."""
        return (3, *x.shape) if adaptation is not None or refractory > 0 else tuple(x.shape)

    @torch.library.register_fake("snnkern::lif_forward")
    def _lif_forward_fake(
        x: torch.Tensor,
        alpha: torch.Tensor,
        alpha_syn: torch.Tensor | None,
        threshold: torch.Tensor,
        adaptation: torch.Tensor | None,
        state: torch.Tensor,
        *options_and_flags: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        refractory = options_and_flags[_OPTIONS.index("refractory")]
        record_membrane, save_for_backward, _check = options_and_flags[len(_OPTIONS) :]
        b, t, n = x.shape
        membrane = x.new_empty((b, t, n) if record_membrane else (0,))
        saved_shape = _saved_shape(x, adaptation, refractory) if save_for_backward else (0,)
        saved = x.new_empty(saved_shape, dtype=accumulate_dtype(x.dtype))
        return x.new_empty(b, t, n), membrane, state.new_empty(state.shape), saved

    @torch.library.register_fake("snnkern::lif_backward")
    def _lif_backward_fake(
        grad_spikes: torch.Tensor | None,
        grad_membrane: torch.Tensor | None,
        grad_state: torch.Tensor | None,
        pre_reset: torch.Tensor,
        spikes: torch.Tensor,
        alpha: torch.Tensor,
        alpha_syn: torch.Tensor | None,
        threshold: torch.Tensor,
        adaptation: torch.Tensor | None,
        state: torch.Tensor,
        *options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        grad_alpha_syn = alpha.new_empty(alpha.shape if alpha_syn is not None else (0,))
        grad_adaptation = alpha.new_empty(adaptation.shape if adaptation is not None else (0,))
        return (
            spikes.new_empty(spikes.shape),
            alpha.new_empty(alpha.shape),
            grad_alpha_syn,
            threshold.new_empty(threshold.shape),
            grad_adaptation,
            state.new_empty(state.shape),
        )

    @torch.library.register_fake("snnkern::leaky_forward")
    def _leaky_forward_fake(
        x: torch.Tensor,
        alpha: torch.Tensor,
        alpha_syn: torch.Tensor | None,
        state: torch.Tensor,
        save_for_backward: bool,
        check_values: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        acc = accumulate_dtype(x.dtype)
        saved = x.new_empty(x.shape if save_for_backward and acc != x.dtype else (0,), dtype=acc)
        return x.new_empty(x.shape), state.new_empty(state.shape), saved

    @torch.library.register_fake("snnkern::leaky_backward")
    def _leaky_backward_fake(
        grad_membrane: torch.Tensor | None,
        grad_state: torch.Tensor | None,
        saved_membrane: torch.Tensor,
        alpha: torch.Tensor,
        alpha_syn: torch.Tensor | None,
        state: torch.Tensor,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        grad_alpha_syn = alpha.new_empty(alpha.shape if alpha_syn is not None else (0,))
        return (
            saved_membrane.new_empty(saved_membrane.shape, dtype=dtype),
            alpha.new_empty(alpha.shape),
            grad_alpha_syn,
            state.new_empty(state.shape),
        )

    def _check_saved(pre_reset: torch.Tensor, spikes: torch.Tensor, name: str) -> None:
        if pre_reset.numel() == 0 and spikes.numel() != 0:
            raise RuntimeError(
                f"{name}: backward called but the forward did not save its membrane; grad mode was off when it ran"
            )

    # The autograd context is torch's dynamic object that the functions below keep their state
    # on (saved tensors, options): typed Any, as torch.autograd.Function types it.
    def _lif_setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        _x, alpha, alpha_syn, threshold, adaptation, state, *options_and_flags = inputs
        spikes, _, _, pre_reset = output
        ctx.save_for_backward(pre_reset, spikes, alpha, alpha_syn, threshold, adaptation, state)
        ctx.set_materialize_grads(False)  # unused outputs pass None, and the kernel skips them
        ctx.options = tuple(options_and_flags[: len(_OPTIONS)])

    def _lif_backward(
        ctx: Any,
        grad_spikes: torch.Tensor | None,
        grad_membrane: torch.Tensor | None,
        grad_state: torch.Tensor | None,
        _grad_pre_reset: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        pre_reset, spikes, alpha, alpha_syn, threshold, adaptation, state = ctx.saved_tensors
        _check_saved(pre_reset, spikes, "snnkern.lif")
        if grad_membrane is not None and grad_membrane.numel() == 0:
            grad_membrane = None  # the membrane was not recorded
        grad_x, grad_alpha, grad_alpha_syn, grad_threshold, grad_adaptation, grad_state0 = (
            torch.ops.snnkern.lif_backward(
                grad_spikes,
                grad_membrane,
                grad_state,
                pre_reset,
                spikes,
                alpha,
                alpha_syn,
                threshold,
                adaptation,
                state,
                *ctx.options,
            )
        )
        grads = (
            grad_x,
            grad_alpha,
            grad_alpha_syn if alpha_syn is not None else None,
            grad_threshold,
            grad_adaptation if adaptation is not None else None,
            grad_state0,
        )
        return grads + (None,) * (len(_OPTIONS) + 3)

    torch.library.register_autograd("snnkern::lif_forward", _lif_backward, setup_context=_lif_setup_context)

    def _leaky_setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, alpha, alpha_syn, state, _, _ = inputs
        membrane, _, saved_membrane = output
        # The trace in the accumulate dtype: the membrane itself for float32/float64, the copy the
        # forward saved for float16/bfloat16 (whose rounded trace would spoil the decay gradients).
        trace = membrane if membrane.dtype == accumulate_dtype(membrane.dtype) else saved_membrane
        ctx.save_for_backward(trace, membrane, alpha, alpha_syn, state)
        ctx.set_materialize_grads(False)
        ctx.dtype = x.dtype

    def _leaky_backward(
        ctx: Any,
        grad_membrane: torch.Tensor | None,
        grad_state: torch.Tensor | None,
        _grad_saved_membrane: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        trace, membrane, alpha, alpha_syn, state = ctx.saved_tensors
        _check_saved(trace, membrane, "snnkern.leaky")
        grad_x, grad_alpha, grad_alpha_syn, grad_state0 = torch.ops.snnkern.leaky_backward(
            grad_membrane, grad_state, trace, alpha, alpha_syn, state, ctx.dtype
        )
        return grad_x, grad_alpha, grad_alpha_syn if alpha_syn is not None else None, grad_state0, None, None

    torch.library.register_autograd("snnkern::leaky_forward", _leaky_backward, setup_context=_leaky_setup_context)

    @torch.library.register_fake("snnkern::recurrent_lif_forward")
    def _recurrent_lif_forward_fake(
        x: torch.Tensor,
        weight: torch.Tensor,
        alpha: torch.Tensor,
        alpha_syn: torch.Tensor | None,
        threshold: torch.Tensor,
        adaptation: torch.Tensor | None,
        state: torch.Tensor,
        spikes0: torch.Tensor,
        *options_and_flags: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return _lif_forward_fake(x, alpha, alpha_syn, threshold, adaptation, state, *options_and_flags)

    @torch.library.register_fake("snnkern::recurrent_lif_backward")
    def _recurrent_lif_backward_fake(
        grad_spikes: torch.Tensor | None,
        grad_membrane: torch.Tensor | None,
        grad_state: torch.Tensor | None,
        pre_reset: torch.Tensor,
        spikes: torch.Tensor,
        weight: torch.Tensor,
        alpha: torch.Tensor,
        alpha_syn: torch.Tensor | None,
        threshold: torch.Tensor,
        adaptation: torch.Tensor | None,
        state: torch.Tensor,
        spikes0: torch.Tensor,
        *options: Any,
    ) -> tuple[torch.Tensor, ...]:
        grad_x, grad_alpha, grad_alpha_syn, grad_threshold, grad_adaptation, grad_state0 = _lif_backward_fake(
            grad_spikes,
            grad_membrane,
            grad_state,
            pre_reset,
            spikes,
            alpha,
            alpha_syn,
            threshold,
            adaptation,
            state,
            *options,
        )
        return (
            grad_x,
            weight.new_empty(weight.shape),
            grad_alpha,
            grad_alpha_syn,
            grad_threshold,
            grad_adaptation,
            grad_state0,
            spikes0.new_empty(spikes0.shape),
        )

    def _recurrent_lif_setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        _x, weight, alpha, alpha_syn, threshold, adaptation, state, spikes0, *options_and_flags = inputs
        spikes, _, _, pre_reset = output
        ctx.save_for_backward(pre_reset, spikes, weight, alpha, alpha_syn, threshold, adaptation, state, spikes0)
        ctx.set_materialize_grads(False)
        ctx.options = tuple(options_and_flags[: len(_OPTIONS)])

    def _recurrent_lif_backward(
        ctx: Any,
        grad_spikes: torch.Tensor | None,
        grad_membrane: torch.Tensor | None,
        grad_state: torch.Tensor | None,
        _grad_pre_reset: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        pre_reset, spikes, weight, alpha, alpha_syn, threshold, adaptation, state, spikes0 = ctx.saved_tensors
        _check_saved(pre_reset, spikes, "snnkern.recurrent_lif")
        if grad_membrane is not None and grad_membrane.numel() == 0:
            grad_membrane = None
        grad_x, grad_weight, grad_alpha, grad_alpha_syn, grad_threshold, grad_adaptation, grad_state0, grad_spikes0 = (
            torch.ops.snnkern.recurrent_lif_backward(
                grad_spikes,
                grad_membrane,
                grad_state,
                pre_reset,
                spikes,
                weight,
                alpha,
                alpha_syn,
                threshold,
                adaptation,
                state,
                spikes0,
                *ctx.options,
            )
        )
        grads = (
            grad_x,
            grad_weight,
            grad_alpha,
            grad_alpha_syn if alpha_syn is not None else None,
            grad_threshold,
            grad_adaptation if adaptation is not None else None,
            grad_state0,
            grad_spikes0,
        )
        return grads + (None,) * (len(_OPTIONS) + 3)

    torch.library.register_autograd(
        "snnkern::recurrent_lif_forward", _recurrent_lif_backward, setup_context=_recurrent_lif_setup_context
    )

    @torch.library.register_fake("snnkern::spike_matmul")
    def _spike_matmul_fake(
        spikes: torch.Tensor, other: torch.Tensor, events: torch.Tensor | None = None
    ) -> torch.Tensor:
        return spikes.new_empty(spikes.shape[0], other.shape[1])

    @torch.library.register_fake("snnkern::spike_matmul_t")
    def _spike_matmul_t_fake(
        spikes: torch.Tensor, other: torch.Tensor, events: torch.Tensor | None = None
    ) -> torch.Tensor:
        return spikes.new_empty(spikes.shape[1], other.shape[1])

    @torch.library.register_fake("snnkern::spike_events")
    def _spike_events_fake(spikes: torch.Tensor) -> torch.Tensor:
        return spikes.new_empty(spikes.shape[0], (spikes.shape[1] + 31) // 32 + 1, dtype=torch.int32)

    SpikeProductInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
    SpikeProductGrads = tuple[torch.Tensor | None, torch.Tensor | None, None]

    def _spike_matmul_setup_context(ctx: Any, inputs: SpikeProductInputs, output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    def _spike_matmul_backward(ctx: Any, grad: torch.Tensor) -> SpikeProductGrads:
        spikes, other, events = ctx.saved_tensors
        grad_spikes = grad @ other.t() if ctx.needs_input_grad[0] else None
        # d(spikes @ other)/d other = spikes^T grad, event-driven too, from the same events.
        grad_other = torch.ops.snnkern.spike_matmul_t(spikes, grad, events) if ctx.needs_input_grad[1] else None
        return grad_spikes, grad_other, None

    torch.library.register_autograd(
        "snnkern::spike_matmul", _spike_matmul_backward, setup_context=_spike_matmul_setup_context
    )

    def _spike_matmul_t_backward(ctx: Any, grad: torch.Tensor) -> SpikeProductGrads:
        spikes, other, events = ctx.saved_tensors  # out = spikes^T @ other
        grad_spikes = other @ grad.t() if ctx.needs_input_grad[0] else None
        grad_other = torch.ops.snnkern.spike_matmul(spikes, grad, events) if ctx.needs_input_grad[1] else None
        return grad_spikes, grad_other, None

    torch.library.register_autograd(
        "snnkern::spike_matmul_t", _spike_matmul_t_backward, setup_context=_spike_matmul_setup_context
    )

    # Gradients of gradients. The backward kernels have no derivative of their own: without one,
    # autograd would warn and return zeros for a second backward. Refuse it instead, by name.
    def _refuse_double_backward(op: str) -> None:
        def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[None, ...]:
            raise RuntimeError(
                f"snnkern.{op}: gradients of gradients (a second backward through a graph made with "
                f"create_graph=True) are not supported by the fused kernels; call snnkern.{op} with "
                "backend='reference' (the pure-PyTorch loops) where you need them"
            )

        def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
            return None

        torch.library.register_autograd(f"snnkern::{op}_backward", backward, setup_context=setup_context)

    for _op in ("lif", "leaky", "recurrent_lif"):
        _refuse_double_backward(_op)

    # Autocast. The sequences (and the recurrent weight) run in the autocast dtype on CUDA and in
    # float32 on the CPU, whose kernels are float32/float64; the decays and the state stay in the
    # accumulate dtype (float32). float64 calls are left alone, as torch's autocast does.
    _AUTOCAST_ROLES: dict[
        str, tuple[str | None, ...]
    ] = {  # per argument: "sequence", "parameter" or None (not a tensor to cast)
        "lif_forward": ("sequence", "parameter", "parameter", "parameter", "parameter", "parameter"),
        "leaky_forward": ("sequence", "parameter", "parameter", "parameter", None, None),
        "recurrent_lif_forward": (
            "sequence",
            "sequence",
            "parameter",
            "parameter",
            "parameter",
            "parameter",
            "parameter",
            "sequence",
        ),
        "spike_matmul": ("sequence", "sequence"),
        "spike_matmul_t": ("sequence", "sequence"),
        "spike_events": ("sequence",),
    }
    _autocast_library = torch.library.Library("snnkern", "IMPL")

    def _register_autocast(name: str, roles: tuple[str | None, ...], device: str) -> None:
        op = getattr(torch.ops.snnkern, name).default
        key_name = "Autocast" + torch._C._dispatch_key_for_device(device)
        key = getattr(torch._C.DispatchKey, key_name)

        def cast(value: Any, role: str | None, sequence_dtype: torch.dtype) -> Any:
            if (
                role is None
                or not isinstance(value, torch.Tensor)
                or not value.is_floating_point()
                or value.device.type != device
            ):
                return value
            return value.to(sequence_dtype if role == "sequence" else accumulate_dtype(sequence_dtype))

        def autocast_kernel(*args: Any) -> Any:
            with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
                if args[0].dtype == torch.float64:
                    return op(*args)
                sequence_dtype = torch.get_autocast_dtype(device) if device == "cuda" else torch.float32
                return op(*(cast(a, role, sequence_dtype) for a, role in itertools.zip_longest(args, roles)))

        op.py_impl(key)(autocast_kernel)  # what torch.compile traces
        _autocast_library.impl(name, lambda _keyset, *args: autocast_kernel(*args), key_name, with_keyset=True)

    for _name, _roles in _AUTOCAST_ROLES.items():
        for _device in ("cpu", "cuda"):
            _register_autocast(_name, _roles, _device)
