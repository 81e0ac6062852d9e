"""The neuron conventions of the peer libraries, in the fused kernels: the charge-fire-reset
ordering, reset to v_reset and leak towards v_leak, thresholds of any sign and learnable per
neuron, the synaptic current updated before the membrane, spike counts, the exponential
surrogate; and any neuron shape in either layout. Every case runs on the CPU kernels, the
emulated CUDA lanes and CUDA (the ``where`` fixture) against the reference loops, forward and
backward on the same inputs and upstream gradients."""

import itertools

import pytest
import torch

import snnkern
from helpers import (
    TOL,
    _grads,
    _outputs_and_grads,
    assert_opcheck,
    assert_same,
    clone_case,
    everywhere,
    make_case,
    make_recurrent_weight,
    spike_rate,
    upstream_like,
)
from snnkern import ops
from snnkern._checks import prepare_lif_args
from snnkern.surrogate import ATan, Exponential, FastSigmoid, Sigmoid, Triangle

F64 = torch.float64
SURROGATES = (Sigmoid(4.0), FastSigmoid(25.0), ATan(2.0), Exponential(0.5), Triangle(0.3))
SYNAPSES = {"none": {}, "syn": {"current_first": False}, "syn_current_first": {"current_first": True}}


def _threshold(kind: str, n: int, device, dtype=F64, seed=0):
    """A threshold of each kind: a float, or a per-neuron tensor with a gradient."""
    if kind == "float":
        return 0.6
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.6 + 0.4
    return t.to(dtype=dtype, device=device).requires_grad_(True)


def _run(case, backend, threshold, seed=123, **opts):
    res = snnkern.lif(
        case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, threshold=threshold, backend=backend, **opts
    )
    extra = {"threshold": threshold} if isinstance(threshold, torch.Tensor) else None
    return _outputs_and_grads(res, case, seed, None, opts.get("return_membrane"), extra)


def _clone_threshold(threshold):
    return threshold.detach().clone().requires_grad_(True) if isinstance(threshold, torch.Tensor) else threshold


GRID = list(
    itertools.product(
        ("delayed", "spike_first", "update_first", "charge_first"),
        ("zero", "subtract", "none"),
        tuple(SYNAPSES),
        ("float", "tensor"),
    )
)


@everywhere
@pytest.mark.parametrize("ordering, reset, synapse, threshold_kind", GRID, ids=["-".join(c) for c in GRID])
def test_conventions_parity(ordering, reset, synapse, threshold_kind, where):
    """Every ordering x reset x synapse x threshold kind, with v_reset and v_leak nonzero and the
    surrogates in turn, float64: the compiled kernels equal the reference, gradients of the
    threshold included."""
    k = GRID.index((ordering, reset, synapse, threshold_kind))
    case = make_case(3, 12, 6, F64, where.device, syn=synapse != "none", seed=k, x_shift=0.2)
    threshold = _threshold(threshold_kind, 6, where.device, seed=k)
    surrogate = SURROGATES[k % len(SURROGATES)]
    opts = dict(
        ordering=ordering,
        reset=reset,
        v_reset=-0.2,
        v_leak=0.1,
        surrogate=surrogate,
        return_membrane=True,
        **SYNAPSES[synapse],
    )
    want = _run(case, "reference", threshold, **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    got = _run(clone_case(case), "compiled", _clone_threshold(threshold), **opts)
    assert_same(got, want, TOL[F64])
    if threshold_kind == "tensor" and reset != "none":
        assert got["grad_threshold"].abs().sum() > 0


@everywhere
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("ordering", ["spike_first", "charge_first"])
def test_conventions_float32(ordering, dtype, where):
    case = make_case(4, 20, 7, dtype, where.device, syn=True, seed=5)
    threshold = _threshold("tensor", 7, where.device, dtype=torch.float32 if dtype != F64 else F64)
    opts = dict(ordering=ordering, reset="zero", v_reset=0.1, v_leak=-0.05, current_first=True, return_membrane=True)
    want = _run(case, "reference", threshold, **opts)
    assert_same(_run(clone_case(case), "compiled", _clone_threshold(threshold), **opts), want, TOL[dtype])


@everywhere
@pytest.mark.parametrize("ordering", ["spike_first", "update_first", "charge_first"])
@pytest.mark.parametrize("surrogate", [Exponential(0.5), Sigmoid(4.0)], ids=["exponential", "sigmoid"])
@pytest.mark.parametrize("reset", ["subtract", "none"])
def test_spike_counts(ordering, surrogate, reset, where):
    """spike='multi': spike counts trunc(u / threshold) for u > 0 (Sinabs' MultiSpike)."""
    case = make_case(3, 10, 5, F64, where.device, seed=2, x_scale=1.5, x_shift=0.8)
    opts = dict(ordering=ordering, reset=reset, spike="multi", surrogate=surrogate, return_membrane=True)
    want = _run(case, "reference", 0.5, **opts)
    assert want["spikes"].max() >= 2, "the inputs should give several spikes in some steps"
    got = _run(clone_case(case), "compiled", 0.5, **opts)
    assert_same(got, want, TOL[F64])


@everywhere
def test_negative_threshold_and_potentials(where):
    """Biophysical potentials (Norse): rest at -65, threshold -50, reset to -70."""
    case = make_case(2, 30, 4, F64, where.device, seed=9, x_scale=6.0, x_shift=4.0)
    case.state = None
    opts = dict(ordering="charge_first", reset="zero", v_reset=-70.0, v_leak=-65.0, surrogate=ATan(0.2))
    state = torch.zeros(3, 2, 4, dtype=F64, device=where.device)
    state[0] = -65.0
    want = snnkern.lif(case.x, case.alpha, threshold=-50.0, state=state, backend="reference", **opts)
    got = snnkern.lif(case.x, case.alpha, threshold=-50.0, state=state, backend="compiled", **opts)
    assert 0 < want.spikes.mean() < 1
    assert torch.equal(got.spikes, want.spikes)
    torch.testing.assert_close(got.state, want.state, **TOL[F64])


# --------------------------------------------------------------------------------------------
# The recurrent layer takes the same conventions
# --------------------------------------------------------------------------------------------


@everywhere
@pytest.mark.parametrize("ordering", ["spike_first", "charge_first"])
@pytest.mark.parametrize("current_first", [False, True])
def test_recurrent_conventions(ordering, current_first, where):
    case = make_case(3, 9, 6, F64, where.device, syn=True, seed=4)
    weight = make_recurrent_weight(6, F64, where.device, seed=1)
    threshold = _threshold("tensor", 6, where.device)
    opts = dict(
        ordering=ordering,
        reset="zero",
        v_reset=-0.1,
        v_leak=0.05,
        current_first=current_first,
        surrogate=Exponential(0.6),
        return_membrane=True,
    )
    outs = {}
    for backend in ("reference", "compiled"):
        c = clone_case(case)
        w, th = weight.detach().clone().requires_grad_(), _clone_threshold(threshold)
        res = snnkern.recurrent_lif(
            c.x, w, c.alpha, alpha_syn=c.alpha_syn, state=c.state, threshold=th, backend=backend, **opts
        )
        outs[backend] = _outputs_and_grads(res, c, 7, None, True, {"weight": w, "threshold": th})
    assert 0 < spike_rate(outs["reference"]["spikes"]) < 1
    assert_same(outs["compiled"], outs["reference"], TOL[F64])


# --------------------------------------------------------------------------------------------
# Neuron shapes and layouts
# --------------------------------------------------------------------------------------------

LAYOUTS = ["batch_first", "time_major", "time_major_strided"]


def _in_layout(x_bf: torch.Tensor, layout: str) -> torch.Tensor:
    """The batch-first x as the layout's tensor (a contiguous copy, or a transposed view)."""
    if layout == "batch_first":
        return x_bf
    if layout == "time_major":
        return x_bf.detach().transpose(0, 1).contiguous().requires_grad_(x_bf.requires_grad)
    return x_bf.transpose(0, 1)  # a view: time-major shape, batch-first strides


@everywhere
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_neuron_shape_and_layout(layout, backend, where):
    """x [B, T, C, H, W] with per-channel decay and threshold; every layout gives the batch-first
    result of the reference, gradients included."""
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(3, 8, 2, 3, 4, generator=g, dtype=F64) * 0.6 + 0.3).to(where.device).requires_grad_()
    alpha = (torch.rand(2, 1, 1, generator=g, dtype=F64) * 0.3 + 0.6).to(where.device).requires_grad_()
    threshold = (torch.rand(2, 3, 1, generator=g, dtype=F64) * 0.5 + 0.5).to(where.device).requires_grad_()
    opts = dict(ordering="charge_first", reset="subtract", v_leak=0.05, return_membrane=True)

    def run(xx, batch_first, backend):
        """Outputs in the batch-first layout, and the gradients of the same loss."""
        leaves = [xx, alpha, threshold]
        res = snnkern.lif(xx, alpha, threshold=threshold, batch_first=batch_first, backend=backend, **opts)
        if not batch_first:
            assert res.spikes.shape == (8, 3, 2, 3, 4)
        bf = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
        outs = [bf(res.spikes), bf(res.membrane), res.state]
        loss = sum((o * upstream_like(o, 10 + k)).sum() for k, o in enumerate(outs))
        grads = torch.autograd.grad(loss, leaves)
        return outs, (bf(grads[0]), *grads[1:])

    want_outs, want_grads = run(x, True, "reference")
    got_outs, got_grads = run(_in_layout(x, layout), layout == "batch_first", backend)
    assert got_outs[2].shape == (3, 3, 2, 3, 4)
    assert 0 < want_outs[0].mean() < 1
    for got, want in zip(list(got_outs) + list(got_grads), list(want_outs) + list(want_grads)):
        torch.testing.assert_close(got, want, **TOL[F64])
    assert torch.equal(got_outs[0], want_outs[0])


@everywhere
def test_time_major_runs_without_a_copy(where):
    """A contiguous time-major x runs as one row of B * N neurons: the kernels read x itself and
    the outputs come back contiguous in the time-major layout."""
    x = torch.randn(7, 3, 4, 5, device=where.device)
    a = prepare_lif_args(x, 0.9, batch_first=False)
    assert a.layout.folded and a.x.data_ptr() == x.data_ptr() and a.x.shape == (1, 7, 60)
    res = snnkern.lif(x, 0.9, batch_first=False)
    assert res.spikes.shape == x.shape and res.spikes.is_contiguous()
    assert res.state.shape == (3, 3, 4, 5)


@everywhere
@pytest.mark.parametrize("batch_first", [True, False])
def test_leaky_any_shape(batch_first, where):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 2, 5, generator=g, dtype=F64).to(where.device).requires_grad_()
    alpha = torch.rand(2, 1, generator=g, dtype=F64).to(where.device).requires_grad_()
    outs = {}
    for backend in ("reference", "compiled"):
        res = snnkern.leaky(x, alpha, alpha_syn=0.7, batch_first=batch_first, backend=backend)
        loss = (res.membrane * upstream_like(res.membrane, 3)).sum() + (res.state * upstream_like(res.state, 4)).sum()
        outs[backend] = (res.membrane, res.state, *torch.autograd.grad(loss, [x, alpha]))
    assert outs["compiled"][1].shape == (3, 6 if not batch_first else 4, 2, 5)
    for got, want in zip(outs["compiled"], outs["reference"]):
        torch.testing.assert_close(got, want, **TOL[F64])


# --------------------------------------------------------------------------------------------
# gradcheck, opcheck, torch.compile
# --------------------------------------------------------------------------------------------


@everywhere
@pytest.mark.parametrize("current_first", [False, True])
def test_gradcheck_leak_and_synapse(current_first, where):
    """Without a reset the forward is smooth: gradcheck of membrane and state with v_leak, the
    synapse either way, time-major [T, B, C, N] input."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 2, 3, generator=g, dtype=F64, device="cpu").to(where.device).requires_grad_()
    alpha = torch.rand(2, 3, generator=g, dtype=F64).to(where.device).requires_grad_()
    alpha_syn = torch.rand(3, generator=g, dtype=F64).to(where.device).requires_grad_()

    def f(x, alpha, alpha_syn):
        res = snnkern.lif(
            x,
            alpha,
            alpha_syn=alpha_syn,
            reset="none",
            ordering="charge_first",
            v_leak=0.3,
            current_first=current_first,
            batch_first=False,
            return_membrane=True,
        )
        return res.membrane, res.state

    assert torch.autograd.gradcheck(f, (x, alpha, alpha_syn), eps=1e-6, atol=1e-7, rtol=1e-6)


@everywhere
@pytest.mark.parametrize(
    "opts",
    [
        dict(ordering="charge_first", reset="zero", v_reset=-0.3, v_leak=0.1, surrogate=Exponential(0.5)),
        dict(ordering="charge_first", reset="subtract", spike="multi", surrogate=Sigmoid(2.0)),
        dict(ordering="update_first", reset="subtract", current_first=True, v_leak=-0.2, surrogate=ATan(2.0)),
    ],
    ids=["hard-reset", "multi", "current-first"],
)
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_conventions(opts, requires_grad, where):
    case = make_case(2, 5, 3, F64, where.device, syn=True, seed=1, requires_grad=False)
    threshold = torch.tensor([0.5, 0.8, 1.1], dtype=F64, device=where.device)
    a = prepare_lif_args(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, threshold=threshold, **opts)
    tensors = [
        t.detach().clone().requires_grad_(requires_grad) for t in (a.x, a.alpha, a.alpha_syn, a.threshold, a.state)
    ]
    tensors.insert(4, None)  # no adaptation
    options = ops.op_options(a)
    assert_opcheck(torch.ops.snnkern.lif_forward.default, (*tensors, *options, True, requires_grad, True))
    spikes, membrane, state_out, pre_reset = torch.ops.snnkern.lif_forward(
        *(t if t is None else t.detach() for t in tensors), *options, True, True, False
    )
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


@everywhere
def test_compile_neuron_modules(where):
    """A conv SNN of neuron-only modules, time-major, compiles with fullgraph and matches eager."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        snnkern.nn.TimeFolded(torch.nn.Conv2d(1, 2, 3, padding=1)),
        snnkern.nn.LIFNeuron(
            alpha=0.8, ordering="charge_first", shape=(2, 1, 1), learn_threshold=True, batch_first=False
        ),
        snnkern.nn.TimeFolded(torch.nn.Flatten()),
        snnkern.nn.LeakyNeuron(alpha=0.9, batch_first=False),
    ).to(dtype=F64, device=where.device)
    x = torch.rand(4, 3, 1, 5, 5, dtype=F64, device=where.device) * 2
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    want = model(x)
    got = compiled(x)
    torch.testing.assert_close(got, want, **TOL[F64])
    grads_want = torch.autograd.grad(want.sum(), list(model.parameters()))
    grads_got = torch.autograd.grad(compiled(x).sum(), list(model.parameters()))
    for g_got, g_want in zip(grads_got, grads_want):
        torch.testing.assert_close(g_got, g_want, **TOL[F64])


# --------------------------------------------------------------------------------------------
# Neuron-only modules
# --------------------------------------------------------------------------------------------


@everywhere
@pytest.mark.parametrize("batch_first", [True, False])
def test_stateful_chunks_equal_the_whole_sequence(batch_first, where):
    neuron = snnkern.nn.LIFNeuron(
        alpha=0.85, alpha_syn=0.6, ordering="charge_first", stateful=True, batch_first=batch_first
    )
    x = torch.randn(3, 12, 2, 4, dtype=F64, device=where.device) + 0.4
    if not batch_first:
        x = x.transpose(0, 1).contiguous()
    whole = snnkern.nn.LIFNeuron(alpha=0.85, alpha_syn=0.6, ordering="charge_first", batch_first=batch_first)(x)
    time = 1 if batch_first else 0
    parts = [neuron(chunk) for chunk in x.split([5, 1, 6], dim=time)]
    assert torch.equal(torch.cat(parts, dim=time), whole)
    assert neuron.state is not None and neuron.state.shape == (3, 3, 2, 4)


@everywhere
def test_stateful_step_by_step_trains_through_the_steps(where):
    """Single steps of a stateful module keep the graph across calls (BPTT over the steps), and
    give the gradient of the whole-sequence call."""
    w = torch.randn(4, 4, dtype=F64, device=where.device, requires_grad=True)
    x = torch.randn(2, 9, 4, dtype=F64, device=where.device)
    neuron = snnkern.nn.LIFNeuron(alpha=0.8, ordering="charge_first", surrogate=ATan(2.0), stateful=True)
    stepped = torch.cat([neuron(x[:, t : t + 1] @ w) for t in range(9)], dim=1)
    (g_steps,) = torch.autograd.grad((stepped * upstream_like(stepped, 1)).sum(), [w])
    whole = snnkern.nn.LIFNeuron(alpha=0.8, ordering="charge_first", surrogate=ATan(2.0))(x @ w)
    (g_whole,) = torch.autograd.grad((whole * upstream_like(whole, 1)).sum(), [w])
    assert torch.equal(stepped, whole)
    torch.testing.assert_close(g_steps, g_whole, **TOL[F64])


@everywhere
def test_reset_state_drops_the_graph(where):
    neuron = snnkern.nn.LIFNeuron(alpha=0.8, stateful=True)
    x = torch.randn(2, 5, 3, device=where.device, requires_grad=True)
    neuron(x)
    assert neuron.state is not None and neuron.state.grad_fn is not None
    neuron.detach_state()
    assert neuron.state is not None and neuron.state.grad_fn is None
    neuron.reset_state()
    assert neuron.state is None
    neuron(x)
    with pytest.raises(ValueError, match="reset_state"):
        neuron(torch.randn(4, 5, 3, device=where.device))  # another batch size


@everywhere
def test_stateless_by_default(where):
    neuron = snnkern.nn.LIFNeuron(alpha=0.8)
    x = torch.randn(2, 5, 3, device=where.device) + 0.5
    assert torch.equal(neuron(x), neuron(x)) and neuron.state is None


@everywhere
def test_learnable_parameters_of_neuron_modules(where):
    """learn_alpha / learn_threshold with a per-channel shape get the reference's gradients."""
    torch.manual_seed(2)
    x = torch.randn(2, 6, 3, 2, 2, dtype=F64, device=where.device) + 0.5
    grads = {}
    for backend in ("reference", "compiled"):
        neuron = snnkern.nn.LIFNeuron(
            alpha=0.8,
            alpha_syn=0.5,
            threshold=0.7,
            shape=(3, 1, 1),
            learn_alpha=True,
            learn_threshold=True,
            reset="subtract",
            ordering="charge_first",
            backend=backend,
        ).to(device=where.device, dtype=F64)
        out = neuron(x)
        grads[backend] = _grads((out * upstream_like(out, 0)).sum(), clone_case_of(neuron), None)
        grads[backend]["spikes"] = out.detach()
    assert grads["compiled"]["threshold"].shape == (3, 1, 1)
    assert_same(grads["compiled"], grads["reference"], TOL[F64])


def clone_case_of(neuron):
    """The module's learnable tensors as a case-like object for _grads."""

    class Leaves:
        def leaves(self):
            return [neuron.alpha, neuron.alpha_syn, neuron.threshold]

        def names(self):
            return ["alpha", "alpha_syn", "threshold"]

    return Leaves()


@everywhere
def test_time_folded_equals_a_loop_over_steps(where):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1).to(where.device)
    x = torch.randn(4, 5, 2, 6, 6, device=where.device)
    folded = snnkern.nn.TimeFolded(conv)(x)
    looped = torch.stack([conv(x[:, t]) for t in range(5)], dim=1)
    torch.testing.assert_close(folded, looped)
    with pytest.raises(ValueError, match="TimeFolded"):
        snnkern.nn.TimeFolded(conv)(torch.randn(3))


@everywhere
def test_projection_layers_take_time_major_input(where):
    """LIF, RecurrentLIF and LeakyReadout with batch_first=False equal the batch-first layers."""
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5, dtype=F64, device=where.device) + 0.3
    layers = {
        "lif": lambda bf: snnkern.nn.LIF(5, 4, alpha=0.8, alpha_syn=0.6, batch_first=bf),
        "recurrent": lambda bf: snnkern.nn.RecurrentLIF(5, 4, alpha=0.8, return_state=True, batch_first=bf),
        "readout": lambda bf: snnkern.nn.LeakyReadout(5, 4, alpha=0.8, batch_first=bf),
    }
    for name, make in layers.items():
        torch.manual_seed(1)
        batch_first = make(True).to(device=where.device, dtype=F64)
        time_major = make(False).to(device=where.device, dtype=F64)
        time_major.load_state_dict(batch_first.state_dict())
        want = batch_first(x)
        got = time_major(x.transpose(0, 1).contiguous())
        if name == "recurrent":
            (want, (want_state, want_last)), (got, (got_state, got_last)) = want, got
            torch.testing.assert_close(got_state, want_state, **TOL[F64])
            assert torch.equal(got_last, want_last)
        torch.testing.assert_close(got.transpose(0, 1), want, **TOL[F64], msg=name)
