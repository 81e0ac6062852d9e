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
