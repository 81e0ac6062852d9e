// The CUDA kernel of every lane task: one thread per (batch row, neuron), consecutive threads on
// consecutive neurons, so every load and store of a time step is coalesced. The scans keep the
// neuron state in registers for the whole time loop; arithmetic in float (double for float64)
// whatever the storage dtype.
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../lanes.h"
#include "lanes.cuh"

namespace snnkern {

constexpr int kThreads = 128;

template <class Task>
__global__ void __launch_bounds__(kThreads) lane_kernel(Task task, int64_t b0, int64_t rows, int64_t N) {
  run_lane(task, b0, rows, N, static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
}

template <class Task>
void launch_lanes(const Task& task, int64_t b0, int64_t rows, int64_t N, cudaStream_t stream) {
  const dim3 blocks(static_cast<unsigned>((rows * N + kThreads - 1) / kThreads));
  lane_kernel<<<blocks, kThreads, 0, stream>>>(task, b0, rows, N);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Every lane task of lif.h for every storage dtype of CudaOrchestration::dispatch.
#define SNNKERN_LAUNCH(...) \
  template void launch_lanes<__VA_ARGS__>(const __VA_ARGS__&, int64_t, int64_t, int64_t, cudaStream_t);
#define SNNKERN_LAUNCH_TASKS(scalar_t)                                      \
  SNNKERN_LAUNCH(ScanForward<scalar_t, at::opmath_type<scalar_t>>)          \
  SNNKERN_LAUNCH(ScanBackward<scalar_t, at::opmath_type<scalar_t>>)         \
  SNNKERN_LAUNCH(RecurrentStepForward<scalar_t, at::opmath_type<scalar_t>>) \
  SNNKERN_LAUNCH(RecurrentStepBackward<scalar_t, at::opmath_type<scalar_t>>)
SNNKERN_LAUNCH_TASKS(float)
SNNKERN_LAUNCH_TASKS(double)
SNNKERN_LAUNCH_TASKS(c10::Half)
SNNKERN_LAUNCH_TASKS(c10::BFloat16)

}  // namespace snnkern
