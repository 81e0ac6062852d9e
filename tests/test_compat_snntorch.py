"""snnkern.compat.snntorch against snnTorch itself, in float64: ``Leaky`` and ``Synaptic`` with the
same constructor arguments give the same spikes, membranes and currents (to 1e-10) and the same
gradients (to 1e-10) with respect to the input, the initial state and every learnable parameter,
both in the single-step loop and in the whole-sequence fast path; unsupported options are refused
by name; state_dicts load both ways; a small convolutional network converts.

snnTorch's surrogate functions return ``(input_ > 0).float()``: float32 spikes whatever the input
dtype, so every gradient that flows back through one of its spikes is rounded to float32. The
autouse fixture ``spikes_keep_dtype`` makes those three surrogates (atan, fast_sigmoid, sigmoid)
return the spikes in the input's dtype instead: the spike values (0 or 1) and the derivatives are
snnTorch's own; only that rounding goes, so the comparison can be made at float64 precision.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import needs_compiled

snn = pytest.importorskip("snntorch")
ssur = pytest.importorskip("snntorch.surrogate")
sutils = pytest.importorskip("snntorch.utils")

from snnkern.compat import snntorch as compat  # noqa: E402
from snnkern.surrogate import ATan, FastSigmoid, Sigmoid  # noqa: E402

BACKENDS = [pytest.param("compiled", marks=needs_compiled), "reference"]
TOL = dict(rtol=1e-10, atol=1e-10)
T, B, N = 12, 3, 5


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # snnTorch's beta/threshold buffers follow the default dtype
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def spikes_keep_dtype(monkeypatch):
    for cls in (ssur.ATan, ssur.FastSigmoid, ssur.Sigmoid):

        def forward(ctx, input_, param, _forward=cls.forward):
            return _forward(ctx, input_, param).to(input_.dtype)

        monkeypatch.setattr(cls, "forward", staticmethod(forward))


# --- cases -------------------------------------------------------------------------------------
# Each case: constructor arguments (tensors built per layer by calling the factories), the step
# shape, and the initial states passed to the first call ("random": a random one, "below": one
# below the threshold, None: the layer's default).


def per_neuron(lo: float, hi: float, seed: int, shape: tuple[int, ...] = (N,)):
    def make():
        g = torch.Generator().manual_seed(seed)
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    return make


def const(values):
    return lambda: torch.tensor(values)


LEAKY_CASES = {
    "defaults": dict(kw=dict(beta=0.9)),
    "zero-fastsigmoid-learn-all": dict(
        kw=dict(
            beta=per_neuron(0.6, 0.95, 1),
            threshold=0.8,
            reset_mechanism="zero",
            spike_grad=lambda: ssur.fast_sigmoid(slope=10),
            learn_beta=True,
            learn_threshold=True,
        ),
        states=("random",),
    ),
    "none-sigmoid": dict(
        kw=dict(
            beta=0.8, threshold=1.5, reset_mechanism="none", spike_grad=lambda: ssur.sigmoid(5), learn_threshold=True
        )
    ),
    "zero-no-delay-atan": dict(
        kw=dict(
            beta=0.85, reset_mechanism="zero", reset_delay=False, spike_grad=lambda: ssur.atan(3.0), learn_beta=True
        ),
        states=("below",),
    ),
    "zero-no-delay-graded": dict(
        kw=dict(beta=0.9, threshold=0.7, reset_mechanism="zero", reset_delay=False, graded_spikes_factor=2.0)
    ),
    "subtract-learn-graded": dict(
        kw=dict(
            beta=0.9,
            graded_spikes_factor=0.5,
            learn_graded_spikes_factor=True,
            learn_threshold=True,
            learn_beta=True,
        ),
        states=("random",),
    ),
    "beta-clamped": dict(kw=dict(beta=const([1.2, 0.9, -0.1, 0.5, 1.0]), threshold=1.2, learn_beta=True)),
    "hidden-output-zero": dict(kw=dict(beta=0.8, init_hidden=True, output=True, reset_mechanism="zero")),
    "hidden": dict(kw=dict(beta=0.9, init_hidden=True, learn_beta=True)),
    "conv-per-channel": dict(
        kw=dict(
            beta=per_neuron(0.6, 0.95, 2, (3, 1, 1)),
            threshold=per_neuron(0.7, 1.3, 3, (3, 1, 1)),
            reset_mechanism="zero",
            learn_beta=True,
            learn_threshold=True,
        ),
        shape=(B, 3, 2, 2),
        states=("random",),
    ),
}

SYNAPTIC_CASES = {
    "defaults": dict(kw=dict(alpha=0.8, beta=0.9)),
    "zero-fastsigmoid-learn-all": dict(
        kw=dict(
            alpha=per_neuron(0.4, 0.9, 4),
            beta=per_neuron(0.6, 0.95, 5),
            threshold=1.1,
            reset_mechanism="zero",
            spike_grad=lambda: ssur.fast_sigmoid(25),
            learn_alpha=True,
            learn_beta=True,
            learn_threshold=True,
        ),
        states=("random", "random"),
    ),
    "none-sigmoid": dict(
        kw=dict(alpha=0.7, beta=0.8, threshold=2.0, reset_mechanism="none", spike_grad=lambda: ssur.sigmoid(4))
    ),
    "zero-no-delay": dict(
        kw=dict(alpha=0.6, beta=0.9, reset_mechanism="zero", reset_delay=False, learn_beta=True, learn_alpha=True),
        states=("random", "below"),
    ),
    "hidden-output-clamped": dict(
        kw=dict(alpha=const([1.1, 0.5, 0.7, -0.2, 0.9]), beta=0.85, init_hidden=True, output=True, learn_alpha=True)
    ),
    "conv": dict(
        kw=dict(alpha=0.75, beta=per_neuron(0.6, 0.95, 6, (3, 1, 1)), learn_beta=True, threshold=0.9),
        shape=(B, 3, 2, 2),
    ),
}


def build(cls, case: dict, backend: str | None = None):
    kw = {key: (value() if callable(value) else value) for key, value in case["kw"].items()}
    return cls(**kw) if backend is None else cls(**kw, backend=backend)


def inputs(case: dict, synaptic: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = case.get("shape", (B, N))
    x = (
        torch.randn(T, *shape, generator=g) * (0.5 if synaptic else 0.8) + (0.15 if synaptic else 0.35)
    ).requires_grad_()
    theta = case["kw"].get("threshold", 1.0)
    theta = theta() if callable(theta) else torch.as_tensor(theta)
    states = []
    for kind in case.get("states", ()):
        s = torch.randn(shape, generator=g) * 0.8 + 0.3
        if kind == "below":
            s = torch.minimum(s, theta - 0.05)
        states.append(s.requires_grad_())
    return x, states


def run_steps(layer: nn.Module, x: torch.Tensor, states: list[torch.Tensor], synaptic: bool):
    """The step loop: spikes [T, ...] and the state traces ([syn,] mem) [T, ...]."""
    spikes, traces = [], []
    current = list(states) if states else [None] * (2 if synaptic else 1)
    for x_t in x:
        out = layer(x_t) if layer.init_hidden else layer(x_t, *current)
        if isinstance(out, tuple):
            spk, *current = out
        else:
            spk, current = out, ([layer.syn, layer.mem] if synaptic else [layer.mem])
        spikes.append(spk)
        traces.append(current)
    return torch.stack(spikes), [torch.stack(trace) for trace in zip(*traces)]


def run_sequence(layer: nn.Module, x: torch.Tensor, states: list[torch.Tensor]):
    spikes, *traces = layer.sequence(x, *states)
    return spikes, traces


def learnable(layer: nn.Module) -> dict[str, torch.Tensor]:
    return dict(layer.named_parameters())


def gradients(spikes, traces, upstream, wrt):
    loss = (spikes * upstream[0]).sum() + sum((tr * g).sum() for tr, g in zip(traces, upstream[1:]))
    return torch.autograd.grad(loss, wrt, allow_unused=True)


def check(case: dict, cls, synaptic: bool, backend: str) -> None:
    x, states = inputs(case, synaptic)
    peer = build(getattr(snn, cls.__name__), case)
    assert set(learnable(peer)) == set(learnable(build(cls, case, backend)))
    ref_spikes, ref_traces = run_steps(peer, x, states, synaptic)
    assert 0 < ref_spikes.count_nonzero() < ref_spikes.numel(), "a case without spikes tests little"
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(ref_spikes.shape, generator=g) for _ in range(1 + len(ref_traces))]
    names = sorted(learnable(peer))
    ref_grads = gradients(ref_spikes, ref_traces, upstream, [x, *states, *(learnable(peer)[n] for n in names)])
    for mode in ("steps", "sequence"):
        layer = build(cls, case, backend)
        if mode == "steps":
            spikes, traces = run_steps(layer, x, states, synaptic)
        else:
            spikes, traces = run_sequence(layer, x, states)
        assert torch.equal(spikes, ref_spikes.to(spikes.dtype)), mode
        assert len(traces) == len(ref_traces)
        for trace, ref in zip(traces, ref_traces):
            torch.testing.assert_close(trace, ref, **TOL, msg=lambda m, mode=mode: f"{mode}: {m}")
        # The layer keeps the last state as snnTorch does.
        torch.testing.assert_close(layer.mem, peer.mem, **TOL)
        grads = gradients(spikes, traces, upstream, [x, *states, *(learnable(layer)[n] for n in names)])
        for name, grad, ref in zip(["x", *(f"state{i}" for i in range(len(states))), *names], grads, ref_grads):
            torch.testing.assert_close(grad, ref, **TOL, msg=lambda m, name=name, mode=mode: f"{mode} d/d{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(LEAKY_CASES.values()), ids=list(LEAKY_CASES))
def test_leaky_matches_snntorch(case, backend):
    check(case, compat.Leaky, False, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(SYNAPTIC_CASES.values()), ids=list(SYNAPTIC_CASES))
def test_synaptic_matches_snntorch(case, backend):
    check(case, compat.Synaptic, True, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_carried_between_calls(backend):
    """Two sequence calls without passing the state continue from the stored membrane (and its
    graph), as consecutive snnTorch steps do; reset_mem() starts again from zero."""
    case = LEAKY_CASES["zero-fastsigmoid-learn-all"]
    x, _ = inputs(case, False)
    peer, layer = build(snn.Leaky, case), build(compat.Leaky, case, backend)
    ref_spikes, (ref_mem,) = run_steps(peer, torch.cat([x, x]), [], False)
    s1, m1 = layer.sequence(x)
    s2, m2 = layer.sequence(x)
    assert torch.equal(torch.cat([s1, s2]), ref_spikes)
    torch.testing.assert_close(torch.cat([m1, m2]), ref_mem, **TOL)
    (g_ref,) = torch.autograd.grad(ref_mem[-1].sum(), peer.beta)
    (g,) = torch.autograd.grad(m2[-1].sum(), layer.beta)
    torch.testing.assert_close(g, g_ref, **TOL)
    layer.reset_mem()
    s3, _ = layer.sequence(x)
    assert torch.equal(s3, s1)


def test_surrogate_mapping():
    assert compat.surrogate_from_snntorch(None) == ATan(2.0)
    assert compat.surrogate_from_snntorch(ssur.atan(alpha=3.5)) == ATan(3.5)
    assert compat.surrogate_from_snntorch(ssur.fast_sigmoid(slope=25)) == FastSigmoid(25.0)
    assert compat.surrogate_from_snntorch(ssur.sigmoid(slope=7)) == Sigmoid(7.0)
    assert compat.surrogate_from_snntorch(Sigmoid(2.0)) == Sigmoid(2.0)
    assert compat.Leaky(0.9).lif_options()["surrogate"] == ATan(2.0)


REFUSED = [
    (dict(inhibition=True), NotImplementedError, "inhibition"),
    (dict(state_quant=lambda u: u), NotImplementedError, "state_quant"),
    (dict(surrogate_disable=True), NotImplementedError, "surrogate_disable"),
    (dict(spike_grad=ssur.triangular()), NotImplementedError, "spike_grad"),
    (dict(spike_grad=ssur.heaviside()), NotImplementedError, "spike_grad"),
    (dict(spike_grad=ssur.straight_through_estimator()), NotImplementedError, "spike_grad"),
    (dict(spike_grad=ssur.spike_rate_escape()), NotImplementedError, "spike_grad"),
    (dict(spike_grad=lambda u: (u > 0).double()), NotImplementedError, "spike_grad"),
    (dict(spike_grad=ssur.atan(alpha=-1.0)), NotImplementedError, "spike_grad"),
    (dict(reset_delay=False), NotImplementedError, "reset_delay=False with reset_mechanism='subtract'"),
    (dict(reset_mechanism="bogus"), ValueError, "reset_mechanism"),
]


@pytest.mark.parametrize("kwargs, error, match", REFUSED, ids=[m.split()[0] for _, _, m in REFUSED])
@pytest.mark.parametrize("synaptic", [False, True], ids=["leaky", "synaptic"])
def test_unsupported_options_refused(kwargs, error, match, synaptic):
    with pytest.raises(error, match=match):
        compat.Synaptic(0.8, 0.9, **kwargs) if synaptic else compat.Leaky(0.9, **kwargs)


@pytest.mark.parametrize("synaptic", [False, True], ids=["leaky", "synaptic"])
def test_no_delay_zero_reset_refuses_a_start_above_threshold(synaptic):
    layer = compat.Synaptic(0.8, 0.9, reset_mechanism="zero", reset_delay=False) if synaptic else None
    layer = layer or compat.Leaky(0.9, reset_mechanism="zero", reset_delay=False)
    x = torch.zeros(B, N)
    mem = torch.full((B, N), 1.5)
    with pytest.raises(ValueError, match="reset_delay=False"):
        layer(x, torch.zeros(B, N), mem) if synaptic else layer(x, mem)


def test_init_hidden_refuses_a_state_argument():
    layer = compat.Leaky(0.9, init_hidden=True)
    with pytest.raises(TypeError, match="init_hidden"):
        layer(torch.zeros(B, N), torch.zeros(B, N))
    with pytest.raises(TypeError, match="init_hidden"):
        layer.sequence(torch.zeros(T, B, N), torch.zeros(B, N))


@pytest.mark.parametrize("synaptic", [False, True], ids=["leaky", "synaptic"])
def test_state_dict_loads_both_ways(synaptic):
    kw = dict(learn_beta=True, learn_threshold=True, reset_mechanism="zero")
    if synaptic:
        peer, layer = snn.Synaptic(0.7, 0.8, learn_alpha=True, **kw), compat.Synaptic(0.5, 0.6, learn_alpha=True, **kw)
    else:
        peer, layer = snn.Leaky(0.8, threshold=1.3, **kw), compat.Leaky(0.6, **kw)
    assert list(peer.state_dict()) == list(layer.state_dict())
    layer.load_state_dict(peer.state_dict())
    for key, value in peer.state_dict().items():
        assert torch.equal(layer.state_dict()[key], value), key
    with torch.no_grad():
        layer.beta.fill_(0.3)
    peer.load_state_dict(layer.state_dict())
    assert torch.equal(peer.beta, layer.beta)


def test_snntorch_helpers_see_compat_layers():
    """isinstance and snntorch.utils.reset work on the compat layers (they derive from snnTorch's)."""
    net = nn.Sequential(
        nn.Linear(4, N), compat.Leaky(0.9, init_hidden=True), compat.Synaptic(0.8, 0.9, init_hidden=True)
    )
    assert isinstance(net[1], snn.Leaky) and isinstance(net[2], snn.Synaptic)
    net(torch.randn(B, 4) + 2)
    assert net[1].mem.abs().sum() > 0
    sutils.reset(net)
    assert net[1].mem.abs().sum() == 0 and net[2].syn.abs().sum() == 0


def convert(model: nn.Module, backend: str) -> nn.Module:
    """snnkern.compat.convert where it exists, else this module's converters() applied by hand."""
    try:
        from snnkern.compat import convert as snnkern_convert
    except ImportError:
        snnkern_convert = None
    if snnkern_convert is not None:
        model = snnkern_convert(model)
    else:
        table = compat.converters()

        def swap(module: nn.Module) -> None:
            for name, child in module.named_children():
                if type(child) in table:
                    setattr(module, name, table[type(child)](child))
                else:
                    swap(child)

        swap(model)
    for module in model.modules():
        if isinstance(module, (compat.Leaky, compat.Synaptic)):
            module.backend = backend
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_convert_conv_network(backend):
    torch.manual_seed(3)
    peer = nn.Sequential(
        nn.Conv2d(2, 4, 3),
        snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero", learn_beta=True),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
        snn.Synaptic(alpha=0.7, beta=torch.full((5,), 0.9), init_hidden=True, output=True, learn_threshold=True),
    )
    model = convert(copy.deepcopy(peer), backend)
    assert isinstance(model[1], compat.Leaky) and isinstance(model[4], compat.Synaptic)
    x = torch.randn(T, B, 2, 6, 6) * 1.5 + 0.5

    def run(net: nn.Module) -> tuple[torch.Tensor, ...]:
        outs = [net(x_t) for x_t in x]
        return tuple(torch.stack(o) for o in zip(*outs))

    ref, out = run(peer), run(model)
    assert 0 < ref[0].count_nonzero() < ref[0].numel()
    assert torch.equal(out[0], ref[0])
    for a, b in zip(out[1:], ref[1:]):
        torch.testing.assert_close(a, b, **TOL)
    g = torch.randn(ref[2].shape)
    ref_grads = torch.autograd.grad((ref[2] * g).sum() + ref[0].sum(), list(peer.parameters()))
    grads = torch.autograd.grad((out[2] * g).sum() + out[0].sum(), list(model.parameters()))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
def test_converters_table():
    table = compat.converters()
    assert set(table) == {snn.Leaky, snn.Synaptic}
    peer = snn.Leaky(0.7, learn_beta=True, init_hidden=True, reset_mechanism="zero")
    peer(torch.ones(2, 3))  # a hidden state to carry over
    new = table[snn.Leaky](peer)
    assert type(new) is compat.Leaky and isinstance(new.beta, nn.Parameter)
    assert new.beta is not peer.beta and torch.equal(new.beta, peer.beta)
    assert torch.equal(new.mem, peer.mem) and new.init_hidden and new.reset_mechanism == "zero"
    assert table[snn.Leaky](new) is new  # already snnkern's
    synaptic = compat.Synaptic(0.5, 0.6)
    assert table[snn.Synaptic](synaptic) is synaptic

    class Custom(snn.Leaky):
        pass

    with pytest.raises(NotImplementedError, match="Custom"):
        table[snn.Leaky](Custom(0.9))
    with pytest.raises(NotImplementedError, match="inhibition"):
        table[snn.Leaky](snn.Leaky(0.9, inhibition=True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["defaults", "zero-fastsigmoid-learn-all", "zero-no-delay-atan"])
def test_float32_like_snntorch(case, backend):
    """In float32 (snnTorch's usual dtype, its buffers float32 too) the layers run without a cast
    in the way: same spikes, membranes to float32 rounding."""
    torch.set_default_dtype(torch.float32)  # the float64 fixture restores its own default afterwards
    case = LEAKY_CASES[case]
    x, states = inputs(case, False)
    x, states = x.detach().float(), [s.detach().float() for s in states]
    peer, layer = build(snn.Leaky, case), build(compat.Leaky, case, backend)
    ref_spikes, (ref_mem,) = run_steps(peer, x, states, False)
    spikes, (mem,) = run_steps(layer, x, states, False)
    seq_spikes, seq_mem = build(compat.Leaky, case, backend).sequence(x, *states)
    for s, m in ((spikes, mem), (seq_spikes, seq_mem)):
        assert s.dtype == m.dtype == torch.float32
        assert torch.equal(s, ref_spikes)
        torch.testing.assert_close(m, ref_mem, rtol=1e-5, atol=1e-5)
