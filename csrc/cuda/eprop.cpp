// CUDA kernel of e-prop's eligibility-trace weight gradient (csrc/eprop.h).
#include <torch/library.h>

#include "launcher.h"

TORCH_LIBRARY_IMPL(snnkern, CUDA, m) { m.impl("eprop_weight_grad", &snnkern::CudaOps::eprop_weight_grad); }
