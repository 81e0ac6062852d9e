"""snnkern.nir: models in and out through NIR.

snnkern -> NIR -> snnkern gives the same outputs bit for bit in float64 (spikes of every layer and
the readout membrane), in memory and through a .nir file, for both discretisations; NIR's
parameters come out as the discretisation says; what NIR cannot express is refused by name (or
exported as the closest node with a warning); bad graphs and files fail with errors that name the
node. The peers (snnTorch, Norse, SpikingJelly, Sinabs) export graphs that run in snnkern with
their spikes, and import snnkern's graphs with snnkern's spikes, in float64; the limitations of
their NIR code at the installed versions are pinned by strict xfails (see docs/nir.md).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from snnkern import ATan, FastSigmoid  # noqa: E402
from snnkern import nir as snir  # noqa: E402
from snnkern.nir import LossyExportWarning, NIRError  # noqa: E402
from snnkern.nn import (  # noqa: E402
    LIF,
    DaleLinear,
    LeakyNeuron,
    LeakyReadout,
    LIFNeuron,
    RecurrentLIF,
    TimeFolded,
)


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def lif(alpha: float = 0.8, **kw) -> LIFNeuron:
    return LIFNeuron(alpha=alpha, ordering="charge_first", **kw)


def scaled(module: nn.Module, factor: float) -> nn.Module:
    """Multiplies the weights of ``module`` (so that the test layers spike often enough)."""
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(factor)
    return module


def neuron_outputs(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every layer of a Sequential."""
    outs = []
    for layer in model:
        x = layer(x)
        outs.append(x)
    return outs


def conv_model() -> nn.Sequential:
    """[B, T, 2, 8, 8] -> Conv2d -> LIF (v_reset, v_leak) -> SumPool2d -> Conv2d -> CubaLIF
    (per-channel learnable threshold and decay) -> AvgPool2d -> Flatten -> Linear -> LIF ->
    DaleLinear -> LI readout."""
    cuba = LIFNeuron(
        alpha=0.9,
        alpha_syn=0.6,
        current_first=True,
        ordering="charge_first",
        threshold=0.5,
        shape=(6, 1, 1),
        learn_alpha=True,
        learn_threshold=True,
        surrogate=ATan(2.0),
        detach_reset=True,
    )
    with torch.no_grad():
        cuba.alpha.copy_(torch.linspace(0.7, 0.95, 6).reshape(6, 1, 1))
        cuba.threshold.copy_(torch.linspace(0.3, 0.8, 6).reshape(6, 1, 1))
    return nn.Sequential(
        scaled(TimeFolded(nn.Conv2d(2, 4, 3, padding=1)), 2.0),
        lif(0.8, threshold=0.5, v_reset=-0.1, v_leak=0.05),
        TimeFolded(snir.SumPool2d(2)),
        scaled(TimeFolded(nn.Conv2d(4, 6, 3, padding=1, bias=False)), 2.0),
        cuba,
        TimeFolded(nn.AvgPool2d(2)),
        TimeFolded(nn.Flatten()),
        scaled(nn.Linear(24, 10), 3.0),
        lif(0.7, threshold=0.25),
        DaleLinear(10, 4, ie_ratio=0.3),
        LeakyNeuron(alpha=0.9),
    )


def spike_input(*shape: int, p: float = 0.4) -> torch.Tensor:
    return (torch.rand(*shape) < p).to(torch.float64)


# ============================================================================================
# snnkern -> NIR -> snnkern
# ============================================================================================


@pytest.mark.parametrize("discretisation", snir.DISCRETISATIONS)
@pytest.mark.parametrize("via_file", [False, True], ids=["graph", "file"])
def test_conv_roundtrip_is_bitwise(discretisation, via_file, tmp_path):
    model = conv_model()
    x = spike_input(3, 12, 2, 8, 8)
    if via_file:
        path = tmp_path / "conv.nir"
        snir.write(model, path, x, dt=1e-3, discretisation=discretisation)
        loaded = snir.load(path, dtype=torch.float64)
    else:
        loaded = snir.load(snir.export(model, x, dt=1e-3, discretisation=discretisation), dtype=torch.float64)
    assert isinstance(loaded, nn.Sequential) and len(loaded) == len(model)
    expected, got = neuron_outputs(model, x), neuron_outputs(loaded, x)
    for i in (1, 4, 8):  # every spiking layer fires, and fires the same spikes
        assert expected[i].sum() > 0, f"layer {i} is silent: the test would prove nothing"
        assert torch.equal(expected[i], got[i]), f"layer {i}"
    assert torch.equal(expected[-1], got[-1])  # the readout membrane, bit for bit
    # the gradient-only options come back too
    cuba = loaded[4].neuron
    assert cuba.options["surrogate"] == ATan(2.0) and cuba.options["detach_reset"] is True
    assert cuba.options["current_first"] and cuba.options["ordering"] == "charge_first"
    assert isinstance(cuba.threshold, nn.Parameter) and cuba.threshold.shape == (6, 8 // 2, 8 // 2)


def test_conv_graph_nodes():
    model = conv_model()
    graph = snir.export(model, spike_input(2, 3, 2, 8, 8), dt=1e-3)
    kinds = [type(graph.nodes[k]).__name__ for k in map(str, range(11))]
    assert kinds == [
        "Conv2d", "LIF", "SumPool2d", "Conv2d", "CubaLIF", "AvgPool2d", "Flatten", "Affine", "LIF", "Linear", "LI",
    ]  # fmt: skip
    assert graph.metadata == {"dt": 1e-3, "discretisation": "exact", "source": "snnkern"}
    assert np.array_equal(graph.nodes["output"].output_type["output"], [4])
    dale = graph.nodes["9"]
    assert np.array_equal(dale.weight, model[9].effective_weight().detach().numpy())  # |w| * sign
    assert np.all(dale.weight[:, :3] <= 0) and np.all(dale.weight[:, 3:] >= 0)


def test_recurrent_roundtrip_is_bitwise(tmp_path):
    hidden = RecurrentLIF(5, 8, alpha=0.8, learn_alpha=True, ordering="charge_first", threshold=0.5, dale_ie_ratio=0.25)
    with torch.no_grad():
        hidden.alpha.copy_(torch.linspace(0.6, 0.95, 8))
        hidden.linear.weight.mul_(3.0)
        hidden.recurrent_weight.mul_(0.5)
    model = nn.Sequential(hidden, scaled(LIF(8, 3, alpha=0.9, ordering="charge_first", bias=True), 2.0))
    x = torch.rand(4, 25, 5)
    path = tmp_path / "rec.nir"
    graph = snir.write(model, path, x, dt=1.0, discretisation="euler")
    sub = graph.nodes["0"]  # snnTorch's form: input -> lif <-> w_rec, lif -> output
    assert isinstance(sub, nir.NIRGraph) and isinstance(sub.nodes["lif"], nir.LIF)
    assert sorted(sub.edges) == sorted([("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    loaded = snir.load(path, dtype=torch.float64)
    assert isinstance(loaded[1], snir.RecurrentNeuron)
    h = model[0](x)
    assert h.sum() > 0
    assert torch.equal(loaded[1](loaded[0](x)), h)
    assert torch.equal(loaded(x), model(x))
    # and once more: the loaded model exports to the same graph
    again = snir.load(snir.export(loaded, x, dt=1.0, discretisation="euler"), dtype=torch.float64)
    assert torch.equal(again(x), model(x))


def test_flat_recurrent_cubalif_loop():
    """A CubaLIF <-> Affine loop written flat in the graph (snnTorch's RSynaptic export form)."""
    n = 6
    rng = np.random.default_rng(0)
    w_rec = rng.normal(0, 0.4, (n, n))
    tau_mem, tau_syn, dt = np.full(n, 5.0), np.full(n, 2.0), 1.0
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n])),
            "rec.lif": nir.CubaLIF(
                tau_syn=tau_syn,
                tau_mem=tau_mem,
                r=tau_mem / dt,
                v_leak=np.zeros(n),
                v_threshold=np.full(n, 0.5),
                v_reset=np.zeros(n),
                w_in=tau_syn / dt,
            ),
            "rec.w_rec": nir.Affine(weight=w_rec, bias=np.zeros(n)),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "rec.lif"), ("rec.lif", "rec.w_rec"), ("rec.w_rec", "rec.lif"), ("rec.lif", "output")],
        type_check=False,
    )
    model = snir.load(graph, dt=dt, discretisation="euler")
    assert isinstance(model[0], snir.RecurrentNeuron)
    x = torch.rand(3, 20, n)
    # Euler: alpha = 1 - dt/tau, input factors w_in dt/tau_syn = r dt/tau_mem = 1
    import snnkern

    ref = snnkern.recurrent_lif(
        x,
        torch.tensor(w_rec),
        0.8,
        alpha_syn=0.5,
        current_first=True,
        ordering="charge_first",
        threshold=0.5,
        surrogate=snnkern.Sigmoid(),
    ).spikes
    assert ref.sum() > 0 and torch.equal(model(x), ref)


class Skip(nn.Module):
    """Not a chain: a residual sum of two projections."""

    def __init__(self) -> None:
        super().__init__()
        self.a = scaled(nn.Linear(4, 6), 3.0)
        self.n1 = lif(0.8, threshold=0.5)
        self.b = nn.Linear(6, 5)
        self.c = nn.Linear(4, 5, bias=False)
        self.n2 = lif(0.9, threshold=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.n1(self.a(x))
        return self.n2(self.b(h) + self.c(x))


def test_dag_roundtrip_uses_the_graph_executor():
    model = Skip()
    x = torch.rand(3, 15, 4)
    graph = snir.export(model, x, dt=1e-3)
    assert sorted(graph.edges) == sorted(
        [("input", "a"), ("a", "n1"), ("n1", "b"), ("b", "n2"), ("input", "c"), ("c", "n2"), ("n2", "output")]
    )
    loaded = snir.load(graph)
    assert isinstance(loaded, snir.GraphExecutor)
    assert model(x).sum() > 0 and torch.equal(loaded(x), model(x))
    again = snir.load(snir.export(loaded, x, dt=1e-3))
    assert torch.equal(again(x), model(x))


def test_single_neuron_and_scale_fold():
    """A bare neuron module exports; a Scale in front of a neuron becomes its r (the form peers read)."""
    x = torch.rand(2, 10, 3) * 2
    model = nn.Sequential(snir.Scale(torch.tensor([0.5, 1.0, 2.0])), lif(0.9, threshold=0.5))
    graph = snir.export(model, x, dt=1e-3, discretisation="euler")
    assert [type(n).__name__ for n in graph.nodes.values()] == ["Input", "LIF", "Output"]
    np.testing.assert_allclose(graph.nodes["1"].r, [0.5 * 10, 10, 2 * 10])  # r = scale tau / dt
    loaded = snir.load(graph)
    assert torch.equal(loaded(x), model(x))
    bare = snir.load(snir.export(lif(0.9), x, dt=1e-3))
    assert torch.equal(bare(x), lif(0.9)(x))


# ============================================================================================
# Parameters and metadata
# ============================================================================================


@pytest.mark.parametrize("discretisation", snir.DISCRETISATIONS)
def test_exported_parameters(discretisation):
    x = torch.rand(2, 4, 3)
    model = nn.Sequential(lif(0.9, threshold=0.75, v_reset=-0.25, v_leak=0.125))
    node = snir.export(model, x, dt=1e-3, discretisation=discretisation).nodes["0"]
    assert isinstance(node, nir.LIF)
    if discretisation == "exact":
        np.testing.assert_allclose(node.tau, -1e-3 / np.log(0.9), rtol=1e-15)
        np.testing.assert_allclose(node.r * (1 - np.exp(-1e-3 / node.tau)), 1.0, rtol=1e-14)
    else:
        np.testing.assert_allclose(node.tau, 1e-2, rtol=1e-14)
        np.testing.assert_allclose(node.r * 1e-3 / node.tau, 1.0, rtol=1e-14)
    assert np.all(node.v_threshold == 0.75) and np.all(node.v_reset == -0.25) and np.all(node.v_leak == 0.125)
    assert node.metadata["snnkern_alpha"].tolist() == [0.9] * 3


@pytest.mark.parametrize("discretisation", snir.DISCRETISATIONS)
def test_loaded_discretisation(discretisation):
    """A hand-written LIF node (tau = 10 ms, r = 2) at dt = 1 ms: alpha and the input factor."""
    import snnkern

    node = nir.LIF(tau=np.full(3, 0.01), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.full(3, 0.5))
    model = snir.load(nir.NIRGraph.from_list(node), dt=1e-3, discretisation=discretisation)
    alpha = np.exp(-0.1) if discretisation == "exact" else 0.9
    factor = 2 * (1 - alpha) if discretisation == "exact" else 2 * 0.1
    neuron = model[0]
    assert neuron.neuron.alpha == pytest.approx(alpha, rel=1e-15)
    assert float(neuron.scale) == pytest.approx(factor, rel=1e-14)
    x = torch.rand(2, 30, 3) * 5
    want = snnkern.lif(x * neuron.scale, alpha, threshold=0.5, ordering="charge_first").spikes
    assert want.sum() > 0 and torch.equal(model(x), want)


def test_if_and_integrator_nodes():
    import snnkern

    graph = nir.NIRGraph.from_list(nir.IF(r=np.full(3, 4.0), v_threshold=np.full(3, 1.0)), nir.Linear(weight=np.eye(3)))
    graph.nodes["i"] = nir.I(r=np.full(3, 2.0))
    graph.edges = [("input", "if"), ("if", "linear"), ("linear", "i"), ("i", "output")]
    model = snir.load(graph, dt=0.25, discretisation="euler")  # IF and I: factor r dt
    x = torch.rand(2, 12, 3)
    spikes = snnkern.lif(x, 1.0, threshold=1.0, ordering="charge_first").spikes
    assert spikes.sum() > 0
    assert torch.equal(model[:2](x), spikes)
    assert torch.equal(model(x), snnkern.leaky(spikes * 0.5, 1.0).membrane)
    # and back: alpha = 1 exports as IF / I
    again = snir.export(model, x, dt=0.25)
    assert [type(n).__name__ for n in again.nodes.values()] == ["Input", "IF", "Linear", "I", "Output"]
    assert torch.equal(snir.load(again)(x), model(x))


def test_cubali_loads_with_the_current_first():
    """CubaLI: the membrane sees the current after the step's input (as CubaLIF)."""
    import snnkern

    node = nir.CubaLI(
        tau_syn=np.full(2, 2.0), tau_mem=np.full(2, 4.0), r=np.full(2, 4.0), v_leak=np.zeros(2), w_in=np.full(2, 2.0)
    )
    model = snir.load(nir.NIRGraph.from_list(node), dt=1.0, discretisation="euler")
    x = torch.rand(2, 9, 2)
    current = snnkern.leaky(x, 0.5).membrane  # i_{t+1} = 0.5 i_t + x_t, factors w_in dt / tau_syn = 1
    assert torch.equal(model(x), snnkern.leaky(current, 0.75).membrane)
    again = snir.export(model, x, dt=1.0, discretisation="euler")
    assert isinstance(again.nodes["cubali"], nir.CubaLI) and torch.equal(snir.load(again)(x), model(x))


def test_metadata_defaults_and_overrides():
    x = torch.rand(2, 8, 3)
    model = nn.Sequential(lif(0.9, surrogate=FastSigmoid(25.0)))
    graph = snir.export(model, x, dt=2e-3, discretisation="euler")
    assert graph.metadata["dt"] == 2e-3 and graph.metadata["discretisation"] == "euler"
    assert snir.load(graph)[0].neuron.alpha == 0.9
    assert snir.load(graph)[0].neuron.options["surrogate"] == FastSigmoid(25.0)
    # another dt: the continuous time constant stays, the decay changes
    assert snir.load(graph, dt=1e-3)[0].neuron.alpha == pytest.approx(0.95, rel=1e-14)
    assert snir.load(graph, discretisation="exact")[0].neuron.alpha == pytest.approx(np.exp(-0.1), rel=1e-14)
    del graph.metadata["dt"]
    with pytest.raises(NIRError, match="dt="):
        snir.load(graph)
    graph.metadata["dt"] = 2e-3
    del graph.metadata["discretisation"]
    with pytest.raises(NIRError, match="discretisation="):
        snir.load(graph)


def test_loaded_model_trains():
    model = snir.load(snir.export(conv_model(), spike_input(2, 4, 2, 8, 8), dt=1e-3))
    out = model(spike_input(2, 6, 2, 8, 8))
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_stateful_neurons_keep_their_state():
    neuron = lif(0.9, stateful=True)
    x = torch.rand(2, 5, 3)
    neuron(x)
    state = neuron.state.clone()
    snir.export(nn.Sequential(neuron), torch.rand(4, 7, 3), dt=1e-3)
    assert torch.equal(neuron.state, state)


# ============================================================================================
# What NIR cannot express
# ============================================================================================

REFUSED = {
    "spike_first": (lambda: LIFNeuron(alpha=0.9), "ordering='spike_first'"),
    "delayed": (lambda: LIFNeuron(alpha=0.9, ordering="delayed"), "ordering='delayed'"),
    "update_first": (lambda: LIFNeuron(alpha=0.9, ordering="update_first"), "ordering='update_first'"),
    "subtract": (lambda: lif(0.9, reset="subtract"), "reset='subtract'"),
    "no_reset": (lambda: lif(0.9, reset="none"), "reset='none'"),
    "current_first": (lambda: lif(0.9, alpha_syn=0.5), "current_first=False"),
    "leaky_two_state": (lambda: LeakyNeuron(alpha=0.9, alpha_syn=0.5), "alpha_syn"),
    "layer_ordering": (lambda: LIF(3, 3, alpha=0.9), "ordering='spike_first'"),
    "readout_two_state": (lambda: LeakyReadout(3, 3, alpha=0.9, alpha_syn=0.5), "alpha_syn"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_options_are_named(case):
    make, option = REFUSED[case]
    x = torch.rand(2, 4, 3)
    with pytest.raises(NIRError, match=option.replace("(", r"\(")) as info:
        snir.export(nn.Sequential(make()), x, dt=1e-3)
    assert "lossy=True" in str(info.value)
    with pytest.warns(LossyExportWarning, match=option.replace("(", r"\(")):
        graph = snir.export(nn.Sequential(make()), x, dt=1e-3, lossy=True)
    assert isinstance(graph, nir.NIRGraph)


def test_lossy_exports_the_closest_node():
    x = torch.rand(2, 4, 3)
    model = nn.Sequential(lif(0.9, reset="subtract", spike="multi", v_reset=0.25, alpha_syn=0.5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = snir.export(model, x, dt=1e-3, lossy=True)
    messages = " ".join(str(w.message) for w in caught if issubclass(w.category, LossyExportWarning))
    for option in ("reset='subtract'", "spike='multi'", "current_first=False"):
        assert option in messages
    node = graph.nodes["0"]
    assert isinstance(node, nir.CubaLIF) and np.all(node.v_reset == 0.25)
    loaded = snir.load(graph)[0].neuron.options
    assert (loaded["reset"], loaded["spike"], loaded["current_first"]) == ("zero", "binary", True)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: TimeFolded(nn.MaxPool2d(2)), "MaxPool2d"),
        (nn.ReLU, "ReLU"),
        (lambda: TimeFolded(nn.BatchNorm2d(1)), "BatchNorm2d"),
        (nn.Flatten, r"nn.Flatten\(1, -1\)"),
    ],
    ids=["maxpool", "relu", "batchnorm", "flatten_time"],
)
def test_layers_without_a_nir_node(make, name):
    with pytest.raises(NIRError, match=name):
        snir.export(nn.Sequential(make()), torch.rand(2, 3, 1, 4, 4), dt=1e-3)


def test_without_the_nir_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nir", None)  # import nir now raises ImportError
    with pytest.raises(ImportError, match="pip install nir"):
        snir.export(nn.Sequential(lif()), torch.rand(2, 3, 4), dt=1e-3)
    with pytest.raises(ImportError, match="pip install nir"):
        snir.load("model.nir")
    assert isinstance(snir.Scale(2.0)(torch.ones(1, 1, 3)), torch.Tensor)  # the modules need no nir


def test_bad_export_arguments():
    model = nn.Sequential(lif())
    x = torch.rand(2, 3, 4)
    with pytest.raises(NIRError, match="dt"):
        snir.export(model, x, dt=0.0)
    with pytest.raises(NIRError, match="discretisation"):
        snir.export(model, x, dt=1e-3, discretisation="rk4")
    with pytest.raises(NIRError, match="sample_input"):
        snir.export(model, torch.rand(3, 4), dt=1e-3)

    class Functional(nn.Module):
        def forward(self, x):
            return torch.relu(x)

    with pytest.raises(NIRError, match="relu"):
        snir.export(Functional(), x, dt=1e-3)


# ============================================================================================
# Bad graphs and files
# ============================================================================================


def small_graph() -> nir.NIRGraph:
    return snir.export(nn.Sequential(nn.Linear(3, 2), lif()), torch.rand(1, 2, 3), dt=1e-3)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.nir"):
        snir.load(tmp_path / "nope.nir")


def test_not_a_nir_file(tmp_path):
    path = tmp_path / "text.nir"
    path.write_text("not hdf5")
    with pytest.raises(NIRError, match="not a NIR"):
        snir.load(path)


def test_unknown_node_type_in_a_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "g.nir"
    nir.write(path, small_graph())
    with h5py.File(path, "r+") as f:
        del f["node/nodes/1/type"]
        f["node/nodes/1"].create_dataset("type", data="Hodgkin", dtype=h5py.string_dtype())
    with pytest.raises(NIRError, match=r"'1'.*'Hodgkin'"):
        snir.load(path)


def test_unsupported_node_types_are_named():
    graph = small_graph()
    graph.nodes["1"] = nir.Delay(delay=np.ones(2))
    with pytest.raises(NIRError, match=r"1 \(Delay\).*not supported"):
        snir.load(graph)
    graph.nodes["1"] = nir.Threshold(threshold=np.ones(2))
    with pytest.raises(NIRError, match=r"1 \(Threshold\)"):
        snir.load(graph)


def test_inconsistent_graphs_are_named():
    graph = small_graph()
    graph.edges.append(("1", "ghost"))
    with pytest.raises(NIRError, match="'ghost'"):
        snir.load(graph)

    graph = small_graph()
    graph.edges.append(("1", "0"))  # a loop through a Linear and a LIF that also feeds the output
    graph.edges.append(("0", "1"))
    with pytest.raises(NIRError, match="duplicate"):
        snir.load(graph)

    graph = small_graph()
    graph.nodes["2"] = nir.Linear(weight=np.ones((2, 2)))
    graph.edges += [("1", "2"), ("2", "0")]  # 0 (3 -> 2) <- 2: a cycle that is no LIF <-> Linear pair
    with pytest.raises(NIRError, match="cycle"):
        snir.load(graph)

    graph = small_graph()
    graph.nodes["1"].v_reset = np.array([0.0, 0.5])
    with pytest.raises(NIRError, match=r"1 \(LIF\).*v_reset"):
        snir.load(graph)

    graph = small_graph()
    graph.nodes["extra"] = nir.Input(input_type=np.array([3]))
    with pytest.raises(NIRError, match="2 Input nodes"):
        snir.load(graph)

    graph = small_graph()
    graph.nodes["lonely"] = nir.Linear(weight=np.ones((2, 2)))
    graph.edges.append(("lonely", "output"))
    with pytest.raises(NIRError, match="lonely"):
        snir.load(graph)


def test_euler_needs_dt_below_tau():
    graph = small_graph()  # tau = -1e-3 / ln(0.8) = 4.5 ms
    with pytest.raises(NIRError, match=r"1 \(LIF\).*dt"):
        snir.load(graph, dt=1e-2, discretisation="euler")


# ============================================================================================
# Peers: snnTorch
# ============================================================================================


@pytest.fixture
def snntorch(monkeypatch):
    """snnTorch with spikes in the input's dtype: its surrogates return ``(x > 0).float()``, which
    breaks a float64 network at the next layer ('mat1 and mat2 must have the same dtype')."""
    snn = pytest.importorskip("snntorch")
    surrogate = pytest.importorskip("snntorch.surrogate")
    for cls in (surrogate.ATan, surrogate.FastSigmoid, surrogate.Sigmoid):

        def forward(ctx, input_, param, _forward=cls.forward):
            return _forward(ctx, input_, param).to(input_.dtype)

        monkeypatch.setattr(cls, "forward", staticmethod(forward))
    return snn


def snntorch_leaky(snn, n: int, beta: float, threshold: float, **kw):
    # per-neuron beta and threshold: snnTorch exports a scalar beta as a tau of shape (), which
    # fails NIR's type inference against the layer before
    return snn.Leaky(
        beta=torch.full((n,), beta),
        threshold=torch.full((n,), threshold),
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
        **kw,
    )


def run_steps(net: nn.Module, x: torch.Tensor, stateful: bool = True) -> torch.Tensor:
    """A one-step module over ``[B, T, ...]``: ``stateful`` ones (nirtorch's graphs, Norse) take
    and return a state, the others (snnTorch's init_hidden neurons) keep it themselves."""
    outs, state = [], None
    for t in range(x.shape[1]):
        out = net(x[:, t], state) if stateful else net(x[:, t])
        if stateful:
            out, state = out
        outs.append(out[0] if isinstance(out, tuple) else out)  # snnTorch output=True: (spk, mem)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("kind", ["Leaky", "Synaptic", "RLeaky"])
def test_snntorch_export_loads_with_the_same_spikes(snntorch, kind):
    snn = snntorch
    export_to_nir = pytest.importorskip("snntorch.export_nir").export_to_nir
    n = 6
    if kind == "Leaky":
        hidden = snntorch_leaky(snn, n, 0.8, 0.5)
    elif kind == "Synaptic":
        hidden = snn.Synaptic(
            alpha=torch.full((n,), 0.6),
            beta=torch.full((n,), 0.8),
            threshold=torch.full((n,), 0.5),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
        )
    else:
        hidden = snn.RLeaky(
            beta=torch.full((n,), 0.8),
            threshold=torch.full((n,), 0.5),
            linear_features=n,
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
        )
        with torch.no_grad():
            hidden.recurrent.bias.zero_()
    net = nn.Sequential(nn.Linear(4, n), hidden, nn.Linear(n, 3), snntorch_leaky(snn, 3, 0.9, 0.25, output=True))
    scaled(net[0], 2.0)
    # ignore_dims=[0]: without it the Input node keeps the batch dimension and type inference fails
    graph = export_to_nir(net, torch.rand(1, 4), ignore_dims=[0])
    model = snir.load(graph, dt=1e-4, discretisation="euler")  # snnTorch's convention
    x = torch.rand(5, 30, 4) * 2
    reset = pytest.importorskip("snntorch.utils").reset

    def fresh(module: nn.Module) -> nn.Module:
        module = copy.deepcopy(module)
        reset(module)  # the export ran the network once: forget its membranes
        return module

    want = run_steps(fresh(net), x, stateful=False)
    hidden_want = run_steps(fresh(net[:2]), x, stateful=False)
    assert hidden_want.sum() > 0 and want.sum() > 0
    assert torch.equal(model[:2](x), hidden_want)
    assert torch.equal(model(x), want)


def test_snntorch_imports_snnkern_graphs(snntorch):
    import_from_nir = pytest.importorskip("snntorch.import_nir").import_from_nir
    x = torch.rand(4, 25, 4) * 2
    feed_forward = nn.Sequential(
        scaled(nn.Linear(4, 6), 2.0), lif(0.8, threshold=0.5), nn.Linear(6, 3), lif(0.9, threshold=0.25)
    )
    recurrent = nn.Sequential(
        scaled(RecurrentLIF(4, 6, alpha=0.8, ordering="charge_first", threshold=0.5), 2.0),
        nn.Linear(6, 3),
        lif(0.9, threshold=0.25),
    )
    for model in (feed_forward, recurrent):
        graph = snir.export(model, x, dt=1e-4, discretisation="euler")
        net = import_from_nir(graph).double()
        got = run_steps(net, x)
        assert model[:-1](x).sum() > 0 and torch.equal(got, model(x))


@pytest.mark.xfail(strict=True, reason="snnTorch 1.0 imports NIR Flatten(start_dim=0) as nn.Flatten(0): the batch too")
def test_snntorch_imports_a_conv_graph(snntorch):
    import_from_nir = pytest.importorskip("snntorch.import_nir").import_from_nir
    model = nn.Sequential(
        TimeFolded(nn.Conv2d(1, 2, 3, padding=1)),
        lif(0.5),
        TimeFolded(nn.AvgPool2d(2)),
        TimeFolded(nn.Flatten()),
        nn.Linear(8, 3),
        lif(0.9),
    )
    x = spike_input(2, 5, 1, 4, 4)
    net = import_from_nir(snir.export(model, x, dt=1e-4, discretisation="euler")).double()
    assert torch.equal(run_steps(net, x), model(x))


# ============================================================================================
# Peers: Norse
# ============================================================================================


@pytest.fixture
def norse():
    return pytest.importorskip("norse.torch")


def test_norse_export_loads_with_the_same_spikes(norse):
    """Norse 1.1 writes tau = dt / tau_mem_inv (dt * tau, not tau); loading with dt = dt_norse**2
    makes dt / tau = dt_norse * tau_mem_inv again, Norse's own Euler step."""
    p1 = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.75))
    p2 = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0), v_th=torch.tensor(0.5))
    net = norse.SequentialState(
        scaled(nn.Linear(4, 6), 4.0), norse.LIFBoxCell(p1), scaled(nn.Linear(6, 3), 4.0), norse.LIFBoxCell(p2)
    )
    graph = norse.to_nir(net, torch.rand(1, 4))
    np.testing.assert_allclose(np.asarray(graph.nodes["1"].tau), 1e-5, rtol=1e-6)  # dt / tau_mem_inv
    with pytest.raises(NIRError, match="dt"):  # the time step Norse ran with: a negative Euler decay
        snir.load(graph, dt=1e-3, discretisation="euler")
    model = snir.load(graph, dt=1e-6, discretisation="euler")
    x = torch.rand(5, 60, 4) * 4
    want = run_steps(copy.deepcopy(net).double(), x)
    assert model[:2](x).sum() > 0 and want.sum() > 0
    assert torch.equal(model(x), want)


def test_norse_imports_snnkern_graphs(norse):
    """Norse reads tau (1 / tau_mem_inv) right but ignores r: its input factor is dt / tau, so the
    snnkern model scales its input by dt / tau (an r of 1 in NIR)."""
    from_nir = pytest.importorskip("norse.torch.utils.import_nir").from_nir
    model = nn.Sequential(
        scaled(nn.Linear(4, 6), 4.0),
        snir.Scale(torch.tensor(0.1)),
        lif(0.9, threshold=0.75),
        scaled(nn.Linear(6, 3), 4.0),
        snir.Scale(torch.tensor(0.2)),
        lif(0.8, threshold=0.5),
    )
    x = torch.rand(5, 60, 4) * 4
    graph = snir.export(model, x, dt=1e-3, discretisation="euler")
    np.testing.assert_allclose(graph.nodes["2"].r, 1.0, rtol=1e-15)
    np.testing.assert_allclose(graph.nodes["2"].tau, 0.01, rtol=1e-15)
    net = from_nir(graph, dt=1e-3).double()
    want = model(x)
    assert model[:3](x).sum() > 0 and want.sum() > 0
    assert torch.equal(run_steps(net, x), want)


# ============================================================================================
# Peers: SpikingJelly, Sinabs
# ============================================================================================


def test_spikingjelly_both_ways():
    """SpikingJelly's LIFNode (hard reset to 0) at dt = 1e-4, Euler; it fires at v >= threshold,
    snnkern at v > threshold: they differ only on exact ties, which random inputs do not hit."""
    pytest.importorskip("spikingjelly")
    sj = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    from spikingjelly.activation_based import functional, layer, neuron

    net = nn.Sequential(
        scaled(layer.Linear(4, 6), 2.0),
        neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=0.25, v_reset=0.0),
        layer.Linear(6, 3),
        neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=0.5, v_reset=0.0),
    )
    x = torch.rand(5, 30, 4) * 2
    model = snir.load(sj.export_to_nir(net, x[:, 0], dt=1e-4), dt=1e-4, discretisation="euler")
    functional.reset_net(net)
    want = torch.stack([net(x[:, t]) for t in range(x.shape[1])], 1)
    assert want.sum() > 0 and torch.equal(model(x), want)

    ours = nn.Sequential(
        scaled(nn.Linear(4, 6), 3.0), lif(0.5, threshold=0.25), nn.Linear(6, 3), lif(0.8, threshold=0.25)
    )
    graph = snir.export(ours, x, dt=1e-4, discretisation="euler")
    gm = sj.import_from_nir(graph, dt=1e-4, dtype=torch.float64)
    assert ours[:2](x).sum() > 0 and torch.equal(run_steps(gm, x), ours(x))


def test_sinabs_export_loads_with_the_same_spikes():
    """Sinabs' LIF with single spikes, reset to zero and norm_input: alpha = exp(-1/tau), input
    (1 - alpha) x: snnkern's exact discretisation with dt = 1 step."""
    sl = pytest.importorskip("sinabs.layers")
    from sinabs.activation import MembraneReset, SingleSpike
    from sinabs.nir import to_nir

    f32 = torch.float32  # Sinabs exports from a float32 network (its spikes are float32)

    def neuron(n, tau, threshold):
        return sl.LIF(
            tau_mem=torch.full((n,), tau, dtype=f32),
            spike_threshold=torch.full((n,), threshold, dtype=f32),  # a scalar fails NIR's shape check
            spike_fn=SingleSpike,
            reset_fn=MembraneReset(),
            norm_input=True,
        )

    net = nn.Sequential(
        scaled(nn.Linear(4, 6, dtype=f32), 3.0), neuron(6, 3.0, 0.25), nn.Linear(6, 3, dtype=f32), neuron(3, 5.0, 0.125)
    )
    x = torch.rand(5, 30, 4) * 3
    net(x.float())  # Sinabs' export reads the layer shapes from the neurons' states
    model = snir.load(to_nir(net, x[:1].float()), dt=1.0, discretisation="exact")
    ref = copy.deepcopy(net).double()
    for m in ref:
        if isinstance(m, sl.LIF):
            m.reset_states()
    # Sinabs' spikes are float32 whatever the input: cast between the layers
    hidden = ref[1](ref[0](x)).double()
    want = ref[3](ref[2](hidden)).double()
    assert hidden.sum() > 0 and want.sum() > 0
    assert torch.equal(model(x), want)
