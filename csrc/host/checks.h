// Argument checks and the translation of op arguments into a LifConfig, shared by every backend.
// The python wrappers (snnkern/_checks.py) check the same things first with friendlier
// messages; these checks guard direct calls of torch.ops.snnkern.*.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cmath>

#include "../lif.h"

namespace snnkern {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

inline bool present(const OptTensor& t) { return t.has_value() && t->defined(); }

// The accumulate type of a storage type: float64 for float64, float32 for the rest.
inline at::ScalarType opmath_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// A tensor that must sit beside the sequence x: on its device, with the given dtype and shape.
inline void check_like(const char* op, const char* name, const Tensor& t, at::Device device, at::ScalarType dtype,
                       at::IntArrayRef shape) {
  TORCH_CHECK(t.device() == device, op, ": ", name, " is on ", t.device(), " but x is on ", device);
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
}

// Checks shared by every scan over a sequence [B, T, N] of dtype `seq_dtype` on `device`: the
// decays alpha, alpha_syn, the threshold [N] (absent for the leaky integrator), the adaptation
// [2, N] (rows decay, strength; absent without adaptation) and the state [3, B, N] ([5, B, N]
// with adaptation or a refractory period: `extended`) are in the accumulate type.
inline void check_scan_args(const char* op, at::IntArrayRef seq, at::Device device, at::ScalarType seq_dtype,
                            const Tensor& alpha, const OptTensor& alpha_syn, const OptTensor& threshold,
                            const OptTensor& adaptation, const Tensor& state, bool extended) {
  TORCH_CHECK(at::isFloatingType(seq_dtype), op, ": x must be floating point, got ", seq_dtype);
  const int64_t B = seq[0], N = seq[2];
  const auto acc = opmath_type(seq_dtype);
  check_like(op, "alpha", alpha, device, acc, {N});
  if (present(alpha_syn)) check_like(op, "alpha_syn", *alpha_syn, device, acc, {N});
  if (present(threshold)) check_like(op, "threshold", *threshold, device, acc, {N});
  if (present(adaptation)) check_like(op, "adaptation", *adaptation, device, acc, {2, N});
  check_like(op, "state", state, device, acc, {int64_t(extended ? int(kAdaptiveStateSize) : int(kStateSize)), B, N});
}

// The value checks python makes before it calls an op (snnkern/_checks.py), made by the op
// itself where python cannot read values: under torch.compile the wrapper passes
// check_values=true, and the compiled graph runs these checks with the real tensors. The
// messages are python's, word for word.
inline void check_decay_values(const char* name, const Tensor& decay) {
  TORCH_CHECK_VALUE(decay.numel() == 0 || ((decay >= 0) & (decay <= 1)).all().item<bool>(), name,
                    " must lie in [0, 1] (a decay exp(-dt/tau)); got values outside, NaN or inf");
}

inline void check_threshold_values(const Tensor& threshold, bool multispike, int64_t surrogate) {
  if (threshold.numel() == 0) return;
  TORCH_CHECK_VALUE(threshold.isfinite().all().item<bool>(), "threshold must be finite; got NaN or inf values");
  const char* reason = multispike                  ? "for spike='multi' (spike counts are membrane // threshold)"
                       : surrogate == kTriangle    ? "for the Triangle surrogate, whose width scales with it"
                       : surrogate == kExponential ? "for the Exponential surrogate, whose width scales with it"
                                                   : nullptr;
  TORCH_CHECK_VALUE(reason == nullptr || (threshold > 0).all().item<bool>(), "threshold must be > 0 ", reason,
                    "; got values <= 0");
}

// The adaptation [2, N]: a decay in [0, 1] and a finite strength per neuron.
inline void check_adaptation_values(const Tensor& adaptation) {
  if (adaptation.numel() == 0) return;
  check_decay_values("adaptation_decay", adaptation[0]);
  TORCH_CHECK_VALUE(adaptation[1].isfinite().all().item<bool>(),
                    "adaptation_strength must be finite; got NaN or inf values");
}

// The recurrent layer's weight [N, N] ([out, in], as torch.nn.Linear) and previous spikes [B, N],
// both in the storage type.
inline void check_recurrent_args(const char* op, const Tensor& weight, const Tensor& spikes0, at::Device device,
                                 at::ScalarType seq_dtype, int64_t B, int64_t N) {
  check_like(op, "weight", weight, device, seq_dtype, {N, N});
  check_like(op, "spikes0", spikes0, device, seq_dtype, {B, N});
}

// The spike matrix [M, K] of the products with spike trains and of spike_events.
inline void check_spikes_matrix(const char* op, const Tensor& spikes) {
  TORCH_CHECK(spikes.dim() == 2, op, ": spikes must be a matrix [rows, columns], got shape ", spikes.sizes());
  TORCH_CHECK(at::isFloatingType(spikes.scalar_type()), op, ": spikes must be floating point, got ",
              spikes.scalar_type());
}

// The words of bits per row of spike events for K columns (csrc/cpu/spike_matmul.h,
// spike_events); each row has one more, its flag.
inline int64_t event_words(int64_t K) { return (K + 31) / 32; }

// `events` as the products take it: spike_events(spikes), int32 [M, event_words(K) + 1] on the
// device of spikes. Its contents cannot be checked without the scan it saves.
inline const Tensor& checked_events(const char* op, const Tensor& events, const Tensor& spikes) {
  const int64_t M = spikes.size(0), width = event_words(spikes.size(1)) + 1;
  TORCH_CHECK(events.scalar_type() == at::kInt && events.dim() == 2 && events.size(0) == M && events.size(1) == width,
              op, ": events must be snnkern.spike_events(spikes), int32 of shape [", M, ", ", width, "], got ",
              events.scalar_type(), " of shape ", events.sizes());
  TORCH_CHECK(events.device() == spikes.device(), op, ": events is on ", events.device(), " but spikes is on ",
              spikes.device());
  return events;
}

// The options of a spiking scan, as every scan op takes them (SNNKERN_OPTIONS in ops.cpp).
struct ScanOptions {
  int64_t ordering, reset;
  double v_reset, v_leak;
  bool detach_reset, current_first, multispike;
  int64_t surrogate;
  double surrogate_param;
  int64_t refractory;

  bool extended(bool adaptive) const { return adaptive || refractory > 0; }

  template <class acc_t>
  LifConfig<acc_t> config(const char* op, bool synaptic, bool adaptive) const {
    TORCH_CHECK(ordering >= kDelayed && ordering <= kChargeFirst, op, ": unknown ordering code ", ordering);
    TORCH_CHECK(reset >= kResetZero && reset <= kResetNone, op, ": unknown reset code ", reset);
    TORCH_CHECK(surrogate >= kSigmoid && surrogate <= kExponential, op, ": unknown surrogate code ", surrogate);
    TORCH_CHECK(std::isfinite(surrogate_param) && surrogate_param > 0, op,
                ": surrogate_param must be finite and > 0, got ", surrogate_param);
    TORCH_CHECK(std::isfinite(v_reset), op, ": v_reset must be finite, got ", v_reset);
    TORCH_CHECK(std::isfinite(v_leak), op, ": v_leak must be finite, got ", v_leak);
    TORCH_CHECK(!(multispike && reset == kResetZero), op, ": multispike needs the subtract reset or none");
    TORCH_CHECK(refractory >= 0 && refractory <= (int64_t(1) << 24), op,
                ": refractory must be a number of steps in [0, 2^24], got ", refractory);
    TORCH_CHECK(!(multispike && extended(adaptive)), op, ": adaptation and refractory periods need binary spikes");
    LifConfig<acc_t> c;
    c.surrogate_param = static_cast<acc_t>(surrogate_param);
    c.v_reset = static_cast<acc_t>(v_reset);
    c.v_leak = static_cast<acc_t>(v_leak);
    c.surrogate = static_cast<int>(surrogate);
    c.ordering = static_cast<int>(ordering);
    c.reset = static_cast<int>(reset);
    c.keep_reset_grad = !detach_reset;
    c.synaptic = synaptic;
    c.current_first = current_first;
    c.multispike = multispike;
    c.adaptive = adaptive;
    c.refractory = static_cast<int>(refractory);
    return c;
  }
};

// The leaky integrator is the update_first step with no spikes and no reset: its membrane
// trace v_{t+1} is then also its pre-reset potential, which is all its backward needs.
template <class acc_t>
LifConfig<acc_t> leaky_config(bool synaptic) {
  LifConfig<acc_t> c;
  c.ordering = kUpdateFirst;
  c.reset = kResetNone;
  c.spiking = false;
  c.synaptic = synaptic;
  return c;
}

}  // namespace snnkern
