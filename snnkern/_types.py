"""The named tuples the ops return."""

from typing import NamedTuple

import torch


class LIFResult(NamedTuple):
    """Output of :func:`snnkern.lif` and :func:`snnkern.recurrent_lif`.

    Attributes:
        spikes (torch.Tensor): ``[batch, time, neurons]``, 0 or 1 in the dtype of the input.
        membrane (torch.Tensor | None): ``[batch, time, neurons]``, the membrane potential each
            spike was thresholded from, in the dtype of the input; ``None`` unless
            ``return_membrane=True``.
        state (torch.Tensor): ``[3, batch, neurons]``, the neuron state after the last step (rows:
            membrane, synaptic current, previous membrane; with adaptation or a refractory period
            ``[5, batch, neurons]``, then the adaptation and the refractory counter), in the
            accumulate dtype (float64 for float64 input, else float32). Pass it as ``state=`` to
            continue the sequence.
    """

    spikes: torch.Tensor
    membrane: torch.Tensor | None
    state: torch.Tensor


class LeakyResult(NamedTuple):
    """Output of :func:`snnkern.leaky`.

    Attributes:
        membrane (torch.Tensor): ``[batch, time, neurons]``, the membrane potential after each
            step, in the dtype of the input.
        state (torch.Tensor): ``[3, batch, neurons]``, the state after the last step, in the
            accumulate dtype (float64 for float64 input, else float32). Pass it as ``state=`` to
            continue the sequence.
    """

    membrane: torch.Tensor
    state: torch.Tensor
