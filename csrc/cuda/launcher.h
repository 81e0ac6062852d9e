// The CUDA backend: each launch runs a lane task for every (batch row, neuron) of its range with
// one thread each (lanes.cu), on the current stream of the tensors' device.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "../host/launcher.h"
#include "../host/ops.h"
#include "lanes.cuh"
#include "orchestration.h"

namespace snnkern {

struct CudaLauncher : CudaOrchestration {
  template <class Task>
  static void run(const Task& task, int64_t b0, int64_t b1, int64_t N, int64_t /*steps*/, at::Device device) {
    const c10::cuda::CUDAGuard guard(device);
    launch_lanes(task, b0, b1 - b0, N, c10::cuda::getCurrentCUDAStream());
  }

  // The weight gradient is formed after the backward row task.
  static constexpr bool kRowsFormWeightGrad = false;

  // Row tasks with at most kMaxRowThreads neurons; the weights go to shared memory when they fit
  // the device's opt-in limit per block.
  template <class Task>
  static bool run_rows(const Task& task, at::Device device) {
    using scalar_t = typename Task::scalar_type;
    using acc_t = typename Task::acc_type;
    if (task.N > kMaxRowThreads) return false;
    const c10::cuda::CUDAGuard guard(device);
    int limit = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device.index()));
    const bool weights_in_shared = row_shared_bytes<scalar_t, acc_t>(task.N, true) <= limit;
    launch_rows(task, weights_in_shared, row_shared_bytes<scalar_t, acc_t>(task.N, weights_in_shared),
                c10::cuda::getCurrentCUDAStream());
    return true;
  }

  // Reading a value syncs with the device, which a CUDA graph capture does not allow.
  static bool values_readable(at::Device device) {
    const c10::cuda::CUDAGuard guard(device);
    return c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None;
  }
};

static_assert(Launcher<CudaLauncher>);

using CudaOps = Ops<CudaLauncher>;

}  // namespace snnkern
