"""Plain PyTorch loops with the signatures and semantics of the fused ops.

This module is the ground truth the kernels are tested against, and the explicit fallback
(``backend="reference"`` or ``SNNKERN_BACKEND=reference``). It is written for clarity, one
python step per time step, with autograd through the loop; it is slow by design.

One LIF step, with ``H`` the Heaviside step (surrogate derivative in backward), ``theta`` the
threshold, ``d_t`` the drive (the input ``x_t``, or the synaptic current ``i_t`` when
``alpha_syn`` is given) and ``R`` the reset:

    p_t     = alpha * v_t + d_t                      pre-reset membrane
    v_{t+1} = R(p_t, r_t)                            zero: p (1 - r); subtract: p - theta r; none: p
    i_{t+1} = alpha_syn * i_t + x_t                  (synaptic state only)

The ordering decides which membrane the output spike ``z_t`` and the reset spike ``r_t`` are
thresholded from:

    "delayed"       (seeds 000/001)  z_t = r_t = H(v_{t-1} - theta)  spike and reset lag one step
    "spike_first"   (seed 004)       z_t = r_t = H(v_t - theta)      spike, then update with reset
    "update_first"  (snnTorch, 003)  r_t = H(v_t - theta), z_t = H(v_{t+1} - theta)

The returned membrane trace is the potential ``z_t`` was thresholded from.
"""

from __future__ import annotations

import torch

from ._checks import (
    STATE_I,
    STATE_V,
    STATE_W,
    Decay,
    prepare_leaky_args,
    prepare_lif_args,
    prepare_recurrent_args,
    prepare_spike_linear_args,
)
from ._types import LeakyResult, LIFResult
from .surrogate import Sigmoid, Surrogate, spike


def _reset(p: torch.Tensor, r: torch.Tensor, reset: str, threshold: float) -> torch.Tensor:
    if reset == "zero":
        return p * (1 - r)
    if reset == "subtract":
        return p - threshold * r
    return p


def lif(
    x: torch.Tensor,
    alpha: Decay,
    *,
    alpha_syn: Decay | None = None,
    threshold: float = 1.0,
    reset: str = "zero",
    detach_reset: bool = False,
    ordering: str = "spike_first",
    surrogate: Surrogate = Sigmoid(),
    state: torch.Tensor | None = None,
    return_membrane: bool = False,
) -> LIFResult:
    """Reference LIF scan; see :func:`snnkern.lif` for the arguments."""
    a = prepare_lif_args(x, alpha, alpha_syn, state, threshold, ordering, reset, detach_reset, surrogate)
    alpha, alpha_syn, theta = a.alpha, a.alpha_syn, a.threshold
    v, i, w = a.state[STATE_V], a.state[STATE_I], a.state[STATE_W]

    def fire(u: torch.Tensor) -> torch.Tensor:
        return spike(u - theta, surrogate, theta)

    spikes: list[torch.Tensor] = []
    membranes: list[torch.Tensor] = []
    for t in range(x.shape[1]):
        u = w if a.ordering == "delayed" else v
        r = fire(u)
        z = r
        p = alpha * v + (i if alpha_syn is not None else x[:, t])
        v_next = _reset(p, r.detach() if a.detach_reset else r, a.reset, theta)
        if alpha_syn is not None:
            i = alpha_syn * i + x[:, t]
        if a.ordering == "delayed":
            w = v
        v = v_next
        if a.ordering == "update_first":
            u = v
            z = fire(u)
        spikes.append(z)
        membranes.append(u)
    b, _, n = x.shape
    # The sequences leave in the storage dtype of x (the steps ran in the accumulate dtype).
    stack = (lambda xs: torch.stack(xs, dim=1).to(x.dtype)) if spikes else (lambda xs: x.new_zeros(b, 0, n))
    return LIFResult(stack(spikes), stack(membranes) if return_membrane else None, torch.stack([v, i, w]))


def recurrent_lif(
    x: torch.Tensor,
    weight: torch.Tensor,
    alpha: Decay,
    *,
    alpha_syn: Decay | None = None,
    threshold: float = 1.0,
    reset: str = "zero",
    detach_reset: bool = False,
    ordering: str = "spike_first",
    surrogate: Surrogate = Sigmoid(),
    state: torch.Tensor | None = None,
    spikes: torch.Tensor | None = None,
    return_membrane: bool = False,
) -> LIFResult:
    """Reference recurrent LIF layer; see :func:`snnkern.recurrent_lif`.

    Each step runs :func:`lif` for one time step on ``x_t + z_{t-1} weight^T``.
    """
    a = prepare_recurrent_args(
        x, weight, spikes, alpha, alpha_syn, state, threshold, ordering, reset, detach_reset, surrogate
    )
    z, state = a.spikes, a.lif.state
    spike_steps: list[torch.Tensor] = []
    membrane_steps: list[torch.Tensor | None] = []
    for t in range(x.shape[1]):
        step = lif(
            x[:, t : t + 1] + torch.nn.functional.linear(z, weight).unsqueeze(1),
            alpha,
            alpha_syn=alpha_syn,
            threshold=threshold,
            reset=reset,
            detach_reset=detach_reset,
            ordering=ordering,
            surrogate=surrogate,
            state=state,
            return_membrane=return_membrane,
        )
        z, state = step.spikes[:, 0], step.state
        spike_steps.append(step.spikes)
        membrane_steps.append(step.membrane)
    cat = (lambda xs: torch.cat(xs, dim=1)) if spike_steps else (lambda xs: x.new_zeros(x.shape))
    return LIFResult(cat(spike_steps), cat(membrane_steps) if return_membrane else None, state)


def spike_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Reference of :func:`snnkern.spike_linear`: the dense ``torch.nn.functional.linear``."""
    prepare_spike_linear_args(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)


def leaky(
    x: torch.Tensor, alpha: Decay, *, alpha_syn: Decay | None = None, state: torch.Tensor | None = None
) -> LeakyResult:
    """Reference non-spiking leaky integrator; see :func:`snnkern.leaky`."""
    x, alpha, alpha_syn, state = prepare_leaky_args(x, alpha, alpha_syn, state)
    v, i, w = state[STATE_V], state[STATE_I], state[STATE_W]
    trace = []
    for t in range(x.shape[1]):
        v = alpha * v + (i if alpha_syn is not None else x[:, t])
        if alpha_syn is not None:
            i = alpha_syn * i + x[:, t]
        trace.append(v)
    membrane = torch.stack(trace, dim=1).to(x.dtype) if trace else x.new_zeros(x.shape)
    return LeakyResult(membrane, torch.stack([v, i, w]))
