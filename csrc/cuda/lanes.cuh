// The one CUDA kernel: thread k of a launch runs run_lane (csrc/lanes.h), a lane task of lif.h
// for one neuron. Only lanes.cu, which instantiates it for every lane task and dtype, is compiled
// by nvcc; the host side (launcher.h, the ops) is plain C++ that calls launch_lanes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace snnkern {

// Launches the lanes of `task` for batch rows [b0, b0 + rows), N neurons each, on `stream`.
template <class Task>
void launch_lanes(const Task& task, int64_t b0, int64_t rows, int64_t N, cudaStream_t stream);

// Launches a row task of the recurrent op (recurrent_rows.h): one block per batch row, one
// thread per neuron (N <= kMaxRowThreads), `shared_bytes` of shared memory, the weights copied
// into it when `weights_in_shared`.
template <class Task>
void launch_rows(const Task& task, bool weights_in_shared, int64_t shared_bytes, cudaStream_t stream);

}  // namespace snnkern
