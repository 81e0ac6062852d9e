"""snnkern.recurrent_lif: the compiled ops against the reference loop (snnkern.reference_ops.recurrent_lif),
on the CPU kernels, the emulated CUDA lanes and CUDA (the ``where`` fixture, tests/helpers.py).

The input of step t is ``x_t + z_{t-1} @ weight.T`` with ``z_{-1} = spikes``; everything else is
the lif step. Parity is checked forward and backward for every lif option, with a nonzero
initial state and nonzero initial spikes, and inputs for which the recurrent input changes the
spikes. As for lif, the surrogate backward is not the derivative of the forward, so it is
checked against the reference's autograd; gradcheck is applied only where the outputs are
smooth (no spike can occur, or a single step with reset="none"), see the gradcheck section.
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
    assert_same_scaled,
    clone_case,
    clone_leaf,
    everywhere,
    everywhere_and_reference,
    make_recurrent_case,
    run_lif,
    run_recurrent,
    spike_rate,
    upstream_like,
    where_cases,
)
from snnkern import ops, reference_ops
from snnkern._checks import prepare_recurrent_args
from snnkern.nn import LeakyReadout, RecurrentLIF
from snnkern.surrogate import FastSigmoid, Sigmoid


def _clone(case, weight, spikes0):
    return clone_case(case), clone_leaf(weight), clone_leaf(spikes0)


def _assert_parity(got, want, dtype):
    """float64: helpers.TOL throughout. float32: spikes bitwise, forward outputs within TOL, the
    gradients within TOL's atol relative to their largest magnitude (see assert_same_scaled: the
    compiled backward sums grad_weight and grad_alpha over B*T terms in another order)."""
    if dtype == torch.float64:
        assert_same(got, want, TOL[dtype])
    else:
        assert_same_scaled(got, want, TOL[dtype])


def _spikes_without_recurrence(case, weight, spikes0, **opts):
    opts = {k: v for k, v in opts.items() if k != "return_membrane"}
    with torch.no_grad():
        return snnkern.recurrent_lif(
            case.x,
            torch.zeros_like(weight),
            case.alpha,
            alpha_syn=case.alpha_syn,
            state=case.state,
            spikes=spikes0,
            backend="compiled",
            **opts,
        ).spikes


# --------------------------------------------------------------------------------------------
# Full option grid: compiled vs reference, forward and backward
# --------------------------------------------------------------------------------------------


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts, syn, alpha_kind", all_lif_options())
def test_recurrent_parity(opts, syn, alpha_kind, dtype, where):
    case, weight, spikes0 = make_recurrent_case(2, 7, 7, dtype, where.device, syn=syn, alpha_kind=alpha_kind, seed=7)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    got = run_recurrent(*_clone(case, weight, spikes0), "compiled", **opts)
    assert got["spikes"].device.type == where.device
    rate = spike_rate(want["spikes"])
    assert 0.0 < rate < 1.0, f"test inputs give a degenerate spike rate {rate}"
    # The recurrent input matters: without it the spikes differ.
    changed = (_spikes_without_recurrence(case, weight, spikes0, **opts) != want["spikes"]).float().mean().item()
    assert changed > 0.02, f"the recurrent weight changes only {changed:.1%} of the spikes"
    assert {"grad_weight", "grad_spikes0"} <= set(got)
    _assert_parity(got, want, dtype)


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threshold", [0.6, 1.7])
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset", RESETS)
def test_recurrent_parity_threshold(threshold, ordering, reset, dtype, where):
    # Triangle's derivative depends on the threshold, subtract reset too; the drive scales with it.
    case, weight, spikes0 = make_recurrent_case(
        2, 8, 6, dtype, where.device, seed=3, x_shift=0.1 * threshold, scale=threshold
    )
    opts = dict(ordering=ordering, reset=reset, threshold=threshold, surrogate=SURROGATES[2], return_membrane=True)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    _assert_parity(run_recurrent(*_clone(case, weight, spikes0), "compiled", **opts), want, dtype)


@everywhere
@pytest.mark.parametrize("which", ["x", "weight", "spikes0", "alpha", "state"])
def test_recurrent_partial_requires_grad(which, where):
    """Only one input requires grad: only it gets a gradient, and that one matches."""
    case, weight, spikes0 = make_recurrent_case(2, 8, 5, torch.float64, where.device, seed=11, requires_grad=False)
    leaf = {"weight": weight, "spikes0": spikes0}.get(which)
    (leaf if leaf is not None else getattr(case, which)).requires_grad_(True)
    opts = dict(ordering="spike_first", reset="subtract", return_membrane=True)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    got = run_recurrent(*_clone(case, weight, spikes0), "compiled", **opts)
    assert [k for k in got if k.startswith("grad_")] == ["grad_" + which]
    assert got["grad_" + which].abs().sum() > 0
    assert_same(got, want, TOL[torch.float64])


@everywhere
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_recurrent_no_grad_forward_equals_grad_forward(ordering, where):
    case, weight, spikes0 = make_recurrent_case(2, 9, 5, torch.float32, where.device, seed=2)

    def run():
        return snnkern.recurrent_lif(
            case.x,
            weight,
            case.alpha,
            alpha_syn=case.alpha_syn,
            state=case.state,
            spikes=spikes0,
            ordering=ordering,
            return_membrane=True,
            backend="compiled",
        )

    with_grad = run()
    assert with_grad.spikes.requires_grad
    with torch.no_grad():
        without = run()
    assert not without.spikes.requires_grad
    for a, b in zip(with_grad, without):
        assert torch.equal(a.detach(), b)


@everywhere_and_reference
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_recurrent_zero_weight_is_lif(where, ordering, syn):
    """weight = 0: exactly snnkern.lif (the initial spikes then feed nothing)."""
    case, weight, spikes0 = make_recurrent_case(2, 8, 6, torch.float64, where.device, syn=syn, seed=5, x_shift=0.3)
    weight = torch.zeros_like(weight, requires_grad=True)
    opts = dict(ordering=ordering, reset="subtract", surrogate=SURROGATES[1], return_membrane=True)
    got = run_recurrent(case, weight, spikes0, where.backend, **opts)
    want = run_lif(clone_case(case), where.backend, **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    for key in ("spikes", "membrane", "state"):
        assert torch.equal(got[key], want[key]), key
    assert torch.equal(got["grad_spikes0"], torch.zeros_like(spikes0))  # d/dz_{-1} = dL/dx_0 @ W = 0
    assert got["grad_weight"].abs().sum() > 0  # but the weight does get a gradient
    assert_same({k: got[k] for k in want}, want, TOL[torch.float64])


# --------------------------------------------------------------------------------------------
# Edge shapes and memory layouts
# --------------------------------------------------------------------------------------------


@everywhere_and_reference
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_recurrent_empty(shape, ordering, where):
    b, t, n = shape
    case, weight, spikes0 = make_recurrent_case(b, t, n, torch.float64, where.device, seed=1)
    got = run_recurrent(case, weight, spikes0, where.backend, ordering=ordering, return_membrane=True)
    assert got["spikes"].shape == (b, t, n) and got["membrane"].shape == (b, t, n)
    assert got["state"].shape == (3, b, n)
    leaves = {
        "x": case.x,
        "alpha": case.alpha,
        "alpha_syn": case.alpha_syn,
        "state": case.state,
        "weight": weight,
        "spikes0": spikes0,
    }
    assert {k[5:] for k in got if k.startswith("grad_")} == set(leaves)
    for name, leaf in leaves.items():
        assert got["grad_" + name].shape == leaf.shape, name
    # No term at all (B = 0 or T = 0: no step of any batch element; N = 0: empty).
    assert torch.equal(got["grad_weight"], torch.zeros_like(weight))
    assert torch.equal(got["grad_x"], torch.zeros_like(case.x))
    assert torch.equal(got["grad_alpha"], torch.zeros_like(case.alpha))
    if t == 0:
        # No step: the final state is the initial one, the initial spikes feed nothing.
        assert torch.equal(got["state"], case.state.detach())
        assert torch.equal(got["grad_state"], upstream_like(got["state"], 123 + 1))
        assert torch.equal(got["grad_spikes0"], torch.zeros_like(spikes0))
    if where.backend == "compiled":
        want = run_recurrent(*_clone(case, weight, spikes0), "reference", ordering=ordering, return_membrane=True)
        assert_same(got, want, TOL[torch.float64])


EDGE_SHAPES = [(1, 1, 1), (1, 6, 4), (3, 1, 5), (4, 6, 1), (5, 13, 2)]


@everywhere
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_recurrent_edge_shapes(shape, ordering, where):
    case, weight, spikes0 = make_recurrent_case(*shape, torch.float64, where.device, seed=sum(shape))
    opts = dict(ordering=ordering, reset="zero", return_membrane=True)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    assert_same(run_recurrent(*_clone(case, weight, spikes0), "compiled", **opts), want, TOL[torch.float64])


@everywhere
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_recurrent_parity_larger(ordering, syn, where):
    """B64 T50 N100: many CUDA thread blocks and CPU batch chunks, a real matmul between the steps,
    a long loop. float64 only, for the reason given in test_ops.test_lif_parity_larger (float32
    sums over B*T = 3200 terms)."""
    case, weight, spikes0 = make_recurrent_case(64, 50, 100, torch.float64, where.device, syn=syn, seed=8)
    opts = dict(ordering=ordering, reset="subtract", surrogate=SURROGATES[0], return_membrane=True)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    assert_same(run_recurrent(*_clone(case, weight, spikes0), "compiled", **opts), want, TOL[torch.float64])


def _noncontiguous_inputs(layout, b, t, n, dtype, device):
    """Leaves (x, weight, spikes0 bases) and the non-contiguous views of them passed to the op."""
    g = torch.Generator().manual_seed(9)
    if layout == "transposed":
        x_base = torch.randn(b, n, t, generator=g, dtype=dtype) * 0.6
        w_base = torch.randn(n, n, generator=g, dtype=dtype) / n**0.5 - 0.1
        s_base = (torch.rand(n, b, generator=g) < 0.3).to(dtype)
        views = (lambda v: v.transpose(1, 2), lambda v: v.t(), lambda v: v.t())
    else:  # sliced
        x_base = torch.randn(b, 2 * t, n + 2, generator=g, dtype=dtype) * 0.6
        w_base = torch.randn(2 * n, n + 3, generator=g, dtype=dtype) / n**0.5 - 0.1
        s_base = (torch.rand(b, 2 * n, generator=g) < 0.3).to(dtype)
        views = (lambda v: v[:, ::2, 1:-1], lambda v: v[::2, 2:-1], lambda v: v[:, 1::2])
    return [base.to(device).requires_grad_() for base in (x_base, w_base, s_base)], views


@everywhere
@pytest.mark.parametrize("layout", ["transposed", "sliced"])
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_recurrent_noncontiguous(layout, ordering, dtype, where):
    b, t, n = 3, 8, 5
    results = []
    for backend in ("reference", "compiled"):
        bases, views = _noncontiguous_inputs(layout, b, t, n, dtype, where.device)
        x, weight, spikes0 = (view(base) for view, base in zip(views, bases))
        assert not (x.is_contiguous() or weight.is_contiguous() or spikes0.is_contiguous())
        alpha_base = torch.linspace(0.7, 0.95, 2 * n, dtype=dtype, device=where.device).requires_grad_()
        state_base = torch.randn(b, 3, n, generator=torch.Generator().manual_seed(1), dtype=dtype) * 0.5
        state_base = state_base.to(where.device).requires_grad_()
        res = snnkern.recurrent_lif(
            x,
            weight,
            alpha_base[::2],
            alpha_syn=0.7,
            state=state_base.transpose(0, 1),
            spikes=spikes0,
            ordering=ordering,
            return_membrane=True,
            backend=backend,
        )
        loss = sum((v * upstream_like(v, k)).sum() for k, v in enumerate(res))
        grads = torch.autograd.grad(loss, [*bases, alpha_base, state_base])
        results.append(
            dict(
                spikes=res.spikes.detach(),
                membrane=res.membrane.detach(),
                state=res.state.detach(),
                **{"grad_" + k: g for k, g in zip(["x", "weight", "spikes0", "alpha", "state"], grads)},
            )
        )
    assert 0.0 < spike_rate(results[0]["spikes"]) < 1.0
    _assert_parity(results[1], results[0], dtype)


# --------------------------------------------------------------------------------------------
# Chunked runs (state=, spikes=) equal the whole run
# --------------------------------------------------------------------------------------------


def _chunked(case, weight, spikes0, backend, chunks, seed=77, **opts):
    t_total = case.x.shape[1]
    assert sum(chunks) == t_total
    g_spikes, g_mem = upstream_like(case.x.detach(), seed), upstream_like(case.x.detach(), seed + 1)
    g_state = upstream_like(case.x.new_empty(3, case.x.shape[0], case.x.shape[2]), seed + 2)
    pieces, state, z, start = [], case.state, spikes0, 0
    for length in chunks:
        r = snnkern.recurrent_lif(
            case.x[:, start : start + length],
            weight,
            case.alpha,
            alpha_syn=case.alpha_syn,
            state=state,
            spikes=z,
            return_membrane=True,
            backend=backend,
            **opts,
        )
        pieces.append(r)
        state, z, start = r.state, r.spikes[:, -1], start + length
    spikes = torch.cat([p.spikes for p in pieces], dim=1)
    membrane = torch.cat([p.membrane for p in pieces], dim=1)
    loss = (spikes * g_spikes).sum() + (membrane * g_mem).sum() + (state * g_state).sum()
    names = case.names() + ["weight", "spikes0"]
    grads = torch.autograd.grad(loss, case.leaves() + [weight, spikes0])
    out = {"spikes": spikes.detach(), "membrane": membrane.detach(), "state": state.detach()}
    out.update({"grad_" + k: g for k, g in zip(names, grads)})
    return out


@everywhere_and_reference
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize(
    "reset, detach, syn", [("zero", False, False), ("subtract", True, True), ("none", False, True)]
)
def test_recurrent_chunked_equals_whole(where, ordering, reset, detach, syn):
    case, weight, spikes0 = make_recurrent_case(3, 12, 6, torch.float64, where.device, syn=syn, seed=21)
    opts = dict(ordering=ordering, reset=reset, detach_reset=detach, surrogate=SURROGATES[1])
    whole = _chunked(*_clone(case, weight, spikes0), where.backend, [12], **opts)
    assert 0.0 < spike_rate(whole["spikes"]) < 1.0
    assert whole["grad_spikes0"].abs().sum() > 0
    for chunks in ([5, 7], [1, 4, 1, 6], [1] * 12):
        assert_same(_chunked(*_clone(case, weight, spikes0), where.backend, chunks, **opts), whole, TOL[torch.float64])


# --------------------------------------------------------------------------------------------
# gradcheck where the forward is smooth
# --------------------------------------------------------------------------------------------
# With a recurrent weight, the drive of step t + 1 depends on the spikes of step t, so the
# membrane is not a smooth function of the inputs in general (not even with reset="none").
# Two settings where it is:
#   * no spike can occur (threshold 1e6): z_t = 0 for t >= 0, the drive is x_t for t >= 1 and
#     x_0 + spikes0 @ W.T at t = 0, so membrane and state are polynomials in x, alpha,
#     alpha_syn, state, weight and spikes0. The Sigmoid surrogate's derivative underflows to
#     exactly 0 that far from the threshold, so the analytic backward has no surrogate term and
#     must equal the numerical derivative (including the weight and spikes0 gradients through
#     step 0; the gradient that reaches z_t through the recurrent matmul is stopped there by the
#     zero surrogate derivative).
#   * a single step (T = 1) with reset="none": the spike z_0 feeds no later step and, without
#     reset, not the membrane or the state either, so with any threshold the membrane and state
#     are smooth (linear in weight and spikes0).
# The surrogate backward through spikes is checked against the reference autograd (parity).

# The full Jacobian check of the reference's python loop takes ~1 s a case: it is the ground
# truth, so it gets gradcheck's fast mode (random projections of the Jacobian), the compiled op
# the full check.
_FAST = {"reference": True, "compiled": False}


def _gradcheck_fn(names, threshold, **opts):
    def f(*tensors):
        kw = dict(zip(names, tensors))
        res = snnkern.recurrent_lif(
            kw["x"],
            kw["weight"],
            kw["alpha"],
            alpha_syn=kw.get("alpha_syn"),
            state=kw["state"],
            spikes=kw["spikes0"],
            threshold=threshold,
            return_membrane=True,
            **opts,
        )
        return res.membrane, res.state

    return f


def _gradcheck_inputs(case, weight, spikes0, spikes0_values=None):
    if spikes0_values is not None:  # any real values: spikes0 is only an input here
        spikes0 = spikes0_values.detach().clone().requires_grad_()
    return tuple(case.leaves()) + (weight, spikes0), case.names() + ["weight", "spikes0"]


@everywhere_and_reference
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset, syn", [("zero", False), ("subtract", True)])
def test_recurrent_gradcheck_no_spikes(where, ordering, reset, syn):
    case, weight, spikes0 = make_recurrent_case(2, 5, 3, torch.float64, where.device, syn=syn, seed=31)
    inputs, names = _gradcheck_inputs(case, weight, spikes0, torch.randn(2, 3, dtype=torch.float64).to(where.device))
    f = _gradcheck_fn(names, 1e6, ordering=ordering, reset=reset, surrogate=Sigmoid(5.0), backend=where.backend)
    res = snnkern.recurrent_lif(
        case.x,
        weight,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        spikes=inputs[-1],
        threshold=1e6,
        backend=where.backend,
    )
    assert not res.spikes.any()
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=_FAST[where.backend])


@everywhere_and_reference
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_recurrent_gradcheck_one_step(where, ordering, syn):
    case, weight, spikes0 = make_recurrent_case(3, 1, 4, torch.float64, where.device, syn=syn, seed=32, x_shift=0.8)
    inputs, names = _gradcheck_inputs(case, weight, spikes0)
    f = _gradcheck_fn(names, 0.5, ordering=ordering, reset="none", surrogate=FastSigmoid(100.0), backend=where.backend)
    res = snnkern.recurrent_lif(
        case.x,
        weight,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        spikes=spikes0,
        threshold=0.5,
        ordering=ordering,
        reset="none",
        backend=where.backend,
    )
    assert res.spikes.any()  # spikes occur, and must not matter
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=_FAST[where.backend])


@everywhere_and_reference
def test_recurrent_one_step_by_hand(where):
    """T = 1, update_first, reset none, no synaptic state: the membrane is
    u_0 = alpha * v_0 + x_0 + spikes0 @ W.T, so for L = sum(u_0 * g): dL/dW = g.T @ spikes0,
    dL/dspikes0 = g @ W, dL/dx_0 = g and dL/dalpha = sum_b g * v_0."""
    case, weight, spikes0 = make_recurrent_case(4, 1, 5, torch.float64, where.device, syn=False, seed=33)
    res = snnkern.recurrent_lif(
        case.x,
        weight,
        case.alpha,
        state=case.state,
        spikes=spikes0,
        reset="none",
        ordering="update_first",
        return_membrane=True,
        backend=where.backend,
    )
    x0, v0, w, s0, alpha = (t.detach() for t in (case.x[:, 0], case.state[0], weight, spikes0, case.alpha))
    torch.testing.assert_close(res.membrane[:, 0].detach(), alpha * v0 + x0 + s0 @ w.T, **TOL[torch.float64])
    g = upstream_like(res.membrane[:, 0], 5)
    gx, gw, gs0, galpha = torch.autograd.grad((res.membrane[:, 0] * g).sum(), [case.x, weight, spikes0, case.alpha])
    tol = TOL[torch.float64]
    torch.testing.assert_close(gx[:, 0], g, **tol)
    torch.testing.assert_close(gw, g.T @ s0, **tol)
    torch.testing.assert_close(gs0, g @ w, **tol)
    torch.testing.assert_close(galpha, (g * v0).sum(0), **tol)


# --------------------------------------------------------------------------------------------
# torch.library.opcheck on the raw ops
# --------------------------------------------------------------------------------------------

OPCHECK_SAMPLES = [  # (shape, ordering, reset, detach, syn, surrogate index)
    ((2, 5, 3), "delayed", "zero", False, False, 0),
    ((2, 4, 3), "spike_first", "subtract", True, True, 1),
    ((3, 3, 4), "update_first", "none", False, True, 3),
    ((2, 0, 3), "delayed", "zero", False, True, 2),
]
_SAMPLE_ID = lambda s: f"{s[1]}-{s[2]}-T{s[0][1]}"  # noqa: E731
# (sample, requires_grad, record_membrane): every sample with grad and membrane, and each of
# the other flag combinations on some samples (opcheck is slow; the flags are independent of
# the options).
OPCHECK_FORWARD = [
    (0, True, True),
    (1, True, True),
    (2, True, True),
    (3, True, True),
    (0, False, False),
    (1, True, False),
    (2, False, True),
    (3, False, False),
]
# (sample, which upstream gradients are given)
OPCHECK_BACKWARD = [
    (0, "all"),
    (1, "all"),
    (2, "all"),
    (3, "all"),
    (0, "spikes_only"),
    (2, "spikes_only"),
    (1, "state_only"),
    (3, "state_only"),
]


def _recurrent_op_args(shape, ordering, reset, detach, syn, s, requires_grad, save, device, record=True, seed=0):
    case, weight, spikes0 = make_recurrent_case(*shape, torch.float64, device, syn=syn, seed=seed, requires_grad=False)
    r = prepare_recurrent_args(
        case.x,
        weight,
        spikes0,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        ordering=ordering,
        reset=reset,
        detach_reset=detach,
        surrogate=SURROGATES[s],
    )
    a = r.lif
    tensors = [a.x, r.weight, a.alpha, a.alpha_syn, a.threshold, a.adaptation, a.state, r.spikes]
    tensors = [t.detach().clone().requires_grad_(requires_grad) if t is not None else None for t in tensors]
    return (*tensors, *ops.op_options(a), record, save, True)


@everywhere
@pytest.mark.parametrize(
    "index, requires_grad, record",
    OPCHECK_FORWARD,
    ids=[
        f"{_SAMPLE_ID(OPCHECK_SAMPLES[i])}-{'grad' if g else 'nograd'}-{'mem' if m else 'nomem'}"
        for i, g, m in OPCHECK_FORWARD
    ],
)
def test_opcheck_recurrent_forward(index, requires_grad, record, where):
    args = _recurrent_op_args(
        *OPCHECK_SAMPLES[index], requires_grad=requires_grad, save=requires_grad, device=where.device, record=record
    )
    assert_opcheck(torch.ops.snnkern.recurrent_lif_forward.default, args)


@everywhere
@pytest.mark.parametrize(
    "index, grads", OPCHECK_BACKWARD, ids=[f"{_SAMPLE_ID(OPCHECK_SAMPLES[i])}-{g}" for i, g in OPCHECK_BACKWARD]
)
def test_opcheck_recurrent_backward(index, grads, where):
    sample = OPCHECK_SAMPLES[index]
    fwd = _recurrent_op_args(*sample, requires_grad=False, save=True, device=where.device)
    spikes, membrane, state_out, pre_reset = torch.ops.snnkern.recurrent_lif_forward(*fwd)
    g_spikes = upstream_like(spikes, 1) if grads in ("all", "spikes_only") else None
    g_mem = upstream_like(membrane, 2) if grads == "all" else None
    g_state = upstream_like(state_out, 3) if grads in ("all", "state_only") else None
    _, weight, alpha, alpha_syn, threshold, adaptation, state, spikes0 = fwd[:8]
    args = (
        g_spikes,
        g_mem,
        g_state,
        pre_reset,
        spikes,
        weight,
        alpha,
        alpha_syn,
        threshold,
        adaptation,
        state,
        spikes0,
        *fwd[8:-3],
    )
    assert_opcheck(torch.ops.snnkern.recurrent_lif_backward.default, args)
    # And the gradients it returns match the reference autograd (same upstream gradients).
    gx, gweight, galpha, galpha_syn, _, _, gstate, gspikes0 = torch.ops.snnkern.recurrent_lif_backward(*args)
    shape, ordering, reset, detach, syn, s = sample
    assert galpha_syn.shape == ((shape[2],) if syn else (0,))
    case, weight_leaf, spikes0_leaf = make_recurrent_case(*shape, torch.float64, where.device, syn=syn, seed=0)
    res = reference_ops.recurrent_lif(
        case.x,
        weight_leaf,
        case.alpha,
        alpha_syn=case.alpha_syn,
        state=case.state,
        spikes=spikes0_leaf,
        ordering=ordering,
        reset=reset,
        detach_reset=detach,
        surrogate=SURROGATES[s],
        return_membrane=True,
    )
    assert torch.equal(res.spikes.detach(), spikes)
    leaves = case.leaves() + [weight_leaf, spikes0_leaf]
    got = [gx, galpha] + ([galpha_syn] if syn else []) + [gstate, gweight, gspikes0]
    loss = sum((o * g).sum() for o, g in zip(res, (g_spikes, g_mem, g_state)) if g is not None)
    if loss.requires_grad:
        want = torch.autograd.grad(loss, leaves, allow_unused=True)
        want = [torch.zeros_like(leaf) if w is None else w for leaf, w in zip(leaves, want)]
    else:  # T = 0 and no state gradient: nothing depends on the inputs
        want = [torch.zeros_like(leaf) for leaf in leaves]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL[torch.float64])


# --------------------------------------------------------------------------------------------
# The layer snnkern.nn.RecurrentLIF, and torch.compile
# --------------------------------------------------------------------------------------------


def _layer(backend=None, return_state=False, seed=0, device="cpu"):
    torch.manual_seed(seed)
    layer = RecurrentLIF(
        4,
        6,
        alpha=0.85,
        alpha_syn=0.8,
        learn_alpha=True,
        reset="subtract",
        surrogate=SURROGATES[1],
        return_state=return_state,
        backend=backend,
        dtype=torch.float64,
    )
    with torch.no_grad():
        layer.linear.weight.mul_(2.0)
    return layer.to(device)


def _layer_input(b=3, t=12, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, 4, generator=g, dtype=torch.float64) + 0.8).to(device)


def _layer_grads(layer, spikes, seed=5):
    loss = (spikes * upstream_like(spikes, seed)).sum()
    return dict(zip([n for n, _ in layer.named_parameters()], torch.autograd.grad(loss, list(layer.parameters()))))


@everywhere_and_reference
def test_recurrent_layer_return_state_continues(where):
    """Two halves (and an empty piece between them) with return_state equal the whole sequence."""
    layer = _layer(where.backend, return_state=True, device=where.device)
    x = _layer_input(device=where.device)
    whole, (state_whole, last_whole) = layer(x)
    assert 0.0 < spike_rate(whole) < 1.0
    grads_whole = _layer_grads(layer, whole)
    s1, st1 = layer(x[:, :5])
    s_empty, st_empty = layer(x[:, 5:5], st1)
    assert s_empty.shape == (3, 0, 6) and torch.equal(st_empty[1], st1[1])
    s2, (state2, last2) = layer(x[:, 5:], st_empty)
    halves = torch.cat([s1, s_empty, s2], dim=1)
    assert torch.equal(halves, whole)
    torch.testing.assert_close(state2, state_whole, **TOL[torch.float64])
    assert torch.equal(last2, last_whole) and torch.equal(last_whole, whole[:, -1])
    grads_halves = _layer_grads(layer, halves)
    for name in grads_whole:
        torch.testing.assert_close(grads_halves[name], grads_whole[name], **TOL[torch.float64], msg=name)


@everywhere
def test_recurrent_layer_backends_agree(where):
    x = _layer_input(seed=1, device=where.device)
    results = {}
    for backend in ("reference", "compiled"):
        layer = _layer(backend, seed=3, device=where.device)
        spikes = layer(x)
        results[backend] = (spikes.detach(), _layer_grads(layer, spikes))
    (spk_r, grads_r), (spk_c, grads_c) = results["reference"], results["compiled"]
    assert 0.0 < spike_rate(spk_r) < 1.0
    assert torch.equal(spk_c, spk_r)
    assert set(grads_c) == {"linear.weight", "alpha", "alpha_syn", "recurrent_weight"}
    for name in grads_r:
        torch.testing.assert_close(grads_c[name], grads_r[name], **TOL[torch.float64], msg=name)


class _RecurrentNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = _layer()
        self.readout = LeakyReadout(6, 3, alpha=0.9, alpha_syn=0.7, dtype=torch.float64)

    def forward(self, x):
        spikes = self.hidden(x)
        return self.readout(spikes), spikes


# The emulated lanes get the cheap aot_eager compile only (see test_ops.COMPILE_CASES).
COMPILE_CASES = where_cases(
    ("cpu", "aot_eager"), ("cpu", "inductor"), ("emulated", "aot_eager"), ("cuda", "aot_eager"), ("cuda", "inductor")
)


@pytest.mark.parametrize("where, compile_backend", COMPILE_CASES, indirect=["where"])
def test_recurrent_torch_compile_fullgraph(where, compile_backend):
    torch._dynamo.reset()
    eager = _RecurrentNet().to(where.device)
    compiled_model = _RecurrentNet().to(where.device)
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, fullgraph=True, backend=compile_backend)
    x = _layer_input(seed=2, device=where.device)
    outs = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        out, spikes = model(x)
        loss = (out * upstream_like(out, 5)).sum() + (spikes * upstream_like(spikes, 6)).sum()
        outs[name] = (out.detach(), spikes.detach(), torch.autograd.grad(loss, list(model.parameters())))
    (out_e, spk_e, grads_e), (out_c, spk_c, grads_c) = outs["eager"], outs["compiled"]
    assert 0.0 < spike_rate(spk_e) < 1.0
    assert torch.equal(spk_c, spk_e)
    torch.testing.assert_close(out_c, out_e, **TOL[torch.float64])
    assert len(grads_c) == len(grads_e) == 5
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, **TOL[torch.float64])
    torch._dynamo.reset()
