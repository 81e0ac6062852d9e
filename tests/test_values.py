"""Values: the checks that read them hold under torch.compile too, and what the ops do with
non-finite inputs and weights (docs/precision.md, "Non-finite values")."""

import itertools
import math

import pytest
import torch

import snnkern
from helpers import TOL, everywhere, upstream_like
from snnkern.surrogate import Exponential, Triangle

F64 = torch.float64
B, T, N = 2, 6, 3


def _x(where, dtype=torch.float32):
    return (torch.randn(B, T, N, generator=torch.Generator().manual_seed(0)) + 0.5).to(dtype=dtype, device=where.device)


def _decay_tensor(where, bad):
    return torch.tensor([0.5, bad, 0.9], device=where.device)


def _threshold_tensor(where, bad):
    return torch.tensor([1.0, bad, 0.5], device=where.device)


CASES = {
    # name: (function of (where, value) -> kwargs of the call, bad values, expected message)
    "alpha": (
        lambda where, v: {"alpha": _decay_tensor(where, v)},
        [1.5, -0.1, math.nan],
        r"alpha must lie in \[0, 1\] \(a decay exp\(-dt/tau\)\); got values outside, NaN or inf",
    ),
    "alpha_syn": (
        lambda where, v: {"alpha_syn": _decay_tensor(where, v)},
        [2.0, math.nan],
        r"alpha_syn must lie in \[0, 1\] \(a decay exp\(-dt/tau\)\); got values outside, NaN or inf",
    ),
    "threshold": (
        lambda where, v: {"threshold": _threshold_tensor(where, v)},
        [math.nan, math.inf],
        r"threshold must be finite; got NaN or inf values",
    ),
    "threshold_triangle": (
        lambda where, v: {"threshold": _threshold_tensor(where, v), "surrogate": Triangle()},
        [0.0, -1.0],
        r"threshold must be > 0 for the Triangle surrogate, whose width scales with it; got values <= 0",
    ),
    "threshold_exponential": (
        lambda where, v: {"threshold": _threshold_tensor(where, v), "surrogate": Exponential()},
        [-0.5],
        r"threshold must be > 0 for the Exponential surrogate, whose width scales with it; got values <= 0",
    ),
    "threshold_multi": (
        lambda where, v: {"threshold": _threshold_tensor(where, v), "spike": "multi", "reset": "subtract"},
        [-0.5],
        r"threshold must be > 0 for spike='multi' \(spike counts are membrane // threshold\); got values <= 0",
    ),
}
PARAMS = [
    pytest.param(op, name, value, id=f"{op}-{name}-{value}")
    for name, (_, values, _) in CASES.items()
    for value in values
    for op in (("lif", "recurrent_lif", "leaky") if name in ("alpha", "alpha_syn") else ("lif", "recurrent_lif"))
]


def _call(op, x, kwargs):
    kwargs = dict(kwargs)
    alpha = kwargs.pop("alpha", 0.9)
    if op == "lif":
        return snnkern.lif(x, alpha, **kwargs).state
    if op == "leaky":
        return snnkern.leaky(x, alpha, **kwargs).state
    weight = torch.zeros(N, N, device=x.device)
    return snnkern.recurrent_lif(x, weight, alpha, **kwargs).state


@everywhere
@pytest.mark.parametrize("op, name, value", PARAMS)
def test_value_checks_hold_under_compile(op, name, value, where):
    """Every value check that eager python makes is made by the op itself in compiled code (where
    python sees no values), with the same message."""
    make_kwargs, _, message = CASES[name]
    kwargs = make_kwargs(where, value)
    x = _x(where)
    with pytest.raises(ValueError, match=message):
        _call(op, x, kwargs)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, **kw: _call(op, x, kw), fullgraph=True, backend="aot_eager")
    with pytest.raises(ValueError, match=message):
        compiled(x, **kwargs)


@everywhere
def test_value_checks_under_inductor(where):
    """The same with torch.compile's default backend (the op runs from inductor's generated code)."""
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, alpha: snnkern.lif(x, alpha).spikes, fullgraph=True)
    x, good = _x(where), torch.full((N,), 0.8, device=where.device)
    torch.testing.assert_close(compiled(x, good), snnkern.lif(x, good).spikes)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        compiled(x, _decay_tensor(where, 1.5))


# --------------------------------------------------------------------------------------------
# Non-finite inputs
# --------------------------------------------------------------------------------------------

GRID = list(
    itertools.product(("delayed", "spike_first", "update_first", "charge_first"), ("zero", "subtract", "none"), (0, 1))
)


@everywhere
@pytest.mark.parametrize("ordering, reset, syn", GRID, ids=[f"{o}-{r}-syn{s}" for o, r, s in GRID])
def test_infinite_input_current(ordering, reset, syn, where):
    """A -inf input current (a neuron clamped far below threshold) gives the reference's spikes,
    and gradients that are finite wherever the reference's are, and equal to them there: it never
    spreads NaN over the sample (a zero gradient times an infinite partial counts as zero, as
    autograd skips a product whose gradient is absent)."""
    g = torch.Generator().manual_seed(3)
    x0 = (torch.randn(B, T, N, generator=g, dtype=F64) * 0.8 + 0.5).to(where.device)
    x0[0, 2, 1] = -math.inf
    results = {}
    for backend in ("reference", "compiled"):
        x = x0.clone().requires_grad_()
        res = snnkern.lif(x, 0.9, alpha_syn=0.8 if syn else None, ordering=ordering, reset=reset, backend=backend)
        (grad_x,) = torch.autograd.grad((res.spikes * upstream_like(res.spikes, 1)).sum(), [x])
        results[backend] = res.spikes, grad_x
    (want_spikes, want_grad), (got_spikes, got_grad) = results["reference"], results["compiled"]
    assert torch.equal(got_spikes, want_spikes)
    finite = want_grad.isfinite()
    assert got_grad[finite].isfinite().all()
    torch.testing.assert_close(got_grad[finite], want_grad[finite], **TOL[F64])
    # Only the neuron that got the -inf can have non-finite gradients, in either backend.
    others = torch.ones_like(finite)
    others[0, :, 1] = False
    assert finite[others].all() and got_grad[others].isfinite().all()
    if reset != "zero":  # no product of the infinite membrane with anything: all finite
        assert finite.all() and got_grad.isfinite().all()


@everywhere
@pytest.mark.parametrize("value", [math.inf, math.nan], ids=["inf", "nan"])
@pytest.mark.parametrize("ordering", ["spike_first", "charge_first"])
def test_non_finite_forward_matches_the_reference(value, ordering, where):
    """+inf and NaN currents propagate through the membrane as in the reference loops."""
    x = (torch.randn(B, T, N, generator=torch.Generator().manual_seed(5), dtype=F64) + 0.5).to(where.device)
    x[1, 3, 0] = value
    for reset in ("zero", "subtract", "none"):
        want = snnkern.lif(x, 0.9, ordering=ordering, reset=reset, return_membrane=True, backend="reference")
        got = snnkern.lif(x, 0.9, ordering=ordering, reset=reset, return_membrane=True)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, equal_nan=True, **TOL[F64])


@pytest.mark.parametrize(
    "where, skips_zeros",
    [pytest.param("cpu", True, id="cpu"), pytest.param("emulated", False, id="emulated")],
    indirect=["where"],
)
def test_spike_linear_non_finite_weights(where, skips_zeros):
    """The CPU product is event-driven: a zero input entry does no work, so an inf or NaN weight
    it meets contributes nothing (IEEE arithmetic, as in F.linear and cuBLAS, gives NaN for
    0 * inf). A nonzero entry meets it as in F.linear. On CUDA (and its emulation) the product
    is dense and follows IEEE arithmetic."""
    weight = torch.tensor([[math.inf, 2.0], [math.nan, 3.0]], device=where.device)
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]], device=where.device)
    got = snnkern.spike_linear(x, weight)
    dense = torch.nn.functional.linear(x, weight)
    assert torch.equal(got[1].isnan(), dense[1].isnan()) and got[1, 0] == math.inf
    if skips_zeros:
        assert torch.equal(got[0], torch.tensor([2.0, 3.0], device=where.device))
    else:
        assert got[0].isnan().all() and dense[0].isnan().all()
