// CPU kernels of the event-driven products with spike trains.
#include <torch/library.h>

#include "register.h"

TORCH_LIBRARY_IMPL(snnkern, CPU, m) {
  SNNKERN_CPU_IMPL(m, spike_matmul);
  SNNKERN_CPU_IMPL(m, spike_matmul_t);
  SNNKERN_CPU_IMPL(m, spike_events);
}
