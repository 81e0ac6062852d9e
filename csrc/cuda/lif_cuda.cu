// CUDA kernels: one thread per (batch, neuron); consecutive threads take consecutive neurons,
// so every load and store of a time step is coalesced. State stays in registers for the whole
// time loop of lif.h; arithmetic in float (double for float64) whatever the storage dtype.
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

template <class scalar_t, class acc_t>
__global__ void __launch_bounds__(kThreads) lif_forward_kernel(LifConfig<acc_t> c, ForwardLanes<scalar_t, acc_t> base,
                                                               int64_t B, int64_t T, int64_t N) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= B * N) return;
  lif_forward_sequence<acc_t, Math<acc_t>>(c, ThreadIO<acc_t>{}, T, N, B * N, base.at(k / N, k % N, T, N));
}

template <class scalar_t, class acc_t>
__global__ void __launch_bounds__(kThreads) lif_backward_kernel(LifConfig<acc_t> c, BackwardLanes<scalar_t, acc_t> base,
                                                                int64_t B, int64_t T, int64_t N) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= B * N) return;
  lif_backward_sequence<acc_t, Math<acc_t>>(c, ThreadIO<acc_t>{}, T, N, B * N, base.at(k / N, k % N, T, N));
}

inline dim3 blocks_for(int64_t threads) { return dim3(static_cast<unsigned>((threads + kThreads - 1) / kThreads)); }

struct CudaLauncher {
  template <class scalar_t, class acc_t>
  static void forward(const ForwardTensors& f, const LifConfig<acc_t>& c) {
    const c10::cuda::CUDAGuard guard(f.x.device());
    lif_forward_kernel<scalar_t, acc_t><<<blocks_for(f.B * f.N), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        c, f.lanes<scalar_t, acc_t>(), f.B, f.T, f.N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <class scalar_t, class acc_t>
  static void backward(const BackwardTensors& g, const LifConfig<acc_t>& c) {
    const c10::cuda::CUDAGuard guard(g.alpha.device());
    lif_backward_kernel<scalar_t, acc_t><<<blocks_for(g.B * g.N), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        c, g.lanes<scalar_t, acc_t>(), g.B, g.T, g.N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
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
}

}  // namespace snnkern
