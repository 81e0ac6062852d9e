// CPU kernels: one SIMD vector of neurons plays the role of one CUDA thread. Work is split
// over (batch, vector of neurons) with at::parallel_for; each task runs the whole time loop
// of lif.h with its state in registers, reading rows of the contiguous [B, T, N] sequences.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>

#include "../lif_host.h"

namespace snnkern {

template <class T>
struct Math<at::vec::Vectorized<T>> {
  using V = at::vec::Vectorized<T>;
  static V heaviside(V x) { return x.gt(V(0)); }
  static V abs(V x) { return x.abs(); }
  static V exp(V x) { return x.exp(); }
  static V max(V a, V b) { return at::vec::maximum(a, b); }
};

// Loads and stores `count` lanes (the last vector of a row may be partial).
template <class T>
struct VecIO {
  using V = at::vec::Vectorized<T>;
  int64_t count;
  V load(const T* p) const { return V::loadu(p, count); }
  void store(T* p, const V& v) const { v.store(p, count); }
};

namespace {

struct CpuLauncher {
  // Calls f(B, n0, count, VecIO) for every (batch element, vector of neurons), in parallel.
  template <class T, class F>
  static void for_each_lane_group(int64_t B, int64_t steps, int64_t N, F&& f) {
    constexpr int64_t L = at::vec::Vectorized<T>::size();
    const int64_t groups = (N + L - 1) / L;
    // Grain: about 32k element-steps per task amortises the scheduling.
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, steps * L));
    at::parallel_for(0, B * groups, grain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t b = k / groups, n0 = (k % groups) * L;
        f(b, n0, VecIO<T>{std::min(L, N - n0)});
      }
    });
  }

  template <class T>
  static void forward(const ForwardTensors& f, const LifConfig<T>& c) {
    using V = at::vec::Vectorized<T>;
    const auto base = f.lanes<T, T>();
    for_each_lane_group<T>(f.B, f.T, f.N, [&](int64_t b, int64_t n0, const VecIO<T>& io) {
      lif_forward_sequence<V, Math<V>>(c, io, f.T, f.N, f.B * f.N, base.at(b, n0, f.T, f.N));
    });
  }

  template <class T>
  static void backward(const BackwardTensors& g, const LifConfig<T>& c) {
    using V = at::vec::Vectorized<T>;
    const auto base = g.lanes<T, T>();
    for_each_lane_group<T>(g.B, g.T, g.N, [&](int64_t b, int64_t n0, const VecIO<T>& io) {
      lif_backward_sequence<V, Math<V>>(c, io, g.T, g.N, g.B * g.N, base.at(b, n0, g.T, g.N));
    });
  }

  template <class F>
  static void dispatch(at::ScalarType type, const char* op, F&& f) {
    switch (type) {
      case at::kFloat: return f(float{});
      case at::kDouble: return f(double{});
      default:
        TORCH_CHECK(false, op, ": the CPU kernels support float32 and float64 tensors, got ", type,
                    " (convert with .float(), or use a CUDA tensor for bfloat16/float16)");
    }
  }
};

using CpuOps = Ops<CpuLauncher>;

}  // namespace

TORCH_LIBRARY_IMPL(snnkern, CPU, m) {
  m.impl("lif_forward", &CpuOps::lif_forward);
  m.impl("lif_backward", &CpuOps::lif_backward);
  m.impl("leaky_forward", &CpuOps::leaky_forward);
  m.impl("leaky_backward", &CpuOps::leaky_backward);
}

}  // namespace snnkern
