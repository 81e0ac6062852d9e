"""The benchmarked implementations of each case, and the neuron each one computes.

Every builder returns a ``Workload``: tensors that need gradients, a ``forward()`` returning the
output the loss is taken from, and a ``config``: the snnkern neuron the implementation computes
(exactly, or the closest match with the difference in ``note``). ``check.py`` runs the same
inputs through ``snnkern.reference_ops`` configured with ``config`` and compares.

Peers (snnTorch, SpikingJelly, Norse) are optional: a missing one raises ``Skip``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import snnkern
from snnkern import seed_loops
from snnkern.surrogate import FastSigmoid, Sigmoid


class Skip(Exception):
    """This implementation does not run here (missing peer, unsupported case); the message says why."""


@dataclass
class LIFConfig:
    """Keyword arguments of ``snnkern.lif`` describing one neuron."""

    ordering: str = "delayed"
    reset: str = "zero"
    detach_reset: bool = False
    surrogate: object = Sigmoid(5.0)
    alpha_syn: float | None = None

    def kwargs(self) -> dict:
        return dict(
            ordering=self.ordering,
            reset=self.reset,
            detach_reset=self.detach_reset,
            surrogate=self.surrogate,
            alpha_syn=self.alpha_syn,
        )

    def describe(self) -> str:
        s = self.surrogate
        return f"{self.ordering}/{self.reset}{'/detached' if self.detach_reset else ''}/{type(s).__name__}({s.param:g})"


SEED000 = LIFConfig("delayed", "zero", False, Sigmoid(5.0))


@dataclass
class Workload:
    forward: Callable[[], torch.Tensor]  # runs the forward pass, returns the output
    inputs: list[torch.Tensor]  # leaves whose gradients are compared and cleared
    config: LIFConfig | None = None  # neuron the output should equal (scan-type cases)
    exact: bool = True  # False: closest match only (see note)
    note: str = ""
    step: Callable[[], None] | None = None  # optimizer step after backward (training cases)
    extra: dict[str, object] = field(default_factory=dict)
    per_step: bool = False  # run snnkern's recurrent op on its per-step path (not its row tasks)

    def context(self) -> contextlib.AbstractContextManager:
        """Where the workload's forward and backward run (the recurrent op's path switch)."""
        if self.per_step:
            from snnkern.testing import recurrent_per_step

            return recurrent_per_step()
        return contextlib.nullcontext()


def peer_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    version = getattr(module, "__version__", None)
    if version is None:  # SpikingJelly 2 has no __version__
        try:
            from importlib import metadata

            version = metadata.version(name)
        except Exception:  # noqa: BLE001
            version = "unknown"
    return str(version)


def _import_peer(name: str):
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001
        raise Skip(f"{name} not importable ({type(error).__name__}: {error}); pip install {name}") from None


# --------------------------------------------------------------------------------------------
# Scan-type cases: input current x [B, T, N] (optionally through Linear(n, n) first) -> spikes
# --------------------------------------------------------------------------------------------


def _naive_seed000(x, alpha):
    return seed_loops.seed000_hidden(x, alpha, 5.0)


def _snntorch_loop(x, alpha, surrogate_name):
    snn = _import_peer("snntorch")
    from snntorch import surrogate as sg

    spike_grad = sg.sigmoid(slope=5.0) if surrogate_name == "sigmoid" else sg.atan(alpha=2.0)
    lif = snn.Leaky(beta=alpha, threshold=1.0, spike_grad=spike_grad, reset_mechanism="subtract")
    lif = lif.to(x.device)

    def run(inp):
        mem = torch.zeros_like(inp[:, 0])
        out = []
        for t in range(inp.shape[1]):
            spk, mem = lif(inp[:, t], mem)
            out.append(spk)
        return torch.stack(out, dim=1)

    return run


# SpikingJelly 2 runs its LIF as one registered op (sj_lif) with several CUDA providers: "cuda" (native
# CUDA C++, only when built from source: tools/gpu_check.sh builds it from the sdist in .gpu-wheels/),
# "triton", and "torch" (the reference). It has no cupy backend any more. Each GPU provider is its own row.
SJ_GPU_PROVIDERS = {"spikingjelly-cuda": "cuda", "spikingjelly-triton": "triton"}


def _sj_bind_provider(provider: str, device) -> str:
    """Binds SpikingJelly 2's LIF op to ``provider`` ('auto' = its own choice, 'cuda', 'triton') and returns
    the provider that will run. SpikingJelly reads SJ_LIF_CUDA_IMPLEMENTATION once, at import; this sets
    the same choice on the op's (private) selection object and drops the provider it had cached."""
    try:
        from spikingjelly._ops import lif as sj_lif_ops
        from spikingjelly.activation_based.functional.neuron import neuron_implementation

        selection = sj_lif_ops._selection
        selection._requested = provider
        selection._selections.clear()
        selection._compiled_selections.clear()
    except Exception as error:  # noqa: BLE001 - another SpikingJelly version
        if provider == "auto":
            return "automatic"
        raise Skip(
            f"cannot pick SpikingJelly's {provider!r} LIF provider in this version ({type(error).__name__}: {error})"
        ) from None
    if device.type != "cuda":
        return "CPU provider"
    try:
        info = neuron_implementation("lif", device)
    except Exception as error:  # noqa: BLE001 - the forced provider is not there
        raise Skip(f"SpikingJelly LIF provider {provider!r} unavailable: {str(error)[:300]}") from None
    if provider != "auto" and info["implementation"] != provider:
        raise Skip(f"SpikingJelly ran {info['implementation']!r} instead of {provider!r}: {info['unavailable']}")
    return info["implementation"]


def _spikingjelly_module(alpha, device, provider: str = "auto"):
    _import_peer("spikingjelly")
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except Exception as error:  # noqa: BLE001
        raise Skip(f"spikingjelly.activation_based not importable ({error})") from None
    # decay_input=False, v_reset=0: H = (1 - 1/tau) V + X, so tau = 1 / (1 - alpha) gives H = alpha V + X.
    kwargs = dict(
        tau=1.0 / (1.0 - alpha),
        decay_input=False,
        v_threshold=1.0,
        v_reset=0.0,
        surrogate_function=surrogate.Sigmoid(alpha=5.0),
        detach_reset=False,
        step_mode="m",
    )
    try:  # SpikingJelly < 2 takes backend= ('torch' | 'cupy'); pick the fastest one available
        backend = "torch"
        if device.type == "cuda" and importlib.util.find_spec("cupy") is not None:
            backend = "cupy"
        node = neuron.LIFNode(backend=backend, **kwargs).to(device)
        if provider != "auto":
            raise Skip(
                f"SpikingJelly {getattr(_import_peer('spikingjelly'), '__version__', '< 2')} has no "
                f"{provider!r} LIF provider (backend={backend!r} is in the 'spikingjelly' row)"
            )
    except TypeError:  # SpikingJelly >= 2: one registered op (sj_lif) that picks its provider itself
        bound = _sj_bind_provider(provider, device)
        node = neuron.LIFNode(**kwargs).to(device)
        backend = (
            f"sj_lif op, {bound}"
            if device.type == "cpu"
            else f"sj_lif op, CUDA provider {bound}" + (" (its automatic choice)" if provider == "auto" else "")
        )

    def run(inp):
        functional.reset_net(node)
        return node(inp.transpose(0, 1).contiguous()).transpose(0, 1)

    return run, backend


def _norse_loop(alpha, device):
    _import_peer("norse")
    try:
        from norse.torch import LIFBoxCell, LIFBoxParameters
    except Exception as error:  # noqa: BLE001
        raise Skip(f"norse.torch not importable ({error})") from None
    c = 1.0 - alpha  # dv = c (x' - v): v <- alpha v + c x'; feed x' = x / c to get alpha v + x
    params = LIFBoxParameters(
        tau_mem_inv=torch.tensor(c),
        v_leak=torch.tensor(0.0),
        v_th=torch.tensor(1.0),
        v_reset=torch.tensor(0.0),
        method="super",
        alpha=torch.tensor(100.0),
    )
    cell = LIFBoxCell(p=params, dt=1.0).to(device)

    def run(inp):
        state = None
        out = []
        scaled = inp / c
        for t in range(inp.shape[1]):
            z, state = cell(scaled[:, t], state)
            out.append(z)
        return torch.stack(out, dim=1)

    return run


# The charge-fire-reset neuron of SpikingJelly and Norse is snnkern's charge_first ordering.
SJ_CONFIG = LIFConfig("charge_first", "zero", False, Sigmoid(5.0))
SJ_NOTE = (
    "SpikingJelly LIFNode(decay_input=False, v_reset=0, Sigmoid(5)) is snnkern charge_first/zero/Sigmoid(5) "
    "(it fires at V >= threshold, snnkern at V > threshold: equal but for exact ties)"
)
# Norse 1.1's SuperSpike ignores its alpha: the derivative is 1 / (|x| + 1)^2, FastSigmoid(1).
NORSE_CONFIG = LIFConfig("charge_first", "zero", False, FastSigmoid(1.0))
NORSE_NOTE = (
    "Norse LIFBoxCell(method='super', input scaled by 1/(1-alpha)) is snnkern charge_first/zero/FastSigmoid(1) "
    "(Norse 1.1's SuperSpike ignores alpha), up to the rounding of the input scaling"
)
SNNTORCH_NOTE = (
    "snnTorch Leaky(reset_mechanism='subtract', spike_grad=sigmoid(slope=5)) is exactly snnkern "
    "update_first/subtract/detach_reset=True/Sigmoid(5) (snnTorch detaches its reset); "
    "snnTorch cannot do seed 000's delayed ordering or its zero reset"
)


def scan_impl(impl: str, x: torch.Tensor, alpha: float, linear: torch.nn.Linear | None = None) -> Workload:
    """x: [B, T, N] leaf requiring grad. With ``linear`` the case is Linear(n, n) -> LIF."""
    device = x.device
    params = [x] + (list(linear.parameters()) if linear is not None else [])

    def wrap(fn):
        if linear is None:
            return lambda: fn(x)
        return lambda: fn(linear(x))

    if impl == "naive":
        return Workload(
            wrap(lambda h: _naive_seed000(h, alpha)),
            params,
            SEED000,
            note="seed 000's python loop (snnkern.seed_loops.seed000_hidden)",
        )
    if impl in ("reference", "fused"):
        backend = "reference" if impl == "reference" else "compiled"
        return Workload(
            wrap(lambda h: snnkern.lif(h, alpha, backend=backend, **SEED000.kwargs()).spikes), params, SEED000
        )
    if impl == "fused@snntorch":
        cfg = LIFConfig("update_first", "subtract", True, Sigmoid(5.0))
        return Workload(
            wrap(lambda h: snnkern.lif(h, alpha, backend="compiled", **cfg.kwargs()).spikes),
            params,
            cfg,
            note="snnkern fused configured as the snnTorch neuron",
        )
    if impl == "fused@sj":
        return Workload(
            wrap(lambda h: snnkern.lif(h, alpha, backend="compiled", **SJ_CONFIG.kwargs()).spikes),
            params,
            SJ_CONFIG,
            note="snnkern fused configured as the SpikingJelly neuron",
        )
    if impl == "torch.compile":
        fn = torch.compile(lambda h: _naive_seed000(h, alpha))
        return Workload(wrap(fn), params, SEED000, note="torch.compile of the naive loop (inductor)")
    if impl == "snntorch":
        run = _snntorch_loop(x, alpha, "sigmoid")
        return Workload(
            wrap(run), params, LIFConfig("update_first", "subtract", True, Sigmoid(5.0)), note=SNNTORCH_NOTE
        )
    if impl == "spikingjelly" or impl in SJ_GPU_PROVIDERS:
        if impl in SJ_GPU_PROVIDERS and device.type != "cuda":
            raise Skip("SpikingJelly's GPU providers run on CUDA devices only")
        run, backend = _spikingjelly_module(alpha, device, SJ_GPU_PROVIDERS.get(impl, "auto"))
        return Workload(wrap(run), params, SJ_CONFIG, note=f"backend={backend}; " + SJ_NOTE)
    if impl == "norse":
        run = _norse_loop(alpha, device)
        return Workload(wrap(run), params, NORSE_CONFIG, note=NORSE_NOTE)
    raise Skip(f"implementation {impl!r} does not apply to this case")


SCAN_IMPLS = [
    "naive",
    "reference",
    "fused",
    "torch.compile",
    "snntorch",
    "fused@snntorch",
    "spikingjelly",
    "spikingjelly-cuda",
    "spikingjelly-triton",
    "fused@sj",
    "norse",
]


# --------------------------------------------------------------------------------------------
# Recurrent layer at the SHD shape: x [B, T, 700] -> projection -> recurrent two-state LIF
# --------------------------------------------------------------------------------------------

SHD_TAU_MEM, SHD_TAU_SYN, DT = 10e-3, 5e-3, 1e-3


def recurrent_impl(impl: str, x: torch.Tensor, hidden: int, seed: int = 0) -> Workload:
    beta, alpha = snnkern.decay(SHD_TAU_MEM, DT), snnkern.decay(SHD_TAU_SYN, DT)
    gen = torch.Generator().manual_seed(seed)
    n_in = x.shape[2]
    w1 = (torch.randn(n_in, hidden, generator=gen) / math.sqrt(n_in)).to(x.device)
    v1 = (torch.randn(hidden, hidden, generator=gen) / math.sqrt(hidden)).to(x.device)
    note = "seed 004 hidden layer: spike_first/zero/detached/FastSigmoid(100), syn + mem, recurrent v1"
    if impl in ("naive", "torch.compile"):
        w1p, v1p = w1.clone().requires_grad_(), v1.clone().requires_grad_()

        def fwd(inp):
            return seed_loops.seed004_hidden(torch.einsum("btc,cd->btd", inp, w1p), v1p, alpha, beta)[1]

        if impl == "torch.compile":
            fwd = torch.compile(fwd)
        return Workload(
            lambda: fwd(x),
            [x, w1p, v1p],
            None,
            note=note + ("; torch.compile" if impl != "naive" else ""),
            extra={"grads": lambda: [w1p.grad, v1p.grad]},
        )
    if impl in ("fused", "fused per-step", "reference"):
        try:
            from snnkern.nn import RecurrentLIF
        except Exception as error:  # noqa: BLE001
            raise Skip(f"snnkern.nn.RecurrentLIF not available ({error})") from None
        # The input is a spike train: the fused layer projects it event-driven (sparse_input).
        layer = RecurrentLIF(
            n_in,
            hidden,
            alpha=beta,
            alpha_syn=alpha,
            ordering="spike_first",
            reset="zero",
            detach_reset=True,
            surrogate=FastSigmoid(100.0),
            sparse_input=impl != "reference",
            backend="reference" if impl == "reference" else "compiled",
        ).to(x.device)
        with torch.no_grad():
            layer.linear.weight.copy_(w1.T)
            layer.recurrent_weight.copy_(v1.T)
        notes = {
            "fused": "compiled, sparse_input=True, row tasks",
            "fused per-step": "compiled, sparse_input=True, the per-step path (snnkern.testing.recurrent_per_step)",
            "reference": "reference",
        }
        return Workload(
            lambda: layer(x),
            [x] + list(layer.parameters()),
            None,
            note=f"snnkern.nn.RecurrentLIF ({notes[impl]})",
            extra={"grads": lambda: [layer.linear.weight.grad.T, layer.recurrent_weight.grad.T]},
            per_step=impl == "fused per-step",
        )
    raise Skip("no peer model of seed 004's recurrent two-state layer is configured in this benchmark")


RECURRENT_IMPLS = [
    "naive",
    "reference",
    "fused",
    "fused per-step",
    "torch.compile",
    "snntorch",
    "spikingjelly",
    "norse",
]


# --------------------------------------------------------------------------------------------
# One training step (forward, loss, backward, Adam) of the seed models
# --------------------------------------------------------------------------------------------


def training_impl(impl: str, model_name: str, inputs: torch.Tensor, labels: torch.Tensor) -> Workload:
    device = inputs.device
    try:
        from snnkern import models
    except Exception as error:  # noqa: BLE001
        raise Skip(f"snnkern.models not available ({error})") from None
    torch.manual_seed(0)  # same initial weights in every implementation of this case
    if model_name == "ipd":
        model = models.IPDSNN(input_size=inputs.shape[2])
    elif model_name == "dale":
        model = models.dales_ipd_snn(input_size=inputs.shape[2])
    elif model_name == "shd":
        model = models.SHDRecurrentSNN(input_size=inputs.shape[2])
    else:
        raise ValueError(model_name)
    model = model.to(device)

    if impl == "fused per-step" and model_name != "shd":
        raise Skip("the model has no recurrent layer: its fused row is the same")
    if impl in ("fused", "fused per-step", "reference"):
        backend = "reference" if impl == "reference" else "compiled"
        for module in model.modules():
            if hasattr(module, "backend"):
                module.backend = backend
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)

        def loss_fn():
            out = model(inputs, return_hidden=False) if model_name == "shd" else model(inputs)
            scores = model.scores(out)
            if model_name == "shd":
                return torch.nn.functional.cross_entropy(scores, labels)
            return torch.nn.functional.nll_loss(torch.log_softmax(scores, dim=1), labels)

        def grads():
            if model_name == "shd":
                return [
                    model.hidden.linear.weight.grad.T,
                    model.hidden.recurrent_weight.grad.T,
                    model.readout.linear.weight.grad.T,
                ]
            return [model.hidden.linear.weight.grad.T, model.readout.linear.weight.grad.T]

        return Workload(
            loss_fn,
            list(model.parameters()),
            step=opt.step,
            note=f"snnkern.models ({backend}{', recurrent per-step path' if impl == 'fused per-step' else ''})",
            extra={"grads": grads, "zero": opt.zero_grad},
            per_step=impl == "fused per-step",
        )

    if impl in ("naive", "torch.compile"):
        if model_name == "shd":
            w1 = model.hidden.linear.weight.detach().T.clone().requires_grad_()
            v1 = model.hidden.recurrent_weight.detach().T.clone().requires_grad_()
            w2 = model.readout.linear.weight.detach().T.clone().requires_grad_()
            params = [w1, v1, w2]
            beta, alpha = snnkern.decay(SHD_TAU_MEM, DT), snnkern.decay(SHD_TAU_SYN, DT)

            def loss_fn_raw(inp, lab):
                out, _ = seed_loops.seed004_snn(inp, w1, w2, v1, alpha, beta)
                return torch.nn.functional.cross_entropy(out.max(dim=1).values, lab)
        else:
            lin1, lin2 = model.hidden.linear, model.readout.linear
            w1 = lin1.weight.detach().T.clone().requires_grad_()
            w2 = lin2.weight.detach().T.clone().requires_grad_()
            params = [w1, w2]
            signs = None
            if hasattr(lin1, "signs"):
                signs = (lin1.signs.reshape(-1, 1), lin2.signs.reshape(-1, 1))
            tau = 5e-3 if model_name == "dale" else 20e-3
            alpha = snnkern.decay(tau, DT)

            def loss_fn_raw(inp, lab):
                out = (
                    seed_loops.seed001_snn(inp, w1, w2, signs, alpha)
                    if signs is not None
                    else seed_loops.seed000_snn(inp, w1, w2, alpha)
                )
                return torch.nn.functional.nll_loss(torch.log_softmax(out.mean(dim=1), dim=1), lab)

        if impl == "torch.compile":
            loss_fn_raw = torch.compile(loss_fn_raw)
        opt = torch.optim.Adam(params, lr=2e-4)
        return Workload(
            lambda: loss_fn_raw(inputs, labels),
            params,
            step=opt.step,
            note="seed loop (snnkern.seed_loops)" + (", torch.compile of the loss" if impl != "naive" else ""),
            extra={"grads": lambda: [p.grad for p in params], "zero": opt.zero_grad},
        )
    raise Skip("no peer version of the seed model is configured in this benchmark")


TRAINING_IMPLS = ["naive", "reference", "fused", "fused per-step", "torch.compile", "snntorch", "spikingjelly", "norse"]


# --------------------------------------------------------------------------------------------
# One training step of the conv SNN of examples/digits_conv.py (the model is built there)
# --------------------------------------------------------------------------------------------


def digits_example():
    """examples/digits_conv.py as a module (its builders; it imports scikit-learn and tqdm only to run)."""
    name = "snnkern_example_digits_conv"
    if name not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "digits_conv.py")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise Skip(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
    return sys.modules[name]


class NaiveChargeFirstLIF(torch.nn.Module):
    """The example's neuron as a python loop over time ([batch, time, ...]): charge, fire, reset to 0."""

    def __init__(self, alpha: float, threshold: float, slope: float) -> None:
        super().__init__()
        self.alpha, self.threshold, self.slope = alpha, threshold, slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[:, 0])
        out = []
        for t in range(x.shape[1]):
            p = self.alpha * v + x[:, t]
            z = seed_loops.spike_sigmoid(p - self.threshold, self.slope)
            out.append(z)
            v = p * (1.0 - z)
        return torch.stack(out, dim=1)


CONV_NOTE = (
    "examples/digits_conv.py: Conv(1,C)-LIF-MaxPool-Conv(C,2C)-LIF-Linear-LIF, charge_first/zero/Sigmoid(4), "
    "alpha 0.5 (SpikingJelly LIFNode tau=2, decay_input=False), CE on readout spike counts, Adam"
)


def conv_impl(impl: str, inputs: torch.Tensor, labels: torch.Tensor, channels: int) -> Workload:
    """inputs: [B, T, 1, H, W] spikes; one step of forward, loss, backward and Adam."""
    ex = digits_example()
    from snnkern.nn import TimeFolded

    torch.manual_seed(0)  # same initial weights in every implementation of this case
    layers = ex.per_step_layers(channels, size=inputs.shape[-1])
    if impl in ("fused", "reference"):
        model = ex.build_snnkern(layers, backend="compiled" if impl == "fused" else "reference")
        note = f"snnkern.nn.LIFNeuron ({'compiled' if impl == 'fused' else 'reference'})"
    elif impl in ("naive", "torch.compile"):
        neuron = lambda: NaiveChargeFirstLIF(1.0 - 1.0 / ex.TAU, ex.THRESHOLD, ex.SURROGATE_ALPHA)  # noqa: E731
        model = torch.nn.Sequential(*[neuron() if m == "lif" else TimeFolded(m) for m in layers])
        note = "python loop over time" + ("; torch.compile of the loss" if impl == "torch.compile" else "")
    elif impl == "spikingjelly":
        _import_peer("spikingjelly")
        try:
            model = ex.build_spikingjelly(layers)
        except Exception as error:  # noqa: BLE001
            raise Skip(f"spikingjelly.activation_based not importable ({error})") from None
        note = "multi-step LIFNode (sj_lif op), layer.SeqToANNContainer, time-major"
    else:
        raise Skip("no peer version of the conv model is configured in this benchmark")
    model = model.to(inputs.device)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)

    def loss_fn(inp, lab):
        return torch.nn.functional.cross_entropy(model(inp).sum(dim=1), lab)

    if impl == "torch.compile":
        loss_fn = torch.compile(loss_fn)
    return Workload(
        lambda: loss_fn(inputs, labels),
        params,
        step=opt.step,
        note=f"{note}; {CONV_NOTE}",
        extra={"grads": lambda: [p.grad for p in params], "zero": opt.zero_grad},
    )


CONV_IMPLS = ["naive", "reference", "fused", "torch.compile", "spikingjelly"]
