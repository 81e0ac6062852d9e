// The neuron dynamics of snnkern: the ONE source of truth for the arithmetic that the CPU and
// the CUDA kernels run. Everything here is generic in the value type V: a scalar (float or
// double, on host and device) or, on the CPU, a SIMD vector of neurons. The backends only map
// the lane tasks at the end of this file (ScanForward, ...) onto SIMD vectors or CUDA threads.
//
// One step of a LIF neuron (python mirror: snnkern/reference_ops.py), fire(u) = H(u - theta)
// (the Heaviside step) or, for spike counts, trunc(u / theta) where u > 0:
//
//   i_{t+1} = alpha_syn * i_t + x_t             synaptic current (optional)
//   d_t     = x_t, i_t or (current_first) i_{t+1}
//   p_t     = alpha (v_t - v_leak) + v_leak + d_t                  pre-reset membrane
//   v_{t+1} = p_t (1 - kz r_t) + (kz v_reset - ks theta) r_t   reset: zero (kz=1), subtract (ks=1), none
//
//   ordering "delayed"      z_t = r_t = fire(v_{t-1})   (seeds 000/001)
//   ordering "spike_first"  z_t = r_t = fire(v_t)       (seed 004)
//   ordering "update_first" r_t = fire(v_t), z_t = fire(v_{t+1})   (snnTorch, seed 003)
//   ordering "charge_first" z_t = r_t = fire(p_t)       (SpikingJelly, Norse, Sinabs, NIR)
//
// The non-spiking leaky integrator is the same step with no spikes and no reset.
//
// Adaptive neurons (seed 003's ALIF) fire at A_t = theta + beta a_t and carry the adaptation
// a_{t+1} = rho a_t + r_t; the reset and the surrogate's width keep the base threshold theta. A
// refractory period of n steps: c_{t+1} = n if r_t else max(c_t - 1, 0), and fire (and its
// surrogate derivative) is 0 while c > 0 (a counter passed in the initial state counts down
// with n = 0 too). The spike of step t fires from (a_t, c_t); with
// update_first z_t fires from (a_{t+1}, c_{t+1}). The adaptation's gradient through r_t is kept
// with a detached reset (only the reset is detached).
//
// Backward saves only p (pre-reset membrane, in the accumulate type) and reuses the spikes the
// forward returned; it recomputes v_t, the reset and the surrogate gradients from them, with the
// same expressions as the forward, so the recomputed values are bitwise those of the forward.
// Adaptive or refractory neurons also save a_t and c_t of every step (recomputing a_t in reverse,
// (a_{t+1} - r_t) / rho, would amplify rounding by 1/rho per step).
#pragma once

#include <cmath>
#include <cstdint>

// Forced inline on both sides. On the host, a function left out of line is a weak symbol that
// every translation unit emits with its own code and of which the linker keeps one: the scan's
// hot loop then ran whichever copy another kernel's unit had compiled, with the neuron state in
// memory (3x slower when the recurrent row tasks' unit grew).
#if defined(__CUDACC__)
#define SNN_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define SNN_HD inline __attribute__((always_inline))
#else
#define SNN_HD inline
#endif

namespace snnkern {

enum Ordering : int { kDelayed = 0, kSpikeFirst = 1, kUpdateFirst = 2, kChargeFirst = 3 };
enum Reset : int { kResetZero = 0, kResetSubtract = 1, kResetNone = 2 };
enum SurrogateKind : int { kSigmoid = 0, kFastSigmoid = 1, kTriangle = 2, kATan = 3, kExponential = 4 };
// Rows of the packed state tensor [kStateSize, batch, neurons]: membrane, synaptic current and
// the previous step's membrane (used by the delayed ordering). New neuron state appends rows.
enum StateRow : int { kV = 0, kI = 1, kW = 2, kStateSize = 3 };
// Adaptive or refractory neurons append the adaptation a and the refractory counter c.
enum AdaptiveStateRow : int { kA = kStateSize, kRefractory, kAdaptiveStateSize };
// Rows of the recurrent backward's carry: the gradients of v, i, w and a, then the partial sums of
// the gradients of alpha, alpha_syn, the threshold and the adaptation's decay and strength.
enum CarryRow : int {
  kCarryA = kStateSize,
  kCarryAlpha,
  kCarryAlphaSyn,
  kCarryThreshold,
  kCarryAdaptationDecay,
  kCarryAdaptationStrength,
  kCarryRows
};

// Options of one scan, uniform over all neurons (so branches on them cost nothing). The
// threshold is per neuron (a lane input, learnable), the rest is here.
template <class acc_t>
struct LifConfig {
  acc_t surrogate_param = 1;
  acc_t v_reset = 0;  // where a hard reset (kResetZero) sets the membrane
  acc_t v_leak = 0;   // the resting potential the membrane decays towards
  int surrogate = kSigmoid;
  int ordering = kSpikeFirst;
  int reset = kResetZero;
  bool keep_reset_grad = true;  // false: the reset is detached from the graph
  bool synaptic = false;        // a synaptic-current state drives the membrane
  bool current_first = false;   // the current takes x_t before it drives the membrane
  bool multispike = false;      // spike counts trunc(u / theta) instead of 0/1
  bool spiking = true;          // false: non-spiking leaky integrator
  bool adaptive = false;        // threshold adaptation (decay rho, strength beta per neuron)
  int refractory = 0;           // steps after a spike in which the neuron cannot fire
  // Whether the state has the rows a and c (and the forward saves them for backward).
  SNN_HD bool extended() const { return adaptive || refractory > 0; }
};

SNN_HD float exp_of(float x) { return expf(x); }
SNN_HD double exp_of(double x) { return exp(x); }
SNN_HD float trunc_of(float x) { return truncf(x); }
SNN_HD double trunc_of(double x) { return trunc(x); }

// The few operations the dynamics need beyond + - * /. Scalars here; the CPU kernels
// specialise Math for SIMD vectors.
template <class V>
struct Math {
  static SNN_HD V heaviside(V x) { return x > V(0) ? V(1) : V(0); }
  static SNN_HD V abs(V x) { return x < V(0) ? V(0) - x : x; }
  static SNN_HD V exp(V x) { return exp_of(x); }
  static SNN_HD V max(V a, V b) { return a > b ? a : b; }
  static SNN_HD V trunc(V x) { return trunc_of(x); }
  // g * d, but 0 where the gradient g is 0 even if d is infinite: a gradient that is zero
  // because nothing downstream uses the value (autograd skips such products altogether).
  static SNN_HD V grad_times(V g, V d) { return g == V(0) ? V(0) : g * d; }
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
    case kTriangle: return param * M::max(V(0), one - M::abs(x) / threshold);
    case kExponential: {
      const V w = param * threshold;
      return M::exp(V(0) - M::abs(x) / w) / w;
    }
    default: {  // kATan
      const V y = V(1.5707963267948966) * param * x;
      return param / V(2) / (one + y * y);
    }
  }
}

// The reset R(p, r) and its derivatives, one case per reset kind (uniform over the lanes, so the
// branches cost nothing). Written per case rather than as coefficients so that a reset that
// ignores p never multiplies it: 0 * inf would turn an infinite membrane into NaN gradients
// that the reference (which never forms the product) does not have.
template <class V, class acc_t>
struct ResetRule {
  int kind;
  V v_reset, theta;
  SNN_HD ResetRule(const LifConfig<acc_t>& c, V threshold) : kind(c.reset), v_reset(c.v_reset), theta(threshold) {}
  SNN_HD V apply(V p, V r) const {  // v_{t+1}
    if (kind == kResetZero) return p * (V(1) - r) + v_reset * r;
    if (kind == kResetSubtract) return p - theta * r;
    return p;
  }
  SNN_HD V d_pre(V r) const { return kind == kResetZero ? V(1) - r : V(1); }  // d v_{t+1} / d p_t
  SNN_HD V d_spike(V p) const {                                               // d v_{t+1} / d r_t
    if (kind == kResetZero) return v_reset - p;
    return kind == kResetSubtract ? V(0) - theta : V(0);
  }
  SNN_HD V d_threshold(V r) const { return kind == kResetSubtract ? V(0) - r : V(0); }  // r held fixed
};

// The state of one lane group: membrane v, synaptic current i, previous membrane w, adaptation
// a and refractory counter c (the last two only for extended configs).
template <class V>
struct NeuronState {
  V v, i, w, a, c;
};

// The gradients carried backwards in time: of the state after the current step (the counter
// has none), and the partial sums of the parameters' gradients.
template <class V>
struct GradCarry {
  V v, i, w, a, alpha, alpha_syn, theta, rho, beta;
};

// What one forward step produces: output spike z, the membrane u it came from, pre-reset p.
template <class V>
struct StepOutput {
  V z, u, p;
};

// One LIF step, forward and backward, for a lane group with given decays and threshold.
template <class V, class M, class acc_t>
struct LifStep {
  const LifConfig<acc_t>& c;
  V theta, alpha, alpha_syn, rho, beta;  // rho, beta: the adaptation's decay and strength
  ResetRule<V, acc_t> reset;

  SNN_HD LifStep(const LifConfig<acc_t>& config, V a, V a_syn, V threshold, V adaptation_decay = V(0),
                 V adaptation_strength = V(0))
      : c(config),
        theta(threshold),
        alpha(a),
        alpha_syn(a_syn),
        rho(adaptation_decay),
        beta(adaptation_strength),
        reset(config, threshold) {}

  // Where a neuron with adaptation a fires, and whether counter c lets it (1) or not (0).
  SNN_HD V threshold_at(V a) const { return c.adaptive ? theta + beta * a : theta; }
  SNN_HD V open(V counter) const { return c.extended() ? V(1) - M::heaviside(counter) : V(1); }

  // The spike from membrane u of a neuron with adaptation a and refractory counter n.
  SNN_HD V fire(V u, V a = V(0), V n = V(0)) const {
    if (!c.spiking) return V(0);
    if (c.multispike) return M::heaviside(u) * M::trunc(u / theta);
    const V z = M::heaviside(u - threshold_at(a));
    return c.extended() ? z * open(n) : z;
  }
  SNN_HD V surrogate(V u, V a = V(0), V n = V(0)) const {
    const V d = surrogate_grad<V, M>(c.surrogate, u - threshold_at(a), V(c.surrogate_param), theta);
    return c.extended() ? d * open(n) : d;
  }
  // The adaptation and the counter after a step with reset spike r.
  SNN_HD V next_adaptation(V a, V r) const { return c.adaptive ? rho * a + r : a; }
  SNN_HD V next_counter(V n, V r) const {
    if (!c.extended()) return n;
    return r * V(acc_t(c.refractory)) + (V(1) - r) * M::max(n - V(1), V(0));
  }

  // The decayed membrane before its drive: alpha v, or alpha (v - v_leak) + v_leak.
  SNN_HD V leak(V v) const {
    if (c.v_leak == acc_t(0)) return alpha * v;
    const V rest(c.v_leak);
    return alpha * (v - rest) + rest;
  }
  SNN_HD V d_alpha(V v) const { return c.v_leak == acc_t(0) ? v : v - V(c.v_leak); }  // d leak(v) / d alpha

  SNN_HD StepOutput<V> forward(V x, NeuronState<V>& s) const {
    V drive = x;
    if (c.synaptic) {
      const V i_next = alpha_syn * s.i + x;
      drive = c.current_first ? i_next : s.i;
      s.i = i_next;
    }
    const V p = leak(s.v) + drive;
    V u = c.ordering == kChargeFirst ? p : c.ordering == kDelayed ? s.w : s.v;  // membrane the spike comes from
    const V r = fire(u, s.a, s.c);
    const V v_next = reset.apply(p, r);
    if (c.ordering == kDelayed) s.w = s.v;
    s.v = v_next;
    if (c.extended()) {
      s.a = next_adaptation(s.a, r);
      s.c = next_counter(s.c, r);
    }
    V z = r;
    if (c.ordering == kUpdateFirst) {
      u = v_next;
      z = fire(u, s.a, s.c);
    }
    return {z, u, p};
  }

  // Reverse of `forward` at step t. p, r: pre-reset membrane and reset spike of step t; v, w:
  // the state v_t and w_t it started from; i: the synaptic current i_t (read only with
  // current_first); a, n: the adaptation and refractory counter a_t, c_t (extended configs);
  // g_out, g_mem: dL/dz_t and dL/du_t. On entry `g` holds the gradients of the state after
  // step t, on exit those of the state before it. Returns dL/dx_t.
  SNN_HD V backward(V p, V r, V v, V w, V i, V a, V n, V g_out, V g_mem, GradCarry<V>& g) const {
    const V zero(0);
    if (c.ordering == kUpdateFirst) {  // z_t and u_t come from v_{t+1}, a_{t+1} and c_{t+1}
      if (c.spiking) {
        const V a_next = next_adaptation(a, r);
        const V g_fire = g_out * surrogate(reset.apply(p, r), a_next, next_counter(n, r));
        g.v = g.v + g_fire;
        g.theta = g.theta - g_fire;
        if (c.adaptive) {  // A_{t+1} = theta + beta a_{t+1}
          g.a = g.a - beta * g_fire;
          g.beta = g.beta - a_next * g_fire;
        }
      }
      g.v = g.v + g_mem;
      g_out = zero;
      g_mem = zero;
    }
    V gp = g.v * reset.d_pre(r);
    g.theta = g.theta + g.v * reset.d_threshold(r);
    V g_spike = zero;
    if (c.spiking) g_spike = c.keep_reset_grad ? g_out + M::grad_times(g.v, reset.d_spike(p)) : g_out;
    if (c.adaptive) g_spike = g_spike + g.a;  // a_{t+1} = rho a_t + r_t
    V g_threshold_t = zero;                   // dL/dA_t
    if (c.ordering == kChargeFirst) {         // z_t and u_t are p_t
      gp = gp + g_mem;
      if (c.spiking) {
        const V g_fire = g_spike * surrogate(p, a, n);
        gp = gp + g_fire;
        g_threshold_t = g_threshold_t - g_fire;
      }
    }
    V gv_prev = gp * alpha;
    if (c.ordering == kDelayed) {  // z_t = r_t come from w_t = v_{t-1}; w_{t+1} = v_t
      gv_prev = gv_prev + g.w;
      g.w = g_mem;
      if (c.spiking) {
        const V g_fire = g_spike * surrogate(w, a, n);
        g.w = g.w + g_fire;
        g_threshold_t = g_threshold_t - g_fire;
      }
    } else if (c.ordering != kChargeFirst) {
      gv_prev = gv_prev + g_mem;
      if (c.spiking) {
        const V g_fire = g_spike * surrogate(v, a, n);
        gv_prev = gv_prev + g_fire;
        g_threshold_t = g_threshold_t - g_fire;
      }
    }
    g.theta = g.theta + g_threshold_t;
    if (c.adaptive) {
      g.rho = g.rho + M::grad_times(g.a, a);
      g.beta = g.beta + M::grad_times(g_threshold_t, a);
      g.a = rho * g.a + beta * g_threshold_t;
    }
    g.alpha = g.alpha + M::grad_times(gp, d_alpha(v));
    V g_x = gp;
    if (c.synaptic) {
      if (c.current_first) {  // d_t = i_{t+1} = alpha_syn i_t + x_t
        const V g_i_next = g.i + gp;
        g_x = g_i_next;
        g.alpha_syn = g.alpha_syn + M::grad_times(g_i_next, i);
        g.i = alpha_syn * g_i_next;
      } else {  // d_t = i_t = p_t - leak(v_t)
        g_x = g.i;
        g.alpha_syn = g.alpha_syn + M::grad_times(g.i, p - leak(v));
        g.i = alpha_syn * g.i + gp;
      }
    }
    g.v = gv_prev;
    return g_x;
  }
};

// Pointers of one lane group (one neuron on CUDA, a SIMD vector of neurons on the CPU) of
// one batch element. Sequences [B, T, N] advance by `time_stride` = N per step; state rows
// [kStateSize, B, N] by `state_stride` = B * N. Null pointers mark what is not wanted (or,
// for gradients, zero). Sequences are in the storage type scalar_t; the decays, the state and
// their gradients in the accumulate type acc_t, so that half-precision inputs keep them exact.
template <class scalar_t, class acc_t>
struct ForwardLanes {
  const scalar_t* x;
  const acc_t* alpha;
  const acc_t* alpha_syn;
  const acc_t* threshold;
  const acc_t* state0;
  acc_t* state_out;
  scalar_t* spikes;
  scalar_t* membrane;
  acc_t* pre_reset;
  const acc_t* adaptation_decay;     // [N] (adaptive configs)
  const acc_t* adaptation_strength;  // [N]
  acc_t* saved_adaptation;           // a_t of every step, for backward (extended configs)
  acc_t* saved_counter;              // c_t of every step

  // The lanes of neuron n of batch element b.
  SNN_HD ForwardLanes at(int64_t b, int64_t n, int64_t T, int64_t N) const {
    const int64_t seq = b * T * N + n, st = b * N + n;
    auto shift = [](auto* p, int64_t k) { return p ? p + k : p; };
    return {.x = x + seq,
            .alpha = alpha + n,
            .alpha_syn = shift(alpha_syn, n),
            .threshold = shift(threshold, n),
            .state0 = state0 + st,
            .state_out = state_out + st,
            .spikes = shift(spikes, seq),
            .membrane = shift(membrane, seq),
            .pre_reset = shift(pre_reset, seq),
            .adaptation_decay = shift(adaptation_decay, n),
            .adaptation_strength = shift(adaptation_strength, n),
            .saved_adaptation = shift(saved_adaptation, seq),
            .saved_counter = shift(saved_counter, seq)};
  }
};

template <class scalar_t, class acc_t>
struct BackwardLanes {
  const scalar_t* grad_spikes;
  const scalar_t* grad_membrane;
  const acc_t* grad_state;
  const acc_t* pre_reset;  // for the leaky integrator: its membrane trace (p_t = v_{t+1})
  const scalar_t* spikes;
  const acc_t* alpha;
  const acc_t* alpha_syn;
  const acc_t* threshold;
  const acc_t* state0;
  scalar_t* grad_x;
  acc_t* grad_state0;
  acc_t* grad_alpha;  // [B, N] partial sums over time
  acc_t* grad_alpha_syn;
  acc_t* grad_threshold;
  const acc_t* adaptation_decay;  // [N] (adaptive configs)
  const acc_t* adaptation_strength;
  const acc_t* saved_adaptation;  // a_t, c_t of every step (extended configs)
  const acc_t* saved_counter;
  acc_t* grad_adaptation_decay;  // [B, N] partial sums
  acc_t* grad_adaptation_strength;

  SNN_HD BackwardLanes at(int64_t b, int64_t n, int64_t T, int64_t N) const {
    const int64_t seq = b * T * N + n, st = b * N + n;
    auto shift = [](auto* p, int64_t k) { return p ? p + k : p; };
    return {.grad_spikes = shift(grad_spikes, seq),
            .grad_membrane = shift(grad_membrane, seq),
            .grad_state = shift(grad_state, st),
            .pre_reset = pre_reset + seq,
            .spikes = shift(spikes, seq),
            .alpha = alpha + n,
            .alpha_syn = shift(alpha_syn, n),
            .threshold = shift(threshold, n),
            .state0 = state0 + st,
            .grad_x = grad_x + seq,
            .grad_state0 = grad_state0 + st,
            .grad_alpha = grad_alpha + st,
            .grad_alpha_syn = shift(grad_alpha_syn, st),
            .grad_threshold = shift(grad_threshold, st),
            .adaptation_decay = shift(adaptation_decay, n),
            .adaptation_strength = shift(adaptation_strength, n),
            .saved_adaptation = shift(saved_adaptation, seq),
            .saved_counter = shift(saved_counter, seq),
            .grad_adaptation_decay = shift(grad_adaptation_decay, st),
            .grad_adaptation_strength = shift(grad_adaptation_strength, st)};
  }
};

// Everything the backward needs from the forward at step t, recomputed from the saved
// pre-reset membrane and the returned spikes with the forward's own expressions (bitwise).
template <class V, class M, class IO, class scalar_t, class acc_t>
struct Replay {
  const LifStep<V, M, acc_t>& step;
  const IO& io;
  const BackwardLanes<scalar_t, acc_t>& a;
  int64_t time_stride, state_stride;  // the initial state is read only where a step needs it
  int64_t lane;                       // offset of the lane group from a's pointers (see lif_forward_steps)

  SNN_HD int64_t at(int64_t k) const { return k * time_stride + lane; }

  // r_k, the spike that resets step k (returned by the forward; recomputed at k = 0 for
  // update_first, whose first reset comes from the initial state).
  SNN_HD V reset_spike(int64_t k) const {
    if (!step.c.spiking) return V(0);
    if (step.c.ordering == kUpdateFirst)
      return k == 0 ? step.fire(initial(kV), adaptation_at(0), counter_at(0)) : io.load(a.spikes + at(k - 1));
    return io.load(a.spikes + at(k));
  }
  // a_k and c_k, as the forward saved them (zero without adaptation or refractory period).
  SNN_HD V adaptation_at(int64_t k) const { return step.c.adaptive ? io.load(a.saved_adaptation + at(k)) : V(0); }
  SNN_HD V counter_at(int64_t k) const { return step.c.extended() ? io.load(a.saved_counter + at(k)) : V(0); }
  // v_k, the membrane at the start of step k.
  SNN_HD V membrane_at(int64_t k) const {
    return k == 0 ? initial(kV) : step.reset.apply(io.load(a.pre_reset + at(k - 1)), reset_spike(k - 1));
  }
  SNN_HD V pre_reset(int64_t k) const { return io.load(a.pre_reset + at(k)); }
  SNN_HD V previous_membrane(int64_t k) const {  // w_k = v_{k-1}, read by the delayed ordering
    if (step.c.ordering != kDelayed) return V(0);
    return k == 0 ? initial(kW) : membrane_at(k - 1);
  }
  // i_k, the synaptic current at the start of step k, read by current_first: the drive of
  // step k - 1, p_{k-1} - leak(v_{k-1}).
  SNN_HD V current_at(int64_t k) const {
    if (!(step.c.synaptic && step.c.current_first)) return V(0);
    return k == 0 ? initial(kI) : pre_reset(k - 1) - step.leak(membrane_at(k - 1));
  }
  SNN_HD V initial(int row) const { return io.load(a.state0 + row * state_stride + lane); }
};

template <class V, class IO, class T>
SNN_HD V load_or_zero(const IO& io, const T* p, int64_t offset) {
  return p ? io.load(p + offset) : V(0);
}

// The rows of a state [kStateSize or kAdaptiveStateSize, B, N] at p, `stride` = B * N apart.
template <class V, class IO, class T, class acc_t>
SNN_HD NeuronState<V> load_state(const LifConfig<acc_t>& c, const IO& io, const T* p, int64_t stride) {
  const bool ext = c.extended();
  return {io.load(p + kV * stride), io.load(p + kI * stride), io.load(p + kW * stride),
          ext ? io.load(p + kA * stride) : V(0), ext ? io.load(p + kRefractory * stride) : V(0)};
}

template <class V, class IO, class T, class acc_t>
SNN_HD void store_state(const LifConfig<acc_t>& c, const IO& io, T* p, int64_t stride, const NeuronState<V>& s) {
  io.store(p + kV * stride, s.v);
  io.store(p + kI * stride, s.i);
  io.store(p + kW * stride, s.w);
  if (c.extended()) {
    io.store(p + kA * stride, s.a);
    io.store(p + kRefractory * stride, s.c);
  }
}

// The step of a lane group: its decays and thresholds read from the lanes.
template <class V, class M, class IO, class Lanes, class acc_t>
SNN_HD LifStep<V, M, acc_t> lane_step(const LifConfig<acc_t>& c, const IO& io, const Lanes& a) {
  return LifStep<V, M, acc_t>(c, io.load(a.alpha), c.synaptic ? io.load(a.alpha_syn) : V(0),
                              c.spiking ? io.load(a.threshold) : V(0), c.adaptive ? io.load(a.adaptation_decay) : V(0),
                              c.adaptive ? io.load(a.adaptation_strength) : V(0));
}

// The forward of steps [t0, t1) of one lane group; `state` holds the state before t0 and gets
// the state after t1 - 1. `recurrent` (null for none) is added to the input x_t. Returns the
// spike of step t1 - 1. `lane`: the group's offset from the sequence pointers of `a`, so that
// a row's lanes (at(b, 0, ...)) serve all its groups (the CPU row tasks, which step each group
// once per call).
template <class V, class M, class IO, class scalar_t, class acc_t>
SNN_HD V lif_forward_steps(const LifStep<V, M, acc_t>& step, const IO& io, int64_t t0, int64_t t1, int64_t time_stride,
                           const ForwardLanes<scalar_t, acc_t>& a, const V* recurrent, NeuronState<V>& state,
                           int64_t lane = 0) {
  V z(0);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t o = t * time_stride + lane;
    V x = io.load(a.x + o);
    if (recurrent) x = x + *recurrent;
    if (a.saved_adaptation) io.store(a.saved_adaptation + o, state.a);
    if (a.saved_counter) io.store(a.saved_counter + o, state.c);
    const StepOutput<V> out = step.forward(x, state);
    if (a.spikes) io.store(a.spikes + o, out.z);
    if (a.membrane) io.store(a.membrane + o, out.u);
    if (a.pre_reset) io.store(a.pre_reset + o, out.p);
    z = out.z;
  }
  return z;
}
template <class V, class M, class IO, class scalar_t, class acc_t>
SNN_HD V lif_forward_steps(const LifConfig<acc_t>& c, const IO& io, int64_t t0, int64_t t1, int64_t time_stride,
                           const ForwardLanes<scalar_t, acc_t>& a, const V* recurrent, NeuronState<V>& state) {
  return lif_forward_steps(lane_step<V, M>(c, io, a), io, t0, t1, time_stride, a, recurrent, state);
}

// The backward of steps [t0, t1) of one lane group, in reverse. `carry` holds the gradients
// of the state after step t1 - 1 and gets those of the state before t0. `recurrent` (null for
// none) is added to dL/dz_{t1-1}: the gradient that reached the spikes through the recurrent
// input of the next step. Returns dL/dx_{t0} before its rounding to scalar_t.
// `lane` as in lif_forward_steps (the sequences' and the initial state's offset).
template <class V, class M, class IO, class scalar_t, class acc_t>
SNN_HD V lif_backward_steps(const LifStep<V, M, acc_t>& step, const IO& io, int64_t t0, int64_t t1, int64_t time_stride,
                            int64_t state_stride, const BackwardLanes<scalar_t, acc_t>& a, const V* recurrent,
                            GradCarry<V>& carry, int64_t lane = 0) {
  const Replay<V, M, IO, scalar_t, acc_t> replay{step, io, a, time_stride, state_stride, lane};
  V g_x(0);
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t o = replay.at(t);
    V g_out = load_or_zero<V>(io, a.grad_spikes, o);
    if (recurrent && t == t1 - 1) g_out = g_out + *recurrent;
    g_x = step.backward(replay.pre_reset(t), replay.reset_spike(t), replay.membrane_at(t), replay.previous_membrane(t),
                        replay.current_at(t), replay.adaptation_at(t), replay.counter_at(t), g_out,
                        load_or_zero<V>(io, a.grad_membrane, o), carry);
    io.store(a.grad_x + o, g_x);
  }
  return g_x;
}
template <class V, class M, class IO, class scalar_t, class acc_t>
SNN_HD V lif_backward_steps(const LifConfig<acc_t>& c, const IO& io, int64_t t0, int64_t t1, int64_t time_stride,
                            int64_t state_stride, const BackwardLanes<scalar_t, acc_t>& a, const V* recurrent,
                            GradCarry<V>& carry) {
  return lif_backward_steps(lane_step<V, M>(c, io, a), io, t0, t1, time_stride, state_stride, a, recurrent, carry);
}

// The gradients of the state after the last step (grad_state, or zeros), to start a backward.
template <class V, class IO, class scalar_t, class acc_t>
SNN_HD GradCarry<V> initial_carry(const LifConfig<acc_t>& c, const IO& io, const BackwardLanes<scalar_t, acc_t>& a,
                                  int64_t state_stride) {
  GradCarry<V> g{};
  g.v = load_or_zero<V>(io, a.grad_state, kV * state_stride);
  g.i = load_or_zero<V>(io, a.grad_state, kI * state_stride);
  g.w = load_or_zero<V>(io, a.grad_state, kW * state_stride);
  g.a = c.extended() ? load_or_zero<V>(io, a.grad_state, kA * state_stride) : V(0);
  g.alpha = g.alpha_syn = g.theta = g.rho = g.beta = V(0);
  return g;
}

// Stores what a finished backward carries: the initial state's gradient and the [B, N] partial
// sums of the parameters' gradients.
template <class V, class IO, class scalar_t, class acc_t>
SNN_HD void store_carry(const LifConfig<acc_t>& c, const IO& io, const BackwardLanes<scalar_t, acc_t>& a,
                        int64_t state_stride, const GradCarry<V>& g) {
  store_state(c, io, a.grad_state0, state_stride, NeuronState<V>{g.v, g.i, g.w, g.a, V(0)});
  io.store(a.grad_alpha, g.alpha);
  if (c.synaptic) io.store(a.grad_alpha_syn, g.alpha_syn);
  if (c.spiking) io.store(a.grad_threshold, g.theta);
  if (c.adaptive) {
    io.store(a.grad_adaptation_decay, g.rho);
    io.store(a.grad_adaptation_strength, g.beta);
  }
}

// Lane tasks: what one lane group of one batch element does. A backend runs a task for every
// (b, n) with `task.template run<V, M>(b, n, io)`: csrc/cpu over SIMD vectors of neurons,
// csrc/cuda one thread per neuron. T, N: sequence length and width.

// The whole scan in one pass, the state in registers.
template <class scalar_t, class acc_t>
struct ScanForward {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  LifConfig<acc_t> c;
  ForwardLanes<scalar_t, acc_t> lanes;
  int64_t B, T, N;

  template <class V, class M, class IO>
  SNN_HD void run(int64_t b, int64_t n, const IO& io) const {
    const auto a = lanes.at(b, n, T, N);
    NeuronState<V> s = load_state<V>(c, io, a.state0, B * N);
    lif_forward_steps<V, M>(c, io, 0, T, N, a, static_cast<const V*>(nullptr), s);
    store_state(c, io, a.state_out, B * N, s);
  }
};

template <class scalar_t, class acc_t>
struct ScanBackward {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  LifConfig<acc_t> c;
  BackwardLanes<scalar_t, acc_t> lanes;
  int64_t B, T, N;

  template <class V, class M, class IO>
  SNN_HD void run(int64_t b, int64_t n, const IO& io) const {
    const auto a = lanes.at(b, n, T, N);
    GradCarry<V> g = initial_carry<V>(c, io, a, B * N);
    lif_backward_steps<V, M>(c, io, 0, T, N, B * N, a, static_cast<const V*>(nullptr), g);
    store_carry(c, io, a, B * N, g);
  }
};

// One step t of a recurrent scan: the state lives in memory ([3, B, N], acc_t) between steps,
// because the input of step t needs the spikes of every neuron at step t - 1 (a matmul the
// host runs between steps). `recurrent` [B, N] holds that recurrent input.
template <class scalar_t, class acc_t>
struct RecurrentStepForward {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  LifConfig<acc_t> c;
  ForwardLanes<scalar_t, acc_t> lanes;
  const scalar_t* recurrent;
  acc_t* running_state;
  int64_t B, T, N, t;

  template <class V, class M, class IO>
  SNN_HD void run(int64_t b, int64_t n, const IO& io) const {
    const int64_t st = b * N + n;
    NeuronState<V> s = load_state<V>(c, io, running_state + st, B * N);
    const V input = io.load(recurrent + st);
    lif_forward_steps<V, M>(c, io, t, t + 1, N, lanes.at(b, n, T, N), &input, s);
    store_state(c, io, running_state + st, B * N, s);
  }
};

// The reverse of step t of a recurrent scan. `carry` [kCarryRows, B, N] (acc_t): rows v, i, w, a
// of the state gradient, then the partial sums of the parameters' gradients (CarryRow). `recurrent`
// [B, N] holds the gradient that reached z_t through the recurrent input of step t + 1.
template <class scalar_t, class acc_t>
struct RecurrentStepBackward {
  using scalar_type = scalar_t;
  using acc_type = acc_t;
  LifConfig<acc_t> c;
  BackwardLanes<scalar_t, acc_t> lanes;
  const scalar_t* recurrent;
  acc_t* carry;
  int64_t B, T, N, t;

  template <class V, class M, class IO>
  SNN_HD void run(int64_t b, int64_t n, const IO& io) const {
    const int64_t st = b * N + n, stride = B * N;
    acc_t* p = carry + st;
    auto row = [&](int r) { return p + r * stride; };
    GradCarry<V> g{io.load(row(kV)),
                   io.load(row(kI)),
                   io.load(row(kW)),
                   io.load(row(kCarryA)),
                   io.load(row(kCarryAlpha)),
                   io.load(row(kCarryAlphaSyn)),
                   io.load(row(kCarryThreshold)),
                   io.load(row(kCarryAdaptationDecay)),
                   io.load(row(kCarryAdaptationStrength))};
    const V g_recurrent = recurrent ? io.load(recurrent + st) : V(0);
    lif_backward_steps<V, M>(c, io, t, t + 1, N, stride, lanes.at(b, n, T, N), recurrent ? &g_recurrent : nullptr, g);
    io.store(row(kV), g.v);
    io.store(row(kI), g.i);
    io.store(row(kW), g.w);
    io.store(row(kCarryA), g.a);
    io.store(row(kCarryAlpha), g.alpha);
    io.store(row(kCarryAlphaSyn), g.alpha_syn);
    io.store(row(kCarryThreshold), g.theta);
    io.store(row(kCarryAdaptationDecay), g.rho);
    io.store(row(kCarryAdaptationStrength), g.beta);
  }
};

}  // namespace snnkern
