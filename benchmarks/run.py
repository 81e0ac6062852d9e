"""snnkern benchmarks: speed, memory and agreement against the naive seed loops and peer libraries.

    python benchmarks/run.py                 # full run on the default device
    python benchmarks/run.py --quick         # smoke run (CI): every case runs once at tiny sizes
    python benchmarks/run.py --case scan --impl fused --impl naive --json /tmp/r.json

Writes results.json, results.md and speedup.png under benchmarks/results/<device-slug>/ (or next to
--json). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

import impls  # noqa: E402
import snnkern  # noqa: E402
from device import device_name, device_slug  # noqa: E402
from impls import Skip, Workload  # noqa: E402

# Peak memory bandwidth (GB/s) of known accelerators, by a substring of the device name.
GPU_BANDWIDTH_GBS = {
    "H200": 4800.0,
    "H100 SXM": 3350.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "H100": 3350.0,
    "A100-SXM4-80GB": 2039.0,
    "A100": 1555.0,
    "L4": 300.0,
    "T4": 320.0,
    "RTX 4090": 1008.0,
}


# --------------------------------------------------------------------------------------------
# Device description
# --------------------------------------------------------------------------------------------


def measure_cpu_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """GB/s of a large float32 copy (read + write counted), median of ``repeats``."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(times) / 1e9


def measure_cuda_bandwidth(device: torch.device, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """GB/s of a device-to-device float32 copy (read + write counted), median of ``repeats`` (CUDA events)."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize(device)
        times.append(start.elapsed_time(end) * 1e-3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / statistics.median(times) / 1e9


def device_bandwidth(device: torch.device, name: str, override: float | None, quick: bool):
    if override:
        return override, "--bandwidth-gbs"
    if device.type == "cuda":
        for key, value in GPU_BANDWIDTH_GBS.items():
            if key.lower() in name.lower():
                return value, f"datasheet ({key})"
        return None, "unknown GPU: pass --bandwidth-gbs"
    return measure_cpu_bandwidth(32 << 20 if quick else 256 << 20), "measured torch copy (read+write)"


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str  # unique id, e.g. "scan B64 T100 N100"
    family: str  # plot group: scan, on-bench, recurrent, train-ipd, ...
    shape: str
    size: int  # x-axis of the speedup plot
    impl_names: list[str]
    build: Callable[[str, torch.device], Workload]
    scan_elements: int = 0  # B*T*N of the neuron scan (for GB/s), 0 when not a pure scan case
    kind: str = "scan"  # scan | train | recurrent


_DATA: dict[tuple, object] = {}


def _cached(key, make):
    """CPU data of the cases being run, made once for all their implementations and checks (on a GPU
    the large cases' random inputs took longer to draw on the host than the rows took to time)."""
    if key not in _DATA:
        if len(_DATA) >= 4:
            _DATA.clear()
        _DATA[key] = make()
    return _DATA[key]


def _on(t: torch.Tensor, device) -> torch.Tensor:
    """A fresh copy of cached host data on ``device``."""
    return t.clone() if device.type == "cpu" else t.to(device)


def _randn(shape, seed, device, scale=1.0, shift=0.0):
    def make():
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(*shape, generator=gen) * scale + shift

    return _on(_cached(("randn", tuple(shape), seed, scale, shift), make), device)


def scan_case(b, t, n, quick=False) -> Case:
    alpha = snnkern.decay(20e-3, 1e-3)

    def build(impl, device):
        x = _randn((b, t, n), 1, device, 0.35, 0.08).requires_grad_()
        return impls.scan_impl(impl, x, alpha)

    return Case(
        f"scan B{b} T{t} N{n}",
        "scan (seed 000 neuron)",
        f"B{b} T{t} N{n}",
        b * t * n,
        impls.SCAN_IMPLS,
        build,
        scan_elements=b * t * n,
    )


def on_bench_case(b, t, n) -> Case:
    alpha = snnkern.decay(20e-3, 1e-3)

    def make():
        gen = torch.Generator().manual_seed(2)
        x = (torch.rand(b, t, n, generator=gen) < 0.2).float()
        return x, torch.randn(n, n, generator=gen) * (1.2 / math.sqrt(0.2 * n))

    def build(impl, device):
        x_host, w_host = _cached(("linear+lif", b, t, n), make)
        x = _on(x_host, device).requires_grad_()
        linear = torch.nn.Linear(n, n, bias=False, device=device)
        with torch.no_grad():
            linear.weight.copy_(w_host)
        return impls.scan_impl(impl, x, alpha, linear)

    return Case(
        f"linear+lif B{b} T{t} n{n}",
        "Linear(n,n)+LIF (Open Neuromorphic)",
        f"B{b} T{t} n{n}",
        n,
        impls.SCAN_IMPLS,
        build,
    )


def recurrent_case(b, t, n_in, hidden) -> Case:
    def build(impl, device):
        gen = torch.Generator().manual_seed(3)
        x = (torch.rand(b, t, n_in, generator=gen) < 0.05).float().to(device).requires_grad_()
        return impls.recurrent_impl(impl, x, hidden)

    return Case(
        f"recurrent B{b} T{t} {n_in}->{hidden}",
        "recurrent LIF (SHD)",
        f"B{b} T{t} in{n_in} h{hidden}",
        b * t * hidden,
        impls.RECURRENT_IMPLS,
        build,
        kind="recurrent",
    )


def training_case(model, b, t, n_in, classes, rate) -> Case:
    def build(impl, device):
        gen = torch.Generator().manual_seed(4)
        x = (torch.rand(b, t, n_in, generator=gen) < rate).float().to(device)
        y = torch.randint(0, classes, (b,), generator=gen).to(device)
        return impls.training_impl(impl, model, x, y)

    label = {"ipd": "IPD (seed 000)", "dale": "Dale's law IPD (seed 001)", "shd": "SHD recurrent (seed 004)"}[model]
    return Case(
        f"train {model} B{b} T{t}",
        f"training step: {label}",
        f"B{b} T{t} in{n_in}",
        b * t,
        impls.TRAINING_IMPLS,
        build,
        kind="train",
    )


def conv_case(b, t, channels, rate=0.3) -> Case:
    """One training step of examples/digits_conv.py's conv SNN on rate-coded 8x8 inputs."""

    def build(impl, device):
        gen = torch.Generator().manual_seed(6)
        x = (torch.rand(b, t, 1, 8, 8, generator=gen) < rate).float().to(device)
        y = torch.randint(0, 10, (b,), generator=gen).to(device)
        return impls.conv_impl(impl, x, y, channels)

    return Case(
        f"train conv B{b} T{t} C{channels}",
        "training step: conv SNN (examples/digits_conv.py)",
        f"B{b} T{t} 1x8x8 C{channels}",
        b * t,
        impls.CONV_IMPLS,
        build,
        kind="train",
    )


def all_cases(device: torch.device, quick: bool) -> list[Case]:
    if quick:
        return [
            scan_case(4, 20, 16),
            on_bench_case(2, 20, 32),
            training_case("ipd", 4, 20, 200, 12, 0.1),
            training_case("dale", 4, 20, 200, 12, 0.1),
            training_case("shd", 4, 20, 700, 20, 0.02),
            recurrent_case(4, 20, 700, 128),
            conv_case(4, 4, 4),
        ]
    on_sizes = (4096, 8192, 16384) if device.type == "cuda" else (512, 1024, 2048)
    # On a GPU the seed shapes take microseconds (launch-bound); B256 T100 N4096 (105M elements,
    # 2.5 GB of minimum traffic) is where the scan's time can be held against the memory bandwidth.
    big_scan = [scan_case(256, 100, 4096)] if device.type == "cuda" else []
    return (
        [scan_case(64, 100, 100), scan_case(256, 100, 128)]
        + big_scan
        + [on_bench_case(16, 500, n) for n in on_sizes]
        + [
            training_case("ipd", 64, 100, 200, 12, 0.1),
            training_case("dale", 64, 100, 200, 12, 0.1),
            training_case("shd", 256, 100, 700, 20, 0.02),
        ]
        + [recurrent_case(256, 100, 700, 128)]
        + [conv_case(64, 16, 16)]  # one batch of the example (its defaults)
    )


# --------------------------------------------------------------------------------------------
# Timing, memory, agreement
# --------------------------------------------------------------------------------------------


class Timer:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, *args):
        """``(fn(*args), milliseconds)``."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn(*args)
            end.record()
            torch.cuda.synchronize()
            return result, start.elapsed_time(end)
        t0 = time.perf_counter()
        result = fn(*args)
        return result, (time.perf_counter() - t0) * 1e3


_READOUT: dict[tuple, torch.Tensor] = {}


def _loss(out: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "train":
        return out
    # A fixed pseudo-random readout so that every spike gets its own upstream gradient (drawn once
    # per shape: it is outside the timed region, but drawing 10^8 numbers on the host takes seconds).
    key = (tuple(out.shape), str(out.device), out.dtype)
    if key not in _READOUT:
        _READOUT.clear()
        gen = torch.Generator().manual_seed(5)
        _READOUT[key] = torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
    return (out * _READOUT[key]).sum()


def _zero(w: Workload):
    if "zero" in w.extra:
        w.extra["zero"](set_to_none=True)
    for p in w.inputs:
        p.grad = None


def saved_tensor_bytes(w: Workload) -> int:
    """Bytes of the unique storages autograd keeps for backward during one forward."""
    storages: dict[int, int] = {}

    def pack(t):
        try:
            s = t.untyped_storage()
            storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        except Exception:  # noqa: BLE001
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = w.forward()
    del out
    return sum(storages.values())


def _backward(w: Workload, loss: torch.Tensor) -> None:
    loss.backward()
    if w.step is not None:
        w.step()


def time_workload(w: Workload, kind: str, device, warmup: int, repeats: int, budget_s: float):
    timer = Timer(device)
    fwd, bwd, tot = [], [], []
    deadline = None
    for i in range(warmup + repeats):
        _zero(w)
        out, tf = timer(w.forward)
        loss = _loss(out, kind)
        # The loss goes in as an argument (a closure over it would see whatever `loss` is bound to
        # when it runs, and nothing once it is deleted).
        _, tb = timer(_backward, w, loss)
        del out, loss
        if i >= warmup:
            fwd.append(tf)
            bwd.append(tb)
            tot.append(tf + tb)
            if deadline is None:
                deadline = time.perf_counter() + budget_s
            elif time.perf_counter() > deadline and len(tot) >= 3:
                break
    return statistics.median(fwd), statistics.median(bwd), statistics.median(tot), len(tot)


def peak_memory(w: Workload, kind: str, device) -> tuple:
    if device.type == "cuda":
        _zero(w)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = w.forward()
        _loss(out, kind).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - base, "cuda max_memory_allocated above baseline"
    _zero(w)
    return saved_tensor_bytes(w), "saved-for-backward tensors (unique storages)"


def _grads(w: Workload):
    if "grads" in w.extra:
        return [g.detach().clone() for g in w.extra["grads"]()]
    return [w.inputs[0].grad.detach().clone()]


def run_once(w: Workload, kind: str):
    _zero(w)
    out = w.forward()
    loss = _loss(out, kind)
    loss.backward()
    return out.detach(), loss.detach(), _grads(w)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check_against(w: Workload, kind: str, truth_builder: Callable[[], Workload]) -> dict[str, object]:
    """Run ``w`` and the ground truth on the same inputs; compare spikes and gradients."""
    out, loss, grads = run_once(w, kind)
    truth = truth_builder()
    t_out, t_loss, t_grads = run_once(truth, kind)
    result: dict[str, object] = {}
    if kind == "train":
        result["loss_rel_err"] = abs(float(loss) - float(t_loss)) / max(abs(float(t_loss)), 1e-30)
    else:
        result["spikes"] = float(out.sum())
        result["spikes_ref"] = float(t_out.sum())
        result["spike_mismatch"] = float((out != t_out).float().mean())
    result["grad_rel_err"] = max(rel_err(g, tg) for g, tg in zip(grads, t_grads, strict=True))
    ok = (
        result["grad_rel_err"] <= 1e-2
        and result.get("spike_mismatch", 0.0) <= 1e-3
        and result.get("loss_rel_err", 0.0) <= 1e-4
    )
    result["agrees"] = ("yes" if ok else "NO") if w.exact else "approx (closest match, see note)"
    return result


def truth_for(case: Case, impl: str, w: Workload, device) -> Callable[[], Workload]:
    """The ground-truth workload for an implementation's check."""
    if case.kind == "scan" or w.config is not None:
        cfg = w.config

        def build():
            tw = case.build("reference", device)
            x = tw.inputs[0]
            linear_params = tw.inputs[1:]
            alpha = snnkern.decay(20e-3, 1e-3)
            if linear_params:
                weight = linear_params[0]
                fwd = lambda: snnkern.lif(x @ weight.T, alpha, backend="reference", **cfg.kwargs()).spikes  # noqa: E731
            else:
                fwd = lambda: snnkern.lif(x, alpha, backend="reference", **cfg.kwargs()).spikes  # noqa: E731
            return Workload(fwd, tw.inputs, cfg)

        return build
    # recurrent and training cases: the naive seed loop is the ground truth (it is what snnkern
    # must reproduce exactly); the naive row itself is checked against snnkern's reference backend.
    return lambda: case.build("reference" if impl == "naive" else "naive", device)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def bytes_moved(elements: int, dtype_bytes: int = 4) -> int:
    """Minimum traffic of the fused scan: forward reads x, writes spikes and the saved membrane;
    backward reads the spike gradient and the saved membrane and writes the input gradient."""
    return 6 * elements * dtype_bytes


def bench_one(case: Case, impl: str, device, args, bandwidth) -> dict[str, object]:
    row: dict[str, object] = {
        "case": case.name,
        "family": case.family,
        "implementation": impl,
        "shape": case.shape,
        "size": case.size,
    }
    try:
        w = case.build(impl, device)
    except Skip as why:
        row.update(status="skipped", reason=str(why))
        return row
    row["note"] = w.note
    if w.config is not None:
        row["neuron"] = w.config.describe()
    t0 = time.perf_counter()
    try:
        with w.context():
            _measure(case, impl, w, device, args, bandwidth, row)
    except Skip as why:
        row.update(status="skipped", reason=str(why))
    except Exception as error:  # noqa: BLE001 - report, do not abort the whole run
        if impl == "torch.compile":
            row.update(status="skipped", reason=f"torch.compile failed: {type(error).__name__}: {str(error)[:300]}")
        else:
            row.update(status="error", reason=f"{type(error).__name__}: {error}")
            traceback.print_exc()
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    return row


def _measure(case: Case, impl: str, w: Workload, device, args, bandwidth, row: dict[str, object]) -> None:
    """Checks, times and measures the memory of a built workload, into ``row``."""
    if not args.no_check:
        row.update(check_against(w, case.kind, truth_for(case, impl, w, device)))
    warmup, repeats = (1, 1) if args.quick else (args.warmup, args.repeats)
    f, b, tot, n = time_workload(w, case.kind, device, warmup, repeats, args.time_budget)
    row.update(forward_ms=f, backward_ms=b, total_ms=tot, repeats=n)
    mem, how = peak_memory(w, case.kind, device)
    row.update(peak_memory_bytes=mem, memory_measure=how)
    if case.scan_elements and impl.startswith("fused"):
        gbs = bytes_moved(case.scan_elements) / (tot * 1e-3) / 1e9
        row["achieved_gbs"] = gbs
        if bandwidth:
            row["bandwidth_fraction"] = gbs / bandwidth
    row["status"] = "ok"


def bench_in_subprocess(case: Case, impl: str, args, timeout: float) -> dict[str, object]:
    """torch.compile runs in a child process so that a slow compile can be abandoned."""
    out = os.path.join("/tmp", f"snnkern-bench-{os.getpid()}-{abs(hash((case.name, impl)))}.json")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--case-exact",
        case.name,
        "--impl",
        impl,
        "--device",
        args.device,
        "--json",
        out,
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--time-budget",
        str(args.time_budget),
        "--threads",
        str(args.threads),
    ]
    if args.quick:
        cmd.append("--quick")
    if args.no_check:
        cmd.append("--no-check")
    row = {"case": case.name, "family": case.family, "implementation": impl, "shape": case.shape, "size": case.size}
    try:
        subprocess.run(cmd, timeout=timeout, check=True, capture_output=True, text=True)
        with open(out) as f:
            return json.load(f)["rows"][0]
    except subprocess.TimeoutExpired:
        row.update(status="skipped", reason=f"torch.compile did not finish compile + timing within {timeout:.0f} s")
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or "").strip().splitlines()[-1:] or ["?"]
        row.update(status="skipped", reason=f"torch.compile worker failed: {tail[0][:300]}")
    finally:
        if os.path.exists(out):
            os.remove(out)
    return row


def verify_snntorch_default(device) -> dict[str, object]:
    """snnTorch's default ``Leaky(beta, reset_mechanism='subtract')`` (ATan(2) surrogate) against snnkern
    ``ordering='update_first', reset='subtract'`` with and without ``detach_reset``."""
    try:
        import snntorch as snn
    except Exception as error:  # noqa: BLE001
        return {"status": "skipped", "reason": f"snntorch not importable: {error}"}
    beta = 0.9
    x = _randn((8, 50, 32), 7, device, 0.5, 0.15).requires_grad_()
    g = _randn((8, 50, 32), 8, device)
    lif = snn.Leaky(beta=beta, reset_mechanism="subtract").to(device)
    mem, out = torch.zeros_like(x[:, 0]), []
    for t in range(x.shape[1]):
        spk, mem = lif(x[:, t], mem)
        out.append(spk)
    peer = torch.stack(out, 1)
    (gx_peer,) = torch.autograd.grad((peer * g).sum(), x)
    result: dict[str, object] = {"spikes": float(peer.sum())}
    for detach in (False, True):
        ours = snnkern.lif(
            x, beta, ordering="update_first", reset="subtract", detach_reset=detach, surrogate=snnkern.ATan(2.0)
        ).spikes
        (gx,) = torch.autograd.grad((ours * g).sum(), x)
        key = "detach_reset=True" if detach else "detach_reset=False"
        result[key] = {"spike_mismatch": float((ours != peer).float().mean()), "grad_rel_err": rel_err(gx, gx_peer)}
    return result


def select(items, filters, key):
    if not filters:
        return items
    return [i for i in items if any(f.lower() in key(i).lower() for f in filters)]


def environment_basics(device, name) -> dict[str, object]:
    """Date, device and versions: the header of every result file."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "snnkern": snnkern.__version__,
        "snnkern_compiled": snnkern.ops._C is not None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def environment(device, name, bandwidth, bw_source, args) -> dict[str, object]:
    peers = {p: impls.peer_version(p) for p in ("snntorch", "spikingjelly", "norse")}
    env = {
        **environment_basics(device, name),
        "bandwidth_gbs": bandwidth,
        "bandwidth_source": bw_source,
        "peers": peers,
        "quick": bool(args.quick),
        "timing": ("CUDA events" if device.type == "cuda" else "time.perf_counter")
        + f", median of {args.repeats} after {args.warmup} warm-up",
    }
    if device.type == "cuda":
        env["torch_cuda"] = torch.version.cuda
        env["snnkern_cuda"] = snnkern.compiled_with_cuda()
        env["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(device))
        env["measured_copy_gbs"] = measure_cuda_bandwidth(device, 64 << 20 if args.quick else 1 << 30)
    return env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run at tiny sizes (CI); times mean nothing")
    p.add_argument("--json", help="results.json path (default benchmarks/results/<device-slug>/results.json)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--case", action="append", default=[], help="substring filter on the case name/family")
    p.add_argument("--impl", action="append", default=[], help="substring filter on the implementation")
    p.add_argument("--bandwidth-gbs", type=float, help="device memory bandwidth for the GB/s fraction")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--time-budget", type=float, default=3.0, help="seconds of timed repeats per row before stopping")
    p.add_argument("--compile-timeout", type=float, default=120.0, help="seconds per torch.compile row")
    p.add_argument("--compile-budget", type=float, default=300.0, help="total seconds for torch.compile rows")
    p.add_argument(
        "--compile-all", action="store_true", help="also torch.compile the 500-step Linear+LIF loop (many minutes)"
    )
    p.add_argument(
        "--deadline-s",
        type=float,
        default=0.0,
        help="wall-clock budget of the whole run in seconds (0: none); rows not started by then are "
        "reported as skipped, torch.compile rows (run last) get what is left",
    )
    p.add_argument("--no-check", action="store_true", help="skip the agreement checks")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case-exact", help=argparse.SUPPRESS)
    p.add_argument(
        "--default-allocator",
        action="store_true",
        help="keep glibc's default malloc trimming (by default snnkern.tune_cpu_allocator() is applied, "
        "for every implementation alike)",
    )
    args = p.parse_args(argv)

    if not args.default_allocator:
        snnkern.tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = device_name(device.type)
    cases = all_cases(device, args.quick)
    if args.case_exact:
        cases = [c for c in cases if c.name == args.case_exact]
    cases = [
        c for c in cases if not args.case or any(f.lower() in (c.name + " " + c.family).lower() for f in args.case)
    ]

    if args.worker:
        rows = [bench_one(c, i, device, args, None) for c in cases for i in select(c.impl_names, args.impl, str)]
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f)
        return 0

    bandwidth, bw_source = device_bandwidth(device, name, args.bandwidth_gbs, args.quick)
    env = environment(device, name, bandwidth, bw_source, args)
    env["snntorch_default_leaky_check"] = verify_snntorch_default(device)
    print("snnTorch default Leaky vs snnkern:", env["snntorch_default_leaky_check"], flush=True)
    print(
        f"# {name} | torch {env['torch']} | snnkern {env['snnkern']} | threads {env['threads']} | "
        f"bandwidth {bandwidth and round(bandwidth, 1)} GB/s ({bw_source})",
        flush=True,
    )
    path = args.json or os.path.join(
        HERE, "results", device_slug(name, device.type) + ("-quick" if args.quick else ""), "results.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    order = [(case, impl) for case in cases for impl in select(case.impl_names, args.impl, str)]
    done: dict[tuple, dict[str, object]] = {}
    started = time.perf_counter()

    def time_left() -> float:
        return args.deadline_s - (time.perf_counter() - started) if args.deadline_s > 0 else math.inf

    def skipped(case, impl, reason):
        return {
            "case": case.name,
            "family": case.family,
            "implementation": impl,
            "shape": case.shape,
            "size": case.size,
            "status": "skipped",
            "reason": reason,
        }

    def record(case, impl, row):
        done[(case.name, impl)] = row
        print(format_row(row), flush=True)
        # after every row, so that a run stopped from outside still leaves what it measured
        write_json(path, env, [done[(c.name, i)] for c, i in order if (c.name, i) in done])

    out_of_time = f"run time budget (--deadline-s {args.deadline_s:.0f}) used up before this row"
    try:
        for case, impl in order:  # torch.compile rows last: their compiles take the longest and are cut first
            if impl != "torch.compile":
                record(
                    case,
                    impl,
                    bench_one(case, impl, device, args, bandwidth)
                    if time_left() > 0
                    else skipped(case, impl, out_of_time),
                )
        compile_spent, compile_dead = 0.0, set()
        # the smallest case of every family first, then the larger sizes: a budget that runs out
        # leaves one torch.compile row in each family rather than all sizes of the first ones
        rank = {c.name: [d.name for d in cases if d.family == c.family].index(c.name) for c in cases}
        for case, impl in sorted(order, key=lambda ci: rank[ci[0].name]):
            if impl != "torch.compile":
                continue
            if args.quick:
                row = skipped(case, impl, "not run in --quick (compiles take minutes)")
            elif case.family.startswith("Linear") and not args.compile_all:
                row = skipped(
                    case,
                    impl,
                    "not attempted: inductor takes many minutes on the 500-step unrolled loop (pass --compile-all)",
                )
            elif case.family in compile_dead or compile_spent >= args.compile_budget:
                row = skipped(
                    case,
                    impl,
                    "an earlier size of this case timed out"
                    if case.family in compile_dead
                    else f"torch.compile time budget ({args.compile_budget:.0f} s) used up",
                )
            elif time_left() < 30:
                row = skipped(case, impl, out_of_time)
            else:
                t0 = time.perf_counter()
                timeout = min(args.compile_timeout, max(args.compile_budget - compile_spent, 30.0), time_left())
                row = bench_in_subprocess(case, impl, args, timeout)
                compile_spent += time.perf_counter() - t0
                if row.get("status") != "ok":
                    compile_dead.add(case.family)
            record(case, impl, row)
    except KeyboardInterrupt:
        env["interrupted"] = (
            f"stopped from outside {time.perf_counter() - started:.0f} s into the rows; rows not run are missing"
        )
        print(f"interrupted: writing the {len(done)} rows measured so far", flush=True)
    rows = [done[(c.name, i)] for c, i in order if (c.name, i) in done]
    add_speedups(rows)
    write_json(path, env, rows)
    md = markdown(env, rows)
    with open(os.path.join(os.path.dirname(os.path.abspath(path)), "results.md"), "w") as f:
        f.write(md)
    if not args.no_plot:
        try:
            plot(rows, env, os.path.join(os.path.dirname(os.path.abspath(path)), "speedup.png"))
        except Exception as error:  # noqa: BLE001
            print(f"plot skipped: {error}")
    print(f"wrote {path}")
    errors = [r for r in rows if r.get("status") == "error"]
    return 1 if errors or env.get("interrupted") else 0


def write_json(path, env, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    os.replace(tmp, path)


def add_speedups(rows):
    naive = {r["case"]: r["total_ms"] for r in rows if r["implementation"] == "naive" and r.get("status") == "ok"}
    for r in rows:
        if r.get("status") == "ok" and r["case"] in naive:
            r["speedup_vs_naive"] = naive[r["case"]] / r["total_ms"]


def _fmt(v, digits=2):
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e4 or abs(v) < 10**-digits):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def format_row(r) -> str:
    if r.get("status") != "ok":
        return f"{r['case']:<32} {r['implementation']:<15} {r.get('status')}: {r.get('reason', '')}"
    return (
        f"{r['case']:<32} {r['implementation']:<15} fwd {r['forward_ms']:9.2f} ms  bwd {r['backward_ms']:9.2f} ms  "
        f"total {r['total_ms']:9.2f} ms  mem {r['peak_memory_bytes'] / 2**20:8.1f} MiB  "
        f"agrees {r.get('agrees', '-')}"
    )


def markdown(env, rows) -> str:
    lines = [
        f"# snnkern benchmark results: {env['device']}",
        "",
        f"- date {env['date']}, torch {env['torch']}, snnkern {env['snnkern']} (compiled extension: "
        f"{env['snnkern_compiled']}), python {env['python']}",
        f"- threads {env['threads']} of {env['cpu_count']} cores; timing: {env['timing']}",
        f"- memory bandwidth {_fmt(env['bandwidth_gbs'], 1)} GB/s ({env['bandwidth_source']})"
        + (
            f"; a device-to-device copy measured {_fmt(env['measured_copy_gbs'], 0)} GB/s (read+write)"
            if env.get("measured_copy_gbs")
            else ""
        ),
        "- peers: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in env["peers"].items()),
        "- memory: "
        + (
            "torch.cuda.max_memory_allocated"
            if env["device_type"] == "cuda"
            else "bytes of the tensors autograd saves for backward (unique storages)"
        ),
        "- agrees: spikes and gradients against snnkern.reference_ops configured as the same neuron "
        "(recurrent/training rows: against the naive seed loop); 'approx' = closest-match neuron, see note",
        *([f"- INTERRUPTED: {env['interrupted']}"] if env.get("interrupted") else []),
        "",
        "| case | implementation | forward ms | backward ms | total ms | speedup vs naive | memory MiB | "
        "GB/s (% peak) | agrees | spike mismatch | grad rel err | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['case']} | {r['implementation']} | | | | | | | {r.get('status')} | | | {r.get('reason', '')} |"
            )
            continue
        gbs = ""
        if "achieved_gbs" in r:
            gbs = _fmt(r["achieved_gbs"], 1) + (
                f" ({100 * r['bandwidth_fraction']:.0f}%)" if "bandwidth_fraction" in r else ""
            )
        lines.append(
            "| "
            + " | ".join(
                [
                    r["case"],
                    r["implementation"],
                    _fmt(r["forward_ms"]),
                    _fmt(r["backward_ms"]),
                    _fmt(r["total_ms"]),
                    _fmt(r.get("speedup_vs_naive")) + ("x" if "speedup_vs_naive" in r else ""),
                    _fmt(r["peak_memory_bytes"] / 2**20, 1),
                    gbs,
                    str(r.get("agrees", "")),
                    _fmt(r.get("spike_mismatch"), 4),
                    _fmt(r.get("grad_rel_err"), 4),
                    (
                        r.get("neuron", "") + ("; " if r.get("neuron") and r.get("note") else "") + r.get("note", "")
                    ).replace("|", "/"),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, env, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = []
    for r in rows:
        if r["family"] not in families:
            families.append(r["family"])
    cols = min(3, len(families))
    nrows = math.ceil(len(families) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    for ax, fam in zip(axes.flat, families, strict=False):  # the spare panels are hidden below
        sub = [r for r in rows if r["family"] == fam and "speedup_vs_naive" in r]
        cases = []
        for r in sub:
            if r["case"] not in cases:
                cases.append(r["case"])
        for impl in dict.fromkeys(r["implementation"] for r in sub):
            pts = [(cases.index(r["case"]), r["speedup_vs_naive"]) for r in sub if r["implementation"] == impl]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([c.split(" ", 1)[1] if " " in c else c for c in cases], rotation=20, fontsize=7)
        ax.set_yscale("log")
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_title(fam, fontsize=9)
        ax.set_ylabel("speedup over naive loop (x)")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(families) :]:
        ax.axis("off")
    fig.suptitle(f"snnkern, {env['device']}, torch {env['torch']}, {env['threads']} threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
