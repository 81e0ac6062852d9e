"""snnkern: fused leaky integrate-and-fire kernels for training spiking networks in PyTorch."""

import importlib.metadata

from . import eprop, nn, surrogate
from ._checks import STATE_SIZE, decay
from ._types import LeakyResult, LIFResult
from .eprop import eprop_weight_grad
from .ops import build_info, compiled_with_cuda, leaky, lif, recurrent_lif, spike_linear
from .runtime import tune_cpu_allocator
from .surrogate import ATan, Exponential, FastSigmoid, Sigmoid, Surrogate, Triangle

try:
    __version__ = importlib.metadata.version("snnkern")  # written once, in pyproject.toml
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "lif",
    "recurrent_lif",
    "leaky",
    "spike_linear",
    "eprop_weight_grad",
    "decay",
    "LIFResult",
    "LeakyResult",
    "STATE_SIZE",
    "compiled_with_cuda",
    "build_info",
    "tune_cpu_allocator",
    "Surrogate",
    "Sigmoid",
    "FastSigmoid",
    "Triangle",
    "ATan",
    "Exponential",
    "nn",
    "eprop",
    "surrogate",
    "__version__",
]
