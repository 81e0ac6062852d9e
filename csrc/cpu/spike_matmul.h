// Event-driven products for spike trains on the CPU, where most entries of spikes [M, K] are
// zero. Only the nonzeros do work: nnz(spikes) * N multiply-adds plus one pass over spikes,
// instead of the M * K * N of a dense matmul. Zeros of spikes contribute exactly nothing, also
// where the other operand is not finite.
//
//   spike_matmul    out [M, N] = spikes @ other [K, N]: row m gathers the rows other[k] of its
//                   nonzeros (forward of a projection; other, the weights, stays in cache).
//   spike_matmul_t  out [K, N] = spikes^T @ other [M, N]: row m of other is added into the
//                   rows out[k] of its nonzeros (weight gradient; other is streamed once and
//                   out, the size of the weights, stays in cache), a chunk of rows at a time.
//   spike_events    the nonzeros of a binary spikes as bits, made once and read by both products
//                   of a projection in place of their scans of spikes.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

#include "../host/checks.h"

namespace snnkern::cpu {

// The nonzeros of row[0:K]: column indices and values; returns their number. Branch-free
// within a vector (spike positions are unpredictable); vectors of zeros are skipped.
template <class T>
int64_t find_nonzeros(const T* row, int64_t K, int64_t* index, T* value) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t L = V::size();
  constexpr int kAllZero = (1 << L) - 1;
  int64_t count = 0, k = 0;
  for (; k + L <= K; k += L) {
    const int zeros = V::loadu(row + k).zero_mask();  // bit l set: lane l is zero
    if (zeros == kAllZero) continue;
    for (int64_t l = 0; l < L; ++l) {  // write every lane, advance past the nonzero ones
      index[count] = k + l;
      value[count] = row[k + l];
      count += 1 - (zeros >> l & 1);
    }
  }
  for (; k < K; ++k) {
    index[count] = k;
    value[count] = row[k];
    count += row[k] != T(0);
  }
  return count;
}

#if defined(CPU_CAPABILITY_AVX2)
// For each 8-bit mask of nonzero lanes, those lanes in order: the permutation that packs them.
struct PackTable {
  alignas(64) uint8_t lanes[256][8] = {};
  constexpr PackTable() {
    for (int mask = 0; mask < 256; ++mask)
      for (int l = 0, c = 0; l < 8; ++l)
        if (mask >> l & 1) lanes[mask][c++] = static_cast<uint8_t>(l);
  }
};
inline constexpr PackTable kPackTable{};

// Packs the nonzero lanes of v (bit l of `nonzero` set: lane l, column k + l) at index and
// value + count, by one permutation from a table; the 8 stores may run past them.
inline void pack_nonzeros(__m256 v, int nonzero, int64_t k, int64_t* index, float* value, int64_t& count) {
  const __m256i lanes = _mm256_cvtepu8_epi32(
      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kPackTable.lanes[nonzero])));
  _mm256_storeu_ps(value + count, _mm256_permutevar8x32_ps(v, lanes));
  const __m256i columns = _mm256_add_epi32(lanes, _mm256_set1_epi32(static_cast<int>(k)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(index + count),
                      _mm256_cvtepi32_epi64(_mm256_castsi256_si128(columns)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(index + count + 4),
                      _mm256_cvtepi32_epi64(_mm256_extracti128_si256(columns, 1)));
  count += __builtin_popcount(static_cast<unsigned>(nonzero));
}

inline int nonzero_lanes(__m256 v) {
  return ~_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ)) & 0xFF;
}

// float32 with AVX2: one test per 4 vectors (32 columns), none within them. A test per vector
// is mispredicted about as often as not at the densities of spike trains (2-30 %) and cost up to
// 1.7x the whole pass at 13 %; per 32 columns the fully zero stretches of very sparse rows are
// still skipped. The stores of a vector never run past the first k + 8 entries.
inline int64_t find_nonzeros(const float* row, int64_t K, int64_t* index, float* value) {
  if (K > (int64_t(1) << 30)) return find_nonzeros<float>(row, K, index, value);
  int64_t count = 0, k = 0;
  for (; k + 32 <= K; k += 32) {
    const __m256 v[4] = {_mm256_loadu_ps(row + k), _mm256_loadu_ps(row + k + 8), _mm256_loadu_ps(row + k + 16),
                         _mm256_loadu_ps(row + k + 24)};
    const int nonzero[4] = {nonzero_lanes(v[0]), nonzero_lanes(v[1]), nonzero_lanes(v[2]), nonzero_lanes(v[3])};
    if ((nonzero[0] | nonzero[1] | nonzero[2] | nonzero[3]) == 0) continue;
    for (int u = 0; u < 4; ++u) pack_nonzeros(v[u], nonzero[u], k + 8 * u, index, value, count);
  }
  for (; k + 8 <= K; k += 8) {
    const __m256 v = _mm256_loadu_ps(row + k);
    pack_nonzeros(v, nonzero_lanes(v), k, index, value, count);
  }
  for (; k < K; ++k) {
    index[count] = k;
    value[count] = row[k];
    count += row[k] != 0.0f;
  }
  return count;
}
#endif

// A prefetch into L2. GCC drops __builtin_prefetch (and _mm_prefetch) from some loops, so on
// x86 the instruction is written out.
inline void prefetch_l2(const char* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht1 %0" ::"m"(*p));
#else
  __builtin_prefetch(p, 0, 2);
#endif
}

// Prefetches `bytes` from p into L2, a cache line at a time.
inline void prefetch_bytes_l2(const void* p, int64_t bytes) {
  const char* line = static_cast<const char*>(p);
  for (int64_t j = 0; j < bytes; j += 64) prefetch_l2(line + j);
}

// How many rows ahead of its scan for nonzeros a loop over the rows of a spike matrix prefetches
// them: with the gathers or sums between the scans, the hardware prefetcher falls behind (the
// 700-input projection's forward 5.3-5.7 against 6.2-6.7 ms with 4 rows ahead; 1, 2 and 8 gain
// less). Not in spike_matmul_t's scan, a pure stream, where it was slower; there the rows of
// `other` are prefetched instead, as each row of spikes is scanned (below).
constexpr int64_t kPrefetchRows = 4;

// Spike events: the nonzeros of a binary spike matrix [M, K] as bits, event_words(K) + 1 int32
// words per row. Bit j of word w is set where spikes[m, 32 w + j] != 0; the last word is 1 where
// every entry of the row is 0 or 1, so that its bits describe the row completely. A row with any
// other value (2, 0.5, NaN) has all its words 0 and is scanned instead. Both products of a
// projection read the nonzeros from here: at 2 % density a 25600 x 700 float input is 72 MB, its
// events 2.4 MB, and its scan for nonzeros cost more than the products' arithmetic. The number of
// words, event_words, is in host/checks.h.
template <class T>
void spike_events(const T* spikes, int64_t M, int64_t K, int32_t* events) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t L = V::size();
  static_assert(32 % L == 0, "a word of events takes whole SIMD vectors");
  constexpr uint32_t kLanes = static_cast<uint32_t>((uint64_t(1) << L) - 1);
  const int64_t W = event_words(K);
  at::parallel_for(0, M, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, K)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const T* row = spikes + m * K;
      uint32_t* words = reinterpret_cast<uint32_t*>(events + m * (W + 1));
      bool binary = true;
      for (int64_t w = 0; w < W && binary; ++w) {  // stops at a row's first word with another value
        const int64_t k0 = 32 * w;
        uint32_t bits = 0;
        if (k0 + 32 <= K) {
          V other_value(T(0));  // lanes with a value other than 0 and 1: all bits set
          for (int64_t u = 0; u < 32 / L; ++u) {
            const V v = V::loadu(row + k0 + u * L);
            bits |= (~static_cast<uint32_t>(v.zero_mask()) & kLanes) << (u * L);
            other_value = other_value | ((v != V(T(0))) & (v != V(T(1))));
          }
          binary = static_cast<uint32_t>(other_value.zero_mask()) == kLanes;
        } else {
          for (int64_t k = k0; k < K; ++k) {
            bits |= uint32_t(row[k] != T(0)) << (k - k0);
            binary = binary && (row[k] == T(0) || row[k] == T(1));
          }
        }
        words[w] = bits;
      }
      if (!binary) std::fill(words, words + W, 0u);
      words[W] = binary;
    }
  });
}

// The columns of the set bits of a row's event words, ascending, at index (which may be written
// up to 8 entries past the count); returns their number. The bits past column K are ignored, so
// that no events can point outside the row.
inline int64_t event_columns(const int32_t* events, int64_t K, int64_t* index) {
  int64_t count = 0;
  for (int64_t w = 0; w < event_words(K); ++w) {
    const int64_t width = std::min<int64_t>(32, K - 32 * w);
    uint32_t bits = static_cast<uint32_t>(events[w]) & static_cast<uint32_t>((uint64_t(1) << width) - 1);
#if defined(CPU_CAPABILITY_AVX2)
    // A byte at a time by a table, with no branch on the bits: a loop over them mispredicted at
    // the end of each word (a third of the weight gradient's time at 2 % density).
    for (int64_t j = 0; j < 4; ++j, bits >>= 8) {
      const __m256i lanes = _mm256_cvtepu8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kPackTable.lanes[bits & 0xFF])));
      const __m256i columns = _mm256_add_epi32(lanes, _mm256_set1_epi32(static_cast<int>(32 * w + 8 * j)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(index + count),
                          _mm256_cvtepi32_epi64(_mm256_castsi256_si128(columns)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(index + count + 4),
                          _mm256_cvtepi32_epi64(_mm256_extracti128_si256(columns, 1)));
      count += __builtin_popcount(bits & 0xFF);
    }
#else
    for (; bits != 0; bits &= bits - 1) index[count++] = 32 * w + std::countr_zero(bits);
#endif
  }
  return count;
}

// The nonzeros of a row of spikes, as find_nonzeros, read from the row's events where they
// describe it (events: the row's words, or null). index and value may be written up to K + 8
// entries from their start.
template <class T>
int64_t row_nonzeros(const T* row, int64_t K, const int32_t* events, int64_t* index, T* value) {
  if (events == nullptr || events[event_words(K)] == 0) return find_nonzeros(row, K, index, value);
  const int64_t count = event_columns(events, K, index);
  std::fill(value, value + count, T(1));
  return count;
}

// Row m's events in `events` (or null without them).
inline const int32_t* events_of(const int32_t* events, int64_t m, int64_t K) {
  return events == nullptr ? nullptr : events + m * (event_words(K) + 1);
}

// A block of columns [n0, n0 + width) of a row, kVectors SIMD vectors wide (the last one partial
// where the width ends inside it). The number of vectors is a compile-time constant, so that the
// loops over them unroll and their sums live in registers: with a run-time count (a readout's 20
// columns) they lived on the stack, zeroed for every row, and the readout's product took twice
// as long. `store` stores the block's last vector partially; `load_padded` and `store_padded` take
// whole vectors, for rows padded to padded_width.
template <class T, int64_t kVectors_>
struct ColumnBlock {
  using V = at::vec::Vectorized<T>;
  static constexpr int64_t L = V::size(), kVectors = kVectors_;
  int64_t width;

  void store(T* p, int64_t u, const V& v) const {
    if ((u + 1) * L <= width) v.store(p + u * L);
    else v.store(p + u * L, width - u * L);
  }
  static V load_padded(const T* p, int64_t u) { return V::loadu(p + u * L); }
  static void store_padded(T* p, int64_t u, const V& v) { v.store(p + u * L); }
};

// f(ColumnBlock<T, v>{width}, n0) for the run-time number of vectors v <= kVectors.
template <class T, int64_t kVectors, class F>
void call_column_block(int64_t vectors, int64_t width, int64_t n0, F& f) {
  if constexpr (kVectors > 0) {
    if (vectors == kVectors) return f(ColumnBlock<T, kVectors>{width}, n0);
    call_column_block<T, kVectors - 1>(vectors, width, n0, f);
  }
}

// Calls f(block, n0) for the column blocks of a row of N columns: blocks of 8 vectors, then one
// of the vectors that remain.
template <class T, class F>
void for_each_column_block(int64_t N, F&& f) {
  using Full = ColumnBlock<T, 8>;
  constexpr int64_t kWidth = Full::kVectors * Full::L;
  int64_t n0 = 0;
  for (; n0 + kWidth <= N; n0 += kWidth) f(Full{kWidth}, n0);
  if (n0 < N) call_column_block<T, Full::kVectors>((N - n0 + Full::L - 1) / Full::L, N - n0, n0, f);
}

// N rounded up to whole SIMD vectors: the row stride of the operands that the inner loops below
// read and write many times, so that a width such as a readout's 20 columns takes no partial
// (copying) access there.
template <class T>
int64_t padded_width(int64_t N) {
  constexpr int64_t L = at::vec::Vectorized<T>::size();
  return (N + L - 1) / L * L;
}

// `matrix` [K, N] with its rows padded to padded_width(N) with zeros (a copy only where that
// differs from N): the stride of the returned rows is padded_width(N).
template <class T>
const T* padded_rows(const T* matrix, int64_t K, int64_t N, std::vector<T>& storage) {
  const int64_t stride = padded_width<T>(N);
  if (stride == N) return matrix;
  storage.assign(K * stride, T(0));
  for (int64_t k = 0; k < K; ++k) std::copy(matrix + k * N, matrix + (k + 1) * N, storage.data() + k * stride);
  return storage.data();
}

// out[0:N] = sum over c, in order, of value[c] * rows[index[c], 0:N] (rows padded_width(N)
// apart); kAdd: added onto out, whose row is padded too, else out is overwritten (N wide). Per
// block of columns the sums stay in registers over all the selected rows.
template <bool kAdd, class T, class Index>
void sum_rows(const T* rows, const Index* index, const T* value, int64_t count, int64_t N, T* out) {
  const int64_t stride = padded_width<T>(N);
  for_each_column_block<T>(N, [&](auto block, int64_t n0) {
    using Block = decltype(block);
    using V = typename Block::V;
    V sum[Block::kVectors];
    for (int64_t u = 0; u < Block::kVectors; ++u) sum[u] = kAdd ? block.load_padded(out + n0, u) : V(T(0));
    for (int64_t c = 0; c < count; ++c) {
      const V scale(value[c]);
      const T* row = rows + index[c] * stride + n0;
      for (int64_t u = 0; u < Block::kVectors; ++u) sum[u] = at::vec::fmadd(scale, block.load_padded(row, u), sum[u]);
    }
    for (int64_t u = 0; u < Block::kVectors; ++u) {
      if (kAdd) block.store_padded(out + n0, u, sum[u]);
      else block.store(out + n0, u, sum[u]);
    }
  });
}

// Rows [m0, m1) of a spike matrix with K columns (row m at row_of(m); its events, or null),
// each passed to f(m, index, value, count) with its nonzeros.
template <class T, class RowOf, class F>
void for_each_sparse_row(RowOf&& row_of, const int32_t* events, int64_t m0, int64_t m1, int64_t K, F&& f) {
  std::vector<int64_t> index(K + 8);  // row_nonzeros writes up to 8 entries past K
  std::vector<T> value(K + 8);
  for (int64_t m = m0; m < m1; ++m) {
    if (events == nullptr && m + kPrefetchRows < m1)
      prefetch_bytes_l2(row_of(m + kPrefetchRows), K * int64_t(sizeof(T)));
    f(m, index.data(), value.data(), row_nonzeros(row_of(m), K, events_of(events, m, K), index.data(), value.data()));
  }
}

inline int64_t rows_grain(int64_t K, int64_t N) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, K + N)); }

// out [M, N] = spikes [M, K] @ other [K, N]: rows of spikes ld apart, other and the rows of out
// contiguous; events: spike_events of spikes, or null. Parallel over rows (inline inside another
// parallel region).
template <class T>
void spike_matmul(const T* spikes, int64_t ld, int64_t M, int64_t K, const T* other, int64_t N, T* out,
                  const int32_t* events = nullptr) {
  std::vector<T> padded;
  const T* rows = padded_rows(other, K, N, padded);
  at::parallel_for(0, M, rows_grain(K, N), [&](int64_t m0, int64_t m1) {
    for_each_sparse_row<T>([&](int64_t m) { return spikes + m * ld; }, events, m0, m1, K,
                           [&](int64_t m, const int64_t* index, const T* value, int64_t count) {
                             sum_rows<false>(rows, index, value, count, N, out + m * N);
                           });
  });
}

// sum [K, N] (rows padded_width(N) apart) += the terms of a chunk of rows: row r (row_start[r] <=
// e < row_start[r + 1]) adds value[e] * rows[r] into sum[index[e]], rows[r] padded_width(N)
// apart. The terms are sorted by column (a stable counting sort); each row sum[k] is then loaded
// and stored once per chunk, with all of its terms added in registers, rather than once per term:
// as a scatter, those stores missed L1 (the sums of a 700-input projection are 350 kB). sum[k]
// takes its terms in the order of the rows either way.
template <class T>
class ColumnSums {
 public:
  void add(const int64_t* index, const T* value, const std::vector<int64_t>& row_start, int64_t K, const T* rows,
           int64_t N, T* sum) {
    const int64_t used = row_start.back(), stride = padded_width<T>(N);
    sorted_row_.resize(used);
    sorted_value_.resize(used);
    start_.assign(K + 1, 0);
    for (int64_t e = 0; e < used; ++e) ++start_[index[e] + 1];
    for (int64_t k = 0; k < K; ++k) start_[k + 1] += start_[k];
    for (int64_t r = 0; r + 1 < static_cast<int64_t>(row_start.size()); ++r)
      for (int64_t e = row_start[r]; e < row_start[r + 1]; ++e) {
        const int64_t at = start_[index[e]]++;
        sorted_row_[at] = static_cast<int32_t>(r);
        sorted_value_[at] = value[e];
      }
    // start_[k] is now where column k's terms end (column k - 1's start before the fill).
    for (int64_t k = 0, begin = 0; k < K; begin = start_[k], ++k)
      if (start_[k] > begin)
        sum_rows<true>(rows, sorted_row_.data() + begin, sorted_value_.data() + begin, start_[k] - begin, N,
                       sum + k * stride);
  }

 private:
  std::vector<int32_t> sorted_row_;
  std::vector<T> sorted_value_;
  std::vector<int64_t> start_;
};

// sum [K, N] (rows padded_width(N) apart) += S[m0:m1]^T @ other[m0:m1] (contiguous), row m of S
// at row_of(m) (its events, or null), in chunks of rows (ColumnSums). The chunking changes no
// bit. A chunk ends at kChunkEntries nonzeros, or where its rows of other would leave L2.
template <class T, class RowOf>
void spike_matmul_t_part(RowOf&& row_of, const int32_t* events, int64_t m0, int64_t m1, int64_t K, const T* other,
                         int64_t N, T* sum) {
  constexpr int64_t kChunkEntries = 16384, kChunkBytes = int64_t(256) << 10;
  const int64_t stride = padded_width<T>(N);
  const int64_t max_rows = std::clamp<int64_t>(kChunkBytes / (stride * int64_t(sizeof(T))), 1, 1 << 20);
  std::vector<int64_t> index(kChunkEntries + K + 8);  // row_nonzeros writes up to 8 entries past K
  std::vector<T> value(kChunkEntries + K + 8), padded;
  std::vector<int64_t> row_start;
  ColumnSums<T> sums;
  for (int64_t c0 = m0; c0 < m1;) {
    // The chunk's nonzeros, row after row (row_nonzeros writes up to K + 8 entries past the count).
    int64_t used = 0, c1 = c0;
    row_start.clear();
    for (; c1 < m1 && c1 - c0 < max_rows && used < kChunkEntries; ++c1) {
      row_start.push_back(used);
      // ColumnSums reads these rows by column, in an order the hardware prefetcher cannot follow:
      // fetched here in order, the 700-input projection's weight gradient took 5.1-5.2 against
      // 5.9-6.0 ms (3.2-4.3 against 4.0-4.5 ms from events).
      prefetch_bytes_l2(other + c1 * N, N * int64_t(sizeof(T)));
      used += row_nonzeros(row_of(c1), K, events_of(events, c1, K), index.data() + used, value.data() + used);
    }
    row_start.push_back(used);
    sums.add(index.data(), value.data(), row_start, K, padded_rows(other + c0 * N, c1 - c0, N, padded), N, sum);
    c0 = c1;
  }
}

// How many parts split `units` units of work (a part at least `grain` of them) that each sum
// into partial sums [K, N] of their own: it depends on the shapes only, never on the number of
// threads, so that a result summed over parts in a fixed order is the same bit for bit on any
// machine; it is capped at max_parts and so that all partial sums take at most 32 MB.
template <class T>
int64_t partial_sum_parts(int64_t units, int64_t grain, int64_t K, int64_t N, int64_t max_parts = 8) {
  constexpr int64_t kPartialBytes = int64_t(32) << 20;
  const int64_t size = K * padded_width<T>(N) * int64_t(sizeof(T));
  const int64_t fit = std::min(max_parts, std::max<int64_t>(1, kPartialBytes / std::max<int64_t>(1, size)));
  return std::clamp<int64_t>(units / std::max<int64_t>(1, grain), 1, fit);
}

// out [K, N] = the sum over p < parts, in order, of what part(p, sum) adds into zeroed partial
// sums [K, N] (rows padded_width(N) apart); the parts run in parallel.
template <class T, class Part>
void sum_over_parts(int64_t parts, int64_t K, int64_t N, T* out, Part&& part) {
  const int64_t stride = padded_width<T>(N), size = K * stride;
  std::vector<T> partial(parts * size, T(0));
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) part(p, partial.data() + p * size);
  });
  at::parallel_for(0, K, std::max<int64_t>(1, 4096 / stride), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      T* target = out + k * N;
      std::copy(partial.data() + k * stride, partial.data() + k * stride + N, target);
      for (int64_t p = 1; p < parts; ++p)
        at::vec::map2([](auto a, auto b) { return a + b; }, target, target, partial.data() + p * size + k * stride, N);
    }
  });
}

// out [K, N] = S^T @ other [M, N] (contiguous), row m of S [M, K] at row_of(m) (events: of S, or
// null), the rows split into parts (sum_over_parts).
template <class T, class RowOf>
void spike_matmul_t_rows(RowOf&& row_of, int64_t M, int64_t K, const T* other, int64_t N, T* out,
                         const int32_t* events = nullptr) {
  const int64_t parts = partial_sum_parts<T>(M, rows_grain(K, N), K, N);
  sum_over_parts<T>(parts, K, N, out, [&](int64_t p, T* sum) {
    spike_matmul_t_part<T>(row_of, events, M * p / parts, M * (p + 1) / parts, K, other, N, sum);
  });
}

// out [K, N] = spikes [M, K]^T @ other [M, N], all contiguous; events: spike_events of spikes, or
// null.
template <class T>
void spike_matmul_t(const T* spikes, int64_t M, int64_t K, const T* other, int64_t N, T* out,
                    const int32_t* events = nullptr) {
  spike_matmul_t_rows([&](int64_t m) { return spikes + m * K; }, M, K, other, N, out, events);
}

// The recurrent layer's weight gradient, transposed: out [N, N] = sum over b, t of
// z_{b,t-1}^T dL/dx_{b,t}, z_{b,-1} = spikes0[b] (spikes, grad_x [B, T, N] and spikes0 [B, N]
// contiguous). The spikes one step back are read in place, without a shifted copy.
template <class T>
void recurrent_weight_grad_t(const T* spikes0, const T* spikes, const T* grad_x, int64_t B, int64_t T_, int64_t N,
                             T* out) {
  auto previous = [&](int64_t m) {
    const int64_t b = m / T_, t = m % T_;
    return t == 0 ? spikes0 + b * N : spikes + (m - 1) * N;
  };
  spike_matmul_t_rows(previous, B * T_, N, grad_x, N, out);
}

}  // namespace snnkern::cpu
