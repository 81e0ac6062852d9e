"""The ops and layers under CPU autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``).

snnkern registers an autocast rule for its ops: on the CPU, whose kernels are float32/float64,
the sequences (and the recurrent weight) are cast to float32 and the decays and the state kept
in float32; float64 calls are left alone. Under autocast the layers' projections (nn.Linear) run
in bfloat16, so a layer's output is the float32 scan of the bfloat16 projection, cast to
float32: exactly what the tests below compose by hand. CUDA autocast (float16/bfloat16
sequences) is in test_cuda_only.py.
"""

import pytest
import torch

import snnkern
from helpers import TOL, at, make_case, make_recurrent_weight, spike_rate, upstream_like
from snnkern.nn import LIF, LeakyReadout, RecurrentLIF

BF16, F32 = torch.bfloat16, torch.float32
IN, OUT = 12, 16

LAYERS = {
    "lif": lambda **kw: LIF(IN, OUT, alpha=0.9, alpha_syn=0.8, reset="subtract", learn_alpha=True, **kw),
    "recurrent": lambda **kw: RecurrentLIF(IN, OUT, alpha=0.9, alpha_syn=0.8, learn_alpha=True, **kw),
    "readout": lambda **kw: LeakyReadout(IN, OUT, alpha=0.9, alpha_syn=0.8, learn_alpha=True, **kw),
    "lif_sparse": lambda **kw: LIF(IN, OUT, alpha=0.9, sparse_input=True, **kw),
}

# The CPU kernels and the emulated CUDA lanes (the autocast rule is the same for both: float32).
on_cpu = at("cpu", "emulated")


def _layer(name, dtype=F32):
    torch.manual_seed(7)
    layer = LAYERS[name](dtype=dtype)
    with torch.no_grad():
        layer.linear.weight.mul_(3.0)  # a livelier spike rate
    return layer


def _input(dtype=F32, seed=8):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 20, IN, generator=g) < 0.3).to(dtype)


def _by_hand(layer, x):
    """The layer's forward as autocast runs it: the projection under autocast (bfloat16 for
    nn.Linear; float32 for sparse_input, whose spike products fall under snnkern's rule), then the
    scan in float32 outside it."""
    with torch.autocast("cpu", dtype=BF16):
        current = layer.project(x)
    assert current.dtype == (F32 if layer.sparse_input else BF16)
    current = current.float()
    a, a_syn = layer._decays()
    if isinstance(layer, RecurrentLIF):
        return snnkern.recurrent_lif(
            current,
            layer.recurrent_weight,
            a,
            alpha_syn=a_syn,
            threshold=layer.threshold,
            reset=layer.reset,
            detach_reset=layer.detach_reset,
            ordering=layer.ordering,
            surrogate=layer.surrogate,
        ).spikes
    if isinstance(layer, LIF):
        return layer.scan(current).spikes
    return snnkern.leaky(current, a, alpha_syn=a_syn).membrane


def _run(fn, layer, x):
    out = fn(layer, x)
    params = dict(layer.named_parameters())
    grads = torch.autograd.grad((out * upstream_like(out, 9)).sum(), list(params.values()))
    return out.detach(), dict(zip(params, grads))


@on_cpu
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_under_cpu_autocast(name, where):
    """Forward and backward under bfloat16 autocast: float32 outputs and gradients, equal to the
    float32 scan of the autocast (bfloat16) projection composed by hand."""
    layer = _layer(name)
    x = _input()

    def autocast_forward(layer, x):
        with torch.autocast("cpu", dtype=BF16):
            return layer(x)

    out, grads = _run(autocast_forward, layer, x)
    want_out, want_grads = _run(_by_hand, layer, x)
    assert out.dtype == F32
    if name == "readout":
        torch.testing.assert_close(out, want_out, rtol=0, atol=0)
    else:
        assert 0.0 < spike_rate(out) < 1.0
        assert torch.equal(out, want_out)
    assert grads.keys() == want_grads.keys() and "linear.weight" in grads
    for key, g in grads.items():
        assert g.dtype == F32, key
        assert g.abs().max() > 0, f"{key}: zero gradient, the test checks nothing"
        torch.testing.assert_close(g, want_grads[key], **TOL[F32], msg=lambda m, key=key: f"{key}: {m}")


@on_cpu
@pytest.mark.parametrize("name", ["lif", "recurrent", "readout"])
def test_float64_layer_untouched_by_autocast(name, where):
    """float64 layers and inputs: autocast leaves the projection and the scan in float64, so the
    results are those without autocast, bit for bit."""
    layer = _layer(name, torch.float64)
    x = _input(torch.float64)
    without, grads_without = _run(lambda layer, x: layer(x), layer, x)

    def autocast_forward(layer, x):
        with torch.autocast("cpu", dtype=BF16):
            return layer(x)

    with_autocast, grads_with = _run(autocast_forward, layer, x)
    assert with_autocast.dtype == torch.float64
    assert torch.equal(with_autocast, without)
    for key in grads_without:
        assert torch.equal(grads_with[key], grads_without[key]), key


@on_cpu
def test_bfloat16_ops_under_cpu_autocast(where):
    """Without autocast the CPU kernels refuse bfloat16 (test_bad_input); under CPU autocast the
    rule casts the sequences and the recurrent weight to float32 first, so the ops run and equal
    the float32 call on the same (exactly upcast) values; float32 decays and state stay so."""
    case = make_case(2, 9, 6, F32, syn=True, seed=4, requires_grad=False)
    x = case.x.to(BF16)
    weight = make_recurrent_weight(6, F32, requires_grad=False).to(BF16)
    with torch.autocast("cpu", dtype=BF16):
        lif = snnkern.lif(x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, return_membrane=True)
        leaky = snnkern.leaky(x, case.alpha, state=case.state)
        rec = snnkern.recurrent_lif(x, weight, case.alpha, state=case.state, return_membrane=True)
        lin = snnkern.spike_linear(x, weight)
    want_lif = snnkern.lif(x.float(), case.alpha, alpha_syn=case.alpha_syn, state=case.state, return_membrane=True)
    want_leaky = snnkern.leaky(x.float(), case.alpha, state=case.state)
    want_rec = snnkern.recurrent_lif(x.float(), weight.float(), case.alpha, state=case.state, return_membrane=True)
    want_lin = snnkern.spike_linear(x.float(), weight.float())
    for got, want in ((lif, want_lif), (leaky, want_leaky), (rec, want_rec), ([lin], [want_lin])):
        for g, w in zip(got, want):
            assert g.dtype == F32
            assert torch.equal(g, w)


@at("cpu")
def test_torch_compile_under_cpu_autocast(where):
    """torch.compile traces the autocast rule (aot_eager): the compiled layer under autocast gives
    the eager results."""
    torch._dynamo.reset()
    try:
        eager, to_compile = _layer("lif"), _layer("lif")
        compiled = torch.compile(to_compile, fullgraph=True, backend="aot_eager")
        x = _input()
        results = []
        for model in (eager, compiled):

            def forward(layer, x, model=model):
                with torch.autocast("cpu", dtype=BF16):
                    return model(x)

            results.append(_run(forward, model, x))
        (out_e, grads_e), (out_c, grads_c) = results
        assert out_c.dtype == F32 and torch.equal(out_c, out_e)
        assert [k.removeprefix("_orig_mod.") for k in grads_c] == list(grads_e)
        for key, gc, ge in zip(grads_e, grads_c.values(), grads_e.values()):
            torch.testing.assert_close(gc, ge, **TOL[F32], msg=lambda m, key=key: f"{key}: {m}")
    finally:
        torch._dynamo.reset()
