"""IPD models of seed 000, the annotated IPD sound-localisation tutorial (Cosyne 2022 tutorial by
Dan Goodman, annotated version), and of seed 001, its noise-offset / Dale's-law variant (same
tutorial series).

All three return the readout membrane trace ``[batch, time, num_classes]`` in the seeds'
convention: the first row is the initial potential 0 and the last input step is not used.
The class scores are the time-mean of that trace (:meth:`scores`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._checks import decay
from ..nn import LIF, LeakyReadout, effective_weight
from ..surrogate import Sigmoid


def _seed_trace(membrane: torch.Tensor) -> torch.Tensor:
    """Prepend the initial potential 0 and drop the last step (seed 000's ``v_rec``)."""
    return torch.cat([membrane.new_zeros(membrane.shape[0], 1, membrane.shape[2]), membrane[:, :-1]], dim=1)


class IPDMembraneOnly(nn.Module):
    """Seed 000's membrane-only baseline: leaky integrators fed by the input spikes.

    ``forward(spikes [B, T, input_size]) -> readout trace [B, T, num_classes]``.
    """

    def __init__(
        self,
        input_size: int = 200,
        num_classes: int = 12,
        tau: float = 20e-3,
        dt: float = 1e-3,
        learn_alpha: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.readout = LeakyReadout(
            input_size, num_classes, alpha=decay(tau, dt), learn_alpha=learn_alpha, init="seed", backend=backend
        )

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return _seed_trace(self.readout(spikes))

    @staticmethod
    def scores(output: torch.Tensor) -> torch.Tensor:
        return output.mean(dim=1)

    def weight_matrices(self) -> dict[str, torch.Tensor]:
        return {"W (input -> output)": self.readout.linear.weight.detach().T}


class IPDSNN(nn.Module):
    """Seed 000's SNN: LIF hidden layer (delayed spike/reset, sigmoid surrogate beta 5,
    reset to zero with gradient) and a leaky readout, both with the same time constant.

    With ``dale_ie_ratio`` both projections obey Dale's law (seed 001).
    ``forward(spikes [B, T, input_size]) -> readout trace [B, T, num_classes]``;
    ``forward(spikes, return_hidden=True)`` also returns the hidden spikes [B, T, hidden].
    """

    def __init__(
        self,
        input_size: int = 200,
        hidden: int = 100,
        num_classes: int = 12,
        tau: float = 20e-3,
        dt: float = 1e-3,
        surrogate_beta: float = 5.0,
        dale_ie_ratio: float | None = None,
        learn_alpha: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        alpha = decay(tau, dt)
        self.hidden = LIF(
            input_size,
            hidden,
            alpha=alpha,
            ordering="delayed",
            reset="zero",
            detach_reset=False,
            surrogate=Sigmoid(surrogate_beta),
            dale_ie_ratio=dale_ie_ratio,
            init="seed",
            learn_alpha=learn_alpha,
            backend=backend,
        )
        self.readout = LeakyReadout(
            hidden,
            num_classes,
            alpha=alpha,
            dale_ie_ratio=dale_ie_ratio,
            init="seed",
            learn_alpha=learn_alpha,
            backend=backend,
        )

    def forward(
        self, spikes: torch.Tensor, return_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden(spikes)
        out = _seed_trace(self.readout(hidden))
        return (out, hidden) if return_hidden else out

    @staticmethod
    def scores(output: torch.Tensor) -> torch.Tensor:
        return output.mean(dim=1)

    def weight_matrices(self) -> dict[str, torch.Tensor]:
        """The weights the projections apply (Dale's law included), in the seeds' layout [pre, post]."""
        return {
            "W1 (input -> hidden)": effective_weight(self.hidden.linear).detach().T,
            "W2 (hidden -> output)": effective_weight(self.readout.linear).detach().T,
        }


def dales_ipd_snn(
    input_size: int = 200,
    hidden: int = 30,
    num_classes: int = 12,
    tau: float = 5e-3,
    dt: float = 1e-3,
    ie_ratio: float = 0.5,
    **kwargs: Any,
) -> IPDSNN:
    """Seed 001's network: 30 hidden units, tau 5 ms, Dale's law with ``ie_ratio`` inhibitory inputs."""
    return IPDSNN(input_size, hidden, num_classes, tau=tau, dt=dt, dale_ie_ratio=ie_ratio, **kwargs)
