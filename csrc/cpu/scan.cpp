// CPU kernels of the feed-forward scans (lif, leaky).
#include <torch/library.h>

#include "register.h"

TORCH_LIBRARY_IMPL(snnkern, CPU, m) {
  SNNKERN_CPU_IMPL(m, lif_forward);
  SNNKERN_CPU_IMPL(m, lif_backward);
  SNNKERN_CPU_IMPL(m, leaky_forward);
  SNNKERN_CPU_IMPL(m, leaky_backward);
}
