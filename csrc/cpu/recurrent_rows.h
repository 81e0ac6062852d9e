// The row tasks of the recurrent layer (recurrent_rows.h) on the CPU: the time loop of a few
// batch rows runs in one task, parallel over tasks. A row's neurons are SIMD vectors whose
// state waits in a small buffer between steps (a row of 128 neurons is 16 vectors: more than
// the registers hold); the recurrent input is gathered from the weight rows of the neurons
// that fired (event-driven), and the backward's recurrent gradient is a dense product of a
// block of rows with the weights, written here so that no ATen op runs inside the loop. The
// backward also forms the weight gradient, from each step's dL/dx while it is in cache.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <vector>

#include "../recurrent_rows.h"
#include "spike_matmul.h"
#include "vec.h"

namespace snnkern::cpu {

// out[r, 0:N] = sum over k < K, in order, of a[r, k] * w[k, 0:N] for r < kRows, over the columns
// [n0, n0 + width), width <= kVecs vectors (exactly that with kFull: compile-time bounds, so
// that the sums stay in registers). The weights of a k are loaded once for all kRows rows.
template <class T, int kRows, int kVecs, bool kFull>
void dense_rows_block(const T* a, int64_t lda, const T* w, int64_t K, int64_t N, int64_t n0, int64_t width, T* out) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t L = V::size();
  const int vecs = kFull ? kVecs : static_cast<int>((width + L - 1) / L);
  V sum[kRows][kVecs];
  for (int r = 0; r < kRows; ++r)
    for (int u = 0; u < kVecs; ++u) sum[r][u] = V(T(0));
  for (int64_t k = 0; k < K; ++k) {
    const T* row = w + k * N + n0;
    V weight[kVecs];
    for (int u = 0; u < kVecs; ++u) {
      if (kFull) weight[u] = V::loadu(row + u * L);
      else weight[u] = u < vecs ? V::loadu(row + u * L, std::min<int64_t>(L, width - u * L)) : V(T(0));
    }
    for (int r = 0; r < kRows; ++r) {
      const V scale(a[r * lda + k]);
      for (int u = 0; u < kVecs; ++u) sum[r][u] = at::vec::fmadd(scale, weight[u], sum[r][u]);
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int u = 0; u < vecs; ++u) sum[r][u].store(out + r * N + n0 + u * L, std::min<int64_t>(L, width - u * L));
}

// Rows [r0, R) of the product below over the columns [n0, n0 + width), kRows rows at a time.
template <class T, int kRows, int kVecs, bool kFull>
void dense_rows_columns(const T* a, int64_t lda, int64_t R, const T* w, int64_t K, int64_t N, int64_t n0, int64_t width,
                        T* out) {
  int64_t r = 0;
  for (; r + kRows <= R; r += kRows)
    dense_rows_block<T, kRows, kVecs, kFull>(a + r * lda, lda, w, K, N, n0, width, out + r * N);
  for (; r < R; ++r) dense_rows_block<T, 1, kVecs, kFull>(a + r * lda, lda, w, K, N, n0, width, out + r * N);
}

// out [R, N] = a [R, K] (rows lda apart) @ w [K, N] (contiguous), dense: a zero times a
// non-finite weight is NaN, as in a matmul. Register blocks of 4 rows x 3 vectors (12 sums,
// 3 weights and a broadcast: the 16 AVX2 registers), then single vectors for the rest.
template <class T>
void dense_rows(const T* a, int64_t lda, int64_t R, const T* w, int64_t K, int64_t N, T* out) {
  constexpr int kRows = 4, kVecs = 3;
  constexpr int64_t kWidth = kVecs * at::vec::Vectorized<T>::size();
  constexpr int64_t L = at::vec::Vectorized<T>::size();
  int64_t n0 = 0;
  for (; n0 + kWidth <= N; n0 += kWidth) dense_rows_columns<T, kRows, kVecs, true>(a, lda, R, w, K, N, n0, kWidth, out);
  for (; n0 + L <= N; n0 += L) dense_rows_columns<T, kRows, 1, true>(a, lda, R, w, K, N, n0, L, out);
  if (n0 < N) dense_rows_columns<T, kRows, 1, false>(a, lda, R, w, K, N, n0, N - n0, out);
}

// The lane groups of a row: SIMD vectors of neurons, the last one possibly partial.
template <class T>
struct RowGroups {
  using V = at::vec::Vectorized<T>;
  static constexpr int64_t L = V::size();
  int64_t N;
  int64_t count() const { return (N + L - 1) / L; }
  VecIO<T> io(int64_t g) const { return VecIO<T>{std::min(L, N - g * L)}; }

  // f(g, io) for every group g: the full ones with FullVecIO, then the partial one.
  template <class F>
  void each(F&& f) const {
    const int64_t full = N / L;
    for (int64_t g = 0; g < full; ++g) f(g, FullVecIO<T>{});
    if (full < count()) f(full, io(full));
  }

  // The step of every group (decays and threshold are per neuron, the same for every row).
  template <class Lanes>
  std::vector<LifStep<V, Math<V>, T>> steps(const LifConfig<T>& c, const Lanes& lanes, int64_t T_) const {
    std::vector<LifStep<V, Math<V>, T>> steps;
    steps.reserve(count());
    for (int64_t g = 0; g < count(); ++g) steps.push_back(lane_step<V, Math<V>>(c, io(g), lanes.at(0, g * L, T_, N)));
    return steps;
  }
};

// How many steps ahead the forward prefetches a row's input x_t into L2. A row's time loop reads
// x_t beside its writes of the spikes and the saved membrane; without this, a quarter of the
// forward waited on the load of x_t (perf). The op's forward 4.30-4.72 against 4.80-5.68 ms at
// B256 T100 N128 (A/B, seven rounds); 16 steps ahead was no better.
constexpr int64_t kPrefetchSteps = 8;

// A row's lanes are taken once per row (lanes.at(b, 0, ...)); each group steps at its offset g L
// from them (the `lane` argument of lif_forward_steps and lif_backward_steps).
template <class T>
void recurrent_rows_forward(const RecurrentRowsForward<T, T>& task) {
  using V = at::vec::Vectorized<T>;
  const int64_t B = task.B, T_ = task.T, N = task.N, L = RowGroups<T>::L;
  const RowGroups<T> groups{N};
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, T_ * N));
  const auto steps = groups.steps(task.c, task.lanes, T_);
  std::vector<T> padded;
  const T* weight_rows = padded_rows(task.weight_t, N, N, padded);
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    std::vector<NeuronState<V>> state(groups.count());
    std::vector<int64_t> index(N);
    std::vector<T> value(N), input(N);
    for (int64_t b = b0; b < b1; ++b) {
      const auto row = task.lanes.at(b, 0, T_, N);
      groups.each([&](int64_t g, const auto& io) { state[g] = load_state<V>(task.c, io, row.state0 + g * L, B * N); });
      const T* previous = task.spikes0 + b * N;
      for (int64_t t = 0; t < T_; ++t) {
        if (t + kPrefetchSteps < T_) prefetch_bytes_l2(row.x + (t + kPrefetchSteps) * N, N * int64_t(sizeof(T)));
        const int64_t count = find_nonzeros(previous, N, index.data(), value.data());
        sum_rows<false>(weight_rows, index.data(), value.data(), count, N, input.data());
        groups.each([&](int64_t g, const auto& io) {
          const V in = io.load(input.data() + g * L);
          lif_forward_steps(steps[g], io, t, t + 1, N, row, &in, state[g], g * L);
        });
        previous = row.spikes + t * N;
      }
      groups.each([&](int64_t g, const auto& io) { store_state(task.c, io, row.state_out + g * L, B * N, state[g]); });
    }
  });
}

// Prefetch (into L2) what the backward of step t reads from a row's sequences. A block's rows are
// too many streams, walked backwards, for the hardware prefetcher: without this every step
// waits on memory for each row's first loads.
template <class T>
void prefetch_backward_step(const BackwardLanes<T, T>& row, int64_t t, int64_t N) {
  auto fetch = [&](const T* p, int64_t k) {
    if (p && k >= 0) prefetch_bytes_l2(p + k * N, N * int64_t(sizeof(T)));
  };
  fetch(row.grad_spikes, t);
  fetch(row.grad_membrane, t);
  fetch(row.pre_reset, t - 1);
  fetch(row.spikes, t - 1);
  fetch(row.saved_adaptation, t);
  fetch(row.saved_counter, t);
  fetch(row.grad_x, t);
}

// The weight gradient's terms z_{t-1}^T dL/dx_t of a block's rows, taken while dL/dx_t is in
// cache: each row of dL/dx_t is copied beside the nonzeros of the spikes that select it, and
// every kRows rows they are added into the block's sums column by column (ColumnSums).
template <class T>
class WeightGradTerms {
 public:
  static constexpr int64_t kRows = 64;
  explicit WeightGradTerms(int64_t N)
      : N_(N),
        stride_(padded_width<T>(N)),
        rows_(kRows * stride_, T(0)),
        index_((kRows + 1) * N),
        value_(index_.size()) {}

  // Adds spikes[0:N]^T grad[0:N] into sum [N, N] (rows padded_width(N) apart), now or at a flush.
  void add(const T* spikes, const T* grad, T* sum) {
    std::copy(grad, grad + N_, rows_.data() + static_cast<int64_t>(row_start_.size()) * stride_);
    row_start_.push_back(used_);
    used_ += find_nonzeros(spikes, N_, index_.data() + used_, value_.data() + used_);
    if (static_cast<int64_t>(row_start_.size()) == kRows) flush(sum);
  }
  void flush(T* sum) {
    if (row_start_.empty()) return;
    row_start_.push_back(used_);
    sums_.add(index_.data(), value_.data(), row_start_, N_, rows_.data(), N_, sum);
    row_start_.clear();
    used_ = 0;
  }

 private:
  int64_t N_, stride_, used_ = 0;
  std::vector<T> rows_;
  std::vector<int64_t> index_;  // find_nonzeros writes up to N entries past the count
  std::vector<T> value_;
  std::vector<int64_t> row_start_;
  ColumnSums<T> sums_;
};

// Blocks of kBlockRows batch rows, so that each step's product with the weights is a small
// matrix product (the weights are read once per block, not once per row). Each block (up to 64)
// is a part with weight-gradient sums of its own (sum_over_parts), summed in order at the end;
// where that many [N, N] sums would not fit (large N), the blocks run without them and the
// weight gradient is formed after, in one pass. The blocks and parts depend on B and N only, and
// each output is summed in the same order whatever the threads: the result is the same bit for
// bit on any number of them.
template <class T>
void recurrent_rows_backward(const RecurrentRowsBackward<T, T>& task) {
  TORCH_INTERNAL_ASSERT(task.spikes && task.spikes0 && task.weight_grad_t,
                        "the CPU row task forms the weight gradient");
  using V = at::vec::Vectorized<T>;
  constexpr int64_t kBlockRows = 16, kMaxParts = 64;
  const int64_t B = task.B, T_ = task.T, N = task.N, L = RowGroups<T>::L;
  const RowGroups<T> groups{N};
  const int64_t G = groups.count();
  const int64_t blocks = (B + kBlockRows - 1) / kBlockRows;
  const auto steps = groups.steps(task.c, task.lanes, T_);
  // Blocks [k0, k1); `terms`, where not null, gathers their weight gradient into `weight_grad_t`.
  auto run_blocks = [&](int64_t k0, int64_t k1, WeightGradTerms<T>* terms, T* weight_grad_t) {
    std::vector<GradCarry<V>> carry(kBlockRows * G);
    std::vector<T> recurrent(kBlockRows * N);
    std::vector<BackwardLanes<T, T>> rows(kBlockRows);
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t b0 = k * kBlockRows, block_rows = std::min(kBlockRows, B - b0);
      for (int64_t r = 0; r < block_rows; ++r) {
        rows[r] = task.lanes.at(b0 + r, 0, T_, N);
        groups.each([&](int64_t g, const auto& io) {
          carry[r * G + g] = initial_carry<V>(task.c, io, rows[r].at(0, g * L, T_, N), B * N);
        });
      }
      for (int64_t t = T_ - 1; t >= 0; --t) {
        const bool has_next = t + 1 < T_;
        // dL/dz_t through step t + 1: dL/dx_{t+1} W for the block's rows.
        if (has_next)
          dense_rows(task.lanes.grad_x + (b0 * T_ + t + 1) * N, T_ * N, block_rows, task.weight, N, N,
                     recurrent.data());
        for (int64_t r = 0; r < block_rows; ++r) {
          prefetch_backward_step(rows[r], t - 1, N);
          groups.each([&](int64_t g, const auto& io) {
            const V in = has_next ? io.load(recurrent.data() + r * N + g * L) : V(T(0));
            lif_backward_steps(steps[g], io, t, t + 1, N, B * N, rows[r], has_next ? &in : nullptr, carry[r * G + g],
                               g * L);
          });
          // dL/dW gains dL/dx_t^T z_{t-1}, z_{-1} = spikes0.
          const T* previous = t > 0 ? task.spikes + ((b0 + r) * T_ + t - 1) * N : task.spikes0 + (b0 + r) * N;
          if (terms) terms->add(previous, rows[r].grad_x + t * N, weight_grad_t);
        }
      }
      for (int64_t r = 0; r < block_rows; ++r)
        groups.each([&](int64_t g, const auto& io) {
          store_carry(task.c, io, rows[r].at(0, g * L, T_, N), B * N, carry[r * G + g]);
        });
      dense_rows(task.lanes.grad_x + b0 * T_ * N, T_ * N, block_rows, task.weight, N, N, task.grad_spikes0 + b0 * N);
    }
    if (terms) terms->flush(weight_grad_t);
  };
  const int64_t parts = partial_sum_parts<T>(blocks, 1, N, N, kMaxParts);
  if (parts == std::min(blocks, kMaxParts)) {
    sum_over_parts<T>(parts, N, N, task.weight_grad_t, [&](int64_t p, T* weight_grad_t) {
      WeightGradTerms<T> terms(N);
      run_blocks(blocks * p / parts, blocks * (p + 1) / parts, &terms, weight_grad_t);
    });
  } else {
    at::parallel_for(0, blocks, 1, [&](int64_t k0, int64_t k1) { run_blocks(k0, k1, nullptr, nullptr); });
    recurrent_weight_grad_t(task.spikes0, task.spikes, task.lanes.grad_x, B, T_, N, task.weight_grad_t);
  }
}

}  // namespace snnkern::cpu
