"""The compiled ops (torch.ops.snnkern.*) against the reference loops (snnkern.reference_ops), on
the CPU kernels, the emulated CUDA lanes and CUDA (the ``where`` fixture, tests/helpers.py).

Parity is checked forward AND backward for every option combination. The backward of
``lif`` uses a surrogate derivative for the spike, which is not the derivative of the
(piecewise-constant) forward, so it cannot be gradchecked: the surrogate backward is tested
by comparing the compiled backward with the reference's autograd through the loop
(test_lif_parity). gradcheck (numerical differentiation) is applied where the forward is
smooth: ``leaky`` fully, and ``lif`` with reset="none" on the membrane and state outputs only.
"""

import pytest
import torch

import snnkern
from helpers import (
    DTYPES,
    EMPTY_SHAPES,
    ORDERINGS,
    RESETS,
    SURROGATES,
    TOL,
    all_lif_options,
    assert_opcheck,
    assert_same,
    chunked_lif,
    clone_case,
    everywhere,
    everywhere_and_reference,
    make_case,
    run_leaky,
    run_lif,
    spike_rate,
    upstream_like,
    where_cases,
)
from snnkern import ops, reference_ops
from snnkern._checks import prepare_lif_args

# --------------------------------------------------------------------------------------------
# Full option grid: compiled vs reference, forward and backward
# --------------------------------------------------------------------------------------------


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts, syn, alpha_kind", all_lif_options())
def test_lif_parity(opts, syn, alpha_kind, dtype, where):
    case = make_case(3, 9, 5, dtype, where.device, syn=syn, alpha_kind=alpha_kind, seed=7)
    want = run_lif(case, "reference", **opts)
    got = run_lif(clone_case(case), "compiled", **opts)
    assert got["spikes"].device.type == where.device
    rate = spike_rate(want["spikes"])
    assert 0.0 < rate < 1.0, f"test inputs give a degenerate spike rate {rate}"
    assert_same(got, want, TOL[dtype])


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threshold", [0.6, 1.7])
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset", RESETS)
def test_lif_parity_threshold(threshold, ordering, reset, dtype, where):
    # Triangle's derivative depends on the threshold; subtract reset uses it too.
    case = make_case(2, 10, 6, dtype, where.device, syn=True, seed=3, x_shift=0.3 * threshold)
    opts = dict(ordering=ordering, reset=reset, threshold=threshold, surrogate=SURROGATES[2], return_membrane=True)
    want = run_lif(case, "reference", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same(run_lif(clone_case(case), "compiled", **opts), want, TOL[dtype])


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha_kind", ["scalar", "tensor"])
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "state"])
def test_leaky_parity(syn, alpha_kind, with_state, dtype, where):
    case = make_case(3, 11, 4, dtype, where.device, syn=syn, alpha_kind=alpha_kind, with_state=with_state, seed=5)
    want = run_leaky(case, "reference")
    assert_same(run_leaky(clone_case(case), "compiled"), want, TOL[dtype])


@everywhere
@pytest.mark.parametrize("which", ["x", "alpha", "alpha_syn", "state"])
def test_lif_partial_requires_grad(which, where):
    """Only one input requires grad: the others get no gradient and the one that does matches."""
    case = make_case(2, 8, 5, torch.float64, where.device, syn=True, seed=11, requires_grad=False)
    getattr(case, which).requires_grad_(True)
    opts = dict(ordering="spike_first", reset="subtract", return_membrane=True)
    want = run_lif(case, "reference", **opts)
    got = run_lif(clone_case(case), "compiled", **opts)
    assert "grad_" + which in got
    assert_same(got, want, TOL[torch.float64])


@everywhere
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_lif_no_grad_forward_equals_grad_forward(ordering, where):
    case = make_case(2, 9, 5, torch.float32, where.device, syn=True, seed=2)
    with_grad = snnkern.lif(
        case.x,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        ordering=ordering,
        return_membrane=True,
        backend="compiled",
    )
    with torch.no_grad():
        without = snnkern.lif(
            case.x,
            case.alpha,
            alpha_syn=case.alpha_syn,
            state=case.state,
            ordering=ordering,
            return_membrane=True,
            backend="compiled",
        )
    assert not without.spikes.requires_grad
    for a, b in zip(with_grad, without):
        assert torch.equal(a.detach(), b)


@everywhere
@pytest.mark.parametrize("form", ["0d", "1elem"])
def test_lif_alpha_broadcast_forms(form, where):
    """alpha as a 0-d tensor or a [1] tensor broadcasts over the neurons and gets a gradient of its shape."""
    case = make_case(2, 8, 5, torch.float64, where.device, syn=True, seed=4)
    shape = () if form == "0d" else (1,)
    case.alpha = torch.full(shape, 0.8, dtype=torch.float64, device=where.device, requires_grad=True)
    case.alpha_syn = torch.full(shape, 0.6, dtype=torch.float64, device=where.device, requires_grad=True)
    opts = dict(ordering="delayed", return_membrane=True)
    want = run_lif(case, "reference", **opts)
    got = run_lif(clone_case(case), "compiled", **opts)
    assert got["grad_alpha"].shape == shape
    assert_same(got, want, TOL[torch.float64])


# --------------------------------------------------------------------------------------------
# Edge shapes and memory layouts
# --------------------------------------------------------------------------------------------

EDGE_SHAPES = [(1, 1, 1), (1, 6, 4), (3, 1, 5), (4, 6, 1), (3, 7, 13), (5, 17, 2)]
EDGE_OPTS = [
    dict(ordering="delayed", reset="zero"),
    dict(ordering="spike_first", reset="subtract", detach_reset=True),
    dict(ordering="update_first", reset="none"),
]


@everywhere
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("opt_index", range(len(EDGE_OPTS)))
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_lif_edge_shapes(shape, opt_index, syn, dtype, where):
    case = make_case(*shape, dtype, where.device, syn=syn, seed=sum(shape))
    opts = dict(EDGE_OPTS[opt_index], return_membrane=True)
    assert_same(run_lif(clone_case(case), "compiled", **opts), run_lif(case, "reference", **opts), TOL[dtype])


@everywhere
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_leaky_edge_shapes(shape, syn, where):
    case = make_case(*shape, torch.float64, where.device, syn=syn, seed=sum(shape))
    assert_same(run_leaky(clone_case(case), "compiled"), run_leaky(case, "reference"), TOL[torch.float64])


@everywhere
@pytest.mark.parametrize("shape", [(64, 50, 300), (1, 200, 1), (7, 3, 1000)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_lif_parity_larger(shape, ordering, where):
    """Sizes that span many CUDA thread blocks (and many CPU tasks) or a long time loop. float64
    only: in float32 the per-neuron alpha gradient sums B*T = 3200 terms of size ~1e3 in another
    order than autograd, so it differs by up to ~4e-5 relative (rounding, not a bug); the float32
    grid above uses small shapes at TOL."""
    case = make_case(*shape, torch.float64, where.device, syn=True, seed=8)
    opts = dict(ordering=ordering, reset="subtract", surrogate=SURROGATES[0], return_membrane=True)
    want = run_lif(case, "reference", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same(run_lif(clone_case(case), "compiled", **opts), want, TOL[torch.float64])


def _noncontiguous(layout, b, t, n, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        return (torch.randn(*shape, generator=g, dtype=dtype) * 0.6 + 0.3).to(device).requires_grad_()

    if layout == "transposed":  # [B, N, T] storage viewed as [B, T, N]
        return leaf(b, n, t), lambda base: base.transpose(1, 2)
    if layout == "time_sliced":  # every other time step
        return leaf(b, 2 * t, n), lambda base: base[:, ::2]
    if layout == "neuron_sliced":
        return leaf(b, t, 2 * n + 1), lambda base: base[:, :, 1::2]
    if layout == "batch_expanded":  # stride 0 over the batch
        return leaf(1, t, n), lambda base: base.expand(b, t, n)
    raise ValueError(layout)


@everywhere
@pytest.mark.parametrize("layout", ["transposed", "time_sliced", "neuron_sliced", "batch_expanded"])
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lif_noncontiguous(layout, ordering, dtype, where):
    b, t, n = 3, 8, 5
    results = []
    for backend in ("reference", "compiled"):
        base, view = _noncontiguous(layout, b, t, n, dtype, where.device, seed=9)
        x = view(base)
        assert not x.is_contiguous()
        alpha_base = torch.linspace(0.7, 0.95, 2 * n, dtype=dtype, device=where.device).requires_grad_()
        state_base = torch.randn(b, 3, n, generator=torch.Generator().manual_seed(1), dtype=dtype) * 0.5
        state_base = state_base.to(where.device).requires_grad_()
        res = snnkern.lif(
            x,
            alpha_base[::2],
            alpha_syn=0.7,
            state=state_base.transpose(0, 1),
            ordering=ordering,
            return_membrane=True,
            backend=backend,
        )
        loss = sum((v * upstream_like(v, k)).sum() for k, v in enumerate(res))
        grads = torch.autograd.grad(loss, [base, alpha_base, state_base])
        results.append(
            {
                "spikes": res.spikes.detach(),
                "membrane": res.membrane.detach(),
                "state": res.state.detach(),
                "grad_x": grads[0],
                "grad_alpha": grads[1],
                "grad_state": grads[2],
            }
        )
    assert_same(results[1], results[0], TOL[dtype])


@everywhere
@pytest.mark.parametrize("layout", ["transposed", "time_sliced", "batch_expanded"])
def test_leaky_noncontiguous(layout, where):
    results = []
    for backend in ("reference", "compiled"):
        base, view = _noncontiguous(layout, 3, 8, 5, torch.float64, where.device, seed=9)
        res = snnkern.leaky(view(base), 0.9, alpha_syn=0.6, backend=backend)
        loss = sum((v * upstream_like(v, k)).sum() for k, v in enumerate(res))
        (grad,) = torch.autograd.grad(loss, [base])
        results.append({"membrane": res.membrane.detach(), "state": res.state.detach(), "grad_x": grad})
    assert_same(results[1], results[0], TOL[torch.float64])


@everywhere_and_reference
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_lif_empty(shape, ordering, syn, where):
    case = make_case(*shape, torch.float64, where.device, syn=syn, seed=1)
    got = run_lif(case, where.backend, ordering=ordering, return_membrane=True)
    b, t, n = shape
    assert got["spikes"].shape == (b, t, n) and got["membrane"].shape == (b, t, n)
    assert got["state"].shape == (3, b, n)
    for name in ("x", "alpha", "alpha_syn", "state"):
        if "grad_" + name in got:
            assert got["grad_" + name].shape == getattr(case, name).shape
    if t == 0:
        # No step: the final state is the initial one, and so is its gradient's path.
        assert torch.equal(got["state"], case.state.detach())
        assert torch.equal(got["grad_state"], upstream_like(got["state"], 123 + 1))
    if where.backend == "compiled":
        assert_same(
            got, run_lif(clone_case(case), "reference", ordering=ordering, return_membrane=True), TOL[torch.float64]
        )


@everywhere_and_reference
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_leaky_empty(shape, syn, where):
    case = make_case(*shape, torch.float64, where.device, syn=syn, seed=1)
    got = run_leaky(case, where.backend)
    assert got["membrane"].shape == shape and got["state"].shape == (3, shape[0], shape[2])
    if where.backend == "compiled":
        assert_same(got, run_leaky(clone_case(case), "reference"), TOL[torch.float64])


# --------------------------------------------------------------------------------------------
# Chunked runs (state=) equal the whole run
# --------------------------------------------------------------------------------------------


@everywhere_and_reference
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize(
    "reset, detach, syn",
    [("zero", False, False), ("subtract", True, True), ("zero", True, True), ("none", False, True)],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lif_chunked_equals_whole(where, ordering, reset, detach, syn, dtype):
    case = make_case(3, 12, 6, dtype, where.device, syn=syn, seed=21)
    opts = dict(ordering=ordering, reset=reset, detach_reset=detach, surrogate=SURROGATES[1])
    whole = chunked_lif(clone_case(case), where.backend, [12], **opts)
    assert 0.0 < spike_rate(whole["spikes"]) < 1.0
    for chunks in ([5, 7], [1, 4, 1, 6], [1] * 12):
        assert_same(chunked_lif(clone_case(case), where.backend, chunks, **opts), whole, TOL[dtype])


@everywhere_and_reference
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_leaky_chunked_equals_whole(where, syn):
    case = make_case(3, 12, 6, torch.float64, where.device, syn=syn, seed=22)

    def run(c, chunks):
        state, start, mems = c.state, 0, []
        for length in chunks:
            r = snnkern.leaky(
                c.x[:, start : start + length], c.alpha, alpha_syn=c.alpha_syn, state=state, backend=where.backend
            )
            mems.append(r.membrane)
            state, start = r.state, start + length
        mem = torch.cat(mems, dim=1)
        loss = (mem * upstream_like(mem, 1)).sum() + (state * upstream_like(state, 2)).sum()
        out = {"membrane": mem.detach(), "state": state.detach()}
        out.update({"grad_" + k: g for k, g in zip(c.names(), torch.autograd.grad(loss, c.leaves()))})
        return out

    whole = run(clone_case(case), [12])
    for chunks in ([5, 7], [1] * 12):
        assert_same(run(clone_case(case), chunks), whole, TOL[torch.float64])


# --------------------------------------------------------------------------------------------
# gradcheck where the forward is smooth
# --------------------------------------------------------------------------------------------


@everywhere_and_reference
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_lif_gradcheck_membrane(where, ordering, syn):
    """reset="none": the membrane and the state do not depend on the spikes, so they are smooth
    (polynomial) functions of x, alpha, alpha_syn and the initial state, and gradcheck applies.
    The spikes are not an output here; their surrogate backward is checked by test_lif_parity."""
    case = make_case(2, 6, 3, torch.float64, where.device, syn=syn, seed=31)
    inputs = tuple(case.leaves())
    names = case.names()

    def f(*tensors):
        kw = dict(zip(names, tensors))
        res = snnkern.lif(
            kw["x"],
            kw["alpha"],
            alpha_syn=kw.get("alpha_syn"),
            state=kw["state"],
            reset="none",
            ordering=ordering,
            return_membrane=True,
            backend=where.backend,
        )
        return res.membrane, res.state

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


@everywhere_and_reference
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
@pytest.mark.parametrize("alpha_kind", ["scalar", "tensor"])
def test_leaky_gradcheck(where, syn, alpha_kind):
    case = make_case(2, 6, 3, torch.float64, where.device, syn=syn, alpha_kind=alpha_kind, seed=32)
    inputs = tuple(case.leaves())
    names = case.names()

    def f(*tensors):
        kw = dict(zip(names, tensors))
        res = snnkern.leaky(
            kw["x"],
            kw.get("alpha", case.alpha),
            alpha_syn=kw.get("alpha_syn", case.alpha_syn),
            state=kw["state"],
            backend=where.backend,
        )
        return res.membrane, res.state

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# torch.library.opcheck on the raw ops
# --------------------------------------------------------------------------------------------

OPCHECK_SAMPLES = [  # (shape, ordering, reset, detach, syn, surrogate index)
    ((2, 5, 3), "delayed", "zero", False, False, 0),
    ((2, 5, 3), "spike_first", "subtract", True, True, 1),
    ((1, 4, 6), "update_first", "none", False, True, 2),
    ((3, 1, 2), "spike_first", "zero", False, False, 3),
    ((2, 0, 3), "delayed", "zero", False, True, 0),
]


def _lif_op_args(shape, ordering, reset, detach, syn, s, requires_grad, save, device, record=True, seed=0):
    case = make_case(*shape, torch.float64, device, syn=syn, seed=seed, requires_grad=False)
    a = prepare_lif_args(
        case.x,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        ordering=ordering,
        reset=reset,
        detach_reset=detach,
        surrogate=SURROGATES[s],
    )
    tensors = [a.x, a.alpha, a.alpha_syn, a.threshold, a.adaptation, a.state]
    tensors = [t.detach().clone().requires_grad_(requires_grad) if t is not None else None for t in tensors]
    return (*tensors, *ops.op_options(a), record, save, True)


@everywhere
@pytest.mark.parametrize("sample", OPCHECK_SAMPLES, ids=lambda s: f"{s[1]}-{s[2]}-T{s[0][1]}")
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("record", [False, True], ids=["nomem", "mem"])
def test_opcheck_lif_forward(sample, requires_grad, record, where):
    args = _lif_op_args(*sample, requires_grad=requires_grad, save=requires_grad, device=where.device, record=record)
    assert_opcheck(torch.ops.snnkern.lif_forward.default, args)


@everywhere
@pytest.mark.parametrize("sample", OPCHECK_SAMPLES, ids=lambda s: f"{s[1]}-{s[2]}-T{s[0][1]}")
@pytest.mark.parametrize("grads", ["all", "spikes_only", "state_only"])
def test_opcheck_lif_backward(sample, grads, where):
    fwd = _lif_op_args(*sample, requires_grad=False, save=True, device=where.device)
    spikes, membrane, state_out, pre_reset = torch.ops.snnkern.lif_forward(*fwd)
    g_spikes = upstream_like(spikes, 1) if grads in ("all", "spikes_only") else None
    g_mem = upstream_like(membrane, 2) if grads == "all" else None
    g_state = upstream_like(state_out, 3) if grads in ("all", "state_only") else None
    _, alpha, alpha_syn, threshold, adaptation, state = fwd[:6]
    args = (g_spikes, g_mem, g_state, pre_reset, spikes, alpha, alpha_syn, threshold, adaptation, state, *fwd[6:-3])
    assert_opcheck(torch.ops.snnkern.lif_backward.default, args)
    # And the gradient it returns matches the reference autograd (same upstream gradients).
    gx, galpha, galpha_syn, _, _, gstate = torch.ops.snnkern.lif_backward(*args)
    shape, ordering, reset, detach, syn, s = sample
    case = make_case(*shape, torch.float64, where.device, syn=syn, seed=0)
    res = reference_ops.lif(
        case.x,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        ordering=ordering,
        reset=reset,
        detach_reset=detach,
        surrogate=SURROGATES[s],
        return_membrane=True,
    )
    loss = sum((o * g).sum() for o, g in zip(res, (g_spikes, g_mem, g_state)) if g is not None)
    if loss.requires_grad:
        want = torch.autograd.grad(loss, case.leaves(), allow_unused=True)
        want = [torch.zeros_like(leaf) if w is None else w for leaf, w in zip(case.leaves(), want)]
        got = [gx, galpha] + ([galpha_syn] if syn else []) + [gstate]
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, **TOL[torch.float64])


LEAKY_SAMPLES = [((2, 5, 3), False), ((2, 5, 3), True), ((1, 1, 4), True), ((2, 0, 3), False)]


@everywhere
@pytest.mark.parametrize("sample", LEAKY_SAMPLES, ids=lambda s: f"{'x'.join(map(str, s[0]))}-{s[1]}")
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_leaky_forward(sample, requires_grad, where):
    shape, syn = sample
    case = make_case(
        *shape, torch.float64, where.device, syn=syn, alpha_kind="tensor", seed=3, requires_grad=requires_grad
    )
    assert_opcheck(
        torch.ops.snnkern.leaky_forward.default, (case.x, case.alpha, case.alpha_syn, case.state, requires_grad, True)
    )


@everywhere
@pytest.mark.parametrize("sample", LEAKY_SAMPLES, ids=lambda s: f"{'x'.join(map(str, s[0]))}-{s[1]}")
@pytest.mark.parametrize("grads", ["all", "membrane_only", "state_only"])
def test_opcheck_leaky_backward(sample, grads, where):
    shape, syn = sample
    case = make_case(*shape, torch.float64, where.device, syn=syn, alpha_kind="tensor", seed=3, requires_grad=False)
    membrane, state_out, saved = torch.ops.snnkern.leaky_forward(
        case.x, case.alpha, case.alpha_syn, case.state, True, False
    )
    assert saved.numel() == 0  # a float64 trace is its own accumulate-type copy: nothing extra is saved
    g_mem = upstream_like(membrane, 1) if grads != "state_only" else None
    g_state = upstream_like(state_out, 2) if grads != "membrane_only" else None
    assert_opcheck(
        torch.ops.snnkern.leaky_backward.default,
        (g_mem, g_state, membrane, case.alpha, case.alpha_syn, case.state, case.x.dtype),
    )


# --------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------


class _TwoLayer(torch.nn.Module):
    def __init__(self, n_in=4, n_hidden=6, n_out=3):
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, n_hidden)
        self.alpha = torch.nn.Parameter(torch.linspace(0.75, 0.95, n_hidden))
        self.fc2 = torch.nn.Linear(n_hidden, n_out)

    def forward(self, x):
        hidden = snnkern.lif(
            self.fc1(x),
            self.alpha,
            alpha_syn=0.8,
            ordering="spike_first",
            reset="subtract",
            surrogate=SURROGATES[1],
            return_membrane=True,
        )
        readout = snnkern.leaky(self.fc2(hidden.spikes), 0.9, alpha_syn=0.7)
        return readout.membrane, hidden.spikes, hidden.membrane


# Inductor compiles C++ (or Triton) for every graph and is slow: the emulated lanes get one
# compiled case here (inductor, the graph around the ops lowered for real) and aot_eager ones in
# test_recurrent.py and test_spike_linear.py; the CPU kernels and CUDA get both backends.
COMPILE_CASES = where_cases(
    ("cpu", "aot_eager"), ("cpu", "inductor"), ("emulated", "inductor"), ("cuda", "aot_eager"), ("cuda", "inductor")
)


@pytest.mark.parametrize("where, compile_backend", COMPILE_CASES, indirect=["where"])
def test_torch_compile_fullgraph(where, compile_backend):
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = _TwoLayer().double().to(where.device)
    compiled_model = _TwoLayer().double().to(where.device)
    compiled_model.load_state_dict(eager.state_dict())
    x = (torch.randn(3, 10, 4, dtype=torch.float64) * 2 + 1.0).to(where.device)
    compiled = torch.compile(compiled_model, fullgraph=True, backend=compile_backend)

    outs = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        out, spikes, membrane = model(x)
        loss = (out * upstream_like(out, 5)).sum() + (membrane * upstream_like(membrane, 6)).sum()
        grads = torch.autograd.grad(loss, list(model.parameters()))
        outs[name] = (out.detach(), spikes.detach(), membrane.detach(), grads)
    (out_e, spk_e, mem_e, grads_e), (out_c, spk_c, mem_c, grads_c) = outs["eager"], outs["compiled"]
    assert 0.0 < spike_rate(spk_e) < 1.0
    assert torch.equal(spk_c, spk_e)
    torch.testing.assert_close(out_c, out_e, **TOL[torch.float64])
    torch.testing.assert_close(mem_c, mem_e, **TOL[torch.float64])
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, **TOL[torch.float64])
    torch._dynamo.reset()


# --------------------------------------------------------------------------------------------
# One source for the option codes: the names python takes are the names the extension exports
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(ops._C is None, reason="needs the compiled extension")
def test_option_names_agree_with_the_extension():
    from snnkern import _checks
    from snnkern.surrogate import Surrogate

    surrogates = {cls.name for cls in Surrogate.__subclasses__()}
    assert set(ops._C.ORDERINGS) == set(_checks.ORDERINGS)
    assert set(ops._C.RESETS) == set(_checks.RESETS)
    assert set(ops._C.SURROGATES) == surrogates
    assert {row: k for k, row in enumerate(_checks.STATE_ROWS)} == ops._C.STATE_ROWS
    assert ops._C.STATE_SIZE == _checks.STATE_SIZE == snnkern.STATE_SIZE
    # Distinct codes: two names never select the same kernel branch.
    for table in (ops._C.ORDERINGS, ops._C.RESETS, ops._C.SURROGATES):
        assert len(set(table.values())) == len(table)
