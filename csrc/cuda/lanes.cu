// The CUDA kernel of every lane task: one thread per (batch row, neuron), consecutive threads on
// consecutive neurons, so every load and store of a time step is coalesced. The scans keep the
// neuron state in registers for the whole time loop; arithmetic in float (double for float64)
// whatever the storage dtype.
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../eprop.h"
#include "../lanes.h"
#include "../recurrent_rows.h"
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

// One thread of a row block: `each` runs f for this thread's neuron (the threads past the last
// neuron, up to the warp's end, only meet the barriers).
template <class Thread, class Shared>
struct CudaBlock {
  Thread* thread;
  int64_t N;
  Shared shared;
  template <class F>
  __device__ __forceinline__ void each(F&& f) const {
    if (threadIdx.x < N) f(*thread, static_cast<int64_t>(threadIdx.x));
  }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
};

template <class Task>
__global__ void __launch_bounds__(kMaxRowThreads) row_kernel(Task task, bool weights_in_shared) {
  using scalar_t = typename Task::scalar_type;
  using acc_t = typename Task::acc_type;
  extern __shared__ __align__(16) unsigned char shared_memory[];
  typename Task::Thread thread;
  const CudaBlock<typename Task::Thread, RowShared<scalar_t, acc_t>> block{
      &thread, task.N, row_shared<scalar_t, acc_t>(shared_memory, task.N, weights_in_shared, task.weights())};
  run_block(task, block, blockIdx.x);
}

template <class Task>
void launch_rows(const Task& task, bool weights_in_shared, int64_t shared_bytes, cudaStream_t stream) {
  const unsigned threads = static_cast<unsigned>((task.N + 31) / 32 * 32);
  if (shared_bytes > kDefaultSharedBytes) {  // above it a kernel must opt in
    C10_CUDA_CHECK(cudaFuncSetAttribute(row_kernel<Task>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(shared_bytes)));
  }
  row_kernel<<<static_cast<unsigned>(task.B), threads, static_cast<size_t>(shared_bytes), stream>>>(task,
                                                                                                    weights_in_shared);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Every lane task of lif.h for every storage dtype of CudaOrchestration::dispatch.
#define SNNKERN_LAUNCH(...) \
  template void launch_lanes<__VA_ARGS__>(const __VA_ARGS__&, int64_t, int64_t, int64_t, cudaStream_t);
#define SNNKERN_LAUNCH_ROWS(...) \
  template void launch_rows<__VA_ARGS__>(const __VA_ARGS__&, bool, int64_t, cudaStream_t);
#define SNNKERN_LAUNCH_TASKS(scalar_t)                                           \
  SNNKERN_LAUNCH(ScanForward<scalar_t, at::opmath_type<scalar_t>>)               \
  SNNKERN_LAUNCH(ScanBackward<scalar_t, at::opmath_type<scalar_t>>)              \
  SNNKERN_LAUNCH(RecurrentStepForward<scalar_t, at::opmath_type<scalar_t>>)      \
  SNNKERN_LAUNCH(RecurrentStepBackward<scalar_t, at::opmath_type<scalar_t>>)     \
  SNNKERN_LAUNCH_ROWS(RecurrentRowsForward<scalar_t, at::opmath_type<scalar_t>>) \
  SNNKERN_LAUNCH_ROWS(RecurrentRowsBackward<scalar_t, at::opmath_type<scalar_t>>)
SNNKERN_LAUNCH_TASKS(float)
SNNKERN_LAUNCH_TASKS(double)
SNNKERN_LAUNCH_TASKS(c10::Half)
SNNKERN_LAUNCH_TASKS(c10::BFloat16)

// e-prop's lane tasks (csrc/eprop.h).
#define SNNKERN_LAUNCH_EPROP(scalar_t)                             \
  SNNKERN_LAUNCH(EpropTraces<scalar_t, at::opmath_type<scalar_t>>) \
  SNNKERN_LAUNCH(EpropBatchSum<scalar_t, at::opmath_type<scalar_t>>)
SNNKERN_LAUNCH_EPROP(float)
SNNKERN_LAUNCH_EPROP(double)
SNNKERN_LAUNCH_EPROP(c10::Half)
SNNKERN_LAUNCH_EPROP(c10::BFloat16)

}  // namespace snnkern
