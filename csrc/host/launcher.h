// The contract between the op orchestration (ops.h) and a backend: a Launcher runs lane tasks
// of lif.h over a batch and provides the few dense pieces the recurrent op needs. Backends:
// csrc/cpu/launcher.h (SIMD vectors of neurons), csrc/cuda/launcher.cuh (one thread per neuron)
// and csrc/emulated/launcher.h (the CUDA threads' lane code run on the host, for tests).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <concepts>
#include <cstdint>

#include "../lif.h"
#include "../recurrent_rows.h"

namespace snnkern {

// A lane task with nothing to do: stands in for the lane tasks of lif.h in the concept below.
struct AnyLaneTask {
  using scalar_type = float;
  using acc_type = float;
  template <class V, class M, class IO>
  SNN_HD void run(int64_t /*b*/, int64_t /*n*/, const IO& /*io*/) const {}
};

// Stand-ins for the callables the launchers take (nvcc rejects lambdas in a requires-expression).
struct AnyChunkFunction {
  void operator()(int64_t /*b0*/, int64_t /*b1*/) const {}
};
struct AnyDtypeFunction {
  template <class scalar_t>
  void operator()(scalar_t /*tag*/) const {}
};

template <class L>
concept Launcher = requires(const AnyLaneTask& task, int64_t b, int64_t n, at::Device device, at::Tensor& out,
                            const at::Tensor& t, AnyChunkFunction chunk, AnyDtypeFunction with_dtype,
                            const RecurrentRowsForward<float, float>& rows_forward,
                            const RecurrentRowsBackward<float, float>& rows_backward) {
  // Runs `task` for every neuron n < N of the batch rows b0 <= b < b1; each call covers `steps`
  // time steps (a hint for the work per call).
  { L::run(task, b, b, n, n, device) } -> std::same_as<void>;
  // Calls f(b0, b1) over chunks covering the batch [0, B): the recurrent op's time loop runs
  // once per chunk (CPU: chunks that depend on B only, in parallel, with no synchronisation
  // between steps; CUDA and its emulation: the whole batch, each step a launch over all of it).
  { L::for_batch_chunks(b, chunk) } -> std::same_as<void>;
  // Calls f(scalar_t{}) for the storage type of the tensors (or raises for one it lacks).
  { L::dispatch(at::kFloat, "op", with_dtype) } -> std::same_as<void>;
  // out = spikes @ other: rows of spikes strided (unit column stride), other contiguous, rows of
  // out contiguous; single-threaded when called inside for_batch_chunks. The last argument, the
  // events of spikes (spike_events; optional), may stand in for a scan of spikes.
  { L::spike_matmul_out(out, t, t) } -> std::same_as<void>;
  { L::spike_matmul_out(out, t, t, t) } -> std::same_as<void>;
  // out = spikes^T @ other, all contiguous; events as above.
  { L::spike_matmul_t_out(out, t, t) } -> std::same_as<void>;
  { L::spike_matmul_t_out(out, t, t, t) } -> std::same_as<void>;
  // events [M, ceil(K / 32) + 1] int32 = the events of spikes [M, K] (csrc/cpu/spike_matmul.h).
  { L::spike_events_out(out, t) } -> std::same_as<void>;
  // The recurrent weight gradient, transposed: out [N, N] = sum over b, t of z_{b,t-1}^T
  // dL/dx_{b,t} with z_{b,-1} = spikes0 (args: out, spikes0 [B, N], spikes, grad_x [B, T, N]).
  { L::recurrent_weight_grad_t(out, t, t, t) } -> std::same_as<void>;
  // Runs a row task of the recurrent op (recurrent_rows.h) over the whole batch; false, having
  // done nothing, for a shape the backend's row tasks do not take (the op then runs per step).
  { L::run_rows(rows_forward, device) } -> std::same_as<bool>;
  { L::run_rows(rows_backward, device) } -> std::same_as<bool>;
  // Whether the backward row task also forms the weight gradient (RecurrentRowsBackward).
  { std::bool_constant<L::kRowsFormWeightGrad>{} };
  // Whether the op may read tensor values on the host now (value checks; CUDA: not while a
  // CUDA graph is being captured, where reading a value would break the capture).
  { L::values_readable(device) } -> std::same_as<bool>;
};

}  // namespace snnkern
