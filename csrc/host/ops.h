// The op entry points, written once for every backend: they check and allocate (tensors.h),
// then run the lane tasks of lif.h through the backend's Launcher (launcher.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <tuple>

#include "../eprop.h"
#include "../lif.h"
#include "checks.h"
#include "launcher.h"
#include "tensors.h"

namespace snnkern {

// The process-wide switch (defined in csrc/ops.cpp): while on, the recurrent op runs its
// per-step path even where the backend's row tasks take the shape (tests and benchmarks).
bool recurrent_per_step();
void set_recurrent_per_step(bool on);

template <Launcher L>
struct Ops {
  // The value checks of a forward op (checks.h), where asked for and possible.
  static void check_values(const Tensor& x, const Tensor& alpha, const OptTensor& alpha_syn, const OptTensor& threshold,
                           const OptTensor& adaptation, bool multispike, int64_t surrogate) {
    if (!L::values_readable(x.device())) return;
    check_decay_values("alpha", alpha);
    if (present(alpha_syn)) check_decay_values("alpha_syn", *alpha_syn);
    if (present(threshold)) check_threshold_values(*threshold, multispike, surrogate);
    if (present(adaptation)) check_adaptation_values(*adaptation);
  }

  template <class scalar_t, class acc_t>
  static void scan_forward(const ForwardTensors& f, const LifConfig<acc_t>& c) {
    if (f.B * f.T * f.N == 0) return;
    L::run(ScanForward<scalar_t, acc_t>{c, f.lanes<scalar_t, acc_t>(), f.B, f.T, f.N}, 0, f.B, f.N, f.T, f.x.device());
  }

  template <class scalar_t, class acc_t>
  static void scan_backward(const BackwardTensors& g, const LifConfig<acc_t>& c) {
    if (g.B * g.T * g.N == 0) return;
    L::run(ScanBackward<scalar_t, acc_t>{c, g.lanes<scalar_t, acc_t>(), g.B, g.T, g.N}, 0, g.B, g.N, g.T,
           g.alpha.device());
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor> lif_forward(
      const Tensor& x, const Tensor& alpha, const OptTensor& alpha_syn, const Tensor& threshold,
      const OptTensor& adaptation, const Tensor& state, int64_t ordering, int64_t reset, double v_reset, double v_leak,
      bool detach_reset, bool current_first, bool multispike, int64_t surrogate, double surrogate_param,
      int64_t refractory, bool record_membrane, bool save_for_backward, bool check) {
    const char* op = "snnkern.lif_forward";
    if (check) check_values(x, alpha, alpha_syn, threshold, adaptation, multispike, surrogate);
    const ScanOptions o{ordering,      reset,      v_reset,   v_leak,          detach_reset,
                        current_first, multispike, surrogate, surrogate_param, refractory};
    const bool adaptive = present(adaptation);
    auto f = prepare_forward(op, x, alpha, alpha_syn, threshold, adaptation, state, o.extended(adaptive),
                             record_membrane, save_for_backward);
    L::dispatch(x.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      scan_forward<scalar_t>(f, o.config<at::opmath_type<scalar_t>>(op, present(alpha_syn), adaptive));
    });
    return {f.spikes, f.membrane, f.state_out, f.saved};
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lif_backward(
      const OptTensor& grad_spikes, const OptTensor& grad_membrane, const OptTensor& grad_state, const Tensor& saved,
      const Tensor& spikes, const Tensor& alpha, const OptTensor& alpha_syn, const Tensor& threshold,
      const OptTensor& adaptation, const Tensor& state, int64_t ordering, int64_t reset, double v_reset, double v_leak,
      bool detach_reset, bool current_first, bool multispike, int64_t surrogate, double surrogate_param,
      int64_t refractory) {
    const char* op = "snnkern.lif_backward";
    const ScanOptions o{ordering,      reset,      v_reset,   v_leak,          detach_reset,
                        current_first, multispike, surrogate, surrogate_param, refractory};
    const bool adaptive = present(adaptation);
    auto g = prepare_backward(op, grad_spikes, grad_membrane, grad_state, saved, spikes, alpha, alpha_syn, threshold,
                              adaptation, state, o.extended(adaptive), spikes.scalar_type());
    L::dispatch(spikes.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      scan_backward<scalar_t>(g, o.config<at::opmath_type<scalar_t>>(op, present(alpha_syn), adaptive));
    });
    return g.results();
  }

  static std::tuple<Tensor, Tensor, Tensor> leaky_forward(const Tensor& x, const Tensor& alpha,
                                                          const OptTensor& alpha_syn, const Tensor& state,
                                                          bool save_for_backward, bool check) {
    const char* op = "snnkern.leaky_forward";
    if (check) check_values(x, alpha, alpha_syn, OptTensor(), OptTensor(), false, kSigmoid);
    // A float32/float64 trace is already in the accumulate type: backward uses it, no copy is saved.
    const bool save = save_for_backward && opmath_type(x.scalar_type()) != x.scalar_type();
    auto f = prepare_forward(op, x, alpha, alpha_syn, OptTensor(), OptTensor(), state, false, true, save);
    L::dispatch(x.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      scan_forward<scalar_t>(f, leaky_config<at::opmath_type<scalar_t>>(present(alpha_syn)));
    });
    return {f.membrane, f.state_out, f.saved};
  }

  // `saved_membrane`: the membrane trace in the accumulate type, which for the leaky integrator is
  // its pre-reset potential (leaky_config); `dtype`: the storage type of x.
  static std::tuple<Tensor, Tensor, Tensor, Tensor> leaky_backward(const OptTensor& grad_membrane,
                                                                   const OptTensor& grad_state,
                                                                   const Tensor& saved_membrane, const Tensor& alpha,
                                                                   const OptTensor& alpha_syn, const Tensor& state,
                                                                   at::ScalarType dtype) {
    const char* op = "snnkern.leaky_backward";
    TORCH_CHECK(at::isFloatingType(dtype), op, ": dtype must be floating point, got ", dtype);
    auto g = prepare_backward(op, OptTensor(), grad_membrane, grad_state, saved_membrane, Tensor(), alpha, alpha_syn,
                              OptTensor(), OptTensor(), state, false, dtype);
    L::dispatch(dtype, op, [&](auto tag) {
      using scalar_t = decltype(tag);
      scan_backward<scalar_t>(g, leaky_config<at::opmath_type<scalar_t>>(present(alpha_syn)));
    });
    auto [grad_x, grad_alpha, grad_alpha_syn, grad_threshold, grad_adaptation, grad_state0] = g.results();
    return {grad_x, grad_alpha, grad_alpha_syn, grad_state0};
  }

  // The event-driven products with a mostly-zero spikes [M, K]: spikes @ other (other [K, N])
  // or, `transposed`, spikes^T @ other (other [M, N], the weight gradient of a projection).
  // events: spike_events(spikes) or none; the result is the same either way.
  static Tensor spike_product(const char* op, const Tensor& spikes, const Tensor& other, const OptTensor& events,
                              bool transposed) {
    check_spikes_matrix(op, spikes);
    const int64_t inner = spikes.size(transposed ? 0 : 1), outer = spikes.size(transposed ? 1 : 0);
    TORCH_CHECK(other.dim() == 2 && other.size(0) == inner, op, ": other must have shape [", inner, ", *] (",
                transposed ? "its rows match the rows of spikes" : "its rows match the columns of spikes", "), got ",
                other.sizes());
    TORCH_CHECK(other.device() == spikes.device(), op, ": other is on ", other.device(), " but spikes is on ",
                spikes.device());
    TORCH_CHECK(other.scalar_type() == spikes.scalar_type(), op, ": other has dtype ", other.scalar_type(),
                ", expected the dtype of spikes, ", spikes.scalar_type());
    const Tensor event_words = present(events) ? checked_events(op, *events, spikes).contiguous() : Tensor();
    Tensor out = at::empty({outer, other.size(1)}, spikes.options());
    if (out.numel() == 0) return out;
    if (inner == 0) return out.zero_();
    if (transposed) {
      L::spike_matmul_t_out(out, spikes.contiguous(), other.contiguous(), event_words);
    } else {
      L::spike_matmul_out(out, spikes.contiguous(), other.contiguous(), event_words);
    }
    return out;
  }
  static Tensor spike_matmul(const Tensor& spikes, const Tensor& other, const OptTensor& events) {
    return spike_product("snnkern.spike_matmul", spikes, other, events, false);
  }
  static Tensor spike_matmul_t(const Tensor& spikes, const Tensor& other, const OptTensor& events) {
    return spike_product("snnkern.spike_matmul_t", spikes, other, events, true);
  }

  // The nonzeros of a binary spikes [M, K] as bits, int32 [M, ceil(K / 32) + 1] (the format:
  // csrc/cpu/spike_matmul.h, spike_events).
  static Tensor spike_events(const Tensor& spikes) {
    const char* op = "snnkern.spike_events";
    check_spikes_matrix(op, spikes);
    Tensor events = at::empty({spikes.size(0), event_words(spikes.size(1)) + 1}, spikes.options().dtype(at::kInt));
    if (events.numel() != 0) L::spike_events_out(events, spikes.contiguous());
    return events;
  }

  // The recurrent layer: the input of step t is x_t + z_{t-1} W^T, with z_{-1} = spikes0. The
  // backend's row tasks (recurrent_rows.h) run the whole time loop of a batch row in one task.
  // The per-step path, for the shapes they do not take: one-step lane tasks, between which the
  // host adds the product (event-driven on the CPU, dense on CUDA) while the neuron state
  // waits in memory, in the accumulate type.
  static std::tuple<Tensor, Tensor, Tensor, Tensor> recurrent_lif_forward(
      const Tensor& x, const Tensor& weight, const Tensor& alpha, const OptTensor& alpha_syn, const Tensor& threshold,
      const OptTensor& adaptation, const Tensor& state, const Tensor& spikes0, int64_t ordering, int64_t reset,
      double v_reset, double v_leak, bool detach_reset, bool current_first, bool multispike, int64_t surrogate,
      double surrogate_param, int64_t refractory, bool record_membrane, bool save_for_backward, bool check) {
    const char* op = "snnkern.recurrent_lif_forward";
    if (check) check_values(x, alpha, alpha_syn, threshold, adaptation, multispike, surrogate);
    const ScanOptions o{ordering,      reset,      v_reset,   v_leak,          detach_reset,
                        current_first, multispike, surrogate, surrogate_param, refractory};
    const bool adaptive = present(adaptation);
    auto f = prepare_forward(op, x, alpha, alpha_syn, threshold, adaptation, state, o.extended(adaptive),
                             record_membrane, save_for_backward);
    check_recurrent_args(op, weight, spikes0, x.device(), x.scalar_type(), f.B, f.N);
    L::dispatch(x.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      using acc_t = at::opmath_type<scalar_t>;
      const auto c = o.config<acc_t>(op, present(alpha_syn), adaptive);
      if (f.B * f.T * f.N == 0) return;
      const Tensor weight_t = weight.t().contiguous();  // [in, out]: the rows the spikes select
      const Tensor first_spikes = spikes0.contiguous();
      const RecurrentRowsForward<scalar_t, acc_t> row_task{
          c,  f.lanes<scalar_t, acc_t>(), weight_t.data_ptr<scalar_t>(), first_spikes.data_ptr<scalar_t>(), f.B, f.T,
          f.N};
      if (!recurrent_per_step() && L::run_rows(row_task, x.device())) return;
      Tensor running = f.state_out.copy_(f.state);  // the state between steps
      Tensor recurrent = at::empty({f.B, f.N}, x.options());
      L::for_batch_chunks(f.B, [&](int64_t b0, int64_t b1) {
        auto rows = [&](const Tensor& t) { return t.narrow(0, b0, b1 - b0); };
        Tensor recurrent_rows = rows(recurrent);
        for (int64_t t = 0; t < f.T; ++t) {
          L::spike_matmul_out(recurrent_rows, rows(t == 0 ? first_spikes : f.spikes.select(1, t - 1)), weight_t);
          L::run(RecurrentStepForward<scalar_t, acc_t>{c, f.lanes<scalar_t, acc_t>(), recurrent.data_ptr<scalar_t>(),
                                                       running.data_ptr<acc_t>(), f.B, f.T, f.N, t},
                 b0, b1, f.N, 1, x.device());
        }
      });
    });
    return {f.spikes, f.membrane, f.state_out, f.saved};
  }

  // Returns grad_x, grad_weight, grad_alpha, grad_alpha_syn (empty without alpha_syn),
  // grad_threshold, grad_adaptation (empty without adaptation), grad_state, grad_spikes0.
  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> recurrent_lif_backward(
      const OptTensor& grad_spikes, const OptTensor& grad_membrane, const OptTensor& grad_state, const Tensor& saved,
      const Tensor& spikes, const Tensor& weight, const Tensor& alpha, const OptTensor& alpha_syn,
      const Tensor& threshold, const OptTensor& adaptation, const Tensor& state, const Tensor& spikes0,
      int64_t ordering, int64_t reset, double v_reset, double v_leak, bool detach_reset, bool current_first,
      bool multispike, int64_t surrogate, double surrogate_param, int64_t refractory) {
    const char* op = "snnkern.recurrent_lif_backward";
    const ScanOptions o{ordering,      reset,      v_reset,   v_leak,          detach_reset,
                        current_first, multispike, surrogate, surrogate_param, refractory};
    const auto seq_dtype = spikes.scalar_type();
    const bool adaptive = present(adaptation);
    auto g = prepare_backward(op, grad_spikes, grad_membrane, grad_state, saved, spikes, alpha, alpha_syn, threshold,
                              adaptation, state, o.extended(adaptive), seq_dtype);
    const Tensor& pre_reset = g.saved;  // for its device
    check_recurrent_args(op, weight, spikes0, pre_reset.device(), seq_dtype, g.B, g.N);
    const Tensor weight_rows = weight.contiguous(), first_spikes = spikes0.contiguous();
    Tensor grad_spikes0 = at::zeros_like(spikes0, at::MemoryFormat::Contiguous);
    Tensor weight_grad_t = at::empty({g.N, g.N}, weight.options());
    bool rows_ran = false;  // the row tasks also give grad_spikes0 (and the weight gradient, where they form it)
    L::dispatch(seq_dtype, op, [&](auto tag) {
      using scalar_t = decltype(tag);
      using acc_t = at::opmath_type<scalar_t>;
      const auto c = o.config<acc_t>(op, present(alpha_syn), adaptive);
      if (g.B * g.T * g.N == 0) return;
      RecurrentRowsBackward<scalar_t, acc_t> row_task{
          c,  g.lanes<scalar_t, acc_t>(), weight_rows.data_ptr<scalar_t>(), grad_spikes0.data_ptr<scalar_t>(), g.B, g.T,
          g.N};
      if constexpr (L::kRowsFormWeightGrad) {
        row_task.spikes = g.spikes.data_ptr<scalar_t>();
        row_task.spikes0 = first_spikes.data_ptr<scalar_t>();
        row_task.weight_grad_t = weight_grad_t.data_ptr<scalar_t>();
      }
      rows_ran = !recurrent_per_step() && L::run_rows(row_task, pre_reset.device());
      if (rows_ran) return;
      // Rows v, i, w, a of the state gradient, then the partial sums of the parameters' gradients.
      Tensor carry = at::zeros({kCarryRows, g.B, g.N}, alpha.options());
      const int64_t carried_rows = c.extended() ? kCarryA + 1 : kStateSize;  // the counter has no gradient
      if (present(grad_state)) carry.narrow(0, 0, carried_rows).copy_(grad_state->narrow(0, 0, carried_rows));
      Tensor recurrent = at::empty({g.B, g.N}, g.grad_x.options());
      L::for_batch_chunks(g.B, [&](int64_t b0, int64_t b1) {
        auto rows = [&](const Tensor& t) { return t.narrow(0, b0, b1 - b0); };
        Tensor recurrent_rows = rows(recurrent);
        for (int64_t t = g.T - 1; t >= 0; --t) {
          // dL/dz_t through the recurrent input of step t + 1: dL/dx_{t+1} W.
          if (t + 1 < g.T) at::mm_out(recurrent_rows, rows(g.grad_x.select(1, t + 1)), weight);
          L::run(RecurrentStepBackward<scalar_t, acc_t>{c, g.lanes<scalar_t, acc_t>(),
                                                        t + 1 < g.T ? recurrent.data_ptr<scalar_t>() : nullptr,
                                                        carry.data_ptr<acc_t>(), g.B, g.T, g.N, t},
                 b0, b1, g.N, 1, pre_reset.device());
        }
      });
      g.grad_state0.zero_().narrow(0, 0, carried_rows).copy_(carry.narrow(0, 0, carried_rows));
      g.grad_alpha_bn.copy_(carry.select(0, kCarryAlpha));
      if (present(alpha_syn)) g.grad_alpha_syn_bn.copy_(carry.select(0, kCarryAlphaSyn));
      g.grad_threshold_bn.copy_(carry.select(0, kCarryThreshold));
      if (adaptive) g.grad_adaptation_bn.copy_(carry.narrow(0, kCarryAdaptationDecay, 2));
    });
    auto [grad_x, grad_alpha, grad_alpha_syn, grad_threshold, grad_adaptation, grad_state0] = g.results();
    Tensor grad_weight = at::zeros({g.N, g.N}, weight.options());
    if (g.B * g.T * g.N > 0) {
      // dL/dW = sum over b, t of dL/dx_t^T z_{t-1}: its transpose is one product of the spikes
      // one step back (spikes0 first) with dL/dx over all B * T rows (event-driven on the CPU,
      // where the row tasks form it while dL/dx is in cache).
      if (!(rows_ran && L::kRowsFormWeightGrad))
        L::recurrent_weight_grad_t(weight_grad_t, first_spikes, g.spikes, grad_x);
      grad_weight = weight_grad_t.t().contiguous();
      if (!rows_ran) grad_spikes0 = grad_x.select(1, 0).mm(weight);
    }
    return {grad_x,         grad_weight,     grad_alpha,  grad_alpha_syn,
            grad_threshold, grad_adaptation, grad_state0, grad_spikes0};
  }

  // ----------------------------------------------------------------------------------------------
  // e-prop (csrc/eprop.h): the weight gradient [N, P] of the eligibility traces of neurons with
  // pseudo-derivatives psi [B, T, N] and presynaptic traces [B, T, P] against the learning signals
  // [B, T, N] (rate_signal: an unfiltered one, optional); adaptation strength and decay [N] in the
  // accumulate type; kappa the readout's decay. One lane task per (b, j, i) writes its batch
  // element's share in the accumulate type; a second sums them over b in a fixed order.
  static Tensor eprop_weight_grad(const Tensor& psi, const Tensor& trace, const Tensor& signal,
                                  const OptTensor& rate_signal, const Tensor& strength, const Tensor& decay,
                                  double kappa) {
    const char* op = "snnkern.eprop_weight_grad";
    check_eprop_args(op, psi, trace, signal, rate_signal, strength, decay, kappa);
    const int64_t B = psi.size(0), T = psi.size(1), N = psi.size(2), P = trace.size(2);
    Tensor out = at::empty({N, P}, psi.options());
    if (N * P == 0) return out;
    if (B * T == 0) return out.zero_();
    const Tensor psi_c = psi.contiguous(), trace_c = trace.contiguous(), signal_c = signal.contiguous();
    const Tensor rate_c = present(rate_signal) ? rate_signal->contiguous() : Tensor();
    const Tensor strength_c = strength.contiguous(), decay_c = decay.contiguous();
    Tensor partial = at::empty({B, N, P}, strength.options());
    L::dispatch(psi.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      using acc_t = at::opmath_type<scalar_t>;
      const EpropTraces<scalar_t, acc_t> traces{psi_c.data_ptr<scalar_t>(),
                                                trace_c.data_ptr<scalar_t>(),
                                                signal_c.data_ptr<scalar_t>(),
                                                rate_c.defined() ? rate_c.data_ptr<scalar_t>() : nullptr,
                                                strength_c.data_ptr<acc_t>(),
                                                decay_c.data_ptr<acc_t>(),
                                                partial.data_ptr<acc_t>(),
                                                static_cast<acc_t>(kappa),
                                                B,
                                                T,
                                                N,
                                                P};
      L::run(traces, 0, B * traces.groups(), P, T, psi.device());
      L::run(EpropBatchSum<scalar_t, acc_t>{partial.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), B, N, P}, 0, N, P, B,
             psi.device());
    });
    return out;
  }

  static void check_eprop_args(const char* op, const Tensor& psi, const Tensor& trace, const Tensor& signal,
                               const OptTensor& rate_signal, const Tensor& strength, const Tensor& decay,
                               double kappa) {
    TORCH_CHECK(psi.dim() == 3, op, ": psi must have shape [batch, time, neurons], got ", psi.sizes());
    TORCH_CHECK(at::isFloatingType(psi.scalar_type()), op, ": psi must be floating point, got ", psi.scalar_type());
    const int64_t B = psi.size(0), T = psi.size(1), N = psi.size(2);
    const auto device = psi.device();
    const auto dtype = psi.scalar_type();
    auto beside = [&](const char* name, const Tensor& t, at::ScalarType type, at::IntArrayRef shape) {
      TORCH_CHECK(t.device() == device, op, ": ", name, " is on ", t.device(), " but psi is on ", device);
      TORCH_CHECK(t.scalar_type() == type, op, ": ", name, " has dtype ", t.scalar_type(), ", expected ", type);
      TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
    };
    TORCH_CHECK(trace.dim() == 3 && trace.size(0) == B && trace.size(1) == T, op,
                ": presynaptic_trace must have shape [", B, ", ", T, ", inputs] (the batch and time of psi), got ",
                trace.sizes());
    beside("presynaptic_trace", trace, dtype, trace.sizes());
    beside("learning_signal", signal, dtype, psi.sizes());
    if (present(rate_signal)) beside("rate_signal", *rate_signal, dtype, psi.sizes());
    beside("adaptation_strength", strength, opmath_type(dtype), {N});
    beside("adaptation_decay", decay, opmath_type(dtype), {N});
    TORCH_CHECK(std::isfinite(kappa) && kappa >= 0 && kappa <= 1, op,
                ": kappa must lie in [0, 1] (the readout's decay), got ", kappa);
    if (!L::values_readable(device)) return;
    check_decay_values("adaptation_decay", decay);
    TORCH_CHECK_VALUE(strength.numel() == 0 || strength.isfinite().all().item<bool>(),
                      "adaptation_strength must be finite; got NaN or inf values");
  }
};

}  // namespace snnkern
