"""Test support: run the CUDA kernels' code on machines without a GPU.

The CUDA kernels are lane tasks of csrc/lif.h, one CUDA thread per neuron. While
:func:`cuda_lane_emulation` is active, every snnkern op called on CPU tensors runs those very
lane tasks on the host, exactly as a CUDA thread runs them (scalar arithmetic in the accumulate
type, the storage conversions of float32, float64, float16 and bfloat16) with the CUDA
launcher's orchestration, instead of the SIMD CPU kernels. It is a correctness tool for tests,
not a speed path: the lanes run one after another.

So the CUDA code paths, float16 and bfloat16 included, are tested in CI and on any laptop: snnkern's
own test suite runs every kernel test on ``cpu``, on ``emulated`` (this switch) and, where a GPU is
present, on ``cuda``. What only a GPU shows (races, launch limits, speed) is listed in the GPU
guide of the documentation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import ops


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
    if ops._C is None:
        raise RuntimeError("the CUDA lane emulation needs the compiled extension snnkern._C")
    before = cuda_lane_emulation_active()
    ops._C._set_cuda_lane_emulation(True)
    try:
        yield
    finally:
        ops._C._set_cuda_lane_emulation(before)
