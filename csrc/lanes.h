// What one CUDA thread does, written once for the CUDA kernels (csrc/cuda) and for their
// emulation on the host (csrc/emulated): thread k of a launch over batch rows [b0, b0 + rows)
// runs the lane task for neuron k % N of batch row b0 + k / N, with scalar arithmetic in the
// accumulate type acc_t and every load and store converting to and from the storage type.
#pragma once

#include <cstdint>

#include "lif.h"

namespace snnkern {

// Converts between the storage type of a tensor and the arithmetic type acc_t of one thread.
// (clang-format would spread each one-line member template over three lines.)
template <class acc_t>
struct ThreadIO {
  // clang-format off
  template <class T>
  SNN_HD acc_t load(const T* p) const { return static_cast<acc_t>(*p); }
  template <class T>
  SNN_HD void store(T* p, acc_t v) const { *p = static_cast<T>(v); }
  // clang-format on
};

// Thread k of a launch; false when k lies past the last neuron (the grid's tail).
template <class Task>
SNN_HD bool run_lane(const Task& task, int64_t b0, int64_t rows, int64_t N, int64_t k) {
  using acc_t = typename Task::acc_type;
  if (k >= rows * N) return false;
  task.template run<acc_t, Math<acc_t>>(b0 + k / N, k % N, ThreadIO<acc_t>{});
  return true;
}

// Runs the program of a row task (recurrent_rows.h) for batch row b on the threads of `block`:
// start, the steps with a barrier after each, finish. On CUDA (cuda/lanes.cu) every thread of a
// block runs this, `each` calling f for the thread itself and `sync` a barrier; the emulation
// (emulated/launcher.h) runs each phase for all threads in turn, which computes the same because
// a phase reads only what was written before its last barrier.
template <class Task, class Block>
SNN_HD void run_block(const Task& task, const Block& block, int64_t b) {
  const ThreadIO<typename Task::acc_type> io;
  block.each([&](auto& thread, int64_t n) { task.start(thread, b, n, block.shared, io); });
  block.sync();
  for (int64_t s = 0; s < task.T; ++s) {
    block.each([&](auto& thread, int64_t n) { task.step(thread, b, n, s, block.shared, io); });
    block.sync();
  }
  block.each([&](auto& thread, int64_t n) { task.finish(thread, b, n, block.shared, io); });
}

}  // namespace snnkern
