"""A convolutional spiking network on scikit-learn's 8x8 handwritten digits, trained with snnkern.

The data ship with scikit-learn (``sklearn.datasets.load_digits``: 1797 greyscale 8x8 images,
10 classes), so the example runs offline. Each image is coded as spikes over ``--steps`` time
steps (``--coding rate``: every pixel fires with probability intensity/16 at each step;
``--coding latency``: every non-zero pixel fires once, the brighter the earlier) and fed, as
``[batch, time, channel, height, width]``, to::

    TimeFolded(Conv2d(1, C, 3, padding=1)) -> LIFNeuron
    -> TimeFolded(MaxPool2d(2)) -> TimeFolded(Conv2d(C, 2C, 3, padding=1)) -> LIFNeuron
    -> TimeFolded(Flatten) -> TimeFolded(Linear(2C * 4 * 4, 10)) -> LIFNeuron (readout)

:class:`snnkern.nn.TimeFolded` runs a per-step layer over all time steps at once (time folded
into the batch); :class:`snnkern.nn.LIFNeuron` runs the whole time loop of every neuron in one
fused kernel, forward and backward. The loss is the cross-entropy of the readout's spike counts.

The neuron is SpikingJelly's ``LIFNode(tau, decay_input=False, v_reset=0.0)`` with its default
``Sigmoid(alpha=4)`` surrogate, written in snnkern's terms: charge, fire, then reset to zero
(``ordering="charge_first"``), decay ``alpha = 1 - 1/tau``, threshold 1, ``Sigmoid(4.0)``.
``--compare spikingjelly`` builds the same network (same initial weights, same batches) from
SpikingJelly's multi-step ``LIFNode`` and ``layer.SeqToANNContainer``, trains both, alternating
epochs so that both run under the same machine state, and reports the seconds per training
epoch of each and their ratio. (SpikingJelly fires at ``v >= threshold``, snnkern at
``v > threshold``: the two differ only where a membrane equals the threshold exactly.
SpikingJelly's ``decay_input=True`` neuron is the same one with the input divided by ``tau``.)

    python examples/digits_conv.py                          # 20 epochs, about 97 % test accuracy
    python examples/digits_conv.py --coding latency         # tau 8 steps; about 93 % after 20 epochs
    python examples/digits_conv.py --compare spikingjelly --threads 2
    python examples/digits_conv.py --checkpoint /tmp/digits.pt   # resumable: rerun to continue
    python examples/digits_conv.py --quick                  # CI smoke run (a few seconds)

Needs scikit-learn and tqdm (``pip install scikit-learn tqdm``); SpikingJelly only for
``--compare``. ``build_snnkern`` / ``build_spikingjelly`` are also used by
``benchmarks/run.py --case conv``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

import snnkern
from snnkern.nn import LIFNeuron, TimeFolded

TAU = 2.0  # membrane time constant in steps (SpikingJelly's default): decay 1 - 1/tau = 0.5
LATENCY_TAU = 8.0  # the default with latency coding
THRESHOLD = 1.0
SURROGATE_ALPHA = 4.0  # SpikingJelly's default Sigmoid(alpha=4)
CLASSES = 10
SPLIT_SEED = 0  # the train/test split is the same whatever --seed is
TEST_FRACTION = 0.2


# --------------------------------------------------------------------------------------------
# The network, once for snnkern and once for SpikingJelly
# --------------------------------------------------------------------------------------------


def per_step_layers(channels: int = 16, size: int = 8) -> list[nn.Module | str]:
    """The network as a list: per-step ``nn.Module`` layers, and ``"lif"`` where a layer of LIF
    neurons goes. The modules are freshly initialised (torch's default init, so seed torch first);
    both builders take this list, so that two networks can start from the same weights
    (``copy.deepcopy`` the list)."""
    pooled = size // 2
    return [
        nn.Conv2d(1, channels, 3, padding=1),
        "lif",
        nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        "lif",
        nn.Flatten(),
        nn.Linear(2 * channels * pooled * pooled, CLASSES),
        "lif",
    ]


def build_snnkern(layers: list[nn.Module | str], tau: float = TAU, backend: str | None = None) -> nn.Sequential:
    """snnkern network on ``[batch, time, 1, 8, 8]`` input -> readout spikes ``[batch, time, 10]``."""

    def neuron() -> LIFNeuron:
        return LIFNeuron(
            alpha=1.0 - 1.0 / tau,
            threshold=THRESHOLD,
            reset="zero",
            ordering="charge_first",
            surrogate=snnkern.Sigmoid(SURROGATE_ALPHA),
            backend=backend,
        )

    return nn.Sequential(*[neuron() if m == "lif" else TimeFolded(m) for m in layers])


class SpikingJellyNet(nn.Module):
    """SpikingJelly's multi-step network (time-major ``[T, B, ...]``) behind the batch-first
    interface of the snnkern one: ``[batch, time, ...]`` in, ``[batch, time, 10]`` out. The
    membranes are reset before every batch (SpikingJelly's neurons keep them otherwise)."""

    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.body)
        return self.body(x.transpose(0, 1)).transpose(0, 1)


def build_spikingjelly(layers: list[nn.Module | str], tau: float = TAU) -> SpikingJellyNet:
    """The same network from SpikingJelly's multi-step ``LIFNode`` (raises ImportError without it)."""
    from spikingjelly.activation_based import layer, neuron, surrogate

    def node() -> nn.Module:
        # decay_input=False: H = V - V / tau + X, i.e. snnkern's alpha V + X with alpha = 1 - 1/tau
        return neuron.LIFNode(
            tau=float(tau),
            decay_input=False,
            v_threshold=THRESHOLD,
            v_reset=0.0,
            surrogate_function=surrogate.Sigmoid(alpha=SURROGATE_ALPHA),
            detach_reset=False,
            step_mode="m",
        )

    return SpikingJellyNet(nn.Sequential(*[node() if m == "lif" else layer.SeqToANNContainer(m) for m in layers]))


# --------------------------------------------------------------------------------------------
# Data: the digits, a fixed split, spike coding
# --------------------------------------------------------------------------------------------


def load_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)``: images ``[n, 1, 8, 8]`` in [0, 1], labels ``[n]``;
    80 / 20 split by a fixed permutation."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example needs scikit-learn for its data: pip install scikit-learn")
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = round(TEST_FRACTION * len(labels))
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def encode(images: torch.Tensor, steps: int, coding: str, generator: torch.Generator) -> torch.Tensor:
    """Spike trains ``[batch, steps, 1, 8, 8]`` (float 0/1) of images ``[batch, 1, 8, 8]`` in [0, 1]."""
    if coding == "rate":
        prob = images.unsqueeze(1).expand(-1, steps, *images.shape[1:])
        return (torch.rand(prob.shape, generator=generator) < prob).float()
    if coding == "latency":  # one spike per non-zero pixel, at step (1 - intensity) * (steps - 1)
        when = ((1.0 - images) * (steps - 1)).round().long().unsqueeze(1)
        spikes = torch.zeros(images.shape[0], steps, *images.shape[1:])
        spikes.scatter_(1, when, 1.0)
        return spikes * (images.unsqueeze(1) > 0)
    raise ValueError(f"coding must be 'rate' or 'latency', got {coding!r}")


def batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, steps: int, coding: str, seed: int, shuffle: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Coded batches; ``seed`` fixes the order and the spikes, so two networks (or a resumed run)
    see exactly the same data."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen) if shuffle else torch.arange(len(labels))
    for start in range(0, len(labels), batch_size):
        idx = order[start : start + batch_size]
        yield encode(images[idx], steps, coding, gen), labels[idx]


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train_epoch(model, optimizer, data, n_batches: int, device, desc: str) -> tuple[float, float]:
    """One epoch; returns ``(mean loss, seconds)``. The time covers the coding, forward, backward
    and optimiser steps (the same work for every network), not the evaluation."""
    from tqdm import tqdm

    model.train()
    total, count = 0.0, 0
    t0 = time.perf_counter()
    with tqdm(data, total=n_batches, desc=desc, leave=False, dynamic_ncols=True) as bar:
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            counts = model(x).sum(dim=1)  # readout spike counts [batch, 10]
            loss = F.cross_entropy(counts, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
            bar.set_postfix(loss=f"{total / count:.3f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return total / max(count, 1), time.perf_counter() - t0


@torch.no_grad()
def accuracy(model, data, device) -> float:
    model.eval()
    correct, count = 0, 0
    for x, y in data:
        counts = model(x.to(device)).sum(dim=1)
        # ties (e.g. a silent readout) go to no class in particular: count them as wrong
        top = counts.max(dim=1)
        unique = (counts == top.values.unsqueeze(1)).sum(dim=1) == 1
        correct += int(((top.indices.cpu() == y) & unique.cpu()).sum())
        count += len(y)
    return correct / max(count, 1)


CHECKED_ARGS = ("steps", "coding", "channels", "tau", "seed", "batch_size", "lr", "quick", "compare")


def load_checkpoint(path: str, args, models: dict, optimizers: dict) -> tuple[int, list]:
    """Restores ``models`` and ``optimizers`` from ``path`` if it exists; returns the epochs done and
    the history. A checkpoint of a run with other settings is refused, not mixed in."""
    if not path or not os.path.exists(path):
        return 0, []
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    saved = ckpt.get("args", {})
    differ = {k: (saved.get(k), getattr(args, k)) for k in CHECKED_ARGS if saved.get(k) != getattr(args, k)}
    if differ:
        sys.exit(f"{path} holds a run with other settings {differ} (saved, now): remove it or pick another path")
    for name, model in models.items():
        model.load_state_dict(ckpt["models"][name])
        optimizers[name].load_state_dict(ckpt["optimizers"][name])
    print(f"resumed from {path}: {ckpt['epoch']} epoch(s) done")
    return int(ckpt["epoch"]), list(ckpt.get("history", []))


def save_checkpoint(path: str, args, epoch: int, models: dict, optimizers: dict, history: list) -> None:
    state = {
        "epoch": epoch,
        "args": {k: getattr(args, k) for k in CHECKED_ARGS},
        "models": {k: m.state_dict() for k, m in models.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "history": history,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save leaves the previous checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=16, help="time steps per image (default 16)")
    p.add_argument("--coding", choices=("rate", "latency"), default="rate")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=16, help="channels of the first convolution (second: twice)")
    p.add_argument(
        "--tau",
        type=float,
        help=f"membrane time constant in steps, > 1 (default {TAU:g} for rate coding, {LATENCY_TAU:g} for latency "
        "coding: one spike per pixel needs a longer memory)",
    )
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0, help="initial weights, batch order and spike coding")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compare", choices=("spikingjelly",), help="also train the same network in this library")
    p.add_argument("--checkpoint", help="save after every epoch; resume from it if it exists")
    p.add_argument("--quick", action="store_true", help="smoke run (CI): 1 epoch on a subset, < 20 s")
    args = p.parse_args(argv)
    if args.tau is None:
        args.tau = LATENCY_TAU if args.coding == "latency" else TAU
    if args.tau <= 1.0:
        p.error("--tau must be > 1 (the decay is 1 - 1/tau)")
    if args.quick:
        args.epochs = 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x_train, y_train, x_test, y_test = load_split()
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:256], y_train[:256], x_test[:128], y_test[:128]

    torch.manual_seed(args.seed)
    layers = per_step_layers(args.channels)
    models: dict[str, nn.Module] = {}
    if args.compare == "spikingjelly":  # the same initial weights: a copy of the same layers
        try:
            models["spikingjelly"] = build_spikingjelly(copy.deepcopy(layers), args.tau).to(device)
        except ImportError as error:
            sys.exit(f"--compare spikingjelly needs SpikingJelly (pip install spikingjelly): {error}")
    models = {"snnkern": build_snnkern(layers, args.tau).to(device), **models}  # snnkern's epochs first
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=args.lr) for k, m in models.items()}
    start, history = load_checkpoint(args.checkpoint, args, models, optimizers)

    n_batches = -(-len(y_train) // args.batch_size)
    print(
        f"digits 8x8: {len(y_train)} train / {len(y_test)} test, {args.coding} coding over {args.steps} steps, "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, {device}"
    )
    for epoch in range(start, args.epochs):
        record: dict[str, object] = {"epoch": epoch + 1}
        for name, model in models.items():
            data = batches(x_train, y_train, args.batch_size, args.steps, args.coding, args.seed * 1000 + epoch, True)
            loss, seconds = train_epoch(
                model, optimizers[name], data, n_batches, device, f"epoch {epoch + 1}/{args.epochs} {name}"
            )
            test = batches(x_test, y_test, 256, args.steps, args.coding, 10**6 + args.seed, False)
            acc = accuracy(model, test, device)
            record[name] = {"loss": loss, "seconds": seconds, "test_accuracy": acc}
            print(
                f"epoch {epoch + 1:3d}  {name:<12}  loss {loss:.4f}  test accuracy {100 * acc:6.2f} %  "
                f"{seconds:7.2f} s/epoch",
                flush=True,
            )
        history.append(record)
        if args.checkpoint:
            save_checkpoint(args.checkpoint, args, epoch + 1, models, optimizers, history)

    if not history:
        return 0
    final = history[-1]
    print(f"\nafter {final['epoch']} epochs:")
    medians = {}
    for name in models:
        # the first epoch of a process includes warm-up (allocator, thread pool): left out of the median
        times = [r[name]["seconds"] for r in history[1:] or history]
        medians[name] = statistics.median(times)
        print(
            f"  {name:<12}  test accuracy {100 * final[name]['test_accuracy']:6.2f} %  "
            f"median {medians[name]:.3f} s per training epoch (fastest {min(times):.3f} s)"
        )
    if "spikingjelly" in medians:
        print(f"  spikingjelly / snnkern time per epoch: {medians['spikingjelly'] / medians['snnkern']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
