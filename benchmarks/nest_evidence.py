"""Seed 003's NEST e-prop network on the evidence-accumulation task beside snnkern's: NEST's wall
time per training iteration and its recall-error curve, then, in the same run on the same machine,
``python -m snnkern train evidence`` with BPTT and with e-prop for as many iterations.

    pip install nest-simulator                        # optional: NEST is never a test dependency
    python benchmarks/nest_evidence.py                # seed 003's network, batch and iterations
    python benchmarks/nest_evidence.py --quick        # 3 iterations of one trial: a smoke run
    python benchmarks/nest_evidence.py --batch 32 --iterations 1000 --time-budget 900
    python benchmarks/nest_evidence.py --no-snnkern   # NEST alone
    python benchmarks/nest_evidence.py --snnkern-metrics runs/evidence/metrics.json   # add a finished run

The snnkern runs train the same network size, trial length, batch, learning rate and number of
iterations as NEST did, from fresh trials of snnkern's own generator (snnkern.data.evidence, the
seed's task) seeded with ``--seed``; their curve is the recall error of each training batch, as
NEST's is. Their time per iteration is the training loop's (forward, gradients, Adam step), with
torch's default thread count.

Seed 003 is NEST's example "Tutorial on learning to accumulate evidence with e-prop"
(eprop_supervised_classification_evidence-accumulation, after Bellec et al. 2020, Nature
Communications 11:3625). Its network is rebuilt here with NEST's ``bsshslm_2020`` e-prop models at the
seed's size: 40 parrot inputs in four populations of 10 (left cue, right cue, recall, background), 50
``eprop_iaf_bsshslm_2020`` and 50 ``eprop_iaf_adapt_bsshslm_2020`` recurrent neurons (all-to-all, no
autapses), two ``eprop_readout_bsshslm_2020`` readouts with a softmax over them and cross-entropy
loss, random feedback weights for the learning signals, Adam (eta 5e-3) on the input, recurrent and
output weights, and firing-rate regularisation towards 10 Hz. A trial is 2250 steps of 1 ms.

One training iteration is ``--batch`` trials simulated back to back: NEST's e-prop synapses add up the
gradients of those trials and take one Adam step. Timed per iteration: drawing the trials, loading
them into the spike and rate generators, and ``nest.Simulate``. Not timed: reading the readout
recorder afterwards to score the iteration. The score is the seed's: over the last 150 steps of each
trial (the recall window) the readout signals (softmax outputs) are averaged, the larger one is the
decision, and the recall error is the fraction of wrong decisions in the batch; the loss is the
cross-entropy between target and readout signals, summed over the two readouts and averaged over
trials and recall steps.

Random numbers come from one numpy ``RandomState(--seed)`` drawn in the seed's order (initial
weights, then the trials of each iteration in turn), so ``--seed 1`` gives the seed's weights and,
for the same batch size, the seed's trials.

The seed was written for NEST 3.7/3.8. NEST 3.10 replaced its pseudo-derivative scale ``gamma`` by a
height and a width, and divides the rate-regularisation term by the learning window as well; the
values are translated so that the model is the seed's (``neuron_params``). Checked: with ``--seed 1``
the per-iteration losses and recall errors equal, to the last digit, those of the seed's own script
run on NEST 3.10 with the same translation (batch 1 and 4).

Writes nest_evidence.json and nest_evidence.md under benchmarks/results/<cpu-slug>/ (``--quick``:
<cpu-slug>-quick/), or next to ``--json``. Without NEST it prints how to install it and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from device import device_name, device_slug  # noqa: E402


@dataclass(frozen=True)
class Seed003:
    """The numbers of seed 003 (``003_674ddd8e5cda6ad6.txt``); the section of the seed in brackets."""

    # Task ("Define timing of task", "Create input and output"); one step is 1 ms.
    n_cues: int = 7
    cue_steps: int = 100
    spacing_steps: int = 50  # before every cue
    delay_steps: int = 1050  # background only, between the last cue and the recall
    recall_steps: int = 150  # recall cue on; also the e-prop learning window
    prob_group: float = 0.3  # probability of a cue on the side that is not favoured
    spike_prob: float = 0.04  # per step, cue and recall populations; background fires at a quarter
    n_populations: int = 4  # left, right, recall, background
    # Network ("Create neurons").
    n_in: int = 40
    n_reg: int = 50
    n_ad: int = 50
    n_out: int = 2
    tau_m: float = 20.0  # ms, recurrent and readout neurons
    v_th: float = 0.6  # mV
    t_ref: float = 5.0  # ms
    gamma: float = 0.3  # pseudo-derivative scale
    adapt_tau: float = 2000.0  # ms
    adapt_scale: float = 1.7  # adapt_beta = 1.7 (1 - exp(-dt/adapt_tau)) / (1 - exp(-dt/tau_m))
    f_target: float = 10.0  # Hz, rate regularisation target
    c_reg: float = 2.0  # NEST 3.7/3.8 value: twice the TensorFlow reference's c_reg of 1
    # Learning ("Create connections", "Define timing of task", "Set up simulation").
    eta: float = 5e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    w_min: float = -100.0
    w_max: float = 100.0
    batch: int = 1  # n_batch; its comment: 64 in the TF reference, 32 in that reference's README
    iterations: int = 5  # n_iter; its comment: "50 with n_batch 32 converges"
    rng_seed: int = 1
    threads: int = 1  # total_num_virtual_procs
    # Delays of 1 step on every connection; generators start at step 1.
    offset_gen: int = 1
    delay: int = 1

    @property
    def cues_steps(self) -> int:
        return self.n_cues * (self.cue_steps + self.spacing_steps)

    @property
    def trial_steps(self) -> int:
        return self.cues_steps + self.delay_steps + self.recall_steps

    @property
    def readout_offset(self) -> int:
        """Steps from a trial's start in the generators to its start in the readout recorder: the
        generator offset plus the delays input -> recurrent -> readout -> readout (softmax)."""
        return self.offset_gen + 3 * self.delay

    @property
    def n_rec(self) -> int:
        return self.n_reg + self.n_ad

    @property
    def adapt_beta(self) -> float:
        return self.adapt_scale * (-math.expm1(-1.0 / self.adapt_tau)) / (-math.expm1(-1.0 / self.tau_m))


SEED = Seed003()


def import_nest():
    """NEST's python module, or None when it is not installed."""
    os.environ.setdefault("PYNEST_QUIET", "1")  # no banner
    try:
        import nest
    except ImportError:
        return None
    return nest


def quiet(nest) -> None:
    if hasattr(nest, "VerbosityLevel"):  # NEST >= 3.10
        nest.verbosity = nest.VerbosityLevel.ERROR
    else:
        nest.set_verbosity("M_ERROR")


def neuron_params(nest, cfg: Seed003) -> tuple[dict, dict, dict, str]:
    """Parameters of the regular, adaptive and readout neurons, in the names of the installed NEST.

    The seed's NEST (3.7/3.8) takes ``gamma`` and computes the pseudo-derivative as
    ``gamma * max(0, 1 - |v - A| / V_th) / V_th`` (A: the adaptive threshold); NEST 3.10 takes
    ``surrogate_gradient_height`` h and ``surrogate_gradient_width`` w and computes
    ``h * max(0, 1 - |v - A| / w)``, so h = gamma / V_th and w = V_th give the same function (NEST 3.9:
    ``gamma`` = h and ``beta`` = 1 / w). From NEST 3.9 on, ``average_gradient`` divides the rate
    regularisation term by the learning window too (in 3.7/3.8 it divided only the learning-signal
    term), so the seed's c_reg is multiplied by the learning window to keep the same update.
    """
    defaults = nest.GetDefaults("eprop_iaf_bsshslm_2020")
    window = float(cfg.recall_steps)
    if "surrogate_gradient_height" in defaults:
        interface = "NEST >= 3.10: surrogate_gradient_height/width, c_reg x learning window"
        surrogate = {"surrogate_gradient_height": cfg.gamma / cfg.v_th, "surrogate_gradient_width": cfg.v_th}
        c_reg = cfg.c_reg * window
    elif "beta" in defaults:
        interface = "NEST 3.9: gamma/beta, c_reg x learning window"
        surrogate = {"gamma": cfg.gamma / cfg.v_th, "beta": 1.0 / cfg.v_th}
        c_reg = cfg.c_reg * window
    else:
        interface = "NEST 3.7/3.8 (the seed's): gamma, c_reg as in the seed"
        surrogate = {"gamma": cfg.gamma}
        c_reg = cfg.c_reg
    recurrent = {
        "C_m": 1.0,
        "E_L": 0.0,
        "I_e": 0.0,
        "V_m": 0.0,
        "V_th": cfg.v_th,
        "tau_m": cfg.tau_m,
        "t_ref": cfg.t_ref,
        "c_reg": c_reg,
        "f_target": cfg.f_target,
        "regular_spike_arrival": True,
        "surrogate_gradient_function": "piecewise_linear",
        **surrogate,
    }
    adaptive = dict(recurrent, adapt_tau=cfg.adapt_tau, adapt_beta=cfg.adapt_beta, adaptation=0.0)
    readout = {
        "C_m": 1.0,
        "E_L": 0.0,
        "I_e": 0.0,
        "V_m": 0.0,
        "tau_m": cfg.tau_m,
        "loss": "cross_entropy",
        "regular_spike_arrival": False,
    }
    return recurrent, adaptive, readout, interface


def initial_weights(rs: np.random.RandomState, cfg: Seed003) -> dict[str, np.ndarray]:
    """The seed's initial weights, [post, pre], in its order of draws: input and recurrent weights
    normal / sqrt(fan-in) (no self-connections), output weights Glorot-uniform, feedback weights
    standard normal; float32 as in the seed."""
    w_in = rs.randn(cfg.n_in, cfg.n_rec).T / np.sqrt(cfg.n_in)
    w_rec = rs.randn(cfg.n_rec, cfg.n_rec).T / np.sqrt(cfg.n_rec)
    np.fill_diagonal(w_rec, 0.0)
    limit = np.sqrt(3.0 / max(1.0, (cfg.n_rec + cfg.n_out) / 2.0))
    w_out = rs.uniform(-limit, limit, size=(cfg.n_rec, cfg.n_out)).T
    w_fb = rs.randn(cfg.n_rec, cfg.n_out)
    return {k: v.astype(np.float32) for k, v in dict(in_rec=w_in, rec_rec=w_rec, rec_out=w_out, out_rec=w_fb).items()}


def draw_trials(rs: np.random.RandomState, cfg: Seed003, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` trials: input spikes [batch, steps, n_in] (bool) and targets [batch] (0 left, 1 right).

    Per trial one side is favoured at random; each cue then falls on the other side with probability
    prob_group. The target is the side with the majority of the cues shown. Same draws, in the same
    order, as the seed's generator.
    """
    per_pop = cfg.n_in // cfg.n_populations
    side_prob = np.array([cfg.prob_group, 1.0 - cfg.prob_group], dtype=np.float32)
    favoured = rs.choice([0, 1], batch)
    cues = np.empty((batch, cfg.n_cues), dtype=np.int64)
    for b in range(batch):  # one draw call per trial, as the seed makes them
        p = np.array([side_prob[favoured[b]], side_prob[1 - favoured[b]]])
        cues[b] = rs.choice([0, 1], cfg.n_cues, p=p)

    rate = np.zeros((batch, cfg.trial_steps, cfg.n_in))
    period = cfg.cue_steps + cfg.spacing_steps
    for c in range(cfg.n_cues):
        start = c * period + cfg.spacing_steps
        for side in (0, 1):
            on = cues[:, c] == side
            rate[on, start : start + cfg.cue_steps, side * per_pop : (side + 1) * per_pop] = cfg.spike_prob
    rate[:, -cfg.recall_steps :, 2 * per_pop : 3 * per_pop] = cfg.spike_prob
    rate[:, :, 3 * per_pop :] = cfg.spike_prob / 4.0
    spikes = rate > rs.random_sample(rate.shape)
    spikes[:, 0, :] = False  # the seed keeps the first step of every trial silent
    targets = (cues.sum(axis=1) > cfg.n_cues // 2).astype(np.int64)
    return spikes, targets


class Network:
    """Seed 003's network in a fresh NEST kernel."""

    def __init__(self, nest, cfg: Seed003, batch: int, threads: int, rs: np.random.RandomState):
        self.nest, self.cfg, self.batch = nest, cfg, batch
        trial_ms = float(cfg.trial_steps)
        nest.ResetKernel()
        quiet(nest)
        nest.set(
            resolution=1.0,
            total_num_virtual_procs=threads,
            print_time=False,
            eprop_update_interval=trial_ms,  # one weight-gradient interval per trial
            eprop_learning_window=float(cfg.recall_steps),
            eprop_reset_neurons_on_update=True,  # every trial starts from rest
        )
        recurrent, adaptive, readout, self.interface = neuron_params(nest, cfg)
        self.generators = nest.Create("spike_generator", cfg.n_in)
        self.inputs = nest.Create("parrot_neuron", cfg.n_in)  # devices cannot hold plastic synapses
        self.regular = nest.Create("eprop_iaf_bsshslm_2020", cfg.n_reg, recurrent)
        self.adaptive = nest.Create("eprop_iaf_adapt_bsshslm_2020", cfg.n_ad, adaptive)
        self.readouts = nest.Create("eprop_readout_bsshslm_2020", cfg.n_out, readout)
        self.targets = nest.Create("step_rate_generator", cfg.n_out)
        recurrents = self.regular + self.adaptive

        self.weights = initial_weights(rs, cfg)
        nest.SetDefaults(
            "eprop_synapse_bsshslm_2020",
            {
                "optimizer": {
                    "type": "adam",
                    "batch_size": batch,
                    "eta": cfg.eta,
                    "beta_1": cfg.beta_1,
                    "beta_2": cfg.beta_2,
                    "epsilon": cfg.epsilon,
                    "Wmin": cfg.w_min,
                    "Wmax": cfg.w_max,
                },
                "average_gradient": True,
            },
        )
        d = float(cfg.delay)
        dense = {"rule": "all_to_all", "allow_autapses": False}
        pairs = {"rule": "one_to_one"}

        def eprop(weight):
            return {
                "synapse_model": "eprop_synapse_bsshslm_2020",
                "delay": d,
                "tau_m_readout": cfg.tau_m,
                "weight": weight,
            }

        nest.Connect(self.generators, self.inputs, pairs, {"synapse_model": "static_synapse", "delay": d})
        nest.Connect(self.inputs, recurrents, dense, eprop(self.weights["in_rec"]))
        nest.Connect(recurrents, recurrents, dense, eprop(self.weights["rec_rec"]))
        nest.Connect(recurrents, self.readouts, dense, eprop(self.weights["rec_out"]))
        feedback = {
            "synapse_model": "eprop_learning_signal_connection_bsshslm_2020",
            "delay": d,
            "weight": self.weights["out_rec"],
        }
        nest.Connect(self.readouts, recurrents, dense, feedback)
        rate = {"synapse_model": "rate_connection_delayed", "delay": d}
        receptors = nest.GetDefaults("eprop_readout_bsshslm_2020")["receptor_types"]
        nest.Connect(self.targets, self.readouts, pairs, dict(rate, receptor_type=receptors["target_signal"]))
        # The readouts see each other's signals to normalise their softmax.
        nest.Connect(
            self.readouts, self.readouts, dense, dict(rate, receptor_type=receptors["readout_signal"], weight=1.0)
        )

        # Only what the score needs: readout and target signals, and the recurrent spike count.
        self.recorder = nest.Create(
            "multimeter",
            {"interval": 1.0, "record_from": ["readout_signal", "target_signal"], "start": float(cfg.readout_offset)},
        )
        nest.Connect(self.recorder, self.readouts)
        self.spike_recorder = nest.Create("spike_recorder")
        nest.Connect(recurrents, self.spike_recorder)
        self.n_connections = nest.num_connections

    def load(self, iteration: int, spikes: np.ndarray, targets: np.ndarray) -> None:
        """Put one iteration's trials into the generators, from the current kernel time on."""
        cfg = self.cfg
        trial_ms = float(cfg.trial_steps)
        t0 = iteration * self.batch * trial_ms
        flat = spikes.reshape(-1, cfg.n_in)  # trials back to back
        times = t0 + cfg.offset_gen + np.arange(flat.shape[0], dtype=np.float64)
        self.generators.set([{"spike_times": times[flat[:, i]]} for i in range(cfg.n_in)])
        starts = t0 + cfg.readout_offset + trial_ms * np.arange(self.batch, dtype=np.float64)
        onehot = np.zeros((cfg.n_out, self.batch))
        onehot[targets, np.arange(self.batch)] = 1.0
        self.targets.set([{"amplitude_times": starts, "amplitude_values": onehot[k]} for k in range(cfg.n_out)])

    def drain(self) -> tuple[dict[str, np.ndarray], int]:
        """Events recorded since the last call (the recorders are emptied: memory stays flat)."""
        events = {k: np.asarray(v) for k, v in self.recorder.get("events").items()}
        self.recorder.n_events = 0
        n_spikes = int(self.spike_recorder.n_events)
        self.spike_recorder.n_events = 0
        return events, n_spikes


class Scorer:
    """Collects readout samples and scores each iteration once its samples are all in."""

    def __init__(self, cfg: Seed003, batch: int, senders):
        self.cfg, self.batch, self.senders = cfg, batch, list(senders)
        self.buffer: dict[str, np.ndarray] | None = None

    def add(self, events: dict[str, np.ndarray]) -> None:
        keep = ("times", "senders", "readout_signal", "target_signal")
        new = {k: events[k] for k in keep}
        self.buffer = new if self.buffer is None else {k: np.concatenate([self.buffer[k], new[k]]) for k in keep}

    def score(self, iteration: int) -> dict | None:
        """Recall error, loss and decisions of one iteration; None while its samples are incomplete."""
        cfg, buf = self.cfg, self.buffer
        span = self.batch * cfg.trial_steps
        lo = cfg.readout_offset + iteration * span  # the iteration's samples have times in (lo, lo + span]
        if buf is None or buf["times"].size == 0 or buf["times"].max() < lo + span:
            return None
        mine = (buf["times"] > lo) & (buf["times"] <= lo + span)
        signals = {}
        for name in ("readout_signal", "target_signal"):
            per_readout = []
            for s in self.senders:
                sel = mine & (buf["senders"] == s)
                order = np.argsort(buf["times"][sel], kind="stable")
                per_readout.append(buf[name][sel][order])
            if any(x.size != span for x in per_readout):
                raise RuntimeError(f"iteration {iteration}: expected {span} samples per readout")
            window = np.stack(per_readout).reshape(cfg.n_out, self.batch, cfg.trial_steps)[:, :, -cfg.recall_steps :]
            signals[name] = window
        pi, target = signals["readout_signal"], signals["target_signal"]
        loss = float(-np.mean(np.sum(target * np.log(pi), axis=0)))
        decision = np.argmax(pi.mean(axis=2), axis=0)
        wanted = np.argmax(target.mean(axis=2), axis=0)
        later = buf["times"] > lo + span
        self.buffer = {k: v[later] for k, v in buf.items()}
        return {
            "recall_error": float(np.mean(decision != wanted)),
            "loss": loss,
            "decision": decision,
            "target": wanted,
        }


def environment(nest, threads: int, interface: str) -> dict:
    name = device_name("cpu")
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "device_type": "cpu",
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "nest": getattr(nest, "__version__", "unknown"),
        "nest_interface": interface,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def median_after_first(values: list[float]) -> float | None:
    rest = values[1:] if len(values) > 1 else values
    return statistics.median(rest) if rest else None


def block_means(values: list[float], blocks: int = 10) -> list[tuple[int, int, float]]:
    """(first, last, mean) over consecutive blocks of iterations (1-based), at most ``blocks`` of them."""
    n = len(values)
    if n == 0:
        return []
    size = max(1, math.ceil(n / blocks))
    return [(i + 1, min(i + size, n), float(np.mean(values[i : i + size]))) for i in range(0, n, size)]


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, list):
        numbers = [float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return numbers[-1] if numbers else None
    return None


def snnkern_row(path: str, root: str = "") -> dict:
    """One markdown row from an snnkern run's metrics.json (``path``, relative to ``root`` if given;
    ``recall_error``: the validation error; the curve: its per-iteration training-batch errors);
    missing fields become None."""
    row = {"source": path, "rule": None, "batch": None, "iterations": None, "seconds_per_iteration": None}
    try:
        with open(os.path.join(root, path)) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        return dict(row, note=f"unreadable: {e}")
    if not isinstance(m, dict):
        return dict(row, note="not a JSON object")
    spi = m.get("seconds_per_iteration")
    if isinstance(spi, list):
        numbers = [float(v) for v in spi if isinstance(v, (int, float)) and not isinstance(v, bool)]
        spi = statistics.median(numbers) if numbers else None
    errors = m.get("recall_error")
    history = m.get("history") if isinstance(m.get("history"), dict) else {}
    steps = history.get("step_recall_error", errors)
    curve = [float(v) for v in steps if isinstance(v, (int, float))] if isinstance(steps, list) else None
    iterations = m.get("iterations_run", m.get("iterations", len(curve) if curve else None))
    return dict(
        row,
        rule=m.get("rule"),
        batch=m.get("global_batch_size", m.get("batch_size", m.get("batch"))),
        iterations=iterations,
        seconds_per_iteration=_number(spi),
        final_recall_error=_number(errors),
        recall_error_last10=float(np.mean(curve[-10:])) if curve else None,
        device=m.get("device"),
        curve=curve,
    )


def run_snnkern(rule: str, batch: int, iterations: int, seed: int, out: str) -> dict:
    """Trains snnkern's evidence network with ``rule`` for ``iterations`` iterations of ``batch``
    trials (one epoch, then the validation) and returns its row (:func:`snnkern_row`)."""
    cmd = [sys.executable, "-m", "snnkern", "train", "evidence", "--rule", rule, "--batch-size", str(batch)]
    cmd += ["--iterations", str(iterations), "--epochs", "1", "--seed", str(seed), "--val-batches", "2"]
    # Run from the repository, the folder named relative to it: the results name no path of this machine.
    root = os.path.dirname(HERE)
    out = os.path.relpath(out, root)
    cmd += ["--out", out, "--overwrite", "--no-progress"]
    print(f"snnkern {rule}: {' '.join(cmd[1:])}", flush=True)
    done = subprocess.run(cmd, check=False, cwd=root)
    row = snnkern_row(os.path.join(out, "metrics.json"), root)
    row["label"] = f"snnkern {rule}"
    if done.returncode != 0:
        row["note"] = f"exit code {done.returncode}"
    return row


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def markdown(result: dict) -> str:
    env, cfg, s = result["environment"], result["config"], result["summary"]
    curve = result["curves"]["recall_error"]
    lines = [
        f"# Seed 003's e-prop network in NEST {env['nest']}: time per training iteration ({env['device']})",
        "",
        f"- date {env['date']}, python {env['python']}, numpy {env['numpy']}, "
        f"{env['threads']} NEST thread(s) of {env['cpu_count']} cores",
        f"- network: {cfg['n_in']} inputs, {cfg['n_reg']} regular + {cfg['n_ad']} adaptive e-prop neurons, "
        f"{cfg['n_out']} readouts, {cfg['trial_steps']}-step trials; Adam eta {cfg['eta']}, batch {cfg['batch']}, "
        f"c_reg {cfg['c_reg_seed']} (seed) -> {cfg['c_reg_nest']} (NEST), f_target {cfg['f_target']} Hz, "
        f"numpy seed {cfg['seed']}",
        f"- {s['iterations']} iterations in {s['total_seconds']:.1f} s; time per iteration = median after the first "
        "(trial drawing, generator loading, nest.Simulate); recall error = fraction of wrong decisions in the batch",
        *([f"- STOPPED EARLY: {s['stopped']}"] if s.get("stopped") else []),
        f"- load average (1/5/15 min) {env['load_average_at_start']} at the start, {s['load_average_at_end']} at the "
        "end: other work on the machine lengthens wall times; CPU s/iteration is the process's own CPU time",
        "- snnkern rows: final recall error on its validation trials after the last iteration; mean of last 10 and "
        "the curve below on its training batches, as NEST's",
        "",
        "| run | rule | batch | iterations | s/iteration | CPU s/iteration | final recall error | mean of last 10 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| NEST {env['nest']} | e-prop (bsshslm_2020) | {cfg['batch']} | {s['iterations']} | "
        f"{_fmt(s['seconds_per_iteration'], '.3f')} | {_fmt(s['cpu_seconds_per_iteration'], '.3f')} | "
        f"{_fmt(s['final_recall_error'], '.3f')} | {_fmt(s['recall_error_last10'], '.3f')} |",
    ]
    for r in result.get("snnkern", []):
        label = r.get("label") or (
            f"snnkern ({os.path.basename(os.path.dirname(os.path.abspath(r['source']))) or r['source']})"
        )
        if r.get("note"):
            lines.append(f"| {label} | {r['note']} | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {label} | {_fmt(r['rule'])} | {_fmt(r['batch'])} | {_fmt(r['iterations'])} | "
            f"{_fmt(r['seconds_per_iteration'], '.3f')} | - | {_fmt(r['final_recall_error'], '.3f')} | "
            f"{_fmt(r['recall_error_last10'], '.3f')} |"
        )
    if curve:
        side = [r for r in result.get("snnkern", []) if r.get("label") and r.get("curve")]
        lines += [
            "",
            "Recall error of the training batches, means over blocks of iterations (NEST's loss and rate):",
            "",
        ]
        lines += [
            "| iterations | NEST recall error | NEST loss | NEST rate (Hz) |"
            + "".join(f" {r['label']} |" for r in side),
            "| --- | ---: | ---: | ---: |" + " ---: |" * len(side),
        ]
        losses = block_means(result["curves"]["loss"])
        rates = block_means(result["curves"]["rate_hz"])
        others = [{(a, b): e for a, b, e in block_means(r["curve"])} for r in side]
        for (a, b, err), (_, _, loss), (_, _, hz) in zip(block_means(curve), losses, rates, strict=True):
            cells = "".join(f" {_fmt(o.get((a, b)), '.3f')} |" for o in others)
            lines.append(f"| {a}-{b} | {err:.3f} | {loss:.3f} | {hz:.1f} |{cells}")
    return "\n".join(lines) + "\n"


def write(path: str, result: dict) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(markdown(result))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=SEED.batch, help=f"trials per Adam step (seed: {SEED.batch})")
    p.add_argument(
        "--iterations", type=int, default=SEED.iterations, help=f"training iterations (seed: {SEED.iterations})"
    )
    p.add_argument("--seed", type=int, default=SEED.rng_seed, help=f"numpy seed (seed: {SEED.rng_seed})")
    p.add_argument("--threads", type=int, default=SEED.threads, help=f"NEST virtual processes (seed: {SEED.threads})")
    p.add_argument("--time-budget", type=float, default=None, help="start no iteration after this many seconds")
    p.add_argument("--json", help="output path (default benchmarks/results/<cpu-slug>/nest_evidence.json)")
    p.add_argument(
        "--snnkern-metrics", action="append", default=[], metavar="PATH", help="an snnkern metrics.json (repeatable)"
    )
    p.add_argument("--quick", action="store_true", help="3 iterations of one trial: checks that it runs")
    p.add_argument(
        "--no-snnkern", action="store_true", help="NEST only: do not train snnkern's BPTT and e-prop runs after it"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.iterations = 1, 3
    if args.batch < 1 or args.iterations < 1 or args.threads < 1:
        p.error("--batch, --iterations and --threads must be >= 1")

    nest = import_nest()
    if nest is None:
        print("nest_evidence: NEST is not installed (pip install nest-simulator); nothing to do")
        return 0

    cfg = SEED
    rs = np.random.RandomState(args.seed)
    net = Network(nest, cfg, args.batch, args.threads, rs)
    env = environment(nest, args.threads, net.interface)
    recurrent_params = neuron_params(nest, cfg)[0]
    config = asdict(cfg)
    seed_defaults = {k: config.pop(k) for k in ("batch", "iterations", "rng_seed", "threads")}
    config.pop("c_reg")
    config.update(
        batch=args.batch,
        iterations=args.iterations,
        seed=args.seed,
        threads=args.threads,
        seed_defaults=seed_defaults,
        trial_steps=cfg.trial_steps,
        adapt_beta=cfg.adapt_beta,
        c_reg_seed=cfg.c_reg,
        c_reg_nest=recurrent_params["c_reg"],
        surrogate_nest={k: v for k, v in recurrent_params.items() if k in ("gamma", "beta") or k.startswith("surr")},
        connections=net.n_connections,
        time_budget_s=args.time_budget,
        quick=args.quick,
    )
    path = args.json or os.path.join(
        HERE, "results", device_slug(env["device"], "cpu") + ("-quick" if args.quick else ""), "nest_evidence.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    scorer = Scorer(cfg, args.batch, net.readouts.tolist())
    names = ("seconds", "simulate_seconds", "cpu_seconds", "recall_error", "loss", "rate_hz")
    curves: dict[str, list] = {k: [] for k in names}
    mismatched_targets = 0
    targets_of: dict[int, np.ndarray] = {}
    spikes_per_iteration: list[int] = []
    stopped = None
    side_by_side: list[dict] = []
    start = time.perf_counter()
    last_write = start

    def harvest() -> None:
        nonlocal mismatched_targets
        events, n_spikes = net.drain()
        spikes_per_iteration.append(n_spikes)
        scorer.add(events)
        while (k := len(curves["recall_error"])) in targets_of:
            scored = scorer.score(k)
            if scored is None:
                break
            mismatched_targets += int(np.sum(scored["target"] != targets_of.pop(k)))
            curves["recall_error"].append(scored["recall_error"])
            curves["loss"].append(scored["loss"])

    def result() -> dict:
        n = len(curves["recall_error"])
        ms = args.batch * cfg.trial_steps * cfg.n_rec
        curves["rate_hz"] = [1000.0 * c / ms for c in spikes_per_iteration[:n]]
        err = curves["recall_error"]
        summary = dict(
            iterations=n,
            seconds_per_iteration=median_after_first(curves["seconds"][:n]),
            simulate_seconds_per_iteration=median_after_first(curves["simulate_seconds"][:n]),
            cpu_seconds_per_iteration=median_after_first(curves["cpu_seconds"][:n]),
            total_seconds=float(sum(curves["seconds"][:n])),
            simulated_seconds_per_wall_second=(n * args.batch * cfg.trial_steps / 1000.0) / sum(curves["seconds"][:n])
            if n
            else None,
            final_recall_error=err[-1] if err else None,
            recall_error_last10=float(np.mean(err[-10:])) if err else None,
            min_recall_error=min(err) if err else None,
            first_iteration_below_10pct=next((i + 1 for i, e in enumerate(err) if e < 0.1), None),
            target_mismatches=mismatched_targets,
            stopped=stopped,
            load_average_at_end=[round(x, 2) for x in os.getloadavg()],
            peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        )
        return dict(
            environment=env,
            config=config,
            summary=summary,
            curves={k: v[:n] for k, v in curves.items()},
            snnkern=[snnkern_row(m) for m in args.snnkern_metrics] + side_by_side,
        )

    print(
        f"NEST {env['nest']}: seed 003 network, batch {args.batch}, {args.iterations} iterations, "
        f"{args.threads} thread(s), {net.n_connections} connections",
        flush=True,
    )
    try:
        for k in range(args.iterations):
            if args.time_budget is not None and time.perf_counter() - start > args.time_budget:
                stopped = f"time budget of {args.time_budget:g} s reached after {k} iterations"
                break
            t0, c0 = time.perf_counter(), time.process_time()
            spikes, targets = draw_trials(rs, cfg, args.batch)
            net.load(k, spikes, targets)
            t1 = time.perf_counter()
            nest.Simulate(float(args.batch * cfg.trial_steps))
            t2, c2 = time.perf_counter(), time.process_time()
            curves["seconds"].append(t2 - t0)
            curves["cpu_seconds"].append(c2 - c0)
            curves["simulate_seconds"].append(t2 - t1)
            targets_of[k] = targets
            harvest()
            if k < 3 or (k + 1) % 10 == 0 or k + 1 == args.iterations:
                err = curves["recall_error"]
                print(
                    f"iteration {k + 1:4d}: {t2 - t0:7.3f} s"
                    + (f", recall error {err[-1]:.3f} (iteration {len(err)})" if err else ""),
                    flush=True,
                )
            if time.perf_counter() - last_write > 30.0:
                write(path, result())
                last_write = time.perf_counter()
        # The last iteration's final readout samples arrive after the delays: simulate them (untimed).
        nest.Simulate(float(cfg.readout_offset + 1))
        harvest()
    except KeyboardInterrupt:
        stopped = f"stopped from outside after {len(curves['seconds'])} iterations"
        print(stopped, flush=True)
    n = len(curves["recall_error"])
    if not args.no_snnkern and n:
        # The same machine, right after NEST: snnkern's two rules for as many iterations.
        runs = os.path.join(os.path.dirname(os.path.abspath(path)), "nest_evidence_runs")
        for rule in ("bptt", "eprop"):
            side_by_side.append(run_snnkern(rule, args.batch, n, args.seed, os.path.join(runs, rule)))
    out = result()
    write(path, out)
    s = out["summary"]
    if s["target_mismatches"]:
        print(f"warning: {s['target_mismatches']} recorded targets differ from the drawn ones", flush=True)
    print(
        f"{s['iterations']} iterations: {_fmt(s['seconds_per_iteration'], '.3f')} s/iteration (median after the "
        f"first), total {s['total_seconds']:.1f} s; recall error last {_fmt(s['final_recall_error'], '.3f')}, "
        f"mean of last 10 {_fmt(s['recall_error_last10'], '.3f')}"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
