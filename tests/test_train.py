"""Smoke tests of the training job: tiny sizes, checkpoint + resume, metrics.json, plots."""

import json
import os
import subprocess
import sys

import pytest
import torch

from snnkern.__main__ import main
from snnkern.data import load_shd
from snnkern.train import TrainConfig, train

TINY_IPD = dict(batch_size=8, train_batches=2, test_batches=1, hidden=6, anf_per_ear=8, progress=False)


def _read_json(*path):
    with open(os.path.join(*path)) as f:
        return json.load(f)


def _state(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)


def test_ipd_one_epoch_metrics_and_plots(tmp_path):
    out = str(tmp_path / "ipd")
    m = train(TrainConfig(model="ipd", epochs=1, out=out, compare_naive=True, **TINY_IPD))
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    for key in (
        "test_accuracy",
        "test_abs_error_deg",
        "train_accuracy",
        "seconds_per_epoch",
        "naive_seconds_per_epoch",
        "speedup_vs_naive",
    ):
        assert key in saved and saved[key] == m[key]
    assert 0 <= saved["test_accuracy"] <= 100
    for png in ("loss.png", "confusion.png", "weights.png", "raster.png", "ipd_histograms.png"):
        assert os.path.getsize(os.path.join(out, png)) > 0
    ck = _state(out)
    assert ck["epoch"] == 1 and {"model", "optimizer", "rng", "history"} <= set(ck)


@pytest.mark.parametrize("model", ["ipd", "ipd-dales"])
def test_resume_continues_exactly(tmp_path, model):
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    common = dict(model=model, plots=False, **TINY_IPD)
    train(TrainConfig(epochs=3, out=full, **common))
    train(TrainConfig(epochs=1, out=part, **common))
    train(TrainConfig(epochs=3, out=part, resume=True, **common))
    a, b = _state(full), _state(part)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert a["history"]["val_loss"] == b["history"]["val_loss"]


def test_dales_early_stopping_keeps_best(tmp_path):
    out = str(tmp_path / "dales")
    m = train(TrainConfig(model="ipd-dales", epochs=40, patience=3, lr=0.05, out=out, plots=False, **TINY_IPD))
    ck = _state(out)
    vl = ck["history"]["val_loss"]
    assert ck["best_epoch"] == int(torch.tensor(vl).argmin())
    if ck["stopped"]:
        assert m["epochs_run"] < 40
    # signs of the effective weights obey Dale's law
    w = ck["model"]["hidden.linear.weight"].abs() * ck["model"]["hidden.linear.signs"]
    assert (w[:, :8] <= 0).all() and (w[:, 8:] >= 0).all()


def test_membrane_and_shd_cli(tmp_path):
    out = str(tmp_path / "mem")
    assert (
        main(
            [
                "train",
                "ipd-membrane",
                "--epochs",
                "1",
                "--out",
                out,
                "--batch-size",
                "8",
                "--train-batches",
                "2",
                "--test-batches",
                "1",
                "--anf-per-ear",
                "8",
                "--no-progress",
                "--no-plots",
            ]
        )
        == 0
    )
    assert "test_accuracy" in _read_json(out, "metrics.json")
    out = str(tmp_path / "shd")
    assert (
        main(
            [
                "train",
                "shd",
                "--epochs",
                "1",
                "--out",
                out,
                "--batch-size",
                "8",
                "--hidden",
                "8",
                "--nb-steps",
                "20",
                "--shd-train-samples",
                "16",
                "--shd-test-samples",
                "8",
                "--no-progress",
                "--compare-naive",
            ]
        )
        == 0
    )
    m = _read_json(out, "metrics.json")
    assert {"test_accuracy", "train_accuracy", "seconds_per_epoch", "naive_seconds_per_epoch"} <= set(m)
    assert os.path.exists(os.path.join(out, "shd_data", "shd_train.h5"))
    assert os.path.exists(os.path.join(out, "confusion.png"))


def test_shd_missing_data_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="SHD file not found"):
        train(
            TrainConfig(model="shd", epochs=1, data=str(tmp_path / "nowhere"), out=str(tmp_path / "o"), progress=False)
        )


def test_sweep_varies_envelope_power(tmp_path):
    out = str(tmp_path / "sweep")
    main(
        [
            "sweep",
            "envelope-power",
            "--repeats",
            "2",
            "--values",
            "1,10",
            "--epochs",
            "1",
            "--out",
            out,
            "--batch-size",
            "8",
            "--train-batches",
            "1",
            "--test-batches",
            "1",
            "--anf-per-ear",
            "4",
            "--hidden",
            "4",
            "--no-progress",
        ]
    )
    res = _read_json(out, "sweep.json")
    assert [e["envelope_power"] for e in res["summary"]] == [1.0, 10.0]
    assert all(e["repeats"] == 2 for e in res["summary"])
    cfgs = [
        _read_json(out, d, "metrics.json")["config"]["envelope_power"]
        for d in sorted(os.listdir(out))
        if d.startswith("power_")
    ]
    assert sorted(cfgs) == [1.0, 1.0, 10.0, 10.0]
    assert os.path.exists(os.path.join(out, "sweep_envelope_power.png"))


def test_missing_optional_package_names_it_and_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail as if it were not installed
    with pytest.raises(ImportError) as info:
        load_shd(str(tmp_path / "shd_train.h5"))
    message = str(info.value)
    assert "'h5py' is missing" in message and "reading SHD files" in message
    assert 'pip install "snnkern[train]"' in message
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"'tqdm' is missing; it is needed for the training progress bar"):
        train(TrainConfig(model="ipd", epochs=1, out=str(tmp_path / "o"), **TINY_IPD))


def test_core_imports_without_the_train_extra():
    # None in sys.modules blocks an import: the core and the training modules must import anyway
    code = (
        "import sys; sys.modules.update(dict.fromkeys(['matplotlib', 'tqdm', 'h5py']))\n"
        "import snnkern, snnkern.ops, snnkern.nn, snnkern.models, snnkern.seed_loops, snnkern.reference_ops\n"
        "import snnkern.data, snnkern.train"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
