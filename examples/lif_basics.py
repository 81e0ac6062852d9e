"""The "Spiking neural networks" LIF basics exercise (leaky integrator, LIF, time surfaces of a
spoken digit; "seed 002" in snnkern's docs), done with snnkern's functional ops.

Writes four PNGs to ``--out``:

1. ``leaky_integrator.png``  leaky integrator on a constant input and on an oscillating input;
2. ``lif_currents.png``      LIF membrane and spikes for constant currents 0.0, 0.1 and 0.3;
3. ``lif_frequency.png``     spike count of a LIF neuron driven by ``(cos + 1) / 2`` at growing frequency;
4. ``time_surfaces.png``     leaky-integrator and LIF time surfaces of one SHD-format sample
                             for a short and a long time constant.

The exercise integrates ``dv/dt = (i - v) / tau`` with Euler steps of size ``1/tau`` (time in steps):
``v <- (1 - 1/tau) v + i / tau``, i.e. :func:`snnkern.leaky` with ``alpha = 1 - 1/tau`` on the input
``i / tau``. For the LIF figure the current drives the membrane unscaled
(``v <- (1 - 1/tau) v + i``, threshold 1, reset to zero), so that with tau = 5 steps the
membrane settles at ``5 i``: 0.0 and 0.1 stay below threshold, 0.3 fires periodically.

Usage: ``python examples/lif_basics.py --out figures/lif_basics`` (needs the ``train`` extra:
matplotlib and h5py).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import snnkern
from snnkern.data.shd import dense_batch, load_shd, write_shd_file


def as_bt1(signal) -> torch.Tensor:
    """A 1-D signal as the ops' [batch=1, time, neurons=1] input."""
    return torch.as_tensor(signal, dtype=torch.float32).reshape(1, -1, 1)


def euler_leaky(current: torch.Tensor, tau: float) -> torch.Tensor:
    """Seed 002's Euler leaky integrator on [batch, time, neurons] input."""
    return snnkern.leaky(current / tau, 1.0 - 1.0 / tau).membrane


def figure_leaky(out):
    steps = 1000
    const = torch.ones(steps)
    osc = 0.1 * torch.sin(torch.arange(steps) * 2 * np.pi / 200)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharex=True)
    for ax, signal, title in ((axes[0], const, "constant input 1"), (axes[1], osc, "input 0.1 sin")):
        ax.plot(signal.numpy(), "k:", label="input")
        for tau in (10, 50, 200):
            ax.plot(euler_leaky(as_bt1(signal), tau)[0, :, 0].numpy(), label=f"tau = {tau} steps")
        ax.set_title(f"leaky integrator, {title}")
        ax.set_xlabel("time step")
        ax.set_ylabel("v")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "leaky_integrator.png"), dpi=100)
    plt.close(fig)


def figure_currents(out, tau=5.0, steps=100):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), sharey=True)
    for ax, current in zip(axes, (0.0, 0.1, 0.3), strict=True):
        res = snnkern.lif(
            as_bt1(torch.full((steps,), current)),
            1.0 - 1.0 / tau,
            threshold=1.0,
            reset="zero",
            ordering="update_first",
            return_membrane=True,
        )
        v, s = res.membrane[0, :, 0].numpy(), res.spikes[0, :, 0].numpy()
        ax.plot(v, label="membrane")
        ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="threshold")
        t = np.nonzero(s)[0]
        ax.scatter(t, np.full(len(t), 1.1), marker="|", color="r", label="spikes")
        ax.set_title(f"current {current} ({len(t)} spikes)")
        ax.set_xlabel("time step")
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("v")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "lif_currents.png"), dpi=100)
    plt.close(fig)


def figure_frequency(out, tau=10.0, threshold=0.8, samples=100):
    cycles = np.linspace(0.25, 12, 48)  # periods of the cosine over the 100 samples
    signals = [(np.cos(np.linspace(0, 2 * np.pi * c, samples)) + 1) / 2 for c in cycles]
    x = torch.tensor(np.stack(signals), dtype=torch.float32).T[None]  # one neuron per frequency
    res = snnkern.lif(x / tau, 1.0 - 1.0 / tau, threshold=threshold, ordering="update_first", return_membrane=True)
    counts = res.spikes[0].sum(0).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for k in (2, 40):
        axes[0].plot(signals[k], label=f"input, {cycles[k]:.1f} cycles")
        axes[0].plot(res.membrane[0, :, k].numpy(), "--", label=f"membrane, {cycles[k]:.1f} cycles")
    axes[0].axhline(threshold, color="grey", lw=0.8)
    axes[0].set_xlabel("sample")
    axes[0].legend(fontsize=7)
    axes[1].plot(cycles, counts, "o-")
    axes[1].set_xlabel("input frequency (cycles per 100 samples)")
    axes[1].set_ylabel("spike count")
    axes[1].set_title(f"LIF (tau {tau:g} steps, threshold {threshold}) vs input frequency")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "lif_frequency.png"), dpi=100)
    plt.close(fig)
    return cycles, counts


def figure_time_surfaces(out, nb_steps=300, taus=(3.0, 30.0)):
    with tempfile.TemporaryDirectory() as tmp:
        data = load_shd(write_shd_file(os.path.join(tmp, "sample.h5"), 4, n_classes=4, seed=0))
    x = dense_batch(data.times[:1], data.units[:1], nb_steps=nb_steps, nb_units=700, max_time=1.0)
    fig, axes = plt.subplots(1, 1 + 2 * len(taus), figsize=(4 * (1 + 2 * len(taus)), 3.5), sharey=True)
    t, u = np.nonzero(x[0].numpy())
    axes[0].scatter(t, u, s=1, c="g")
    axes[0].set_title("input spikes")
    axes[0].set_ylabel("unit (frequency channel)")
    for k, tau in enumerate(taus):
        surface = euler_leaky(x, tau)[0].T.numpy()
        # unscaled input, threshold 1.5: a LIF neuron fires when 2 or more input spikes fall within ~tau
        spikes = snnkern.lif(x, 1.0 - 1.0 / tau, threshold=1.5, ordering="update_first").spikes[0].numpy()
        axes[1 + 2 * k].imshow(surface, aspect="auto", origin="lower", interpolation="nearest")
        axes[1 + 2 * k].set_title(f"leaky integrator, tau {tau:g}")
        t, u = np.nonzero(spikes)
        axes[2 + 2 * k].scatter(t, u, s=2, c="k")
        axes[2 + 2 * k].set_title(f"LIF spikes, tau {tau:g} ({len(t)} spikes)")
    for ax in axes:
        ax.set_xlabel("time bin")
        ax.set_xlim(0, nb_steps)
        ax.set_ylim(0, 700)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "time_surfaces.png"), dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="figures/lif_basics", help="folder for the PNGs")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    figure_leaky(args.out)
    figure_currents(args.out)
    cycles, counts = figure_frequency(args.out)
    figure_time_surfaces(args.out)
    print(
        f"wrote 4 figures to {args.out}; spike counts from {cycles[0]:.2f} to {cycles[-1]:.1f} cycles: "
        f"{int(counts[0])} -> {int(counts[-1])}"
    )


if __name__ == "__main__":
    main()
