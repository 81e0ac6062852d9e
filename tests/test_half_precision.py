"""float16 and bfloat16 through the CUDA build's lane code: the emulated lanes on every machine,
and CUDA where present (the ``where`` fixture, tests/helpers.py). The CPU kernels refuse half
precision (test_bad_input.test_half_precision_x_on_cpu_kernels).

The contract: for a float16/bfloat16 ``x`` the kernels compute in float32, and the decays
(``alpha``, ``alpha_syn``), the state in and out and their gradients stay float32; only the
sequences (x, spikes, membrane, grad_x; for recurrent_lif the weight and the initial spikes too)
use the storage dtype. So the float32 reference on the same inputs (x exactly upcast; the same
float32 decays and state; the same upstream gradients) gives the same spikes bit for bit, the
same float32 state, and a membrane that differs only by its rounding to the storage dtype.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import snnkern
from helpers import (
    LOW_DTYPES,
    LOW_TOL,
    ORDERINGS,
    RESETS,
    SURROGATES,
    TOL,
    Case,
    assert_opcheck,
    assert_same,
    assert_same_scaled,
    clone_case,
    clone_leaf,
    make_case,
    make_recurrent_case,
    on_lanes,
    run_leaky,
    run_lif,
    run_recurrent,
    spike_rate,
    upstream_like,
)
from snnkern._checks import prepare_lif_args

F32 = torch.float32


def _ulp(t: torch.Tensor) -> torch.Tensor:
    """The spacing of the values of ``t``'s dtype (float16/bfloat16) at each |t|, as float32."""
    info = torch.finfo(t.dtype)
    _, exponent = torch.frexp(t.float())  # |t| = m 2^e with m in [0.5, 1)
    return torch.maximum(
        torch.ldexp(torch.ones_like(t, dtype=F32), exponent - 1) * info.eps,
        torch.full_like(t, info.tiny * info.eps, dtype=F32),
    )


def assert_rounded(got: torch.Tensor, want: torch.Tensor, key: str, ulps: int = 1):
    """``got`` (float16/bfloat16) is ``want`` (float32) rounded to got's dtype, within ``ulps``
    units in the last place: the float32 values the kernel rounds may differ from the
    reference's in their last float32 bits (another evaluation order, fused multiply-adds), which
    can move a value across a rounding boundary of the storage dtype."""
    assert got.dtype in (torch.float16, torch.bfloat16) and want.dtype == F32, key
    rounded = want.to(got.dtype)
    err = (got.float() - rounded.float()).abs()
    bad = err > ulps * _ulp(rounded)
    assert not bad.any(), (
        f"{key}: {int(bad.sum())} of {got.numel()} values further than {ulps} ulp from the "
        f"float32 reference rounded to {got.dtype}; largest error {err.max().item():.3g}"
    )


def assert_half_results(got, want, low, rounded=("membrane",), scaled=False):
    """Half-precision run ``got`` against the float32 reference ``want`` on the same inputs:
    spikes bitwise; the keys in ``rounded`` within one ulp of the reference rounded to ``low``;
    the other storage-dtype outputs within LOW_TOL; the float32 outputs (state, the decays' and
    the state's gradients) within the float32 TOL, each gradient's atol relative to its largest
    magnitude (the kernel sums them in another order than autograd). ``scaled``: the
    storage-dtype gradients too relative to their largest magnitude (sums through a
    low-precision matmul), see helpers.assert_same_scaled."""
    assert got.keys() == want.keys()
    low_keys = [k for k in want if got[k].dtype == low]
    f32_keys = [k for k in want if k not in low_keys]
    assert "spikes" in low_keys or "membrane" in low_keys
    for key in f32_keys:
        assert got[key].dtype == F32, f"{key}: dtype {got[key].dtype}, expected float32 (the accumulate type)"
    for key in rounded:
        assert_rounded(got[key], want[key], key)
    loose = {k: got[k] for k in low_keys if k not in rounded}
    (assert_same_scaled if scaled else assert_same)(loose, {k: want[k] for k in loose}, LOW_TOL[low], upcast_want=True)
    assert_same_scaled({k: got[k] for k in f32_keys}, {k: want[k] for k in f32_keys}, TOL[F32])


def _half_case(base: Case, low) -> Case:
    """``base``'s inputs with x in ``low`` (a new leaf); the decays and the state stay float32."""
    case = clone_case(base)
    case.x = base.x.detach().to(low).requires_grad_()
    return case


def _reference_case(case: Case) -> Case:
    """The same values in float32 (x upcast exactly), as new leaves."""
    return clone_case(case, dtype=F32)


# --------------------------------------------------------------------------------------------
# lif and leaky
# --------------------------------------------------------------------------------------------


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
@pytest.mark.parametrize("surrogate", [0, 1], ids=["sigmoid", "fastsigmoid"])
def test_lif_half(low, ordering, reset, syn, surrogate, where):
    base = make_case(4, 16, 33, F32, where.device, syn=syn, alpha_kind="tensor", seed=13)
    lp = _half_case(base, low)
    opts = dict(ordering=ordering, reset=reset, surrogate=SURROGATES[surrogate], return_membrane=True)
    got = run_lif(lp, "compiled", round_to=low, **opts)
    want = run_lif(_reference_case(lp), "reference", round_to=low, **opts)
    assert got["spikes"].dtype == low and got["grad_x"].dtype == low
    assert got["state"].dtype == F32 and got["grad_alpha"].dtype == F32 and got["grad_state"].dtype == F32
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_half_results(got, want, low)


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
@pytest.mark.parametrize("alpha_kind", ["scalar", "tensor"])
def test_leaky_half(low, syn, alpha_kind, where):
    base = make_case(4, 16, 33, F32, where.device, syn=syn, alpha_kind=alpha_kind, seed=14)
    lp = _half_case(base, low)
    got = run_leaky(lp, "compiled", round_to=low)
    want = run_leaky(_reference_case(lp), "reference", round_to=low)
    assert got["membrane"].dtype == low and got["state"].dtype == F32
    assert_half_results(got, want, low)


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize(
    "given", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=["f64", "f32", "f16", "bf16"]
)
def test_half_decays_and_state_of_any_dtype(low, given, where):
    """Tensor decays and a state of any float dtype are converted to float32, not to the dtype of
    x (alpha 0.99 would round to 0.98828 in bfloat16): the run equals the one with the same
    values given in float32, the state comes out float32, and each gradient has its leaf's dtype."""
    base = make_case(3, 12, 8, F32, where.device, syn=True, alpha_kind="tensor", seed=15)
    base = clone_case(base, round_to=given)  # values representable in `given` (and in float32)
    as_given = _half_case(base, low)
    for name in ("alpha", "alpha_syn", "state"):
        setattr(as_given, name, clone_leaf(getattr(base, name), dtype=given))
    opts = dict(ordering="spike_first", reset="subtract", return_membrane=True)
    got = run_lif(as_given, "compiled", round_to=low, **opts)
    want = run_lif(_half_case(base, low), "compiled", round_to=low, **opts)
    assert got["state"].dtype == F32
    for name in ("alpha", "alpha_syn", "state"):
        assert got["grad_" + name].dtype == given, name
    for key in want:
        torch.testing.assert_close(
            got[key], want[key].to(got[key].dtype), rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}"
        )


# --------------------------------------------------------------------------------------------
# The time constant survives half precision: tau = 100 steps in bfloat16
# --------------------------------------------------------------------------------------------


@on_lanes
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_tau100_bfloat16(syn, where):
    """alpha = exp(-1/100) in float32 over a few hundred steps, x and the state bfloat16 values:
    the bfloat16 run must be the float32 reference's run, rounded only where it is stored. In
    bfloat16 alpha would be 0.98828125 (tau 84.8 steps instead of 100), and the control at the
    end shows that this changes the spikes and the membrane visibly: a kernel that rounded the
    decay (or the state) to the storage dtype fails here."""
    low, b, t, n = torch.bfloat16, 8, 300, 64
    g = torch.Generator().manual_seed(100)
    x = (torch.randn(b, t, n, generator=g) * 0.1 + 0.03).to(low).to(where.device)
    state = (torch.randn(3, b, n, generator=g) * 0.3).to(low).float().to(where.device)
    alpha = torch.full((n,), math.exp(-1 / 100), dtype=F32, device=where.device)
    alpha_syn = torch.full((n,), math.exp(-1 / 5), dtype=F32, device=where.device) if syn else None
    assert alpha[0].item() != alpha.to(low)[0].item() == 0.98828125

    def case(x_dtype, a):
        leaves = [x.to(x_dtype), a, alpha_syn, state]
        return Case(*(None if v is None else v.detach().clone().requires_grad_() for v in leaves))

    opts = dict(ordering="spike_first", reset="subtract", surrogate=SURROGATES[1], return_membrane=True)
    got = run_lif(case(low, alpha), "compiled", round_to=low, **opts)
    want = run_lif(case(F32, alpha), "reference", round_to=low, **opts)
    rate = spike_rate(want["spikes"])
    assert 0.01 < rate < 0.2, f"spike rate {rate}"
    assert got["spikes"].dtype == low and got["membrane"].dtype == low and got["state"].dtype == F32
    assert got["grad_alpha"].dtype == F32
    bad = (got["spikes"] != want["spikes"]).sum().item()
    assert bad == 0, f"spikes differ from the float32 reference at {bad} of {want['spikes'].numel()} positions"
    assert_rounded(got["membrane"], want["membrane"], "membrane")
    torch.testing.assert_close(got["state"], want["state"], **TOL[F32])
    # grad_alpha [N] sums B*T = 2400 terms per neuron (over a 300-step backward recursion) in
    # another order than autograd: float32 summation error, relative to the largest gradient.
    assert_same_scaled(
        {k: got[k] for k in ("grad_alpha", "grad_state")}, {k: want[k] for k in ("grad_alpha", "grad_state")}, TOL[F32]
    )
    assert_same({"grad_x": got["grad_x"]}, {"grad_x": want["grad_x"]}, LOW_TOL[low], upcast_want=True)

    # The control: the float32 reference with alpha rounded to bfloat16 is clearly another run.
    rounded_alpha = run_lif(case(F32, alpha.to(low).float()), "reference", round_to=low, **opts)
    flipped = (rounded_alpha["spikes"] != want["spikes"]).float().mean().item()
    mem_err = (rounded_alpha["membrane"] - want["membrane"]).abs().max().item()
    assert flipped > 0.005 and mem_err > 0.1, (flipped, mem_err)


# --------------------------------------------------------------------------------------------
# recurrent_lif
# --------------------------------------------------------------------------------------------


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_recurrent_half(low, ordering, reset, syn, where):
    """The recurrent input is a product in the storage dtype (cuBLAS; at::mm when emulated) whose
    result is rounded to it: the weight is quantised to multiples of 1/8 so that, with binary
    spikes, every product and sum is exact in bf16/fp16 and float32 alike (see
    make_recurrent_weight); the drive, hence the spikes, are then those of the float32
    reference. The gradients that pass through the recurrent product each step are rounded
    there too: they (and grad_alpha, which sums them) are compared within LOW_TOL relative to
    their largest magnitude."""
    base, weight, spikes0 = make_recurrent_case(4, 16, 33, F32, where.device, syn=syn, seed=13, quantum=0.125)
    lp = _half_case(base, low)
    lp_weight, lp_spikes0 = clone_leaf(weight, dtype=low), clone_leaf(spikes0, dtype=low)
    assert torch.equal(lp_weight.float(), weight)
    opts = dict(ordering=ordering, reset=reset, surrogate=SURROGATES[0], return_membrane=True)
    got = run_recurrent(lp, lp_weight, lp_spikes0, "compiled", round_to=low, **opts)
    want = run_recurrent(
        _reference_case(lp),
        clone_leaf(lp_weight, dtype=F32),
        clone_leaf(lp_spikes0, dtype=F32),
        "reference",
        round_to=low,
        **opts,
    )
    for key in ("spikes", "membrane", "grad_x", "grad_weight", "grad_spikes0"):
        assert got[key].dtype == low, key
    for key in ("state", "grad_alpha", "grad_state"):
        assert got[key].dtype == F32, key
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same_scaled(
        {k: v for k, v in got.items() if k != "membrane"},
        {k: v for k, v in want.items() if k != "membrane"},
        LOW_TOL[low],
        upcast_want=True,
    )
    assert_rounded(got["membrane"], want["membrane"], "membrane")
    torch.testing.assert_close(got["state"], want["state"], **TOL[F32])


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
def test_recurrent_half_spikes_cast(low, where):
    """The initial spikes may come in another dtype (here float32 and bool): they are cast to the
    dtype of x, and a float32 leaf gets a float32 gradient."""
    base, weight, spikes0 = make_recurrent_case(3, 10, 8, F32, where.device, seed=16, quantum=0.125)
    lp = _half_case(base, low)
    lp_weight = clone_leaf(weight, dtype=low)
    opts = dict(ordering="delayed", reset="zero", return_membrane=True)
    got = run_recurrent(lp, lp_weight, clone_leaf(spikes0), "compiled", round_to=low, **opts)
    want = run_recurrent(
        clone_case(lp), clone_leaf(lp_weight), clone_leaf(spikes0, dtype=low), "compiled", round_to=low, **opts
    )
    assert got["grad_spikes0"].dtype == F32
    for key in want:
        torch.testing.assert_close(
            got[key], want[key].to(got[key].dtype), rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}"
        )
    as_bool = snnkern.recurrent_lif(
        lp.x, lp_weight, lp.alpha, alpha_syn=lp.alpha_syn, state=lp.state, spikes=spikes0.detach().bool(), **opts
    )
    assert torch.equal(as_bool.spikes, got["spikes"])


# --------------------------------------------------------------------------------------------
# Spike products and spike_linear
# --------------------------------------------------------------------------------------------

SPIKE_MATMUL_OPS = [pytest.param(False, id="spike_matmul"), pytest.param(True, id="spike_matmul_t")]
# Relative to the size of the terms, |spikes| @ |other| (see test_spike_linear.assert_product).
SPIKE_RTOL = {torch.bfloat16: 2e-2, torch.float16: 5e-3}


def _spike_operands(m, k, n, density, transpose, device, seed=0):
    """(spikes [m, k]: counts 1..3 where nonzero, other [k or m, n]) in float32, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(m, k, generator=g, dtype=torch.float64) < density
    values = torch.randint(1, 4, (m, k), generator=g).to(torch.float64)
    other = torch.randn(m if transpose else k, n, generator=g, dtype=torch.float64)
    return (values * mask).to(F32).to(device), other.to(F32).to(device)


def _spike_op(transpose):
    return torch.ops.snnkern.spike_matmul_t if transpose else torch.ops.snnkern.spike_matmul


def _assert_spike_product(got, spikes, other, transpose, rtol):
    """``got`` within ``rtol`` of |spikes| @ |other| of the exact float64 product."""
    s = spikes.detach().double()
    s = s.t() if transpose else s
    o = other.detach().double()
    assert got.shape == (s.shape[0], o.shape[1])
    err = (got.detach().double() - s @ o).abs()
    limit = rtol * (s.abs() @ o.abs()) + torch.finfo(got.dtype).tiny
    bad = err > limit
    assert not bad.any(), (
        f"{int(bad.sum())} of {got.numel()} entries off; largest error {err.max().item():.3g}, "
        f"bound {limit.max().item():.3g}"
    )


@on_lanes
@pytest.mark.parametrize("transpose", SPIKE_MATMUL_OPS)
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("shape", [(1, 13, 7), (17, 64, 200), (33, 40, 513)], ids=lambda s: "x".join(map(str, s)))
def test_spike_matmul_half(shape, low, transpose, where):
    """bf16/fp16 products against the exact product of the same (exactly upcast) values, within
    the low dtype's rounding; spike counts are exact in both."""
    spikes, other = _spike_operands(*shape, 0.3, transpose, where.device, seed=5)
    spikes, other = spikes.to(low), other.to(low)
    got = _spike_op(transpose)(spikes, other)
    assert got.device.type == where.device and got.dtype == low
    _assert_spike_product(got, spikes, other, transpose, SPIKE_RTOL[low])


@on_lanes
@pytest.mark.parametrize("transpose", SPIKE_MATMUL_OPS)
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize(
    "shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0), (300, 0, 257)], ids=lambda s: "x".join(map(str, s))
)
def test_spike_matmul_half_empty(shape, low, transpose, where):
    m, k, n = shape
    if transpose:  # the summed-over dimension is M: swap so that the same shapes cover it
        m, k = k, m
    spikes, other = _spike_operands(m, k, n, 0.5, transpose, where.device)
    got = _spike_op(transpose)(spikes.to(low), other.to(low))
    want = torch.zeros((k, n) if transpose else (m, n), dtype=low, device=where.device)
    assert got.dtype == low and got.shape == want.shape
    assert torch.equal(got, want)


def _spike_linear_run(fn, tensors, round_to=None):
    out = fn(*tensors)
    leaves = [t for t in tensors if t is not None]
    grads = torch.autograd.grad((out * upstream_like(out, 3, round_to)).sum(), leaves)
    result = {"out": out.detach()}
    result.update({f"grad_{name}": g for name, g in zip(("x", "weight", "bias"), grads)})
    return result


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_spike_linear_half(low, bias, where):
    """bf16/fp16 forward and gradients against F.linear in float32 on the same (upcast) values and
    upstream gradient; the gradients within LOW_TOL relative to their largest magnitude."""
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(4, 16, 40, generator=g) < 0.3).float()
    weight = torch.randn(10, 40, generator=g)
    b = torch.randn(10, generator=g) if bias else None
    lp = [None if t is None else t.to(low).to(where.device).requires_grad_() for t in (x, weight, b)]
    ref = [clone_leaf(t, dtype=F32) for t in lp]
    got = _spike_linear_run(lambda *a: snnkern.spike_linear(*a, backend="compiled"), lp)
    want = _spike_linear_run(F.linear, ref, round_to=low)
    assert got["out"].dtype == low and got["grad_weight"].dtype == low
    assert_same_scaled(got, want, LOW_TOL[low], upcast_want=True)


# --------------------------------------------------------------------------------------------
# opcheck: the fake kernels give the dtypes of the half-precision kernels
# --------------------------------------------------------------------------------------------


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_half(low, requires_grad, where):
    case = make_case(2, 5, 3, F32, where.device, syn=True, seed=3, requires_grad=False)
    case.x = case.x.to(low)
    a = prepare_lif_args(
        case.x,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        ordering="spike_first",
        reset="subtract",
        surrogate=SURROGATES[1],
    )
    assert a.x.dtype == low and a.alpha.dtype == a.threshold.dtype == a.state.dtype == F32
    tensors = [
        t.detach().clone().requires_grad_(requires_grad) for t in (a.x, a.alpha, a.alpha_syn, a.threshold, a.state)
    ]
    tensors.insert(4, None)  # no adaptation
    options = snnkern.ops.op_options(a)
    assert_opcheck(torch.ops.snnkern.lif_forward.default, (*tensors, *options, True, True, True))
    spikes, membrane, state_out, pre_reset = torch.ops.snnkern.lif_forward(
        *(t if t is None else t.detach() for t in tensors), *options, True, True, False
    )
    assert spikes.dtype == membrane.dtype == low and state_out.dtype == pre_reset.dtype == F32
    bargs = (
        upstream_like(spikes, 1),
        upstream_like(membrane, 2),
        upstream_like(state_out, 3),
        pre_reset,
        spikes,
        *(t if t is None else t.detach() for t in tensors[1:]),
        *options,
    )
    assert_opcheck(torch.ops.snnkern.lif_backward.default, bargs)
    assert_opcheck(torch.ops.snnkern.leaky_forward.default, (*tensors[:3], tensors[5], True, True))
    weight = torch.zeros(3, 3, dtype=low, device=where.device)
    spikes0 = torch.ones(2, 3, dtype=low, device=where.device)
    assert_opcheck(
        torch.ops.snnkern.recurrent_lif_forward.default,
        (tensors[0], weight, *tensors[1:], spikes0, *options, True, requires_grad, True),
    )
