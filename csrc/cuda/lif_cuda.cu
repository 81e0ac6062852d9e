// CUDA kernels: one thread per (batch, neuron) runs a lane task of lif.h; consecutive threads
// take consecutive neurons, so every load and store of a time step is coalesced. The scans keep
// the state in registers for the whole time loop; arithmetic in float (double for float64)
// whatever the storage dtype.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../lif_host.h"

namespace snnkern {
namespace {

// Converts between the storage type and the arithmetic type acc_t of one thread.
template <class acc_t>
struct ThreadIO {
  template <class T>
  __device__ __forceinline__ acc_t load(const T* p) const { return static_cast<acc_t>(*p); }
  template <class T>
  __device__ __forceinline__ void store(T* p, acc_t v) const { *p = static_cast<T>(v); }
};

constexpr int kThreads = 128;

// Runs a lane task of lif.h for neuron k % N of batch element b0 + k / N.
template <class Task>
__global__ void __launch_bounds__(kThreads) lane_kernel(Task task, int64_t b0, int64_t rows, int64_t N) {
  using acc_t = typename Task::acc_type;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= rows * N) return;
  task.template run<acc_t, Math<acc_t>>(b0 + k / N, k % N, ThreadIO<acc_t>{});
}

struct CudaLauncher {
  template <class Task>
  static void run(const Task& task, int64_t b0, int64_t b1, int64_t N, int64_t /*steps*/, at::Device device) {
    const c10::cuda::CUDAGuard guard(device);
    const int64_t threads = (b1 - b0) * N;
    const dim3 blocks(static_cast<unsigned>((threads + kThreads - 1) / kThreads));
    lane_kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(task, b0, b1 - b0, N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // The whole batch at once: each step's launch and matmul are parallel over it already.
  template <class F>
  static void for_batch_chunks(int64_t B, F&& f) { f(0, B); }

  // cuBLAS (no event-driven CUDA kernel yet: the GPU runs the dense product).
  static void spike_matmul_out(Tensor& out, const Tensor& spikes, const Tensor& other) {
    at::mm_out(out, spikes, other);
  }
  static void spike_matmul_t_out(Tensor& out, const Tensor& spikes, const Tensor& other) {
    at::mm_out(out, spikes.t(), other);
  }

  template <class F>
  static void dispatch(at::ScalarType type, const char* op, F&& f) {
    switch (type) {
      case at::kFloat: return f(float{});
      case at::kDouble: return f(double{});
      case at::kHalf: return f(at::Half{});
      case at::kBFloat16: return f(at::BFloat16{});
      default:
        TORCH_CHECK(false, op, ": the CUDA kernels support float32, float64, float16 and bfloat16, got ", type);
    }
  }
};

using CudaOps = Ops<CudaLauncher>;

}  // namespace

TORCH_LIBRARY_IMPL(snnkern, CUDA, m) {
  m.impl("lif_forward", &CudaOps::lif_forward);
  m.impl("lif_backward", &CudaOps::lif_backward);
  m.impl("leaky_forward", &CudaOps::leaky_forward);
  m.impl("leaky_backward", &CudaOps::leaky_backward);
  m.impl("recurrent_lif_forward", &CudaOps::recurrent_lif_forward);
  m.impl("recurrent_lif_backward", &CudaOps::recurrent_lif_backward);
  m.impl("spike_matmul", &CudaOps::spike_matmul);
  m.impl("spike_matmul_t", &CudaOps::spike_matmul_t);
}

}  // namespace snnkern
