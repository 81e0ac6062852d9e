"""The recurrent op alone, its two paths side by side: forward and backward of
``snnkern.recurrent_lif`` at the SHD shape (B256 T100 N128, seed 004's neuron), on the row tasks
(the default: one task or thread block per batch row) and on the per-step path
(``snnkern.testing.recurrent_per_step()``), optionally also on another snnkern checkout
(``--baseline DIR``: a source tree with its extension built in place, such as the commit before a
change).

Each variant runs in its own subprocess (two builds of snnkern cannot share a process), the
variants take turns for ``--rounds`` rounds so that they see the same machine state, and the
report gives the median over all rounds of each variant's per-round median, and the ratios.

    python benchmarks/recurrent_op.py                         # CPU, or CUDA when present
    python benchmarks/recurrent_op.py --baseline /tmp/old --json benchmarks/results/cpu-amd-epyc/recurrent/op.json
    python benchmarks/recurrent_op.py --quick                 # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(args) -> dict[str, float]:
    """One variant's medians (ms) in this process."""
    import time

    import torch

    import snnkern
    from snnkern.surrogate import FastSigmoid

    device = torch.device(args.device)
    if device.type == "cpu" and not args.default_allocator:
        snnkern.tune_cpu_allocator()  # as run.py: time the kernels, not the page faults of fresh tensors
    torch.manual_seed(0)
    b, t, n = args.shape
    x = (torch.randn(b, t, n, device=device) * 0.5 + 0.05).requires_grad_()
    weight = (torch.randn(n, n, device=device) / n**0.5).requires_grad_()
    upstream = torch.randn(b, t, n, device=device)
    options = dict(
        alpha_syn=snnkern.decay(5e-3, 1e-3),
        reset="zero",
        detach_reset=True,
        ordering="spike_first",
        surrogate=FastSigmoid(100.0),
    )

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def once():
        sync()
        t0 = time.perf_counter()
        r = snnkern.recurrent_lif(x, weight, snnkern.decay(20e-3, 1e-3), **options)
        sync()
        t1 = time.perf_counter()
        torch.autograd.grad(r.spikes, [x, weight], upstream)
        sync()
        return (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3, r.spikes.float().mean().item()

    if args.per_step:
        from snnkern.testing import recurrent_per_step

        context = recurrent_per_step()
    else:
        context = contextlib.nullcontext()
    with context:
        for _ in range(args.warmup):
            once()
        runs = [once() for _ in range(args.repeats)]
    return {
        "forward_ms": statistics.median(r[0] for r in runs),
        "backward_ms": statistics.median(r[1] for r in runs),
        "total_ms": statistics.median(r[0] + r[1] for r in runs),
        "spike_rate": runs[0][2],
    }


def run_variant(name: str, source: str, per_step: bool, args) -> dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--device", args.device]
    cmd += ["--shape", *map(str, args.shape), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if per_step:
        cmd.append("--per-step")
    if args.default_allocator:
        cmd.append("--default-allocator")
    env = dict(os.environ, PYTHONPATH=source)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=source, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 100, 128], metavar=("B", "T", "N"))
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="turns each variant takes")
    parser.add_argument("--baseline", default=None, help="another snnkern source tree with a built extension")
    parser.add_argument("--baseline-name", default=None, help="its name in the report (default: its path)")
    parser.add_argument("--json", default=None, help="write the results here (and a .md beside it)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small shape, one round")
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="keep glibc's default malloc trimming (by default snnkern.tune_cpu_allocator() is applied, as in run.py)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--per-step", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(json.dumps(measure(args)))
        return 0
    if args.quick:
        args.shape, args.repeats, args.warmup, args.rounds = [4, 10, 16], 2, 1, 1

    root = os.path.dirname(HERE)
    variants = [("row tasks", root, False), ("per-step path", root, True)]
    if args.baseline:
        label = args.baseline_name or os.path.abspath(args.baseline)
        variants.append((f"baseline ({label})", os.path.abspath(args.baseline), False))
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for _ in range(args.rounds):
        for name, source, per_step in variants:
            rounds[name].append(run_variant(name, source, per_step, args))
    results = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in rounds.items()}
    reference = results["row tasks"]["total_ms"]
    import torch

    sys.path.insert(0, HERE)
    from device import device_name

    env = {
        "device": device_name(args.device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": args.shape,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "tuned_allocator": args.device == "cpu" and not args.default_allocator,
    }
    lines = [
        f"# recurrent_lif alone, B{args.shape[0]} T{args.shape[1]} N{args.shape[2]} ({args.device})",
        "",
        f"- {env['device']}, torch {env['torch']}, {env['threads']} threads; median over {args.rounds} rounds"
        f" of each round's median of {args.repeats} runs; the variants take turns"
        + ("" if args.default_allocator or args.device != "cpu" else "; snnkern.tune_cpu_allocator() in each"),
        "- seed 004's neuron (spike_first, zero reset detached, FastSigmoid(100), synaptic current);"
        " the loss weighs every spike with a random upstream gradient",
        "",
        "| variant | forward ms | backward ms | total ms | total / row tasks | spike rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['forward_ms']:.2f} | {r['backward_ms']:.2f} | {r['total_ms']:.2f} |"
            f" {r['total_ms'] / reference:.2f}x | {r['spike_rate']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results, "rounds": rounds}, f, indent=1)
        with open(os.path.splitext(args.json)[0] + ".md", "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
