"""snnkern's ops reproduce the seeds' naive loops (snnkern.seed_loops) exactly: on the reference
backend, the CPU kernels, the emulated CUDA lanes and CUDA (the ``where`` fixture, tests/helpers.py).

* seed 000 hidden layer  == lif(ordering="delayed", reset="zero", detach_reset=False, Sigmoid(5)).spikes
* seed 004 hidden layer  == lif(ordering="spike_first", alpha_syn, detach_reset=True, FastSigmoid(100)),
  membrane == mem_rec (recurrent weight zero; with a recurrent weight, recurrent_lif in one op and
  lif stepped one step at a time)
* seed 000 readout       == [0, leaky(h, alpha).membrane[:, :-1]]
* seed 004 readout       == [0, leaky(h2, beta, alpha_syn=alpha).membrane]
"""

import math

import pytest
import torch

import snnkern
from helpers import DTYPES, TOL, everywhere_and_reference, spike_rate, upstream_like
from snnkern import seed_loops
from snnkern.surrogate import FastSigmoid, Sigmoid

ALPHA_KINDS = ["float", "tensor"]


def _current(b, t, n, dtype, seed, scale=0.6, shift=0.3, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, n, generator=g, dtype=torch.float64) * scale + shift
    return x.to(dtype).to(device).requires_grad_()


def _decay(kind, value, n, dtype, device="cpu"):
    if kind == "float":
        return value
    return torch.linspace(value - 0.1, value + 0.05, n, dtype=dtype, device=device).requires_grad_()


def _leaves(*ts):
    return [t for t in ts if isinstance(t, torch.Tensor) and t.requires_grad]


def _compare(got, want, dtype, spikes_key=None):
    for key in want:
        if key == spikes_key:
            bad = (got[key] != want[key]).sum().item()
            assert bad == 0, f"{key}: differ at {bad} positions"
        else:
            torch.testing.assert_close(got[key], want[key], **TOL[dtype], msg=lambda m, key=key: f"{key}: {m}")


def _with_grads(outputs: dict, leaves, seed=0):
    loss = sum((v * upstream_like(v, seed + k)).sum() for k, v in enumerate(outputs.values()))
    grads = torch.autograd.grad(loss, leaves)
    result = {k: v.detach() for k, v in outputs.items()}
    result.update({f"grad{k}": g for k, g in enumerate(grads)})
    return result


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


@everywhere_and_reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha_kind", ALPHA_KINDS)
def test_seed000_hidden(where, dtype, alpha_kind):
    b, t, n = 4, 25, 7
    runs = []
    for impl in ("naive", "snnkern"):
        h = _current(b, t, n, dtype, seed=1, device=where.device)
        alpha = _decay(alpha_kind, math.exp(-1 / 20) - 0.05, n, dtype, where.device)
        if impl == "naive":
            spikes = seed_loops.seed000_hidden(h, alpha, beta=5.0)
        else:
            spikes = snnkern.lif(
                h,
                alpha,
                ordering="delayed",
                reset="zero",
                detach_reset=False,
                surrogate=Sigmoid(5.0),
                backend=where.backend,
            ).spikes
        runs.append(_with_grads({"spikes": spikes}, _leaves(h, alpha)))
    assert runs[0]["spikes"].shape == (b, t, n)
    assert 0.02 < spike_rate(runs[0]["spikes"]) < 0.9
    # The last input step is never used by the seed's loop.
    assert torch.count_nonzero(runs[0]["grad0"][:, -1]) == 0
    _compare(runs[1], runs[0], dtype, spikes_key="spikes")


@everywhere_and_reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha_kind", ALPHA_KINDS)
def test_seed004_hidden_feedforward(where, dtype, alpha_kind):
    b, t, n = 4, 25, 7
    runs = []
    for impl in ("naive", "snnkern"):
        h = _current(b, t, n, dtype, seed=2, scale=0.5, shift=0.15, device=where.device)
        a_syn = _decay(alpha_kind, math.exp(-1 / 5), n, dtype, where.device)
        b_mem = _decay(alpha_kind, math.exp(-1 / 10), n, dtype, where.device)
        if impl == "naive":
            no_recurrence = torch.zeros(n, n, dtype=dtype, device=where.device)
            mem, spk = seed_loops.seed004_hidden(h, no_recurrence, a_syn, b_mem, scale=100.0)
        else:
            r = snnkern.lif(
                h,
                b_mem,
                alpha_syn=a_syn,
                ordering="spike_first",
                reset="zero",
                detach_reset=True,
                surrogate=FastSigmoid(100.0),
                return_membrane=True,
                backend=where.backend,
            )
            mem, spk = r.membrane, r.spikes
        runs.append(_with_grads({"spikes": spk, "membrane": mem}, _leaves(h, a_syn, b_mem)))
    assert 0.02 < spike_rate(runs[0]["spikes"]) < 0.9
    _compare(runs[1], runs[0], dtype, spikes_key="spikes")


_SEED004_NEURON = dict(ordering="spike_first", detach_reset=True, surrogate=FastSigmoid(100.0))


def _seed004_hidden_snnkern(h, v1, a_syn, b_mem, how, backend):
    """seed004_hidden's (membrane, spikes) from snnkern: recurrent_lif, or lif one step at a time."""
    if how == "op":  # the seed adds spikes @ v1: v1 is [in, out], the op's weight [out, in]
        r = snnkern.recurrent_lif(
            h, v1.t(), b_mem, alpha_syn=a_syn, return_membrane=True, backend=backend, **_SEED004_NEURON
        )
        return r.membrane, r.spikes
    state, out, mems, spks = None, h.new_zeros(h.shape[0], h.shape[2]), [], []
    for step in range(h.shape[1]):
        drive = (h[:, step] + out @ v1)[:, None]
        r = snnkern.lif(
            drive, b_mem, alpha_syn=a_syn, state=state, return_membrane=True, backend=backend, **_SEED004_NEURON
        )
        out, state = r.spikes[:, 0], r.state
        mems.append(r.membrane)
        spks.append(r.spikes)
    return torch.cat(mems, 1), torch.cat(spks, 1)


@everywhere_and_reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how, batch", [("op", 1), ("op", 3), ("op", 20), ("stepwise", 3)])
def test_seed004_hidden_recurrent(where, dtype, how, batch):
    """With a recurrent matrix, recurrent_lif (the whole loop in one op) and lif run one step at a
    time (state=) reproduce seed 004's loop: spikes bitwise, membrane and the gradients of the input
    and the recurrent weight."""
    t, n = 25, 6
    g = torch.Generator().manual_seed(5)
    v1_init = (torch.randn(n, n, generator=g, dtype=torch.float64) * 0.3).to(dtype).to(where.device)
    a_syn, b_mem = math.exp(-1 / 5), math.exp(-1 / 10)
    runs = []
    for impl in ("naive", "snnkern"):
        h = _current(batch, t, n, dtype, seed=6, scale=0.5, shift=0.15, device=where.device)
        v1 = v1_init.clone().requires_grad_()
        if impl == "naive":
            mem, spk = seed_loops.seed004_hidden(h, v1, a_syn, b_mem)
        else:
            mem, spk = _seed004_hidden_snnkern(h, v1, a_syn, b_mem, how, where.backend)
        runs.append(_with_grads({"spikes": spk, "membrane": mem}, [h, v1]))
    assert 0.02 < spike_rate(runs[0]["spikes"]) < 0.9
    _compare(runs[1], runs[0], dtype, spikes_key="spikes")


@everywhere_and_reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha_kind", ALPHA_KINDS)
def test_seed000_readout(where, dtype, alpha_kind):
    b, t, c = 3, 15, 4
    runs = []
    for impl in ("naive", "snnkern"):
        h = _current(b, t, c, dtype, seed=3, scale=1.0, shift=0.0, device=where.device)
        alpha = _decay(alpha_kind, 0.9, c, dtype, where.device)
        if impl == "naive":
            v = seed_loops.seed000_readout(h, alpha)
        else:
            mem = snnkern.leaky(h, alpha, backend=where.backend).membrane
            v = torch.cat([h.new_zeros(b, 1, c), mem[:, :-1]], dim=1)
        runs.append(_with_grads({"v": v}, _leaves(h, alpha)))
    assert runs[0]["v"].shape == (b, t, c)
    _compare(runs[1], runs[0], dtype)


@everywhere_and_reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha_kind", ALPHA_KINDS)
def test_seed004_readout(where, dtype, alpha_kind):
    b, t, c = 3, 15, 4
    runs = []
    for impl in ("naive", "snnkern"):
        h = _current(b, t, c, dtype, seed=4, scale=1.0, shift=0.0, device=where.device)
        a_syn = _decay(alpha_kind, math.exp(-1 / 5), c, dtype, where.device)
        b_mem = _decay(alpha_kind, math.exp(-1 / 10), c, dtype, where.device)
        if impl == "naive":
            out = seed_loops.seed004_readout(h, a_syn, b_mem)
        else:
            mem = snnkern.leaky(h, b_mem, alpha_syn=a_syn, backend=where.backend).membrane
            out = torch.cat([h.new_zeros(b, 1, c), mem], dim=1)
        runs.append(_with_grads({"out": out}, _leaves(h, a_syn, b_mem)))
    assert runs[0]["out"].shape == (b, t + 1, c)
    _compare(runs[1], runs[0], dtype)


# --------------------------------------------------------------------------------------------
# Whole models built from snnkern ops
# --------------------------------------------------------------------------------------------


def _input_spikes(b, t, n, p, dtype, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, n, generator=g) < p).to(dtype).to(device)


def _snnkern_seed000(x, W1, W2, alpha, backend):
    s = snnkern.lif(
        torch.einsum("btc,cd->btd", x, W1),
        alpha,
        ordering="delayed",
        reset="zero",
        detach_reset=False,
        surrogate=Sigmoid(5.0),
        backend=backend,
    ).spikes
    mem = snnkern.leaky(torch.einsum("btc,cd->btd", s, W2), alpha, backend=backend).membrane
    return torch.cat([mem.new_zeros(mem.shape[0], 1, mem.shape[2]), mem[:, :-1]], dim=1), s


def _ipd_loss(v, labels):
    return torch.nn.functional.nll_loss(torch.log_softmax(v.mean(1), dim=1), labels)


@everywhere_and_reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dales", [False, True], ids=["seed000", "seed001_dales"])
def test_seed000_snn_model(where, dtype, dales):
    b, t, n_in, n_hid, n_out = 6, 40, 12, 10, 5
    x = _input_spikes(b, t, n_in, 0.25, dtype, seed=8, device=where.device)
    labels = (torch.arange(b) % n_out).to(where.device)
    g = torch.Generator().manual_seed(9)
    w1_init = (torch.randn(n_in, n_hid, generator=g, dtype=torch.float64) * 0.8).to(dtype).to(where.device)
    w2_init = (torch.randn(n_hid, n_out, generator=g, dtype=torch.float64) * 0.5).to(dtype).to(where.device)
    alpha = math.exp(-1e-3 / 20e-3)
    signs = (
        (
            seed_loops.dales_signs(n_in, 0.1, dtype=dtype).to(where.device),
            seed_loops.dales_signs(n_hid, 0.1, dtype=dtype).to(where.device),
        )
        if dales
        else None
    )
    if dales:
        w1_init = w1_init.abs() + 0.1  # keep the hidden layer active despite the inhibitory rows
    runs = []
    for impl in ("naive", "snnkern"):
        W1, W2 = w1_init.clone().requires_grad_(), w2_init.clone().requires_grad_()
        if impl == "naive":
            v = seed_loops.seed001_snn(x, W1, W2, signs, alpha) if dales else seed_loops.seed000_snn(x, W1, W2, alpha)
            eff1 = seed_loops.signed_weight(W1, signs and signs[0])
            s = seed_loops.seed000_hidden(torch.einsum("btc,cd->btd", x, eff1), alpha)
        else:
            eff1 = seed_loops.signed_weight(W1, signs[0]) if dales else W1
            eff2 = seed_loops.signed_weight(W2, signs[1]) if dales else W2
            v, s = _snnkern_seed000(x, eff1, eff2, alpha, where.backend)
        gw1, gw2 = torch.autograd.grad(_ipd_loss(v, labels), [W1, W2])
        runs.append({"spikes": s.detach(), "v": v.detach(), "gW1": gw1, "gW2": gw2})
    assert runs[0]["v"].shape == (b, t, n_out)
    assert 0.01 < spike_rate(runs[0]["spikes"]) < 0.9
    assert runs[0]["gW1"].abs().sum() > 0
    _compare(runs[1], runs[0], dtype, spikes_key="spikes")


def test_seed000_membrane_only_is_the_readout():
    x = _input_spikes(2, 9, 5, 0.3, torch.float64, seed=1)
    W = torch.randn(5, 3, dtype=torch.float64)
    v = seed_loops.seed000_membrane_only(x, W, 0.9)
    # By hand: v_0 = 0, v_{t+1} = 0.9 v_t + x_t W.
    h = x @ W
    want = [torch.zeros(2, 3, dtype=torch.float64)]
    for step in range(8):
        want.append(0.9 * want[-1] + h[:, step])
    torch.testing.assert_close(v, torch.stack(want, 1), rtol=0, atol=1e-14)


@everywhere_and_reference
@pytest.mark.parametrize("dtype", DTYPES)
def test_seed004_snn_model(where, dtype):
    b, t, n_in, n_hid, n_out = 5, 40, 12, 10, 4
    x = _input_spikes(b, t, n_in, 0.25, dtype, seed=10, device=where.device)
    labels = (torch.arange(b) % n_out).to(where.device)
    g = torch.Generator().manual_seed(11)
    w1_init = (torch.randn(n_in, n_hid, generator=g, dtype=torch.float64) * 0.5).to(dtype).to(where.device)
    w2_init = (torch.randn(n_hid, n_out, generator=g, dtype=torch.float64) * 0.5).to(dtype).to(where.device)
    a_syn, b_mem = math.exp(-1e-3 / 5e-3), math.exp(-1e-3 / 10e-3)
    runs = []
    for impl in ("naive", "snnkern"):
        w1, w2 = w1_init.clone().requires_grad_(), w2_init.clone().requires_grad_()
        if impl == "naive":
            no_recurrence = torch.zeros(n_hid, n_hid, dtype=dtype, device=where.device)
            out, (mem, spk) = seed_loops.seed004_snn(x, w1, w2, no_recurrence, a_syn, b_mem)
        else:
            r = snnkern.lif(
                torch.einsum("btc,cd->btd", x, w1),
                b_mem,
                alpha_syn=a_syn,
                ordering="spike_first",
                reset="zero",
                detach_reset=True,
                surrogate=FastSigmoid(100.0),
                return_membrane=True,
                backend=where.backend,
            )
            mem, spk = r.membrane, r.spikes
            ro = snnkern.leaky(torch.einsum("btc,cd->btd", spk, w2), b_mem, alpha_syn=a_syn, backend=where.backend)
            out = torch.cat([ro.membrane.new_zeros(b, 1, n_out), ro.membrane], dim=1)
        loss = torch.nn.functional.cross_entropy(out.max(dim=1).values, labels)
        gw1, gw2 = torch.autograd.grad(loss, [w1, w2])
        runs.append({"spikes": spk.detach(), "mem": mem.detach(), "out": out.detach(), "gw1": gw1, "gw2": gw2})
    assert runs[0]["out"].shape == (b, t + 1, n_out)
    assert 0.01 < spike_rate(runs[0]["spikes"]) < 0.9
    assert runs[0]["gw1"].abs().sum() > 0
    _compare(runs[1], runs[0], dtype, spikes_key="spikes")


def test_dales_signs():
    s = seed_loops.dales_signs(10, 0.25)
    assert s.shape == (10, 1)
    assert s[:2].eq(-1).all() and s[2:].eq(1).all()
    w = torch.tensor([[-2.0], [3.0]] * 5)
    torch.testing.assert_close(seed_loops.signed_weight(w, s), w.abs() * s)
    assert seed_loops.dales_signs(7, 0.0).eq(1).all()


@pytest.mark.parametrize("beta", [1.0, 5.0])
@pytest.mark.parametrize("scale", [10.0, 100.0])
def test_naive_spike_functions(beta, scale):
    x = torch.tensor([-0.5, -1e-3, 0.0, 1e-3, 0.7], dtype=torch.float64, requires_grad=True)
    s = seed_loops.spike_sigmoid(x, beta)
    assert s.tolist() == [0, 0, 0, 1, 1]
    (g,) = torch.autograd.grad(s.sum(), x)
    sig = torch.sigmoid(beta * x.detach())
    torch.testing.assert_close(g, beta * sig * (1 - sig))
    s = seed_loops.spike_fast_sigmoid(x, scale)
    assert s.tolist() == [0, 0, 0, 1, 1]
    (g,) = torch.autograd.grad(s.sum(), x)
    torch.testing.assert_close(g, 1 / (scale * x.detach().abs() + 1) ** 2)
