// CPU kernel of e-prop's eligibility-trace weight gradient (csrc/eprop.h).
#include <torch/library.h>

#include "register.h"

TORCH_LIBRARY_IMPL(snnkern, CPU, m) { SNNKERN_CPU_IMPL(m, eprop_weight_grad); }
