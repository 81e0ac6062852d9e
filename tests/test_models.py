"""The snnkern models reproduce the seeds' naive loops (snnkern.seed_loops): same weights and
inputs give the same outputs and the same weight gradients."""

import math

import pytest
import torch

from snnkern import seed_loops
from snnkern.models import IPDSNN, IPDMembraneOnly, SHDRecurrentSNN, dales_ipd_snn
from snnkern.nn import LIF, DaleLinear, LeakyReadout, RecurrentLIF

DT = torch.float64
TOL = dict(rtol=1e-9, atol=1e-10)


def _spikes(b, t, n, p=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, n, generator=g, dtype=DT) < p).to(DT)


def _grads(loss, params):
    return torch.autograd.grad(loss, params)


def _ipd_loss(out, labels):
    return torch.nn.functional.nll_loss(torch.log_softmax(out.mean(1), 1), labels)


def test_membrane_only_matches_seed000():
    x = _spikes(4, 30, 20)
    labels = torch.tensor([0, 1, 2, 3])
    model = IPDMembraneOnly(input_size=20, num_classes=5, tau=20e-3).to(DT)
    W = model.readout.linear.weight.detach().T.clone().requires_grad_(True)
    ref = seed_loops.seed000_membrane_only(x, W, math.exp(-1e-3 / 20e-3))
    out = model(x)
    torch.testing.assert_close(out, ref, **TOL)
    (gw,) = _grads(_ipd_loss(out, labels), [model.readout.linear.weight])
    (gref,) = _grads(_ipd_loss(ref, labels), [W])
    torch.testing.assert_close(gw.T, gref, **TOL)


def test_ipd_snn_matches_seed000():
    x = _spikes(6, 40, 24, p=0.3)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    model = IPDSNN(input_size=24, hidden=16, num_classes=5, tau=20e-3).to(DT)
    with torch.no_grad():  # larger weights so that hidden neurons spike
        model.hidden.linear.weight.mul_(6.0)
    W1 = model.hidden.linear.weight.detach().T.clone().requires_grad_(True)
    W2 = model.readout.linear.weight.detach().T.clone().requires_grad_(True)
    ref = seed_loops.seed000_snn(x, W1, W2, math.exp(-1e-3 / 20e-3))
    out, hidden = model(x, return_hidden=True)
    assert hidden.sum() > 0
    torch.testing.assert_close(out, ref, **TOL)
    g = _grads(_ipd_loss(out, labels), [model.hidden.linear.weight, model.readout.linear.weight])
    gref = _grads(_ipd_loss(ref, labels), [W1, W2])
    torch.testing.assert_close(g[0].T, gref[0], **TOL)
    torch.testing.assert_close(g[1].T, gref[1], **TOL)


@pytest.mark.parametrize("ie_ratio", [0.5, 0.1])
def test_dales_model_matches_seed001(ie_ratio):
    x = _spikes(5, 30, 20, p=0.3, seed=1)
    labels = torch.tensor([0, 1, 2, 3, 4])
    model = dales_ipd_snn(input_size=20, hidden=10, num_classes=5, ie_ratio=ie_ratio).to(DT)
    with torch.no_grad():
        model.hidden.linear.weight.mul_(8.0)
    w1 = model.hidden.linear.weight.detach().T.clone().requires_grad_(True)
    w2 = model.readout.linear.weight.detach().T.clone().requires_grad_(True)
    signs = (seed_loops.dales_signs(20, ie_ratio, dtype=DT), seed_loops.dales_signs(10, ie_ratio, dtype=DT))
    ref = seed_loops.seed001_snn(x, w1, w2, signs, math.exp(-1e-3 / 5e-3))
    out = model(x)
    torch.testing.assert_close(out, ref, **TOL)
    g = _grads(_ipd_loss(out, labels), [model.hidden.linear.weight, model.readout.linear.weight])
    gref = _grads(_ipd_loss(ref, labels), [w1, w2])
    torch.testing.assert_close(g[0].T, gref[0], **TOL)
    torch.testing.assert_close(g[1].T, gref[1], **TOL)


def test_shd_model_matches_seed004():
    x = _spikes(4, 25, 30, p=0.2, seed=2)
    labels = torch.tensor([0, 1, 2, 3])
    model = SHDRecurrentSNN(input_size=30, hidden=12, num_classes=4).to(DT)
    with torch.no_grad():
        model.hidden.linear.weight.mul_(8.0)
    w1 = model.hidden.linear.weight.detach().T.clone().requires_grad_(True)
    v1 = model.hidden.recurrent_weight.detach().T.clone().requires_grad_(True)
    w2 = model.readout.linear.weight.detach().T.clone().requires_grad_(True)
    alpha, beta = math.exp(-1e-3 / 5e-3), math.exp(-1e-3 / 10e-3)
    ref, (_, spk_ref) = seed_loops.seed004_snn(x, w1, w2, v1, alpha, beta)
    out, spk = model(x)
    assert spk.sum() > 0
    torch.testing.assert_close(spk, spk_ref, **TOL)
    torch.testing.assert_close(out, ref, **TOL)

    def loss(o):
        return torch.nn.functional.cross_entropy(o.max(1).values, labels)

    g = _grads(loss(out), [model.hidden.linear.weight, model.hidden.recurrent_weight, model.readout.linear.weight])
    gref = _grads(loss(ref), [w1, v1, w2])
    for a, b in zip(g, gref):
        torch.testing.assert_close(a.T, b, **TOL)


def test_layers_shapes_and_state():
    x = _spikes(3, 10, 8)
    lif = LIF(8, 5, tau=10e-3, dt=1e-3, return_state=True).to(DT)
    s, state = lif(x)
    assert s.shape == (3, 10, 5) and state.shape == (3, 3, 5)
    # continuing from the state equals one long call
    s1, st1 = lif(x[:, :4])
    s2, _ = lif(x[:, 4:], st1)
    torch.testing.assert_close(torch.cat([s1, s2], 1), s)
    ro = LeakyReadout(8, 4, alpha=0.9, alpha_syn=0.8).to(DT)
    assert ro(x).shape == (3, 10, 4)
    rec = RecurrentLIF(8, 6, alpha=0.9, alpha_syn=0.8, return_state=True).to(DT)
    out, (st, last) = rec(x)
    assert out.shape == (3, 10, 6) and st.shape == (3, 3, 6) and last.shape == (3, 6)


def test_learnable_alpha_gets_gradient():
    x = _spikes(2, 12, 6, p=0.5)
    lif = LIF(6, 4, alpha=0.9, learn_alpha=True, ordering="delayed").to(DT)
    with torch.no_grad():
        lif.linear.weight.mul_(5.0)
    lif(x).sum().backward()
    assert lif.alpha.grad is not None and lif.alpha.grad.shape == (4,)
    with pytest.raises(ValueError, match="not both"):
        LIF(6, 4, alpha=0.9, tau=0.01)


def test_dale_linear_signs():
    d = DaleLinear(10, 3, ie_ratio=0.3)
    w = d.effective_weight()
    assert (w[:, :3] <= 0).all() and (w[:, 3:] >= 0).all()
    torch.testing.assert_close(d.signs.view(-1, 1), seed_loops.dales_signs(10, 0.3))
