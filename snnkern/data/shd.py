"""Spiking Heidelberg Digits (SHD) files: loading, time binning and a synthetic generator.

The official files (``shd_train.h5``, ``shd_test.h5``) hold, per sample, variable-length
arrays ``spikes/times`` (seconds) and ``spikes/units`` (0..699), and ``labels`` (20 classes).
Binning follows seed 004, SpyTorch tutorial 4 "Training a spiking neural network on a spiking
dataset (Spiking Heidelberg Digits)" by Halvagal and Zenke: ``bin = floor(t * (nb_steps - 1) / max_time)``,
spikes with ``bin >= nb_steps`` dropped; several spikes of a unit in one bin add up (the tutorial
builds a sparse tensor and densifies it, which sums duplicates).

:func:`write_shd_file` writes files of the same layout with class-dependent spike patterns
(each class: a few "formant" bands that sweep across the units over time), for tests and for
demo runs without the real data set.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.types import Device

from .._optional import require

SHD_UNITS = 700
SHD_CLASSES = 20


@dataclass
class SHDData:
    """An SHD split in memory: per-sample spike ``times`` and ``units``, and ``labels``."""

    times: list[np.ndarray]
    units: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def fingerprint(self) -> str:
        """SHA-256 of the contents (labels, spike times and units of every sample), independent of
        the file's layout: identifies the data a checkpoint was trained on."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        counts = np.fromiter((len(t) for t in self.times), dtype=np.int64, count=len(self.times))
        h.update(counts.tobytes())
        for t, u in zip(self.times, self.units, strict=True):
            h.update(np.ascontiguousarray(t, dtype=np.float64).tobytes())
            h.update(np.ascontiguousarray(u, dtype=np.int64).tobytes())
        return h.hexdigest()


def _integers(values: np.ndarray, what: str, path: str) -> np.ndarray:
    """``values`` as int64 if they are integers (an integer dtype, or floats with integral values)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if arr.size and not (np.isfinite(arr).all() and (arr == np.floor(arr)).all()):
            bad = arr[~(np.isfinite(arr) & (arr == np.floor(arr)))][:3].tolist()
            raise ValueError(f"{path!r}: {what} must be integers; found {bad}")
        return arr.astype(np.int64)
    raise ValueError(f"{path!r}: {what} must be integers; found dtype {arr.dtype}")


def load_shd(path: str, nb_units: int = SHD_UNITS) -> SHDData:
    """Read an SHD-format HDF5 file; clear errors for a missing, unreadable or malformed file."""
    h5py = require("h5py", "reading SHD files")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"SHD file not found: {path!r}. Put the official shd_train.h5 / shd_test.h5 there "
            "(https://zenkelab.org/datasets/), or omit --data to generate synthetic SHD-format files."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path!r} is not a readable HDF5 file (truncated or corrupted download?): {error}") from None
    try:
        with f:
            missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in f]
            if missing:
                raise ValueError(
                    f"{path!r} is not an SHD file: missing dataset(s) {missing} "
                    "(expected spikes/times, spikes/units and labels)"
                )
            raw_times, raw_units, raw_labels = f["spikes/times"][()], f["spikes/units"][()], f["labels"][()]
    except (OSError, RuntimeError, KeyError, TypeError) as error:
        raise ValueError(f"could not read {path!r} (truncated or malformed SHD file?): {error}") from None
    try:
        times = [np.asarray(t, dtype=np.float64).reshape(-1) for t in raw_times]
        units = [
            _integers(u, f"the unit indices (spikes/units) of sample {k}", path).reshape(-1)
            for k, u in enumerate(raw_units)
        ]
    except (TypeError, ValueError) as error:
        if str(error).startswith(repr(path)):
            raise
        raise ValueError(f"{path!r}: spikes/times and spikes/units must hold one array per sample: {error}") from None
    labels = _integers(raw_labels, "labels", path).reshape(-1)
    if not (len(times) == len(units) == len(labels)):
        raise ValueError(
            f"{path!r}: spikes/times ({len(times)}), spikes/units ({len(units)}) and labels "
            f"({len(labels)}) must have one entry per sample"
        )
    for k, (t, u) in enumerate(zip(times, units, strict=True)):
        if t.shape != u.shape:
            raise ValueError(f"{path!r}: sample {k} has {t.shape[0]} spike times but {u.shape[0]} units")
        if u.size and (u.min() < 0 or u.max() >= nb_units):
            bad = u[(u < 0) | (u >= nb_units)][:3].tolist()
            raise ValueError(f"{path!r}: sample {k} has unit indices outside [0, {nb_units}): {bad}")
        if t.size and not np.isfinite(t).all():
            raise ValueError(f"{path!r}: sample {k} has non-finite spike times")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path!r}: labels must be >= 0; found {sorted(set(labels[labels < 0].tolist()))[:5]}")
    return SHDData(times, units, labels)


@dataclass
class WindowReport:
    """How many spikes of a data set fall outside the time window of the binning."""

    outside: int  # spikes dropped: t < 0 or bin >= nb_steps
    total: int
    t_min: float
    t_max: float
    window_end: float  # seconds: spikes at t >= window_end fall past the last bin

    def describe(self, name: str, nb_steps: int, max_time: float) -> str:
        share = 100.0 * self.outside / self.total if self.total else 0.0
        return (
            f"{name}: {self.outside} of {self.total} spikes ({share:.2f} %) lie outside the window "
            f"[0, {self.window_end:.4g} s) of --nb-steps {nb_steps} and --max-time {max_time:g} and are dropped "
            f"(spike times span {self.t_min:.4g} .. {self.t_max:.4g} s)"
        )


def spikes_outside_window(data: SHDData, nb_steps: int, max_time: float) -> WindowReport:
    """Count the spikes the binning of :func:`dense_batch` drops (the same rule, so the same count)."""
    total = sum(len(t) for t in data.times)
    window_end = nb_steps * max_time / (nb_steps - 1) if nb_steps > 1 else float("inf")
    if total == 0:
        return WindowReport(0, 0, 0.0, 0.0, window_end)
    t = np.concatenate(data.times)
    bins = np.floor(t * (nb_steps - 1) / max_time)
    outside = int(np.count_nonzero((bins < 0) | (bins >= nb_steps)))
    return WindowReport(outside, total, float(t.min()), float(t.max()), window_end)


def dense_batch(
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    nb_steps: int,
    nb_units: int,
    max_time: float,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Bin a batch of spike lists into a dense tensor [batch, nb_steps, nb_units] (vectorised)."""
    counts = np.fromiter((len(t) for t in times), dtype=np.int64, count=len(times))
    x = torch.zeros(len(times), nb_steps, nb_units, device=device, dtype=dtype)
    if counts.sum() == 0:
        return x
    t = np.concatenate(times).astype(np.float64)
    u = np.concatenate(units).astype(np.int64)
    b = np.repeat(np.arange(len(times), dtype=np.int64), counts)
    bins = np.floor(t * (nb_steps - 1) / max_time).astype(np.int64)
    keep = (bins < nb_steps) & (bins >= 0)
    index = tuple(torch.from_numpy(a[keep]).to(device) for a in (b, bins, u))
    x.index_put_(index, torch.ones(index[0].shape[0], device=device, dtype=dtype), accumulate=True)
    return x


def shd_batches(
    data: SHDData,
    batch_size: int,
    nb_steps: int = 100,
    nb_units: int = SHD_UNITS,
    max_time: float = 1.0,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x [B, nb_steps, nb_units], labels [B])``; the last partial batch is dropped (seed 004)."""
    n = len(data)
    order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
    for k in range(n // batch_size):
        idx = order[k * batch_size : (k + 1) * batch_size]
        x = dense_batch(
            [data.times[i] for i in idx], [data.units[i] for i in idx], nb_steps, nb_units, max_time, device, dtype
        )
        yield x, torch.as_tensor(data.labels[idx], device=device)


def _class_patterns(
    n_classes: int, n_units: int, formants: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class and formant band: the first and last unit of the band's sweep, and its onset."""
    start = rng.uniform(0.1, 0.9, size=(n_classes, formants)) * n_units
    end = rng.uniform(0.1, 0.9, size=(n_classes, formants)) * n_units
    onset = rng.uniform(0.0, 0.4, size=(n_classes, formants))  # fraction of the duration
    return start, end, onset


def write_shd_file(
    path: str,
    n_samples: int,
    n_classes: int = SHD_CLASSES,
    n_units: int = SHD_UNITS,
    seed: int = 0,
    pattern_seed: int = 1234,
    duration: tuple[float, float] = (0.6, 0.95),
    formants: int = 3,
    rate: float = 250.0,
    width: float = 12.0,
    noise_rate: float = 400.0,
    jitter_units: float = 25.0,
) -> str:
    """Write an SHD-format file of synthetic spoken-digit-like samples.

    Class ``c`` has ``formants`` bands; band k runs from unit ``start[c,k]`` to ``end[c,k]``
    between ``onset[c,k]`` and the end of the sample (fixed by ``pattern_seed``, so train and
    test files share the classes). Per sample: random duration, a random shift of all bands by
    ``N(0, jitter_units)`` units, band spikes at ``rate`` Hz spread by ``N(0, width)`` units, and
    uniform background noise at ``noise_rate`` Hz over all units.
    """
    h5py = require("h5py", "writing SHD files")
    start, end, onset = _class_patterns(n_classes, n_units, formants, np.random.default_rng(pattern_seed))
    rng = np.random.default_rng(seed)
    labels = np.arange(n_samples) % n_classes
    rng.shuffle(labels)
    all_times, all_units = [], []
    for c in labels:
        dur = rng.uniform(*duration)
        shift = rng.normal(0.0, jitter_units)
        ts, us = [], []
        for k in range(formants):
            t0 = onset[c, k] * dur
            n = rng.poisson(rate * (dur - t0))
            t = rng.uniform(t0, dur, size=n)
            frac = (t - t0) / max(dur - t0, 1e-6)
            u = start[c, k] + (end[c, k] - start[c, k]) * frac + shift + rng.normal(0.0, width, size=n)
            ts.append(t)
            us.append(u)
        n_noise = rng.poisson(noise_rate * dur)
        ts.append(rng.uniform(0.0, dur, size=n_noise))
        us.append(rng.uniform(0, n_units, size=n_noise))
        t = np.concatenate(ts)
        u = np.clip(np.rint(np.concatenate(us)), 0, n_units - 1)
        order = np.argsort(t, kind="stable")
        all_times.append(t[order].astype(np.float32))
        all_units.append(u[order].astype(np.uint16))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with h5py.File(path, "w") as f:
        vlen = h5py.vlen_dtype
        times = f.create_dataset("spikes/times", (n_samples,), dtype=vlen(np.float32), track_times=False)
        units = f.create_dataset("spikes/units", (n_samples,), dtype=vlen(np.uint16), track_times=False)
        for k in range(n_samples):
            times[k] = all_times[k]
            units[k] = all_units[k]
        f.create_dataset("labels", data=labels.astype(np.uint8), track_times=False)
        f.attrs["description"] = "synthetic SHD-format data written by snnkern.data.shd.write_shd_file"
    return path


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


GENERATED_RECORD = "params.json"


def generate_shd_folder(
    folder: str,
    n_train: int = 2560,
    n_test: int = 768,
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[str, str]:
    """Write ``shd_train.h5`` and ``shd_test.h5`` into ``folder``; return their paths.

    The parameters and the SHA-256 of the files go to ``folder/params.json``. Files already there
    are reused only when that record says they were generated with the same parameters and they
    are unchanged; otherwise they are regenerated (and ``log`` says why). Files with no record
    (another origin, or an older snnkern) are refused with ``FileExistsError`` unless ``overwrite``:
    to train on them as they are, pass their folder as ``--data``.
    """
    train = os.path.join(folder, "shd_train.h5")
    test = os.path.join(folder, "shd_test.h5")
    record_path = os.path.join(folder, GENERATED_RECORD)
    params = {"generator": "snnkern.data.shd.write_shd_file", "version": 1, "n_train": n_train, "n_test": n_test}
    params["seed"] = seed
    present = [p for p in (train, test) if os.path.exists(p)]
    reason = None
    if present:
        try:
            with open(record_path) as f:
                record = json.load(f)
        except FileNotFoundError:
            record = None
        except (OSError, ValueError) as error:
            record, reason = {}, f"its record {record_path} is unreadable ({error})"
        if record is None:
            if not overwrite:
                raise FileExistsError(
                    f"{folder} holds SHD files ({', '.join(os.path.basename(p) for p in present)}) without a "
                    f"record ({GENERATED_RECORD}) of the parameters they were generated with, so they may not "
                    "match these options. Start with --overwrite to regenerate them, or pass the folder as "
                    "--data to train on them as they are."
                )
            reason = "they have no record of their parameters (--overwrite)"
        elif reason is None:
            saved = {k: record.get(k) for k in params}
            if saved != params:
                diff = ", ".join(f"{k} {saved[k]!r} -> {v!r}" for k, v in params.items() if saved[k] != v)
                reason = f"their parameters differ ({diff})"
            else:
                files = record.get("files", {})
                for p in (train, test):
                    name = os.path.basename(p)
                    if not os.path.exists(p) or files.get(name) != file_sha256(p):
                        reason = f"{name} is missing or changed since it was generated"
                        break
        if reason is None:
            return train, test
        if log is not None:
            log(f"regenerating the synthetic SHD files in {folder}: {reason}")
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(record_path):
        os.remove(record_path)  # the files below change: no stale record while they are written
    for path, n, s in ((train, n_train, seed), (test, n_test, seed + 1)):
        write_shd_file(path + ".tmp", n, seed=s)
        os.replace(path + ".tmp", path)
    record = dict(params, files={os.path.basename(p): file_sha256(p) for p in (train, test)})
    with open(record_path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(record_path + ".tmp", record_path)
    return train, test
