"""Test support: run the CUDA kernels' code on machines without a GPU.

The CUDA kernels are lane tasks of csrc/lif.h, one CUDA thread per neuron, and the recurrent
layer's row tasks of csrc/recurrent_rows.h, one thread block per batch row. While
:func:`cuda_lane_emulation` is active, every snnkern op called on CPU tensors runs those very
lane tasks on the host, exactly as a CUDA thread runs them (scalar arithmetic in the accumulate
type, the storage conversions of float32, float64, float16 and bfloat16) with the CUDA
launcher's orchestration (a row block's threads run one phase after another), instead of the
SIMD CPU kernels. It is a correctness tool for tests,
not a speed path: the lanes run one after another.

So the CUDA code paths, float16 and bfloat16 included, are tested in CI and on any laptop: snnkern's
own test suite runs every kernel test on ``cpu``, on ``emulated`` (this switch) and, where a GPU is
present, on ``cuda``. What only a GPU shows (races, launch limits, speed) is listed in the GPU
guide of the documentation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from . import ops


@contextlib.contextmanager
def _switched_on(what: str, active: Callable[[], bool], setter: str) -> Iterator[None]:
    """Turns a process-wide switch of the extension on within the block, then back to its state."""
    if ops._C is None:
        raise RuntimeError(f"{what} needs the compiled extension snnkern._C")
    before = active()
    getattr(ops._C, setter)(True)
    try:
        yield
    finally:
        getattr(ops._C, setter)(before)


def cuda_lane_emulation_active() -> bool:
    """Whether the CPU ops currently run the emulated CUDA lanes."""
    return ops._C is not None and bool(ops._C._cuda_lane_emulation())


@contextlib.contextmanager
def cuda_lane_emulation() -> Iterator[None]:
    """Within the block, snnkern's ops on CPU tensors run the CUDA kernels' lane code on the host.

    The switch is process-wide (not per thread). Call backward inside the block too, so that the
    backward kernels are emulated as well. Nested blocks keep it on until the outermost exits.

    Example::

        x = torch.randn(4, 100, 16, dtype=torch.bfloat16, requires_grad=True)
        with snnkern.testing.cuda_lane_emulation():
            out = snnkern.lif(x, 0.99)  # the CUDA kernel's bfloat16 lanes, on the host
            out.spikes.float().sum().backward()

    Raises:
        RuntimeError: without the compiled extension ``snnkern._C``.
    """
    with _switched_on("the CUDA lane emulation", cuda_lane_emulation_active, "_set_cuda_lane_emulation"):
        yield


def recurrent_per_step_active() -> bool:
    """Whether the recurrent op currently runs its per-step path."""
    return ops._C is not None and bool(ops._C._recurrent_per_step())


@contextlib.contextmanager
def recurrent_per_step() -> Iterator[None]:
    """Within the block, :func:`snnkern.recurrent_lif` runs its per-step path on every backend.

    The recurrent op normally runs the whole time loop of each batch row in one task (CPU) or
    one thread block (CUDA, up to 1024 neurons); the per-step path (one task per time step, the
    recurrent product between them) serves the shapes the row tasks do not take. This switch
    forces it, so that tests reach both paths at any size and benchmarks can time them side by
    side. Process-wide, like :func:`cuda_lane_emulation`; call backward inside the block too.

    Raises:
        RuntimeError: without the compiled extension ``snnkern._C``.
    """
    with _switched_on("the recurrent per-step switch", recurrent_per_step_active, "_set_recurrent_per_step"):
        yield
