"""Recurrent SHD model of seed 004: SpyTorch tutorial 4, "Training a spiking neural network on a
spiking dataset (Spiking Heidelberg Digits)", by Halvagal and Zenke."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import decay
from ..nn import LeakyReadout, RecurrentLIF
from ..surrogate import FastSigmoid


class SHDRecurrentSNN(nn.Module):
    """Two-state LIF hidden layer with recurrent weights and a two-state leaky readout.

    Hidden: spike first from the current membrane (threshold 1, fast-sigmoid surrogate scale
    100), detached reset to zero, synaptic current ``tau_syn``, membrane ``tau_mem``; the
    recurrent input uses the previous step's spikes. Readout: the same two-state filter without
    spiking. Weights start as in the seed: normal with std ``1/sqrt(fan_in)``.

    ``forward(x [B, T, input_size]) -> (out [B, T+1, num_classes], hidden spikes [B, T, hidden])``;
    ``out`` starts with the zero row as the seed's ``out_rec``. Class scores: max over time.
    """

    def __init__(
        self,
        input_size: int = 700,
        hidden: int = 128,
        num_classes: int = 20,
        tau_mem: float = 10e-3,
        tau_syn: float = 5e-3,
        dt: float = 1e-3,
        surrogate_scale: float = 100.0,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        beta, alpha = decay(tau_mem, dt), decay(tau_syn, dt)
        self.hidden = RecurrentLIF(
            input_size,
            hidden,
            alpha=beta,
            alpha_syn=alpha,
            ordering="spike_first",
            reset="zero",
            detach_reset=True,
            surrogate=FastSigmoid(surrogate_scale),
            sparse_input=True,
            backend=backend,
        )
        self.readout = LeakyReadout(
            hidden, num_classes, alpha=beta, alpha_syn=alpha, sparse_input=True, backend=backend
        )
        with torch.no_grad():
            nn.init.normal_(self.hidden.linear.weight, 0.0, 1.0 / math.sqrt(input_size))
            nn.init.normal_(self.hidden.recurrent_weight, 0.0, 1.0 / math.sqrt(hidden))
            nn.init.normal_(self.readout.linear.weight, 0.0, 1.0 / math.sqrt(hidden))

    def forward(self, x: torch.Tensor, return_hidden: bool = True) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        spikes = self.hidden(x)
        membrane = self.readout(spikes)
        out = torch.cat([membrane.new_zeros(membrane.shape[0], 1, membrane.shape[2]), membrane], dim=1)
        return (out, spikes) if return_hidden else out

    @staticmethod
    def scores(output: torch.Tensor) -> torch.Tensor:
        return output.max(dim=1).values

    def weight_matrices(self) -> dict[str, torch.Tensor]:
        return {
            "w1 (input -> hidden)": self.hidden.linear.weight.detach().T,
            "v1 (recurrent)": self.hidden.recurrent_weight.detach().T,
            "w2 (hidden -> output)": self.readout.linear.weight.detach().T,
        }
