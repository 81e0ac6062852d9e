"""snnkern: fused leaky integrate-and-fire kernels for training spiking networks in PyTorch."""
from ._checks import STATE_SIZE, decay
from ._types import LeakyResult, LIFResult
from .ops import compiled_with_cuda, leaky, lif, recurrent_lif, spike_linear
from .runtime import tune_cpu_allocator
from .surrogate import ATan, FastSigmoid, Sigmoid, Surrogate, Triangle

__version__ = "0.1.0"

__all__ = ["lif", "recurrent_lif", "leaky", "spike_linear", "decay", "LIFResult", "LeakyResult", "STATE_SIZE",
           "compiled_with_cuda", "tune_cpu_allocator", "Surrogate", "Sigmoid", "FastSigmoid", "Triangle", "ATan",
           "__version__"]
