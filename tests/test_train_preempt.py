"""Preemption: SIGTERM/SIGINT finish the current step, write a checkpoint and exit 128 + signal;
--resume then reaches bitwise the weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import snnkern.train.loop as loop
from snnkern.train import Preempted, TrainConfig, train
from snnkern.train.tasks import IPDTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ipd-dales: noise offsets redrawn every epoch, a validation set, early-stopping state: the most to restore
TINY = dict(batch_size=8, train_batches=3, test_batches=1, hidden=6, anf_per_ear=8)
CLI_TINY = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
COMMON = dict(model="ipd-dales", epochs=3, plots=False, progress=False, **TINY)


def _ckpt(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full"))
    train(TrainConfig(out=out, **COMMON))
    return _ckpt(out)


def _assert_same_run(a, b):
    assert a["epoch"] == b["epoch"] == 3 and b["step"] == 0
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in ("train_loss", "val_loss", "step_loss"):
        assert a["history"][k] == b["history"][k], k
    assert a["best_epoch"] == b["best_epoch"] and a["best_val"] == b["best_val"]


def test_sigterm_from_outside_mid_step_then_resume_is_bitwise(tmp_path, uninterrupted):
    part, marker = str(tmp_path / "part"), str(tmp_path / "paused")
    env = dict(
        os.environ,
        # pause in the middle of global step 4 (epoch 2, step 2 of 3): after its forward, before its update
        SNNKERN_TEST_PAUSE_AT_STEP=f"4:{marker}",
        OMP_NUM_THREADS=str(torch.get_num_threads()),  # the same arithmetic as this process
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    cmd = [sys.executable, "-m", "snnkern", "train", "ipd-dales", "--epochs=3", f"--out={part}", "--no-plots"]
    proc = subprocess.Popen([*cmd, "--no-progress", *CLI_TINY], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(marker):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not reach the pause (exit {proc.returncode}): {proc.communicate()[1]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # a scheduler's preemption
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "SIGTERM received: finishing the current step, then writing a checkpoint" in err
    assert "stopped by SIGTERM after epoch 2, step 2 of 3: checkpoint written to" in err
    assert "--resume" in err and "Traceback" not in err
    ck = _ckpt(part)
    assert (ck["epoch"], ck["step"]) == (1, 2)  # the interrupted step was finished and is in the checkpoint
    assert len(ck["history"]["step_loss"]) == 5
    train(TrainConfig(out=part, resume=True, **COMMON))
    _assert_same_run(uninterrupted, _ckpt(part))


def test_sigint_then_resume_is_bitwise_and_a_second_sigint_interrupts(tmp_path, monkeypatch, uninterrupted):
    part = str(tmp_path / "part")
    calls = {"n": 0}
    step_loss = IPDTask.step_loss

    def ctrl_c_at_step_6(self, net, order, step):
        calls["n"] += 1
        if calls["n"] == 6:
            signal.raise_signal(signal.SIGINT)
        return step_loss(self, net, order, step)

    monkeypatch.setattr(IPDTask, "step_loss", ctrl_c_at_step_6)
    # The handler the run must restore: Python's default, or SIG_IGN where the test process was
    # started in the background of a non-interactive shell (which ignores SIGINT for it).
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Preempted, match=r"stopped by SIGINT after epoch 2, step 3 of 3") as info:
        train(TrainConfig(out=part, **COMMON))
    assert info.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are restored
    # all 3 steps of epoch 2 done, its validation not yet: --resume does it
    assert (_ckpt(part)["epoch"], _ckpt(part)["step"]) == (1, 3)
    monkeypatch.setattr(IPDTask, "step_loss", step_loss)
    train(TrainConfig(out=part, resume=True, **COMMON))
    _assert_same_run(uninterrupted, _ckpt(part))

    def ctrl_c_twice(self, net, order, step):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        return step_loss(self, net, order, step)

    monkeypatch.setattr(IPDTask, "step_loss", ctrl_c_twice)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "twice"), **COMMON))


def test_signal_during_setup_checkpoints_the_initial_state(tmp_path, monkeypatch, uninterrupted):
    part = str(tmp_path / "part")
    make_task = loop.make_task

    def preempted_while_loading(cfg, dist):
        task = make_task(cfg, dist)
        signal.raise_signal(signal.SIGTERM)
        return task

    monkeypatch.setattr(loop, "make_task", preempted_while_loading)
    with pytest.raises(Preempted, match="stopped by SIGTERM before the first step") as info:
        train(TrainConfig(out=part, **COMMON))
    assert info.value.exit_code == 143
    assert (_ckpt(part)["epoch"], _ckpt(part)["step"]) == (0, 0)
    monkeypatch.setattr(loop, "make_task", make_task)
    train(TrainConfig(out=part, resume=True, **COMMON))
    _assert_same_run(uninterrupted, _ckpt(part))


def test_signal_during_the_final_evaluation_stops_at_once(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    evaluate = IPDTask.evaluate

    def interrupted(self):
        signal.raise_signal(signal.SIGTERM)
        return evaluate(self)  # not reached: nothing is left to checkpoint, so the signal ends the run

    monkeypatch.setattr(IPDTask, "evaluate", interrupted)
    with pytest.raises(Preempted, match=r"before the final evaluation: the checkpoint .* holds the whole training"):
        train(TrainConfig(out=out, **dict(COMMON, epochs=1)))
    assert _ckpt(out)["epoch"] == 1 and not os.path.exists(os.path.join(out, "metrics.json"))
    monkeypatch.setattr(IPDTask, "evaluate", evaluate)
    assert train(TrainConfig(out=out, resume=True, **dict(COMMON, epochs=1)))["epochs_run"] == 1
