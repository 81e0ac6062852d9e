"""Seed 003's network for the evidence-accumulation task (NEST's e-prop example after Bellec et al.
2020): a recurrent layer of regular and adaptive (ALIF) neurons and two leaky readouts.

The neuron is NEST's ``eprop_iaf_adapt_bsshslm_2020`` (``eprop_iaf_bsshslm_2020`` for the regular
ones: adaptation strength 0), one step of 1 ms::

    v_{t+1} = alpha v_t + x_t + (W_rec z_{t-1})_t - v_th z_{t-1}     subtract reset by the base threshold
    a_{t+1} = rho a_t + z_{t-1}                                       threshold adaptation
    z_t     = H(v_{t+1} - v_th - beta a_{t+1}), 0 while refractory     NEST's t_ref 5 ms: 4 steps blocked

which is :func:`snnkern.recurrent_lif` with ``ordering="update_first"``, ``reset="subtract"``,
``adaptation_decay=rho``, ``adaptation_strength=beta`` and ``refractory=4``. The surrogate is the
seed's piecewise-linear pseudo-derivative ``gamma / v_th * max(0, 1 - |v - A| / v_th)``:
``Triangle(gamma / v_th)``. The readouts integrate the spikes as NEST's ``eprop_readout`` does,
``y_{t+1} = kappa y_t + (1 - kappa) W_out z_t``; the class probabilities are the softmax over the
two readouts at each step of the recall window.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import ops
from .._checks import decay
from ..surrogate import Triangle


class EvidenceOutput(NamedTuple):
    readout: torch.Tensor  # [B, T, n_out], the readout membranes y_{t+1}
    spikes: torch.Tensor  # [B, T, n_rec]
    membrane: torch.Tensor  # [B, T, n_rec], the membrane each spike was thresholded from


class EvidenceNetwork(nn.Module):
    """``n_regular`` regular then ``n_adaptive`` adaptive recurrent neurons, ``n_out`` readouts.

    Parameters (trained): ``input_weight`` [n_rec, n_in], ``recurrent_weight`` [n_rec, n_rec]
    (``[post, pre]``; its diagonal is held at zero: no autapses), ``readout_weight`` [n_out, n_rec].
    Buffers: ``adaptation_strength`` [n_rec] (0 for the regular neurons), ``feedback_weight``
    [n_rec, n_out] (random feedback for e-prop), ``recurrent_mask`` [n_rec, n_rec].
    Initialisation as the seed's: input and recurrent weights normal with std ``1/sqrt(fan_in)``,
    readout weights Glorot-uniform, feedback weights standard normal.
    """

    adaptation_strength: torch.Tensor
    recurrent_mask: torch.Tensor
    feedback_weight: torch.Tensor

    def __init__(
        self,
        n_in: int = 40,
        n_regular: int = 50,
        n_adaptive: int = 50,
        n_out: int = 2,
        *,
        tau_m: float = 20.0,
        tau_adaptation: float = 2000.0,
        tau_readout: float = 20.0,
        v_th: float = 0.6,
        gamma: float = 0.3,
        refractory: int = 4,
        adaptation_scale: float = 1.7,
        detach_reset: bool = False,
        dt: float = 1.0,
        generator: torch.Generator | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("n_in", n_in), ("n_out", n_out), ("n_regular + n_adaptive", n_regular + n_adaptive)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(n_regular, int) or not isinstance(n_adaptive, int) or min(n_regular, n_adaptive) < 0:
            raise ValueError(f"n_regular and n_adaptive must be ints >= 0, got {n_regular!r}, {n_adaptive!r}")
        n_rec = n_regular + n_adaptive
        self.n_in, self.n_rec, self.n_out = n_in, n_rec, n_out
        self.alpha = decay(tau_m, dt)
        self.rho = decay(tau_adaptation, dt)
        self.kappa = decay(tau_readout, dt)
        self.v_th = float(v_th)
        self.refractory = int(refractory)
        # BPTT through the reset, as the seed's reference (Bellec et al.'s TensorFlow code): its
        # gradient, -v_th per spike, damps the recurrent loop, without which BPTT's gradients
        # grow by orders of magnitude over the 2250 steps (1e17 and more at initialisation).
        # e-prop leaves the reset out whatever this says.
        self.detach_reset = bool(detach_reset)
        self.surrogate = Triangle(gamma / v_th)
        self.backend = backend
        # The seed's adaptation strength: 1.7 (1 - rho) / (1 - alpha), about 0.0174 at its values.
        beta = adaptation_scale * (1.0 - self.rho) / (1.0 - self.alpha)
        strength = torch.cat([torch.zeros(n_regular), torch.full((n_adaptive,), beta)])
        self.register_buffer("adaptation_strength", strength)
        self.register_buffer("recurrent_mask", 1.0 - torch.eye(n_rec))
        g = generator
        self.input_weight = nn.Parameter(torch.randn(n_rec, n_in, generator=g) / math.sqrt(n_in))
        self.recurrent_weight = nn.Parameter(torch.randn(n_rec, n_rec, generator=g) / math.sqrt(n_rec))
        limit = math.sqrt(3.0 / max(1.0, (n_rec + n_out) / 2.0))
        self.readout_weight = nn.Parameter((torch.rand(n_out, n_rec, generator=g) * 2 - 1) * limit)
        self.register_buffer("feedback_weight", torch.randn(n_rec, n_out, generator=g))
        with torch.no_grad():
            self.recurrent_weight.mul_(self.recurrent_mask)

    def neuron_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`snnkern.recurrent_lif` for this network's neurons."""
        return dict(
            threshold=self.v_th,
            reset="subtract",
            detach_reset=self.detach_reset,
            ordering="update_first",
            surrogate=self.surrogate,
            adaptation_decay=self.rho,
            adaptation_strength=self.adaptation_strength,
            refractory=self.refractory,
        )

    def weight_matrices(self) -> dict[str, torch.Tensor]:
        """The effective weights in the seeds' layout ``[pre, post]`` (the recurrent one masked)."""
        return {
            "input -> recurrent": self.input_weight.detach().T,
            "recurrent": (self.recurrent_weight * self.recurrent_mask).detach().T,
            "recurrent -> readout": self.readout_weight.detach().T,
        }

    def forward(self, x: torch.Tensor) -> EvidenceOutput:
        """``x`` [B, T, n_in] input spikes -> readout [B, T, n_out], spikes and membranes [B, T, n_rec]."""
        current = x @ self.input_weight.t()
        result = ops.recurrent_lif(
            current,
            self.recurrent_weight * self.recurrent_mask,
            self.alpha,
            return_membrane=True,
            backend=self.backend,
            **self.neuron_options(),
        )
        assert result.membrane is not None  # return_membrane=True
        return EvidenceOutput(self.readout(result.spikes), result.spikes, result.membrane)

    def readout(self, spikes: torch.Tensor) -> torch.Tensor:
        """The readout membranes [B, T, n_out] of recurrent ``spikes`` [B, T, n_rec]."""
        drive = (1.0 - self.kappa) * (spikes @ self.readout_weight.t())
        return ops.leaky(drive, self.kappa, backend=self.backend).membrane


def recall_loss(readout: torch.Tensor, target: torch.Tensor, window: slice) -> torch.Tensor:
    """Cross-entropy of the softmax over the readouts against the target class, averaged over the
    steps of the recall ``window`` and the batch (the seed's loss)."""
    logits = readout[:, window]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.repeat_interleave(logits.shape[1])
    )


def decisions(readout: torch.Tensor, window: slice) -> torch.Tensor:
    """The side each trial chooses: the larger time-averaged softmax output over the recall window."""
    return torch.softmax(readout[:, window], dim=-1).mean(dim=1).argmax(dim=-1)


def rate_regularization(spikes: torch.Tensor, f_target: float = 0.01, c_reg: float = 1.0) -> torch.Tensor:
    """``c_reg / 2 * sum_j mean_b (f_bj - f_target)^2``: each neuron's firing rate over a trial (spikes
    per step; 10 Hz at 1 ms steps is 0.01) pulled towards ``f_target``, as NEST's e-prop neurons do."""
    rate = spikes.mean(dim=1)
    return 0.5 * c_reg * ((rate - f_target) ** 2).mean(dim=0).sum()
