"""snnkern.compat layers against the peer layers they replace: speed and agreement, side by side.

    python benchmarks/compat.py                      # every layer, CPU, all cores
    python benchmarks/compat.py --threads 2 --layer snntorch --layer sinabs
    python benchmarks/compat.py --quick              # smoke run (CI): every row once, tiny shapes

Each row builds the peer's layer and the snnkern.compat layer with the same constructor arguments
(the peer's own), feeds both the same input in the peer's layout and times forward and backward
(upstream gradient: a fixed random tensor), alternating the two so that both see the same machine
state; reported are medians after warm-up. The peer runs as its users run it: snnTorch's
``Leaky``/``Synaptic`` and Norse's ``LIFBoxCell`` step by step in a python loop over time, the
other peers' sequence layers on the whole sequence. The snnkern side runs the whole sequence in one
fused scan (``Leaky.sequence``, ``Synaptic.sequence``, ``LIFBox``, multi-step ``LIFNode``); the
``(step loop)`` row times the drop-in snnTorch ``Leaky`` called step by step, as unchanged user code
would. Before timing, each row checks that both sides agree: spikes (mismatch fraction) and the
gradients of the input and of every learnable parameter (largest relative error).

Shapes: ``dense`` B32 T100 256 neurons, ``conv`` B32 T100 [8, 16, 16] (2048 neurons per step).
A row whose peer package or snnkern.compat class is missing, or which the compat layer refuses,
is reported as skipped with the reason.

Writes compat.json and compat.md to benchmarks/results/<device-slug>/ (``--quick``:
``<device-slug>-quick/``; ``--json PATH`` puts both next to PATH).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

import snnkern  # noqa: E402
from device import device_name, device_slug  # noqa: E402

PEERS = ("snntorch", "spikingjelly", "norse", "sinabs")


class Skip(Exception):
    """This row does not run here; the message says why."""


def peer_version(name: str) -> str | None:
    try:
        from importlib import metadata

        return metadata.version(name)
    except Exception:  # noqa: BLE001 - not installed
        return None


def _peer(name: str):
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - any import failure means "not available"
        raise Skip(f"{name} not importable ({type(error).__name__}: {error})") from None


def _compat(peer: str, cls: str):
    """``snnkern.compat.<peer>.<cls>``, or Skip with the reason."""
    _peer(peer)
    try:
        module = importlib.import_module(f"snnkern.compat.{peer}")
    except Exception as error:  # noqa: BLE001
        raise Skip(f"snnkern.compat.{peer} not importable ({type(error).__name__}: {error})") from None
    if not hasattr(module, cls):
        raise Skip(f"snnkern.compat.{peer} has no {cls}")
    return getattr(module, cls)


def _build(make: Callable[[], torch.nn.Module], side: str) -> torch.nn.Module:
    try:
        return make()
    except (NotImplementedError, ValueError, TypeError) as error:
        raise Skip(f"{side} refuses these arguments ({type(error).__name__}: {str(error)[:200]})") from None


# --------------------------------------------------------------------------------------------
# Rows: a peer layer and its snnkern.compat replacement, as two functions of the same input
# --------------------------------------------------------------------------------------------


@dataclass
class Pair:
    peer: Callable[[torch.Tensor], torch.Tensor]  # input in the peer's layout -> output (spikes)
    ours: Callable[[torch.Tensor], torch.Tensor]
    peer_module: torch.nn.Module
    ours_module: torch.nn.Module
    peer_impl: str  # how the peer runs
    ours_impl: str


@dataclass
class Row:
    layer: str  # e.g. "snntorch.Leaky"
    peer: str  # package
    time_major: bool  # the peer's layout: [T, B, ...] (else [B, T, ...])
    make: Callable[[torch.device, int], Pair]  # (device, input features of the dense shape)
    mean: float  # input current: N(mean, std), chosen so that the neurons fire at a moderate rate
    std: float
    shapes: tuple[str, ...] = ("dense", "conv")
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def _snntorch_steps(layer: torch.nn.Module, synaptic: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """snnTorch's documented usage: a python loop over time, the state passed along ([T, B, ...])."""

    def run(x: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(x[0])
        syn = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            if synaptic:
                spk, syn, mem = layer(x[t], syn, mem)
            else:
                spk, mem = layer(x[t], mem)
            out.append(spk)
        return torch.stack(out)

    return run


def snntorch_leaky(device, features, step_loop: bool = False) -> Pair:
    snn = _peer("snntorch")
    Leaky = _compat("snntorch", "Leaky")
    kwargs = dict(beta=0.9)  # defaults otherwise: subtract reset, reset_delay, atan(2) surrogate
    peer = snn.Leaky(**kwargs).to(device)
    ours = _build(lambda: Leaky(**kwargs), "snnkern.compat.snntorch.Leaky").to(device)
    if step_loop:
        return Pair(_snntorch_steps(peer, False), _snntorch_steps(ours, False), peer, ours, "step loop", "step loop")

    def fused(x):
        return ours.sequence(x, torch.zeros_like(x[0]))[0]

    return Pair(_snntorch_steps(peer, False), fused, peer, ours, "step loop", "Leaky.sequence (one fused scan)")


def snntorch_synaptic(device, features) -> Pair:
    snn = _peer("snntorch")
    Synaptic = _compat("snntorch", "Synaptic")
    kwargs = dict(alpha=0.8, beta=0.9)
    peer = snn.Synaptic(**kwargs).to(device)
    ours = _build(lambda: Synaptic(**kwargs), "snnkern.compat.snntorch.Synaptic").to(device)

    def fused(x):
        zero = torch.zeros_like(x[0])
        return ours.sequence(x, zero, zero)[0]

    return Pair(_snntorch_steps(peer, True), fused, peer, ours, "step loop", "Synaptic.sequence (one fused scan)")


def _sj_peer_node(**kwargs):
    _peer("spikingjelly")
    from spikingjelly.activation_based import neuron

    try:  # SpikingJelly 0.0.0.0.14 takes backend='torch' | 'cupy'; SpikingJelly 2 has one op and no backend=
        return neuron.LIFNode(backend="torch", **kwargs), "step_mode='m', backend='torch'"
    except TypeError:
        return neuron.LIFNode(**kwargs), "step_mode='m' (SpikingJelly 2: sj_lif op, its CPU provider)"


def spikingjelly_lif(device, features) -> Pair:
    LIFNode = _compat("spikingjelly", "LIFNode")
    kwargs = dict(tau=2.0, step_mode="m")  # defaults otherwise: decay_input, v_reset=0, Sigmoid(4)
    peer, how = _sj_peer_node(**kwargs)
    peer = peer.to(device)
    ours = _build(lambda: LIFNode(**kwargs), "snnkern.compat.spikingjelly.LIFNode").to(device)

    def stateless(node):
        def run(x):
            node.reset()  # SpikingJelly keeps v between calls (functional.reset_net does this)
            return node(x)

        return run

    return Pair(stateless(peer), stateless(ours), peer, ours, how, "step_mode='m' (one fused scan)")


def _norse_p(box: bool):
    _peer("norse")
    from norse.torch import LIFBoxParameters, LIFParameters

    return LIFBoxParameters() if box else LIFParameters()  # tau_mem_inv 100, tau_syn_inv 200, dt 1e-3


def norse_lif(device, features) -> Pair:
    norse = _peer("norse")
    LIF = _compat("norse", "LIF")
    p = _norse_p(False)
    peer = norse.torch.LIF(p).to(device)
    ours = _build(lambda: LIF(p), "snnkern.compat.norse.LIF").to(device)
    return Pair(lambda x: peer(x)[0], lambda x: ours(x)[0], peer, ours, "LIF (its own loop)", "LIF (one fused scan)")


def norse_lifbox(device, features) -> Pair:
    norse = _peer("norse")
    LIFBox = _compat("norse", "LIFBox")
    p = _norse_p(True)
    cell = norse.torch.LIFBoxCell(p).to(device)
    ours = _build(lambda: LIFBox(p), "snnkern.compat.norse.LIFBox").to(device)

    def steps(x):
        state, out = None, []
        for t in range(x.shape[0]):
            z, state = cell(x[t], state)
            out.append(z)
        return torch.stack(out)

    return Pair(steps, lambda x: ours(x)[0], cell, ours, "LIFBoxCell step loop", "LIFBox (one fused scan)")


def norse_lif_recurrent(device, features) -> Pair:
    norse = _peer("norse")
    LIFRecurrent = _compat("norse", "LIFRecurrent")
    p = _norse_p(False)
    peer = norse.torch.LIFRecurrent(features, features, p).to(device)
    ours = _build(lambda: LIFRecurrent(features, features, p), "snnkern.compat.norse.LIFRecurrent").to(device)
    ours.load_state_dict(peer.state_dict())  # the same input and recurrent weights
    return Pair(
        lambda x: peer(x)[0],
        lambda x: ours(x)[0],
        peer,
        ours,
        f"LIFRecurrent({features}, {features}) (its own loop)",
        "LIFRecurrent (one matmul + fused recurrent scan)",
    )


def _sinabs_pair(cls: str, kwargs: dict, device) -> Pair:
    _peer("sinabs")
    ours_cls = _compat("sinabs", cls)
    layers = importlib.import_module("sinabs.layers")
    peer = getattr(layers, cls)(**kwargs).to(device)
    ours = _build(lambda: ours_cls(**kwargs), f"snnkern.compat.sinabs.{cls}").to(device)

    def stateless(layer):
        def run(x):
            layer.reset_states()  # Sinabs layers keep their state between calls
            return layer(x)

        return run

    return Pair(stateless(peer), stateless(ours), peer, ours, f"{cls} (its own loop)", f"{cls} (one fused scan)")


def sinabs_lif(device, features) -> Pair:
    return _sinabs_pair("LIF", dict(tau_mem=20.0), device)  # MultiSpike, MembraneSubtract, SingleExponential


def sinabs_iaf(device, features) -> Pair:
    return _sinabs_pair("IAF", dict(), device)


ROWS = [
    Row("snntorch.Leaky", "snntorch", True, snntorch_leaky, 0.12, 0.3, note="beta=0.9"),
    Row(
        "snntorch.Leaky (step loop)",
        "snntorch",
        True,
        lambda d, f: snntorch_leaky(d, f, step_loop=True),
        0.12,
        0.3,
        note="beta=0.9; the drop-in layer called step by step, as unchanged snnTorch code does",
    ),
    Row("snntorch.Synaptic", "snntorch", True, snntorch_synaptic, 0.03, 0.1, note="alpha=0.8, beta=0.9"),
    Row("spikingjelly.LIFNode", "spikingjelly", True, spikingjelly_lif, 0.5, 1.0, note="tau=2.0, step_mode='m'"),
    Row("norse.LIF", "norse", True, norse_lif, 0.3, 1.0, note="LIFParameters() defaults, dt=1e-3"),
    Row("norse.LIFBox", "norse", True, norse_lifbox, 1.2, 2.0, note="LIFBoxParameters() defaults, dt=1e-3"),
    Row(
        "norse.LIFRecurrent",
        "norse",
        True,
        norse_lif_recurrent,
        0.3,
        1.0,
        shapes=("dense",),
        note="LIFParameters() defaults; input and recurrent weights copied from the peer",
    ),
    Row("sinabs.LIF", "sinabs", False, sinabs_lif, 1.8, 3.0, note="tau_mem=20 (MultiSpike, subtract reset)"),
    Row("sinabs.IAF", "sinabs", False, sinabs_iaf, 0.04, 0.3, note="defaults (MultiSpike, subtract reset)"),
]


def shapes(quick: bool) -> dict[str, tuple[int, ...]]:
    """[batch, time, *neurons] of each shape kind."""
    if quick:
        return {"dense": (4, 10, 16), "conv": (2, 10, 2, 4, 4)}
    return {"dense": (32, 100, 256), "conv": (32, 100, 8, 16, 16)}


# --------------------------------------------------------------------------------------------
# Timing and agreement
# --------------------------------------------------------------------------------------------


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _params(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def _zero(x: torch.Tensor, module: torch.nn.Module) -> None:
    x.grad = None
    for p in module.parameters():
        p.grad = None


def _step(fn, x, g, module, device) -> tuple[torch.Tensor, float, float]:
    """One forward and backward; ``(output, forward ms, backward ms)``."""
    _zero(x, module)
    _sync(device)
    t0 = time.perf_counter()
    out = fn(x)
    _sync(device)
    t1 = time.perf_counter()
    (out * g).sum().backward()
    _sync(device)
    t2 = time.perf_counter()
    return out.detach(), (t1 - t0) * 1e3, (t2 - t1) * 1e3


def rel_err(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None and b is None:
        return 0.0
    a = torch.zeros_like(b) if a is None else a
    b = torch.zeros_like(a) if b is None else b
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check(pair: Pair, x: torch.Tensor, g: torch.Tensor, device) -> dict[str, object]:
    xp, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_p, _, _ = _step(pair.peer, xp, g, pair.peer_module, device)
    out_o, _, _ = _step(pair.ours, xo, g, pair.ours_module, device)
    errs = {"input": rel_err(xo.grad, xp.grad)}
    peer_params, ours_params = _params(pair.peer_module), _params(pair.ours_module)
    for name, p in peer_params.items():
        if name in ours_params:
            errs[name] = rel_err(ours_params[name].grad, p.grad)
    worst = max(errs, key=lambda k: errs[k])
    mismatch = float((out_p != out_o.to(out_p.dtype)).float().mean())
    result: dict[str, object] = {
        "spike_rate": float(out_p.float().mean()),
        "spike_mismatch": mismatch,
        "grad_rel_err": errs[worst],
        "grad_rel_err_of": worst,
        "grads_compared": sorted(errs),
    }
    result["agrees"] = "yes" if mismatch <= 1e-3 and errs[worst] <= 1e-2 else "NO"
    return result


def time_pair(pair: Pair, x: torch.Tensor, g: torch.Tensor, device, warmup: int, repeats: int, budget_s: float):
    """Alternates peer and snnkern steps (order swapped every repeat); medians of the timed repeats."""
    xp, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    times: dict[str, list[tuple[float, float]]] = {"peer": [], "ours": []}
    deadline = None
    for i in range(warmup + repeats):
        sides = [("peer", pair.peer, xp, pair.peer_module), ("ours", pair.ours, xo, pair.ours_module)]
        for side, fn, inp, module in sides if i % 2 == 0 else sides[::-1]:
            _, f, b = _step(fn, inp, g, module, device)
            if i >= warmup:
                times[side].append((f, b))
        if i >= warmup:
            if deadline is None:
                deadline = time.perf_counter() + budget_s
            elif time.perf_counter() > deadline and len(times["peer"]) >= 3:
                break
    out: dict[str, object] = {"repeats": len(times["peer"])}
    for side, ts in times.items():
        out[f"{side}_forward_ms"] = statistics.median(f for f, _ in ts)
        out[f"{side}_backward_ms"] = statistics.median(b for _, b in ts)
        out[f"{side}_total_ms"] = statistics.median(f + b for f, b in ts)
    out["speedup"] = out["peer_total_ms"] / out["ours_total_ms"]
    out["forward_speedup"] = out["peer_forward_ms"] / out["ours_forward_ms"]
    return out


def bench_row(row: Row, kind: str, shape: tuple[int, ...], device, args) -> dict[str, object]:
    b, t, *neurons = shape
    layout = [t, b, *neurons] if row.time_major else [b, t, *neurons]
    result: dict[str, object] = {
        "layer": row.layer,
        "peer": row.peer,
        "shape_kind": kind,
        "shape": "B{} T{} {}".format(b, t, "x".join(map(str, neurons))),
        "layout": "[T, B, ...]" if row.time_major else "[B, T, ...]",
        "note": row.note,
    }
    t0 = time.perf_counter()
    try:
        if kind not in row.shapes:
            raise Skip(f"{row.layer} takes 1-D neurons ([..., features]) only")
        torch.manual_seed(0)
        pair = row.make(device, neurons[-1])
        result.update(peer_impl=pair.peer_impl, ours_impl=pair.ours_impl)
        gen = torch.Generator().manual_seed(1)
        x = (torch.randn(layout, generator=gen) * row.std + row.mean).to(device)
        with torch.no_grad():
            g_shape = pair.peer(x).shape
        g = torch.randn(g_shape, generator=gen).to(device)
        if not args.no_check:
            result.update(check(pair, x, g, device))
        warmup, repeats = (0, 1) if args.quick else (args.warmup, args.repeats)
        result.update(time_pair(pair, x, g, device, warmup, repeats, args.time_budget))
        result["status"] = "ok"
    except Skip as why:
        result.update(status="skipped", reason=str(why))
    except Exception as error:  # noqa: BLE001 - report it, go on with the other rows
        result.update(status="error", reason=f"{type(error).__name__}: {str(error)[:300]}")
        traceback.print_exc()
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    return result


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def environment(device, name, args) -> dict[str, object]:
    compat = {}
    for peer in PEERS:
        try:
            importlib.import_module(f"snnkern.compat.{peer}")
            compat[peer] = "ok"
        except Exception as error:  # noqa: BLE001
            compat[peer] = f"{type(error).__name__}: {str(error)[:120]}"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "device_type": device.type,
        "device_slug": device_slug(name, device.type),
        "torch": torch.__version__,
        "snnkern": snnkern.__version__,
        "snnkern_compiled": snnkern.ops._C is not None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "peers": {p: peer_version(p) for p in PEERS},
        "compat_modules": compat,
        "quick": bool(args.quick),
        "timing": ("CUDA-synchronised " if device.type == "cuda" else "")
        + f"time.perf_counter, peer and snnkern alternating, median of up to {args.repeats} after "
        f"{args.warmup} warm-up (or fewer past {args.time_budget:g} s per row)",
    }


def _fmt(v, digits=2) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if abs(v) >= 1e4:
            return f"{v:.0f}"
        if v != 0 and abs(v) < 10**-digits:
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def format_row(r) -> str:
    head = f"{r['layer']:<28} {r['shape']:<22}"
    if r.get("status") != "ok":
        return f"{head} {r.get('status')}: {r.get('reason', '')}"
    return (
        f"{head} peer {r['peer_total_ms']:9.2f} ms  snnkern {r['ours_total_ms']:8.2f} ms  "
        f"speedup {r['speedup']:6.2f}x  (fwd {r['forward_speedup']:6.2f}x)  rate {r.get('spike_rate', 0):.3f}  "
        f"agrees {r.get('agrees', '-')}"
    )


def markdown(env, rows) -> str:
    peers = ", ".join(f"{k} {v or 'not installed'}" for k, v in env["peers"].items())
    lines = [
        f"# snnkern.compat against the peer layers: {env['device']}",
        "",
        f"- date {env['date']}, torch {env['torch']}, snnkern {env['snnkern']} (compiled extension: "
        f"{env['snnkern_compiled']}), python {env['python']}",
        f"- threads {env['threads']} of {env['cpu_count']} cores; timing: {env['timing']}",
        f"- peers: {peers}",
        "- times: forward + backward of the layer alone (upstream gradient a fixed random tensor); "
        "speedup = peer / snnkern",
        "- agrees: spikes (mismatch fraction) and gradients of the input and the learnable parameters "
        "(largest relative error) of the two sides on the same input",
        *(["- QUICK smoke run: tiny shapes, one repeat; the times mean nothing"] if env["quick"] else []),
        "",
        "| layer | shape | peer runs | snnkern runs | peer fwd ms | peer fwd+bwd ms | snnkern fwd ms | "
        "snnkern fwd+bwd ms | speedup fwd+bwd | speedup fwd | spike rate | agrees | spike mismatch | "
        "grad rel err | note |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['layer']} | {r['shape']} | {r.get('peer_impl', '')} | {r.get('ours_impl', '')} "
                f"| | | | | | | | {r.get('status')} | | | {r.get('reason', '')} |".replace("\n", " ")
            )
            continue
        cells = [
            r["layer"],
            r["shape"],
            r["peer_impl"],
            r["ours_impl"],
            _fmt(r["peer_forward_ms"]),
            _fmt(r["peer_total_ms"]),
            _fmt(r["ours_forward_ms"]),
            _fmt(r["ours_total_ms"]),
            _fmt(r["speedup"]) + "x",
            _fmt(r["forward_speedup"]) + "x",
            _fmt(r.get("spike_rate"), 3),
            str(r.get("agrees", "not checked")),
            _fmt(r.get("spike_mismatch"), 4),
            _fmt(r.get("grad_rel_err"), 4),
            r.get("note", ""),
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(path: str, env, rows) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run at tiny shapes (CI); times mean nothing")
    p.add_argument("--json", help="compat.json path (default benchmarks/results/<device-slug>/compat.json)")
    p.add_argument("--device", default="cpu", help="default cpu (the peers' loops are CPU-bound)")
    p.add_argument("--layer", action="append", default=[], help="substring filter on the layer name (repeatable)")
    p.add_argument("--shape", action="append", default=[], choices=("dense", "conv"), help="shape kinds to run")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--time-budget", type=float, default=4.0, help="seconds of timed repeats per row before stopping")
    p.add_argument("--no-check", action="store_true", help="skip the agreement checks")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = device_name(device.type)
    env = environment(device, name, args)
    path = args.json or os.path.join(
        HERE, "results", device_slug(name, device.type) + ("-quick" if args.quick else ""), "compat.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print(
        f"# {name} | torch {env['torch']} | snnkern {env['snnkern']} | threads {env['threads']} | "
        + ", ".join(f"{k} {v}" for k, v in env["peers"].items()),
        flush=True,
    )
    rows_to_run = [r for r in ROWS if not args.layer or any(f.lower() in r.layer.lower() for f in args.layer)]
    kinds = {k: v for k, v in shapes(args.quick).items() if not args.shape or k in args.shape}
    rows = []
    try:
        for row in rows_to_run:
            for kind, shape in kinds.items():
                result = bench_row(row, kind, shape, device, args)
                rows.append(result)
                print(format_row(result), flush=True)
                write(path, env, rows)  # after every row: a run stopped from outside keeps what it measured
    except KeyboardInterrupt:
        env["interrupted"] = "stopped from outside; rows not run are missing"
    write(path, env, rows)
    with open(os.path.join(os.path.dirname(os.path.abspath(path)), "compat.md"), "w") as f:
        f.write(markdown(env, rows))
    print(f"wrote {path}")
    return 1 if env.get("interrupted") or any(r.get("status") == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
