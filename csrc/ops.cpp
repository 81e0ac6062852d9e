// The op schemas, defined once, and the python module snnkern._C. Implementations: csrc/cpu
// (CPU, and the emulated CUDA lanes) and csrc/cuda (CUDA); autograd and fake kernels: snnkern/ops.py.
#include <torch/extension.h>
#include <torch/library.h>

#include <atomic>

#include "lif.h"

using namespace pybind11::literals;

// The options of every scan op, in this order (csrc/lif.h, LifConfig).
#define SNNKERN_OPTIONS                                                                                            \
  "int ordering, int reset, float v_reset, float v_leak, bool detach_reset, bool current_first, bool multispike, " \
  "int surrogate, float surrogate_param, int refractory"

TORCH_LIBRARY(snnkern, m) {
  // x [B, T, N]; alpha, alpha_syn, threshold [N]; adaptation [2, N] (rows decay, strength; None:
  // no adaptation); state [3, B, N] ([5, B, N] with adaptation or refractory > 0): decays,
  // thresholds and state in the accumulate type (float64 for float64 x, float32 otherwise). The
  // options (the same for every scan, csrc/lif.h): ordering, reset, v_reset, v_leak, detach_reset,
  // current_first, multispike, surrogate, surrogate_param, refractory. Returns spikes, membrane
  // (empty unless record_membrane), the final state and what backward needs (empty unless
  // save_for_backward; in the accumulate type): the pre-reset membrane [B, T, N], or with
  // adaptation or refractory > 0 [3, B, T, N], the pre-reset membrane, a_t and c_t.
  // check_values: the op checks the values of alpha, alpha_syn and threshold itself (python
  // asks for it under torch.compile, where it cannot read them; csrc/host/checks.h).
  m.def("lif_forward(Tensor x, Tensor alpha, Tensor? alpha_syn, Tensor threshold, Tensor? adaptation, Tensor "
        "state, " SNNKERN_OPTIONS
        ", bool record_membrane, bool save_for_backward, bool check_values) -> (Tensor, Tensor, Tensor, Tensor)");
  // Returns grad_x, grad_alpha [N], grad_alpha_syn [N] (empty without alpha_syn), grad_threshold [N],
  // grad_adaptation [2, N] (empty without adaptation), grad_state.
  m.def("lif_backward(Tensor? grad_spikes, Tensor? grad_membrane, Tensor? grad_state, Tensor pre_reset, "
        "Tensor spikes, Tensor alpha, Tensor? alpha_syn, Tensor threshold, Tensor? adaptation, Tensor "
        "state, " SNNKERN_OPTIONS ") -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Non-spiking leaky integrator: returns the membrane after each step, the final state and, for
  // float16/bfloat16 x with save_for_backward, the membrane in the accumulate type for backward
  // (empty otherwise: a float32/float64 trace is its own accumulate-type copy).
  m.def("leaky_forward(Tensor x, Tensor alpha, Tensor? alpha_syn, Tensor state, bool save_for_backward, "
        "bool check_values) -> (Tensor, Tensor, Tensor)");
  // Returns grad_x (of dtype `dtype`, the dtype of x), grad_alpha, grad_alpha_syn, grad_state.
  m.def("leaky_backward(Tensor? grad_membrane, Tensor? grad_state, Tensor saved_membrane, Tensor alpha, "
        "Tensor? alpha_syn, Tensor state, ScalarType dtype) -> (Tensor, Tensor, Tensor, Tensor)");
  // Recurrent LIF layer: the input of step t is x_t + spikes_{t-1} weight^T (weight [N, N],
  // [out, in]), with spikes_{-1} = spikes0 [B, N]. Outputs as lif_forward.
  m.def("recurrent_lif_forward(Tensor x, Tensor weight, Tensor alpha, Tensor? alpha_syn, Tensor threshold, "
        "Tensor? adaptation, Tensor state, Tensor spikes0, " SNNKERN_OPTIONS
        ", bool record_membrane, bool save_for_backward, bool check_values) -> (Tensor, Tensor, Tensor, Tensor)");
  // Returns grad_x, grad_weight, grad_alpha, grad_alpha_syn (empty without alpha_syn), grad_threshold,
  // grad_adaptation (empty without adaptation), grad_state, grad_spikes0.
  m.def("recurrent_lif_backward(Tensor? grad_spikes, Tensor? grad_membrane, Tensor? grad_state, "
        "Tensor pre_reset, Tensor spikes, Tensor weight, Tensor alpha, Tensor? alpha_syn, Tensor threshold, "
        "Tensor? adaptation, Tensor state, Tensor spikes0, " SNNKERN_OPTIONS
        ") -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Products with a mostly-zero spikes [M, K], in which only its nonzeros do work (event-driven
  // on the CPU; cuBLAS on CUDA): spikes @ other (other [K, N]) and spikes^T @ other (other [M, N]).
  // events: spike_events(spikes), optional; the CPU kernels read the nonzeros of its binary rows
  // there instead of scanning spikes (the result is the same).
  m.def("spike_matmul(Tensor spikes, Tensor other, Tensor? events=None) -> Tensor");
  m.def("spike_matmul_t(Tensor spikes, Tensor other, Tensor? events=None) -> Tensor");
  // The nonzeros of spikes [M, K] as bits, int32 [M, ceil(K / 32) + 1]: bit j of word w of row m
  // set where spikes[m, 32 w + j] != 0, and a last word 1 where the row holds only 0 and 1 (a row
  // with other values: all words 0). Made once, read by both products of a projection.
  m.def("spike_events(Tensor spikes) -> Tensor");
}

// ------------------------------------------------------------------------------------------------
// e-prop (csrc/eprop.h; python: snnkern/eprop.py)
// ------------------------------------------------------------------------------------------------
TORCH_LIBRARY_FRAGMENT(snnkern, m) {
  // The weight gradient [N, P] of e-prop's eligibility traces: psi [B, T, N] the pseudo-derivatives
  // of the spikes, presynaptic_trace [B, T, P] the inputs filtered with the membrane decay,
  // learning_signal [B, T, N] (its terms are filtered with kappa, the readout's decay), rate_signal
  // [B, T, N] or None (unfiltered), adaptation_strength and adaptation_decay [N] in the accumulate
  // type. The sequences share one dtype, which the result has; the sum over the batch is in order.
  m.def("eprop_weight_grad(Tensor psi, Tensor presynaptic_trace, Tensor learning_signal, Tensor? rate_signal, "
        "Tensor adaptation_strength, Tensor adaptation_decay, float kappa) -> Tensor");
}

namespace {

std::atomic<bool> emulation{false};
std::atomic<bool> per_step{false};

}  // namespace

namespace snnkern {
bool cuda_lane_emulation() { return emulation.load(std::memory_order_relaxed); }
void set_cuda_lane_emulation(bool on) { emulation.store(on, std::memory_order_relaxed); }
bool recurrent_per_step() { return per_step.load(std::memory_order_relaxed); }
void set_recurrent_per_step(bool on) { per_step.store(on, std::memory_order_relaxed); }
}  // namespace snnkern

// What the build compiled (setup.py passes it as bare tokens: cpu=...,openmp=...,cuda=...).
#define SNNKERN_STRINGIFY(...) #__VA_ARGS__
#define SNNKERN_STRING(...) SNNKERN_STRINGIFY(__VA_ARGS__)
#ifdef SNNKERN_BUILD_INFO
constexpr const char* kBuildInfo = SNNKERN_STRING(SNNKERN_BUILD_INFO);
#else
constexpr const char* kBuildInfo = "unknown";
#endif

// The option codes the kernels switch on (csrc/lif.h), by the names the python API takes: the
// one place where names meet codes. snnkern/_checks.py maps names through these tables.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace snnkern;
#ifdef SNNKERN_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("build_info") = kBuildInfo;
  m.attr("ORDERINGS") = py::dict("delayed"_a = int(kDelayed), "spike_first"_a = int(kSpikeFirst),
                                 "update_first"_a = int(kUpdateFirst), "charge_first"_a = int(kChargeFirst));
  m.attr("RESETS") = py::dict("zero"_a = int(kResetZero), "subtract"_a = int(kResetSubtract),
                              "none"_a = int(kResetNone));
  m.attr("SURROGATES") = py::dict("sigmoid"_a = int(kSigmoid), "fast_sigmoid"_a = int(kFastSigmoid),
                                  "triangle"_a = int(kTriangle), "atan"_a = int(kATan),
                                  "exponential"_a = int(kExponential));
  m.attr("STATE_ROWS") = py::dict("v"_a = int(kV), "i"_a = int(kI), "w"_a = int(kW));
  m.attr("STATE_SIZE") = int(kStateSize);
  m.attr("ADAPTIVE_STATE_ROWS") = py::dict("a"_a = int(kA), "refractory"_a = int(kRefractory));
  m.attr("ADAPTIVE_STATE_SIZE") = int(kAdaptiveStateSize);
  m.def("_set_cuda_lane_emulation", &set_cuda_lane_emulation,
        "While on, the CPU ops run the CUDA kernels' lane code on the host (a test backend).");
  m.def("_cuda_lane_emulation", &cuda_lane_emulation);
  m.def("_set_recurrent_per_step", &set_recurrent_per_step,
        "While on, the recurrent op runs one task per time step instead of its row tasks (tests, benchmarks).");
  m.def("_recurrent_per_step", &recurrent_per_step);
}
