"""Plain PyTorch loops with the signatures and semantics of the fused ops.

This module is the ground truth the kernels are tested against, and the explicit fallback
(``backend="reference"`` or ``SNNKERN_BACKEND=reference``). It is written for clarity, one
python step per time step, with autograd through the loop; it is slow by design.

One LIF step, with ``theta`` the threshold, ``d_t`` the drive and ``R`` the reset::

    d_t     = x_t                                     no synaptic state
            = i_t;      i_{t+1} = alpha_syn i_t + x_t    synaptic current (seed 004, Norse)
            = i_{t+1};  i_{t+1} = alpha_syn i_t + x_t    current_first (snnTorch Synaptic, Sinabs)
    p_t     = alpha (v_t - v_leak) + v_leak + d_t      pre-reset membrane
    v_{t+1} = R(p_t, r_t)                             zero: p (1 - r) + v_reset r; subtract: p - theta r; none: p

``fire(u)`` is the Heaviside step ``H(u - theta)`` (1 if u > theta), or with ``spike="multi"``
the spike count ``trunc(u / theta)`` for u > 0; in backward both take the surrogate derivative
at ``u - theta``. The ordering decides which membrane ``u_t`` the output spike ``z_t`` and the
reset spike ``r_t`` come from::

    "delayed"       (seeds 000/001)  z_t = r_t = fire(v_{t-1})    spike and reset lag one step
    "spike_first"   (seed 004)       z_t = r_t = fire(v_t)        spike, then update with reset
    "update_first"  (snnTorch, 003)  r_t = fire(v_t), z_t = fire(v_{t+1})
    "charge_first"  (SpikingJelly, Norse, Sinabs, NIR)  z_t = r_t = fire(p_t): charge, fire, reset

The returned membrane trace is the potential ``u_t`` that ``z_t`` was thresholded from.

Adaptive neurons (``adaptation_decay`` rho, ``adaptation_strength`` beta; seed 003's ALIF) fire
at the threshold ``theta + beta a_t`` and carry the adaptation ``a_{t+1} = rho a_t + r_t``; the
reset still subtracts (or compares with) ``theta``, and the surrogate keeps ``theta`` as its
width. A refractory period of ``n`` steps: a neuron that fired (reset spike ``r_t``) cannot fire
in the next ``n`` steps, ``c_{t+1} = n`` if ``r_t`` else ``max(c_t - 1, 0)``, ``fire`` is 0 and so
is its surrogate derivative while ``c > 0``. The spike of step t fires from ``(a_t, c_t)``, and
with ``update_first`` ``z_t`` from ``(a_{t+1}, c_{t+1})``: seed 003 is ``update_first`` with the
subtract reset. Both add the rows ``a`` and ``c`` to the state.
"""

from __future__ import annotations

from typing import Any

import torch

from ._checks import (
    STATE_A,
    STATE_I,
    STATE_REFRACTORY,
    STATE_V,
    STATE_W,
    Decay,
    LIFArgs,
    prepare_leaky_args,
    prepare_lif_args,
    prepare_recurrent_args,
    prepare_spike_linear_args,
)
from ._types import LeakyResult, LIFResult
from .surrogate import spike, spike_count


def reset_membrane(
    p: torch.Tensor,
    r: torch.Tensor,
    reset: str,
    threshold: float | torch.Tensor,
    v_reset: float = 0.0,
    detach_reset: bool = False,
) -> torch.Tensor:
    """``R(p, r)``: the membrane after the reset by spikes ``r`` of the pre-reset membrane ``p``.
    The python copy of csrc/lif.h's ``ResetRule``; the compatible layers also turn the kernels'
    pre-reset trace into the after-reset membrane their peers record with it."""
    r = r.detach() if detach_reset else r
    if reset == "zero":
        return p * (1 - r) + v_reset * r
    if reset == "subtract":
        return p - threshold * r
    return p


def _scan(a: LIFArgs, x: torch.Tensor, state: torch.Tensor, return_membrane: bool) -> tuple[Any, Any, torch.Tensor]:
    """The loop over the steps of ``x`` [B, T, N] from ``state``: (spikes, membranes, state) with
    the sequences as lists of [B, N] steps."""
    alpha, alpha_syn, theta = a.alpha, a.alpha_syn, a.threshold
    v, i, w = state[STATE_V], state[STATE_I], state[STATE_W]
    # Adaptation a and refractory counter c: rows of extended states only (zeros, unused, else).
    adaptation, counter = (state[STATE_A], state[STATE_REFRACTORY]) if a.extended else (v * 0, v * 0)
    rho, beta = (a.adaptation[0], a.adaptation[1]) if a.adaptation is not None else (theta * 0, theta * 0)

    def fire(u: torch.Tensor, adaptation: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
        if a.spike == "multi":
            return spike_count(u, a.surrogate, theta)
        # The threshold theta + beta a of an adaptive neuron; the surrogate's width stays theta's.
        offset = theta if a.adaptation is None else theta + beta * adaptation
        z = spike(u - offset, a.surrogate, theta)
        return z * (counter <= 0).to(z.dtype) if a.extended else z

    spikes: list[torch.Tensor] = []
    membranes: list[torch.Tensor] = []
    for t in range(x.shape[1]):
        d = x[:, t]
        if alpha_syn is not None:
            i_next = alpha_syn * i + x[:, t]
            d = i_next if a.current_first else i
            i = i_next
        p = alpha * v + d if a.v_leak == 0 else alpha * (v - a.v_leak) + a.v_leak + d
        if a.ordering == "charge_first":
            u = p
        else:
            u = w if a.ordering == "delayed" else v
        r = fire(u, adaptation, counter)
        z = r
        v_next = reset_membrane(p, r, a.reset, theta, a.v_reset, a.detach_reset)
        if a.ordering == "delayed":
            w = v
        v = v_next
        if a.extended:
            # The adaptation steps with the reset spike (its gradient is kept with detach_reset:
            # only the reset is detached); the counter restarts at `refractory` after a spike.
            if a.adaptation is not None:
                adaptation = rho * adaptation + r
            counter = torch.where(r.detach() > 0, float(a.refractory), (counter.detach() - 1).clamp(min=0))
        if a.ordering == "update_first":
            u = v
            z = fire(u, adaptation, counter)
        spikes.append(z)
        membranes.append(u)
    rows = [v, i, w]
    if a.extended:
        rows += [adaptation, counter]
    return spikes, membranes if return_membrane else None, torch.stack(rows)


def _sequence(steps: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Steps [B, N] stacked as [B, T, N] in the storage dtype of ``like`` (the steps ran in the
    accumulate dtype)."""
    return torch.stack(steps, dim=1).to(like.dtype) if steps else like.new_zeros(like.shape)


def lif(
    x: torch.Tensor,
    alpha: Decay,
    *,
    state: torch.Tensor | None = None,
    return_membrane: bool = False,
    **options: Any,
) -> LIFResult:
    """Reference LIF scan; see :func:`snnkern.lif` for the arguments."""
    a = prepare_lif_args(x, alpha, state=state, **options)
    spikes, membranes, state_out = _scan(a, a.x, a.state, return_membrane)
    membrane = None if membranes is None else a.layout.sequence(_sequence(membranes, a.x))
    return LIFResult(a.layout.sequence(_sequence(spikes, a.x)), membrane, a.layout.state(state_out))


def recurrent_lif(
    x: torch.Tensor,
    weight: torch.Tensor,
    alpha: Decay,
    *,
    state: torch.Tensor | None = None,
    spikes: torch.Tensor | None = None,
    return_membrane: bool = False,
    **options: Any,
) -> LIFResult:
    """Reference recurrent LIF layer; see :func:`snnkern.recurrent_lif`.

    Each step runs the scan for one time step on ``x_t + z_{t-1} weight^T``.
    """
    r = prepare_recurrent_args(x, weight, spikes, alpha, state=state, **options)
    a = r.lif
    z, state_t = r.spikes, a.state
    spike_steps: list[torch.Tensor] = []
    membrane_steps: list[torch.Tensor] = []
    for t in range(a.x.shape[1]):
        step_input = a.x[:, t : t + 1] + torch.nn.functional.linear(z, weight).unsqueeze(1)
        step_spikes, step_membranes, state_t = _scan(a, step_input, state_t, return_membrane)
        z = step_spikes[0].to(a.x.dtype)
        spike_steps.append(z)
        if step_membranes is not None:
            membrane_steps.append(step_membranes[0])
    membrane = a.layout.sequence(_sequence(membrane_steps, a.x)) if return_membrane else None
    return LIFResult(a.layout.sequence(_sequence(spike_steps, a.x)), membrane, a.layout.state(state_t))


def spike_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Reference of :func:`snnkern.spike_linear`: the dense ``torch.nn.functional.linear``."""
    prepare_spike_linear_args(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)


def spike_events(spikes: torch.Tensor) -> torch.Tensor:
    """Reference of ``torch.ops.snnkern.spike_events``: the nonzeros of ``spikes`` [M, K] as bits,
    int32 [M, ceil(K / 32) + 1]. Bit j of word w of row m is set where ``spikes[m, 32 w + j] != 0``;
    the last word is 1 where the row holds only 0 and 1. A row with any other value has all its
    words 0 (the products then scan that row)."""
    if spikes.dim() != 2 or not spikes.is_floating_point():
        raise ValueError(
            "spike_events: spikes must be a floating-point matrix [rows, columns], "
            f"got {spikes.dtype} of shape {tuple(spikes.shape)}"
        )
    m, k = spikes.shape
    words = (k + 31) // 32
    binary = ((spikes == 0) | (spikes == 1)).all(dim=1)
    bits = torch.nn.functional.pad((spikes != 0) & binary[:, None], (0, 32 * words - k)).view(m, words, 32)
    values = (bits.long() << torch.arange(32, device=spikes.device)).sum(dim=2)  # in [0, 2^32)
    values = torch.where(values >= 2**31, values - 2**32, values)  # the bit pattern as int32 holds it
    return torch.cat([values, binary[:, None].long()], dim=1).to(torch.int32)


def leaky(
    x: torch.Tensor,
    alpha: Decay,
    *,
    alpha_syn: Decay | None = None,
    state: torch.Tensor | None = None,
    batch_first: bool = True,
) -> LeakyResult:
    """Reference non-spiking leaky integrator; see :func:`snnkern.leaky`."""
    x, alpha, alpha_syn, state, layout = prepare_leaky_args(x, alpha, alpha_syn, state, batch_first)
    v, i, w = state[STATE_V], state[STATE_I], state[STATE_W]
    trace = []
    for t in range(x.shape[1]):
        v = alpha * v + (i if alpha_syn is not None else x[:, t])
        if alpha_syn is not None:
            i = alpha_syn * i + x[:, t]
        trace.append(v)
    return LeakyResult(layout.sequence(_sequence(trace, x)), layout.state(torch.stack([v, i, w])))
