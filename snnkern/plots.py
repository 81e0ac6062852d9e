"""PNG figures of training runs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._optional import require

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

require("matplotlib", "the training plots").use("Agg")
plt = require("matplotlib.pyplot", "the training plots")


def _save(fig: Figure, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_curve(path: str, history: dict[str, list[float]]) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="training")
    if history.get("val_loss"):
        ax.plot(epochs[: len(history["val_loss"])], history["val_loss"], label="validation")
        ax.legend()
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    _save(fig, path)


def confusion_matrix(path: str, confusion: np.ndarray, ipd: bool = False) -> None:
    """``confusion[estimated, true]`` counts, normalised per true class (column)."""
    c = confusion / np.maximum(confusion.sum(axis=0, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    extent = (-90, 90, -90, 90) if ipd else None
    im = ax.imshow(c, origin="lower", interpolation="nearest", extent=extent, aspect="equal")
    ax.set_xlabel("true IPD (deg)" if ipd else "true class")
    ax.set_ylabel("estimated IPD (deg)" if ipd else "estimated class")
    ax.set_title("confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)


def ipd_histograms(path: str, ipd_true: np.ndarray, ipd_est: np.ndarray, num_classes: int = 12) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(-90, 90, num_classes + 1)
    ax.hist(np.degrees(ipd_true), bins=bins, alpha=0.6, label="true")
    ax.hist(np.degrees(ipd_est), bins=bins, alpha=0.6, label="estimated")
    ax.set_xlabel("IPD (deg)")
    ax.set_ylabel("count")
    ax.legend()
    _save(fig, path)


def weight_matrices(path: str, weights: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Weights in the seeds' layout [pre, post]."""
    fig, axes = plt.subplots(1, len(weights), figsize=(4.5 * len(weights), 3.8), squeeze=False)
    for ax, (name, w) in zip(axes[0], weights.items(), strict=True):
        w = np.asarray(w.cpu() if hasattr(w, "cpu") else w)
        lim = np.abs(w).max() or 1.0
        im = ax.imshow(w, aspect="auto", origin="lower", interpolation="nearest", cmap="bwr", vmin=-lim, vmax=lim)
        ax.set_title(name)
        ax.set_ylabel("presynaptic unit")
        ax.set_xlabel("postsynaptic unit")
        fig.colorbar(im, ax=ax)
    _save(fig, path)


def spike_raster(path: str, spikes: np.ndarray, label: str = "neuron") -> None:
    """Raster of one sample's spikes [time, neurons]."""
    t, n = np.nonzero(np.asarray(spikes))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(t, n, s=2, c="k", marker="|")
    ax.set_xlim(0, spikes.shape[0])
    ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel(label)
    ax.set_title(f"spikes of one test sample ({int(spikes.sum())} spikes)")
    _save(fig, path)


def training_figures(
    out: str,
    model: str,
    history: dict[str, list[float]],
    results: dict[str, Any],
    weights: Mapping[str, np.ndarray | torch.Tensor],
) -> None:
    loss_curve(os.path.join(out, "loss.png"), history)
    confusion_matrix(os.path.join(out, "confusion.png"), results["_confusion"], ipd=model != "shd")
    weight_matrices(os.path.join(out, "weights.png"), weights)
    spike_raster(os.path.join(out, "raster.png"), results["_raster"], results.get("_raster_label", "neuron"))
    if "_ipd_true" in results:
        ipd_histograms(
            os.path.join(out, "ipd_histograms.png"),
            results["_ipd_true"],
            results["_ipd_est"],
            results["_confusion"].shape[0],
        )


# ------------------------------------------------------------------ evidence accumulation (seed 003)

_SIDES = ("left", "right")


def evidence_curves(path: str, history: dict[str, list[float]], iterations_per_epoch: int) -> None:
    """Loss and recall error of every training batch against the iteration, and of the validation
    set after every epoch (seed 003's training-error figure)."""
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(6, 5))
    iterations = np.arange(1, len(history["step_loss"]) + 1)
    val = np.arange(1, len(history.get("val_loss", [])) + 1) * iterations_per_epoch
    for ax, step_key, val_key, ylabel in (
        (axes[0], "step_loss", "val_loss", "loss"),
        (axes[1], "step_recall_error", "val_recall_error", "recall error"),
    ):
        steps = np.asarray(history.get(step_key, []), dtype=float)
        ax.plot(iterations[: len(steps)], steps, lw=0.7, alpha=0.8, label="training batch")
        values = np.asarray(history.get(val_key, []), dtype=float)
        if len(values):
            ax.plot(val[: len(values)], values, "o-", ms=3, label="validation set")
        ax.set_ylabel(ylabel)
    axes[0].legend()
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xlabel("training iteration")
    axes[0].set_title("cross-entropy over the recall window + rate regularisation", fontsize=9)
    _save(fig, path)


def evidence_trial(path: str, trial: Mapping[str, Any], title: str) -> None:
    """One trial of the evidence task: input and recurrent spikes, membrane, adaptive threshold,
    surrogate derivative and learning signal of a few neurons, readouts, softmax and target."""
    inputs, spikes = np.asarray(trial["inputs"]), np.asarray(trial["spikes"])
    steps, n = spikes.shape
    n_regular = int(trial["n_regular"])
    # the two most active neurons of each kind (the first ones where none fired)
    counts = spikes.sum(axis=0)
    chosen = [
        int(lo + j)
        for lo, hi in ((0, n_regular), (n_regular, n))
        for j in np.argsort(-counts[lo:hi], kind="stable")[:2]
    ]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    start, stop = trial["window"]
    fig, axes = plt.subplots(8, 1, sharex=True, figsize=(8, 14), gridspec_kw={"hspace": 0.35})

    ax = axes[0]
    for k, (name, (lo, hi)) in enumerate(trial["populations"].items()):
        t, i = np.nonzero(inputs[:, lo:hi])
        ax.scatter(t, i + lo, s=1.5, marker="|", color=colours[k % len(colours)], label=name)
    ax.set_ylabel("input\nneuron")
    ax.legend(loc="upper left", fontsize=6, ncol=4, markerscale=4)
    ax = axes[1]
    for lo, hi, name, colour in ((0, n_regular, "regular", "tab:blue"), (n_regular, n, "adaptive", "tab:red")):
        t, j = np.nonzero(spikes[:, lo:hi])
        ax.scatter(t, j + lo, s=1.5, marker="|", color=colour, label=f"{name} ({len(t)} spikes)")
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_ylabel("recurrent\nneuron")
    ax.legend(loc="upper left", fontsize=6, ncol=2, markerscale=4)

    panels = (
        ("membrane", "membrane\n$v_j$"),
        ("threshold", "adaptive\nthreshold $A_j$"),
        ("psi", "surrogate\nderivative $\\psi_j$"),
        ("learning_signal", "learning\nsignal $L_j$"),
    )
    for ax, (key, ylabel) in zip(axes[2:6], panels, strict=True):
        trace = np.asarray(trial[key])
        for c, neuron in enumerate(chosen):
            kind = "regular" if neuron < n_regular else "adaptive"
            ax.plot(trace[:, neuron], lw=0.7, color=colours[c % len(colours)], label=f"{kind} neuron {neuron}")
        ax.set_ylabel(ylabel)
    axes[2].legend(loc="upper left", fontsize=6, ncol=4)

    readout, probability, target = (np.asarray(trial[k]) for k in ("readout", "probability", "target"))
    for k in range(readout.shape[1]):
        axes[6].plot(readout[:, k], lw=0.8, color=colours[k], label=f"readout {_SIDES[k] if k < 2 else k}")
        axes[7].plot(probability[:, k], lw=0.8, color=colours[k], label=f"$\\pi_{k}$")
        masked = np.where(np.arange(steps)[:, None] >= start, target, np.nan)[:, k]
        axes[7].plot(masked, "--", lw=1.2, color=colours[k], label=f"target $\\pi^*_{k}$")
    axes[6].set_ylabel("readout\n$y_k$")
    axes[6].legend(loc="upper left", fontsize=6)
    axes[7].set_ylabel("softmax $\\pi_k$\nand target")
    axes[7].set_ylim(-0.05, 1.05)
    axes[7].legend(loc="upper left", fontsize=6, ncol=2)
    axes[-1].set_xlabel("time step (1 ms)")
    axes[-1].set_xlim(0, steps)
    for ax in axes:
        ax.axvspan(start, stop, color="0.85", zorder=0)  # the recall window
    label, decision = int(trial["label"]), int(trial["decision"])
    axes[0].set_title(
        f"{title}: target {_SIDES[label]}, decision {_SIDES[decision]} "
        f"({'correct' if label == decision else 'wrong'}); grey: recall window",
        fontsize=9,
    )
    by_source: dict[str, list[str]] = {}
    for key, source in trial.get("sources", {}).items():
        by_source.setdefault(source, []).append(key)
    note = "; ".join(f"{', '.join(keys)}: {source}" for source, keys in by_source.items())
    fig.align_ylabels(axes)
    fig.text(0.01, 0.003, "traces " + note, fontsize=6, wrap=True)
    fig.subplots_adjust(left=0.13, right=0.98, top=0.97, bottom=0.05)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evidence_weights(
    path: str, before: Mapping[str, np.ndarray | torch.Tensor], after: Mapping[str, np.ndarray | torch.Tensor]
) -> None:
    """The weight matrices before and after training, one colour scale per matrix. Names are
    ``"PRE -> POST"`` (or one name for a population onto itself) and matrices ``[pre, post]``; the
    recurrent neurons run along x."""
    fig, axes = plt.subplots(len(before), 2, figsize=(9, 2.6 * len(before)), squeeze=False, layout="constrained")
    for row, name in enumerate(before):
        pair = [np.asarray(w.cpu() if hasattr(w, "cpu") else w) for w in (before[name], after[name])]
        lim = max(float(np.abs(w).max()) for w in pair) or 1.0
        pre, post = name.split(" -> ") if " -> " in name else (name, name)
        transpose = post != "recurrent" and pre == "recurrent"  # the readout: recurrent neurons along x
        ylabel, xlabel = (
            (f"{post} neuron (post)", f"{pre} neuron (pre)")
            if transpose
            else (f"{pre} neuron (pre)", f"{post} neuron (post)")
        )
        for col, (w, when) in enumerate(zip(pair, ("before training", "after training"), strict=True)):
            ax = axes[row, col]
            image = w.T if transpose else w
            im = ax.imshow(
                image, aspect="auto", origin="lower", interpolation="nearest", cmap="bwr", vmin=-lim, vmax=lim
            )
            ax.set_title(f"{name}, {when}", fontsize=9)
            ax.set_ylabel(ylabel)
            ax.set_xlabel(xlabel)
        fig.colorbar(im, ax=axes[row].tolist(), fraction=0.03)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evidence_figures(out: str, history: dict[str, list[float]], results: Mapping[str, Any], iterations: int) -> None:
    """The figures of an evidence run: loss.png (loss and recall error), trial_before.png and
    trial_after.png (one validation trial), weights.png (before and after)."""
    evidence_curves(os.path.join(out, "loss.png"), history, iterations)
    evidence_trial(os.path.join(out, "trial_before.png"), results["_trial_before"], "before training")
    evidence_trial(os.path.join(out, "trial_after.png"), results["_trial_after"], "after training")
    evidence_weights(os.path.join(out, "weights.png"), results["_weights_before"], results["_weights_after"])


def sweep_figure(path: str, summary: Sequence[dict[str, Any]]) -> None:
    x = np.array([e["envelope_power"] for e in summary])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, ylabel in ((axes[0], "accuracy", "accuracy (%)"), (axes[1], "abs_error_deg", "abs. error (deg)")):
        for split, colour in (("train", "tab:blue"), ("test", "tab:red")):
            name = f"{split}_{key}"
            if name + "_mean" not in summary[0]:
                continue
            ax.errorbar(
                x,
                [e[name + "_mean"] for e in summary],
                yerr=[e[name + "_std"] for e in summary],
                fmt="o-",
                capsize=4,
                color=colour,
                label=split,
            )
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("envelope power")
        ax.set_ylabel(ylabel + ", mean +/- std")
        ax.legend()
    _save(fig, path)
