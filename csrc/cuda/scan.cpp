// CUDA kernels of the feed-forward scans (lif, leaky).
#include <torch/library.h>

#include "launcher.h"

TORCH_LIBRARY_IMPL(snnkern, CUDA, m) {
  m.impl("lif_forward", &snnkern::CudaOps::lif_forward);
  m.impl("lif_backward", &snnkern::CudaOps::lif_backward);
  m.impl("leaky_forward", &snnkern::CudaOps::leaky_forward);
  m.impl("leaky_backward", &snnkern::CudaOps::leaky_backward);
}
