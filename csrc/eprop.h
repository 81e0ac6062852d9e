// e-prop (Bellec et al. 2020, Nature Communications 11:3625): the eligibility traces of a layer of
// (adaptive) LIF neurons and the weight gradient they give with the learning signals, as lane tasks
// written like those of lif.h: generic in the value type V, so that the CPU runs them over SIMD
// vectors of presynaptic inputs and CUDA (and its emulation) with one thread per lane.
//
// For the weight W_ji from presynaptic input i to neuron j, one batch element, with psi_t the
// pseudo-derivative of the spike z_t, xbar_t the presynaptic trace (the input filtered with the
// membrane decay, computed outside), beta and rho neuron j's adaptation strength and decay, kappa
// the readout's decay, L_t the learning signal and Lreg_t the unfiltered one of a regulariser:
//
//   e_t       = psi_t (xbar_t - beta eps_t)     eligibility trace; eps_0 = 0
//   eps_{t+1} = rho eps_t + e_t                 its adaptive part (d a_{t+2} / d W_ji)
//   ebar_t    = kappa ebar_{t-1} + e_t          filtered with the readout's leak; ebar_{-1} = 0
//   g        += L_t ebar_t + Lreg_t e_t         this batch element's share of grad W_ji
//
// grad W_ji is the sum of g over the batch, taken in the fixed order b = 0, 1, ... by a second
// task, so that the result does not depend on how the lanes are spread over threads.
#pragma once

#include <cstdint>

#include "lif.h"

namespace snnkern {

// One lane per (batch element b, group of kNeurons neurons j, presynaptic input i): launched over
// B * groups() "rows" of P lanes i each, so consecutive lanes read consecutive entries of the
// presynaptic trace, and psi, the signals and the neurons' parameters are one value per row,
// broadcast over its lanes. A lane runs the traces of kNeurons neurons side by side: their
// recurrences are independent, so they overlap in the pipeline (one neuron's chain of dependent
// operations per step would leave it mostly idle), and they share the load of the trace.
// Sequences [B, T, N] and [B, T, P] in the storage type scalar_t, the rest in acc_t.
template <class scalar_t, class acc_t>
struct EpropTraces {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  static constexpr int kNeurons = 4;
  const scalar_t* psi;          // [B, T, N]
  const scalar_t* trace;        // [B, T, P]
  const scalar_t* signal;       // [B, T, N]
  const scalar_t* rate_signal;  // [B, T, N], or null for none
  const acc_t* strength;        // [N], beta
  const acc_t* decay;           // [N], rho
  acc_t* partial;               // [B, N, P], g of each batch element
  acc_t kappa;
  int64_t B, T, N, P;

  SNN_HD int64_t groups() const { return (N + kNeurons - 1) / kNeurons; }

  template <class V, class M, class IO>
  SNN_HD void run(int64_t row, int64_t i, const IO& io) const {
    const int64_t b = row / groups(), j0 = (row % groups()) * kNeurons;
    const int count = static_cast<int>(N - j0 < kNeurons ? N - j0 : kNeurons);  // the same for the whole row
    // A value of a neuron, the same for every lane of the row.
    auto neuron = [](const auto* p) { return V(static_cast<acc_t>(*p)); };
    const V k(kappa);
    V beta[kNeurons], rho[kNeurons], eps[kNeurons], ebar[kNeurons], g[kNeurons];
    for (int n = 0; n < kNeurons; ++n) {
      const int64_t j = j0 + (n < count ? n : 0);
      beta[n] = neuron(strength + j);
      rho[n] = neuron(decay + j);
      eps[n] = ebar[n] = g[n] = V(0);
    }
    const scalar_t* x = trace + b * T * P + i;
    const int64_t seq = b * T * N + j0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t o = seq + t * N;
      const V xt = io.load(x + t * P);
      for (int n = 0; n < kNeurons; ++n) {
        if (n >= count) break;
        const V e = neuron(psi + o + n) * (xt - beta[n] * eps[n]);
        eps[n] = rho[n] * eps[n] + e;
        ebar[n] = k * ebar[n] + e;
        g[n] = g[n] + neuron(signal + o + n) * ebar[n];
        if (rate_signal) g[n] = g[n] + neuron(rate_signal + o + n) * e;
      }
    }
    for (int n = 0; n < count; ++n) io.store(partial + (b * N + j0 + n) * P + i, g[n]);
  }
};

// The sum over the batch of EpropTraces' partial gradients, in order b = 0, 1, ...: one lane per
// (j, i), launched over N rows of P lanes.
template <class scalar_t, class acc_t>
struct EpropBatchSum {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  const acc_t* partial;  // [B, N, P]
  scalar_t* out;         // [N, P]
  int64_t B, N, P;

  template <class V, class M, class IO>
  SNN_HD void run(int64_t j, int64_t i, const IO& io) const {
    V sum(0);
    for (int64_t b = 0; b < B; ++b) sum = sum + io.load(partial + (b * N + j) * P + i);
    io.store(out + j * P + i, sum);
  }
};

}  // namespace snnkern
