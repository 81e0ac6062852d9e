// The neuron dynamics of snnkern: the ONE source of truth for the arithmetic that the CPU and
// the CUDA kernels run. Everything here is generic in the value type V: a scalar (float or
// double, on host and device) or, on the CPU, a SIMD vector of neurons. The kernels only add
// indexing and launching around lif_forward_sequence / lif_backward_sequence.
//
// One step of a LIF neuron (python mirror: snnkern/reference.py), H the Heaviside step:
//
//   p_t     = alpha * v_t + d_t                 pre-reset membrane; d_t = x_t, or i_t (synaptic)
//   v_{t+1} = p_t (1 - kz r_t) - ks theta r_t   reset: zero (kz=1), subtract (ks=1), none
//   i_{t+1} = alpha_syn * i_t + x_t             synaptic current (optional)
//
//   ordering "delayed"      z_t = r_t = H(v_{t-1} - theta)   (seeds 000/001)
//   ordering "spike_first"  z_t = r_t = H(v_t - theta)       (seed 004)
//   ordering "update_first" r_t = H(v_t - theta), z_t = H(v_{t+1} - theta)   (snnTorch, seed 003)
//
// The non-spiking leaky integrator is the same step with no spikes and no reset.
//
// Backward saves only p (pre-reset membrane, in the accumulate type) and reuses the spikes the
// forward returned; it recomputes v_t, the reset and the surrogate gradients from them, with the
// same expressions as the forward, so the recomputed values are bitwise those of the forward.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SNN_HD __host__ __device__ __forceinline__
#else
#define SNN_HD inline
#endif

namespace snnkern {

enum Ordering : int { kDelayed = 0, kSpikeFirst = 1, kUpdateFirst = 2 };
enum Reset : int { kResetZero = 0, kResetSubtract = 1, kResetNone = 2 };
enum SurrogateKind : int { kSigmoid = 0, kFastSigmoid = 1, kTriangle = 2, kATan = 3 };
// Rows of the packed state tensor [kStateSize, batch, neurons]: membrane, synaptic current and
// the previous step's membrane (used by the delayed ordering). New neuron state appends rows.
enum StateRow : int { kV = 0, kI = 1, kW = 2, kStateSize = 3 };

// Options of one scan, uniform over all neurons (so branches on them cost nothing).
template <class acc_t>
struct LifConfig {
  acc_t threshold = 1;
  acc_t surrogate_param = 1;
  int surrogate = kSigmoid;
  int ordering = kSpikeFirst;
  int reset = kResetZero;
  bool keep_reset_grad = true;  // false: the reset is detached from the graph
  bool synaptic = false;        // a synaptic-current state drives the membrane
  bool spiking = true;          // false: non-spiking leaky integrator
};

SNN_HD float exp_of(float x) { return expf(x); }
SNN_HD double exp_of(double x) { return exp(x); }

// The few operations the dynamics need beyond + - * /. Scalars here; the CPU kernels
// specialise Math for SIMD vectors.
template <class V>
struct Math {
  static SNN_HD V heaviside(V x) { return x > V(0) ? V(1) : V(0); }
  static SNN_HD V abs(V x) { return x < V(0) ? V(0) - x : x; }
  static SNN_HD V exp(V x) { return exp_of(x); }
  static SNN_HD V max(V a, V b) { return a > b ? a : b; }
};

// d spike / d x at x = membrane - threshold. Add a surrogate: one case here, one class in
// snnkern/surrogate.py.
template <class V, class M = Math<V>>
SNN_HD V surrogate_grad(int kind, V x, V param, V threshold) {
  const V one(1);
  switch (kind) {
    case kSigmoid: {
      const V s = one / (one + M::exp(V(0) - param * x));
      return param * s * (one - s);
    }
    case kFastSigmoid: {
      const V d = param * M::abs(x) + one;
      return one / (d * d);
    }
    case kTriangle:
      return param * M::max(V(0), one - M::abs(x) / threshold);
    default: {  // kATan
      const V y = V(1.5707963267948966) * param * x;
      return param / V(2) / (one + y * y);
    }
  }
}

// The reset coefficients: v_{t+1} = p (1 - kz r) - ks theta r.
template <class V, class acc_t>
struct ResetCoeffs {
  V kz, ks_theta;
  SNN_HD explicit ResetCoeffs(const LifConfig<acc_t>& c)
      : kz(c.reset == kResetZero ? acc_t(1) : acc_t(0)),
        ks_theta(c.reset == kResetSubtract ? c.threshold : acc_t(0)) {}
  SNN_HD V apply(V p, V r) const { return p * (V(1) - kz * r) - ks_theta * r; }
  SNN_HD V d_pre(V r) const { return V(1) - kz * r; }           // d v_{t+1} / d p_t
  SNN_HD V d_spike(V p) const { return V(0) - (kz * p + ks_theta); }  // d v_{t+1} / d r_t
};

// Pointers of one lane group (one neuron on CUDA, a SIMD vector of neurons on the CPU) of
// one batch element. Sequences [T, N] advance by `time_stride` per step; state rows by
// `state_stride`. Null pointers mark what is not wanted (or, for gradients, zero).
template <class scalar_t, class acc_t>
struct ForwardLanes {
  const scalar_t* x;
  const scalar_t* alpha;
  const scalar_t* alpha_syn;
  const scalar_t* state0;
  scalar_t* state_out;
  scalar_t* spikes;
  scalar_t* membrane;
  acc_t* pre_reset;

  // The lanes of neuron n of batch element b (sequences [B, T, N], state rows [B, N]).
  SNN_HD ForwardLanes at(int64_t b, int64_t n, int64_t T, int64_t N) const {
    const int64_t seq = b * T * N + n, st = b * N + n;
    return {x + seq, alpha + n, alpha_syn ? alpha_syn + n : nullptr, state0 + st, state_out + st,
            spikes ? spikes + seq : nullptr, membrane ? membrane + seq : nullptr,
            pre_reset ? pre_reset + seq : nullptr};
  }
};

template <class scalar_t, class acc_t>
struct BackwardLanes {
  const scalar_t* grad_spikes;
  const scalar_t* grad_membrane;
  const scalar_t* grad_state;
  const acc_t* pre_reset;  // for the leaky integrator: its membrane trace (p_t = v_{t+1})
  const scalar_t* spikes;
  const scalar_t* alpha;
  const scalar_t* alpha_syn;
  const scalar_t* state0;
  scalar_t* grad_x;
  scalar_t* grad_state0;
  acc_t* grad_alpha;      // [B, N] partial sums over time
  acc_t* grad_alpha_syn;

  SNN_HD BackwardLanes at(int64_t b, int64_t n, int64_t T, int64_t N) const {
    const int64_t seq = b * T * N + n, st = b * N + n;
    auto shift = [](auto* p, int64_t k) { return p ? p + k : p; };
    return {shift(grad_spikes, seq), shift(grad_membrane, seq), shift(grad_state, st),
            pre_reset + seq, shift(spikes, seq), alpha + n, shift(alpha_syn, n), state0 + st,
            grad_x + seq, grad_state0 + st, grad_alpha + st, shift(grad_alpha_syn, st)};
  }
};

// IO: loads and stores a lane group and converts between storage and arithmetic types.
template <class V, class M, class IO, class scalar_t, class acc_t>
SNN_HD void lif_forward_sequence(const LifConfig<acc_t>& c, const IO& io, int64_t T,
                                 int64_t time_stride, int64_t state_stride,
                                 const ForwardLanes<scalar_t, acc_t>& a) {
  const V theta(c.threshold);
  const ResetCoeffs<V, acc_t> reset(c);
  const V alpha = io.load(a.alpha);
  const V alpha_syn = c.synaptic ? io.load(a.alpha_syn) : V(0);
  V v = io.load(a.state0 + kV * state_stride);
  V i = io.load(a.state0 + kI * state_stride);
  V w = io.load(a.state0 + kW * state_stride);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = t * time_stride;
    const V x = io.load(a.x + o);
    V u = c.ordering == kDelayed ? w : v;  // membrane the output spike comes from
    const V r = c.spiking ? M::heaviside(u - theta) : V(0);
    const V p = alpha * v + (c.synaptic ? i : x);
    const V v_next = reset.apply(p, r);
    if (c.synaptic) i = alpha_syn * i + x;
    if (c.ordering == kDelayed) w = v;
    v = v_next;
    V z = r;
    if (c.ordering == kUpdateFirst) {
      u = v;
      if (c.spiking) z = M::heaviside(u - theta);
    }
    if (a.spikes) io.store(a.spikes + o, z);
    if (a.membrane) io.store(a.membrane + o, u);
    if (a.pre_reset) io.store(a.pre_reset + o, p);
  }
  io.store(a.state_out + kV * state_stride, v);
  io.store(a.state_out + kI * state_stride, i);
  io.store(a.state_out + kW * state_stride, w);
}

// One fused reverse-time pass. Carries dL/dv_{t+1}, dL/di_{t+1}, dL/dw_{t+1} in registers.
template <class V, class M, class IO, class scalar_t, class acc_t>
SNN_HD void lif_backward_sequence(const LifConfig<acc_t>& c, const IO& io, int64_t T,
                                  int64_t time_stride, int64_t state_stride,
                                  const BackwardLanes<scalar_t, acc_t>& a) {
  const V zero(0);
  const V theta(c.threshold);
  const V param(c.surrogate_param);
  const V keep(c.keep_reset_grad ? acc_t(1) : acc_t(0));
  const ResetCoeffs<V, acc_t> reset(c);
  const V alpha = io.load(a.alpha);
  const V alpha_syn = c.synaptic ? io.load(a.alpha_syn) : zero;
  const V v0 = io.load(a.state0 + kV * state_stride);
  const V w0 = io.load(a.state0 + kW * state_stride);

  auto surrogate = [&](V u) { return surrogate_grad<V, M>(c.surrogate, u - theta, param, theta); };
  auto load_or_zero = [&](const scalar_t* p, int64_t offset) { return p ? io.load(p + offset) : zero; };
  // r_k, the spike that resets step k (it was returned by the forward; recomputed at k = 0
  // for update_first, whose first reset comes from the initial state).
  auto reset_spike = [&](int64_t k) {
    if (!c.spiking) return zero;
    if (c.ordering == kUpdateFirst) return k == 0 ? M::heaviside(v0 - theta) : io.load(a.spikes + (k - 1) * time_stride);
    return io.load(a.spikes + k * time_stride);
  };
  // v_k, the membrane at the start of step k, recomputed exactly as the forward computed it.
  auto membrane_at = [&](int64_t k) {
    return k == 0 ? v0 : reset.apply(io.load(a.pre_reset + (k - 1) * time_stride), reset_spike(k - 1));
  };

  V gv = load_or_zero(a.grad_state, kV * state_stride);
  V gi = load_or_zero(a.grad_state, kI * state_stride);
  V gw = load_or_zero(a.grad_state, kW * state_stride);
  V g_alpha = zero, g_alpha_syn = zero;
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = t * time_stride;
    const V p = io.load(a.pre_reset + o);
    const V r = reset_spike(t);
    const V v = membrane_at(t);
    V g_out = load_or_zero(a.grad_spikes, o);    // dL/dz_t
    V g_mem = load_or_zero(a.grad_membrane, o);  // dL/du_t
    if (c.ordering == kUpdateFirst) {  // z_t and u_t come from v_{t+1}
      const V v_next = reset.apply(p, r);
      if (c.spiking) gv = gv + g_out * surrogate(v_next);
      gv = gv + g_mem;
      g_out = zero;
      g_mem = zero;
    }
    const V gp = gv * reset.d_pre(r);
    const V g_spike = c.spiking ? g_out + keep * gv * reset.d_spike(p) : zero;
    V gv_prev = gp * alpha;
    if (c.ordering == kDelayed) {  // z_t = r_t come from w_t = v_{t-1}; w_{t+1} = v_t
      const V w = t == 0 ? w0 : membrane_at(t - 1);
      gv_prev = gv_prev + gw;
      gw = g_mem + (c.spiking ? g_spike * surrogate(w) : zero);
    } else {
      gv_prev = gv_prev + g_mem + (c.spiking ? g_spike * surrogate(v) : zero);
    }
    g_alpha = g_alpha + gp * v;
    if (c.synaptic) {
      io.store(a.grad_x + o, gi);
      g_alpha_syn = g_alpha_syn + gi * (p - alpha * v);  // i_t = p_t - alpha v_t
      gi = alpha_syn * gi + gp;
    } else {
      io.store(a.grad_x + o, gp);
    }
    gv = gv_prev;
  }
  io.store(a.grad_state0 + kV * state_stride, gv);
  io.store(a.grad_state0 + kI * state_stride, gi);
  io.store(a.grad_state0 + kW * state_stride, gw);
  io.store(a.grad_alpha, g_alpha);
  if (c.synaptic) io.store(a.grad_alpha_syn, g_alpha_syn);
}

}  // namespace snnkern
