"""Test support: run the CUDA kernels' code on machines without a GPU.

The CUDA kernels are lane tasks of csrc/lif.h, one CUDA thread per neuron. While
:func:`cuda_lane_emulation` is active, every snnkern op called on CPU tensors runs those very
lane tasks on the host, exactly as a CUDA thread runs them (scalar arithmetic in the accumulate
type, the storage conversions of float32, float64, float16 and bfloat16) with the CUDA
launcher's orchestration, instead of the SIMD CPU kernels. It is a correctness tool for tests,
not a speed path: the lanes run one after another.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from . import ops


def cuda_lane_emulation_active() -> bool:
    """Whether the CPU ops currently run the emulated CUDA lanes."""
    return ops._C is not None and bool(ops._C._cuda_lane_emulation())


@contextlib.contextmanager
def cuda_lane_emulation() -> Iterator[None]:
    """Within the block, snnkern's ops on CPU tensors run the CUDA kernels' lane code on the host.

    The switch is process-wide (not per thread). Call backward inside the block too, so that the
    backward kernels are emulated as well. Nested blocks keep it on until the outermost exits.
    """
    if ops._C is None:
        raise RuntimeError("the CUDA lane emulation needs the compiled extension snnkern._C")
    before = cuda_lane_emulation_active()
    ops._C._set_cuda_lane_emulation(True)
    try:
        yield
    finally:
        ops._C._set_cuda_lane_emulation(before)
