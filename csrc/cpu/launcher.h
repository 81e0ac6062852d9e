// The CPU backend: one SIMD vector of neurons plays the role of one CUDA thread. Work is split
// over (batch, vector of neurons) with at::parallel_for; each runs a lane task of lif.h (the
// whole time loop with its state in registers, or one step of a recurrent scan). Products with
// spike trains skip the zeros (spike_matmul.h).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "../host/launcher.h"
#include "../host/ops.h"
#include "recurrent_rows.h"
#include "spike_matmul.h"
#include "vec.h"

namespace snnkern {

struct CpuLauncher {
  // Runs task for every (batch element in [b0, b1), vector of neurons), in parallel (inline
  // when called inside for_batch_chunks); `steps`: the time steps each call covers, to size the grain.
  template <class Task>
  static void run(const Task& task, int64_t b0, int64_t b1, int64_t N, int64_t steps, at::Device) {
    using T = typename Task::scalar_type;  // float or double: the arithmetic type too
    using V = at::vec::Vectorized<T>;
    constexpr int64_t L = V::size();
    const int64_t groups = (N + L - 1) / L;
    // Grain: about 32k element-steps per task amortises the scheduling.
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, steps * L));
    at::parallel_for(b0 * groups, b1 * groups, grain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t b = k / groups, n0 = (k % groups) * L;
        task.template run<V, Math<V>>(b, n0, VecIO<T>{std::min(L, N - n0)});
      }
    });
  }

  // Chunks of kChunkRows batch rows, spread over the threads: each runs its whole time loop (its
  // matmuls single-threaded) without waiting for the others between steps. The chunks depend on
  // B only, never on the number of threads, so each chunk's dense products round the same way on
  // any machine. The workers take the caller's thread-local state (grad mode, dispatch keys), as
  // the ops they call must see it.
  template <class F>
  static void for_batch_chunks(int64_t B, F&& f) {
    constexpr int64_t kChunkRows = 32;
    const int64_t chunks = (B + kChunkRows - 1) / kChunkRows;
    const at::ThreadLocalState caller;
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      const at::ThreadLocalStateGuard guard(caller);
      for (int64_t c = c0; c < c1; ++c) f(c * kChunkRows, std::min(B, (c + 1) * kChunkRows));
    });
  }

  // events: spike_events of spikes (undefined: none), read in place of a scan of its binary rows.
  static void spike_matmul_out(Tensor& out, const Tensor& spikes, const Tensor& other, const Tensor& events = {}) {
    dispatch(spikes.scalar_type(), "snnkern.spike_matmul", [&](auto tag) {
      using T = decltype(tag);
      cpu::spike_matmul(spikes.data_ptr<T>(), spikes.stride(0), spikes.size(0), spikes.size(1), other.data_ptr<T>(),
                        other.size(1), out.data_ptr<T>(), events_data(events));
    });
  }

  static void spike_matmul_t_out(Tensor& out, const Tensor& spikes, const Tensor& other, const Tensor& events = {}) {
    dispatch(spikes.scalar_type(), "snnkern.spike_matmul_t", [&](auto tag) {
      using T = decltype(tag);
      cpu::spike_matmul_t(spikes.data_ptr<T>(), spikes.size(0), spikes.size(1), other.data_ptr<T>(), other.size(1),
                          out.data_ptr<T>(), events_data(events));
    });
  }

  static void spike_events_out(Tensor& events, const Tensor& spikes) {
    dispatch(spikes.scalar_type(), "snnkern.spike_events", [&](auto tag) {
      using T = decltype(tag);
      cpu::spike_events(spikes.data_ptr<T>(), spikes.size(0), spikes.size(1), events.data_ptr<int32_t>());
    });
  }

  static void recurrent_weight_grad_t(Tensor& out, const Tensor& spikes0, const Tensor& spikes, const Tensor& grad_x) {
    dispatch(spikes.scalar_type(), "snnkern.recurrent_lif_backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::recurrent_weight_grad_t(spikes0.data_ptr<T>(), spikes.data_ptr<T>(), grad_x.data_ptr<T>(), spikes.size(0),
                                   spikes.size(1), spikes.size(2), out.data_ptr<T>());
    });
  }

  // The backward row task forms the weight gradient too (csrc/cpu/recurrent_rows.h).
  static constexpr bool kRowsFormWeightGrad = true;

  // The recurrent op's row tasks (recurrent_rows.h): every shape.
  template <class scalar_t>
  static bool run_rows(const RecurrentRowsForward<scalar_t, scalar_t>& task, at::Device) {
    cpu::recurrent_rows_forward(task);
    return true;
  }
  template <class scalar_t>
  static bool run_rows(const RecurrentRowsBackward<scalar_t, scalar_t>& task, at::Device) {
    cpu::recurrent_rows_backward(task);
    return true;
  }

  static bool values_readable(at::Device) { return true; }

  static const int32_t* events_data(const Tensor& events) {
    return events.defined() ? events.data_ptr<int32_t>() : nullptr;
  }

  template <class F>
  static void dispatch(at::ScalarType type, const char* op, F&& f) {
    switch (type) {
      case at::kFloat: return f(float{});
      case at::kDouble: return f(double{});
      default:
        TORCH_CHECK(false, op, ": the CPU kernels support float32 and float64 tensors, got ", type,
                    " (convert with .float(); float16 and bfloat16 run on CUDA)");
    }
  }
};

static_assert(Launcher<CpuLauncher>);

}  // namespace snnkern
