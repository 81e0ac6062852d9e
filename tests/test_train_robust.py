"""The training job against bad runs, bad files and bad folders: non-finite losses, strict JSON,
checkpoints that are data (not code), run-folder rules, generated and user data files."""

import fcntl
import json
import os
import pickle

import h5py
import numpy as np
import pytest
import torch

from snnkern.__main__ import main
from snnkern.data import generate_shd_folder, load_shd, write_shd_file
from snnkern.train import (
    CheckpointError,
    ConfigError,
    DataError,
    NonFiniteLossError,
    ResumeError,
    RunFolderError,
    TrainConfig,
    train,
)
from snnkern.train.loop import json_safe, write_json
from snnkern.train.tasks import IPDTask

TINY_IPD = dict(batch_size=8, train_batches=2, test_batches=1, hidden=6, anf_per_ear=8, progress=False, plots=False)
TINY_SHD = dict(batch_size=4, hidden=6, nb_steps=10, progress=False, plots=False)


def _strict_json(path):
    def refuse(token):
        raise AssertionError(f"{path} holds the non-JSON token {token}")

    with open(path) as f:
        return json.load(f, parse_constant=refuse)


def _ckpt(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)


# ------------------------------------------------------------------------- non-finite losses


def test_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    ref, out = str(tmp_path / "ref"), str(tmp_path / "nan")
    train(TrainConfig(model="ipd", epochs=1, out=ref, **TINY_IPD))
    calls = {"n": 0}
    loss = IPDTask.loss

    def nan_at_third_step(output, labels):
        calls["n"] += 1
        value = loss(output, labels)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(IPDTask, "loss", staticmethod(nan_at_third_step))
    with pytest.raises(NonFiniteLossError) as info:
        train(TrainConfig(model="ipd", epochs=3, out=out, **TINY_IPD))
    message = str(info.value)
    assert "non-finite training loss (nan) at epoch 2, step 1 of 2" in message
    assert f"the last good checkpoint, {os.path.join(out, 'checkpoint.pt')}, is from after epoch 1" in message
    assert calls["n"] == 3  # stopped at once: no further step
    good, kept = _ckpt(ref), _ckpt(out)
    assert kept["epoch"] == 1 and kept["step"] == 0
    for k in good["model"]:  # the checkpoint on disk is the one of epoch 1, untouched
        assert torch.equal(good["model"][k], kept["model"][k])
    metrics = _strict_json(os.path.join(out, "metrics.json"))
    assert metrics["status"] == "failed" and "epoch 2, step 1" in metrics["error"]


class _NaNGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def test_non_finite_gradient_stops_before_the_update(tmp_path, monkeypatch):
    step_loss = IPDTask.step_loss

    def poisoned(self, net, order, step):
        return _NaNGradient.apply(step_loss(self, net, order, step))

    monkeypatch.setattr(IPDTask, "step_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient of .*weight .* at epoch 1, step 1 of 2"):
        train(TrainConfig(model="ipd", epochs=1, out=str(tmp_path / "o"), **TINY_IPD))


def test_metrics_json_is_strict(tmp_path):
    obj = dict(a=float("nan"), b=[float("inf"), 1.0, np.float32(2.5)], c={"d": -float("inf")}, e=np.int64(3))
    assert json_safe(obj) == dict(a=None, b=[None, 1.0, 2.5], c={"d": None}, e=3)
    write_json(str(tmp_path / "m.json"), obj)
    assert _strict_json(str(tmp_path / "m.json"))["b"] == [None, 1.0, 2.5]
    # the early-stopping run of ipd-dales with a NaN validation loss writes valid JSON too
    out = str(tmp_path / "dales")
    m = train(TrainConfig(model="ipd-dales", epochs=1, out=out, **TINY_IPD))
    assert _strict_json(os.path.join(out, "metrics.json"))["epochs_run"] == m["epochs_run"] == 1


# ------------------------------------------------------------------------------ checkpoints


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_crafted_to_run_code_is_refused_without_running_it(tmp_path):
    out = str(tmp_path / "run")
    train(TrainConfig(model="ipd", epochs=1, out=out, **TINY_IPD))
    path = os.path.join(out, "checkpoint.pt")
    ckpt = torch.load(path, weights_only=True)
    marker = tmp_path / "marker"
    ckpt["history"] = _RunsCode(str(marker))
    torch.save(ckpt, path)
    # the file does run code when unpickled without weights_only ...
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()
    # ... and the trainer refuses it, names the file and the offending global, and runs nothing
    with pytest.raises(CheckpointError) as info:
        train(TrainConfig(model="ipd", epochs=2, out=out, resume=True, **TINY_IPD))
    message = str(info.value)
    assert path in message and "(Unsupported global: GLOBAL exec)" in message and "refusing to load" in message
    assert not marker.exists()
    # a raw pickle (not a torch zip archive) with the same payload: refused as well
    with open(path, "wb") as f:
        pickle.dump({"model": _RunsCode(str(marker))}, f)
    with pytest.raises(CheckpointError, match="checkpoint"):
        train(TrainConfig(model="ipd", epochs=2, out=out, resume=True, **TINY_IPD))
    assert not marker.exists()


def test_checkpoint_load_errors_name_the_file_and_the_problem(tmp_path):
    out = str(tmp_path / "run")
    cfg = dict(model="ipd", epochs=2, out=out, resume=True, **TINY_IPD)
    train(TrainConfig(**dict(cfg, epochs=1, resume=False)))
    path = os.path.join(out, "checkpoint.pt")
    with open(path, "rb") as f:
        good = f.read()
    ckpt = torch.load(path, weights_only=True)

    def refused(match):
        with pytest.raises(CheckpointError) as info:
            train(TrainConfig(**cfg))
        assert path in str(info.value) and match in str(info.value), str(info.value)

    with open(path, "wb") as f:
        f.write(good[: len(good) // 2])
    refused("not a readable checkpoint (truncated or corrupted file")
    with open(path, "wb") as f:
        f.write(b"\x00garbage" * 10)
    refused("not a readable checkpoint")
    torch.save({"weights": torch.zeros(2)}, path)
    refused("lacks the key(s) ['model', 'optimizer', 'rng', 'config', 'epoch', 'history']")
    torch.save([1, 2, 3], path)
    refused("holds a list, not a snnkern training checkpoint")
    torch.save(dict(ckpt, config=dict(ckpt["config"], model="shd")), path)
    refused("is for model 'shd', not 'ipd'")
    wrong = dict(ckpt["model"], **{"hidden.linear.weight": torch.zeros(3, 3)})
    torch.save(dict(ckpt, model=wrong), path)
    refused("its weights do not fit the ipd model of these options")
    os.remove(path)
    with pytest.raises(ResumeError, match=f"--resume: no checkpoint at {path}"):
        train(TrainConfig(**cfg))


# ------------------------------------------------------------------------------ run folders


def test_run_folder_rules(tmp_path, capsys):
    out = str(tmp_path / "run")
    tiny = ["--batch-size", "8", "--train-batches", "2", "--test-batches", "1", "--hidden", "6", "--anf-per-ear", "8"]
    base = ["train", "ipd", "--out", out, "--no-progress", "--no-plots", *tiny]
    assert main([*base, "--epochs", "1"]) == 0
    first = _ckpt(out)
    capsys.readouterr()
    # another run in the same folder is refused ...
    assert main([*base, "--epochs", "1", "--seed", "3"]) == 2
    assert "holds another run (checkpoint.pt, metrics.json): continue it with --resume" in capsys.readouterr().err
    assert torch.equal(_ckpt(out)["model"]["hidden.linear.weight"], first["model"]["hidden.linear.weight"])
    # ... unless --overwrite
    assert main([*base, "--epochs", "1", "--seed", "3", "--overwrite"]) == 0
    assert _ckpt(out)["config"]["seed"] == 3
    # --resume with options that differ: refused, each listed
    assert main([*base, "--epochs", "2", "--seed", "3", "--resume", "--lr", "0.5", "--tau", "5"]) == 2
    err = capsys.readouterr().err
    assert "--lr: checkpoint 0.01, now 0.5" in err and "--tau: checkpoint 20.0, now 5.0" in err
    assert "Only --epochs, --data, --device, --backend" in err
    # changeable: more epochs (and the backend)
    assert main([*base, "--epochs", "2", "--seed", "3", "--resume", "--backend", "reference"]) == 0
    assert _ckpt(out)["epoch"] == 2
    # fewer epochs than done: evaluates the checkpoint
    assert main([*base, "--epochs", "1", "--seed", "3", "--resume"]) == 0
    assert _strict_json(os.path.join(out, "metrics.json"))["epochs_run"] == 2


def test_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".snnkern-run.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("12345")
        f.flush()
        with pytest.raises(RunFolderError, match="is in use by another run"):
            train(TrainConfig(model="ipd", epochs=1, out=str(out), **TINY_IPD))
    assert not (out / "checkpoint.pt").exists()


def test_generated_shd_data_is_never_reused_silently(tmp_path):
    folder = str(tmp_path / "gen")
    notes = []
    train_path, _ = generate_shd_folder(folder, 12, 6, seed=0, log=notes.append)
    assert len(load_shd(train_path)) == 12 and not notes
    generate_shd_folder(folder, 12, 6, seed=0, log=notes.append)  # same parameters: reused
    assert not notes
    generate_shd_folder(folder, 16, 6, seed=0, log=notes.append)  # other parameters: regenerated
    assert "their parameters differ (n_train 12 -> 16)" in notes[-1] and len(load_shd(train_path)) == 16
    with h5py.File(train_path, "a") as f:  # changed by hand: regenerated
        f.attrs["edited"] = 1
    generate_shd_folder(folder, 16, 6, seed=0, log=notes.append)
    assert "shd_train.h5 is missing or changed" in notes[-1]
    os.remove(os.path.join(folder, "params.json"))  # files of unknown origin: refused
    with pytest.raises(FileExistsError, match="without a record"):
        generate_shd_folder(folder, 16, 6, seed=0)
    generate_shd_folder(folder, 16, 6, seed=0, overwrite=True, log=notes.append)
    assert "no record" in notes[-1]
    # through the trainer: a run folder's shd_data with unknown files is refused (exit 2), naming --data
    out = tmp_path / "run"
    write_shd_file(str(out / "shd_data" / "shd_train.h5"), 8, n_classes=4)
    write_shd_file(str(out / "shd_data" / "shd_test.h5"), 4, n_classes=4)
    cfg = dict(model="shd", epochs=1, out=str(out), shd_train_samples=8, shd_test_samples=4, **TINY_SHD)
    with pytest.raises(RunFolderError, match="pass the folder as --data"):
        train(TrainConfig(**cfg))


# ------------------------------------------------------------------------------- data files


def _write(path, times, units, labels, units_dtype=np.uint16, labels_dtype=np.uint8):
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
        u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(units_dtype))
        for k in range(len(times)):
            t[k], u[k] = np.asarray(times[k], np.float32), np.asarray(units[k], units_dtype)
        f.create_dataset("labels", data=np.asarray(labels, labels_dtype))


def _folder(tmp_path, train, test):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    _write(str(d / "shd_train.h5"), *train)
    _write(str(d / "shd_test.h5"), *test)
    return str(d)


def _samples(n, labels, t=(0.1, 0.5), units=(3, 7)):
    return [list(t)] * n, [list(units)] * n, labels


def test_shd_file_values_are_checked(tmp_path):
    path = str(tmp_path / "f.h5")
    _write(path, *_samples(2, [0.0, 1.5]), labels_dtype=np.float64)
    with pytest.raises(ValueError, match=r"labels must be integers; found \[1.5\]"):
        load_shd(path)
    _write(path, *_samples(2, [0.0, 1.0]), labels_dtype=np.float64)  # integral floats are fine
    assert load_shd(path).labels.tolist() == [0, 1]
    _write(path, [[0.1]], [[2.5]], [0], units_dtype=np.float32)
    with pytest.raises(ValueError, match=r"unit indices \(spikes/units\) of sample 0 must be integers; found \[2.5\]"):
        load_shd(path)
    _write(path, [[0.1, 0.2]], [[3, 700]], [0])
    with pytest.raises(ValueError, match=r"sample 0 has unit indices outside \[0, 700\): \[700\]"):
        load_shd(path)
    _write(path, *_samples(2, [0, -1]), labels_dtype=np.int64)
    with pytest.raises(ValueError, match=r"labels must be >= 0; found \[-1\]"):
        load_shd(path)


def test_train_and_test_files_are_checked_together_before_training(tmp_path, capsys):
    out = str(tmp_path / "run")
    # test labels beyond the training classes (a test file of another data set)
    data = _folder(tmp_path, _samples(8, list(range(8))), _samples(4, [0, 1, 2, 25]))
    with pytest.raises(DataError, match=r"shd_test.h5' has labels \[25\] outside the classes 0..19"):
        train(TrainConfig(model="shd", epochs=1, out=out, data=data, **TINY_SHD))
    assert not os.path.exists(os.path.join(out, "checkpoint.pt"))
    # a batch larger than the training file
    with pytest.raises(ConfigError, match="--batch-size 16 is larger than the 8 training samples"):
        train(TrainConfig(model="shd", epochs=1, out=out, data=data, **dict(TINY_SHD, batch_size=16)))
    # a window that drops every spike (a --max-time in ms, say, the other way round)
    data = _folder(tmp_path, _samples(8, list(range(8)), t=(5.0, 6.0)), _samples(4, [0, 1, 2, 3], t=(5.0, 6.0)))
    with pytest.raises(DataError, match=r"drops every spike \(times span 5 .. 6 s\)"):
        train(TrainConfig(model="shd", epochs=1, out=out, data=data, **TINY_SHD))
    # spikes outside the window are reported (stderr and metrics.json), not silently dropped
    data = _folder(tmp_path, _samples(8, list(range(8)), t=(0.5, 1.5)), _samples(4, [0, 1, 2, 9]))
    m = train(TrainConfig(model="shd", epochs=1, out=out, data=data, max_time=1.0, **TINY_SHD))
    err = capsys.readouterr().err
    assert "8 of 16 spikes (50.00 %) lie outside the window [0, 1.111 s)" in err
    assert "test classes [9] have no training samples" in err
    assert any("lie outside the window" in w for w in m["data_warnings"])
    assert any("lie outside the window" in w for w in _strict_json(os.path.join(out, "metrics.json"))["data_warnings"])


def test_resume_refuses_other_data(tmp_path):
    out = str(tmp_path / "run")
    data = _folder(tmp_path, _samples(8, list(range(8))), _samples(4, [0, 1, 2, 3]))
    train(TrainConfig(model="shd", epochs=1, out=out, data=data, **TINY_SHD))
    moved = str(tmp_path / "moved")
    os.rename(data, moved)  # the folder may move ...
    train(TrainConfig(model="shd", epochs=2, out=out, data=moved, resume=True, **TINY_SHD))
    _write(os.path.join(moved, "shd_train.h5"), *_samples(8, [1] * 8))  # ... its contents may not change
    with pytest.raises(ResumeError, match=r"the SHD data \(train\) differ from the data the checkpoint"):
        train(TrainConfig(model="shd", epochs=3, out=out, data=moved, resume=True, **TINY_SHD))
