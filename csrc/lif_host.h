// Host side shared by the CPU and CUDA implementations of the ops: argument checks, output
// allocation and the pointer bundles handed to the kernels. The dynamics are in lif.h.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/Optional.h>

#include <tuple>

#include "lif.h"

namespace snnkern {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

inline bool present(const OptTensor& t) { return t.has_value() && t->defined(); }

// A tensor that must sit beside the sequence: same device and dtype, the given shape.
inline void check_like(const char* op, const char* name, const Tensor& t, const at::TensorOptions& like,
                       at::IntArrayRef shape) {
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but x is on ", like.device());
  TORCH_CHECK(t.scalar_type() == like.dtype(), op, ": ", name, " has dtype ", t.scalar_type(), ", expected ",
              like.dtype(), " (the dtype of x)");
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
}

// Checks shared by every op, for a sequence [B, T, N]: alpha, alpha_syn [N]; state [3, B, N].
inline void check_scan_args(const char* op, at::IntArrayRef seq, const at::TensorOptions& like, const Tensor& alpha,
                            const OptTensor& alpha_syn, const Tensor& state) {
  TORCH_CHECK(at::isFloatingType(c10::typeMetaToScalarType(like.dtype())), op,
              ": x must be floating point, got ", like.dtype());
  const int64_t B = seq[0], N = seq[2];
  check_like(op, "alpha", alpha, like, {N});
  if (present(alpha_syn)) check_like(op, "alpha_syn", *alpha_syn, like, {N});
  check_like(op, "state", state, like, {kStateSize, B, N});
}

// The recurrent layer's weight [N, N] ([out, in], as torch.nn.Linear) and previous spikes [B, N].
inline void check_recurrent_args(const char* op, const Tensor& weight, const Tensor& spikes0,
                                 const at::TensorOptions& like, int64_t B, int64_t N) {
  check_like(op, "weight", weight, like, {N, N});
  check_like(op, "spikes0", spikes0, like, {B, N});
}

template <class acc_t>
LifConfig<acc_t> make_config(const char* op, double threshold, int64_t ordering, int64_t reset, bool detach_reset,
                             int64_t surrogate, double surrogate_param, bool synaptic) {
  TORCH_CHECK(std::isfinite(threshold) && threshold > 0, op, ": threshold must be finite and > 0, got ", threshold);
  TORCH_CHECK(ordering >= kDelayed && ordering <= kUpdateFirst, op, ": ordering must be 0, 1 or 2, got ", ordering);
  TORCH_CHECK(reset >= kResetZero && reset <= kResetNone, op, ": reset must be 0, 1 or 2, got ", reset);
  TORCH_CHECK(surrogate >= kSigmoid && surrogate <= kATan, op, ": unknown surrogate code ", surrogate);
  TORCH_CHECK(std::isfinite(surrogate_param) && surrogate_param > 0, op,
              ": surrogate_param must be finite and > 0, got ", surrogate_param);
  LifConfig<acc_t> c;
  c.threshold = static_cast<acc_t>(threshold);
  c.surrogate_param = static_cast<acc_t>(surrogate_param);
  c.surrogate = static_cast<int>(surrogate);
  c.ordering = static_cast<int>(ordering);
  c.reset = static_cast<int>(reset);
  c.keep_reset_grad = !detach_reset;
  c.synaptic = synaptic;
  return c;
}

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

inline at::ScalarType opmath_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

template <class T>
T* ptr_or_null(const Tensor& t) { return t.defined() && t.numel() ? t.data_ptr<T>() : nullptr; }

template <class T>
const T* ptr_or_null(const OptTensor& t) { return present(t) ? t->data_ptr<T>() : nullptr; }

inline OptTensor contiguous(const OptTensor& t) {
  return present(t) ? OptTensor(t->contiguous()) : OptTensor();
}

// Everything a forward kernel reads and writes, allocated and checked.
struct ForwardTensors {
  Tensor x, alpha, state, spikes, membrane, state_out, pre_reset;
  OptTensor alpha_syn;
  int64_t B, T, N;

  template <class scalar_t, class acc_t>
  ForwardLanes<scalar_t, acc_t> lanes() const {
    return {x.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(alpha_syn),
            state.data_ptr<scalar_t>(), state_out.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(spikes),
            ptr_or_null<scalar_t>(membrane), ptr_or_null<acc_t>(pre_reset)};
  }
};

inline ForwardTensors prepare_forward(const char* op, const Tensor& x, const Tensor& alpha, const OptTensor& alpha_syn,
                                      const Tensor& state, bool spiking, bool record_membrane, bool save) {
  TORCH_CHECK(x.dim() == 3, op, ": x must have shape [batch, time, neurons], got ", x.sizes());
  check_scan_args(op, x.sizes(), x.options(), alpha, alpha_syn, state);
  ForwardTensors f;
  f.x = x.contiguous();
  f.alpha = alpha.contiguous();
  f.alpha_syn = contiguous(alpha_syn);
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
  f.pre_reset = sequence_or_empty(save, opmath_type(x.scalar_type()));
  f.state_out = f.T == 0 ? f.state.clone() : at::empty_like(f.state);
  return f;
}

// Everything a backward kernel reads and writes.
struct BackwardTensors {
  Tensor pre_reset, spikes, alpha, state, grad_x, grad_state0, grad_alpha_bn, grad_alpha_syn_bn;
  OptTensor grad_spikes, grad_membrane, grad_state, alpha_syn;
  int64_t B, T, N;

  template <class scalar_t, class acc_t>
  BackwardLanes<scalar_t, acc_t> lanes() const {
    return {ptr_or_null<scalar_t>(grad_spikes), ptr_or_null<scalar_t>(grad_membrane),
            ptr_or_null<scalar_t>(grad_state), ptr_or_null<acc_t>(pre_reset), ptr_or_null<scalar_t>(spikes),
            alpha.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(alpha_syn), state.data_ptr<scalar_t>(),
            ptr_or_null<scalar_t>(grad_x), grad_state0.data_ptr<scalar_t>(), ptr_or_null<acc_t>(grad_alpha_bn),
            ptr_or_null<acc_t>(grad_alpha_syn_bn)};
  }

  // (grad_x, grad_alpha [N], grad_alpha_syn [N] or empty, grad_state0)
  std::tuple<Tensor, Tensor, Tensor, Tensor> results() const {
    auto reduce = [&](const Tensor& partial) { return partial.sum(0).to(alpha.scalar_type()); };
    Tensor g_alpha_syn = present(alpha_syn) ? reduce(grad_alpha_syn_bn) : at::empty({0}, alpha.options());
    return {grad_x, reduce(grad_alpha_bn), g_alpha_syn, grad_state0};
  }
};

inline BackwardTensors prepare_backward(const char* op, const OptTensor& grad_spikes, const OptTensor& grad_membrane,
                                        const OptTensor& grad_state, const Tensor& pre_reset, const Tensor& spikes,
                                        const Tensor& alpha, const OptTensor& alpha_syn, const Tensor& state,
                                        bool spiking) {
  // pre_reset has the sequence shape [B, T, N]; it stands in for x in the shape checks.
  TORCH_CHECK(pre_reset.dim() == 3, op, ": pre_reset must have shape [batch, time, neurons], got ", pre_reset.sizes(),
              " (was the forward run with save_for_backward=True?)");
  const auto seq = pre_reset.sizes();
  TORCH_CHECK(pre_reset.scalar_type() == opmath_type(alpha.scalar_type()), op, ": pre_reset must have dtype ",
              opmath_type(alpha.scalar_type()), ", got ", pre_reset.scalar_type());
  const auto like = alpha.options().device(pre_reset.device());
  check_scan_args(op, seq, like, alpha, alpha_syn, state);
  if (spiking) check_like(op, "spikes", spikes, like, seq);
  if (present(grad_spikes)) check_like(op, "grad_spikes", *grad_spikes, like, seq);
  if (present(grad_membrane)) check_like(op, "grad_membrane", *grad_membrane, like, seq);
  if (present(grad_state)) check_like(op, "grad_state", *grad_state, like, state.sizes());
  BackwardTensors g;
  g.B = seq[0];
  g.T = seq[1];
  g.N = seq[2];
  g.pre_reset = pre_reset.contiguous();
  g.spikes = spiking ? spikes.contiguous() : Tensor();
  g.alpha = alpha.contiguous();
  g.alpha_syn = contiguous(alpha_syn);
  g.state = state.contiguous();
  g.grad_spikes = contiguous(grad_spikes);
  g.grad_membrane = contiguous(grad_membrane);
  g.grad_state = contiguous(grad_state);
  g.grad_x = at::empty(seq, alpha.options());
  g.grad_state0 = at::empty_like(g.state);
  const auto acc = alpha.options().dtype(opmath_type(alpha.scalar_type()));
  g.grad_alpha_bn = at::zeros({g.B, g.N}, acc);
  g.grad_alpha_syn_bn = present(alpha_syn) ? at::zeros({g.B, g.N}, acc) : at::empty({0}, acc);
  if (g.T == 0) g.grad_state0 = present(grad_state) ? grad_state->clone() : at::zeros_like(g.state);
  return g;
}

// The op entry points; each backend instantiates them with its Launcher, which provides
//   template <class Task> static void run(const Task&, b0, b1, N, steps, at::Device)
//       runs the lane task for every neuron n < N of the batch elements b0 <= b < b1;
//   template <class F> static void for_batch_chunks(B, F&& f)
//       calls f(b0, b1) over chunks covering [0, B): the recurrent layer's time loop runs once per
//       chunk (CPU: one chunk per thread, no synchronisation between steps; CUDA: one chunk);
//   template <class F> static void dispatch(at::ScalarType, const char* op, F&& f)  // f(scalar_t{})
//   static void spike_matmul_out(Tensor& out, const Tensor& spikes, const Tensor& other)
//       out = spikes @ other: rows of spikes strided (unit column stride), other contiguous, the
//       rows of out contiguous; single-threaded when called inside for_batch_chunks;
//   static void spike_matmul_t_out(Tensor& out, const Tensor& spikes, const Tensor& other)
//       out = spikes^T @ other, all contiguous.
template <class Launcher>
struct Ops {
  template <class scalar_t, class acc_t>
  static void scan_forward(const ForwardTensors& f, const LifConfig<acc_t>& c) {
    if (f.B * f.T * f.N == 0) return;
    Launcher::run(ScanForward<scalar_t, acc_t>{c, f.lanes<scalar_t, acc_t>(), f.B, f.T, f.N}, 0, f.B, f.N, f.T,
                  f.x.device());
  }

  template <class scalar_t, class acc_t>
  static void scan_backward(const BackwardTensors& g, const LifConfig<acc_t>& c) {
    if (g.B * g.T * g.N == 0) return;
    Launcher::run(ScanBackward<scalar_t, acc_t>{c, g.lanes<scalar_t, acc_t>(), g.B, g.T, g.N}, 0, g.B, g.N, g.T,
                  g.alpha.device());
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor> lif_forward(
      const Tensor& x, const Tensor& alpha, const OptTensor& alpha_syn, const Tensor& state, double threshold,
      int64_t ordering, int64_t reset, bool detach_reset, int64_t surrogate, double surrogate_param,
      bool record_membrane, bool save_for_backward) {
    const char* op = "snnkern.lif_forward";
    auto f = prepare_forward(op, x, alpha, alpha_syn, state, true, record_membrane, save_for_backward);
    Launcher::dispatch(x.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      using acc_t = at::opmath_type<scalar_t>;
      scan_forward<scalar_t>(f, make_config<acc_t>(op, threshold, ordering, reset, detach_reset, surrogate,
                                                   surrogate_param, present(alpha_syn)));
    });
    return {f.spikes, f.membrane, f.state_out, f.pre_reset};
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor> lif_backward(
      const OptTensor& grad_spikes, const OptTensor& grad_membrane, const OptTensor& grad_state,
      const Tensor& pre_reset, const Tensor& spikes, const Tensor& alpha, const OptTensor& alpha_syn,
      const Tensor& state, double threshold, int64_t ordering, int64_t reset, bool detach_reset, int64_t surrogate,
      double surrogate_param) {
    const char* op = "snnkern.lif_backward";
    auto g = prepare_backward(op, grad_spikes, grad_membrane, grad_state, pre_reset, spikes, alpha, alpha_syn,
                              state, true);
    Launcher::dispatch(alpha.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      using acc_t = at::opmath_type<scalar_t>;
      scan_backward<scalar_t>(g, make_config<acc_t>(op, threshold, ordering, reset, detach_reset, surrogate,
                                                    surrogate_param, present(alpha_syn)));
    });
    return g.results();
  }

  static std::tuple<Tensor, Tensor> leaky_forward(const Tensor& x, const Tensor& alpha, const OptTensor& alpha_syn,
                                                  const Tensor& state) {
    const char* op = "snnkern.leaky_forward";
    auto f = prepare_forward(op, x, alpha, alpha_syn, state, false, true, false);
    Launcher::dispatch(x.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      scan_forward<scalar_t>(f, leaky_config<at::opmath_type<scalar_t>>(present(alpha_syn)));
    });
    return {f.membrane, f.state_out};
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor> leaky_backward(
      const OptTensor& grad_membrane, const OptTensor& grad_state, const Tensor& membrane, const Tensor& alpha,
      const OptTensor& alpha_syn, const Tensor& state) {
    const char* op = "snnkern.leaky_backward";
    TORCH_CHECK(membrane.scalar_type() == alpha.scalar_type(), op, ": membrane has dtype ", membrane.scalar_type(),
                ", expected ", alpha.scalar_type());
    const auto pre_reset = membrane.to(opmath_type(membrane.scalar_type()));
    auto g = prepare_backward(op, OptTensor(), grad_membrane, grad_state, pre_reset, Tensor(), alpha, alpha_syn,
                              state, false);
    Launcher::dispatch(alpha.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      scan_backward<scalar_t>(g, leaky_config<at::opmath_type<scalar_t>>(present(alpha_syn)));
    });
    return g.results();
  }

  // The event-driven products with a mostly-zero spikes [M, K]: spikes @ other (other [K, N])
  // or, `transposed`, spikes^T @ other (other [M, N], the weight gradient of a projection).
  static Tensor spike_product(const char* op, const Tensor& spikes, const Tensor& other, bool transposed) {
    TORCH_CHECK(spikes.dim() == 2, op, ": spikes must be a matrix [rows, columns], got shape ", spikes.sizes());
    TORCH_CHECK(at::isFloatingType(spikes.scalar_type()), op, ": spikes must be floating point, got ",
                spikes.scalar_type());
    const int64_t inner = spikes.size(transposed ? 0 : 1), outer = spikes.size(transposed ? 1 : 0);
    TORCH_CHECK(other.dim() == 2 && other.size(0) == inner, op, ": other must have shape [", inner, ", *] (",
                transposed ? "its rows match the rows of spikes" : "its rows match the columns of spikes", "), got ",
                other.sizes());
    TORCH_CHECK(other.device() == spikes.device(), op, ": other is on ", other.device(), " but spikes is on ",
                spikes.device());
    TORCH_CHECK(other.scalar_type() == spikes.scalar_type(), op, ": other has dtype ", other.scalar_type(),
                ", expected the dtype of spikes, ", spikes.scalar_type());
    Tensor out = at::empty({outer, other.size(1)}, spikes.options());
    if (out.numel() == 0) return out;
    if (inner == 0) return out.zero_();
    if (transposed) {
      Launcher::spike_matmul_t_out(out, spikes.contiguous(), other.contiguous());
    } else {
      Launcher::spike_matmul_out(out, spikes.contiguous(), other.contiguous());
    }
    return out;
  }
  static Tensor spike_matmul(const Tensor& spikes, const Tensor& other) {
    return spike_product("snnkern.spike_matmul", spikes, other, false);
  }
  static Tensor spike_matmul_t(const Tensor& spikes, const Tensor& other) {
    return spike_product("snnkern.spike_matmul_t", spikes, other, true);
  }

  // The recurrent layer: the input of step t is x_t + z_{t-1} W^T, with z_{-1} = spikes0. Between
  // the one-step lane tasks the host adds that product (event-driven on the CPU, cuBLAS on
  // CUDA); the neuron state waits in memory, in the accumulate type.
  static std::tuple<Tensor, Tensor, Tensor, Tensor> recurrent_lif_forward(
      const Tensor& x, const Tensor& weight, const Tensor& alpha, const OptTensor& alpha_syn, const Tensor& state,
      const Tensor& spikes0, double threshold, int64_t ordering, int64_t reset, bool detach_reset,
      int64_t surrogate, double surrogate_param, bool record_membrane, bool save_for_backward) {
    const char* op = "snnkern.recurrent_lif_forward";
    auto f = prepare_forward(op, x, alpha, alpha_syn, state, true, record_membrane, save_for_backward);
    check_recurrent_args(op, weight, spikes0, x.options(), f.B, f.N);
    Launcher::dispatch(x.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      using acc_t = at::opmath_type<scalar_t>;
      const auto c = make_config<acc_t>(op, threshold, ordering, reset, detach_reset, surrogate, surrogate_param,
                                        present(alpha_syn));
      if (f.B * f.T * f.N == 0) return;
      const Tensor weight_t = weight.t().contiguous();  // [in, out]: the rows the spikes select
      const Tensor first_spikes = spikes0.contiguous();
      Tensor running = f.state.to(opmath_type(x.scalar_type()), /*non_blocking=*/false, /*copy=*/true);
      Tensor recurrent = at::empty({f.B, f.N}, x.options());
      Launcher::for_batch_chunks(f.B, [&](int64_t b0, int64_t b1) {
        auto rows = [&](const Tensor& t) { return t.narrow(0, b0, b1 - b0); };
        Tensor recurrent_rows = rows(recurrent);
        for (int64_t t = 0; t < f.T; ++t) {
          Launcher::spike_matmul_out(recurrent_rows, rows(t == 0 ? first_spikes : f.spikes.select(1, t - 1)),
                                     weight_t);
          Launcher::run(RecurrentStepForward<scalar_t, acc_t>{c, f.lanes<scalar_t, acc_t>(),
                                                              recurrent.data_ptr<scalar_t>(),
                                                              running.data_ptr<acc_t>(), f.B, f.T, f.N, t},
                        b0, b1, f.N, 1, x.device());
        }
      });
      f.state_out.copy_(running);
    });
    return {f.spikes, f.membrane, f.state_out, f.pre_reset};
  }

  // Returns grad_x, grad_weight, grad_alpha, grad_alpha_syn (empty without alpha_syn),
  // grad_state, grad_spikes0.
  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> recurrent_lif_backward(
      const OptTensor& grad_spikes, const OptTensor& grad_membrane, const OptTensor& grad_state,
      const Tensor& pre_reset, const Tensor& spikes, const Tensor& weight, const Tensor& alpha,
      const OptTensor& alpha_syn, const Tensor& state, const Tensor& spikes0, double threshold, int64_t ordering,
      int64_t reset, bool detach_reset, int64_t surrogate, double surrogate_param) {
    const char* op = "snnkern.recurrent_lif_backward";
    auto g = prepare_backward(op, grad_spikes, grad_membrane, grad_state, pre_reset, spikes, alpha, alpha_syn,
                              state, true);
    check_recurrent_args(op, weight, spikes0, alpha.options().device(pre_reset.device()), g.B, g.N);
    // Rows v, i, w of the state gradient, then the partial sums of the decays' gradients.
    Tensor carry = at::zeros({kStateSize + 2, g.B, g.N}, pre_reset.options());
    if (present(grad_state)) carry.narrow(0, 0, kStateSize).copy_(*grad_state);
    Launcher::dispatch(alpha.scalar_type(), op, [&](auto tag) {
      using scalar_t = decltype(tag);
      using acc_t = at::opmath_type<scalar_t>;
      const auto c = make_config<acc_t>(op, threshold, ordering, reset, detach_reset, surrogate, surrogate_param,
                                        present(alpha_syn));
      if (g.B * g.T * g.N == 0) return;
      Tensor recurrent = at::empty({g.B, g.N}, alpha.options());
      Launcher::for_batch_chunks(g.B, [&](int64_t b0, int64_t b1) {
        auto rows = [&](const Tensor& t) { return t.narrow(0, b0, b1 - b0); };
        Tensor recurrent_rows = rows(recurrent);
        for (int64_t t = g.T - 1; t >= 0; --t) {
          // dL/dz_t through the recurrent input of step t + 1: dL/dx_{t+1} W.
          if (t + 1 < g.T) at::mm_out(recurrent_rows, rows(g.grad_x.select(1, t + 1)), weight);
          Launcher::run(RecurrentStepBackward<scalar_t, acc_t>{c, g.lanes<scalar_t, acc_t>(),
                                                               t + 1 < g.T ? recurrent.data_ptr<scalar_t>() : nullptr,
                                                               carry.data_ptr<acc_t>(), g.B, g.T, g.N, t},
                        b0, b1, g.N, 1, alpha.device());
        }
      });
    });
    const auto dtype = alpha.scalar_type();
    Tensor grad_state0 = carry.narrow(0, 0, kStateSize).to(dtype);
    Tensor grad_alpha = carry.select(0, kStateSize).sum(0).to(dtype);
    Tensor grad_alpha_syn = present(alpha_syn) ? carry.select(0, kStateSize + 1).sum(0).to(dtype)
                                               : at::empty({0}, alpha.options());
    Tensor grad_weight = at::zeros({g.N, g.N}, alpha.options());
    Tensor grad_spikes0 = at::zeros_like(spikes0);
    if (g.B * g.T * g.N > 0) {
      // dL/dW = sum over b, t of dL/dx_t^T z_{t-1}: its transpose is one event-driven product of
      // the spikes one step back (spikes0 first) with dL/dx, over all B * T rows.
      const Tensor previous = at::cat({spikes0.unsqueeze(1), g.spikes.narrow(1, 0, g.T - 1)}, 1);
      Tensor weight_grad_t = at::empty({g.N, g.N}, alpha.options());
      Launcher::spike_matmul_t_out(weight_grad_t, previous.view({-1, g.N}), g.grad_x.view({-1, g.N}));
      grad_weight = weight_grad_t.t().contiguous();
      grad_spikes0 = g.grad_x.select(1, 0).mm(weight);
    }
    return {g.grad_x, grad_weight, grad_alpha, grad_alpha_syn, grad_state0, grad_spikes0};
  }
};

}  // namespace snnkern
