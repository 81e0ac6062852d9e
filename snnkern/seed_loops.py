"""Naive per-time-step PyTorch loops of the seed models, written out as plain functions.

These are independent transcriptions of the *equations* of the seed tutorials, one python
iteration per time step with autograd through the loop. They take every parameter explicitly (no
module-level globals; the batch size comes from the input) and serve two purposes:

* ground truth in the test suite (``tests/test_seed_parity.py``): the fused ops must reproduce
  them exactly, forward and backward;
* the baseline the benchmarks compare the fused kernels against.

All tensors are batch-first: ``[batch, time, features]``. ``alpha`` / ``beta`` decays may be
python floats or tensors broadcastable to ``[features]``.

The seed labels used throughout snnkern name these public tutorials:

* seed 000: the annotated IPD sound-localisation tutorial (Cosyne 2022 tutorial by Dan Goodman,
  annotated version);
* seed 001: its noise-offset / Dale's-law variant (same tutorial series);
* seed 002: the "Spiking neural networks" LIF basics exercise (leaky integrator, LIF, time surfaces
  of a spoken digit);
* seed 003: NEST's e-prop example "Tutorial on learning to accumulate evidence with e-prop"
  (eprop_supervised_classification_evidence-accumulation), after Bellec et al. 2020, Nature
  Communications 11:3625;
* seed 004: SpyTorch tutorial 4, "Training a spiking neural network on a spiking dataset (Spiking
  Heidelberg Digits)", by Halvagal and Zenke.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.types import Device

Decay = float | torch.Tensor

__all__ = [
    "spike_sigmoid",
    "spike_fast_sigmoid",
    "dales_signs",
    "signed_weight",
    "seed000_hidden",
    "seed000_readout",
    "seed000_membrane_only",
    "seed000_snn",
    "seed001_snn",
    "seed004_hidden",
    "seed004_readout",
    "seed004_snn",
]


# --------------------------------------------------------------------------------------------
# Spike nonlinearities: Heaviside forward, surrogate derivative backward
# --------------------------------------------------------------------------------------------


class _HeavisideSigmoidGrad(torch.autograd.Function):
    """H(x) forward; derivative of sigmoid(beta x) backward (seed 000)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, beta: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.beta = beta
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.beta * x)
        return grad * ctx.beta * sig * (1 - sig), None


class _HeavisideFastSigmoidGrad(torch.autograd.Function):
    """H(x) forward; SuperSpike fast-sigmoid derivative 1/(scale|x|+1)^2 backward (seed 004)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.scale = scale
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad / (ctx.scale * torch.abs(x) + 1.0) ** 2, None


def spike_sigmoid(x: torch.Tensor, beta: float = 5.0) -> torch.Tensor:
    """Heaviside step ``x > 0`` whose backward is ``beta * sig(beta x) * (1 - sig(beta x))``."""
    return _HeavisideSigmoidGrad.apply(x, beta)


def spike_fast_sigmoid(x: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """Heaviside step ``x > 0`` whose backward is ``1 / (scale |x| + 1)^2``."""
    return _HeavisideFastSigmoidGrad.apply(x, scale)


# --------------------------------------------------------------------------------------------
# Seed 000 (IPD tutorial) and seed 001 (Dale's-law variant)
# --------------------------------------------------------------------------------------------


def seed000_hidden(h: torch.Tensor, alpha: Decay, beta: float = 5.0) -> torch.Tensor:
    """Spiking hidden layer of seed 000's ``snn`` on the already projected current ``h`` [B, T, N].

    Membrane and spike start at zero; the loop runs T-1 times and the spike record starts with
    the zero spike, so the output has T rows and the last input step is never used. Each
    iteration computes the new membrane with the reset of the *previous* spike (gradient through
    the reset kept), then thresholds the *old* membrane at 1.
    """
    b, steps, n = h.shape
    v = h.new_zeros(b, n)
    s = h.new_zeros(b, n)
    record = [s]
    for t in range(steps - 1):
        v_next = (alpha * v + h[:, t]) * (1 - s)
        s = spike_sigmoid(v - 1, beta)
        v = v_next
        record.append(s)
    return torch.stack(record, dim=1)


def seed000_readout(h: torch.Tensor, alpha: Decay) -> torch.Tensor:
    """Non-spiking leaky readout of seed 000 (its ``membrane_only`` loop) on the projected current.

    ``v`` starts at zero and is recorded first; then T-1 updates ``v <- alpha v + h_t``; the
    output has T rows.
    """
    b, steps, c = h.shape
    v = h.new_zeros(b, c)
    record = [v]
    for t in range(steps - 1):
        v = alpha * v + h[:, t]
        record.append(v)
    return torch.stack(record, dim=1)


def seed000_membrane_only(input_spikes: torch.Tensor, W: torch.Tensor, alpha: Decay) -> torch.Tensor:
    """Seed 000's membrane-only baseline: project the input spikes with ``W``, then the leaky readout."""
    return seed000_readout(torch.einsum("btc,cd->btd", input_spikes, W), alpha)


def seed000_snn(
    input_spikes: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor, alpha: Decay, beta: float = 5.0
) -> torch.Tensor:
    """Seed 000's one-hidden-layer SNN: returns the readout membrane trace ``v_rec`` [B, T, C]."""
    s_rec = seed000_hidden(torch.einsum("btc,cd->btd", input_spikes, W1), alpha, beta)
    return seed000_readout(torch.einsum("btc,cd->btd", s_rec, W2), alpha)


def dales_signs(n_pre: int, ie_ratio: float, device: Device = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-presynaptic-row signs for Dale's law (seed 001), shape [n_pre, 1].

    The first ``int(ie_ratio * n_pre)`` rows are inhibitory (-1), the rest excitatory (+1).
    (The seed builds the inhibitory indices with ``arange(ie_ratio * n_pre)`` on a float, which
    rounds *up* and can give one more inhibitory row, e.g. for 0.1 * 30; here it is ``int``.)
    """
    n_inh = int(ie_ratio * n_pre)
    signs = torch.ones(n_pre, 1, device=device, dtype=dtype or torch.get_default_dtype())
    signs[:n_inh] = -1
    return signs


def signed_weight(w: torch.Tensor, signs: torch.Tensor | None) -> torch.Tensor:
    """Dale's effective weight ``|w| * sign``; ``signs=None`` leaves ``w`` unchanged."""
    return w if signs is None else torch.abs(w) * signs


def seed001_snn(
    input_spikes: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    signs: Sequence[torch.Tensor | None] | None,
    alpha: Decay,
    beta: float = 5.0,
) -> torch.Tensor:
    """Seed 001's network: seed 000's model with Dale's-law weights ``|w| * sign``.

    ``signs`` is ``(sign1, sign2)`` (e.g. from :func:`dales_signs`), one per weight matrix, or
    None for plain weights.
    """
    sign1, sign2 = (None, None) if signs is None else signs
    return seed000_snn(input_spikes, signed_weight(w1, sign1), signed_weight(w2, sign2), alpha, beta)


# --------------------------------------------------------------------------------------------
# Seed 004 (SpyTorch tutorial 4, recurrent SNN on SHD)
# --------------------------------------------------------------------------------------------


def seed004_hidden(
    h: torch.Tensor, v1: torch.Tensor | None, alpha_syn: Decay, beta_mem: Decay, scale: float = 100.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 004's recurrent two-state LIF hidden layer on the projected input current ``h``.

    As the tutorial's ``run_snn``, per step: add the recurrent input of the previous step's spikes
    through ``v1`` [N, N] (None or zeros: feed-forward), spike from the current membrane
    (threshold 1, fast-sigmoid surrogate), reset detached; the synaptic current integrates the
    input, the membrane integrates the *old* synaptic current. Records the membrane before the
    update. Returns ``(mem_rec, spk_rec)``, each [B, T, N].
    """
    b, steps, n = h.shape
    syn = h.new_zeros(b, n)
    mem = h.new_zeros(b, n)
    out = h.new_zeros(b, n)
    mem_rec, spk_rec = [], []
    for t in range(steps):
        drive = h[:, t] if v1 is None else h[:, t] + out @ v1
        out = spike_fast_sigmoid(mem - 1.0, scale)
        rst = out.detach()
        syn_next = alpha_syn * syn + drive
        mem_next = (beta_mem * mem + syn) * (1.0 - rst)
        mem_rec.append(mem)
        spk_rec.append(out)
        mem, syn = mem_next, syn_next
    if steps == 0:
        empty = h.new_zeros(b, 0, n)
        return empty, empty.clone()
    return torch.stack(mem_rec, dim=1), torch.stack(spk_rec, dim=1)


def seed004_readout(h2: torch.Tensor, alpha_syn: Decay, beta_mem: Decay) -> torch.Tensor:
    """Seed 004's non-spiking two-state readout: ``out_rec`` [B, T+1, C], first row zero.

    Per step the filtered current integrates the input and the output integrates the *old*
    filtered current.
    """
    b, steps, c = h2.shape
    flt = h2.new_zeros(b, c)
    out = h2.new_zeros(b, c)
    record = [out]
    for t in range(steps):
        flt_next = alpha_syn * flt + h2[:, t]
        out = beta_mem * out + flt
        flt = flt_next
        record.append(out)
    return torch.stack(record, dim=1)


def seed004_snn(
    inputs: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    v1: torch.Tensor | None,
    alpha_syn: Decay,
    beta_mem: Decay,
    scale: float = 100.0,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Seed 004's ``run_snn``: returns ``(out_rec, (mem_rec, spk_rec))``."""
    mem_rec, spk_rec = seed004_hidden(torch.einsum("btc,cd->btd", inputs, w1), v1, alpha_syn, beta_mem, scale)
    out_rec = seed004_readout(torch.einsum("btc,cd->btd", spk_rec, w2), alpha_syn, beta_mem)
    return out_rec, (mem_rec, spk_rec)
