"""torch.func over the ops. vmap works with both backends; grad and vjp work through the
reference backend and, through the fused kernels (whose autograd comes from torch.library, which
torch.func does not support), fail with an error that names snnkern and says what to use."""

import pytest
import torch
from torch.func import grad, vjp, vmap

import snnkern
from helpers import everywhere, make_recurrent_case


def _ops(case, weight, spikes0, backend):
    """Each op as a function of x alone, returning a float tensor."""
    common = dict(alpha_syn=case.alpha_syn, state=case.state, backend=backend)
    return {
        "lif": lambda x: snnkern.lif(x, case.alpha, return_membrane=True, **common).membrane,
        "leaky": lambda x: snnkern.leaky(x, case.alpha, **common).membrane,
        "recurrent_lif": lambda x: (
            snnkern.recurrent_lif(x, weight, case.alpha, spikes=spikes0, return_membrane=True, **common).membrane
        ),
        "spike_linear": lambda x: snnkern.spike_linear(x, weight, backend=backend),
    }


def _detached_case(where, seed=3):
    case, weight, spikes0 = make_recurrent_case(2, 5, 4, torch.float64, where.device, seed=seed, requires_grad=False)
    return case, weight, spikes0


@everywhere
@pytest.mark.parametrize("op", ["lif", "leaky", "recurrent_lif", "spike_linear"])
def test_grad_through_fused_ops_names_snnkern(op, where):
    case, weight, spikes0 = _detached_case(where)
    fn = _ops(case, weight, spikes0, "compiled")[op]
    with pytest.raises(RuntimeError, match=rf"snnkern\.{op}: torch\.func .*backend='reference'"):
        grad(lambda x: fn(x).sum())(case.x)


@pytest.mark.parametrize("op", ["lif", "leaky", "recurrent_lif", "spike_linear"])
def test_grad_and_vjp_through_the_reference_match_autograd(op):
    case, weight, spikes0 = make_recurrent_case(2, 5, 4, torch.float64, seed=4, requires_grad=False)
    fn = _ops(case, weight, spikes0, "reference")[op]
    x = case.x.clone().requires_grad_()
    out = fn(x)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    (want,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(grad(lambda v: (fn(v) * upstream).sum())(case.x), want)
    _, pullback = vjp(fn, case.x)
    torch.testing.assert_close(pullback(upstream)[0], want)


@everywhere
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("op", ["lif", "leaky", "recurrent_lif", "spike_linear"])
def test_vmap_equals_a_loop(op, backend, where):
    case, weight, spikes0 = _detached_case(where, seed=6)
    fn = _ops(case, weight, spikes0, backend)[op]
    g = torch.Generator().manual_seed(7)
    xs = (torch.randn(3, *case.x.shape, generator=g, dtype=torch.float64) * 0.6 + 0.3).to(where.device)
    torch.testing.assert_close(vmap(fn)(xs), torch.stack([fn(x) for x in xs]), rtol=0, atol=0)
