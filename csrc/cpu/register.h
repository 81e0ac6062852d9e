// The kernels of the CPU dispatch key: the SIMD CPU backend or, while the emulation is on
// (snnkern.testing.cuda_lane_emulation()), the CUDA backend's lane code run on the host.
#pragma once

#include "../emulated/launcher.h"
#include "launcher.h"

namespace snnkern {

using CpuOps = Ops<CpuLauncher>;
using EmulatedCudaOps = Ops<EmulatedCudaLauncher>;

template <auto kCpu, auto kEmulated>
struct CpuOrEmulated;

template <class R, class... A, R (*kCpu)(A...), R (*kEmulated)(A...)>
struct CpuOrEmulated<kCpu, kEmulated> {
  static R call(A... args) { return cuda_lane_emulation() ? kEmulated(args...) : kCpu(args...); }
};

}  // namespace snnkern

// Registers op `name` of snnkern::Ops for the CPU dispatch key.
#define SNNKERN_CPU_IMPL(m, name) \
  m.impl(#name, &snnkern::CpuOrEmulated<&snnkern::CpuOps::name, &snnkern::EmulatedCudaOps::name>::call)
