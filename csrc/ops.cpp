// The op schemas, defined once. Implementations: csrc/cpu (CPU) and csrc/cuda (CUDA);
// autograd and fake kernels: snnkern/ops.py.
#include <torch/extension.h>
#include <torch/library.h>

TORCH_LIBRARY(snnkern, m) {
  // x [B, T, N]; alpha, alpha_syn [N]; state [3, B, N]. Returns spikes, membrane (empty unless
  // record_membrane), the final state and the pre-reset membrane saved for backward (empty
  // unless save_for_backward; float32 for float32/16 inputs, float64 for float64).
  m.def("lif_forward(Tensor x, Tensor alpha, Tensor? alpha_syn, Tensor state, float threshold, int ordering, "
        "int reset, bool detach_reset, int surrogate, float surrogate_param, bool record_membrane, "
        "bool save_for_backward) -> (Tensor, Tensor, Tensor, Tensor)");
  // Returns grad_x, grad_alpha [N], grad_alpha_syn [N] (empty without alpha_syn), grad_state.
  m.def("lif_backward(Tensor? grad_spikes, Tensor? grad_membrane, Tensor? grad_state, Tensor pre_reset, "
        "Tensor spikes, Tensor alpha, Tensor? alpha_syn, Tensor state, float threshold, int ordering, int reset, "
        "bool detach_reset, int surrogate, float surrogate_param) -> (Tensor, Tensor, Tensor, Tensor)");
  // Non-spiking leaky integrator: returns the membrane after each step and the final state.
  m.def("leaky_forward(Tensor x, Tensor alpha, Tensor? alpha_syn, Tensor state) -> (Tensor, Tensor)");
  m.def("leaky_backward(Tensor? grad_membrane, Tensor? grad_state, Tensor membrane, Tensor alpha, "
        "Tensor? alpha_syn, Tensor state) -> (Tensor, Tensor, Tensor, Tensor)");
  // Recurrent LIF layer: the input of step t is x_t + spikes_{t-1} weight^T (weight [N, N],
  // [out, in]), with spikes_{-1} = spikes0 [B, N]. Outputs as lif_forward.
  m.def("recurrent_lif_forward(Tensor x, Tensor weight, Tensor alpha, Tensor? alpha_syn, Tensor state, "
        "Tensor spikes0, float threshold, int ordering, int reset, bool detach_reset, int surrogate, "
        "float surrogate_param, bool record_membrane, bool save_for_backward) -> (Tensor, Tensor, Tensor, Tensor)");
  // Returns grad_x, grad_weight, grad_alpha, grad_alpha_syn (empty without alpha_syn), grad_state, grad_spikes0.
  m.def("recurrent_lif_backward(Tensor? grad_spikes, Tensor? grad_membrane, Tensor? grad_state, "
        "Tensor pre_reset, Tensor spikes, Tensor weight, Tensor alpha, Tensor? alpha_syn, Tensor state, "
        "Tensor spikes0, float threshold, int ordering, int reset, bool detach_reset, int surrogate, "
        "float surrogate_param) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Products with a mostly-zero spikes [M, K], in which only its nonzeros do work (event-driven
  // on the CPU; cuBLAS on CUDA): spikes @ other (other [K, N]) and spikes^T @ other (other [M, N]).
  m.def("spike_matmul(Tensor spikes, Tensor other) -> Tensor");
  m.def("spike_matmul_t(Tensor spikes, Tensor other) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
#ifdef SNNKERN_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
