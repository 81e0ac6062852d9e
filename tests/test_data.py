"""IPD generator and SHD loader/generator."""

import math

import h5py
import numpy as np
import pytest
import torch

from snnkern.data import (
    IPDConfig,
    IPDDataset,
    continuise,
    dense_batch,
    discretise,
    generate_shd_folder,
    load_shd,
    shd_batches,
    write_shd_file,
)
from snnkern.data.ipd import firing_probability


def _small(**kw):
    return IPDConfig(anf_per_ear=8, duration=0.02, **kw)


def test_ipd_reproducible_and_shapes():
    cfg = _small()
    a = IPDDataset(32, cfg, torch.Generator().manual_seed(3))
    b = IPDDataset(32, cfg, torch.Generator().manual_seed(3))
    assert a.spikes.shape == (32, 20, 16) and a.spikes.dtype == torch.bool
    assert torch.equal(a.spikes, b.spikes) and torch.equal(a.ipds, b.ipds)
    assert ((a.ipds > -math.pi / 2) & (a.ipds < math.pi / 2)).all()
    c = IPDDataset(32, cfg, torch.Generator().manual_seed(4))
    assert not torch.equal(a.spikes, c.spikes)


def test_ipd_rate_matches_formula():
    cfg = IPDConfig(anf_per_ear=20)
    ds = IPDDataset(512, cfg, torch.Generator().manual_seed(0))
    # mean of 0.6 * ((1 + sin)/2)^2 over a full phase cycle is 0.6 * 3/8
    assert abs(ds.spikes.float().mean().item() - 0.225) < 0.01
    p = firing_probability(torch.tensor([0.3]), cfg)
    theta = 2 * math.pi * 20 * 0.005 + math.pi / 2 * 3 / 19 + 0.3  # step 5, fibre 3 of the second ear
    assert abs(p[0, 5, 23].item() - 0.6 * (0.5 * (1 + math.sin(theta))) ** 2) < 1e-5


def test_envelope_power_changes_data():
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    lo = IPDDataset(64, IPDConfig(anf_per_ear=10, envelope_power=1), g())
    hi = IPDDataset(64, IPDConfig(anf_per_ear=10, envelope_power=10), g())
    assert hi.spikes.float().mean() < lo.spikes.float().mean()


def test_noise_offset_keeps_uniforms():
    cfg = _small(phase_offset=True)
    ds = IPDDataset(16, cfg, torch.Generator().manual_seed(0))
    u, spikes0, off0 = ds.uniforms.clone(), ds.spikes.clone(), ds.offset
    off1 = ds.redraw_offset(torch.Generator().manual_seed(9))
    assert off1 != off0 and torch.equal(ds.uniforms, u) and not torch.equal(ds.spikes, spikes0)
    expected = firing_probability(ds.ipds, cfg, off1) > u
    assert torch.equal(ds.spikes, expected)
    # without offsets, redraw does nothing
    fixed = IPDDataset(16, _small(), torch.Generator().manual_seed(0))
    s = fixed.spikes.clone()
    fixed.redraw_offset(torch.Generator().manual_seed(1))
    assert torch.equal(fixed.spikes, s)


def test_discretise_continuise():
    ipds = torch.tensor([-math.pi / 2, -0.01, 0.01, math.pi / 2 - 1e-6])
    assert discretise(ipds).tolist() == [0, 5, 6, 11]
    centres = continuise(torch.arange(12))
    assert torch.equal(discretise(centres), torch.arange(12))
    assert discretise(torch.tensor([0.0]), num_classes=4).item() == 2


def test_ipd_batches():
    ds = IPDDataset(70, _small(), torch.Generator().manual_seed(0))
    batches = list(ds.batches(32, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == 2
    x, y, ipd = batches[0]
    assert x.dtype == torch.float32 and x.shape == (32, 20, 16) and y.shape == (32,)
    assert torch.equal(discretise(ipd), y)


# ---------------------------------------------------------------------------------- SHD


def test_dense_batch_binning_matches_seed_rule():
    times = [np.array([0.0, 0.0101, 0.5, 0.999, 1.0, 1.2]), np.array([0.25])]
    units = [np.array([0, 1, 2, 3, 4, 5]), np.array([699])]
    x = dense_batch(times, units, nb_steps=100, nb_units=700, max_time=1.0)
    assert x.shape == (2, 100, 700)
    for t, u in zip(times[0], units[0]):
        b = int(np.floor(t * 99 / 1.0))
        if b < 100:
            assert x[0, b, u] == 1
    assert x[0].sum() == 5  # 1.2 s -> bin 118 dropped
    assert x[1, 24, 699] == 1
    # two spikes of a unit in one bin add up (the seed's sparse tensor sums duplicates)
    x2 = dense_batch([np.array([0.1, 0.1001])], [np.array([7, 7])], 100, 700, 1.0)
    assert x2[0, 9, 7] == 2


def test_generated_file_roundtrip(tmp_path):
    path = write_shd_file(str(tmp_path / "a.h5"), 40, n_classes=4, seed=0)
    data = load_shd(path)
    assert len(data) == 40 and data.num_classes == 4
    assert all(len(t) == len(u) > 0 for t, u in zip(data.times, data.units))
    batches = list(shd_batches(data, 16, nb_steps=50, max_time=1.0, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == 2 and batches[0][0].shape == (16, 50, 700)
    # class-dependent: mean unit profile differs more between classes than within
    prof = np.stack([np.bincount(u, minlength=700) for u in data.units]).astype(float)
    lab = data.labels
    m0, m1 = prof[lab == 0].mean(0), prof[lab == 1].mean(0)
    assert np.abs(m0 - m1).sum() > 0.3 * np.abs(m0).sum()
    a, b = generate_shd_folder(str(tmp_path / "d"), 20, 10)
    assert len(load_shd(a)) == 20 and len(load_shd(b)) == 10


def test_shd_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="SHD file not found"):
        load_shd(str(tmp_path / "missing.h5"))
    good = write_shd_file(str(tmp_path / "good.h5"), 10, n_classes=2)
    with open(good, "rb") as f:
        raw = f.read()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match="truncated"):
        load_shd(str(trunc))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        load_shd(str(junk))
    nokeys = tmp_path / "nokeys.h5"
    with h5py.File(nokeys, "w") as f:
        f.create_dataset("labels", data=np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="missing dataset"):
        load_shd(str(nokeys))
    mismatch = tmp_path / "mismatch.h5"
    with h5py.File(mismatch, "w") as f:
        t = f.create_dataset("spikes/times", (2,), dtype=h5py.vlen_dtype(np.float32))
        u = f.create_dataset("spikes/units", (2,), dtype=h5py.vlen_dtype(np.uint16))
        t[0], t[1] = np.array([0.1, 0.2], np.float32), np.array([0.1], np.float32)
        u[0], u[1] = np.array([1, 2], np.uint16), np.array([800], np.uint16)
        f.create_dataset("labels", data=np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="one entry per sample"):
        load_shd(str(mismatch))
