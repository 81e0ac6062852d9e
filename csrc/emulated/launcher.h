// The CUDA backend's lane code, run on the host: a test backend, not a speed path. Every lane
// task runs exactly as a CUDA thread runs it (run_lane of lanes.h: the same template
// instantiation, scalar arithmetic in the accumulate type, the storage conversions of float32,
// float64, float16 and bfloat16), and the orchestration is the CUDA launcher's own
// (CudaOrchestration: the whole batch at once, dense products between the recurrent op's
// steps). So everything the CUDA build computes is computed, on every machine, by the CPU ops
// while the emulation is on (snnkern.testing.cuda_lane_emulation()).
#pragma once

#include <vector>

#include "../cuda/orchestration.h"
#include "../host/launcher.h"
#include "../lanes.h"
#include "../recurrent_rows.h"

namespace snnkern {

// The process-wide switch (defined in csrc/ops.cpp): while on, the CPU ops run EmulatedCudaLauncher.
bool cuda_lane_emulation();
void set_cuda_lane_emulation(bool on);

// A CUDA thread block run on the host: each phase runs for every thread in turn; the barrier
// between phases is then implicit.
template <class Thread, class Shared>
struct EmulatedBlock {
  Thread* threads;
  int64_t N;
  Shared shared;
  template <class F>
  void each(F&& f) const {
    for (int64_t n = 0; n < N; ++n) f(threads[n], n);
  }
  void sync() const {}
};

struct EmulatedCudaLauncher : CudaOrchestration {
  // One "thread" after another over the launch's grid: the threads of a launch are
  // independent, so their order does not matter.
  template <class Task>
  static void run(const Task& task, int64_t b0, int64_t b1, int64_t N, int64_t /*steps*/, at::Device) {
    const int64_t rows = b1 - b0;
    for (int64_t k = 0; k < rows * N; ++k) run_lane(task, b0, rows, N, k);
  }

  // The weight gradient is formed after the backward row task.
  static constexpr bool kRowsFormWeightGrad = false;

  // The row tasks as the CUDA row kernel runs them: one block per batch row, its threads run
  // one phase after another (run_block), the weights in "shared memory" when they would fit in
  // kDefaultSharedBytes.
  template <class Task>
  static bool run_rows(const Task& task, at::Device) {
    using scalar_t = typename Task::scalar_type;
    using acc_t = typename Task::acc_type;
    if (task.N > kMaxRowThreads) return false;
    const bool weights_in_shared = row_shared_bytes<scalar_t, acc_t>(task.N, true) <= kDefaultSharedBytes;
    const int64_t bytes = row_shared_bytes<scalar_t, acc_t>(task.N, weights_in_shared);
    std::vector<acc_t> shared_memory((bytes + sizeof(acc_t) - 1) / sizeof(acc_t));
    std::vector<typename Task::Thread> threads(task.N);
    for (int64_t b = 0; b < task.B; ++b) {
      const EmulatedBlock<typename Task::Thread, RowShared<scalar_t, acc_t>> block{
          threads.data(), task.N,
          row_shared<scalar_t, acc_t>(shared_memory.data(), task.N, weights_in_shared, task.weights())};
      run_block(task, block, b);
    }
    return true;
  }

  static bool values_readable(at::Device) { return true; }
};

static_assert(Launcher<EmulatedCudaLauncher>);

}  // namespace snnkern
