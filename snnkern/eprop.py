"""e-prop (Bellec et al. 2020, Nature Communications 11:3625): a second learning rule for seed 003's
evidence-accumulation network (:class:`snnkern.models.evidence.EvidenceNetwork`), beside BPTT.

e-prop replaces backpropagation through time by eligibility traces that run forward with the
network and learning signals that reach the neurons at each step. For the weight ``W_ji`` from
presynaptic input ``i`` to neuron ``j`` (the recurrent weights take the spikes ``z_{t-1,i}`` as
their input ``x_{t,i}``), with the network's update_first ALIF step (the model's docstring)::

    xbar_t    = alpha xbar_{t-1} + x_t                     presynaptic trace (membrane decay alpha)
    psi_t     = open_{t+1} * surrogate(v_{t+1} - theta - beta a_{t+1})    pseudo-derivative of z_t
    e_t       = psi_t (xbar_t - beta eps_t)                eligibility trace, eps_0 = 0
    eps_{t+1} = rho eps_t + e_t                            its adaptive part
    ebar_t    = kappa ebar_{t-1} + e_t                     filtered with the readout's decay kappa
    grad W_ji = sum_b sum_t (L_t,j ebar_t + Lreg_t,j e_t)

where ``open_{t+1}`` is 0 within ``refractory`` steps after a spike, ``L_t = (1 - kappa) B err_t``
is the learning signal of the readout error ``err_t = d loss / d readout_t`` through the feedback
weights ``B`` [n_rec, n_out] (random: ``model.feedback_weight``; symmetric: ``W_out^T``) and
``Lreg_t = d loss_reg / d z_t`` that of the firing-rate regularisation. The readout weights get
their exact gradient. Without recurrent weights and with symmetric feedback the result is BPTT's
gradient; with them, it is the gradient of BPTT through a network whose recurrent input sees the
spikes as constants (e-prop drops the terms of the paths through ``W_rec``).

The trace sum is one fused op, :func:`eprop_weight_grad` (csrc/eprop.h: one lane per batch
element, group of four neurons and input, the time loop inside; the batch summed in a fixed order). The rest is
vectorised torch: the presynaptic traces and the adaptation are leaky integrations
(:func:`snnkern.leaky`), the refractory mask a cumulative sum over the spikes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch

from . import ops
from ._checks import accumulate_dtype

if TYPE_CHECKING:
    from .models.evidence import EvidenceNetwork

FEEDBACKS = ("random", "symmetric")


# --------------------------------------------------------------------------------------------
# The fused op
# --------------------------------------------------------------------------------------------


def eprop_weight_grad(
    psi: torch.Tensor,
    presynaptic_trace: torch.Tensor,
    learning_signal: torch.Tensor,
    rate_signal: torch.Tensor | None = None,
    adaptation_strength: float | torch.Tensor = 0.0,
    adaptation_decay: float | torch.Tensor = 0.0,
    kappa: float = 0.0,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """e-prop's weight gradient ``[neurons, inputs]`` from the eligibility traces (module docstring).

    Args:
        psi: ``[batch, time, neurons]``, the pseudo-derivative of each spike (0 while refractory).
        presynaptic_trace: ``[batch, time, inputs]``, ``xbar_t``: the inputs filtered with the
            membrane decay (:func:`snnkern.leaky` of the inputs with ``alpha``).
        learning_signal: ``[batch, time, neurons]``, ``L_t``; its terms are filtered with ``kappa``.
        rate_signal: ``[batch, time, neurons]`` or None, ``Lreg_t``, a learning signal taken
            unfiltered (the firing-rate regularisation's derivative with respect to the spikes).
        adaptation_strength: beta, a float or a tensor ``[neurons]`` (0: a regular neuron).
        adaptation_decay: rho, the adaptation's decay per step, a float or a tensor ``[neurons]``
            in [0, 1].
        kappa: the readout's decay per step, in [0, 1] (0: the signal is not filtered).
        backend: "compiled" (the fused kernel; default) or "reference" (a loop over the steps).

    The sequences share one dtype and device, which the result has (the kernel computes in float64
    for float64 input, float32 otherwise). Not differentiable: the inputs are taken as constants.
    """
    args = _prepare(psi, presynaptic_trace, learning_signal, rate_signal, adaptation_strength, adaptation_decay, kappa)
    if ops._resolve_backend(backend, psi) == "reference":
        return _weight_grad_reference(*args)
    with torch.no_grad():
        return torch.ops.snnkern.eprop_weight_grad(*args)


def _prepare(
    psi: torch.Tensor,
    trace: torch.Tensor,
    signal: torch.Tensor,
    rate: torch.Tensor | None,
    strength: float | torch.Tensor,
    decay: float | torch.Tensor,
    kappa: float,
) -> tuple[Any, ...]:
    """The op's arguments, checked: the sequences detached, the neuron parameters as ``[N]`` in the
    accumulate dtype."""
    for name, t in (("psi", psi), ("presynaptic_trace", trace), ("learning_signal", signal), ("rate_signal", rate)):
        if t is None and name == "rate_signal":
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [batch, time, *], got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(f"{name} must have shape [batch, time, *] (3-D), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.device != psi.device:
            raise ValueError(f"{name} is on {t.device} but psi is on {psi.device}; put all on one device")
        if t.dtype != psi.dtype:
            raise ValueError(f"{name} has dtype {t.dtype}, expected the dtype of psi, {psi.dtype}")
    b, t_steps = psi.shape[:2]
    if tuple(trace.shape[:2]) != (b, t_steps):
        raise ValueError(
            f"presynaptic_trace must have shape [batch, time, inputs] = [{b}, {t_steps}, *] (the batch and time "
            f"of psi), got shape {tuple(trace.shape)}"
        )
    for name, t in (("learning_signal", signal), ("rate_signal", rate)):
        if t is not None and t.shape != psi.shape:
            raise ValueError(f"{name} must have the shape of psi, {tuple(psi.shape)}, got shape {tuple(t.shape)}")
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0 <= kappa <= 1:
        raise ValueError(f"kappa must be a number in [0, 1] (the readout's decay exp(-dt/tau)), got {kappa!r}")
    beta = _per_neuron(strength, "adaptation_strength", psi)
    rho = _per_neuron(decay, "adaptation_decay", psi)
    if _values_checkable(psi):
        if not bool(((rho >= 0) & (rho <= 1)).all()):
            raise ValueError(
                "adaptation_decay must lie in [0, 1] (a decay exp(-dt/tau)); got values outside, NaN or inf"
            )
        if not bool(torch.isfinite(beta).all()):
            raise ValueError("adaptation_strength must be finite; got NaN or inf values")
        for name, t in (("psi", psi), ("presynaptic_trace", trace), ("learning_signal", signal), ("rate_signal", rate)):
            if t is not None and t.numel() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} must be finite; got NaN or inf values")
    detached = (t if t is None else t.detach() for t in (psi, trace, signal, rate))
    return (*detached, beta, rho, float(kappa))


def _values_checkable(t: torch.Tensor) -> bool:
    return not torch.compiler.is_compiling() and t.device.type != "meta"


def _per_neuron(value: float | torch.Tensor, name: str, psi: torch.Tensor) -> torch.Tensor:
    """A float or a tensor ``[neurons]`` (or one value) as ``[N]`` in the accumulate dtype of psi."""
    n, acc = psi.shape[2], accumulate_dtype(psi.dtype)
    if isinstance(value, torch.Tensor):
        if value.device != psi.device:
            raise ValueError(f"{name} is on {value.device} but psi is on {psi.device}; put all on one device")
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if value.numel() != 1 and tuple(value.shape) != (n,):
            raise ValueError(f"{name} must be a number or a tensor [neurons] = [{n}], got shape {tuple(value.shape)}")
        return value.detach().to(acc).reshape(-1).expand(n).contiguous()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor [neurons], got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return torch.full((n,), float(value), dtype=acc, device=psi.device)


def _weight_grad_reference(
    psi: torch.Tensor,
    trace: torch.Tensor,
    signal: torch.Tensor,
    rate: torch.Tensor | None,
    beta: torch.Tensor,
    rho: torch.Tensor,
    kappa: float,
) -> torch.Tensor:
    """The trace equations as a loop over the steps, all batch elements, neurons and inputs at once
    (the reference backend of :func:`eprop_weight_grad`), in the accumulate dtype."""
    acc = beta.dtype
    b, t_steps, n = psi.shape
    eps = psi.new_zeros(b, n, trace.shape[2], dtype=acc)
    ebar, g = eps.clone(), eps.clone()
    beta, rho = beta[:, None], rho[:, None]
    for t in range(t_steps):
        e = psi[:, t, :, None].to(acc) * (trace[:, t, None, :].to(acc) - beta * eps)
        eps = rho * eps + e
        ebar = kappa * ebar + e
        g = g + signal[:, t, :, None].to(acc) * ebar
        if rate is not None:
            g = g + rate[:, t, :, None].to(acc) * e
    return g.sum(dim=0).to(psi.dtype)


if ops._C is not None:

    @torch.library.register_fake("snnkern::eprop_weight_grad")
    def _eprop_weight_grad_fake(
        psi: torch.Tensor,
        presynaptic_trace: torch.Tensor,
        learning_signal: torch.Tensor,
        rate_signal: torch.Tensor | None,
        adaptation_strength: torch.Tensor,
        adaptation_decay: torch.Tensor,
        kappa: float,
    ) -> torch.Tensor:
        return psi.new_empty(psi.shape[2], presynaptic_trace.shape[2])


# --------------------------------------------------------------------------------------------
# Seed 003's network
# --------------------------------------------------------------------------------------------


class TrialSignals(NamedTuple):
    """What e-prop sees of one batch of trials, per step ``[batch, time, *]`` (for plots)."""

    readout: torch.Tensor  # [B, T, n_out], the readout membranes y_{t+1}
    spikes: torch.Tensor  # [B, T, n_rec], z_t
    membrane: torch.Tensor  # [B, T, n_rec], v_{t+1}, the membrane z_t was thresholded from
    threshold: torch.Tensor  # [B, T, n_rec], the adaptive threshold theta + beta a_{t+1}
    psi: torch.Tensor  # [B, T, n_rec], the pseudo-derivative of z_t (0 while refractory)
    learning_signal: torch.Tensor  # [B, T, n_rec], L_t = (1 - kappa) B err_t


class _Trial(NamedTuple):
    signals: TrialSignals
    previous: torch.Tensor  # [B, T, n_rec], z_{t-1} (0 at t = 0): the recurrent weights' input
    rate_signal: torch.Tensor | None  # d loss_reg / d z_t, None without the regularisation
    readout_grad: torch.Tensor  # the exact gradient of the readout weights
    task_loss: torch.Tensor
    rate_loss: torch.Tensor


def _buffer(model: EvidenceNetwork, name: str) -> torch.Tensor:
    """A buffer of the model (typed as nn.Module's attribute lookup cannot)."""
    return cast(torch.Tensor, getattr(model, name))


def _feedback(model: EvidenceNetwork, feedback: str) -> torch.Tensor:
    """The feedback weights B [n_rec, n_out]."""
    if feedback not in FEEDBACKS:
        raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")
    return _buffer(model, "feedback_weight") if feedback == "random" else model.readout_weight.detach().t()


def _trial(
    model: EvidenceNetwork,
    x: torch.Tensor,
    target: torch.Tensor,
    window: slice,
    feedback: str,
    c_reg: float,
    f_target: float,
    backend: str | None,
) -> _Trial:
    from .models.evidence import rate_regularization, recall_loss

    feedback_weight = _feedback(model, feedback)
    if not isinstance(window, slice):
        raise TypeError(f"window must be a slice of the time steps (the recall window), got {type(window).__name__}")
    for name, value in (("c_reg", c_reg), ("f_target", f_target)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    with torch.no_grad():
        out = model(x)
    spikes, membrane = out.spikes.detach(), out.membrane.detach()
    previous = torch.nn.functional.pad(spikes, (0, 0, 1, 0))[:, :-1]  # z_{t-1} at step t
    # a_{t+1} = rho a_t + z_{t-1}: the leaky integral of the spikes one step later.
    adaptation = ops.leaky(previous, model.rho, backend=backend).membrane
    threshold = model.v_th + _buffer(model, "adaptation_strength") * adaptation
    # open_{t+1}: no spike among z_{t-1}, ..., z_{t-n}, from a cumulative count (exact in int32).
    n = model.refractory
    counts = torch.nn.functional.pad(spikes.to(torch.int32).cumsum(dim=1), (0, 0, n + 1, 0))
    steps = spikes.shape[1]
    open_ = (counts[:, n : n + steps] == counts[:, :steps]).to(spikes.dtype)
    psi = open_ * model.surrogate.derivative(membrane - threshold, model.v_th)

    # The readout again, from the spikes as constants: the readout error and the exact gradient
    # of the readout weights; the regularisation's derivative with respect to the spikes.
    z = spikes.clone().requires_grad_(c_reg != 0)
    with torch.enable_grad():
        readout = model.readout(z)
        task_loss = recall_loss(readout, target, window)
        rate_loss = rate_regularization(z, f_target, c_reg)
        error, readout_grad = torch.autograd.grad(task_loss, [readout, model.readout_weight])
        rate_signal = torch.autograd.grad(rate_loss, z)[0] if c_reg != 0 else None
    learning_signal = (1.0 - model.kappa) * (error @ feedback_weight.t())
    signals = TrialSignals(readout.detach(), spikes, membrane, threshold, psi, learning_signal)
    return _Trial(signals, previous, rate_signal, readout_grad, task_loss.detach(), rate_loss.detach())


def trial_signals(
    model: EvidenceNetwork,
    x: torch.Tensor,
    target: torch.Tensor,
    window: slice,
    *,
    feedback: str = "random",
    backend: str | None = None,
) -> TrialSignals:
    """The per-step signals of e-prop for trials ``x`` [B, T, n_in] with classes ``target`` [B]
    and recall ``window`` (a slice of the steps): readout, spikes, membrane, adaptive threshold,
    pseudo-derivative and learning signal (:class:`TrialSignals`), for plots. ``feedback`` and
    ``backend`` as :func:`eprop_gradients`."""
    return _trial(model, x, target, window, feedback, 0.0, 0.0, backend).signals


def eprop_gradients(
    model: EvidenceNetwork,
    x: torch.Tensor,
    target: torch.Tensor,
    window: slice,
    *,
    feedback: str = "random",
    c_reg: float = 1.0,
    f_target: float = 0.01,
    backend: str | None = None,
) -> dict[str, float]:
    """Runs the network on trials ``x`` [B, T, n_in] and sets the ``.grad`` of its input,
    recurrent and readout weights to e-prop's gradients (replacing what was there).

    The loss is BPTT's: :func:`snnkern.models.evidence.recall_loss` over the recall ``window`` (a
    slice of the steps) plus :func:`~snnkern.models.evidence.rate_regularization` with ``c_reg``
    and ``f_target`` (spikes per step), so that an optimizer step after this function trains the
    same objective as one after ``loss.backward()``. The input and recurrent weights get the
    eligibility-trace gradient with the learning signals sent back through ``feedback`` weights
    ("random": ``model.feedback_weight``, fixed; "symmetric": the readout weights transposed); the
    recurrent gradient is masked like the weights (no autapses). The readout weights get their
    exact gradient.

    The network runs with its own backend (``model.backend``); ``backend`` is that of e-prop's
    ops (the traces and the fused trace sum; None: the default backend).

    Returns:
        The loss values: ``loss`` (their sum), ``task_loss``, ``rate_loss``; and ``recall_error``,
        the fraction of the trials decided wrongly (:func:`~snnkern.models.evidence.decisions`).
    """
    from .models.evidence import decisions

    trial = _trial(model, x, target, window, feedback, c_reg, f_target, backend)
    s = trial.signals
    # One trace sum for the input and the recurrent weights: their inputs side by side.
    inputs = torch.cat([x.to(s.spikes.dtype), trial.previous], dim=-1)
    trace = ops.leaky(inputs, model.alpha, backend=backend).membrane
    grad = eprop_weight_grad(
        s.psi,
        trace,
        s.learning_signal,
        trial.rate_signal,
        _buffer(model, "adaptation_strength"),
        model.rho,
        model.kappa,
        backend=backend,
    )
    n_in = model.input_weight.shape[1]
    for weight, value in (
        (model.input_weight, grad[:, :n_in]),
        (model.recurrent_weight, grad[:, n_in:] * _buffer(model, "recurrent_mask")),
        (model.readout_weight, trial.readout_grad),
    ):
        weight.grad = value.to(weight.dtype).contiguous()
    task, rate = float(trial.task_loss), float(trial.rate_loss)
    wrong = decisions(s.readout, window) != target.to(s.readout.device)
    return {"loss": task + rate, "task_loss": task, "rate_loss": rate, "recall_error": wrong.double().mean().item()}
