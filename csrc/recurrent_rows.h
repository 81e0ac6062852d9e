// The recurrent layer as one persistent loop per batch row: the whole time loop of a row runs in
// one task, with the neuron state kept across steps (registers on CUDA, a small buffer on the
// CPU) and the spikes (forward) or input gradients (backward) of the previous step shared within
// the row. The neuron arithmetic is lif.h's; what is new here is only how a row's lanes exchange
// the recurrent input between steps.
//
// The structs below carry a row task's tensors. The CPU runs them with SIMD loops over a row's
// neurons (csrc/cpu/recurrent_rows.h). CUDA runs them as one thread block per batch row, one
// thread per neuron, each step a phase that ends at a barrier (the tasks' start, step and
// finish, driven by run_block of csrc/lanes.h); the emulated launcher runs the same phases on
// the host.
#pragma once

#include <cstdint>

#include "lif.h"

namespace snnkern {

// The most threads a row block has (CUDA's limit per block): a row task with more neurons runs
// the recurrent op's per-step path instead, on CUDA and in its emulation.
constexpr int64_t kMaxRowThreads = 1024;
// Shared memory a CUDA block may use without opting in; the emulation takes it as its limit for
// the weight copy, so that tests reach both layouts.
constexpr int64_t kDefaultSharedBytes = 48 << 10;

// What one block of a row's threads shares: the exchanged row of the previous step (two
// buffers, so that one barrier per step separates its readers from the next step's writers)
// and the weights, copied into shared memory when they fit (else read from global memory).
template <class scalar_t, class acc_t>
struct RowShared {
  acc_t* exchange;         // [2, N]: step s writes row s % 2 and reads row (s + 1) % 2
  scalar_t* weight_copy;   // [N, N] or null
  const scalar_t* weight;  // weight_copy, or the global weights
  int64_t N;
  SNN_HD acc_t* written(int64_t s) const { return exchange + (s & 1) * N; }
  SNN_HD const acc_t* read(int64_t s) const { return exchange + ((s + 1) & 1) * N; }

  // Thread n's share of the weight copy: column n, coalesced over the threads.
  SNN_HD void copy_weights(const scalar_t* global, int64_t n) const {
    if (weight_copy)
      for (int64_t j = 0; j < N; ++j) weight_copy[j * N + n] = global[j * N + n];
  }
};

// Bytes of shared memory a row block needs: the exchange rows, plus the weights if copied.
template <class scalar_t, class acc_t>
constexpr int64_t row_shared_bytes(int64_t N, bool weights_in_shared) {
  return 2 * N * int64_t(sizeof(acc_t)) + (weights_in_shared ? N * N * int64_t(sizeof(scalar_t)) : 0);
}

// The shared memory of a row block laid out in `bytes` (aligned for acc_t).
template <class scalar_t, class acc_t>
SNN_HD RowShared<scalar_t, acc_t> row_shared(void* bytes, int64_t N, bool weights_in_shared, const scalar_t* global) {
  acc_t* exchange = static_cast<acc_t*>(bytes);
  scalar_t* copy = weights_in_shared ? reinterpret_cast<scalar_t*>(exchange + 2 * N) : nullptr;
  return {exchange, copy, copy ? copy : global, N};
}

// sum over j of row[j] * weight[j, n] (weight row stride N) in the accumulate type, j in
// order. `skip_zeros`: a zero of row adds nothing even where its weight is not finite, as in
// the CPU's event-driven products (the branch is the same for every thread: no divergence).
template <class acc_t, class IO, class scalar_t>
SNN_HD acc_t row_times_column(const IO& io, const acc_t* row, const scalar_t* weight, int64_t N, int64_t n,
                              bool skip_zeros) {
  acc_t sum(0);
  for (int64_t j = 0; j < N; ++j) {
    const acc_t r = row[j];
    if (skip_zeros && r == acc_t(0)) continue;
    sum = sum + r * io.load(weight + j * N + n);
  }
  return sum;
}

// The row tasks. Each is also the program of the threads of a row block: run_block (lanes.h)
// calls start, then step(s) for s = 0..T-1 with a barrier after each, then finish, for thread n
// of batch row b; a thread's own values live in its Thread struct (registers on CUDA).

// Forward: the input of step t is x_t + z_{t-1} W^T with z_{-1} = spikes0.
template <class scalar_t, class acc_t>
struct RecurrentRowsForward {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  LifConfig<acc_t> c;
  ForwardLanes<scalar_t, acc_t> lanes;  // state0 -> state_out; spikes always written
  const scalar_t* weight_t;             // W^T [in, out], contiguous: row j holds what a spike of j adds
  const scalar_t* spikes0;              // [B, N]
  int64_t B, T, N;

  struct Thread {
    NeuronState<acc_t> s;
  };
  SNN_HD const scalar_t* weights() const { return weight_t; }

  template <class IO>
  SNN_HD void start(Thread& th, int64_t b, int64_t n, const RowShared<scalar_t, acc_t>& sh, const IO& io) const {
    th.s = load_state<acc_t>(c, io, lanes.at(b, n, T, N).state0, B * N);
    sh.exchange[N + n] = io.load(spikes0 + b * N + n);  // read by step 0
    sh.copy_weights(weight_t, n);
  }
  template <class IO>
  SNN_HD void step(Thread& th, int64_t b, int64_t n, int64_t t, const RowShared<scalar_t, acc_t>& sh,
                   const IO& io) const {
    const acc_t input = row_times_column(io, sh.read(t), sh.weight, N, n, true);
    sh.written(t)[n] = lif_forward_steps<acc_t, Math<acc_t>>(c, io, t, t + 1, N, lanes.at(b, n, T, N), &input, th.s);
  }
  template <class IO>
  SNN_HD void finish(const Thread& th, int64_t b, int64_t n, const RowShared<scalar_t, acc_t>&, const IO& io) const {
    store_state(c, io, lanes.at(b, n, T, N).state_out, B * N, th.s);
  }
};

// Backward: dL/dz_t gains dL/dx_{t+1} W, the gradient through the recurrent input of step t + 1.
// Step s of the program runs time step T - 1 - s.
template <class scalar_t, class acc_t>
struct RecurrentRowsBackward {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  LifConfig<acc_t> c;
  BackwardLanes<scalar_t, acc_t> lanes;  // grad_state -> grad_state0 and the [B, N] partial sums
  const scalar_t* weight;                // W [out, in], contiguous: row k holds what dL/dx of k sends back
  scalar_t* grad_spikes0;                // [B, N]: dL/dx_0 W
  int64_t B, T, N;
  // The CPU's row tasks also form the weight gradient, transposed [N, N] (launchers with
  // kRowsFormWeightGrad), from the spikes [B, T, N] and spikes0 [B, N]; elsewhere these are null.
  const scalar_t* spikes = nullptr;
  const scalar_t* spikes0 = nullptr;
  scalar_t* weight_grad_t = nullptr;

  struct Thread {
    GradCarry<acc_t> g;
  };
  SNN_HD const scalar_t* weights() const { return weight; }

  template <class IO>
  SNN_HD void start(Thread& th, int64_t b, int64_t n, const RowShared<scalar_t, acc_t>& sh, const IO& io) const {
    th.g = initial_carry<acc_t>(c, io, lanes.at(b, n, T, N), B * N);
    sh.copy_weights(weight, n);
  }
  // The exchange row holds dL/dx of the step after this one (before its rounding to scalar_t).
  template <class IO>
  SNN_HD void step(Thread& th, int64_t b, int64_t n, int64_t s, const RowShared<scalar_t, acc_t>& sh,
                   const IO& io) const {
    const int64_t t = T - 1 - s;
    const acc_t g_recurrent = s > 0 ? row_times_column(io, sh.read(s), sh.weight, N, n, false) : acc_t(0);
    sh.written(s)[n] = lif_backward_steps<acc_t, Math<acc_t>>(c, io, t, t + 1, N, B * N, lanes.at(b, n, T, N),
                                                              s > 0 ? &g_recurrent : nullptr, th.g);
  }
  template <class IO>
  SNN_HD void finish(const Thread& th, int64_t b, int64_t n, const RowShared<scalar_t, acc_t>& sh, const IO& io) const {
    store_carry(c, io, lanes.at(b, n, T, N), B * N, th.g);
    io.store(grad_spikes0 + b * N + n, row_times_column(io, sh.read(T), sh.weight, N, n, false));
  }
};

}  // namespace snnkern
