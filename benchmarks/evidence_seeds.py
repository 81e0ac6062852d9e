"""Seed 003's evidence-accumulation task trained with BPTT and with e-prop over several seeds: the
recall error against iterations, the time per iteration and the final validation error.

    python benchmarks/evidence_seeds.py                         # 3 seeds x (bptt, eprop), 400 iterations
    python benchmarks/evidence_seeds.py --iterations 100 --seeds 0 1
    python benchmarks/evidence_seeds.py --summarize-only        # redo the summary from finished runs
    python benchmarks/evidence_seeds.py --quick                 # 2 iterations of short trials: a smoke run

Each run is ``python -m snnkern train evidence --rule RULE --seed SEED`` (batch 32, Adam 5e-3, the
seed's network and trials), in epochs of 25 iterations with a validation on 4 fixed batches after
each; a finished run (its metrics.json) is reused, so the script can be stopped and started again.
Writes summary.json, summary.md and recall_error.png under benchmarks/results/<cpu-slug>/evidence/
(``--quick``: <cpu-slug>-quick/), with the runs' folders beside them (checkpoints are not
committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from device import device_name, device_slug  # noqa: E402

RULES = ("bptt", "eprop")


def run(rule: str, seed: int, iterations: int, folder: str, quick: bool) -> None:
    if os.path.exists(os.path.join(folder, "metrics.json")):
        with open(os.path.join(folder, "metrics.json")) as f:
            if json.load(f).get("status") == "finished":
                print(f"{rule} seed {seed}: finished run in {folder}, reused", flush=True)
                return
    per_epoch = min(25, iterations)
    cmd = [sys.executable, "-m", "snnkern", "train", "evidence", "--rule", rule, "--seed", str(seed)]
    # Run from the repository, the folder named relative to it: the results name no path of this machine.
    out = os.path.relpath(folder, ROOT)
    cmd += ["--iterations", str(per_epoch), "--epochs", str(max(1, iterations // per_epoch)), "--out", out]
    cmd += ["--no-progress"] + (["--resume"] if os.path.exists(os.path.join(folder, "checkpoint.pt")) else [])
    if quick:
        cmd += ["--batch-size", "2", "--delay-steps", "50", "--val-batches", "1"]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def block_mean(values: list[float], width: int) -> list[float]:
    return [float(np.mean(values[i : i + width])) for i in range(0, len(values), width)]


def summarize(root: str, seeds: list[int]) -> dict:
    runs = {}
    for rule in RULES:
        for seed in seeds:
            path = os.path.join(root, f"{rule}-seed{seed}", "metrics.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                m = json.load(f)
            h = m["history"]
            runs[f"{rule}-seed{seed}"] = dict(
                rule=rule,
                seed=seed,
                status=m.get("status"),
                iterations=m.get("iterations_run"),
                batch=m.get("global_batch_size"),
                seconds_per_iteration=m.get("seconds_per_iteration"),
                final_validation_recall_error=m.get("recall_error"),
                validation_recall_error=h.get("val_recall_error", []),
                step_recall_error=h.get("step_recall_error", []),
                step_loss=h.get("step_loss", []),
                firing_rate_hz=m.get("firing_rate_hz"),
            )
    return runs


def first_below(curve: list[float], level: float, every: int) -> int | None:
    return next(((i + 1) * every for i, e in enumerate(curve) if e < level), None)


def markdown(summary: dict) -> str:
    env, runs = summary["environment"], summary["runs"]
    every = summary["iterations_per_epoch"]
    lines = [
        f"# Evidence accumulation (seed 003): BPTT and e-prop over seeds ({env['device']})",
        "",
        f"- torch {env['torch']}, {env['threads']} thread(s) per run, python {env['python']}; "
        f"batch {summary['batch']}, Adam 5e-3; validation every {every} iterations on "
        f"{summary['validation_trials']} fixed trials",
        "",
        "| run | iterations | s/iteration | validation recall error (final) | first validation < 10 % | "
        "training-batch error, last 25 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in runs.items():
        last = np.mean(r["step_recall_error"][-25:]) if r["step_recall_error"] else None
        spi = r["seconds_per_iteration"]
        below = first_below(r["validation_recall_error"], 0.1, every)
        lines.append(
            f"| {name} | {r['iterations']} | {spi:.3f} | {r['final_validation_recall_error']:.3f} | "
            f"{below if below is not None else '-'} | {last:.3f} |"
        )
    lines += ["", "Validation recall error against iterations (mean over seeds, min-max in brackets):", ""]
    header = "| iterations |" + "".join(f" {rule} |" for rule in RULES)
    lines += [header, "| ---: |" + " ---: |" * len(RULES)]
    curves = {rule: [r["validation_recall_error"] for r in runs.values() if r["rule"] == rule] for rule in RULES}
    n = max((len(c) for cs in curves.values() for c in cs), default=0)
    for k in range(n):
        cells = []
        for rule in RULES:
            values = [c[k] for c in curves[rule] if len(c) > k]
            cells.append(f" {np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f}) |" if values else " - |")
        lines.append(f"| {(k + 1) * every} |" + "".join(cells))
    return "\n".join(lines) + "\n"


def figure(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = summary["iterations_per_epoch"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    colors = {"bptt": "tab:blue", "eprop": "tab:red"}
    for r in summary["runs"].values():
        c = colors[r["rule"]]
        steps = r["step_recall_error"]
        axes[0].plot(
            np.arange(1, len(steps) + 1, every)[: len(block_mean(steps, every))] + every / 2,
            block_mean(steps, every),
            color=c,
            alpha=0.6,
            label=f"{r['rule']} seed {r['seed']}",
        )
        val = r["validation_recall_error"]
        axes[1].plot(
            np.arange(1, len(val) + 1) * every,
            val,
            color=c,
            alpha=0.6,
            marker=".",
            label=f"{r['rule']} seed {r['seed']}",
        )
    axes[0].set_title(f"training batches (means over {every} iterations)")
    axes[1].set_title("validation trials")
    for ax in axes:
        ax.axhline(0.07, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("iteration")
    axes[0].set_ylabel("recall error")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=400, help="iterations per run (a multiple of 25)")
    p.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    p.add_argument("--summarize-only", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 iterations of short trials, batch 2: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.seeds = 2, [0]
    import torch

    env = dict(
        device=device_name("cpu"),
        torch=torch.__version__,
        python=platform.python_version(),
        threads=torch.get_num_threads(),
    )
    root = os.path.join(HERE, "results", device_slug(env["device"], "cpu") + ("-quick" if args.quick else ""))
    root = os.path.join(root, "evidence")
    os.makedirs(root, exist_ok=True)
    if not args.summarize_only:
        for rule in args.rules:
            for seed in args.seeds:
                run(rule, seed, args.iterations, os.path.join(root, f"{rule}-seed{seed}"), args.quick)
    runs = summarize(root, args.seeds)
    first = next(iter(runs.values()), {})
    summary = dict(
        environment=env,
        iterations_per_epoch=min(25, args.iterations),
        batch=first.get("batch"),
        validation_trials=4 * (first.get("batch") or 0) if not args.quick else first.get("batch"),
        runs=runs,
    )
    with open(os.path.join(root, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(root, "summary.md"), "w") as f:
        f.write(markdown(summary))
    figure(summary, os.path.join(root, "recall_error.png"))
    print(f"wrote {root}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
