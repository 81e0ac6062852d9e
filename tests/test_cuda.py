"""The CUDA kernels against the reference loops run on the same CUDA tensors (the CPU checks of
test_ops.py, on the GPU), and bfloat16/float16 inputs against the float32 reference on the
upcast inputs. Skipped without a CUDA device or without a CUDA build of snnkern."""
import pytest
import torch

import snnkern
from snnkern._checks import prepare_lif_args, prepare_recurrent_args

from helpers import (EMPTY_SHAPES, LOW_TOL, ORDERINGS, RESETS, SURROGATES, TOL,
                     all_lif_options, assert_opcheck, assert_same, assert_same_scaled, chunked_lif, clone_case,
                     clone_leaf, make_case,
                     make_recurrent_case, needs_cuda, run_leaky, run_lif, run_recurrent, spike_rate, upstream_like)

pytestmark = needs_cuda

CUDA = "cuda"
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
LOW_DTYPES = [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float16, id="f16")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts, syn, alpha_kind", all_lif_options())
def test_lif_parity_cuda(opts, syn, alpha_kind, dtype):
    case = make_case(3, 9, 5, dtype, CUDA, syn=syn, alpha_kind=alpha_kind, seed=7)
    want = run_lif(case, "reference", **opts)
    got = run_lif(clone_case(case), "compiled", **opts)
    assert got["spikes"].device.type == CUDA
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same(got, want, TOL[dtype])


@pytest.mark.parametrize("dtype", [pytest.param(torch.float64, id="f64")])
@pytest.mark.parametrize("shape", [(64, 50, 300), (1, 200, 1), (7, 3, 1000)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_lif_parity_cuda_larger(shape, ordering, dtype):
    """Sizes that span several thread blocks / a long time loop. float64 only: in float32 the
    per-neuron alpha gradient sums B*T = 3200 terms of size ~1e3, and the kernel's summation order
    differs from autograd's, so it differs by up to ~4e-5 relative (seen on the CPU kernels),
    which is rounding, not a bug; the float32 grid above uses small shapes at TOL."""
    case = make_case(*shape, dtype, CUDA, syn=True, seed=8)
    opts = dict(ordering=ordering, reset="subtract", surrogate=SURROGATES[0], return_membrane=True)
    assert_same(run_lif(clone_case(case), "compiled", **opts), run_lif(case, "reference", **opts), TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha_kind", ["scalar", "tensor"])
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_leaky_parity_cuda(syn, alpha_kind, dtype):
    case = make_case(3, 11, 4, dtype, CUDA, syn=syn, alpha_kind=alpha_kind, seed=5)
    assert_same(run_leaky(clone_case(case), "compiled"), run_leaky(case, "reference"), TOL[dtype])


@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
@pytest.mark.parametrize("surrogate", [0, 1])
def test_lif_low_precision(low, ordering, reset, syn, surrogate):
    """bf16/fp16 inputs: the kernels compute in float32, so the float32 reference on the
    (exactly) upcast inputs gives the same spikes; the outputs and gradients differ only by
    their rounding to the low dtype."""
    base = make_case(4, 16, 33, torch.float32, CUDA, syn=syn, alpha_kind="tensor", seed=13)
    # Compiled run: x and state in the low dtype; alpha stays a float32 leaf (cast inside).
    lp = clone_case(base)
    lp.x = base.x.detach().to(low).requires_grad_()
    lp.state = base.state.detach().to(low).requires_grad_()
    # Reference: the same values in float32 (alpha rounded the way the op rounds it).
    ref = clone_case(lp, dtype=torch.float32, round_to=low)
    opts = dict(ordering=ordering, reset=reset, surrogate=SURROGATES[surrogate], return_membrane=True)
    got = run_lif(lp, "compiled", **opts)
    want = run_lif(ref, "reference", round_to=low, **opts)
    assert got["spikes"].dtype == low and got["grad_x"].dtype == low
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same(got, want, LOW_TOL[low], upcast_want=True)


@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_leaky_low_precision(low, syn):
    base = make_case(4, 16, 33, torch.float32, CUDA, syn=syn, alpha_kind="tensor", seed=14)
    lp = clone_case(base)
    lp.x = base.x.detach().to(low).requires_grad_()
    lp.state = base.state.detach().to(low).requires_grad_()
    ref = clone_case(lp, dtype=torch.float32, round_to=low)
    got = run_leaky(lp, "compiled")
    want = run_leaky(ref, "reference", round_to=low)
    assert got["membrane"].dtype == low
    assert_same(got, want, LOW_TOL[low], upcast_want=True)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 13), (4, 6, 1), (2, 1, 5)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_lif_edge_shapes_cuda(shape, ordering, syn):
    case = make_case(*shape, torch.float64, CUDA, syn=syn, seed=sum(shape))
    opts = dict(ordering=ordering, return_membrane=True)
    assert_same(run_lif(clone_case(case), "compiled", **opts), run_lif(case, "reference", **opts),
                TOL[torch.float64])


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_lif_empty_cuda(shape, ordering):
    case = make_case(*shape, torch.float64, CUDA, syn=True, seed=1)
    got = run_lif(case, "compiled", ordering=ordering, return_membrane=True)
    want = run_lif(clone_case(case), "reference", ordering=ordering, return_membrane=True)
    assert_same(got, want, TOL[torch.float64])
    leaky_got = run_leaky(clone_case(case), "compiled")
    assert_same(leaky_got, run_leaky(clone_case(case), "reference"), TOL[torch.float64])


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_lif_noncontiguous_cuda(ordering):
    g = torch.Generator().manual_seed(9)
    base0 = (torch.randn(3, 5, 8, generator=g, dtype=torch.float64) * 0.6 + 0.3).to(CUDA)   # [B, N, T]
    alpha0 = torch.linspace(0.7, 0.95, 10, dtype=torch.float64, device=CUDA)
    state0 = (torch.randn(3, 3, 5, generator=g, dtype=torch.float64) * 0.5).to(CUDA)          # [B, 3, N]
    results = []
    for backend in ("reference", "compiled"):
        base, alpha, state = (t.clone().requires_grad_() for t in (base0, alpha0, state0))
        x = base.transpose(1, 2)
        assert not x.is_contiguous()
        r = snnkern.lif(x, alpha[::2], alpha_syn=0.7, state=state.transpose(0, 1), ordering=ordering,
                        return_membrane=True, backend=backend)
        loss = sum((v * upstream_like(v, k)).sum() for k, v in enumerate(r))
        grads = torch.autograd.grad(loss, [base, alpha, state])
        results.append({"spikes": r.spikes.detach(), "membrane": r.membrane.detach(), "state": r.state.detach(),
                        "grad_x": grads[0], "grad_alpha": grads[1], "grad_state": grads[2]})
    assert_same(results[1], results[0], TOL[torch.float64])


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lif_chunked_equals_whole_cuda(ordering, dtype):
    case = make_case(3, 12, 6, dtype, CUDA, syn=True, seed=21)
    opts = dict(ordering=ordering, reset="subtract", detach_reset=True, surrogate=SURROGATES[1])
    whole = chunked_lif(clone_case(case), "compiled", [12], **opts)
    for chunks in ([5, 7], [1] * 12):
        assert_same(chunked_lif(clone_case(case), "compiled", chunks, **opts), whole, TOL[dtype])


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_lif_gradcheck_membrane_cuda(ordering):
    case = make_case(2, 6, 3, torch.float64, CUDA, syn=True, seed=31)
    names = case.names()

    def f(*tensors):
        kw = dict(zip(names, tensors))
        res = snnkern.lif(kw["x"], kw["alpha"], alpha_syn=kw["alpha_syn"], state=kw["state"], reset="none",
                          ordering=ordering, return_membrane=True, backend="compiled")
        return res.membrane, res.state

    assert torch.autograd.gradcheck(f, tuple(case.leaves()), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_leaky_gradcheck_cuda():
    case = make_case(2, 6, 3, torch.float64, CUDA, syn=True, seed=32)
    names = case.names()

    def f(*tensors):
        kw = dict(zip(names, tensors))
        return tuple(snnkern.leaky(kw["x"], kw["alpha"], alpha_syn=kw["alpha_syn"], state=kw["state"],
                                   backend="compiled"))

    assert torch.autograd.gradcheck(f, tuple(case.leaves()), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("ordering", ["delayed", "update_first"])
def test_opcheck_cuda(requires_grad, ordering):
    case = make_case(2, 5, 3, torch.float32, CUDA, syn=True, seed=3, requires_grad=False)
    a = prepare_lif_args(case.x, case.alpha, case.alpha_syn, case.state, 1.0, ordering, "zero", False, SURROGATES[0])
    tensors = [t.detach().clone().requires_grad_(requires_grad) for t in (a.x, a.alpha, a.alpha_syn, a.state)]
    args = (*tensors, a.threshold, a.ordering, a.reset, a.detach_reset, 0, 5.0, True, True)
    assert_opcheck(torch.ops.snnkern.lif_forward.default, args)
    spikes, membrane, state_out, pre_reset = torch.ops.snnkern.lif_forward(*[
        t.detach() if isinstance(t, torch.Tensor) else t for t in args])
    bargs = (torch.randn_like(spikes), torch.randn_like(membrane), torch.randn_like(state_out), pre_reset, spikes,
             *[t.detach() for t in tensors[1:]], *args[4:10])
    assert_opcheck(torch.ops.snnkern.lif_backward.default, bargs)
    lf = (tensors[0], tensors[1], tensors[2], tensors[3])
    assert_opcheck(torch.ops.snnkern.leaky_forward.default, lf)


def test_torch_compile_cuda():
    torch._dynamo.reset()
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(4, 6).cuda(), torch.nn.Linear(6, 3).cuda()
    alpha = torch.linspace(0.75, 0.95, 6, device=CUDA, requires_grad=True)

    def model(x):
        h = snnkern.lif(fc1(x), alpha, alpha_syn=0.8, ordering="spike_first", surrogate=SURROGATES[1]).spikes
        return snnkern.leaky(fc2(h), 0.9).membrane, h

    x = torch.randn(3, 10, 4, device=CUDA) * 2 + 1
    params = [alpha, *fc1.parameters(), *fc2.parameters()]
    results = []
    for fn in (model, torch.compile(model, fullgraph=True)):
        out, h = fn(x)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, 3, device=CUDA)).sum(), params)
        results.append((out.detach(), h.detach(), grads))
    assert torch.equal(results[1][1], results[0][1])
    torch.testing.assert_close(results[1][0], results[0][0], **TOL[torch.float32])
    for a, b in zip(results[1][2], results[0][2]):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    torch._dynamo.reset()


# --------------------------------------------------------------------------------------------
# recurrent_lif on CUDA (the CPU checks of test_recurrent.py)
# --------------------------------------------------------------------------------------------

def _recurrent_on_cpu(case, weight, spikes0):
    """The same inputs as new CPU leaves, for the CPU reference."""
    return clone_case(case, device="cpu"), clone_leaf(weight, device="cpu"), clone_leaf(spikes0, device="cpu")


def _to_cpu(result):
    return {k: v.cpu() for k, v in result.items()}


def _recurrent_parity_check(got, want, dtype):
    """As test_recurrent._assert_parity: float32 gradients within TOL relative to their largest
    magnitude (sums over B*T terms, added by cuBLAS and the kernel in another order)."""
    if dtype == torch.float64:
        assert_same(got, want, TOL[dtype])
    else:
        assert_same_scaled(got, want, TOL[dtype])


# Every ordering x reset x detach x syn, with the surrogate, alpha kind and membrane cycling.
RECURRENT_CUDA_OPTIONS = [p for i, p in enumerate(all_lif_options()) if i % 8 == (i // 16) % 8]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts, syn, alpha_kind", RECURRENT_CUDA_OPTIONS)
def test_recurrent_parity_cuda(opts, syn, alpha_kind, dtype):
    """CUDA kernels + cuBLAS against the CPU reference loop on the same values."""
    case, weight, spikes0 = make_recurrent_case(3, 10, 7, dtype, CUDA, syn=syn, alpha_kind=alpha_kind, seed=7)
    got = run_recurrent(case, weight, spikes0, "compiled", **opts)
    assert got["spikes"].device.type == CUDA
    want = run_recurrent(*_recurrent_on_cpu(case, weight, spikes0), "reference", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    _recurrent_parity_check(_to_cpu(got), want, dtype)


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_recurrent_parity_cuda_larger(ordering, syn):
    """B64 T50 N100: several thread blocks, a real matmul, a long loop. float64 only, for the
    reason given in test_lif_parity_cuda_larger (float32 sums over B*T = 3200 terms)."""
    dtype = torch.float64
    case, weight, spikes0 = make_recurrent_case(64, 50, 100, dtype, CUDA, syn=syn, seed=8)
    opts = dict(ordering=ordering, reset="subtract", surrogate=SURROGATES[0], return_membrane=True)
    got = run_recurrent(case, weight, spikes0, "compiled", **opts)
    want = run_recurrent(*_recurrent_on_cpu(case, weight, spikes0), "reference", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same(_to_cpu(got), want, TOL[dtype])


@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_recurrent_low_precision(low, ordering, reset, syn):
    """bf16/fp16 inputs against the float32 reference on the (exactly) upcast inputs, as
    test_lif_low_precision. The recurrent input is a low-precision matmul whose result is
    rounded to the low dtype: the weight is quantised to multiples of 1/8 so that, with binary
    spikes, every product and sum is exact in bf16/fp16 and float32 alike (see
    make_recurrent_weight); the drive, hence the spikes, are then those of the float32
    reference. Outputs and gradients differ by the rounding to the low dtype (the gradients,
    sums over B*T terms and T steps through a low-precision matmul, relative to their size)."""
    base, weight, spikes0 = make_recurrent_case(4, 16, 33, torch.float32, CUDA, syn=syn, seed=13, quantum=0.125)
    lp = clone_case(base)
    lp.x = base.x.detach().to(low).requires_grad_()
    lp.state = base.state.detach().to(low).requires_grad_()
    lp_weight, lp_spikes0 = clone_leaf(weight, dtype=low), clone_leaf(spikes0, dtype=low)
    assert torch.equal(lp_weight.float(), weight)
    ref = clone_case(lp, dtype=torch.float32, round_to=low)
    opts = dict(ordering=ordering, reset=reset, surrogate=SURROGATES[0], return_membrane=True)
    got = run_recurrent(lp, lp_weight, lp_spikes0, "compiled", **opts)
    want = run_recurrent(ref, clone_leaf(lp_weight, dtype=torch.float32), clone_leaf(lp_spikes0, dtype=torch.float32),
                         "reference", round_to=low, **opts)
    assert got["spikes"].dtype == low and got["grad_x"].dtype == low and got["grad_weight"].dtype == low
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same_scaled(got, want, LOW_TOL[low], upcast_want=True)


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_recurrent_empty_cuda(shape, ordering):
    b, t, n = shape
    case, weight, spikes0 = make_recurrent_case(b, t, n, torch.float64, CUDA, seed=1)
    got = run_recurrent(case, weight, spikes0, "compiled", ordering=ordering, return_membrane=True)
    assert got["spikes"].shape == (b, t, n) and got["state"].shape == (3, b, n)
    assert got["grad_weight"].shape == (n, n) and got["grad_spikes0"].shape == (b, n)
    want = run_recurrent(*_recurrent_on_cpu(case, weight, spikes0), "reference", ordering=ordering,
                         return_membrane=True)
    assert_same(_to_cpu(got), want, TOL[torch.float64])


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_recurrent_chunked_equals_whole_cuda(ordering):
    case, weight, spikes0 = make_recurrent_case(3, 12, 6, torch.float64, CUDA, seed=21)
    opts = dict(ordering=ordering, reset="subtract", detach_reset=True, surrogate=SURROGATES[1],
                return_membrane=True)

    def run(chunks):
        c, w, z = clone_case(case), clone_leaf(weight), clone_leaf(spikes0)
        state, start, pieces = c.state, 0, []
        z_prev = z
        for length in chunks:
            r = snnkern.recurrent_lif(c.x[:, start:start + length], w, c.alpha, alpha_syn=c.alpha_syn, state=state,
                                      spikes=z_prev, backend="compiled", **opts)
            pieces.append(r)
            state, z_prev, start = r.state, r.spikes[:, -1], start + length
        spikes = torch.cat([p.spikes for p in pieces], 1)
        membrane = torch.cat([p.membrane for p in pieces], 1)
        loss = (spikes * upstream_like(spikes, 1)).sum() + (membrane * upstream_like(membrane, 2)).sum() \
            + (state * upstream_like(state, 3)).sum()
        grads = torch.autograd.grad(loss, c.leaves() + [w, z])
        return dict(spikes=spikes.detach(), membrane=membrane.detach(), state=state.detach(),
                    **{f"grad_{i}": g for i, g in enumerate(grads)})

    whole = run([12])
    for chunks in ([5, 7], [1] * 12):
        assert_same(run(chunks), whole, TOL[torch.float64])


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_recurrent_gradcheck_no_spikes_cuda(ordering):
    """As test_recurrent_gradcheck_no_spikes: with threshold 1e6 no spike occurs and the outputs
    are smooth in all inputs, the weight and spikes0 included (through step 0)."""
    case, weight, _ = make_recurrent_case(2, 5, 3, torch.float64, CUDA, syn=True, seed=31)
    spikes0 = torch.randn(2, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    names = case.names() + ["weight", "spikes0"]

    def f(*tensors):
        kw = dict(zip(names, tensors))
        r = snnkern.recurrent_lif(kw["x"], kw["weight"], kw["alpha"], alpha_syn=kw["alpha_syn"], state=kw["state"],
                                  spikes=kw["spikes0"], threshold=1e6, ordering=ordering, surrogate=SURROGATES[0],
                                  return_membrane=True, backend="compiled")
        return r.membrane, r.state

    assert torch.autograd.gradcheck(f, tuple(case.leaves()) + (weight, spikes0), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("record", [False, True], ids=["nomem", "mem"])
@pytest.mark.parametrize("shape, ordering", [((2, 5, 3), "delayed"), ((3, 4, 5), "update_first"),
                                             ((2, 0, 3), "spike_first")], ids=["T5", "T4", "T0"])
def test_opcheck_recurrent_cuda(shape, ordering, requires_grad, record):
    case, weight, spikes0 = make_recurrent_case(*shape, torch.float32, CUDA, syn=True, seed=3, requires_grad=False)
    r = prepare_recurrent_args(case.x, weight, spikes0, case.alpha, case.alpha_syn, case.state, 1.0, ordering,
                               "zero", False, SURROGATES[0])
    a = r.lif
    tensors = [t.detach().clone().requires_grad_(requires_grad)
               for t in (a.x, r.weight, a.alpha, a.alpha_syn, a.state, r.spikes)]
    args = (*tensors, a.threshold, a.ordering, a.reset, a.detach_reset, 0, 5.0, record, True)
    assert_opcheck(torch.ops.snnkern.recurrent_lif_forward.default, args)
    detached = [t.detach() for t in tensors]
    spikes, membrane, state_out, pre_reset = torch.ops.snnkern.recurrent_lif_forward(*detached, *args[6:])
    bargs = (upstream_like(spikes, 1), upstream_like(membrane, 2) if record else None, upstream_like(state_out, 3),
             pre_reset, spikes, *detached[1:], *args[6:12])
    assert_opcheck(torch.ops.snnkern.recurrent_lif_backward.default, bargs)


# --------------------------------------------------------------------------------------------
# Spike products on CUDA: spike_matmul, spike_matmul_t, spike_linear, sparse_input layers
# (the CPU checks of test_spike_linear.py; on CUDA the ops run cuBLAS)
# --------------------------------------------------------------------------------------------

import torch.nn.functional as F  # noqa: E402

import copy  # noqa: E402

from snnkern.nn import RecurrentLIF  # noqa: E402

SPIKE_SHAPES = [(1, 1, 1), (1, 13, 7), (3, 13, 100), (5, 700, 130), (17, 64, 200), (9, 130, 1), (64, 300, 513)]
SPIKE_MATMUL_OPS = [pytest.param(False, id="spike_matmul"), pytest.param(True, id="spike_matmul_t")]
# Relative to the size of the terms, |spikes| @ |other| (see test_spike_linear.assert_product).
SPIKE_RTOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 2e-2, torch.float16: 5e-3}


def _spike_operands(m, k, n, density, dtype, transpose, seed=0, kind="binary"):
    """CPU (spikes [m, k] with about ``density`` nonzeros, other [k or m, n]) in ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(m, k, generator=g, dtype=torch.float64) < density
    if kind == "counts":
        values = torch.randint(1, 4, (m, k), generator=g).to(torch.float64)
    else:
        values = torch.ones(m, k, dtype=torch.float64)
    other = torch.randn(m if transpose else k, n, generator=g, dtype=torch.float64)
    return (values * mask).to(dtype), other.to(dtype)


def _spike_op(transpose):
    return torch.ops.snnkern.spike_matmul_t if transpose else torch.ops.snnkern.spike_matmul


def _assert_spike_product(got, spikes, other, transpose, rtol):
    """``got`` (any device, any float dtype) within ``rtol`` of |spikes| @ |other| of the exact
    float64 product of ``spikes`` and ``other``."""
    s = spikes.detach().cpu().double()
    s = s.t() if transpose else s
    o = other.detach().cpu().double()
    assert got.shape == (s.shape[0], o.shape[1])
    err = (got.detach().cpu().double() - s @ o).abs()
    limit = rtol * (s.abs() @ o.abs()) + torch.finfo(got.dtype).tiny
    bad = err > limit
    assert not bad.any(), (f"{int(bad.sum())} of {got.numel()} entries off; largest error {err.max().item():.3g}, "
                           f"bound {limit.max().item():.3g}")


@pytest.mark.parametrize("transpose", SPIKE_MATMUL_OPS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", [0.0, 0.02, 0.3, 1.0])
@pytest.mark.parametrize("shape", SPIKE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_spike_matmul_cuda(shape, density, dtype, transpose):
    """CUDA against the CPU compiled (event-driven) op and the exact product of the same values."""
    spikes, other = _spike_operands(*shape, density, dtype, transpose, seed=sum(shape), kind="counts")
    got = _spike_op(transpose)(spikes.to(CUDA), other.to(CUDA))
    assert got.device.type == CUDA and got.dtype == dtype
    cpu = _spike_op(transpose)(spikes, other)
    _assert_spike_product(got, spikes, other, transpose, SPIKE_RTOL[dtype])
    _assert_spike_product(cpu, spikes, other, transpose, SPIKE_RTOL[dtype])
    dense = (spikes.t() if transpose else spikes).to(CUDA) @ other.to(CUDA)
    bound = ((spikes.t() if transpose else spikes).abs() @ other.abs()).max().item() if cpu.numel() else 1.0
    torch.testing.assert_close(got.cpu(), cpu, rtol=SPIKE_RTOL[dtype], atol=SPIKE_RTOL[dtype] * max(bound, 1.0))
    torch.testing.assert_close(got, dense, rtol=SPIKE_RTOL[dtype], atol=SPIKE_RTOL[dtype] * max(bound, 1.0))


@pytest.mark.parametrize("transpose", SPIKE_MATMUL_OPS)
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("shape", [(1, 13, 7), (17, 64, 200), (33, 40, 513)], ids=lambda s: "x".join(map(str, s)))
def test_spike_matmul_low_precision_cuda(shape, low, transpose):
    """bf16/fp16 against the float32 CPU op on the same (exactly upcast) values, loose tolerance:
    the result is rounded to the low dtype."""
    spikes, other = _spike_operands(*shape, 0.3, torch.float32, transpose, seed=5, kind="counts")
    spikes, other = spikes.to(low), other.to(low)  # spike counts are exact in both
    got = _spike_op(transpose)(spikes.to(CUDA), other.to(CUDA))
    assert got.device.type == CUDA and got.dtype == low
    want = _spike_op(transpose)(spikes.float(), other.float())
    _assert_spike_product(got, spikes, other, transpose, SPIKE_RTOL[low])
    _assert_spike_product(want, spikes, other, transpose, SPIKE_RTOL[torch.float32])


@pytest.mark.parametrize("transpose", SPIKE_MATMUL_OPS)
@pytest.mark.parametrize("dtype", DTYPES + LOW_DTYPES)
@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0), (300, 0, 257)],
                         ids=lambda s: "x".join(map(str, s)))
def test_spike_matmul_empty_cuda(shape, dtype, transpose):
    m, k, n = shape
    if transpose:  # the summed-over dimension is M: swap so that the same shapes cover it
        m, k = k, m
    spikes, other = _spike_operands(m, k, n, 0.5, dtype, transpose)
    got = _spike_op(transpose)(spikes.to(CUDA), other.to(CUDA))
    want = torch.zeros((k, n) if transpose else (m, n), dtype=dtype)
    assert got.device.type == CUDA and got.dtype == dtype and got.shape == want.shape
    assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("transpose", SPIKE_MATMUL_OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_matmul_noncontiguous_cuda(dtype, transpose):
    spikes, other = _spike_operands(11, 37, 70, 0.3, dtype, transpose, seed=6, kind="counts")
    s = spikes.t().contiguous().t().to(CUDA)
    wide = torch.full((other.shape[0], 2 * other.shape[1]), float("nan"), dtype=dtype, device=CUDA)
    wide[:, ::2] = other.to(CUDA)
    o = wide[:, ::2]
    assert not s.is_contiguous() and not o.is_contiguous()
    got = _spike_op(transpose)(s, o)
    torch.testing.assert_close(got, _spike_op(transpose)(s.contiguous(), o.contiguous()), rtol=0, atol=0)
    _assert_spike_product(got, spikes, other, transpose, SPIKE_RTOL[dtype])


def _spike_linear_inputs(x_shape, dtype, bias, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    k, n_out = x_shape[-1], 10
    x = (torch.rand(x_shape, generator=g, dtype=torch.float64) < 0.3).to(dtype)
    weight = torch.randn(n_out, k, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(n_out, generator=g, dtype=torch.float64).to(dtype) if bias else None
    return [None if t is None else t.to(device).requires_grad_() for t in (x, weight, b)]


def _spike_linear_run(fn, tensors, round_to=None):
    out = fn(*tensors)
    leaves = [t for t in tensors if t is not None]
    grads = torch.autograd.grad((out * upstream_like(out, 3, round_to)).sum(), leaves)
    result = {"out": out.detach()}
    result.update({f"grad_{name}": g for name, g in zip(("x", "weight", "bias"), grads)})
    return result


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("x_shape", [(3, 5, 13), (7, 13), (13,)], ids=["BTK", "MK", "K"])
def test_spike_linear_cuda(x_shape, bias, dtype):
    """Forward and gradients on CUDA against the CPU compiled op and F.linear on CUDA."""
    tensors = _spike_linear_inputs(x_shape, dtype, bias, CUDA, seed=1)
    got = _spike_linear_run(lambda *a: snnkern.spike_linear(*a, backend="compiled"), tensors)
    assert got["out"].device.type == CUDA and got["out"].shape == (*x_shape[:-1], 10)
    on_cpu = [clone_leaf(t, device="cpu") for t in tensors]
    cpu = _spike_linear_run(lambda *a: snnkern.spike_linear(*a, backend="compiled"), on_cpu)
    dense = _spike_linear_run(F.linear, [clone_leaf(t) for t in tensors])
    assert got.keys() == cpu.keys() == dense.keys()
    assert_same(_to_cpu(got), cpu, TOL[dtype])
    assert_same(got, dense, TOL[dtype])


@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_spike_linear_low_precision_cuda(low, bias):
    """bf16/fp16 forward and gradients against F.linear in float32 on the same (upcast) values and
    upstream gradient; the gradients within LOW_TOL relative to their largest magnitude."""
    base = _spike_linear_inputs((4, 16, 40), torch.float32, bias, CUDA, seed=2)
    lp = [None if t is None else t.detach().to(low).requires_grad_() for t in base]
    ref = [clone_leaf(t, dtype=torch.float32) for t in lp]
    got = _spike_linear_run(lambda *a: snnkern.spike_linear(*a, backend="compiled"), lp)
    want = _spike_linear_run(F.linear, ref, round_to=low)
    assert got["out"].dtype == low and got["grad_weight"].dtype == low
    assert_same_scaled(got, want, LOW_TOL[low], upcast_want=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_linear_empty_cuda(dtype):
    for x_shape, n_out in (((0, 13), 10), ((2, 0, 13), 10), ((4, 13), 0)):
        x = torch.zeros(x_shape, dtype=dtype, device=CUDA, requires_grad=True)
        weight = torch.randn(n_out, x_shape[-1], dtype=dtype, device=CUDA, requires_grad=True)
        out = snnkern.spike_linear(x, weight, backend="compiled")
        assert out.shape == (*x_shape[:-1], n_out) and out.device.type == CUDA
        gx, gw = torch.autograd.grad(out.sum(), (x, weight), allow_unused=True, materialize_grads=True)
        assert gx.shape == x.shape and gw.shape == weight.shape
        assert torch.equal(gw, torch.zeros_like(gw)) and torch.equal(gx, torch.zeros_like(gx))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("shape", [(3, 13, 7), (1, 1, 1), (6, 40, 70), (0, 4, 3), (3, 0, 2)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")])
def test_opcheck_spike_matmul_cuda(shape, requires_grad, dtype):
    spikes, other = _spike_operands(*shape, 0.4, dtype, False, seed=1, kind="counts")
    args = (spikes.to(CUDA).requires_grad_(requires_grad), other.to(CUDA).requires_grad_(requires_grad))
    assert_opcheck(torch.ops.snnkern.spike_matmul.default, args)
    spikes, other = _spike_operands(*shape, 0.4, dtype, True, seed=2, kind="counts")
    assert_opcheck(torch.ops.snnkern.spike_matmul_t.default, (spikes.to(CUDA), other.to(CUDA)))


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_recurrent_layer_sparse_input_cuda(bias):
    """RecurrentLIF(sparse_input=True), float64: CUDA (cuBLAS projection) against the same layer on
    the CPU (event-driven projection) on a 0/1 spike train; spikes bitwise, gradients within TOL
    relative to their size."""
    torch.manual_seed(5)
    n_in, n_out = 40, 24
    layer = RecurrentLIF(n_in, n_out, alpha=0.9, alpha_syn=0.8, bias=bias, sparse_input=True, backend="compiled",
                         dtype=torch.float64)
    with torch.no_grad():
        layer.linear.weight.mul_(4.0)
    layer_cuda = copy.deepcopy(layer).to(CUDA)
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(3, 30, n_in, generator=g, dtype=torch.float64) < 0.2).to(torch.float64)
    results = []
    for model, inp in ((layer, x), (layer_cuda, x.to(CUDA))):
        out = model(inp)
        params = dict(model.named_parameters())
        grads = torch.autograd.grad((out * upstream_like(out, 7)).sum(), list(params.values()))
        results.append({"spikes": out.detach().cpu(), **{f"grad_{k}": v.cpu() for k, v in zip(params, grads)}})
    cpu, cuda = results
    assert 0.0 < spike_rate(cpu["spikes"]) < 1.0
    assert "grad_linear.weight" in cpu and "grad_recurrent_weight" in cpu
    assert_same_scaled(cuda, cpu, TOL[torch.float64])
