"""snnkern.compat.norse against Norse itself, in float64: ``LIFBoxCell``, ``LIFCell``, ``LIF``,
``LIFRecurrentCell`` and ``LIFRecurrent`` with the same parameters give the same spikes, the same
states (``v``, ``i``, ``z``; every step's with ``record_states``) to 1e-10 and the same gradients to
1e-10 with respect to the input, the initial state, the weights and learnable parameters;
``LIFBox`` (a snnkern extension) equals a loop of Norse's ``LIFBoxCell``; unsupported parameters
are refused by name; small networks in ``norse.torch.SequentialState`` convert.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import needs_compiled

norse = pytest.importorskip("norse.torch")
lif_fn = pytest.importorskip("norse.torch.functional.lif")
box_fn = pytest.importorskip("norse.torch.functional.lif_box")
reset_fn = pytest.importorskip("norse.torch.functional.reset")

from snnkern.compat import norse as compat  # noqa: E402
from snnkern.surrogate import FastSigmoid, Triangle  # noqa: E402

LIFParameters = lif_fn.LIFParameters
LIFBoxParameters = box_fn.LIFBoxParameters

BACKENDS = [pytest.param("compiled", marks=needs_compiled), "reference"]
TOL = dict(rtol=1e-10, atol=1e-10)
T, B, N = 16, 3, 5


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def rand(shape, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * (hi - lo) + lo


# --- cases -------------------------------------------------------------------------------------
# "p": a function building the parameters (fresh tensors per call, learnable ones as leaves
# that require grad), "dt", the input's scale and shift, and "state": whether the first call gets
# a random initial state.

LIF_CASES = {
    # Norse's default parameters: float32 tensors, created when Norse is imported.
    "defaults": dict(p=lambda: LIFParameters(), scale=(4.0, 4.0)),
    "leak-reset-learnable": dict(
        p=lambda: LIFParameters(
            tau_syn_inv=torch.tensor(120.0, requires_grad=True),
            tau_mem_inv=rand(N, 80.0, 160.0, 1).requires_grad_(),
            v_leak=torch.tensor(0.2),
            v_th=rand(N, 0.6, 1.4, 2).requires_grad_(),
            v_reset=torch.tensor(-0.3),
        ),
        scale=(5.0, 5.0),
        state=True,
    ),
    "triangle-dt": dict(p=lambda: LIFParameters(method="triangle", alpha=torch.tensor(0.5)), dt=5e-4, scale=(6.0, 8.0)),
    "bio": dict(
        p=lambda: LIFParameters(
            tau_syn_inv=torch.tensor(0.5),
            tau_mem_inv=torch.tensor(0.05),
            v_leak=torch.tensor(-65.0),
            v_th=torch.tensor(-50.0),
            v_reset=torch.tensor(-65.0),
        ),
        dt=1.0,
        scale=(10.0, 12.0),
        state=True,
    ),
}

BOX_CASES = {
    "defaults": dict(p=lambda: LIFBoxParameters(), scale=(6.0, 8.0)),
    "subtract-leak-learnable": dict(
        p=lambda: LIFBoxParameters(
            tau_mem_inv=rand(N, 80.0, 160.0, 3).requires_grad_(),
            v_leak=torch.tensor(0.1),
            v_th=torch.tensor(0.9, requires_grad=True),
            reset_method=reset_fn.reset_subtract,
        ),
        scale=(8.0, 10.0),
        state=True,
    ),
    "reset-value": dict(
        p=lambda: LIFBoxParameters(v_reset=torch.tensor(-0.2), v_leak=torch.tensor(-0.1), v_th=torch.tensor(0.5)),
        scale=(5.0, 5.0),
    ),
}

RECURRENT_CASES = {
    "defaults": dict(p=lambda: LIFParameters(), scale=(3.0, 2.0), kw=dict()),
    "autapses-learnable-state": dict(
        p=lambda: LIFParameters(
            tau_mem_inv=rand(6, 80.0, 160.0, 4).requires_grad_(),
            v_th=rand(6, 0.6, 1.4, 5).requires_grad_(),
            v_leak=torch.tensor(0.1),
            v_reset=torch.tensor(-0.2),
        ),
        scale=(4.0, 2.0),
        kw=dict(autapses=True),
        state=True,
    ),
}


def learnable(p) -> dict[str, torch.Tensor]:
    return {name: v for name, v in p._asdict().items() if isinstance(v, torch.Tensor) and v.requires_grad}


def inputs(case: dict, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale, shift = case["scale"]
    return (torch.randn(T, *shape, generator=g) * scale + shift).requires_grad_()


def random_state(kind: str, p, shape: tuple[int, ...], seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    v_th = torch.as_tensor(p.v_th).detach()
    v = (v_th + torch.randn(shape, generator=g) * 0.5 * (v_th.abs() + 1)).requires_grad_()
    if kind == "box":
        return box_fn.LIFBoxFeedForwardState(v=v)
    i = (torch.randn(shape, generator=g) * 2).requires_grad_()
    if kind == "ff":
        return lif_fn.LIFFeedForwardState(v=v, i=i)
    z = (torch.rand(shape, generator=g) > 0.5).double()
    return lif_fn.LIFState(z=z, v=v, i=i)


def state_leaves(state) -> list[torch.Tensor]:
    return [t for t in state if t.requires_grad] if state is not None else []


def loop(cell: nn.Module, x: torch.Tensor, state):
    """The step loop: spikes [T, ...] and every step's state, stacked field by field."""
    spikes, states = [], []
    for x_t in x:
        z, state = cell(x_t, state)
        spikes.append(z)
        states.append(state)
    return torch.stack(spikes), type(state)(*(torch.stack(f) for f in zip(*states)))


def assert_same(spikes, states, ref_spikes, ref_states, what: str) -> None:
    assert torch.equal(spikes, ref_spikes), what
    assert type(states) is type(ref_states), what
    for name, a, b in zip(ref_states._fields, states, ref_states):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"{what} {name}: {m}")


def upstream_loss(spikes, states, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    loss = (spikes * torch.randn(spikes.shape, generator=g)).sum()
    for field in states:
        loss = loss + (field * torch.randn(field.shape, generator=g)).sum()
    return loss


def assert_same_grads(loss, ref_loss, wrt, ref_wrt, names, what: str) -> None:
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    ref_grads = torch.autograd.grad(ref_loss, ref_wrt, allow_unused=True)
    for name, a, b in zip(names, grads, ref_grads):
        assert (a is None) == (b is None), f"{what} d/d{name}"
        if a is not None:
            torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"{what} d/d{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(LIF_CASES.values()), ids=list(LIF_CASES))
def test_lif_cell_and_sequence_match_norse(case, backend):
    p = case["p"]()
    dt = case.get("dt", 1e-3)
    x = inputs(case, (B, N))
    state = random_state("ff", p, (B, N)) if case.get("state") else None
    params = learnable(p)
    wrt = [x, *state_leaves(state), *params.values()]
    names = ["x", *(f"state.{f}" for f, t in zip(("v", "i"), state or ()) if t.requires_grad), *params]

    # One step at a time: snnkern's LIFCell against Norse's.
    ref_spikes, ref_states = loop(norse.LIFCell(p, dt=dt), x, state)
    assert 0 < ref_spikes.count_nonzero() < ref_spikes.numel(), "a case without spikes tests little"
    spikes, states = loop(compat.LIFCell(p, dt=dt, backend=backend), x, state)
    assert_same(spikes, states, ref_spikes, ref_states, "LIFCell")
    assert_same_grads(upstream_loss(spikes, states), upstream_loss(ref_spikes, ref_states), wrt, wrt, names, "LIFCell")

    # The whole sequence: snnkern's LIF (one fused scan) against Norse's LIF, final and recorded states.
    for record in (False, True):
        ref = norse.LIF(p, dt=dt, record_states=record)(x, state)
        out = compat.LIF(p, dt=dt, record_states=record, backend=backend)(x, state)
        assert_same(*out, *ref, f"LIF(record_states={record})")
        assert_same_grads(upstream_loss(*out), upstream_loss(*ref), wrt, wrt, names, f"LIF(record_states={record})")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(BOX_CASES.values()), ids=list(BOX_CASES))
def test_lif_box_matches_norse(case, backend):
    p = case["p"]()
    x = inputs(case, (B, N))
    state = random_state("box", p, (B, N)) if case.get("state") else None
    params = learnable(p)
    wrt = [x, *state_leaves(state), *params.values()]
    names = ["x", *(["state.v"] if state is not None else []), *params]
    ref_spikes, ref_states = loop(norse.LIFBoxCell(p), x, state)
    assert 0 < ref_spikes.count_nonzero() < ref_spikes.numel()
    spikes, states = loop(compat.LIFBoxCell(p, backend=backend), x, state)
    assert_same(spikes, states, ref_spikes, ref_states, "LIFBoxCell")
    ref_loss = upstream_loss(ref_spikes, ref_states)
    assert_same_grads(upstream_loss(spikes, states), ref_loss, wrt, wrt, names, "LIFBoxCell")
    # LIFBox: Norse has no sequence module for it; it equals the loop of Norse's cell.
    ref_spikes, ref_states = loop(norse.LIFBoxCell(p), x, state)
    out = compat.LIFBox(p, record_states=True, backend=backend)(x, state)
    assert_same(*out, ref_spikes, ref_states, "LIFBox(record_states=True)")
    assert_same_grads(upstream_loss(*out), upstream_loss(ref_spikes, ref_states), wrt, wrt, names, "LIFBox")
    spikes, last = compat.LIFBox(p, backend=backend)(x, state)
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(last.v, ref_states.v[-1], **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(RECURRENT_CASES.values()), ids=list(RECURRENT_CASES))
def test_lif_recurrent_matches_norse(case, backend):
    torch.manual_seed(11)
    p, hidden = case["p"](), 6
    x = inputs(case, (B, 4))
    state = random_state("rec", p, (B, hidden)) if case.get("state") else None
    params = learnable(p)

    def pair(peer_cls, cls, **kw):
        peer = peer_cls(4, hidden, p, **case["kw"], **kw)
        ours = cls(
            4,
            hidden,
            p,
            input_weights=nn.Parameter(peer.input_weights.detach().clone()),
            recurrent_weights=nn.Parameter(peer.recurrent_weights.detach().clone()),
            backend=backend,
            **case["kw"],
            **kw,
        )
        return peer, ours

    def wrt(module):
        return [x, *state_leaves(state), module.input_weights, module.recurrent_weights, *params.values()]

    names = ["x", *(["state.v", "state.i"] if state is not None else []), "input_weights", "recurrent_weights", *params]
    peer, cell = pair(norse.LIFRecurrentCell, compat.LIFRecurrentCell)
    ref_spikes, ref_states = loop(peer, x, state)
    assert 0 < ref_spikes.count_nonzero() < ref_spikes.numel()
    spikes, states = loop(cell, x, state)
    assert_same(spikes, states, ref_spikes, ref_states, "LIFRecurrentCell")
    ref_loss = upstream_loss(ref_spikes, ref_states)
    assert_same_grads(upstream_loss(spikes, states), ref_loss, wrt(cell), wrt(peer), names, "LIFRecurrentCell")
    for record in (False, True):
        peer, layer = pair(norse.LIFRecurrent, compat.LIFRecurrent, record_states=record)
        ref, out = peer(x, state), layer(x, state)
        what = f"LIFRecurrent(record_states={record})"
        assert_same(*out, *ref, what)
        assert_same_grads(upstream_loss(*out), upstream_loss(*ref), wrt(layer), wrt(peer), names, what)
        if not case["kw"].get("autapses", False):
            assert layer.recurrent_weights.diagonal().eq(0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lif_state_carried_between_calls(backend):
    """The state a sequence call returns continues the sequence, as in Norse."""
    p = LIF_CASES["leak-reset-learnable"]["p"]()
    x = inputs(LIF_CASES["leak-reset-learnable"], (B, N))
    peer, layer = norse.LIF(p), compat.LIF(p, backend=backend)
    z1, s1 = peer(x[:7])
    z2, s2 = peer(x[7:], s1)
    y1, r1 = layer(x[:7])
    y2, r2 = layer(x[7:], r1)
    assert torch.equal(torch.cat([y1, y2]), torch.cat([z1, z2]))
    assert_same(y2, r2, z2, s2, "second call")
    assert_same_grads(
        upstream_loss(y2, r2), upstream_loss(z2, s2), [x, *learnable(p).values()], [x, *learnable(p).values()],
        ["x", *learnable(p)], "second call",
    )  # fmt: skip


def test_surrogate_mapping():
    assert compat.surrogate_from_norse("super", 100.0) == FastSigmoid(1.0)  # Norse 1.1 ignores alpha
    assert compat.surrogate_from_norse("triangle", torch.tensor(0.3), torch.tensor(1.0)) == Triangle(0.3)


REFUSED = [
    (lambda: compat.LIFCell(LIFParameters(method="heaviside")), NotImplementedError, "method='heaviside'"),
    (lambda: compat.LIF(LIFParameters(method="tanh")), NotImplementedError, "method='tanh'"),
    (lambda: compat.LIFCell(LIFParameters(method="circ")), NotImplementedError, "method='circ'"),
    (lambda: compat.LIF(LIFParameters(method="heavi_erfc")), NotImplementedError, "method='heavi_erfc'"),
    (lambda: compat.LIFCell(LIFParameters(method="adjoint")), NotImplementedError, "method='adjoint'"),
    (lambda: compat.LIF(LIFParameters(method="bogus")), NotImplementedError, "method='bogus'"),
    (
        lambda: compat.LIFCell(LIFParameters(method="triangle", v_th=torch.tensor(0.5))),
        NotImplementedError,
        "method='triangle'",
    ),
    (lambda: compat.LIF(LIFParameters(v_leak=torch.zeros(N))), NotImplementedError, "v_leak"),
    (
        lambda: compat.LIFCell(LIFParameters(v_reset=torch.tensor(0.0, requires_grad=True))),
        NotImplementedError,
        "v_reset",
    ),
    (
        lambda: compat.LIFBoxCell(LIFBoxParameters(reset_method=lambda z, v, r, th: v)),
        NotImplementedError,
        "reset_method",
    ),
    (lambda: compat.LIFCell(LIFParameters(tau_mem_inv=torch.tensor(2000.0))), ValueError, "tau_mem_inv"),
    (lambda: compat.LIF(LIFParameters(tau_syn_inv=torch.tensor(2000.0))), ValueError, "tau_syn_inv"),
    (lambda: compat.LIF(LIFParameters(tau_mem_inv=torch.tensor(0.0))), ValueError, "tau_mem_inv"),
    (lambda: compat.LIFRecurrent(2, 3, LIFParameters(method="heaviside")), NotImplementedError, "method='heaviside'"),
]


@pytest.mark.parametrize("make, error, match", REFUSED, ids=[m.split()[0] for _, _, m in REFUSED])
def test_unsupported_parameters_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_sparse_input_refused():
    with pytest.raises(NotImplementedError, match="sparse"):
        compat.LIFCell()(torch.zeros(B, N).to_sparse())


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
        if type(module).__module__ == compat.__name__:
            module.backend = backend
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_convert_conv_network(backend):
    torch.manual_seed(5)
    p2 = LIFParameters(v_th=torch.full((5,), 0.5, requires_grad=True))
    peer = norse.SequentialState(
        nn.Conv2d(2, 4, 3), norse.LIFCell(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5), norse.LIFCell(p2)
    )
    model = convert(copy.deepcopy(peer), backend)
    assert isinstance(model[1], compat.LIFCell) and isinstance(model[4], compat.LIFCell)
    x = torch.randn(T, B, 2, 6, 6) * 60 + 60

    def run(net: nn.Module) -> torch.Tensor:
        state, outs = None, []
        for x_t in x:
            out, state = net(x_t, state)
            outs.append(out)
        return torch.stack(outs), state[-1].v

    ref, out = run(peer), run(model)
    assert 0 < ref[0].count_nonzero() < ref[0].numel()
    assert torch.equal(out[0], ref[0])
    torch.testing.assert_close(out[1], ref[1], **TOL)
    ref_grads = torch.autograd.grad(ref[1].sum() + ref[0].sum(), list(peer.parameters()))
    grads = torch.autograd.grad(out[1].sum() + out[0].sum(), list(model.parameters()))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_convert_sequence_network(backend):
    torch.manual_seed(6)
    peer = norse.SequentialState(nn.Linear(6, 8), norse.LIF(), nn.Linear(8, 4), norse.LIFRecurrent(4, 5))
    model = convert(copy.deepcopy(peer), backend)
    assert isinstance(model[1], compat.LIF) and isinstance(model[3], compat.LIFRecurrent)
    x = torch.randn(T, B, 6) * 8 + 6
    ref, ref_state = peer(x)
    out, state = model(x)
    assert 0 < ref.count_nonzero() < ref.numel()
    assert torch.equal(out, ref)
    for a, b in zip(state, ref_state):
        assert (a is None) == (b is None)
        for f, g in zip(a or (), b or ()):
            torch.testing.assert_close(f, g, **TOL)
    ref_grads = torch.autograd.grad(ref.sum() + ref_state[-1].v.sum(), list(peer.parameters()))
    grads = torch.autograd.grad(out.sum() + state[-1].v.sum(), list(model.parameters()))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, **TOL)


def test_converters_table():
    table = compat.converters()
    assert set(table) == {norse.LIFBoxCell, norse.LIFCell, norse.LIF, norse.LIFRecurrentCell, norse.LIFRecurrent}
    p = LIFParameters(v_th=torch.tensor(0.8, requires_grad=True))
    peer = norse.LIFRecurrent(3, 4, p, dt=5e-4, record_states=True)
    new = table[norse.LIFRecurrent](peer)
    assert type(new) is compat.LIFRecurrent and new.p.v_th is p.v_th  # the parameter tuple is shared
    assert new.dt == 5e-4 and new.record_states and not new.autapses
    assert new.recurrent_weights is not peer.recurrent_weights
    assert torch.equal(new.recurrent_weights, peer.recurrent_weights)
    assert table[norse.LIFRecurrent](new) is new  # already snnkern's
    cell = compat.LIFCell()
    assert table[norse.LIFCell](cell) is cell

    class Custom(norse.LIFCell):
        pass

    with pytest.raises(NotImplementedError, match="Custom"):
        table[norse.LIFCell](Custom())
    with pytest.raises(NotImplementedError, match="method='heaviside'"):
        table[norse.LIF](norse.LIF(LIFParameters(method="heaviside")))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_like_norse(backend):
    """In float32 (Norse's default parameters are float32) the modules run without a cast in the
    way: same spikes, states to float32 rounding."""
    x = inputs(LIF_CASES["defaults"], (B, N)).detach().float()
    ref_spikes, ref_state = norse.LIF()(x)
    spikes, state = compat.LIF(backend=backend)(x)
    assert spikes.dtype == torch.float32 and torch.equal(spikes, ref_spikes)
    for a, b in zip(state, ref_state):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    cell_spikes, cell_states = loop(compat.LIFCell(backend=backend), x, None)
    ref_spikes, ref_states = loop(norse.LIFCell(), x, None)
    assert torch.equal(cell_spikes, ref_spikes)
    torch.testing.assert_close(cell_states.v, ref_states.v, rtol=1e-5, atol=1e-5)
