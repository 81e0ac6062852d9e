"""The spike products: ``torch.ops.snnkern.spike_matmul`` (spikes @ other),
``torch.ops.snnkern.spike_matmul_t`` (spikes^T @ other), :func:`snnkern.spike_linear` on top of
them, and the layers' ``sparse_input=True`` projection; on the CPU kernels, the emulated CUDA
build and CUDA (the ``where`` fixture, tests/helpers.py).

The CPU kernels (csrc/cpu/spike_matmul.h) visit only the nonzero entries of ``spikes``, in SIMD
vectors of K (with a scalar tail) and in column blocks of N (with a partial last block), so the
shapes below put K and N on and off those vector and block widths. The CUDA build (and so its
emulation) runs the dense product (cuBLAS; at::mm on the host). The products are checked
against the exact float64 product of the same inputs, with a tolerance relative to the size of
the terms (``|spikes| @ |other|``), and against the dense ``@`` of the same dtype.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import snnkern
from helpers import (
    DTYPES,
    NONCONTIGUOUS_LAYOUTS,
    SPIKE_PRODUCTS,
    SPIKE_SHAPE_IDS,
    SPIKE_SHAPES,
    TOL,
    assert_bitwise,
    assert_opcheck,
    at,
    everywhere,
    everywhere_and_reference,
    make_dense,
    make_spikes,
    noncontiguous,
    run_spike_product,
    spike_rate,
    upstream_like,
    where_cases,
)
from snnkern import ops, reference_ops
from snnkern.nn import LIF, LeakyReadout, RecurrentLIF

# Relative to the size of the terms |spikes| @ |other|: float64 sums of up to 700 terms are good
# to ~1e-14 of it, float32 ones to ~1e-6.
PRODUCT_RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}
DENSITIES = [0.0, 0.02, 0.3, 1.0]


def assert_product(got, spikes, other, transpose=False, rtol=None):
    """``got`` equals spikes @ other (spikes^T @ other with ``transpose``): same shape and dtype,
    within ``rtol`` of |spikes| @ |other| of the exact float64 product, and of the dense ``@`` in
    the same dtype."""
    dtype = spikes.dtype
    rtol = PRODUCT_RTOL[dtype] if rtol is None else rtol
    s = spikes.t() if transpose else spikes
    assert got.dtype == dtype
    assert got.shape == (s.shape[0], other.shape[1])
    want = s.double() @ other.double()
    bound = s.double().abs() @ other.double().abs()
    tiny = torch.finfo(dtype).tiny
    for name, ref in (("exact float64 product", want), ("dense @", (s @ other).double())):
        err = (got.double() - ref).abs()
        limit = rtol * bound + tiny
        bad = err > limit
        assert not bad.any(), (
            f"differs from the {name} at {int(bad.sum())} of {got.numel()} entries; "
            f"largest error {err.max().item():.3g} (bound {limit.max().item():.3g})"
        )


# --------------------------------------------------------------------------------------------
# The raw ops against dense products
# --------------------------------------------------------------------------------------------


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("shape", SPIKE_SHAPES, ids=SPIKE_SHAPE_IDS)
def test_spike_matmul_binary(shape, density, dtype, transpose, where):
    m, k, n = shape
    spikes = make_spikes(m, k, density, dtype, seed=m * 1000 + k, device=where.device)
    other = make_dense(m if transpose else k, n, dtype=dtype, seed=n, device=where.device)
    got = run_spike_product(transpose, spikes, other)
    assert got.device.type == where.device
    assert_product(got, spikes, other, transpose)
    if density == 0.0:
        assert torch.equal(got, torch.zeros_like(got))


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["counts", "signed"])
@pytest.mark.parametrize("density", [0.02, 0.3, 1.0])
@pytest.mark.parametrize(
    "shape", [(1, 13, 7), (5, 700, 130), (17, 64, 200), (9, 130, 1), (6, 33, 513)], ids=lambda s: "x".join(map(str, s))
)
def test_spike_matmul_values(shape, density, kind, dtype, transpose, where):
    """Not only 0/1: spike counts 0..3 and signed (also negative) values are multiplied in."""
    m, k, n = shape
    spikes = make_spikes(m, k, density, dtype, seed=k + 7, kind=kind, device=where.device)
    if kind == "signed" and density == 1.0:
        assert (spikes < 0).any()
    other = make_dense(m if transpose else k, n, dtype=dtype, seed=3, device=where.device)
    assert_product(run_spike_product(transpose, spikes, other), spikes, other, transpose)


@at("cpu")
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_matmul_every_column_tail(dtype, transpose, where):
    """Every width N up to two column blocks (8 SIMD vectors: 64 floats or 32 doubles with AVX2,
    twice that with AVX-512), so that the block of the last columns takes every number of vectors,
    each a compile-time instance in the CPU kernel (csrc/cpu/spike_matmul.h, ColumnBlock), with a
    partial last vector or none; with events, which the binary rows are read from. Exact: spikes
    and ``other`` integer-valued."""
    m, k = 6, 19
    spikes = make_spikes(m, k, 0.4, dtype, seed=15, kind="mixed_counts", device=where.device)
    g = torch.Generator().manual_seed(16)
    for n in range(1, 257 if dtype == torch.float32 else 129):
        other = torch.randint(-8, 9, (m if transpose else k, n), generator=g).to(dtype).to(where.device)
        for events in (None, torch.ops.snnkern.spike_events(spikes)):
            got = run_spike_product(transpose, spikes, other, events)
            want = (spikes.t() if transpose else spikes).double() @ other.double()
            assert torch.equal(got.double(), want), n


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13, 100), (40, 700, 130), (3, 33, 513)], ids=lambda s: "x".join(map(str, s)))
def test_spike_matmul_exact_on_integers(shape, dtype, transpose, where):
    """With spike counts and integer-valued ``other`` every partial sum is an exact integer, so the
    result must equal the dense product bit for bit: a dropped or doubled term shows."""
    m, k, n = shape
    spikes = make_spikes(m, k, 0.3, dtype, seed=11, kind="counts", device=where.device)
    g = torch.Generator().manual_seed(12)
    other = torch.randint(-8, 9, (m if transpose else k, n), generator=g).to(dtype).to(where.device)
    got = run_spike_product(transpose, spikes, other)
    want = (spikes.t() if transpose else spikes).double() @ other.double()
    assert torch.equal(got.double(), want)


@at("cpu")  # the CPU kernel's chunks of rows (spike_matmul_t_part in csrc/cpu/spike_matmul.h)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, density",
    [
        ((20000, 700, 128), 0.3),  # chunks end at their count of nonzeros (~80 rows)
        ((9000, 13, 130), 0.5),  # chunks end at their rows of `other` (~480 rows)
        ((5000, 1, 1), 1.0),  # one column: all of a chunk's nonzeros in it
    ],
    ids=["by-nonzeros", "by-rows", "one-column"],
)
def test_spike_matmul_t_exact_over_many_chunks(shape, density, dtype, where):
    """spike_matmul_t sorts the nonzeros of a chunk of rows by column and adds each column's
    terms at once: over many chunks per thread no term is dropped or added twice (exact integer
    sums, so the result must equal the dense product bit for bit)."""
    m, k, n = shape
    spikes = make_spikes(m, k, density, dtype, seed=13, kind="counts", device=where.device)
    g = torch.Generator().manual_seed(14)
    other = torch.randint(-8, 9, (m, n), generator=g).to(dtype).to(where.device)
    got = run_spike_product(True, spikes, other)
    assert torch.equal(got.double(), spikes.t().double() @ other.double())


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape",
    [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0), (0, 5, 0), (0, 0, 3), (4, 0, 0)],
    ids=lambda s: "x".join(map(str, s)),
)
@pytest.mark.parametrize("with_events", [False, True], ids=["scan", "events"])
def test_spike_matmul_empty(shape, dtype, transpose, with_events, where):
    """M, K or N zero: the right shape, and zeros where the summed-over dimension is empty (K for
    spike_matmul, M for spike_matmul_t), whatever memory torch.empty hands out; also with the
    events of spikes (K = 0: one word per row, the flag)."""
    m, k, n = shape
    spikes = make_spikes(m, k, 0.5, dtype, device=where.device)
    other = make_dense(m if transpose else k, n, dtype=dtype, device=where.device)
    events = torch.ops.snnkern.spike_events(spikes) if with_events else None
    assert events is None or events.shape == (m, (k + 31) // 32 + 1)
    got = run_spike_product(transpose, spikes, other, events)
    want = torch.zeros((k, n) if transpose else (m, n), dtype=dtype, device=where.device)
    assert got.shape == want.shape and got.dtype == dtype
    assert torch.equal(got, want)


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_matmul_empty_sum_after_garbage(dtype, transpose, where):
    """The summed-over dimension empty for an output that is large enough for the allocator to
    hand back memory a previous result (all nonzero) has just freed: still all zeros."""
    kw = dict(dtype=dtype, device=where.device)
    for _ in range(3):
        junk = torch.full((300, 257), 7.0, **kw)
        del junk
        if transpose:
            got = torch.ops.snnkern.spike_matmul_t(torch.zeros(0, 300, **kw), torch.zeros(0, 257, **kw))
        else:
            got = torch.ops.snnkern.spike_matmul(torch.zeros(300, 0, **kw), torch.zeros(0, 257, **kw))
        assert got.shape == (300, 257)
        assert torch.equal(got, torch.zeros(300, 257, **kw))


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["spikes", "other", "both"])
@pytest.mark.parametrize("layout", NONCONTIGUOUS_LAYOUTS)
def test_spike_matmul_noncontiguous(layout, which, dtype, transpose, where):
    m, k, n = 11, 37, 70
    spikes = make_spikes(m, k, 0.3, dtype, seed=5, kind="counts", device=where.device)
    other = make_dense(m if transpose else k, n, dtype=dtype, seed=6, device=where.device)
    s = noncontiguous(spikes, layout) if which in ("spikes", "both") else spikes
    o = noncontiguous(other, layout) if which in ("other", "both") else other
    assert not (s.is_contiguous() and o.is_contiguous())
    got = run_spike_product(transpose, s, o)
    assert got.is_contiguous()
    # The same values, contiguous.
    want = run_spike_product(transpose, s.contiguous(), o.contiguous())
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert_product(got, s.contiguous(), o.contiguous(), transpose)


# The CPU kernels' event-driven semantics: the CUDA build (and its emulation) runs the dense
# product, where 0 * inf = NaN, so the two tests below are for the CPU kernels only.
@at("cpu")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("k", [13, 37, 300])
def test_spike_matmul_zeros_skip_nonfinite(k, bad, dtype, where):
    """Zeros of spikes contribute exactly nothing, also where ``other`` is not finite (documented
    in csrc/cpu/spike_matmul.h): a row of ``other`` holding inf/NaN, selected only by zero
    entries of spikes (including -0.0), leaves those output rows finite and equal to the product
    without it. A dense matmul would give 0 * inf = NaN there. Rows with a nonzero entry at that
    position do become non-finite."""
    m, n = 12, 70
    spikes = make_spikes(m, k, 0.3, dtype, seed=k, kind="counts")
    other = make_dense(k, n, dtype=dtype, seed=2)
    for k0 in (0, k // 2, k - 1):  # in a SIMD vector and in the scalar tail
        spikes[:, k0] = 0.0
        spikes[1::3, k0] = -0.0
        spikes[0, k0] = 1.0
        spikes[5, k0] = 2.0
        other[k0] = bad
    hit = torch.zeros(m, dtype=torch.bool)
    hit[[0, 5]] = True
    got = torch.ops.snnkern.spike_matmul(spikes, other)
    assert not torch.isfinite(got[hit]).any(), "rows with a spike at the non-finite row must be non-finite"
    assert torch.isfinite(got[~hit]).all(), "zeros of spikes picked up a non-finite row of other"
    clean = other.clone()
    for k0 in (0, k // 2, k - 1):
        clean[k0] = 0.0
    assert_product(got[~hit], spikes[~hit], clean)


@at("cpu")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_spike_matmul_t_zeros_skip_nonfinite(bad, dtype, where):
    """spike_matmul_t: a non-finite row m0 of ``other`` only reaches the output rows k where
    spikes[m0, k] is nonzero; the other rows stay finite (zeros contribute nothing)."""
    m, k, n = 20, 37, 70
    spikes = make_spikes(m, k, 0.3, dtype, seed=9, kind="counts")
    other = make_dense(m, n, dtype=dtype, seed=10)
    m0 = 7
    spikes[m0] = 0.0
    spikes[m0, [0, 8, 36]] = torch.tensor([1.0, -0.0, 3.0], dtype=dtype)
    other[m0] = bad
    got = torch.ops.snnkern.spike_matmul_t(spikes, other)
    hit = torch.zeros(k, dtype=torch.bool)
    hit[[0, 36]] = True
    assert not torch.isfinite(got[hit]).any()
    assert torch.isfinite(got[~hit]).all()
    clean = other.clone()
    clean[m0] = 0.0
    assert_product(got[~hit], spikes[:, ~hit], clean, transpose=True)


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k0", [0, 9, 36], ids=["first", "middle", "tail"])
def test_spike_matmul_nan_spike_propagates(k0, dtype, transpose, where):
    """A NaN in spikes is not zero (NaN != 0): it makes its output row all NaN (spike_matmul_t:
    output row k0); the other rows are unaffected."""
    m, k, n = 6, 37, 70
    spikes = make_spikes(m, k, 0.3, dtype, seed=4, device=where.device)
    other = make_dense(m if transpose else k, n, dtype=dtype, seed=5, device=where.device)
    m0 = 2
    spikes[m0, k0] = float("nan")
    got = run_spike_product(transpose, spikes, other)
    row = k0 if transpose else m0
    assert torch.isnan(got[row]).all()
    rest = torch.ones(got.shape[0], dtype=torch.bool, device=where.device)
    rest[row] = False
    assert torch.isfinite(got[rest]).all()
    clean = spikes.clone()
    clean[m0, k0] = 0.0
    torch.testing.assert_close(got[rest], run_spike_product(transpose, clean, other)[rest], rtol=0, atol=0)


@at("cpu")  # at::parallel_for of the CPU kernels
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(600, 300, 100), (2000, 13, 7), (64, 130, 513)], ids=lambda s: "x".join(map(str, s)))
def test_spike_matmul_threads(shape, dtype, transpose, where):
    """1, 2 and 3 threads give the same result bit for bit (large M, so that the rows are split
    between threads and spike_matmul_t adds up partial sums, whose number depends on the shapes only)."""
    m, k, n = shape
    spikes = make_spikes(m, k, 0.1, dtype, seed=21, kind="signed")
    other = make_dense(m if transpose else k, n, dtype=dtype, seed=22)
    original = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert torch.get_num_threads() == threads
            results[threads] = run_spike_product(transpose, spikes, other)
    finally:
        torch.set_num_threads(original)
    assert torch.get_num_threads() == original
    assert_product(results[1], spikes, other, transpose)
    for threads in (2, 3):
        assert torch.equal(results[threads], results[1]), f"{threads} threads differ from 1 thread"


# --------------------------------------------------------------------------------------------
# snnkern.spike_linear: forward and gradients against F.linear
# --------------------------------------------------------------------------------------------

X_SHAPES = [pytest.param((3, 5, 13), id="BTK"), pytest.param((7, 13), id="MK"), pytest.param((13,), id="K")]
OUT_FEATURES = 10


def _linear_inputs(x_shape, dtype, bias, requires=("x", "weight", "bias"), seed=0, kind="binary", device="cpu"):
    k = x_shape[-1]
    x = make_spikes(int(torch.Size(x_shape[:-1]).numel()), k, 0.3, dtype, seed=seed, kind=kind, device=device).reshape(
        x_shape
    )
    weight = make_dense(OUT_FEATURES, k, dtype=dtype, seed=seed + 1, device=device)
    b = make_dense(OUT_FEATURES, dtype=dtype, seed=seed + 2, device=device) if bias else None
    tensors = {"x": x, "weight": weight, "bias": b}
    for name, t in tensors.items():
        if t is not None:
            t.requires_grad_(name in requires)
    return tensors


def _clone_inputs(tensors):
    return {k: None if t is None else t.detach().clone().requires_grad_(t.requires_grad) for k, t in tensors.items()}


def _forward_backward(fn, tensors, seed=3):
    """fn(x, weight, bias), then the gradients of sum(out * upstream) w.r.t. the inputs that
    require grad (only those: the others must not get a .grad)."""
    out = fn(tensors["x"], tensors["weight"], tensors["bias"])
    result = {"out": out.detach()}
    if out.requires_grad:
        (out * upstream_like(out, seed)).sum().backward()
    for name, t in tensors.items():
        if t is None:
            continue
        if t.requires_grad:
            assert t.grad is not None, f"{name} requires grad but got none"
            result["grad_" + name] = t.grad
        else:
            assert t.grad is None, f"{name} does not require grad but got one"
    return result


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("x_shape", X_SHAPES)
@pytest.mark.parametrize("kind", ["binary", "signed"])
def test_spike_linear_matches_linear(x_shape, bias, dtype, kind, where):
    tensors = _linear_inputs(x_shape, dtype, bias, kind=kind, device=where.device)
    got = _forward_backward(lambda x, w, b: snnkern.spike_linear(x, w, b, backend="compiled"), _clone_inputs(tensors))
    want = _forward_backward(F.linear, tensors)
    assert got.keys() == want.keys()
    assert set(got) == {"out", "grad_x", "grad_weight"} | ({"grad_bias"} if bias else set())
    assert got["out"].shape == (*x_shape[:-1], OUT_FEATURES)
    for key in want:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype, key
        torch.testing.assert_close(got[key], want[key], **TOL[dtype], msg=lambda m, key=key: f"{key}: {m}")


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "requires",
    [("weight",), ("x",), ("bias",), ("x", "bias"), ("weight", "bias"), ()],
    ids=["weight", "x", "bias", "x+bias", "weight+bias", "none"],
)
def test_spike_linear_partial_requires_grad(requires, dtype, where):
    tensors = _linear_inputs((3, 5, 13), dtype, True, requires=requires, seed=4, device=where.device)
    got = _forward_backward(lambda x, w, b: snnkern.spike_linear(x, w, b, backend="compiled"), _clone_inputs(tensors))
    want = _forward_backward(F.linear, tensors)
    assert set(got) == {"out"} | {"grad_" + r for r in requires}
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **TOL[dtype], msg=lambda m, key=key: f"{key}: {m}")


@everywhere
def test_spike_linear_no_grad_mode(where):
    tensors = _linear_inputs((3, 5, 13), torch.float64, True, seed=5, device=where.device)
    with torch.no_grad():
        out = snnkern.spike_linear(tensors["x"], tensors["weight"], tensors["bias"], backend="compiled")
    assert not out.requires_grad
    torch.testing.assert_close(out, F.linear(*tensors.values()).detach(), **TOL[torch.float64])


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "x_shape, out_features",
    [((0, 13), 10), ((2, 0, 13), 10), ((4, 13), 0), ((0, 13), 0), ((13,), 0)],
    ids=["M0", "T0", "out0", "M0-out0", "1d-out0"],
)
def test_spike_linear_empty(x_shape, out_features, dtype, where):
    x = torch.zeros(x_shape, dtype=dtype, device=where.device, requires_grad=True)
    weight = make_dense(out_features, x_shape[-1], dtype=dtype, device=where.device).requires_grad_()
    bias = make_dense(out_features, dtype=dtype, device=where.device).requires_grad_()
    got = snnkern.spike_linear(x, weight, bias, backend="compiled")
    want = F.linear(x, weight, bias)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    grads = torch.autograd.grad((got * 2.0).sum(), (x, weight, bias), allow_unused=True)
    want_grads = torch.autograd.grad((want * 2.0).sum(), (x, weight, bias), allow_unused=True)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(
            torch.zeros(0, device=where.device) if g is None else g,
            torch.zeros(0, device=where.device) if w is None else w,
            rtol=0,
            atol=0,
            check_dtype=False,
        )


@everywhere_and_reference
@pytest.mark.parametrize("x_shape", [(4, 0), (2, 3, 0), (0,)], ids=["MK0", "BTK0", "K0"])
def test_spike_linear_no_in_features(x_shape, where):
    """in_features = 0 (x [..., 0], weight [out, 0]): F.linear gives the bias broadcast (zeros
    plus bias); spike_linear, documented to equal F.linear for any input, must too."""
    x = torch.zeros(x_shape, dtype=torch.float64, device=where.device)
    weight = torch.zeros(5, 0, dtype=torch.float64, device=where.device)
    bias = make_dense(5, device=where.device)
    want = F.linear(x, weight, bias)
    got = snnkern.spike_linear(x, weight, bias, backend=where.backend)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@everywhere
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("x_shape", [(2, 3, 6), (4, 6), (6,)], ids=["BTK", "MK", "K"])
def test_spike_linear_gradcheck(x_shape, bias, where):
    tensors = _linear_inputs(x_shape, torch.float64, bias, seed=6, kind="counts", device=where.device)
    tensors["weight"] = tensors["weight"][:4].detach().requires_grad_()
    if bias:
        tensors["bias"] = tensors["bias"][:4].detach().requires_grad_()
    inputs = tuple(t for t in tensors.values() if t is not None)

    def f(*args):
        return snnkern.spike_linear(*args, backend="compiled")

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-7)


@everywhere
@pytest.mark.parametrize("shape", [(3, 6, 4), (1, 9, 1), (5, 1, 3)], ids=lambda s: "x".join(map(str, s)))
def test_spike_matmul_gradcheck(shape, where):
    m, k, n = shape
    spikes = make_spikes(m, k, 0.5, torch.float64, seed=8, kind="signed", device=where.device).requires_grad_()
    other = make_dense(k, n, seed=9, device=where.device).requires_grad_()
    assert torch.autograd.gradcheck(torch.ops.snnkern.spike_matmul, (spikes, other), eps=1e-6, atol=1e-8, rtol=1e-7)


def test_spike_linear_reference_backend_is_linear():
    """The reference backend is F.linear itself (the compiled one is compared with F.linear in
    test_spike_linear_matches_linear)."""
    tensors = _linear_inputs((3, 5, 13), torch.float64, True, seed=10, kind="signed")
    got = snnkern.spike_linear(tensors["x"], tensors["weight"], tensors["bias"], backend="reference")
    assert torch.equal(got, F.linear(tensors["x"], tensors["weight"], tensors["bias"]))


# --------------------------------------------------------------------------------------------
# torch.library.opcheck and torch.compile
# --------------------------------------------------------------------------------------------

OPCHECK_SHAPES = [(3, 13, 7), (2, 5, 3), (1, 1, 1), (6, 40, 70), (0, 4, 3), (3, 0, 2), (3, 4, 0)]


@everywhere
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("shape", OPCHECK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_opcheck_spike_matmul(shape, requires_grad, where):
    m, k, n = shape
    spikes = make_spikes(m, k, 0.4, torch.float64, seed=1, kind="counts", device=where.device)
    other = make_dense(k, n, seed=2, device=where.device)
    assert_opcheck(
        torch.ops.snnkern.spike_matmul.default,
        (spikes.requires_grad_(requires_grad), other.requires_grad_(requires_grad)),
    )


@everywhere
@pytest.mark.parametrize("shape", OPCHECK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_opcheck_spike_matmul_t(shape, where):
    m, k, n = shape
    spikes = make_spikes(m, k, 0.4, torch.float64, seed=3, kind="counts", device=where.device)
    other = make_dense(m, n, seed=4, device=where.device)
    assert_opcheck(torch.ops.snnkern.spike_matmul_t.default, (spikes, other))


def _small_projection(x, weight, bias):
    return torch.tanh(snnkern.spike_linear(x, weight, bias)) * 2.0


# The emulated lanes get the cheap aot_eager compile only (see test_ops.COMPILE_CASES).
COMPILE_CASES = where_cases(
    ("cpu", "aot_eager"), ("cpu", "inductor"), ("emulated", "aot_eager"), ("cuda", "aot_eager"), ("cuda", "inductor")
)


@pytest.mark.parametrize("where, compile_backend", COMPILE_CASES, indirect=["where"])
def test_spike_linear_torch_compile_fullgraph(where, compile_backend):
    """Binary rows and rows of counts and signed values (events on the CPU, read for the binary
    rows only), over three words of events."""
    torch._dynamo.reset()
    try:
        tensors = _linear_inputs((3, 5, 70), torch.float64, True, seed=12, kind="mixed", device=where.device)
        compiled_fn = torch.compile(_small_projection, fullgraph=True, backend=compile_backend)
        got = _forward_backward(compiled_fn, _clone_inputs(tensors), seed=13)
        want = _forward_backward(_small_projection, tensors, seed=13)
        assert set(got) == {"out", "grad_x", "grad_weight", "grad_bias"}
        for key in want:
            torch.testing.assert_close(got[key], want[key], **TOL[torch.float64], msg=lambda m, key=key: f"{key}: {m}")
        # And eager is F.linear's.
        ref = _forward_backward(lambda x, w, b: torch.tanh(F.linear(x, w, b)) * 2.0, _clone_inputs(tensors), seed=13)
        for key in ref:
            torch.testing.assert_close(want[key], ref[key], **TOL[torch.float64], msg=lambda m, key=key: f"{key}: {m}")
    finally:
        torch._dynamo.reset()


# --------------------------------------------------------------------------------------------
# spike_linear's spike events (the CPU): bit for bit the products without them
# --------------------------------------------------------------------------------------------


def _spike_linear_without_events(x, weight, bias):
    """spike_linear as before events: spike_matmul of x as [rows, in_features] without events,
    and so its weight gradient spike_matmul_t without them."""
    out = torch.ops.snnkern.spike_matmul(x.reshape(-1, x.shape[-1]), weight.t()).view(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


def _compiled_spike_linear(x, weight, bias):
    return snnkern.spike_linear(x, weight, bias, backend="compiled")


EVENT_X_SHAPES = [
    pytest.param((3, 5, 70), id="BTK"),
    pytest.param((7, 13), id="MK"),
    pytest.param((33,), id="K"),
    pytest.param((40, 700), id="MK700"),
]


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("x_shape", EVENT_X_SHAPES)
@pytest.mark.parametrize("kind", ["binary", "counts", "signed", "mixed"])
def test_spike_linear_events_change_no_bit(kind, x_shape, bias, dtype, where):
    """spike_linear (events on the CPU) gives the output and the x, weight and bias gradients of
    the products without events bit for bit, for binary x and x with other values."""
    tensors = _linear_inputs(x_shape, dtype, bias, seed=len(x_shape), kind=kind, device=where.device)
    got = _forward_backward(_compiled_spike_linear, _clone_inputs(tensors))
    want = _forward_backward(_spike_linear_without_events, tensors)
    assert got.keys() == want.keys() == {"out", "grad_x", "grad_weight"} | ({"grad_bias"} if bias else set())
    assert want["grad_weight"].abs().max() > 0
    for key in want:
        assert_bitwise(got[key], want[key], key)


class _RecordSnnkernOps(TorchDispatchMode):
    """Records (op name, args) of every snnkern op that runs (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "snnkern":
            self.calls.append((func._opname, args))
        return func(*args, **(kwargs or {}))


@at("cpu")
@pytest.mark.parametrize("kind", ["binary", "mixed"])
def test_spike_linear_uses_events_on_cpu(kind, where):
    """On the CPU, spike_linear makes the events of x once and passes them to spike_matmul in the
    forward and to spike_matmul_t (the weight gradient) in the backward."""
    tensors = _linear_inputs((3, 5, 70), torch.float64, True, seed=4, kind=kind, device=where.device)
    with _RecordSnnkernOps() as record:
        out = _compiled_spike_linear(tensors["x"], tensors["weight"], tensors["bias"])
        out.backward(upstream_like(out, 5))
    names = [name for name, _ in record.calls]
    assert names == ["spike_events", "spike_matmul", "spike_matmul_t"], names
    x2d = tensors["x"].detach().reshape(15, 70)
    (_, (events_of,)), (_, forward), (_, backward) = record.calls
    assert torch.equal(events_of, x2d)
    want = reference_ops.spike_events(x2d)
    assert len(forward) == 3 and torch.equal(forward[2], want)
    assert len(backward) == 3 and backward[2].data_ptr() == forward[2].data_ptr(), "the same events in the backward"


@everywhere
@pytest.mark.parametrize("layout", [*NONCONTIGUOUS_LAYOUTS, "time_major"])
@pytest.mark.parametrize("kind", ["binary", "mixed"])
def test_spike_linear_events_noncontiguous_x(kind, layout, where):
    """x a non-contiguous view (NaN around its values where sliced): the output and gradients of
    the same values contiguous, and of the products without events, bit for bit."""
    tensors = _linear_inputs((12, 70), torch.float64, True, seed=6, kind=kind, device=where.device)

    def view(x):  # "time_major": [T, B, K] stored, used as [B, T, K]
        return x.reshape(4, 3, 70).transpose(0, 1) if layout == "time_major" else noncontiguous(x, layout)

    results = {
        label: _forward_backward(lambda x, w, b, fn=fn: fn(x, w, b), _clone_inputs(tensors))
        for label, fn in (
            ("view", lambda x, w, b: _compiled_spike_linear(view(x), w, b)),
            ("contiguous", lambda x, w, b: _compiled_spike_linear(view(x).contiguous(), w, b)),
            ("without events", lambda x, w, b: _spike_linear_without_events(view(x), w, b)),
        )
    }
    assert not view(tensors["x"]).is_contiguous()
    for label in ("contiguous", "without events"):
        assert results[label].keys() == results["view"].keys() == {"out", "grad_x", "grad_weight", "grad_bias"}
        for key in results["view"]:
            assert_bitwise(results["view"][key], results[label][key], f"{key} ({label})")


@at("cpu")
def test_spike_linear_torch_compile_graph_passes_events(where):
    """The graphs torch.compile traces on the CPU: the forward makes spike_events of x and passes
    it to spike_matmul; the backward passes those events to spike_matmul_t. The compiled output
    and weight gradient equal the eager ones bit for bit (the same kernels)."""
    from torch._dynamo.backends.common import aot_autograd

    graphs: dict[str, list] = {"forward": [], "backward": []}

    def keep(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm)
            return gm.forward

        return compiler

    backend = aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"))
    torch._dynamo.reset()
    try:
        tensors = _linear_inputs((3, 5, 70), torch.float64, True, seed=14, device=where.device)
        compiled_fn = torch.compile(_compiled_spike_linear, fullgraph=True, backend=backend)
        got = _forward_backward(compiled_fn, _clone_inputs(tensors), seed=15)
        want = _forward_backward(_compiled_spike_linear, tensors, seed=15)
    finally:
        torch._dynamo.reset()
    assert len(graphs["forward"]) == 1 and len(graphs["backward"]) == 1

    def calls(gm, op):
        return [node for node in gm.graph.nodes if node.op == "call_function" and node.target == op]

    forward, backward = graphs["forward"][0], graphs["backward"][0]
    (events_node,) = calls(forward, torch.ops.snnkern.spike_events.default)
    (matmul,) = calls(forward, torch.ops.snnkern.spike_matmul.default)
    assert len(matmul.args) == 3 and matmul.args[2] is events_node
    (matmul_t,) = calls(backward, torch.ops.snnkern.spike_matmul_t.default)
    assert len(matmul_t.args) == 3 and matmul_t.args[2] is not None
    assert matmul_t.args[2].op == "placeholder", "the events saved by the forward"
    for key in ("out", "grad_weight"):
        assert_bitwise(got[key], want[key], key)


# --------------------------------------------------------------------------------------------
# Layers with sparse_input=True
# --------------------------------------------------------------------------------------------

IN, OUT, B, T = 40, 24, 3, 30

LAYERS = {
    "lif": lambda **kw: LIF(IN, OUT, alpha=0.9, **kw),
    "lif_dale": lambda **kw: LIF(IN, OUT, alpha=0.9, dale_ie_ratio=0.5, **kw),
    "lif_syn_bias": lambda **kw: LIF(IN, OUT, alpha=0.9, alpha_syn=0.8, bias=True, reset="subtract", **kw),
    "recurrent": lambda **kw: RecurrentLIF(IN, OUT, alpha=0.9, alpha_syn=0.8, **kw),
    "recurrent_dale": lambda **kw: RecurrentLIF(IN, OUT, alpha=0.9, dale_ie_ratio=0.5, bias=True, **kw),
    "readout": lambda **kw: LeakyReadout(IN, OUT, alpha=0.9, **kw),
    "readout_syn_bias": lambda **kw: LeakyReadout(IN, OUT, alpha=0.9, alpha_syn=0.8, bias=True, **kw),
}


def _counting_spike_linear(monkeypatch):
    calls = []
    original = ops.spike_linear

    def wrapper(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return original(*args, **kwargs)

    monkeypatch.setattr(ops, "spike_linear", wrapper)
    return calls


@everywhere
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_sparse_input_matches_dense(name, monkeypatch, where):
    """Same layer, same state_dict, float64, a 0/1 spike train as input: sparse_input=True (the
    projection through snnkern.spike_linear) gives the spikes / membrane and parameter gradients
    of sparse_input=False (nn.Linear / DaleLinear)."""
    torch.manual_seed(3)
    dense = LAYERS[name](sparse_input=False, backend="compiled", dtype=torch.float64).to(where.device)
    with torch.no_grad():
        dense.linear.weight.mul_(4.0)  # a livelier spike rate
    sparse = LAYERS[name](sparse_input=True, backend="compiled", dtype=torch.float64).to(where.device)
    sparse.load_state_dict(dense.state_dict())
    x = make_spikes(B * T, IN, 0.2, torch.float64, seed=14, device=where.device).reshape(B, T, IN)
    calls = _counting_spike_linear(monkeypatch)

    results = {}
    for label, layer in (("dense", dense), ("sparse", sparse)):
        del calls[:]
        out = layer(x)
        assert calls == (["compiled"] if label == "sparse" else []), f"{label}: spike_linear calls {calls}"
        params = dict(layer.named_parameters())
        grads = torch.autograd.grad((out * upstream_like(out, 15)).sum(), list(params.values()))
        results[label] = (out.detach(), dict(zip(params, grads)))
    (out_d, grads_d), (out_s, grads_s) = results["dense"], results["sparse"]
    assert out_s.shape == (B, T, OUT) and out_s.dtype == torch.float64
    if name.startswith("readout"):
        torch.testing.assert_close(out_s, out_d, **TOL[torch.float64])
    else:
        rate = spike_rate(out_d)
        assert 0.0 < rate < 1.0, f"degenerate spike rate {rate}"
        assert torch.equal(out_s, out_d)
    assert grads_s.keys() == grads_d.keys() and "linear.weight" in grads_d
    for key in grads_d:
        assert grads_d[key].abs().max() > 0, f"{key}: zero gradient, the test checks nothing"
        torch.testing.assert_close(
            grads_s[key], grads_d[key], **TOL[torch.float64], msg=lambda m, key=key: f"{key}: {m}"
        )


@everywhere
@pytest.mark.parametrize("name", ["lif", "recurrent", "readout"])
def test_layer_sparse_input_reference_backend(name, monkeypatch, where):
    """backend="reference" with sparse_input=True: spike_linear's reference (F.linear), the same
    outputs as the compiled sparse layer."""
    torch.manual_seed(4)
    ref = LAYERS[name](sparse_input=True, backend="reference", dtype=torch.float64).to(where.device)
    with torch.no_grad():
        ref.linear.weight.mul_(4.0)
    comp = LAYERS[name](sparse_input=True, backend="compiled", dtype=torch.float64).to(where.device)
    comp.load_state_dict(ref.state_dict())
    x = make_spikes(2 * 10, IN, 0.2, torch.float64, seed=16, device=where.device).reshape(2, 10, IN)
    calls = _counting_spike_linear(monkeypatch)
    out_r = ref(x)
    assert calls == ["reference"]
    out_c = comp(x)
    if name == "readout":
        torch.testing.assert_close(out_c, out_r, **TOL[torch.float64])
    else:
        assert 0.0 < spike_rate(out_r) < 1.0
        assert torch.equal(out_c, out_r)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

ERR = (ValueError, TypeError)
K_IN = 5


def _good(device):
    return (torch.zeros(2, 3, K_IN, device=device), torch.zeros(4, K_IN, device=device), torch.zeros(4, device=device))


# Each case: a function of (x, weight, bias, zeros) giving the bad arguments (``zeros(*shape)``
# makes a float32 tensor beside x), and the error it must raise.
BAD_LINEAR = {
    "x_not_tensor": (lambda x, w, b, z: ([[0.0] * K_IN], w, b), r"\bx\b.*torch\.Tensor"),
    "weight_not_tensor": (lambda x, w, b, z: (x, [[0.0] * K_IN] * 4, b), r"\bweight\b.*torch\.Tensor"),
    "bias_not_tensor": (lambda x, w, b, z: (x, w, [0.0] * 4), r"\bbias\b"),
    "integer_x": (lambda x, w, b, z: (x.long(), w, b), r"\bx\b.*floating"),
    "bool_x": (lambda x, w, b, z: (x.bool(), w, b), r"\bx\b.*floating"),
    "weight_in_features": (lambda x, w, b, z: (x, z(4, K_IN + 1), b), r"\bweight\b.*shape"),
    "weight_transposed": (lambda x, w, b, z: (x, z(K_IN, 4), b), r"\bweight\b.*shape"),
    "weight_1d": (lambda x, w, b, z: (x, z(K_IN), b), r"\bweight\b.*shape"),
    "weight_3d": (lambda x, w, b, z: (x, z(1, 4, K_IN), b), r"\bweight\b.*shape"),
    "weight_dtype": (lambda x, w, b, z: (x, w.double(), b), r"\bweight\b.*dtype"),
    "weight_meta": (lambda x, w, b, z: (x, w.to("meta"), b), r"\bweight\b.*meta"),
    "bias_shape": (lambda x, w, b, z: (x, w, z(5)), r"\bbias\b.*shape"),
    "bias_2d": (lambda x, w, b, z: (x, w, z(1, 4)), r"\bbias\b.*shape"),
    "bias_dtype": (lambda x, w, b, z: (x, w, b.double()), r"\bbias\b.*dtype"),
    "x_0d": (lambda x, w, b, z: (z(), w, b), r"\bx\b.*dimension"),
}


@everywhere_and_reference
@pytest.mark.parametrize("case", list(BAD_LINEAR))
def test_spike_linear_bad_input(case, where):
    make, pattern = BAD_LINEAR[case]
    x, w, b = make(*_good(where.device), lambda *shape: torch.zeros(shape, device=where.device))
    with pytest.raises(ERR, match=pattern):
        snnkern.spike_linear(x, w, b, backend=where.backend)


def test_spike_linear_bad_backend():
    x, w, b = _good("cpu")
    with pytest.raises(ValueError, match="backend"):
        snnkern.spike_linear(x, w, b, backend="dense")


# (spikes, other) for spike_matmul, as a function of (transpose, zeros), ``zeros(*shape, dtype=)``
# making a tensor on the test's device; spike_matmul_t swaps the meaning of other's rows.
BAD_OPS = {
    "spikes_1d": (lambda t, z: (z(4), z(4, 3)), r"spikes must be a matrix"),
    "spikes_3d": (lambda t, z: (z(2, 4, 3), z(3, 3)), r"spikes must be a matrix"),
    "other_1d": (lambda t, z: (z(2, 4), z(4)), r"other must have shape"),
    "inner_mismatch": (lambda t, z: (z(2, 4), z(2 + 1 if t else 4 + 1, 3)), r"other must have shape \[\d+, \*\]"),
    "dtype_mismatch": (lambda t, z: (z(2, 4), z(2 if t else 4, 3, dtype=torch.float64)), r"other has dtype.*spikes"),
    "integer_spikes": (
        lambda t, z: (z(2, 4, dtype=torch.int64), z(2 if t else 4, 3, dtype=torch.int64)),
        r"spikes must be floating point",
    ),
    "bool_spikes": (
        lambda t, z: (z(2, 4, dtype=torch.bool), z(2 if t else 4, 3, dtype=torch.bool)),
        r"spikes must be floating point",
    ),
}
# Half precision is for the CUDA build (and its emulation); the CPU kernels reject it.
BAD_OPS_CPU = {
    "float16_cpu": (
        lambda t, z: (z(2, 4, dtype=torch.float16), z(2 if t else 4, 3, dtype=torch.float16)),
        r"float32 and float64",
    ),
    "bfloat16_cpu": (
        lambda t, z: (z(2, 4, dtype=torch.bfloat16), z(2 if t else 4, 3, dtype=torch.bfloat16)),
        r"float32 and float64",
    ),
}
BAD_OP_CASES = where_cases(
    *((w, c) for w in ("cpu", "emulated", "cuda") for c in BAD_OPS), *(("cpu", c) for c in BAD_OPS_CPU)
)


@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("where, case", BAD_OP_CASES, indirect=["where"])
def test_spike_matmul_bad_input(where, case, transpose):
    make, pattern = {**BAD_OPS, **BAD_OPS_CPU}[case]
    name = "spike_matmul_t" if transpose else "spike_matmul"

    def zeros(*shape, dtype=torch.float32):
        return torch.zeros(shape, dtype=dtype, device=where.device)

    with pytest.raises(RuntimeError, match=rf"snnkern\.{name}\b.*{pattern}"):
        run_spike_product(transpose, *make(transpose, zeros))


@everywhere
def test_spike_matmul_inner_mismatch_transposed_meaning(where):
    """spike_matmul needs other [K, *] (K = columns of spikes), spike_matmul_t other [M, *]
    (M = rows of spikes): an operand valid for one is rejected by the other."""
    spikes = make_spikes(2, 4, 0.5, torch.float32, device=where.device)
    for_matmul = make_dense(4, 3, dtype=torch.float32, device=where.device)
    for_t = make_dense(2, 3, dtype=torch.float32, device=where.device)
    assert torch.ops.snnkern.spike_matmul(spikes, for_matmul).shape == (2, 3)
    assert torch.ops.snnkern.spike_matmul_t(spikes, for_t).shape == (4, 3)
    with pytest.raises(RuntimeError, match=r"other must have shape \[4, \*\]"):
        torch.ops.snnkern.spike_matmul(spikes, for_t)
    with pytest.raises(RuntimeError, match=r"other must have shape \[2, \*\]"):
        torch.ops.snnkern.spike_matmul_t(spikes, for_matmul)
