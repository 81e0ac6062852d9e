// CPU kernels of the recurrent LIF layer.
#include <torch/library.h>

#include "register.h"

TORCH_LIBRARY_IMPL(snnkern, CPU, m) {
  SNNKERN_CPU_IMPL(m, recurrent_lif_forward);
  SNNKERN_CPU_IMPL(m, recurrent_lif_backward);
}
