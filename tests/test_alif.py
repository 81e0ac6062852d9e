"""Adaptive (ALIF) and refractory neurons (seed 003) in the fused ops: snnkern.lif and
snnkern.recurrent_lif with ``adaptation_decay``, ``adaptation_strength`` and ``refractory``.

The compiled ops against the reference loops on every ordering, reset and detach option, both
state kinds, scalar and per-neuron parameters, on the CPU, the emulated CUDA lanes and CUDA;
the recurrent op on both its paths; float64 gradcheck where the outputs are smooth; opcheck of
the raw ops; torch.compile; chunked sequences through the 5-row state; the refractory and
adaptation semantics on hand-made inputs; and bad arguments.
"""

import contextlib
import itertools

import pytest
import torch

import snnkern
from helpers import TOL, assert_opcheck, assert_same_scaled, at, everywhere
from snnkern import ops
from snnkern._checks import prepare_lif_args, prepare_recurrent_args
from snnkern.surrogate import FastSigmoid, Sigmoid, Triangle
from snnkern.testing import recurrent_per_step

F32, F64 = torch.float32, torch.float64
ORDERINGS = ("delayed", "spike_first", "update_first", "charge_first")
# (adaptive, refractory): adaptation only, a refractory period only, both.
KINDS = [(True, 0), (False, 3), (True, 2)]
KIND_IDS = ["adapt", "refr", "adapt-refr"]


def _case(b, t, n, dtype, device, seed=0, recurrent=False, extended=True, requires_grad=True):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, lo=0.0, hi=1.0):
        return (torch.rand(*shape, generator=g, dtype=F64) * (hi - lo) + lo).to(dtype).to(device)

    leaves = dict(
        x=rand(b, t, n, hi=0.7),
        alpha=rand(n, lo=0.6, hi=0.95),
        threshold=rand(n, lo=0.4, hi=0.8),
        rho=rand(n, lo=0.7, hi=0.98),
        beta=rand(n, hi=0.4),
        state=rand(5 if extended else 3, b, n, hi=0.3),
    )
    if extended:  # counters: some neurons start refractory
        leaves["state"][4] = torch.randint(0, 3, (b, n), generator=g).to(dtype).to(device)
    if recurrent:
        leaves["weight"] = (torch.randn(n, n, generator=g, dtype=F64) * 0.4).to(dtype).to(device)
        leaves["spikes"] = (torch.rand(b, n, generator=g) < 0.3).to(dtype).to(device)
    for v in leaves.values():
        v.requires_grad_(requires_grad)
    return leaves


def _run(case, backend, adaptive, refractory, recurrent, upstream_seed=5, **opts):
    """Outputs and the gradients of every leaf for the same upstream gradients."""
    kw = dict(threshold=case["threshold"], state=case["state"], refractory=refractory, return_membrane=True)
    if adaptive:
        kw.update(adaptation_decay=case["rho"], adaptation_strength=case["beta"])
    kw.update(opts)
    if recurrent:
        r = snnkern.recurrent_lif(
            case["x"], case["weight"], case["alpha"], spikes=case["spikes"], backend=backend, **kw
        )
    else:
        r = snnkern.lif(case["x"], case["alpha"], backend=backend, **kw)
    g = torch.Generator().manual_seed(upstream_seed)
    ups = [torch.randn(o.shape, generator=g, dtype=F64).to(o.dtype).to(o.device) for o in r]
    ups[2][4] = 0  # the counter carries no gradient
    loss = sum((o * u).sum() for o, u in zip(r, ups))
    names = [k for k in case if k not in ("rho", "beta") or adaptive]
    grads = torch.autograd.grad(loss, [case[k] for k in names], allow_unused=True)
    out = {"spikes": r.spikes.detach(), "membrane": r.membrane.detach(), "state": r.state.detach()}
    for k, gr in zip(names, grads):
        out["grad_" + k] = torch.zeros_like(case[k]) if gr is None else gr
    return out


def _path(name):
    return recurrent_per_step() if name == "per_step" else contextlib.nullcontext()


@everywhere
@pytest.mark.parametrize("adaptive, refractory", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset, detach", [("zero", False), ("subtract", False), ("subtract", True), ("none", False)])
@pytest.mark.parametrize("op", ["lif", "recurrent", "recurrent-per-step"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_matches_reference(op, reset, detach, ordering, adaptive, refractory, dtype, where):
    recurrent = op != "lif"
    case = _case(3, 23, 13, dtype, where.device, seed=1, recurrent=recurrent)
    opts = dict(ordering=ordering, reset=reset, detach_reset=detach, surrogate=Triangle(0.5))
    want = _run(case, "reference", adaptive, refractory, recurrent, **opts)
    with _path("per_step" if op == "recurrent-per-step" else "rows"):
        got = _run(case, where.backend, adaptive, refractory, recurrent, **opts)
    assert 0.05 < want["spikes"].mean().item() < 0.95  # the case really spikes (and resets, adapts)
    assert_same_scaled(got, want, TOL[dtype])


@everywhere
@pytest.mark.parametrize("syn, current_first", [(True, False), (True, True)], ids=["syn", "current-first"])
@pytest.mark.parametrize("surrogate", [Sigmoid(4.0), FastSigmoid(10.0)], ids=["sigmoid", "fastsigmoid"])
def test_with_synaptic_current_and_other_surrogates(syn, current_first, surrogate, where):
    case = _case(2, 31, 9, F64, where.device, seed=2, recurrent=True)
    opts = dict(alpha_syn=0.8, current_first=current_first, surrogate=surrogate, ordering="update_first")
    opts.update(reset="subtract", v_leak=0.05)
    want = _run(case, "reference", True, 2, True, **opts)
    got = _run(case, where.backend, True, 2, True, **opts)
    assert_same_scaled(got, want, TOL[F64])


@at("emulated", "cuda")
@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("recurrent", [False, True], ids=["lif", "recurrent"])
def test_half_precision_storage(low, recurrent, where):
    """float16/bfloat16 sequences (the CUDA lanes' storage types): with inputs and weights on a
    1/8 grid, exact in every storage type, the float32 arithmetic gives the float32 reference's
    spikes and state; the membrane and the input gradient round to the storage type."""
    case = _case(2, 25, 9, F32, where.device, seed=10, recurrent=recurrent)
    with torch.no_grad():
        for key in ("x", "weight") if recurrent else ("x",):
            case[key].copy_((case[key] * 8).round() / 8)
    low_case = {
        k: (v.detach().to(low) if k in ("x", "weight", "spikes") else v.detach()).requires_grad_()
        for k, v in case.items()
    }
    opts = dict(ordering="update_first", reset="subtract", surrogate=Triangle(0.5))
    want = _run(case, "reference", True, 2, recurrent, **opts)
    got = _run(low_case, where.backend, True, 2, recurrent, **opts)
    assert torch.equal(got["spikes"].float(), want["spikes"])
    torch.testing.assert_close(got["state"], want["state"], rtol=1e-5, atol=1e-5)
    tol = dict(rtol=2e-2, atol=2e-2) if low == torch.bfloat16 else dict(rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(got["membrane"].float(), want["membrane"], **tol)
    scale = want["grad_x"].abs().max().item()
    torch.testing.assert_close(got["grad_x"].float(), want["grad_x"], rtol=tol["rtol"], atol=tol["atol"] * scale)


@everywhere
def test_scalar_parameters_and_mixed_layer(where):
    """Scalar decay and strength (python floats) and a layer mixing regular (strength 0) and
    adaptive neurons, as seed 003's."""
    case = _case(2, 40, 10, F64, where.device, seed=3, requires_grad=False)
    strength = torch.cat([torch.zeros(5), torch.full((5,), 0.3)]).double().to(where.device)
    for rho, beta in ((0.9, 0.25), (0.95, strength)):
        kw = dict(threshold=0.5, adaptation_decay=rho, adaptation_strength=beta, refractory=1, return_membrane=True)
        want = snnkern.lif(case["x"], 0.9, backend="reference", **kw)
        got = snnkern.lif(case["x"], 0.9, backend=where.backend, **kw)
        assert torch.equal(got.spikes, want.spikes)
        torch.testing.assert_close(got.state, want.state, **TOL[F64])


@at("cpu", "emulated", "cuda")
@pytest.mark.parametrize("recurrent", [False, True], ids=["lif", "recurrent"])
def test_gradcheck_smooth(recurrent, where):
    """float64 gradcheck where no spike can occur (threshold far above the drive): the outputs
    are smooth in x, the decays, the state (a decays with rho into the final state) and the weight."""
    case = _case(2, 5, 3, F64, where.device, seed=4, recurrent=recurrent)
    names = ["x", "alpha", "rho", "state"] + (["weight", "spikes"] if recurrent else [])

    def f(*leaves):
        c = dict(case, **dict(zip(names, leaves)))
        kw = dict(threshold=50.0, adaptation_decay=c["rho"], adaptation_strength=c["beta"].detach(), refractory=2)
        if recurrent:
            r = snnkern.recurrent_lif(
                c["x"],
                c["weight"],
                c["alpha"],
                state=c["state"],
                spikes=c["spikes"],
                return_membrane=True,
                ordering="update_first",
                **kw,
            )
        else:
            r = snnkern.lif(c["x"], c["alpha"], state=c["state"], return_membrane=True, **kw)
        return r.membrane, r.state[:4]

    assert torch.autograd.gradcheck(f, [case[k] for k in names], eps=1e-6, atol=1e-8, rtol=1e-6)


def _raw_args(recurrent, where, requires_grad, save=True, record=True):
    case = _case(2, 6, 4, F64, where.device, seed=6, recurrent=recurrent, requires_grad=False)
    opts = dict(
        state=case["state"],
        threshold=case["threshold"],
        adaptation_decay=case["rho"],
        adaptation_strength=case["beta"],
        refractory=2,
        ordering="update_first",
        reset="subtract",
        surrogate=Triangle(0.5),
    )
    if recurrent:
        r = prepare_recurrent_args(case["x"], case["weight"], case["spikes"], case["alpha"], **opts)
        a = r.lif
        tensors = [a.x, r.weight, a.alpha, a.alpha_syn, a.threshold, a.adaptation, a.state, r.spikes]
    else:
        a = prepare_lif_args(case["x"], case["alpha"], **opts)
        tensors = [a.x, a.alpha, a.alpha_syn, a.threshold, a.adaptation, a.state]
    tensors = [t if t is None else t.detach().clone().requires_grad_(requires_grad) for t in tensors]
    return tensors, ops.op_options(a), (record, save, True)


@everywhere
@pytest.mark.parametrize("recurrent", [False, True], ids=["lif", "recurrent"])
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck(recurrent, requires_grad, where):
    tensors, options, flags = _raw_args(recurrent, where, requires_grad, save=requires_grad)
    forward = torch.ops.snnkern.recurrent_lif_forward if recurrent else torch.ops.snnkern.lif_forward
    assert_opcheck(forward.default, (*tensors, *options, *flags))
    if not requires_grad:
        return
    plain = [t if t is None else t.detach() for t in tensors]
    spikes, membrane, state_out, saved = forward(*plain, *options, *flags)
    assert saved.shape == (3, *spikes.shape)  # pre-reset membrane, a_t, c_t
    g = torch.Generator().manual_seed(9)
    ups = [torch.randn(o.shape, generator=g, dtype=F64).to(where.device) for o in (spikes, membrane, state_out)]
    rest = plain[1:]  # everything after x (the weight first for the recurrent op)
    backward = torch.ops.snnkern.recurrent_lif_backward if recurrent else torch.ops.snnkern.lif_backward
    args = (*ups, saved, spikes, *rest, *options)
    assert_opcheck(backward.default, args)
    grads = backward(*args)
    assert grads[-3 if recurrent else -2].shape == (2, 4)  # grad_adaptation: rows decay, strength


@everywhere
def test_backward_refuses_wrong_saved_rows(where):
    tensors, options, flags = _raw_args(False, where, False)
    spikes, _, _, saved = torch.ops.snnkern.lif_forward(*tensors, *options, *flags)
    with pytest.raises(RuntimeError, match=r"pre_reset must have shape \[3, batch, time, neurons\]"):
        torch.ops.snnkern.lif_backward(None, None, None, saved[0], spikes, *tensors[1:], *options)


@everywhere
@pytest.mark.parametrize("recurrent", [False, True], ids=["lif", "recurrent"])
def test_chunks_continue_through_the_state(recurrent, where):
    """A sequence run in two chunks, the 5-row state (and the last spikes) passed on, equals one run."""
    case = _case(2, 30, 7, F64, where.device, seed=7, recurrent=recurrent, requires_grad=False)
    kw = dict(
        threshold=case["threshold"],
        adaptation_decay=case["rho"],
        adaptation_strength=case["beta"],
        refractory=3,
        ordering="update_first",
        reset="subtract",
        backend=where.backend,
    )

    def call(x, state, spikes):
        if recurrent:
            return snnkern.recurrent_lif(x, case["weight"], case["alpha"], state=state, spikes=spikes, **kw)
        return snnkern.lif(x, case["alpha"], state=state, **kw)

    whole = call(case["x"], case["state"], case["spikes"] if recurrent else None)
    first = call(case["x"][:, :13], case["state"], case["spikes"] if recurrent else None)
    second = call(case["x"][:, 13:], first.state, first.spikes[:, -1] if recurrent else None)
    assert torch.equal(torch.cat([first.spikes, second.spikes], 1), whole.spikes)
    torch.testing.assert_close(second.state, whole.state, **TOL[F64])


@at("reference", "cpu", "emulated", "cuda")
@pytest.mark.parametrize("refractory", [0, 1, 4])
@pytest.mark.parametrize("ordering", ["spike_first", "update_first", "charge_first"])
def test_refractory_period_blocks_the_next_steps(refractory, ordering, where):
    """Under a drive far above threshold a neuron fires once every refractory + 1 steps (NEST's
    t_ref of 5 steps is refractory=4), and its surrogate derivative is zero while it is blocked."""
    x = torch.full((1, 30, 1), 5.0, dtype=F64, device=where.device, requires_grad=True)
    r = snnkern.lif(
        x,
        0.9,
        threshold=1.0,
        reset="subtract",
        ordering=ordering,
        refractory=refractory,
        surrogate=Triangle(0.5),
        backend=where.backend,
    )
    times = r.spikes[0, :, 0].nonzero().flatten().tolist()
    assert len(times) > 3 and {b - a for a, b in itertools.pairwise(times)} == {refractory + 1}
    (g,) = torch.autograd.grad(r.spikes.sum(), x)
    assert torch.all(g == 0)  # far from threshold or blocked: no surrogate gradient anywhere


@at("reference", "cpu", "emulated", "cuda")
def test_adaptation_raises_the_threshold(where):
    """Under a constant drive an adaptive neuron fires less and less often; the state's a row is
    the low-passed spike train, a_{t+1} = rho a_t + r_t."""
    x = torch.full((1, 400, 2), 0.3, dtype=F64, device=where.device)
    rho = 0.99
    r = snnkern.lif(
        x,
        0.9,
        threshold=1.0,
        reset="subtract",
        ordering="update_first",
        adaptation_decay=rho,
        adaptation_strength=torch.tensor([0.0, 0.5], dtype=F64, device=where.device),
        backend=where.backend,
    )
    regular, adaptive = r.spikes[0, :, 0], r.spikes[0, :, 1]
    assert adaptive[:100].sum() > adaptive[300:].sum()
    assert regular.sum() > adaptive.sum()
    # update_first resets with r_t = z_{t-1}: a_T = sum over t < T - 1 of rho^(T - 2 - t) z_t.
    z = r.spikes[0, :-1, 1]
    powers = rho ** torch.arange(len(z) - 1, -1, -1, dtype=F64, device=where.device)
    torch.testing.assert_close(r.state[3, 0, 1], (powers * z).sum(), **TOL[F64])


@pytest.mark.parametrize("compile_backend", ["eager", "aot_eager"])
@everywhere
def test_torch_compile_fullgraph(compile_backend, where):
    case = _case(2, 12, 6, F32, where.device, seed=8, recurrent=True)

    def f(x, weight, rho, beta):
        r = snnkern.recurrent_lif(
            x,
            weight,
            0.9,
            threshold=0.5,
            adaptation_decay=rho,
            adaptation_strength=beta,
            refractory=2,
            ordering="update_first",
            reset="subtract",
            surrogate=Triangle(0.5),
        )
        return r.spikes.sum() + r.state[3].sum()

    leaves = [case[k] for k in ("x", "weight", "rho", "beta")]
    want = f(*leaves)
    want_grads = torch.autograd.grad(want, leaves)
    got = torch.compile(f, fullgraph=True, backend=compile_backend)(*leaves)
    got_grads = torch.autograd.grad(got, leaves)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------

BAD = [
    (dict(adaptation_strength=0.5), ValueError, "adaptation_strength needs adaptation_decay"),
    (dict(adaptation_decay=1.5), ValueError, r"adaptation_decay must lie in \[0, 1\]"),
    (dict(adaptation_decay=float("nan")), ValueError, r"adaptation_decay must lie in \[0, 1\]"),
    (dict(adaptation_decay=0.9, adaptation_strength=float("inf")), ValueError, "adaptation_strength must be a finite"),
    (
        dict(adaptation_decay=0.9, adaptation_strength=torch.tensor([0.1, float("nan"), 0.0])),
        ValueError,
        "adaptation_strength must be finite",
    ),
    (dict(adaptation_decay=torch.tensor([0.9, 1.2, 0.5])), ValueError, r"adaptation_decay must lie in \[0, 1\]"),
    (
        dict(adaptation_decay=0.9, adaptation_strength=torch.ones(4)),
        ValueError,
        "adaptation_strength must be a scalar or a tensor broadcastable",
    ),
    (dict(refractory=-1), ValueError, "refractory must be a number of steps >= 0"),
    (dict(refractory=2.0), ValueError, "refractory must be a number of steps >= 0"),
    (dict(refractory=True), ValueError, "refractory must be a number of steps >= 0"),
    (dict(refractory=2, spike="multi", reset="subtract"), ValueError, "need spike='binary'"),
    (dict(adaptation_decay=0.9, spike="multi", reset="subtract"), ValueError, "need spike='binary'"),
    (
        dict(refractory=2, state=torch.zeros(3, 2, 3)),
        ValueError,
        r"state must have shape \[5, batch, \*neurons\] = \[5, 2, 3\] for neurons with adaptation",
    ),
    (dict(state=torch.zeros(5, 2, 3)), ValueError, r"state must have shape \[3, batch, \*neurons\]"),
]


@at("reference", "cpu")
@pytest.mark.parametrize("recurrent", [False, True], ids=["lif", "recurrent"])
@pytest.mark.parametrize("kwargs, error, message", BAD, ids=[m[:30] for _, _, m in BAD])
def test_bad_arguments(kwargs, error, message, recurrent, where):
    x = torch.rand(2, 4, 3)

    def call():
        if recurrent:
            return snnkern.recurrent_lif(x, torch.zeros(3, 3), 0.9, backend=where.backend, **kwargs)
        return snnkern.lif(x, 0.9, backend=where.backend, **kwargs)

    with pytest.raises(error, match=message):
        call()


@everywhere
def test_raw_op_checks_values_under_compile(where):
    """check_values=True (what python asks for under torch.compile): the op itself refuses an
    adaptation decay outside [0, 1] and a non-finite strength."""
    tensors, options, (record, save, _) = _raw_args(False, where, False)
    for row, value, message in ((0, 1.5, "adaptation_decay must lie in"), (1, float("inf"), "must be finite")):
        adaptation = tensors[4].clone()
        adaptation[row, 1] = value
        bad = [*tensors[:4], adaptation, tensors[5]]
        with pytest.raises(ValueError, match=message):
            torch.ops.snnkern.lif_forward(*bad, *options, record, save, True)


@at("cpu", "emulated")
@pytest.mark.parametrize("recurrent", [False, True], ids=["LIF", "RecurrentLIF"])
def test_layers_take_the_options(recurrent, where):
    """snnkern.nn.LIF and RecurrentLIF pass adaptation and refractoriness to the ops: the layer's
    spikes and 5-row state equal the functional op's on the layer's own projection."""
    torch.manual_seed(3)
    strength = torch.linspace(0.0, 0.4, 6)
    layer_type = snnkern.nn.RecurrentLIF if recurrent else snnkern.nn.LIF
    layer = layer_type(
        5,
        6,
        alpha=0.9,
        threshold=0.5,
        reset="subtract",
        ordering="update_first",
        adaptation_decay=0.95,
        adaptation_strength=strength,
        refractory=2,
        return_state=True,
    )
    x = (torch.rand(3, 20, 5) < 0.4).float()
    spikes, state = layer(x)
    kw = dict(
        threshold=0.5,
        reset="subtract",
        ordering="update_first",
        adaptation_decay=0.95,
        adaptation_strength=strength,
        refractory=2,
    )
    current = layer.project(x)
    if recurrent:
        want = snnkern.recurrent_lif(current, layer.recurrent_weight, 0.9, detach_reset=True, **kw)
        state = state[0]
    else:
        want = snnkern.lif(current, 0.9, **kw)
    assert state.shape == (5, 3, 6)
    assert torch.equal(spikes, want.spikes)
    torch.testing.assert_close(state, want.state)
    assert "adaptation_strength" in dict(layer.named_buffers())  # moves with the module
