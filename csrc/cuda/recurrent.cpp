// CUDA kernels of the recurrent LIF layer.
#include <torch/library.h>

#include "launcher.h"

TORCH_LIBRARY_IMPL(snnkern, CUDA, m) {
  m.impl("recurrent_lif_forward", &snnkern::CudaOps::recurrent_lif_forward);
  m.impl("recurrent_lif_backward", &snnkern::CudaOps::recurrent_lif_backward);
}
