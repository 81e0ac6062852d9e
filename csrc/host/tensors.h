// The tensors a scan kernel reads and writes: checked, made contiguous, outputs allocated, and
// handed to the kernels as the pointer bundles of lif.h.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "../lif.h"
#include "checks.h"

namespace snnkern {

template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() && t.numel() ? t.data_ptr<T>() : nullptr;
}

template <class T>
const T* ptr_or_null(const OptTensor& t) {
  return present(t) ? t->data_ptr<T>() : nullptr;
}

inline OptTensor contiguous(const OptTensor& t) { return present(t) ? OptTensor(t->contiguous()) : OptTensor(); }

// Everything a forward kernel reads and writes.
// The rows of what a forward saves for backward: [B, T, N] pre-reset membranes, or for extended
// configs (adaptation or refractory period) [3, B, T, N]: pre-reset membrane, a_t and c_t.
enum SavedRow : int { kSavedPreReset = 0, kSavedAdaptation, kSavedCounter, kSavedExtendedRows };

template <class T>
T* saved_row_or_null(const Tensor& saved, int row) {
  return saved.dim() == 4 && saved.numel() ? saved.select(0, row).data_ptr<T>() : nullptr;
}

struct ForwardTensors {
  Tensor x, alpha, state, spikes, membrane, state_out, saved;
  OptTensor alpha_syn, threshold, adaptation;  // no threshold for the leaky integrator
  int64_t B, T, N;

  template <class scalar_t, class acc_t>
  ForwardLanes<scalar_t, acc_t> lanes() const {
    const auto* adapt = ptr_or_null<acc_t>(adaptation);
    return {x.data_ptr<scalar_t>(),
            alpha.data_ptr<acc_t>(),
            ptr_or_null<acc_t>(alpha_syn),
            ptr_or_null<acc_t>(threshold),
            state.data_ptr<acc_t>(),
            state_out.data_ptr<acc_t>(),
            ptr_or_null<scalar_t>(spikes),
            ptr_or_null<scalar_t>(membrane),
            saved.dim() == 4 ? saved_row_or_null<acc_t>(saved, kSavedPreReset) : ptr_or_null<acc_t>(saved),
            adapt,
            adapt ? adapt + N : nullptr,
            saved_row_or_null<acc_t>(saved, kSavedAdaptation),
            saved_row_or_null<acc_t>(saved, kSavedCounter)};
  }
};

// `threshold` is present exactly for the spiking scans; `extended`: the config has adaptation
// or a refractory period (its state has kAdaptiveStateSize rows).
inline ForwardTensors prepare_forward(const char* op, const Tensor& x, const Tensor& alpha, const OptTensor& alpha_syn,
                                      const OptTensor& threshold, const OptTensor& adaptation, const Tensor& state,
                                      bool extended, bool record_membrane, bool save) {
  TORCH_CHECK(x.dim() == 3, op, ": x must have shape [batch, time, neurons], got ", x.sizes());
  check_scan_args(op, x.sizes(), x.device(), x.scalar_type(), alpha, alpha_syn, threshold, adaptation, state, extended);
  const bool spiking = present(threshold);
  ForwardTensors f;
  f.x = x.contiguous();
  f.alpha = alpha.contiguous();
  f.alpha_syn = contiguous(alpha_syn);
  f.threshold = contiguous(threshold);
  f.adaptation = contiguous(adaptation);
  f.state = state.contiguous();
  f.B = x.size(0);
  f.T = x.size(1);
  f.N = x.size(2);
  // Outputs that are not wanted are distinct empty tensors (outputs must not alias).
  auto sequence_or_empty = [&](bool wanted, at::ScalarType dtype) {
    return at::empty(wanted ? f.x.sizes() : at::IntArrayRef{0}, x.options().dtype(dtype));
  };
  f.spikes = sequence_or_empty(spiking, x.scalar_type());
  f.membrane = sequence_or_empty(record_membrane, x.scalar_type());
  const auto acc_options = x.options().dtype(opmath_type(x.scalar_type()));
  f.saved = !save      ? at::empty({0}, acc_options)
            : extended ? at::empty({kSavedExtendedRows, f.B, f.T, f.N}, acc_options)
                       : at::empty({f.B, f.T, f.N}, acc_options);
  f.state_out = f.T == 0 ? f.state.clone() : at::empty_like(f.state);
  return f;
}

// Everything a backward kernel reads and writes.
struct BackwardTensors {
  Tensor saved, spikes, alpha, state, grad_x, grad_state0, grad_alpha_bn, grad_alpha_syn_bn, grad_threshold_bn;
  Tensor grad_adaptation_bn;  // [2, B, N] (rows decay, strength) or empty
  OptTensor grad_spikes, grad_membrane, grad_state, alpha_syn, threshold, adaptation;
  int64_t B, T, N;

  template <class scalar_t, class acc_t>
  BackwardLanes<scalar_t, acc_t> lanes() const {
    const auto* adapt = ptr_or_null<acc_t>(adaptation);
    acc_t* grad_adapt = ptr_or_null<acc_t>(grad_adaptation_bn);
    return {ptr_or_null<scalar_t>(grad_spikes),
            ptr_or_null<scalar_t>(grad_membrane),
            ptr_or_null<acc_t>(grad_state),
            saved.dim() == 4 ? saved_row_or_null<acc_t>(saved, kSavedPreReset) : ptr_or_null<acc_t>(saved),
            ptr_or_null<scalar_t>(spikes),
            alpha.data_ptr<acc_t>(),
            ptr_or_null<acc_t>(alpha_syn),
            ptr_or_null<acc_t>(threshold),
            state.data_ptr<acc_t>(),
            ptr_or_null<scalar_t>(grad_x),
            grad_state0.data_ptr<acc_t>(),
            ptr_or_null<acc_t>(grad_alpha_bn),
            ptr_or_null<acc_t>(grad_alpha_syn_bn),
            ptr_or_null<acc_t>(grad_threshold_bn),
            adapt,
            adapt ? adapt + N : nullptr,
            saved_row_or_null<acc_t>(saved, kSavedAdaptation),
            saved_row_or_null<acc_t>(saved, kSavedCounter),
            grad_adapt,
            grad_adapt ? grad_adapt + B * N : nullptr};
  }

  // The gradient of an optional per-neuron parameter from its [B, N] partial sums.
  Tensor summed(const OptTensor& parameter, const Tensor& partial_sums) const {
    return present(parameter) ? partial_sums.sum(-2) : at::empty({0}, alpha.options());
  }

  // (grad_x, grad_alpha [N], grad_alpha_syn [N] or empty, grad_threshold [N] or empty,
  // grad_adaptation [2, N] or empty, grad_state0)
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> results() const {
    return {grad_x,
            grad_alpha_bn.sum(0),
            summed(alpha_syn, grad_alpha_syn_bn),
            summed(threshold, grad_threshold_bn),
            summed(adaptation, grad_adaptation_bn),
            grad_state0};
  }
};

// `seq_dtype`: the storage type of the sequences (x, spikes, their gradients).
// `threshold` is present exactly for the spiking scans.
// `saved`: what the forward saved ([B, T, N], or [3, B, T, N] for `extended` configs).
inline BackwardTensors prepare_backward(const char* op, const OptTensor& grad_spikes, const OptTensor& grad_membrane,
                                        const OptTensor& grad_state, const Tensor& saved, const Tensor& spikes,
                                        const Tensor& alpha, const OptTensor& alpha_syn, const OptTensor& threshold,
                                        const OptTensor& adaptation, const Tensor& state, bool extended,
                                        at::ScalarType seq_dtype) {
  const bool spiking = present(threshold);
  // The saved sequences have the shape [B, T, N]; they stand in for x in the shape checks.
  if (extended) {
    TORCH_CHECK(saved.dim() == 4 && saved.size(0) == kSavedExtendedRows, op,
                ": pre_reset must have shape [3, batch, time, neurons] for neurons with adaptation or a refractory "
                "period, got ",
                saved.sizes(), " (was the forward run with save_for_backward=True?)");
  } else {
    TORCH_CHECK(saved.dim() == 3, op, ": pre_reset must have shape [batch, time, neurons], got ", saved.sizes(),
                " (was the forward run with save_for_backward=True?)");
  }
  const Tensor pre_reset = extended ? saved.select(0, kSavedPreReset) : saved;
  const auto seq = pre_reset.sizes();
  const auto device = pre_reset.device();
  TORCH_CHECK(pre_reset.scalar_type() == opmath_type(seq_dtype), op, ": pre_reset must have dtype ",
              opmath_type(seq_dtype), ", got ", pre_reset.scalar_type());
  check_scan_args(op, seq, device, seq_dtype, alpha, alpha_syn, threshold, adaptation, state, extended);
  if (spiking) check_like(op, "spikes", spikes, device, seq_dtype, seq);
  if (present(grad_spikes)) check_like(op, "grad_spikes", *grad_spikes, device, seq_dtype, seq);
  if (present(grad_membrane)) check_like(op, "grad_membrane", *grad_membrane, device, seq_dtype, seq);
  if (present(grad_state)) check_like(op, "grad_state", *grad_state, device, state.scalar_type(), state.sizes());
  BackwardTensors g;
  g.B = seq[0];
  g.T = seq[1];
  g.N = seq[2];
  g.saved = saved.contiguous();
  g.spikes = spiking ? spikes.contiguous() : Tensor();
  g.alpha = alpha.contiguous();
  g.alpha_syn = contiguous(alpha_syn);
  g.threshold = contiguous(threshold);
  g.adaptation = contiguous(adaptation);
  g.state = state.contiguous();
  g.grad_spikes = contiguous(grad_spikes);
  g.grad_membrane = contiguous(grad_membrane);
  g.grad_state = contiguous(grad_state);
  g.grad_x = at::empty(seq, pre_reset.options().dtype(seq_dtype));
  g.grad_state0 = at::empty_like(g.state);
  g.grad_alpha_bn = at::zeros({g.B, g.N}, alpha.options());
  auto partial_sums = [&](const OptTensor& parameter) {
    return present(parameter) ? at::zeros({g.B, g.N}, alpha.options()) : at::empty({0}, alpha.options());
  };
  g.grad_alpha_syn_bn = partial_sums(alpha_syn);
  g.grad_threshold_bn = partial_sums(threshold);
  g.grad_adaptation_bn = present(adaptation) ? at::zeros({2, g.B, g.N}, alpha.options())
                                             : at::empty({0}, alpha.options());
  if (g.T == 0) g.grad_state0 = present(grad_state) ? grad_state->clone() : at::zeros_like(g.state);
  return g;
}

}  // namespace snnkern
