// The CUDA backend: each launch runs a lane task for every (batch row, neuron) of its range with
// one thread each (lanes.cu), on the current stream of the tensors' device.
#pragma once

#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

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

  // Reading a value syncs with the device, which a CUDA graph capture does not allow.
  static bool values_readable(at::Device device) {
    const c10::cuda::CUDAGuard guard(device);
    return c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None;
  }
};

static_assert(Launcher<CudaLauncher>);

using CudaOps = Ops<CudaLauncher>;

}  // namespace snnkern
