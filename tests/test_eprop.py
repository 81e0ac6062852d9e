"""e-prop (snnkern.eprop): the fused eligibility-trace op against a plain loop of its equations,
wherever the compiled ops run; e-prop's gradients of seed 003's network against BPTT (autograd
through the reference backend, float64): equal without recurrent weights (symmetric feedback,
adaptive and refractory neurons), equal with them to BPTT through a network whose recurrent input
takes the spikes as constants, and different from full BPTT; bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

import snnkern
from helpers import (
    LOW_DTYPES,
    LOW_TOL,
    Where,
    assert_opcheck,
    everywhere,
    everywhere_and_reference,
    needs_compiled,
    on_lanes,
)
from snnkern import eprop
from snnkern.models.evidence import EvidenceNetwork, rate_regularization, recall_loss

F64 = dict(rtol=1e-10, atol=1e-12)
ERR = (ValueError, TypeError)

# --------------------------------------------------------------------------------------------
# The fused op against a plain loop
# --------------------------------------------------------------------------------------------


def _loop(psi, trace, signal, rate, beta, rho, kappa) -> torch.Tensor:
    """The trace equations of csrc/eprop.h, one python float at a time (float64)."""
    B, T, N = psi.shape
    P = trace.shape[2]
    psi, trace, signal = psi.double().tolist(), trace.double().tolist(), signal.double().tolist()
    rate = rate.double().tolist() if rate is not None else None
    beta, rho = beta.double().tolist(), rho.double().tolist()
    out = [[0.0] * P for _ in range(N)]
    for b in range(B):
        for j in range(N):
            for i in range(P):
                eps = ebar = g = 0.0
                for t in range(T):
                    e = psi[b][t][j] * (trace[b][t][i] - beta[j] * eps)
                    eps = rho[j] * eps + e
                    ebar = kappa * ebar + e
                    g += signal[b][t][j] * ebar + (rate[b][t][j] * e if rate is not None else 0.0)
                out[j][i] += g
    return torch.tensor(out, dtype=torch.float64).reshape(N, P)


def _inputs(B, T, N, P, dtype=torch.float64, device="cpu", seed=0, rate=True):
    """Random op inputs: psi >= 0 with zeros (refractory steps), traces >= 0, signals of both signs,
    per-neuron beta and rho (0 and 1 among them)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    psi = rand(B, T, N) * (rand(B, T, N) > 0.3)
    trace = rand(B, T, P) * 3
    signal = torch.randn(B, T, N, generator=g, dtype=torch.float64)
    rate_signal = torch.randn(B, T, N, generator=g, dtype=torch.float64) if rate else None
    beta = rand(N) * 2
    rho = rand(N)
    if N > 2:
        beta[0], rho[1], rho[2] = 0.0, 0.0, 1.0
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    seqs = [t if t is None else t.to(dtype).to(device) for t in (psi, trace, signal, rate_signal)]
    return (*seqs, beta.to(acc).to(device), rho.to(acc).to(device))


SHAPES = [(2, 7, 5, 9), (1, 1, 3, 1), (1, 13, 1, 17), (3, 5, 8, 8), (2, 9, 11, 3), (4, 3, 2, 33)]


@everywhere_and_reference
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("rate", [True, False], ids=["rate", "norate"])
@pytest.mark.parametrize("kappa", [0.0, 0.9, 1.0])
def test_op_matches_the_loop(where: Where, shape, rate, kappa):
    psi, trace, signal, rate_signal, beta, rho = _inputs(*shape, device=where.device, rate=rate)
    got = snnkern.eprop_weight_grad(psi, trace, signal, rate_signal, beta, rho, kappa, backend=where.backend)
    assert got.shape == (shape[2], shape[3]) and got.dtype == torch.float64 and got.device == psi.device
    want = _loop(psi.cpu(), trace.cpu(), signal.cpu(), rate_signal, beta.cpu(), rho.cpu(), kappa)
    torch.testing.assert_close(got.cpu(), want, **F64)


@everywhere
def test_op_float32_and_scalar_parameters(where: Where):
    psi, trace, signal, rate_signal, _, _ = _inputs(3, 20, 7, 19, dtype=torch.float32, device=where.device)
    got = snnkern.eprop_weight_grad(psi, trace, signal, rate_signal, 0.3, 0.95, 0.8, backend=where.backend)
    assert got.dtype == torch.float32
    n = psi.shape[2]
    beta, rho = torch.full((n,), 0.3, dtype=torch.float64), torch.full((n,), 0.95, dtype=torch.float64)
    want = _loop(psi.cpu(), trace.cpu(), signal.cpu(), rate_signal.cpu(), beta, rho, 0.8)
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-5, atol=1e-5)
    # A one-element tensor is a value for every neuron.
    one = torch.tensor([0.3], device=where.device)
    same = snnkern.eprop_weight_grad(psi, trace, signal, rate_signal, one, 0.95, 0.8, backend=where.backend)
    torch.testing.assert_close(same, got, rtol=0, atol=0)


@everywhere
def test_op_non_contiguous_inputs(where: Where):
    psi, trace, signal, rate_signal, beta, rho = _inputs(3, 6, 5, 7, device=where.device)
    want = snnkern.eprop_weight_grad(psi, trace, signal, rate_signal, beta, rho, 0.7, backend=where.backend)

    def strided(t):  # the same values in a time-major tensor, viewed batch-first
        return t.transpose(0, 1).contiguous().transpose(0, 1)

    seqs = [strided(t) for t in (psi, trace, signal, rate_signal)]
    got = snnkern.eprop_weight_grad(*seqs, beta, rho, 0.7, backend=where.backend)
    assert not strided(psi).is_contiguous()
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@everywhere_and_reference
@pytest.mark.parametrize("shape", [(0, 4, 3, 2), (2, 0, 3, 2), (2, 4, 0, 2), (2, 4, 3, 0)])
def test_op_empty(where: Where, shape):
    psi, trace, signal, rate_signal, beta, rho = _inputs(*shape, device=where.device)
    got = snnkern.eprop_weight_grad(psi, trace, signal, rate_signal, beta, rho, 0.5, backend=where.backend)
    assert got.shape == (shape[2], shape[3])
    assert torch.equal(got, torch.zeros_like(got))


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
def test_op_half_precision_on_lanes(where: Where, low):
    """float16/bfloat16 sequences (CUDA and its emulation): the float32 arithmetic of the rounded
    inputs, rounded once at the end."""
    psi, trace, signal, rate_signal, beta, rho = _inputs(2, 12, 6, 10, dtype=torch.float32, device=where.device)
    seqs = [t.to(low) for t in (psi, trace, signal, rate_signal)]
    got = snnkern.eprop_weight_grad(*seqs, beta, rho, 0.8, backend=where.backend)
    assert got.dtype == low
    want = _loop(*(t.cpu() for t in seqs), beta.cpu(), rho.cpu(), 0.8)
    scale = want.abs().max()
    torch.testing.assert_close(got.cpu().double() / scale, want / scale, **LOW_TOL[low])


@everywhere
def test_op_opcheck(where: Where):
    psi, trace, signal, rate_signal, beta, rho = _inputs(2, 5, 3, 4, device=where.device)
    op = torch.ops.snnkern.eprop_weight_grad.default
    assert_opcheck(op, (psi, trace, signal, rate_signal, beta, rho, 0.9))
    assert_opcheck(op, (psi, trace, signal, None, beta, rho, 0.0))


@needs_compiled
def test_op_independent_of_the_thread_count():
    psi, trace, signal, rate_signal, beta, rho = _inputs(5, 40, 13, 37, dtype=torch.float32)
    original = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(snnkern.eprop_weight_grad(psi, trace, signal, rate_signal, beta, rho, 0.9, backend="compiled"))
    finally:
        torch.set_num_threads(original)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@everywhere
def test_op_under_torch_compile(where: Where):
    psi, trace, signal, rate_signal, beta, rho = _inputs(2, 5, 3, 4, device=where.device)
    fn = torch.compile(
        lambda *a: snnkern.eprop_weight_grad(*a, beta, rho, 0.9, backend=where.backend),
        fullgraph=True,
        backend="aot_eager",
    )
    want = snnkern.eprop_weight_grad(psi, trace, signal, rate_signal, beta, rho, 0.9, backend=where.backend)
    torch.testing.assert_close(fn(psi, trace, signal, rate_signal), want, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# Seed 003's network: e-prop against BPTT
# --------------------------------------------------------------------------------------------

B, T, N_IN, N_OUT = 3, 40, 5, 2
WINDOW = slice(T - 10, T)


def _network(device, n_regular=3, n_adaptive=4, refractory=3, recurrent_scale=1.0, seed=1):
    """A small float64 network on the reference backend with strong adaptation (beta ~ 0.4 at a
    30-step adaptation time constant, so that it acts within a trial) and inputs that make its
    neurons fire (about one step in ten)."""
    g = torch.Generator().manual_seed(seed)
    model = EvidenceNetwork(
        n_in=N_IN,
        n_regular=n_regular,
        n_adaptive=n_adaptive,
        n_out=N_OUT,
        tau_adaptation=30.0,
        adaptation_scale=0.6,
        refractory=refractory,
        detach_reset=True,  # e-prop drops the reset's gradient: BPTT must too, to be comparable
        generator=g,
        backend="reference",
    ).double()
    with torch.no_grad():
        model.input_weight.mul_(3.0)
        model.recurrent_weight.mul_(recurrent_scale)
    x = (torch.rand(B, T, N_IN, generator=g) < 0.3).double()
    target = torch.randint(0, N_OUT, (B,), generator=g)
    return model.to(device), x.to(device), target.to(device)


def _bptt(model, x, target, c_reg, detach_recurrent=False) -> dict[str, torch.Tensor]:
    """BPTT's gradients of the same loss: autograd through the reference backend. With
    ``detach_recurrent`` the recurrent input is W_rec z_{t-1}.detach() (one reference step per
    call, the neuron state carried over)."""
    if detach_recurrent:
        current = x @ model.input_weight.t()
        weight = model.recurrent_weight * model.recurrent_mask
        z, state, steps = x.new_zeros(x.shape[0], model.n_rec), None, []
        for t in range(x.shape[1]):
            step = current[:, t : t + 1] + (z.detach() @ weight.t()).unsqueeze(1)
            r = snnkern.lif(step, model.alpha, state=state, backend="reference", **model.neuron_options())
            state, z = r.state, r.spikes[:, 0]
            steps.append(z)
        spikes = torch.stack(steps, dim=1)
        drive = (1.0 - model.kappa) * (spikes @ model.readout_weight.t())
        readout = snnkern.leaky(drive, model.kappa, backend="reference").membrane
    else:
        out = model(x)
        readout, spikes = out.readout, out.spikes
    loss = recall_loss(readout, target, WINDOW) + rate_regularization(spikes, 0.01, c_reg)
    params = [model.input_weight, model.recurrent_weight, model.readout_weight]
    grads = torch.autograd.grad(loss, params)
    return {"input": grads[0], "recurrent": grads[1], "readout": grads[2], "loss": loss.detach(), "spikes": spikes}


def _eprop(model, x, target, c_reg, backend, feedback="symmetric") -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    values = eprop.eprop_gradients(model, x, target, WINDOW, feedback=feedback, c_reg=c_reg, backend=backend)
    grads = {
        "input": model.input_weight.grad,
        "recurrent": model.recurrent_weight.grad,
        "readout": model.readout_weight.grad,
    }
    return {**grads, **{k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}}


# (n_regular, n_adaptive, refractory, c_reg)
NETWORKS = [
    pytest.param(3, 4, 3, 20.0, id="alif-refractory-reg"),
    pytest.param(7, 0, 0, 0.0, id="lif"),
    pytest.param(0, 6, 4, 5.0, id="alif-only"),
]


@everywhere_and_reference
@pytest.mark.parametrize("n_regular, n_adaptive, refractory, c_reg", NETWORKS)
def test_eprop_is_bptt_without_recurrence(where: Where, n_regular, n_adaptive, refractory, c_reg):
    """No recurrent weights, the reset detached, symmetric feedback: nothing that e-prop drops is
    there, so its gradients are BPTT's (the recurrent weights' too: the paths through them have
    weight 0)."""
    model, x, target = _network(where.device, n_regular, n_adaptive, refractory, recurrent_scale=0.0)
    bptt = _bptt(model, x, target, c_reg)
    rate = float(bptt["spikes"].detach().mean())
    assert 0.03 < rate < 0.5, rate  # the neurons fire, and not all the time
    if refractory:  # a refractory neuron skipped a spike it would otherwise have fired
        unblocked, _, _ = _network(where.device, n_regular, n_adaptive, 0, recurrent_scale=0.0)
        assert not torch.equal(unblocked(x).spikes, bptt["spikes"])
    got = _eprop(model, x, target, c_reg, where.backend)
    torch.testing.assert_close(got["loss"], bptt["loss"].cpu(), **F64)
    for name in ("input", "recurrent", "readout"):
        assert bptt[name].abs().max() > 1e-3, name  # a gradient worth comparing
        torch.testing.assert_close(got[name], bptt[name], **F64, msg=lambda m, name=name: f"{name}: {m}")
    assert torch.equal(torch.diagonal(got["recurrent"]), torch.zeros(model.n_rec, dtype=torch.float64, device=x.device))


@everywhere
def test_eprop_adaptation_matters(where: Where, monkeypatch):
    """The adaptive term -beta eps of the eligibility trace is needed for BPTT's gradient: without
    it (adaptation strength 0 in the trace sum only) the gradients differ."""
    model, x, target = _network(where.device, 0, 6, 3, recurrent_scale=0.0)
    bptt = _bptt(model, x, target, 5.0)
    original = eprop.eprop_weight_grad

    def without_adaptation(psi, trace, signal, rate, strength, *rest, **kwargs):
        return original(psi, trace, signal, rate, torch.zeros_like(strength), *rest, **kwargs)

    monkeypatch.setattr(eprop, "eprop_weight_grad", without_adaptation)
    got = _eprop(model, x, target, 5.0, where.backend)
    assert (got["input"] - bptt["input"]).abs().max() > 1e-3 * bptt["input"].abs().max()


@everywhere_and_reference
def test_eprop_is_bptt_with_detached_recurrence(where: Where):
    """With recurrent weights, e-prop's gradients are those of BPTT through a network whose
    recurrent input takes the spikes as constants (W_rec z_{t-1}.detach()): they differ from full
    BPTT only by the terms of the paths through W_rec."""
    model, x, target = _network(where.device, 3, 4, 3, recurrent_scale=1.0)
    detached = _bptt(model, x, target, 20.0, detach_recurrent=True)
    full = _bptt(model, x, target, 20.0)
    assert torch.equal(detached["spikes"], full["spikes"])  # the same forward
    got = _eprop(model, x, target, 20.0, where.backend)
    for name in ("input", "recurrent", "readout"):
        torch.testing.assert_close(got[name], detached[name], **F64, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(got["readout"], full["readout"], **F64)  # exact in both
    for name in ("input", "recurrent"):
        difference = (got[name] - full[name]).abs().max()
        assert difference > 1e-2 * full[name].abs().max(), f"{name}: e-prop equals full BPTT ({difference})"


@everywhere
def test_random_feedback(where: Where):
    """The learning signal is (1 - kappa) B err_t with B the random feedback weights or the readout
    weights transposed; the readout gradient is exact either way."""
    model, x, target = _network(where.device, 3, 4, 3)
    readout = model(x).readout.detach().requires_grad_()
    (error,) = torch.autograd.grad(recall_loss(readout, target, WINDOW), readout)
    for feedback, weight in (("random", model.feedback_weight), ("symmetric", model.readout_weight.detach().t())):
        signal = eprop.trial_signals(model, x, target, WINDOW, feedback=feedback).learning_signal
        torch.testing.assert_close(signal, (1 - model.kappa) * error @ weight.t(), **F64)
    random = _eprop(model, x, target, 20.0, where.backend, feedback="random")
    symmetric = _eprop(model, x, target, 20.0, where.backend, feedback="symmetric")
    torch.testing.assert_close(random["readout"], symmetric["readout"], rtol=0, atol=0)
    for name in ("input", "recurrent"):
        assert (random[name] - symmetric[name]).abs().max() > 1e-3 * symmetric[name].abs().max(), name


def test_eprop_gradients_replace_grad_and_step():
    """.grad is replaced, not accumulated, and a few SGD steps on e-prop's gradients lower the loss."""
    model, x, target = _network("cpu", 3, 4, 3)
    first = _eprop(model, x, target, 1.0, None)
    model.input_weight.grad = torch.ones_like(model.input_weight)
    again = _eprop(model, x, target, 1.0, None)
    assert torch.equal(first["input"], again["input"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        losses.append(eprop.eprop_gradients(model, x, target, WINDOW, c_reg=1.0)["loss"])
        optimizer.step()
        with torch.no_grad():
            model.recurrent_weight.mul_(model.recurrent_mask)
    assert losses[-1] < losses[0], losses


@everywhere
def test_trial_signals(where: Where):
    model, x, target = _network(where.device, 3, 4, 3)
    s = eprop.trial_signals(model, x, target, WINDOW)
    n = model.n_rec
    for name in ("spikes", "membrane", "threshold", "psi", "learning_signal"):
        assert getattr(s, name).shape == (B, T, n), name
    assert s.readout.shape == (B, T, N_OUT)
    with torch.no_grad():
        out = model(x)
        r = snnkern.recurrent_lif(
            x @ model.input_weight.t(),
            model.recurrent_weight * model.recurrent_mask,
            model.alpha,
            backend="reference",
            **model.neuron_options(),
        )
    assert torch.equal(s.spikes, out.spikes) and torch.equal(s.membrane, out.membrane)
    torch.testing.assert_close(s.readout, out.readout, rtol=0, atol=0)
    # The adaptive threshold: v_th for the regular neurons; at the last step theta + beta a_T.
    regular = model.adaptation_strength == 0
    assert torch.equal(s.threshold[..., regular], torch.full_like(s.threshold[..., regular], model.v_th))
    last = model.v_th + model.adaptation_strength * r.state[3]
    torch.testing.assert_close(s.threshold[:, -1], last, **F64)
    # Spikes exactly where the membrane crosses the adaptive threshold and the neuron is not refractory.
    spikes = s.spikes.bool()
    blocked = torch.zeros_like(spikes)  # the `refractory` steps after a spike
    for k in range(1, model.refractory + 1):
        blocked[:, k:] |= spikes[:, :-k]
    assert torch.equal(spikes, (s.membrane > s.threshold) & ~blocked)
    # psi is 0 while refractory, the surrogate elsewhere.
    assert blocked.any() and torch.equal(s.psi[blocked], torch.zeros_like(s.psi[blocked]))
    surrogate = model.surrogate.derivative(s.membrane - s.threshold, model.v_th)
    torch.testing.assert_close(s.psi[~blocked], surrogate[~blocked], rtol=0, atol=0)
    # The learning signal: 0 outside the recall window, (1 - kappa) B err inside it.
    assert torch.equal(s.learning_signal[:, : WINDOW.start], torch.zeros_like(s.learning_signal[:, : WINDOW.start]))
    assert s.learning_signal[:, WINDOW].abs().max() > 0


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------


def _args(where: Where, dtype=torch.float32):
    psi, trace, signal, rate_signal, beta, rho = _inputs(2, 4, 3, 5, dtype=dtype, device=where.device)
    return dict(psi=psi, trace=trace, signal=signal, rate=rate_signal, beta=beta, rho=rho, kappa=0.9)


def _call(where: Where, a: dict):
    return snnkern.eprop_weight_grad(
        a["psi"], a["trace"], a["signal"], a["rate"], a["beta"], a["rho"], a["kappa"], backend=where.backend
    )


BAD = [
    ("psi", lambda a: a["psi"][0], "psi must have shape"),
    ("psi", lambda a: a["psi"].to(torch.int64), "psi must be a floating-point"),
    ("psi", lambda a: a["psi"].tolist(), "psi must be a torch.Tensor"),
    ("trace", lambda a: a["trace"][:1], r"presynaptic_trace must have shape \[batch, time, inputs\] = \[2, 4, \*\]"),
    ("trace", lambda a: a["trace"][:, :3], "presynaptic_trace must have shape"),
    ("trace", lambda a: a["trace"].double(), "presynaptic_trace has dtype torch.float64, expected"),
    ("trace", lambda a: a["trace"].to("meta"), "presynaptic_trace is on meta"),
    ("signal", lambda a: a["signal"][:, :, :2], "learning_signal must have the shape of psi"),
    ("rate", lambda a: a["rate"][:1], "rate_signal must have the shape of psi"),
    ("rate", lambda a: a["rate"].double(), "rate_signal has dtype"),
    ("beta", lambda a: a["beta"][:2], r"adaptation_strength must be a number or a tensor \[neurons\] = \[3\]"),
    ("beta", lambda a: torch.full_like(a["beta"], math.nan), "adaptation_strength must be finite"),
    ("beta", lambda a: math.inf, "adaptation_strength must be finite"),
    ("beta", lambda a: "0.1", "adaptation_strength must be a float or a tensor"),
    ("rho", lambda a: 1.5 + 0 * a["rho"], r"adaptation_decay must lie in \[0, 1\]"),
    ("rho", lambda a: a["rho"].to(torch.int32), "adaptation_decay must be a floating-point"),
    ("kappa", lambda a: 1.5, r"kappa must be a number in \[0, 1\]"),
    ("kappa", lambda a: math.nan, r"kappa must be a number in \[0, 1\]"),
    ("kappa", lambda a: True, r"kappa must be a number in \[0, 1\]"),
    ("psi", lambda a: a["psi"].masked_fill(a["psi"] > 0.5, math.nan), "psi must be finite"),
    ("trace", lambda a: a["trace"].masked_fill(a["trace"] > 1, math.inf), "presynaptic_trace must be finite"),
    ("signal", lambda a: a["signal"].masked_fill(a["signal"] > 1, -math.inf), "learning_signal must be finite"),
    ("rate", lambda a: a["rate"].masked_fill(a["rate"] > 1, math.nan), "rate_signal must be finite"),
]


@everywhere_and_reference
@pytest.mark.parametrize("name, bad, message", BAD, ids=[f"{n}-{k}" for k, (n, _, _) in enumerate(BAD)])
def test_bad_arguments(where: Where, name, bad, message):
    a = _args(where)
    a[name] = bad(a)
    with pytest.raises(ERR, match=message):
        _call(where, a)


@everywhere
def test_bad_arguments_of_the_op_itself(where: Where):
    """Direct calls of torch.ops.snnkern.eprop_weight_grad are checked by the op."""
    a = _args(where)
    op = torch.ops.snnkern.eprop_weight_grad
    good = (a["psi"], a["trace"], a["signal"], a["rate"], a["beta"], a["rho"], 0.9)

    def call(**change):
        args = dict(zip(("psi", "trace", "signal", "rate", "beta", "rho", "kappa"), good))
        args.update(change)
        return op(*args.values())

    with pytest.raises(RuntimeError, match=r"snnkern.eprop_weight_grad: psi must have shape \[batch, time, neurons\]"):
        call(psi=a["psi"][0])
    with pytest.raises(RuntimeError, match="presynaptic_trace must have shape"):
        call(trace=a["trace"][:1])
    with pytest.raises(RuntimeError, match="learning_signal has dtype"):
        call(signal=a["signal"].double())
    with pytest.raises(RuntimeError, match="rate_signal must have shape"):
        call(rate=a["rate"][:, :2])
    with pytest.raises(RuntimeError, match="adaptation_strength has dtype Double, expected Float"):
        call(beta=a["beta"].double())
    with pytest.raises(RuntimeError, match="adaptation_decay must have shape"):
        call(rho=a["rho"][:2])
    with pytest.raises(RuntimeError, match=r"kappa must lie in \[0, 1\]"):
        call(kappa=-0.1)
    with pytest.raises(ValueError, match=r"adaptation_decay must lie in \[0, 1\]"):
        call(rho=a["rho"] + 2)
    with pytest.raises(ValueError, match="adaptation_strength must be finite"):
        call(beta=a["beta"] * math.inf)
    if where.name == "cpu":
        with pytest.raises(RuntimeError, match="the CPU kernels support float32 and float64"):
            call(**{k: v.half() for k, v in zip(("psi", "trace", "signal", "rate"), good[:4])})


def test_bad_network_arguments():
    model, x, target = _network("cpu", 3, 4, 3)
    with pytest.raises(ValueError, match="feedback must be one of"):
        eprop.eprop_gradients(model, x, target, WINDOW, feedback="transpose")
    with pytest.raises(TypeError, match="window must be a slice"):
        eprop.eprop_gradients(model, x, target, (30, 40))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="c_reg must be a finite number"):
        eprop.eprop_gradients(model, x, target, WINDOW, c_reg=math.nan)
    with pytest.raises(ValueError, match="f_target must be a finite number"):
        eprop.eprop_gradients(model, x, target, WINDOW, f_target=math.inf)
