// The CUDA backend: one thread per (batch, neuron) runs a lane task of lif.h (run_lane of
// lanes.h); consecutive threads take consecutive neurons, so every load and store of a time
// step is coalesced. The scans keep the state in registers for the whole time loop; arithmetic
// in float (double for float64) whatever the storage dtype.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../host/launcher.h"
#include "../host/ops.h"
#include "../lanes.h"
#include "orchestration.h"

namespace snnkern {

constexpr int kThreads = 128;

template <class Task>
__global__ void __launch_bounds__(kThreads) lane_kernel(Task task, int64_t b0, int64_t rows, int64_t N) {
  run_lane(task, b0, rows, N, static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
}

struct CudaLauncher : CudaOrchestration {
  template <class Task>
  static void run(const Task& task, int64_t b0, int64_t b1, int64_t N, int64_t /*steps*/, at::Device device) {
    const c10::cuda::CUDAGuard guard(device);
    const int64_t threads = (b1 - b0) * N;
    const dim3 blocks(static_cast<unsigned>((threads + kThreads - 1) / kThreads));
    lane_kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(task, b0, b1 - b0, N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

static_assert(Launcher<CudaLauncher>);

using CudaOps = Ops<CudaLauncher>;

}  // namespace snnkern
