from typing import NamedTuple, Optional

import torch


class LIFResult(NamedTuple):
    """Output of :func:`snnkern.lif`.

    spikes:   [batch, time, neurons], 0/1 in the dtype of the input.
    membrane: [batch, time, neurons], the membrane potential each spike was thresholded from
              (None unless ``return_membrane=True``).
    state:    [3, batch, neurons], the neuron state after the last step; pass it as ``state=``
              to continue the sequence (rows: membrane, synaptic current, previous membrane).
    """

    spikes: torch.Tensor
    membrane: Optional[torch.Tensor]
    state: torch.Tensor


class LeakyResult(NamedTuple):
    """Output of :func:`snnkern.leaky`: the membrane trace after each step, and the final state."""

    membrane: torch.Tensor
    state: torch.Tensor
