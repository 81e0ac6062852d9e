"""Every option of `python -m snnkern train` / `sweep` is checked before any work: an error naming the
option and its allowed range, exit code 2, no traceback, no folder created."""

import math
import os

import pytest
import torch

from snnkern.__main__ import main
from snnkern.train import ConfigError, TrainConfig, train

BAD_TRAIN = [
    (["ipd", "--epochs", "-1"], "--epochs must be an integer >= 0 (0: evaluate without training); got -1"),
    (["ipd", "--batch-size", "0"], "--batch-size must be an integer >= 1; got 0"),
    (["ipd", "--hidden", "0"], "--hidden must be an integer >= 1; got 0"),
    (["ipd", "--tau", "0"], "--tau must be a finite number > 0 (ms); got 0.0"),
    (["ipd", "--tau", "nan"], "--tau must be a finite number > 0 (ms); got nan"),
    (["ipd", "--lr", "-0.1"], "--lr must be a finite number > 0; got -0.1"),
    (["ipd", "--lr", "inf"], "--lr must be a finite number > 0; got inf"),
    (["ipd", "--train-batches", "0"], "--train-batches must be an integer >= 1; got 0"),
    (["ipd", "--test-batches", "-2"], "--test-batches must be an integer >= 1; got -2"),
    (["ipd", "--anf-per-ear", "0"], "--anf-per-ear must be an integer >= 1; got 0"),
    (["ipd", "--envelope-power", "-1"], "--envelope-power must be a finite number >= 0; got -1.0"),
    (["ipd", "--envelope-power", "inf"], "--envelope-power must be a finite number >= 0; got inf"),
    (["ipd-dales", "--ie-ratio", "1.5"], "--ie-ratio must be a number in [0, 1]"),
    (["ipd-dales", "--ie-ratio", "-0.1"], "--ie-ratio must be a number in [0, 1]"),
    (["ipd-dales", "--patience", "-1"], "--patience must be an integer >= 0 (0: no early stopping); got -1"),
    (["shd", "--nb-steps", "1"], "--nb-steps must be an integer >= 2"),
    (["shd", "--max-time", "0"], "--max-time must be a finite number > 0 (seconds) (a window <= 0 drops every spike)"),
    (["shd", "--max-time", "-1"], "--max-time must be a finite number > 0"),
    (["shd", "--shd-train-samples", "0"], "--shd-train-samples must be an integer >= 1; got 0"),
    (["shd", "--shd-test-samples", "0"], "--shd-test-samples must be an integer >= 1; got 0"),
    (["shd", "--batch-size", "64", "--shd-train-samples", "32"], "--batch-size 64 is larger than the training data"),
    (["ipd", "--seed", "-1"], "--seed must be an integer in [0, 4294967295]; got -1"),
    (["ipd", "--seed", str(2**40)], "--seed must be an integer in [0, 4294967295]"),
    (["ipd", "--device", "tpu"], "--device must be cpu, cuda or cuda:N; got 'tpu'"),
    (["ipd", "--device", "meta"], "--device must be cpu, cuda or cuda:N; got 'meta'"),
    (["shd", "--train-batches", "3"], "--train-batches applies to the models ipd, ipd-membrane, ipd-dales, not shd"),
    (["shd", "--anf-per-ear", "3"], "--anf-per-ear applies to the models ipd, ipd-membrane, ipd-dales, not shd"),
    (["shd", "--noise-offsets"], "--noise-offsets applies to the models ipd, ipd-membrane, ipd-dales, not shd"),
    (["ipd", "--nb-steps", "30"], "--nb-steps applies to the model shd, not ipd"),
    (["ipd", "--data", "somewhere"], "--data applies to the model shd, not ipd"),
    (["ipd", "--ie-ratio", "0.3"], "--ie-ratio applies to the model ipd-dales, not ipd"),
    (["ipd", "--patience", "3"], "--patience applies to the model ipd-dales, not ipd"),
    (["ipd-membrane", "--hidden", "5"], "--hidden does not apply to ipd-membrane"),
    (["ipd", "--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["ipd", "--anf-per-ear", "100000000"], "GiB"),
    (["shd", "--hidden", "10000000"], "the weights (--hidden)"),
]
if not torch.cuda.is_available():
    BAD_TRAIN.append((["ipd", "--device", "cuda"], "--device cuda: no CUDA device here"))


@pytest.mark.parametrize("args,message", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_option_is_refused_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", *args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m snnkern train: error: ") and message in err, err
    assert "Traceback" not in err
    assert not out.exists()  # nothing was created: the check came before any work


def test_out_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["train", "ipd", "--out", str(path)]) == 2
    assert "--out" in capsys.readouterr().err


BAD_SWEEP = [
    (["--values", "1,x"], "--values must be comma-separated numbers; got '1,x'"),
    (["--values", ","], "--values: give at least one envelope power"),
    (["--values", "1,-2"], "--envelope-power must be a finite number >= 0; got -2.0"),
    (["--values", "1,1.0000001"], "name the same run folder"),
    (["--repeats", "0"], "--repeats must be an integer >= 1; got 0"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
]


@pytest.mark.parametrize("args,message", BAD_SWEEP, ids=[" ".join(a) for a, _ in BAD_SWEEP])
def test_bad_sweep_option(tmp_path, capsys, args, message):
    out = tmp_path / "sweep"
    assert main(["sweep", "envelope-power", *args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def test_api_validate_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match="--lr must be a finite number > 0; got nan"):
        train(TrainConfig(model="ipd", lr=math.nan, out=str(tmp_path / "o"), progress=False))
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match=r"--epochs must be an integer >= 0 .*got 1.5"):
        TrainConfig(model="ipd", epochs=1.5).validate()
    with pytest.raises(ConfigError, match="--batch-size must be an integer >= 1; got True"):
        TrainConfig(model="ipd", batch_size=True).validate()
    with pytest.raises(ConfigError, match="model must be one of ipd, ipd-membrane, ipd-dales, shd"):
        TrainConfig(model="resnet").resolved()
    # a multiple of the number of processes: the global batch is split evenly
    with pytest.raises(ConfigError, match=r"--batch-size is the global batch.*multiple of 3; got 8"):
        TrainConfig(model="ipd", batch_size=8).validate(world_size=3)
    with pytest.raises(ConfigError, match="--compare-naive"):
        TrainConfig(model="ipd", compare_naive=True).validate(world_size=2)
    for model in ("ipd", "ipd-membrane", "ipd-dales", "shd"):
        TrainConfig(model=model).resolved().validate()  # the seed defaults are valid


def test_epochs_zero_evaluates_only(tmp_path):
    out = tmp_path / "eval"
    tiny = ["--batch-size", "8", "--train-batches", "1", "--test-batches", "1", "--hidden", "4", "--anf-per-ear", "4"]
    assert main(["train", "ipd", "--epochs", "0", "--out", str(out), "--no-progress", "--no-plots", *tiny]) == 0
    assert not (out / "checkpoint.pt").exists() and (out / "metrics.json").exists()
    assert os.path.getsize(out / "metrics.json") > 0
