"""Training seed 003's evidence-accumulation task (`python -m snnkern train evidence`): metrics.json,
plots, checkpoints and --resume, option checks, learning on an easy setting, the traces of the plots
(snnkern.eprop.trial_signals) and the e-prop call sites.

The trials are short (EvidenceConfig allows smaller durations than the seed's 2250 steps) so that
the tests also run on the python reference backend (``SNNKERN_BACKEND=reference``).
"""

import json
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from snnkern import eprop
from snnkern.__main__ import main
from snnkern.models.evidence import rate_regularization
from snnkern.train import DEFAULTS, Preempted, TrainConfig, train
from snnkern.train.tasks import EvidenceTask

# 3 cues of 6 steps after 3 of spacing, 5 steps of delay, 5 of recall: 37 steps per trial
TRIAL = dict(n_cues=3, cue_steps=6, spacing_steps=3, delay_steps=5, recall_steps=5)
TINY = dict(model="evidence", batch_size=4, hidden=8, iterations=3, val_batches=2, progress=False, **TRIAL)
BPTT = dict(TINY, rule="bptt")
PLOTS = ("loss.png", "trial_before.png", "trial_after.png", "weights.png")


def _flags(options):
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items() if k not in ("model", "progress")]


def _ckpt(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def _assert_same_weights(a, b):
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


# ------------------------------------------------------------------------------- a tiny run


def test_tiny_run_writes_metrics_history_checkpoint_and_plots(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "evidence", "--epochs=2", f"--out={out}", "--seed=3", *_flags(BPTT)]) == 0  # with the bar
    m = _metrics(out)
    assert m["status"] == "finished" and m["model"] == "evidence" and m["rule"] == "bptt" and m["seed"] == 3
    assert 0.0 <= m["recall_error"] <= 1.0
    assert m["validation_trials"] == 2 * 4 and m["trial_steps"] == 37
    assert m["seconds_per_iteration"] > 0 and m["iterations_run"] == 6 and m["epochs_run"] == 2
    assert m["seconds_per_iteration"] == pytest.approx(m["seconds_per_epoch"] / 3)
    assert m["firing_rate_hz"] >= 0 and math.isfinite(m["validation_loss"])
    h = m["history"]
    assert len(h["step_loss"]) == len(h["step_recall_error"]) == 6  # one entry per iteration
    assert len(h["train_loss"]) == len(h["val_loss"]) == len(h["val_recall_error"]) == 2  # one per epoch
    assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in h["step_recall_error"])  # batch of 4 trials
    assert all(0 <= v <= 1 for v in h["val_recall_error"]) and h["val_recall_error"][-1] == m["recall_error"]
    assert h["train_loss"][0] == pytest.approx(sum(h["step_loss"][:3]) / 3)
    c = m["config"]
    defaults = DEFAULTS["evidence"]
    assert (c["rule"], c["feedback"], c["iterations"], c["lr"]) == ("bptt", None, 3, defaults["lr"])
    assert (c["c_reg"], c["f_target"], c["n_cues"], c["delay_steps"]) == (defaults["c_reg"], 0.01, 3, 5)
    for png in PLOTS:
        assert os.path.getsize(os.path.join(out, png)) > 0, png
    ck = _ckpt(out)
    assert (ck["epoch"], ck["step"]) == (2, 0) and ck["history"]["step_loss"] == h["step_loss"]
    assert torch.all(ck["model"]["recurrent_weight"].diagonal() == 0)  # no autapses
    captured = capsys.readouterr()
    assert "evidence (bptt): recall error" in captured.out and "s/iteration" in captured.out
    assert "6/6" in captured.err  # the progress bar counts iterations


def test_defaults_are_the_seed_settings():
    r = TrainConfig(model="evidence", rule="bptt").resolved()
    assert (r.lr, r.batch_size, r.hidden, r.tau, r.c_reg, r.f_target) == (5e-3, 32, 100, 20.0, 1.0, 0.01)
    assert (r.n_cues, r.cue_steps, r.spacing_steps, r.delay_steps, r.recall_steps) == (7, 100, 50, 1050, 150)
    assert r.feedback is None and r.rule == "bptt"
    assert TrainConfig(model="evidence").resolved().rule == "eprop"  # the seed's rule
    # the regulariser's defaults are the model module's
    assert rate_regularization.__defaults__ == (r.f_target, r.c_reg)


# -------------------------------------------------------------------------- resume exactly


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full"))
    train(TrainConfig(epochs=3, out=out, plots=False, **BPTT))
    return _ckpt(out), _metrics(out)


def _assert_same_run(full, out):
    a, b = full[0], _ckpt(out)
    assert (b["epoch"], b["step"]) == (3, 0)
    _assert_same_weights(a, b)
    for k in ("exp_avg", "exp_avg_sq"):  # the Adam state too
        for p in a["optimizer"]["state"]:
            assert torch.equal(a["optimizer"]["state"][p][k], b["optimizer"]["state"][p][k])
    for k in ("step_loss", "step_recall_error", "train_loss", "val_loss", "val_recall_error"):
        assert a["history"][k] == b["history"][k], k
    assert _metrics(out)["recall_error"] == full[1]["recall_error"]


def test_resume_after_sigterm_mid_epoch_is_bitwise(tmp_path, monkeypatch, uninterrupted):
    part = str(tmp_path / "part")
    # SIGTERM in global step 4 (epoch 2, step 2 of 3): the step finishes, a checkpoint is written
    monkeypatch.setenv("SNNKERN_TEST_SIGNAL_AT_STEP", "4")
    with pytest.raises(Preempted, match=r"stopped by SIGTERM after epoch 2, step 2 of 3") as info:
        train(TrainConfig(epochs=3, out=part, plots=False, **BPTT))
    assert info.value.exit_code == 143
    ck = _ckpt(part)
    assert (ck["epoch"], ck["step"]) == (1, 2) and len(ck["history"]["step_recall_error"]) == 5
    monkeypatch.delenv("SNNKERN_TEST_SIGNAL_AT_STEP")
    assert main(["train", "evidence", "--epochs=3", f"--out={part}", "--no-plots", "--resume", *_flags(BPTT)]) == 0
    _assert_same_run(uninterrupted, part)


def test_resume_at_an_epoch_boundary_is_bitwise_and_options_must_match(tmp_path, uninterrupted, capsys):
    part = str(tmp_path / "part")
    train(TrainConfig(epochs=1, out=part, plots=False, **BPTT))
    cmd = ["train", "evidence", "--epochs=3", f"--out={part}", "--no-plots", "--no-progress", "--resume"]
    # the iterations per epoch (the position of the checkpoint) and the task may not change
    assert main([*cmd, *_flags(dict(BPTT, iterations=4))]) == 2
    assert "--iterations: checkpoint 3, now 4" in capsys.readouterr().err
    assert main([*cmd, *_flags(dict(BPTT, delay_steps=6))]) == 2
    assert "--delay-steps: checkpoint 5, now 6" in capsys.readouterr().err
    assert main([*cmd, *_flags(BPTT)]) == 0
    _assert_same_run(uninterrupted, part)


# ------------------------------------------------------------------------------ bad options

BAD = [
    (["--rule", "nope"], "--rule must be one of bptt, eprop; got 'nope'"),
    (["--rule", "bptt", "--batch-size", "0"], "--batch-size must be an integer >= 1; got 0"),
    (["--rule", "bptt", "--feedback", "random"], "--feedback applies to --rule eprop"),
    (["--rule", "eprop", "--feedback", "nope"], "--feedback must be one of random, symmetric; got 'nope'"),
    (["--rule", "bptt", "--iterations", "0"], "--iterations must be an integer >= 1 (training iterations per epoch)"),
    (["--rule", "bptt", "--val-batches", "0"], "--val-batches must be an integer >= 1; got 0"),
    (["--rule", "bptt", "--c-reg", "-1"], "--c-reg must be a finite number >= 0; got -1.0"),
    (["--rule", "bptt", "--c-reg", "nan"], "--c-reg must be a finite number >= 0; got nan"),
    (["--rule", "bptt", "--f-target", "10"], "--f-target must be a number in [0, 1] (spikes per 1 ms step"),
    (["--rule", "bptt", "--n-cues", "4"], "--n-cues must be odd, so that one side always has the majority; got 4"),
    (["--rule", "bptt", "--n-cues", "0"], "--n-cues must be an integer >= 1; got 0"),
    (["--rule", "bptt", "--cue-steps", "0"], "--cue-steps must be an integer >= 1; got 0"),
    (["--rule", "bptt", "--spacing-steps", "-1"], "--spacing-steps must be an integer >= 0; got -1"),
    (["--rule", "bptt", "--delay-steps", "-1"], "--delay-steps must be an integer >= 0; got -1"),
    (["--rule", "bptt", "--recall-steps", "0"], "--recall-steps must be an integer >= 1; got 0"),
    (["--rule", "bptt", "--hidden", "0"], "--hidden must be an integer >= 1; got 0"),
    (["--rule", "bptt", "--lr", "0"], "--lr must be a finite number > 0; got 0.0"),
    (["--rule", "bptt", "--compare-naive"], "--compare-naive does not apply to evidence"),
    (["--rule", "bptt", "--train-batches", "3"], "--train-batches applies to the models ipd, ipd-membrane, ipd-dales"),
    (["--rule", "bptt", "--hidden", "1000000"], "GiB"),
]
BAD_OTHER = [
    (["ipd", "--rule", "bptt"], "--rule applies to the model evidence, not ipd"),
    (["shd", "--feedback", "random"], "--feedback applies to the model evidence, not shd"),
    (["ipd", "--iterations", "3"], "--iterations applies to the model evidence, not ipd"),
]


@pytest.mark.parametrize(
    "args,message",
    [(["evidence", *a], m) for a, m in BAD] + BAD_OTHER,
    ids=[" ".join(a) for a, _ in BAD] + [" ".join(a) for a, _ in BAD_OTHER],
)
def test_bad_option_exits_2_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", *args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m snnkern train: error: ") and message in err, err
    assert "Traceback" not in err and not out.exists()


# ---------------------------------------------------------------------------------- learning


@pytest.fixture
def one_thread():
    # the reference backend's many tiny ops per step run fastest on one thread (and the result
    # does not depend on the thread count)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loss_decreases_on_an_easy_setting(tmp_path, one_thread):
    # 3 cues of 8 steps, 2 steps of delay: 40 iterations of 16 trials (a few seconds on the reference backend)
    easy = dict(TRIAL, cue_steps=8, spacing_steps=2, delay_steps=2)
    cfg = dict(BPTT, **easy, batch_size=16, hidden=20, iterations=8, lr=0.01)
    m = train(TrainConfig(epochs=5, out=str(tmp_path / "easy"), plots=False, **cfg))
    h = m["history"]
    assert h["val_loss"][-1] < h["val_loss"][0] - 0.05, h["val_loss"]
    assert h["train_loss"][-1] < h["train_loss"][0], h["train_loss"]
    assert m["recall_error"] <= 0.3, h["val_recall_error"]


# ---------------------------------------------------------------------- traces of the plots


@pytest.mark.parametrize("rule,feedback", [("bptt", "symmetric"), ("eprop", "random"), ("eprop", "symmetric")])
def test_trial_traces_are_eprops_with_the_runs_feedback(tmp_path, rule, feedback):
    options = dict(TINY, rule=rule, feedback=None if rule == "bptt" else feedback)
    task = EvidenceTask(TrainConfig(out=str(tmp_path), **options).resolved())
    x, y = task.batch(1, 0, shard=False)
    x, y = x[:1], y[:1]
    trial = task.trial_signals(task.model, x, y)
    # bptt's learning signal: the readout error through the readout weights (symmetric feedback)
    signals = eprop.trial_signals(task.model, x, y, task.window, feedback=feedback)
    for key in ("spikes", "readout", "membrane", "threshold", "psi", "learning_signal"):
        assert torch.equal(torch.from_numpy(trial[key]), getattr(signals, key)[0].to(torch.float32)), key
    assert trial["sources"] == {"learning_signal": trial["sources"]["learning_signal"]}
    assert f"feedback {feedback}" in trial["sources"]["learning_signal"]
    steps = task.task_config.steps
    assert trial["spikes"].shape == trial["learning_signal"].shape == trial["psi"].shape == (steps, 8)
    assert trial["readout"].shape == trial["probability"].shape == trial["target"].shape == (steps, 2)
    assert (trial["learning_signal"][: task.window.start] == 0).all()  # only over the recall window
    assert (trial["learning_signal"][task.window.start :] != 0).any()
    assert trial["target"][task.window.start :, int(y[0])].min() == 1.0 and trial["label"] == int(y[0])
    assert trial["window"] == (task.window.start, task.window.stop) and trial["n_regular"] == 4


# ------------------------------------------------------------------------------------ e-prop


@pytest.mark.parametrize("feedback", ["random", "symmetric"])
def test_eprop_tiny_run(tmp_path, feedback):
    out = str(tmp_path / feedback)
    m = train(TrainConfig(epochs=2, out=out, **dict(TINY, rule="eprop", feedback=feedback)))
    assert m["rule"] == "eprop" and m["feedback"] == feedback and m["config"]["feedback"] == feedback
    assert 0 <= m["recall_error"] <= 1
    h = m["history"]
    assert len(h["step_loss"]) == len(h["step_recall_error"]) == 6 and all(math.isfinite(v) for v in h["step_loss"])
    ck = _ckpt(out)
    initial = EvidenceTask(TrainConfig(out=out, **dict(TINY, rule="eprop", feedback=feedback)).resolved())
    for name in ("input_weight", "recurrent_weight", "readout_weight"):  # e-prop trains all three
        assert not torch.equal(ck["model"][name], initial.initial_state[name]), name
    assert torch.all(ck["model"]["recurrent_weight"].diagonal() == 0)  # no autapses
    for png in PLOTS:
        assert os.path.getsize(os.path.join(out, png)) > 0, png


def test_eprop_call_sites(tmp_path, monkeypatch):
    calls, real = [], eprop.eprop_gradients

    def eprop_gradients(model, x, target, window, **options):
        calls.append(dict(x=x.shape, target=target.shape, window=window, **options))
        values = real(model, x, target, window, **options)
        model.recurrent_weight.grad.diagonal().fill_(1.0)  # the task masks the recurrent gradient itself
        return values

    monkeypatch.setattr(eprop, "eprop_gradients", eprop_gradients)
    out = str(tmp_path / "eprop")
    cfg = dict(TINY, rule="eprop", feedback="symmetric", c_reg=0.5, f_target=0.02, plots=False)
    m = train(TrainConfig(epochs=2, out=out, **cfg))
    assert len(calls) == 6  # one per iteration, with this rank's batch and the recall window
    assert calls[0] == dict(
        x=(4, 37, 40), target=(4,), window=slice(32, 37), feedback="symmetric", c_reg=0.5, f_target=0.02
    )
    assert m["rule"] == "eprop" and m["feedback"] == "symmetric"
    assert torch.all(_ckpt(out)["model"]["recurrent_weight"].diagonal() == 0)  # the diagonal was masked


def test_eprop_resume_is_bitwise(tmp_path, monkeypatch):
    cfg = dict(TINY, rule="eprop", plots=False)
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    train(TrainConfig(epochs=2, out=full, **cfg))
    monkeypatch.setenv("SNNKERN_TEST_SIGNAL_AT_STEP", "4")
    with pytest.raises(Preempted):
        train(TrainConfig(epochs=2, out=part, **cfg))
    monkeypatch.delenv("SNNKERN_TEST_SIGNAL_AT_STEP")
    train(TrainConfig(epochs=2, out=part, resume=True, **cfg))
    a, b = _ckpt(full), _ckpt(part)
    _assert_same_weights(a, b)
    assert a["history"]["step_loss"] == b["history"]["step_loss"]


# -------------------------------------------------------------------- two processes (DDP)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ddp_worker(rank, out, port):
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    code = main(["train", "evidence", "--epochs=2", f"--out={out}", "--no-progress", "--no-plots", *_flags(BPTT)])
    with open(f"{out}.rank{rank}", "w") as f:
        f.write(str(code))


def test_two_processes_follow_one_process(tmp_path):
    out = str(tmp_path / "ddp")
    mp.spawn(_ddp_worker, args=(out, _free_ports(1)[0]), nprocs=2, join=True)
    codes = []
    for r in range(2):
        with open(f"{out}.rank{r}") as f:
            codes.append(f.read())
    assert codes == ["0", "0"]
    one = str(tmp_path / "one")
    train(TrainConfig(epochs=2, out=one, plots=False, **BPTT))
    a, b = _ckpt(one), _ckpt(out)
    assert b["world_size"] == 2
    for k in ("step_loss", "val_loss"):
        torch.testing.assert_close(torch.tensor(a["history"][k]), torch.tensor(b["history"][k]), rtol=1e-5, atol=1e-6)
    # each rank's shard holds 2 of the 4 trials: the reduced recall errors are the whole batch's
    assert a["history"]["step_recall_error"] == b["history"]["step_recall_error"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    assert _metrics(out)["recall_error"] == _metrics(one)["recall_error"]
