// The CUDA backend's lane code, run on the host: a test backend, not a speed path. Every lane
// task runs exactly as a CUDA thread runs it (run_lane of lanes.h: the same template
// instantiation, scalar arithmetic in the accumulate type, the storage conversions of float32,
// float64, float16 and bfloat16), and the orchestration is the CUDA launcher's own
// (CudaOrchestration: the whole batch at once, dense products between the recurrent op's
// steps). So everything the CUDA build computes is computed, on every machine, by the CPU ops
// while the emulation is on (snnkern.testing.cuda_lane_emulation()).
#pragma once

#include "../cuda/orchestration.h"
#include "../host/launcher.h"
#include "../lanes.h"

namespace snnkern {

// The process-wide switch (defined in csrc/ops.cpp): while on, the CPU ops run EmulatedCudaLauncher.
bool cuda_lane_emulation();
void set_cuda_lane_emulation(bool on);

struct EmulatedCudaLauncher : CudaOrchestration {
  // One "thread" after another over the launch's grid: the threads of a launch are
  // independent, so their order does not matter.
  template <class Task>
  static void run(const Task& task, int64_t b0, int64_t b1, int64_t N, int64_t /*steps*/, at::Device) {
    const int64_t rows = b1 - b0;
    for (int64_t k = 0; k < rows * N; ++k) run_lane(task, b0, rows, N, k);
  }

  static bool values_readable(at::Device) { return true; }
};

static_assert(Launcher<EmulatedCudaLauncher>);

}  // namespace snnkern
