"""Type stub of the compiled extension ``snnkern._C`` (its pybind11 module, csrc/ops.cpp).

The ops themselves are registered with the dispatcher (``torch.ops.snnkern.*``), not here; the
module exports what the build was made with and the integer codes the kernels switch on.
"""

with_cuda: bool
"""True when the extension was built with its CUDA kernels."""
build_info: str
"""What the extension was built with, e.g. ``cpu=avx2,openmp=on,cuda=8.0/9.0+PTX``."""

ORDERINGS: dict[str, int]
"""Code of each ``ordering`` name ("delayed", "spike_first", "update_first")."""
RESETS: dict[str, int]
"""Code of each ``reset`` name ("zero", "subtract", "none")."""
SURROGATES: dict[str, int]
"""Code of each surrogate name ("sigmoid", "fast_sigmoid", "triangle", "atan")."""
STATE_ROWS: dict[str, int]
"""Row of each neuron state variable ("v", "i", "w") in the packed state tensor."""
STATE_SIZE: int
"""Rows of the packed state tensor [STATE_SIZE, batch, neurons]."""
ADAPTIVE_STATE_ROWS: dict[str, int]
"""The rows neurons with adaptation or a refractory period append: the adaptation, the counter."""
ADAPTIVE_STATE_SIZE: int

def _set_cuda_lane_emulation(on: bool, /) -> None:
    """While on, the CPU ops run the CUDA kernels' lane code on the host (a test backend).

    Positional only (pybind11 names the parameter arg0). Use snnkern.testing.cuda_lane_emulation.
    """

def _cuda_lane_emulation() -> bool:
    """Whether the CUDA lane emulation is on."""

def _set_recurrent_per_step(on: bool, /) -> None:
    """While on, the recurrent op runs one task per time step instead of its row tasks.

    Positional only (pybind11 names the parameter arg0). Use snnkern.testing.recurrent_per_step.
    """

def _recurrent_per_step() -> bool:
    """Whether the recurrent op's per-step switch is on."""
