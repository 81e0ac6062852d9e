"""Training throughput (samples per second) of ``python -m snnkern train`` with 1 and 2 processes.

    python benchmarks/ddp.py                  # ipd and shd at the seed sizes, CPU (or CUDA if present)
    python benchmarks/ddp.py --quick          # tiny sizes, 2 epochs: checks that it runs (CI)
    python benchmarks/ddp.py --model ipd --epochs 4 --device cpu

Each configuration is the real command: one process is ``python -m snnkern train MODEL``, N
processes are ``torchrun --standalone --nproc_per_node N -m snnkern train MODEL`` (gloo on the
CPU, NCCL on CUDA with one GPU per process), at the same global batch (the seed's), each with
``OMP_NUM_THREADS`` threads. Throughput = steps per epoch x global batch / the median epoch time
after the first (warm-up) epoch, as rank 0 measures it (the ranks step in lockstep); the
configurations run in turn ``--repeats`` times and the best run of each is kept (a shared
machine's other jobs only ever slow a run down). Start-up,
data generation and evaluation are not in it. On the CPU the configurations are 1 process with
all cores' threads, 1 process with 1 thread, and N processes with cores/N threads each: the same
cores either way, so the comparison shows what data parallelism gives over intra-op threads.

Writes ddp.json and ddp.md under benchmarks/results/<device-slug>/ (``--quick``: <slug>-quick/).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402

from device import device_name, device_slug  # noqa: E402

MODELS = ("ipd", "shd")
FULL = {"ipd": [], "shd": []}  # the seeds' sizes (python -m snnkern train defaults)
QUICK = {
    "ipd": ["--batch-size=16", "--train-batches=4", "--test-batches=1", "--hidden=32", "--anf-per-ear=20"],
    "shd": ["--batch-size=32", "--hidden=32", "--nb-steps=50"],
}
QUICK_SHD_SAMPLES = (128, 32)


def configurations(device: str, cores: int, max_procs: int) -> list[tuple[int, int]]:
    """(processes, threads per process) to run."""
    if device == "cuda":
        return [(1, cores)] + ([(n, max(cores // n, 1)) for n in (2, max_procs) if 2 <= n <= max_procs])
    configs = [(1, cores), (1, 1)]
    for n in sorted({2, max_procs}):
        if 2 <= n <= max(cores, 2) and n <= max_procs:
            configs.append((n, max(cores // n, 1)))
    return configs


def run_one(model: str, procs: int, threads: int, args: argparse.Namespace, workdir: str, data: str | None) -> dict:
    out = os.path.join(workdir, f"{model}_{procs}x{threads}")
    shutil.rmtree(out, ignore_errors=True)
    options = [
        f"--epochs={args.epochs}",
        f"--out={out}",
        f"--device={args.device}",
        "--no-plots",
        "--no-progress",
        *(QUICK if args.quick else FULL)[model],
    ]
    if data is not None:
        options.append(f"--data={data}")
    if procs == 1:
        cmd = [sys.executable, "-m", "snnkern", "train", model, *options]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        cmd += ["-m", "snnkern", "train", model, *options]
    pythonpath = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=pythonpath)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    seconds = m["history"]["epoch_seconds"]
    timed = seconds[1:] if len(seconds) > 1 else seconds
    median = statistics.median(timed)
    samples = m["steps_per_epoch"] * m["global_batch_size"]
    return dict(
        model=model,
        processes=procs,
        threads_per_process=threads,
        global_batch=m["global_batch_size"],
        steps_per_epoch=m["steps_per_epoch"],
        epoch_seconds=seconds,
        median_epoch_s=median,
        samples_per_s=samples / median,
        final_train_loss=m["final_train_loss"],
        test_accuracy=m["test_accuracy"],
    )


def markdown(env: dict, rows: list[dict]) -> str:
    lines = [
        f"# Training throughput with 1 and N processes ({env['device']})",
        "",
        f"- date {env['date']}, torch {env['torch']}, {env['cpu_count']} CPU cores, epochs {env['epochs']}"
        + (" (quick: tiny sizes)" if env["quick"] else " (seed sizes)"),
        "- samples/s = steps per epoch x global batch / median epoch time after the warm-up epoch (rank 0's clock);"
        f" best of {env['repeats']} runs of each configuration, run in turn",
        "- same global batch in every row; N processes: torchrun + DistributedDataParallel "
        + ("(NCCL)" if env["device_type"] == "cuda" else "(gloo)"),
        "- last column: against the fastest single-process row of the model",
        "",
        "| model | processes x threads | global batch | steps/epoch | s/epoch | samples/s | vs 1 process |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        single = [b for b in rows if b["model"] == r["model"] and b["processes"] == 1]
        base = max(single, key=lambda b: b["samples_per_s"]) if single else r
        lines.append(
            f"| {r['model']} | {r['processes']} x {r['threads_per_process']} | {r['global_batch']} | "
            f"{r['steps_per_epoch']} | {r['median_epoch_s']:.3f} | {r['samples_per_s']:.0f} | "
            f"{r['samples_per_s'] / base['samples_per_s']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def write(path: str, env: dict, rows: list[dict]) -> None:
    with open(path, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(markdown(env, rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", choices=MODELS, help="model(s) (default: ipd and shd)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 4; --quick 2)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    p.add_argument("--max-procs", type=int, default=2, help="largest number of processes (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="runs of each configuration, best kept (default 3)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per run before it counts as failed")
    p.add_argument("--json", help="ddp.json path (default benchmarks/results/<device-slug>/ddp.json)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 epochs: checks that it runs")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 4)
    args.repeats = args.repeats or (1 if args.quick else 3)
    cores = os.cpu_count() or 1
    max_procs = min(args.max_procs, torch.cuda.device_count()) if args.device == "cuda" else args.max_procs
    name = device_name(args.device)
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "device_type": args.device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": cores,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "quick": args.quick,
    }
    path = args.json or os.path.join(
        HERE, "results", device_slug(name, args.device) + ("-quick" if args.quick else ""), "ddp.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.model or MODELS:
            data = None
            if model == "shd":  # generate the synthetic data once, outside the timed runs
                from snnkern.data import generate_shd_folder

                data = os.path.join(workdir, "shd_data")
                n_train, n_test = QUICK_SHD_SAMPLES if args.quick else (2560, 768)
                generate_shd_folder(data, n_train, n_test, seed=0)
            best: dict[tuple[int, int], dict] = {}
            for repeat in range(args.repeats):  # round robin: each configuration sees the same machine state
                for procs, threads in configurations(args.device, cores, max_procs):
                    row = run_one(model, procs, threads, args, workdir, data)
                    print(
                        f"{model} (run {repeat + 1}/{args.repeats}): {procs} process(es) x {threads} thread(s): "
                        f"{row['median_epoch_s']:.3f} s/epoch, {row['samples_per_s']:.0f} samples/s",
                        flush=True,
                    )
                    key = (procs, threads)
                    runs = best[key]["all_samples_per_s"] if key in best else []
                    runs.append(row["samples_per_s"])
                    if key not in best or row["samples_per_s"] > best[key]["samples_per_s"]:
                        best[key] = row
                    best[key]["all_samples_per_s"] = runs
            rows.extend(best.values())
            write(path, env, rows)
    write(path, env, rows)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
