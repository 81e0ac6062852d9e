"""Time per training epoch of each seed model: snnkern against the seed's naive loop, in one run.

    python benchmarks/epochs.py                      # all four models, 3 epochs of each kind
    python benchmarks/epochs.py --model shd --repeats 5
    python benchmarks/epochs.py --quick              # tiny data, one repeat (a smoke run)

For each model the training task of ``python -m snnkern train`` is built with its seed defaults
(synthetic SHD-format data for ``shd``), then snnkern epochs and epochs of the seed's loop
(:mod:`snnkern.seed_loops`, same batches, same initial weights, its own Adam) alternate, so both see
the same machine state. An epoch is the training pass (forward, loss, backward, Adam step over
every training batch, data generation included); validation and evaluation are not timed.
Writes epochs.json and epochs.md under benchmarks/results/<device-slug>/ (or next to --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import replace

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402

import snnkern  # noqa: E402
from device import device_name, device_slug  # noqa: E402
from run import environment_basics  # noqa: E402
from snnkern.train import MODELS, TrainConfig, make_task  # noqa: E402

# the models with a seed loop to time against (seed 003, evidence, is a NEST simulation)
TIMED = tuple(m for m in MODELS if m != "evidence")


def time_model(model: str, args, workdir: str) -> dict:
    cfg = TrainConfig(model=model, device=args.device, out=os.path.join(workdir, model), progress=False, plots=False)
    if args.quick:
        cfg = replace(
            cfg,
            train_batches=2,
            test_batches=1,
            shd_train_samples=64,
            shd_test_samples=32,
            batch_size=32 if model == "shd" else None,
        )
    cfg = cfg.resolved()
    os.makedirs(cfg.out, exist_ok=True)
    task = make_task(cfg)
    fused, naive = [], []
    task.train_epoch(0)  # warm-up of both (allocator, first-call costs)
    task.naive_epoch_seconds()
    for epoch in range(1, args.repeats + 1):
        fused.append(task.train_epoch(epoch)[1])
        naive.append(task.naive_epoch_seconds())
    f, n = statistics.median(fused), statistics.median(naive)
    shape = (
        f"{cfg.train_batches} batches of {cfg.batch_size}"
        if model != "shd"
        else f"{len(task.train_set) // cfg.batch_size} batches of {cfg.batch_size}"
    )
    return dict(model=model, epoch=shape, snnkern_s=f, naive_s=n, speedup=n / f, snnkern_all=fused, naive_all=naive)


def markdown(env: dict, rows) -> str:
    lines = [
        f"# Time per training epoch: snnkern against the seed loops ({env['device']})",
        "",
        f"- date {env['date']}, torch {env['torch']}, snnkern {env['snnkern']}, threads {env['threads']}",
        f"- medians of {env['repeats']} epochs of each after one warm-up epoch, alternating snnkern and naive",
        "- epoch = training pass over all training batches (data, forward, loss, backward, Adam)",
        "",
        *([f"- INTERRUPTED: {env['interrupted']}", ""] if env.get("interrupted") else []),
        "| model | epoch | snnkern s/epoch | seed loop s/epoch | speedup |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epoch']} | {r['snnkern_s']:.3f} | {r['naive_s']:.3f} | {r['speedup']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def write(path: str, env: dict, rows) -> None:
    with open(path, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(markdown(env, rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", choices=TIMED, help="model(s) to time (default: all with a seed loop)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs of each kind per model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="epochs.json path (default benchmarks/results/<device-slug>/epochs.json)")
    p.add_argument("--quick", action="store_true", help="tiny data and one repeat: checks that it runs")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 1
    snnkern.tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = device_name(device.type)
    env = dict(environment_basics(device, name), repeats=args.repeats, quick=args.quick)
    path = args.json or os.path.join(
        HERE, "results", device_slug(name, device.type) + ("-quick" if args.quick else ""), "epochs.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for model in args.model or TIMED:
                row = time_model(model, args, workdir)
                rows.append(row)
                print(
                    f"{model:13s} snnkern {row['snnkern_s']:.3f} s/epoch, seed loop {row['naive_s']:.3f} s/epoch, "
                    f"speedup {row['speedup']:.1f}x",
                    flush=True,
                )
                write(path, env, rows)  # after every model: a run stopped from outside keeps what it timed
    except KeyboardInterrupt:
        env["interrupted"] = f"stopped from outside after {len(rows)} model(s)"
        print(f"interrupted: writing the {len(rows)} model(s) timed so far", flush=True)
    write(path, env, rows)
    print(f"wrote {path}")
    return 1 if env.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
