"""Results do not depend on the number of CPU threads: every op's outputs and gradients are the
same bit for bit with 1, 2 and 3 threads (a run resumed on a machine with another core count
must not diverge). The shapes split the batch, the neurons and the rows of the spike products
between threads."""

import pytest
import torch

import snnkern
from helpers import make_recurrent_case


def _all_ops(dtype):
    case, weight, spikes0 = make_recurrent_case(37, 20, 70, dtype, "cpu", seed=1)
    leaves = [case.x, case.alpha, case.alpha_syn, case.state]
    results = {}
    r = snnkern.lif(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, return_membrane=True)
    loss = r.membrane.sum() + 0.3 * r.spikes.sum() + r.state.sum()
    results["lif"] = [r.spikes, r.membrane, r.state, *torch.autograd.grad(loss, leaves)]
    r = snnkern.leaky(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state)
    results["leaky"] = [r.membrane, r.state, *torch.autograd.grad(r.membrane.sum() + r.state.sum(), leaves)]
    r = snnkern.recurrent_lif(
        case.x, weight, case.alpha, alpha_syn=case.alpha_syn, state=case.state, spikes=spikes0, return_membrane=True
    )
    loss = r.membrane.sum() + r.state.sum()
    results["recurrent_lif"] = [r.spikes, r.membrane, r.state, *torch.autograd.grad(loss, [*leaves, weight, spikes0])]
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(3000, 64, generator=g) < 0.1).to(dtype).requires_grad_()
    w = torch.randn(50, 64, generator=g, dtype=dtype).requires_grad_()
    y = snnkern.spike_linear(x, w)
    results["spike_linear"] = [y, *torch.autograd.grad((y * y).sum(), [x, w])]
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_every_op_is_independent_of_the_thread_count(dtype):
    original = torch.get_num_threads()
    try:
        runs = {}
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs[threads] = _all_ops(dtype)
    finally:
        torch.set_num_threads(original)
    for threads in (2, 3):
        for op, tensors in runs[1].items():
            for k, (want, got) in enumerate(zip(tensors, runs[threads][op], strict=True)):
                assert torch.equal(got, want), f"{op}, output {k}: {threads} threads differ from 1 thread"
