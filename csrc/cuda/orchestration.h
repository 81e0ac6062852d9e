// What the CUDA launcher does around its kernel launches, written once for the CUDA backend
// (launcher.cuh) and for its emulation on the host (csrc/emulated/launcher.h), which differ
// only in how they run a launch's threads.
#pragma once

#include <ATen/ATen.h>

namespace snnkern {

struct CudaOrchestration {
  // The whole batch at once: each step's launch and product are parallel over it already.
  template <class F>
  static void for_batch_chunks(int64_t B, F&& f) {
    f(0, B);
  }

  // Dense products (cuBLAS on the device): no event-driven CUDA kernel yet, so events go unread.
  static void spike_matmul_out(at::Tensor& out, const at::Tensor& spikes, const at::Tensor& other,
                               const at::Tensor& /*events*/ = {}) {
    at::mm_out(out, spikes, other);
  }
  static void spike_matmul_t_out(at::Tensor& out, const at::Tensor& spikes, const at::Tensor& other,
                                 const at::Tensor& /*events*/ = {}) {
    at::mm_out(out, spikes.t(), other);
  }

  // The events of csrc/cpu/spike_matmul.h (spike_events) in tensor operations: the same words, so
  // that an events tensor means one thing on every device.
  static void spike_events_out(at::Tensor& events, const at::Tensor& spikes) {
    const int64_t M = spikes.size(0), K = spikes.size(1), W = events.size(1) - 1;
    const at::Tensor binary = spikes.eq(0).logical_or(spikes.eq(1)).all(1);  // [M]
    const at::Tensor bits = at::constant_pad_nd(spikes.ne(0).logical_and(binary.unsqueeze(1)), {0, 32 * W - K})
                                .view({M, W, 32})
                                .to(at::kLong);
    const at::Tensor weights = at::bitwise_left_shift(1, at::arange(32, bits.options()));  // 2^j
    const at::Tensor words = bits.mul(weights).sum(2);                                     // [M, W], in [0, 2^32)
    events.narrow(1, 0, W).copy_(words.sub(words.ge(int64_t(1) << 31).mul(int64_t(1) << 32)));
    events.select(1, W).copy_(binary);
  }

  static void recurrent_weight_grad_t(at::Tensor& out, const at::Tensor& spikes0, const at::Tensor& spikes,
                                      const at::Tensor& grad_x) {
    const int64_t N = spikes0.size(1);
    const at::Tensor previous = at::cat({spikes0.unsqueeze(1), spikes.narrow(1, 0, spikes.size(1) - 1)}, 1);
    at::mm_out(out, previous.view({-1, N}).t(), grad_x.view({-1, N}));
  }

  template <class F>
  static void dispatch(at::ScalarType type, const char* op, F&& f) {
    switch (type) {
      case at::kFloat: return f(float{});
      case at::kDouble: return f(double{});
      case at::kHalf: return f(at::Half{});
      case at::kBFloat16: return f(at::BFloat16{});
      default: TORCH_CHECK(false, op, ": the CUDA kernels support float32, float64, float16 and bfloat16, got ", type);
    }
  }
};

}  // namespace snnkern
