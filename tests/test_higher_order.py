"""Gradients of gradients. The fused scans refuse a second backward with an error that names snnkern
and the reference backend (autograd would otherwise warn and return zeros); the spike products,
whose derivatives are products again, support it exactly (gradgradcheck in float64)."""

import pytest
import torch

import snnkern
from helpers import everywhere, make_case, make_recurrent_case


def _second_backward(first_output: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(first_output.sum(), leaf, create_graph=True)
    (h,) = torch.autograd.grad((g * g).sum(), leaf)
    return h


@everywhere
@pytest.mark.parametrize("op", ["lif", "leaky", "recurrent_lif"])
def test_fused_scans_refuse_double_backward(op, where):
    case, weight, spikes0 = make_recurrent_case(2, 6, 4, torch.float64, where.device, seed=3)
    if op == "lif":
        out = snnkern.lif(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, return_membrane=True).membrane
    elif op == "leaky":
        out = snnkern.leaky(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state).membrane
    else:
        out = snnkern.recurrent_lif(
            case.x,
            weight,
            case.alpha,
            alpha_syn=case.alpha_syn,
            state=case.state,
            spikes=spikes0,
            return_membrane=True,
        ).membrane
    with pytest.raises(RuntimeError, match=rf"snnkern\.{op}: gradients of gradients .*backend='reference'"):
        _second_backward(out, case.alpha)


@everywhere
def test_first_order_with_create_graph_still_works(where):
    """create_graph=True alone (e.g. a gradient penalty that is never differentiated) is fine."""
    case = make_case(2, 6, 4, torch.float64, where.device, seed=4)
    out = snnkern.lif(case.x, case.alpha, state=case.state, return_membrane=True).membrane
    (g,) = torch.autograd.grad(out.sum(), case.alpha, create_graph=True)
    ref = snnkern.lif(case.x, case.alpha, state=case.state, return_membrane=True, backend="reference").membrane
    (g_ref,) = torch.autograd.grad(ref.sum(), case.alpha)
    torch.testing.assert_close(g.detach(), g_ref)


def test_reference_supports_double_backward():
    """What the error message recommends works."""
    case = make_case(2, 6, 4, torch.float64, seed=5)
    out = snnkern.lif(case.x, case.alpha, state=case.state, return_membrane=True, backend="reference").membrane
    h = _second_backward(out, case.alpha)
    assert torch.isfinite(h).all() and h.abs().sum() > 0


@everywhere
@pytest.mark.parametrize("op", ["spike_matmul", "spike_matmul_t"])
def test_spike_products_gradgradcheck(op, where):
    g = torch.Generator().manual_seed(6)
    spikes = (torch.rand(5, 4, generator=g) < 0.4).double().to(where.device).requires_grad_()
    rows = 5 if op == "spike_matmul_t" else 4
    other = torch.randn(rows, 3, generator=g, dtype=torch.float64).to(where.device).requires_grad_()
    fn = getattr(torch.ops.snnkern, op)
    assert torch.autograd.gradgradcheck(fn, (spikes, other))


@everywhere
def test_spike_linear_second_order_matches_dense(where):
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(3, 5, 6, generator=g) < 0.3).double().to(where.device).requires_grad_()
    weight = torch.randn(4, 6, generator=g, dtype=torch.float64).to(where.device).requires_grad_()
    got = _second_backward(snnkern.spike_linear(x, weight) ** 2, weight)
    want = _second_backward(torch.nn.functional.linear(x, weight) ** 2, weight)
    torch.testing.assert_close(got, want)
