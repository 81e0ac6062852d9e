"""Command line: ``python -m snnkern train MODEL [options]`` and ``python -m snnkern sweep envelope-power``.

Examples::

    python -m snnkern train ipd --epochs 10 --seed 0 --out runs/ipd --compare-naive
    python -m snnkern train ipd-dales --out runs/dales
    python -m snnkern train shd --epochs 30 --out runs/shd          # synthetic SHD-format data
    python -m snnkern train shd --data ~/data/hdspikes --out runs/shd_real
    python -m snnkern train evidence --rule bptt --out runs/evidence  # seed 003's task, BPTT
    python -m snnkern train evidence --rule eprop --feedback random   # ... with e-prop (the seed's rule)
    python -m snnkern train ipd --out runs/ipd --epochs 20 --resume  # continue a run
    python -m snnkern sweep envelope-power --repeats 3 --out runs/sweep
    torchrun --nproc_per_node 2 -m snnkern train shd --out runs/shd  # DistributedDataParallel

Every option is checked before any work. Exit codes: 0 finished; 1 the run failed (bad data or
checkpoint file, non-finite loss); 2 wrong options or a run folder that needs --resume or
--overwrite; 130/143 stopped by SIGINT/SIGTERM after writing a checkpoint (continue with --resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="number of epochs (default: the seed's; 0: evaluate only)")
    p.add_argument("--seed", type=int, default=0, help="random seed of data, weights and shuffling")
    p.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--hidden", type=int, help="hidden units (default: the seed's)")
    p.add_argument("--tau", type=float, help="membrane time constant in ms (default: the seed's)")
    p.add_argument("--batch-size", type=int, help="global batch size (default: the seed's)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the seed's)")
    p.add_argument("--backend", choices=("compiled", "reference"), help="snnkern op backend")
    p.add_argument("--train-batches", type=int, help="IPD: training batches per epoch (seed: 64)")
    p.add_argument("--test-batches", type=int, help="IPD: test batches (seed: 32)")
    p.add_argument("--anf-per-ear", type=int, help="IPD: auditory nerve fibres per ear (seed: 100)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or log lines")
    p.add_argument(
        "--overwrite", action="store_true", help="start afresh in a folder that holds a run (deletes its checkpoint)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m snnkern", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    from .train import DEFAULTS, MODELS

    ev = DEFAULTS["evidence"]

    t = sub.add_parser("train", help="train one of the seed models")
    t.add_argument("model", choices=MODELS)
    _add_common(t)
    t.add_argument("--out", help="output folder (default: runs/MODEL)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt (options as the checkpoint's; --epochs, --device, --backend "
        "and the number of processes may change)",
    )
    t.add_argument(
        "--data",
        help="SHD: folder with shd_train.h5 and shd_test.h5 "
        "(default: generate synthetic SHD-format files into OUT/shd_data)",
    )
    t.add_argument("--envelope-power", type=float, help="IPD: envelope power (seed: 2)")
    t.add_argument("--ie-ratio", type=float, help="ipd-dales: fraction of inhibitory presynaptic units (0.5)")
    t.add_argument("--patience", type=int, help="ipd-dales: early-stopping patience in epochs (10; 0 = off)")
    t.add_argument(
        "--noise-offsets",
        dest="noise_offsets",
        action="store_true",
        default=None,
        help="IPD: redraw a random phase offset every epoch (default for ipd-dales)",
    )
    t.add_argument("--no-noise-offsets", dest="noise_offsets", action="store_false")
    t.add_argument("--nb-steps", type=int, help="SHD: time bins (seed 004: 100)")
    t.add_argument("--max-time", type=float, help="SHD: seconds covered by the bins (seed 004: 1.0)")
    t.add_argument("--shd-train-samples", type=int, help="synthetic SHD: training samples (2560)")
    t.add_argument("--shd-test-samples", type=int, help="synthetic SHD: test samples (768)")
    e = t.add_argument_group(
        "evidence (seed 003)",
        "An epoch is --iterations iterations, each on a fresh batch of trials, then the validation on a "
        "fixed validation set and a checkpoint; --epochs counts these epochs.",
    )
    e.add_argument(
        "--rule", help=f"learning rule: bptt (autograd through the fused ops) or eprop (default: {ev['rule']})"
    )
    e.add_argument("--feedback", help="eprop: the learning signals' feedback weights, random (default) or symmetric")
    e.add_argument("--iterations", type=int, help=f"training iterations per epoch (default: {ev['iterations']})")
    e.add_argument("--val-batches", type=int, help=f"batches of validation trials (default: {ev['val_batches']})")
    e.add_argument("--c-reg", type=float, help=f"strength of the firing-rate regularisation (default: {ev['c_reg']:g})")
    e.add_argument(
        "--f-target",
        type=float,
        help=f"its target rate, spikes per 1 ms step (default: {ev['f_target']:g} = {ev['f_target'] * 1000:g} Hz)",
    )
    e.add_argument("--n-cues", type=int, help=f"cues per trial, odd (seed: {ev['n_cues']})")
    e.add_argument("--cue-steps", type=int, help=f"steps of one cue (seed: {ev['cue_steps']})")
    e.add_argument("--spacing-steps", type=int, help=f"steps of silence before each cue (seed: {ev['spacing_steps']})")
    e.add_argument(
        "--delay-steps", type=int, help=f"background-only steps after the last cue (seed: {ev['delay_steps']})"
    )
    e.add_argument("--recall-steps", type=int, help=f"steps of the recall window (seed: {ev['recall_steps']})")
    t.add_argument(
        "--compare-naive",
        action="store_true",
        help="also time one epoch of the seed's naive loop on the same data and report the speedup",
    )
    t.add_argument("--no-plots", action="store_true")

    s = sub.add_parser("sweep", help="repeat the seed-000 training over a parameter")
    s.add_argument("parameter", choices=("envelope-power",))
    s.add_argument("--repeats", type=int, default=3, help="runs per value (seeds seed .. seed+repeats-1)")
    s.add_argument(
        "--values",
        default="0,1,2,3,4,5,10,30,40,50,100",
        help="comma-separated envelope powers (default: the seed's list)",
    )
    s.add_argument("--model", default="ipd", choices=("ipd", "ipd-membrane", "ipd-dales"))
    s.add_argument("--out", default="runs/sweep_envelope_power")
    s.add_argument("--resume", action="store_true", help="continue the runs that have a checkpoint")
    _add_common(s)

    args = parser.parse_args(argv)
    from .train.errors import Preempted, TrainError

    try:
        _command(args)
    except TrainError as error:
        if error.collective and _rank() != 0:
            return error.exit_code  # every rank raised it: rank 0 reports it
        what = "" if isinstance(error, Preempted) else "error: "
        print(f"{parser.prog} {args.command}: {what}{error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:  # Ctrl-C twice: no checkpoint of the step in progress
        print(f"\n{parser.prog} {args.command}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def _command(args: argparse.Namespace) -> None:
    from .runtime import tune_cpu_allocator
    from .train import TrainConfig, sweep_envelope_power, train
    from .train.distributed import session, world_size_from_env
    from .train.errors import ConfigError

    common: dict[str, Any] = dict(
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        hidden=args.hidden,
        tau=args.tau,
        batch_size=args.batch_size,
        lr=args.lr,
        backend=args.backend,
        train_batches=args.train_batches,
        test_batches=args.test_batches,
        anf_per_ear=args.anf_per_ear,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    world_size = world_size_from_env()
    if args.command == "train":
        cfg = TrainConfig(
            model=args.model,
            out=args.out,
            data=args.data,
            envelope_power=args.envelope_power,
            ie_ratio=args.ie_ratio,
            patience=args.patience,
            noise_offsets=args.noise_offsets,
            nb_steps=args.nb_steps,
            max_time=args.max_time,
            shd_train_samples=args.shd_train_samples,
            shd_test_samples=args.shd_test_samples,
            rule=args.rule,
            feedback=args.feedback,
            iterations=args.iterations,
            val_batches=args.val_batches,
            c_reg=args.c_reg,
            f_target=args.f_target,
            n_cues=args.n_cues,
            cue_steps=args.cue_steps,
            spacing_steps=args.spacing_steps,
            delay_steps=args.delay_steps,
            recall_steps=args.recall_steps,
            compare_naive=args.compare_naive,
            plots=not args.no_plots,
            **common,
        )
        cfg.resolved().validate(world_size)  # every option, before any work
        tune_cpu_allocator()  # reuse freed activation buffers instead of page-faulting them back in
        with session(cfg.resolved().device):
            train(cfg)
    else:
        try:
            values = [float(v) for v in args.values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--values must be comma-separated numbers; got {args.values!r}") from None
        base = TrainConfig(model=args.model, **common)
        from .train.sweep import validate_sweep

        validate_sweep(values, args.repeats, base, args.out, world_size)
        tune_cpu_allocator()
        with session(base.resolved().device):
            sweep_envelope_power(values, args.repeats, base, args.out)


if __name__ == "__main__":
    sys.exit(main())
