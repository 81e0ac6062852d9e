// CUDA kernels of the products with spike trains (dense, cuBLAS).
#include <torch/library.h>

#include "launcher.h"

TORCH_LIBRARY_IMPL(snnkern, CUDA, m) {
  m.impl("spike_matmul", &snnkern::CudaOps::spike_matmul);
  m.impl("spike_matmul_t", &snnkern::CudaOps::spike_matmul_t);
  m.impl("spike_events", &snnkern::CudaOps::spike_events);
}
