"""snnkern.compat.spikingjelly.LIFNode against SpikingJelly's own LIFNode, in float64: the same
spikes, membrane (``v``, ``v_seq``) to 1e-10 and gradients to 1e-10, in both step modes, over
consecutive calls (state carried) and after ``reset``; unsupported options refused by name; a
small multi-step convolutional network converted with the module's ``converters()``."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from helpers import needs_compiled

# SpikingJelly 2 imports loguru in its neuron package: skip cleanly where either is missing.
neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
sj_layer = pytest.importorskip("spikingjelly.activation_based.layer")
sj_functional = pytest.importorskip("spikingjelly.activation_based.functional")

from snnkern.compat import spikingjelly as compat  # noqa: E402
from snnkern.surrogate import ATan, FastSigmoid, Sigmoid, Triangle  # noqa: E402

BACKENDS = [pytest.param("compiled", marks=needs_compiled), "reference"]
TOL = dict(rtol=1e-10, atol=1e-10)

# Constructor arguments shared by the peer and the compat node (the surrogate built per test:
# SpikingJelly's surrogates are modules, one per node).
CASES = {
    "defaults": dict(),
    "soft-atan": dict(tau=3.5, v_reset=None, surrogate=("ATan", 2.5)),
    "noinput-decay-detach": dict(
        tau=4.0, decay_input=False, v_threshold=0.8, v_reset=-0.3, detach_reset=True, surrogate=("Sigmoid", 3.0)
    ),
    "reset-value-superspike": dict(tau=2.5, v_threshold=1.3, v_reset=0.2, surrogate=("SuperSpike", 1.0)),
    "soft-detach-quadratic": dict(
        tau=5.0, v_threshold=0.5, v_reset=None, detach_reset=True, surrogate=("PiecewiseQuadratic", 2.0)
    ),
}


def peer_kwargs(case: dict) -> dict:
    kw = dict(case)
    name = kw.pop("surrogate", None)
    if name is not None:
        kw["surrogate_function"] = getattr(sj_surrogate, name[0])(alpha=name[1])
    return kw


def pair(case: dict, step_mode: str, backend: str, store_v_seq: bool = True):
    peer = neuron.LIFNode(step_mode=step_mode, store_v_seq=store_v_seq, **peer_kwargs(case))
    node = compat.LIFNode(step_mode=step_mode, store_v_seq=store_v_seq, backend=backend, **peer_kwargs(case))
    return peer, node


def inputs(t: int, shape: tuple[int, ...], case: dict, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = case.get("tau", 2.0) if case.get("decay_input", True) else 1.0
    x = (torch.randn(t, *shape, generator=g, dtype=torch.float64) * 0.8 + 0.45) * scale
    return x.requires_grad_()


def run(node: nn.Module, x: torch.Tensor, step_mode: str) -> torch.Tensor:
    if step_mode == "m":
        return node(x)
    return torch.stack([node(x_t) for x_t in x])


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_matches_spikingjelly(case, step_mode, backend):
    peer, node = pair(case, step_mode, backend)
    outs = []
    # Two calls carry the state (and its graph) between them; a third runs after reset().
    for call, (t, shape) in enumerate([((6, (3, 2, 4))), ((4, (3, 2, 4))), ((5, (3, 2, 4)))]):
        if call == 2:
            peer.reset()
            node.reset()
            assert node.v == peer.v and node.v_seq is None and peer.v_seq is None
        x = inputs(t, shape, case, seed=call)
        x_peer, x_node = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
        s_peer, s_node = run(peer, x_peer, step_mode), run(node, x_node, step_mode)
        assert s_node.dtype == s_peer.dtype and s_node.shape == s_peer.shape
        assert torch.equal(s_node, s_peer)
        assert 0 < s_peer.mean() < 1, "the case should spike sometimes"
        close(node.v, peer.v)
        close(node.v_seq, peer.v_seq)
        outs.append((x_peer, x_node, s_peer, s_node, peer.v, node.v, peer.v_seq, node.v_seq))
    # One backward through all calls: spikes, v_seq and the final v with random upstream gradients.
    g = torch.Generator().manual_seed(7)
    loss_peer = loss_node = 0.0
    for _, _, s_peer, s_node, v_peer, v_node, q_peer, q_node in outs:
        for a, b in ((s_peer, s_node), (v_peer, v_node), (q_peer, q_node)):
            w = torch.randn(a.shape, generator=g, dtype=torch.float64)
            loss_peer = loss_peer + (a * w).sum()
            loss_node = loss_node + (b * w).sum()
    leaves_peer = [o[0] for o in outs]
    leaves_node = [o[1] for o in outs]
    for a, b in zip(torch.autograd.grad(loss_peer, leaves_peer), torch.autograd.grad(loss_node, leaves_node)):
        close(b, a)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_without_v_seq_and_shape_change(step_mode, backend):
    """store_v_seq=False leaves v_seq None; a new input shape restarts from v_reset, as in SpikingJelly."""
    case = CASES["noinput-decay-detach"]
    peer, node = pair(case, step_mode, backend, store_v_seq=False)
    for seed, shape in enumerate([(3, 5), (3, 5), (2, 5), (7,)]):
        x = inputs(4, shape, case, seed)
        s_peer, s_node = run(peer, x, step_mode), run(node, x, step_mode)
        assert torch.equal(s_node, s_peer)
        close(node.v, peer.v)
        assert node.v_seq is None and peer.v_seq is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_spikingjelly_network_helpers(backend):
    """SpikingJelly's reset_net, detach_net and set_step_mode drive the compat node."""
    net = nn.Sequential(nn.Linear(3, 4).double(), compat.LIFNode(backend=backend))
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    sj_functional.set_step_mode(net, "m")
    assert net[1].step_mode == "m"
    net(x)
    assert isinstance(net[1].v, torch.Tensor) and net[1].v.requires_grad
    sj_functional.detach_net(net)
    assert not net[1].v.requires_grad
    sj_functional.reset_net(net)
    assert net[1].v == 0.0


def test_surrogate_mapping():
    s = sj_surrogate
    assert compat.surrogate_from_spikingjelly(s.Sigmoid(alpha=3.0)) == Sigmoid(3.0)
    assert compat.surrogate_from_spikingjelly(s.ATan(alpha=1.5)) == ATan(1.5)
    assert compat.surrogate_from_spikingjelly(s.SuperSpike(alpha=1.0)) == FastSigmoid(1.0)
    assert compat.surrogate_from_spikingjelly(s.PiecewiseQuadratic(alpha=4.0), v_threshold=0.25) == Triangle(4.0)
    assert compat.surrogate_from_spikingjelly(None) == Sigmoid(4.0)  # SpikingJelly's default Sigmoid()
    assert compat.surrogate_from_spikingjelly(ATan(0.5)) == ATan(0.5)
    # The derivatives agree point by point with SpikingJelly's backward.
    y = torch.linspace(-2, 2, 101, dtype=torch.float64)
    for peer, theta in ((s.Sigmoid(alpha=3.0), 1.0), (s.ATan(alpha=1.5), 1.0), (s.SuperSpike(alpha=1.0), 1.0)) + (
        (s.PiecewiseQuadratic(alpha=2.0), 0.5),
    ):
        yy = y.clone().requires_grad_()
        (grad,) = torch.autograd.grad(peer(yy).sum(), yy)
        close(compat.surrogate_from_spikingjelly(peer, theta).derivative(y, theta), grad)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(surrogate_function=sj_surrogate.Erf()), NotImplementedError, "Erf"),
        (dict(surrogate_function=sj_surrogate.PiecewiseExp()), NotImplementedError, "PiecewiseExp"),
        (dict(surrogate_function=sj_surrogate.Sigmoid(spiking=False)), NotImplementedError, "spiking=False"),
        (dict(surrogate_function=sj_surrogate.SuperSpike(alpha=2.0)), NotImplementedError, "SuperSpike"),
        (
            dict(surrogate_function=sj_surrogate.PiecewiseQuadratic(alpha=1.0), v_threshold=2.0),
            NotImplementedError,
            "PiecewiseQuadratic",
        ),
        (dict(surrogate_function=lambda y: (y >= 0).double()), NotImplementedError, "surrogate_function"),
        (dict(tau=1.0), ValueError, "tau"),
        (dict(v_reset=math.nan), ValueError, "v_reset"),
        (dict(step_mode="x"), ValueError, "step_mode"),
        (dict(backend="cuda"), ValueError, "backend"),
    ],
)
def test_unsupported_options_raise(kwargs, error, match):
    """Options snnkern cannot express raise NotImplementedError, invalid values ValueError, by name."""
    with pytest.raises(error, match=match):
        compat.LIFNode(**kwargs)


def test_peer_backend_names_mean_default():
    assert compat.LIFNode(backend="torch").backend is None
    assert compat.LIFNode(backend="cupy").backend is None
    assert compat.LIFNode(backend="reference").backend == "reference"


def test_state_moves_with_the_module():
    node = compat.LIFNode(step_mode="m")
    node(torch.randn(3, 2, 4))
    assert node.v.dtype == torch.float32
    node.double()
    assert node.v.dtype == torch.float64


# --- conversion -------------------------------------------------------------------------------


def replace_neurons(model: nn.Module) -> nn.Module:
    """snnkern.compat.convert where the lead's package has it; else the same with converters()."""
    try:
        from snnkern.compat import convert
    except ImportError:
        convert = None
    if convert is not None:
        return convert(model)
    table = compat.converters()
    for name, child in model.named_children():
        if type(child) in table:
            setattr(model, name, table[type(child)](child))
        else:
            replace_neurons(child)
    return model


def conv_net(step_mode: str) -> nn.Module:
    torch.manual_seed(3)
    lif = dict(tau=2.0, v_threshold=0.6, surrogate_function=sj_surrogate.ATan(2.0))
    if step_mode == "m":
        net = nn.Sequential(
            sj_layer.SeqToANNContainer(nn.Conv2d(1, 4, 3)),
            neuron.LIFNode(step_mode="m", **lif),
            sj_layer.Flatten(step_mode="m"),
            sj_layer.SeqToANNContainer(nn.Linear(4 * 4 * 4, 5)),
            neuron.LIFNode(step_mode="m", v_reset=None, detach_reset=True, **lif),
        )
    else:
        net = nn.Sequential(
            nn.Conv2d(1, 4, 3),
            neuron.LIFNode(**lif),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 5),
            neuron.LIFNode(v_reset=None, detach_reset=True, **lif),
        )
    conv, linear = (m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    with torch.no_grad():  # weights that make both layers spike now and then
        conv.weight.uniform_(-0.1, 0.3)
        linear.weight.uniform_(-0.15, 0.3)
    return net.double()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_convert_conv_net(step_mode, backend):
    peer = conv_net(step_mode)
    converted = replace_neurons(copy.deepcopy(peer))
    for m in converted.modules():
        if isinstance(m, compat.LIFNode):
            m.backend = backend
    assert sum(isinstance(m, compat.LIFNode) for m in converted.modules()) == 2
    assert not any(isinstance(m, neuron.LIFNode) for m in converted.modules())
    x = torch.rand(6, 3, 1, 6, 6, dtype=torch.float64) * 2.5
    out_peer, out_conv = run(peer, x, step_mode), run(converted, x, step_mode)
    assert torch.equal(out_conv, out_peer) and 0 < out_peer.mean() < 1
    g = torch.randn(out_peer.shape, dtype=torch.float64)
    grads_peer = torch.autograd.grad((out_peer * g).sum(), list(peer.parameters()))
    grads_conv = torch.autograd.grad((out_conv * g).sum(), list(converted.parameters()))
    for a, b in zip(grads_peer, grads_conv):
        close(b, a)


def test_converter_copies_options_and_state():
    peer = neuron.LIFNode(tau=3.0, v_reset=None, detach_reset=True, step_mode="m", store_v_seq=True)
    peer(torch.randn(4, 2, 3, dtype=torch.float64))
    node = compat.converters()[neuron.LIFNode](peer)
    assert (node.tau, node.v_reset, node.detach_reset, node.step_mode, node.store_v_seq) == (3.0, None, True, "m", True)
    assert node.v is peer.v and node.v_seq is peer.v_seq


def test_converter_refuses_subclasses():
    class Custom(neuron.LIFNode):
        pass

    with pytest.raises(TypeError, match="Custom"):
        compat.converters()[neuron.LIFNode](Custom())


def test_positional_arguments_in_spikingjelly_order():
    args = (3.0, False, 0.9, None, sj_surrogate.ATan(alpha=1.5), True, "m", True)
    peer, node = neuron.LIFNode(*args), compat.LIFNode(*args)
    names = ("tau", "decay_input", "v_threshold", "v_reset", "surrogate_function", "detach_reset", "step_mode")
    assert all(getattr(node, n) == getattr(peer, n) for n in names) and node.store_v_seq == peer.store_v_seq
