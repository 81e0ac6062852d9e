"""Evidence-accumulation generator (seed 003): layout, targets, statistics, configuration errors."""

import math

import pytest
import torch

from snnkern.data import EvidenceConfig
from snnkern.data.evidence import EvidenceBatch, batches, cue_step_index, firing_probability, generate


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _small(**kw):
    """A short trial (3 cues) for the tests that need many trials."""
    base = dict(n_cues=3, cue_steps=6, spacing_steps=3, background_steps=5, recall_steps=4)
    base.update(kw)
    return EvidenceConfig(**base)


def _binom_pmf(n, p):
    return torch.tensor([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)], dtype=torch.float64)


def test_defaults_are_the_seed_numbers():
    cfg = EvidenceConfig()
    assert (cfg.n_cues, cfg.cue_steps, cfg.spacing_steps) == (7, 100, 50)
    assert (cfg.background_steps, cfg.recall_steps) == (1050, 150)
    assert (cfg.n_left, cfg.n_right, cfg.n_recall, cfg.n_background) == (10, 10, 10, 10)
    assert cfg.prob_group == 0.3 and cfg.spike_prob == 0.04 and cfg.background_prob == pytest.approx(0.01)
    assert cfg.steps == 2250 and cfg.input_size == 40 and cfg.num_classes == 2
    assert cfg.cue_phase_steps == 1050 and cfg.recall_start == 2100
    assert cfg.cue_windows == [(50 + 150 * c, 150 + 150 * c) for c in range(7)]
    assert cfg.populations == {
        "left": slice(0, 10),
        "right": slice(10, 20),
        "recall": slice(20, 30),
        "background": slice(30, 40),
    }


def test_shapes_and_dtypes():
    cfg = EvidenceConfig()
    b = generate(cfg, 5, _gen(0))
    assert isinstance(b, EvidenceBatch)
    assert b.spikes.shape == (5, 2250, 40) and b.spikes.dtype == torch.float32
    assert ((b.spikes == 0) | (b.spikes == 1)).all()
    assert b.targets.shape == (5,) and b.targets.dtype == torch.long
    assert ((b.targets == 0) | (b.targets == 1)).all()
    assert b.recall_mask.shape == (2250,) and b.recall_mask.dtype == torch.bool
    assert b.recall_mask[2100:].all() and not b.recall_mask[:2100].any()
    assert b.cue_sides.shape == (5, 7) and b.cue_sides.dtype == torch.long
    assert ((b.cue_sides == 0) | (b.cue_sides == 1)).all()
    empty = generate(cfg, 0, _gen(0))
    assert empty.spikes.shape == (0, 2250, 40) and empty.targets.shape == (0,) and empty.cue_sides.shape == (0, 7)


def test_same_seed_same_batch_other_seed_differs():
    cfg = _small()
    a, b, c = (generate(cfg, 16, _gen(s)) for s in (7, 7, 8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.spikes, c.spikes) and not torch.equal(a.cue_sides, c.cue_sides)
    # without a generator: torch's default CPU generator
    torch.manual_seed(5)
    d = generate(cfg, 16)
    torch.manual_seed(5)
    assert torch.equal(d.spikes, generate(cfg, 16).spikes)


def test_batch_is_pinned_for_a_seed():
    """The draws (order, dtypes, comparisons) are part of the contract: a seed gives this batch on
    every machine. A change to the generator must change these numbers on purpose."""
    b = generate(EvidenceConfig(), 4, _gen(1234))
    assert b.cue_sides.tolist() == PINNED_SIDES
    assert b.targets.tolist() == [int(sum(s) > 3) for s in PINNED_SIDES]
    assert int(b.spikes.sum()) == PINNED_SPIKES
    default = torch.get_default_dtype()
    try:  # the draws do not depend on torch's default dtype
        torch.set_default_dtype(torch.float64)
        again = generate(EvidenceConfig(), 4, _gen(1234), dtype=torch.float32)
    finally:
        torch.set_default_dtype(default)
    assert torch.equal(again.spikes, b.spikes) and torch.equal(again.cue_sides, b.cue_sides)


PINNED_SIDES = [[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 0, 1, 1, 1], [0, 1, 0, 0, 1, 0, 0], [1, 1, 1, 1, 1, 0, 1]]
PINNED_SPIKES = 2342


def test_time_layout_of_each_population():
    cfg = EvidenceConfig()
    b = generate(cfg, 8, _gen(1))
    pops = cfg.populations
    spikes = b.spikes.bool()
    assert not spikes[:, 0].any()  # the seed silences the first step
    # the cue shown at each step, from the seed's windows (pinned in test_defaults_are_the_seed_numbers)
    expected = torch.full((cfg.steps,), -1, dtype=torch.long)
    for c, (start, stop) in enumerate(cfg.cue_windows):
        expected[start:stop] = c
    assert torch.equal(cue_step_index(cfg), expected)
    outside_cues = expected < 0
    for side, name in ((0, "left"), (1, "right")):
        pop = spikes[:, :, pops[name]].any(dim=2)  # [batch, steps]
        assert not pop[:, outside_cues].any(), f"{name} fires outside the cue windows"
        for c, (start, stop) in enumerate(cfg.cue_windows):
            shown = b.cue_sides[:, c] == side
            # 10 neurons x 100 steps x 0.04: about 40 spikes in a shown window, none in the others
            assert pop[shown, start:stop].any(dim=1).all(), f"{name} silent in its cue {c}"
            # the whole window is lit: spikes near both of its ends (10 expected per trial in 25 steps)
            assert pop[shown, start : start + 25].any(dim=1).all() and pop[shown, stop - 25 : stop].any(dim=1).all()
            assert not pop[~shown, start:stop].any(), f"{name} fires in cue {c} of the other side"
    recall = spikes[:, :, pops["recall"]].any(dim=2)
    assert not recall[:, : cfg.recall_start].any() and recall[:, cfg.recall_start :].any(dim=1).all()
    background = spikes[:, :, pops["background"]]
    # background in every phase: spacing, cues, delay and recall, in every trial
    for start, stop in ((1, 50), (50, 1050), (1050, 2100), (2100, 2250)):
        assert background[:, start:stop].any(dim=2).any(dim=1).all()


def test_target_is_the_majority_of_the_cues_seen_in_the_spikes():
    cfg = EvidenceConfig(n_cues=5, cue_steps=40, spacing_steps=10, background_steps=20, recall_steps=10)
    b = generate(cfg, 64, _gen(2))
    pops = cfg.populations
    # read each cue's side back from which population fired in its window
    seen = []
    for start, stop in cfg.cue_windows:
        left = b.spikes[:, start:stop, pops["left"]].sum(dim=(1, 2))
        right = b.spikes[:, start:stop, pops["right"]].sum(dim=(1, 2))
        assert ((left > 0) != (right > 0)).all()  # exactly one side per cue (40 x 10 x 0.04 = 16 expected)
        seen.append((right > 0).long())
    seen = torch.stack(seen, dim=1)
    assert torch.equal(seen, b.cue_sides)
    majority = (seen.sum(dim=1) > (cfg.n_cues - seen.sum(dim=1))).long()
    assert torch.equal(b.targets, majority)
    assert 0 < int(b.targets.sum()) < 64  # both classes occur


def test_firing_rates_match_the_configured_probabilities():
    for cfg, batch in ((EvidenceConfig(), 16), (_small(spike_prob=0.3, background_ratio=0.5), 1500)):
        b = generate(cfg, batch, _gen(3))
        probs = firing_probability(cfg, b.cue_sides)
        assert probs.shape == b.spikes.shape
        assert not b.spikes[probs == 0].any()
        for p in (cfg.spike_prob, cfg.background_prob):
            cells = b.spikes[probs == torch.tensor(p, dtype=probs.dtype)]
            n = cells.numel()
            assert n > 50_000
            sigma = math.sqrt(p * (1 - p) / n)
            assert abs(float(cells.mean()) - p) < 5 * sigma, (p, float(cells.mean()), n)
        # per population at the defaults (the whole-trial mean): cue 0.04 * 350 / 2250 on average
        if cfg == EvidenceConfig():
            pops = cfg.populations
            recall = b.spikes[:, cfg.recall_start :, pops["recall"]]
            assert abs(float(recall.mean()) - 0.04) < 5 * math.sqrt(0.04 * 0.96 / recall.numel())
            background = b.spikes[:, 1:, pops["background"]]
            assert abs(float(background.mean()) - 0.01) < 5 * math.sqrt(0.01 * 0.99 / background.numel())


def test_cue_sides_follow_the_group_probability():
    """Per trial one side is favoured (probability 1/2); each cue is on the other side with
    probability prob_group. The count of right cues per trial is then a half-half mixture of
    Binomial(n, prob_group) and Binomial(n, 1 - prob_group)."""
    n_trials = 20_000
    cfg = EvidenceConfig(
        n_cues=7, cue_steps=1, spacing_steps=0, background_steps=0, recall_steps=1, n_left=1, n_right=1, n_recall=1
    )
    sides = generate(cfg, n_trials, _gen(4)).cue_sides
    counts = torch.bincount(sides.sum(dim=1), minlength=8).double()

    def chi2(prob_group):
        expected = n_trials * 0.5 * (_binom_pmf(7, prob_group) + _binom_pmf(7, 1 - prob_group))
        return float(((counts - expected) ** 2 / expected).sum())

    assert chi2(0.3) < 24.3  # 7 degrees of freedom, p = 0.001
    assert chi2(0.5) > 1000  # the test can tell: independent fair cues give a different histogram
    assert abs(float(sides.double().mean()) - 0.5) < 5 * math.sqrt(0.25 / sides.numel())
    # two cues of one trial agree with probability 0.3^2 + 0.7^2 = 0.58
    agree = (sides[:, 0] == sides[:, 1]).double().mean()
    assert abs(float(agree) - 0.58) < 5 * math.sqrt(0.58 * 0.42 / n_trials)


@pytest.mark.parametrize("prob_group", [0.0, 1.0])
def test_extreme_group_probabilities_give_one_sided_trials(prob_group):
    b = generate(_small(n_cues=5, prob_group=prob_group), 200, _gen(5))
    total = b.cue_sides.sum(dim=1)
    assert ((total == 0) | (total == 5)).all()
    assert torch.equal(b.targets, b.cue_sides[:, 0])
    assert 0 < int(b.targets.sum()) < 200


def test_silent_first_step_can_be_switched_off():
    cfg = _small(spike_prob=1.0, background_ratio=1.0, silent_first_step=False)
    b = generate(cfg, 3, _gen(6))
    assert b.spikes[:, 0, cfg.populations["background"]].all()
    cfg_on = _small(spike_prob=1.0, background_ratio=1.0)
    assert not generate(cfg_on, 3, _gen(6)).spikes[:, 0].any()
    # with probability 1 the spikes are exactly the layout
    assert torch.equal(b.spikes.bool(), firing_probability(cfg, b.cue_sides) == 1.0)


BAD_FIELDS = [
    ("n_cues", 0),
    ("n_cues", 4),
    ("n_cues", 3.0),
    ("n_cues", True),
    ("cue_steps", 0),
    ("cue_steps", 2.5),
    ("spacing_steps", -1),
    ("background_steps", -1),
    ("recall_steps", 0),
    ("n_left", 0),
    ("n_right", 0),
    ("n_recall", 0),
    ("n_background", -1),
    ("prob_group", -0.1),
    ("prob_group", 1.5),
    ("prob_group", float("nan")),
    ("spike_prob", 1.01),
    ("spike_prob", "0.04"),
    ("background_ratio", -0.5),
    ("background_ratio", 26.0),  # 0.04 * 26 > 1
    ("background_ratio", float("inf")),
    ("silent_first_step", 1),
    ("num_classes", 3),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS)
def test_bad_config_field_raises_naming_it(field, value):
    with pytest.raises(ValueError, match=rf"EvidenceConfig\.{field} must be"):
        EvidenceConfig(**{field: value})


def test_edge_values_are_accepted():
    cfg = EvidenceConfig(n_cues=1, spacing_steps=0, background_steps=0, n_background=0, prob_group=0.0)
    assert cfg.steps == 100 + 150 and cfg.input_size == 30
    b = generate(cfg, 4, _gen(0))
    assert b.spikes.shape == (4, 250, 30) and torch.equal(b.targets, b.cue_sides[:, 0])


def test_bad_generate_arguments():
    cfg = _small()
    with pytest.raises(ValueError, match="batch_size"):
        generate(cfg, -1)
    with pytest.raises(ValueError, match="batch_size"):
        generate(cfg, 2.0)
    with pytest.raises(TypeError, match="EvidenceConfig"):
        generate({"n_cues": 3}, 2)
    with pytest.raises(ValueError, match="cue_sides"):
        firing_probability(cfg, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_batches"):
        next(batches(cfg, 2, seed=0, num_batches=-1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bool])
def test_dtype_and_device_are_honoured(dtype):
    cfg = _small()
    ref = generate(cfg, 8, _gen(9))
    b = generate(cfg, 8, _gen(9), device="cpu", dtype=dtype)
    assert b.spikes.dtype == dtype and b.spikes.device.type == "cpu"
    for t in b:
        assert t.device == torch.device("cpu")
    assert torch.equal(b.spikes.bool(), ref.spikes.bool()) and torch.equal(b.cue_sides, ref.cue_sides)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_gives_the_same_batch_on_cuda():
    cfg = _small()
    ref = generate(cfg, 8, _gen(9))
    b = generate(cfg, 8, _gen(9), device="cuda", dtype=torch.float64)
    for t in b:
        assert t.device.type == "cuda"
    assert torch.equal(b.spikes.cpu(), ref.spikes.double()) and torch.equal(b.targets.cpu(), ref.targets)
    g = torch.Generator(device="cuda").manual_seed(9)
    on_gpu = generate(cfg, 8, g)
    assert on_gpu.spikes.device.type == "cuda" and on_gpu.spikes.shape == ref.spikes.shape


def test_batches_yields_fresh_reproducible_batches():
    cfg = _small()
    first = list(batches(cfg, 4, seed=11, num_batches=3))
    again = list(batches(cfg, 4, seed=11, num_batches=3))
    assert len(first) == 3
    for x, y in zip(first, again):
        assert torch.equal(x.spikes, y.spikes) and torch.equal(x.targets, y.targets)
    assert not torch.equal(first[0].spikes, first[1].spikes)
    # the stream is one generator: batch k equals the k-th draw from a generator with that seed
    g = _gen(11)
    generate(cfg, 4, g)
    assert torch.equal(generate(cfg, 4, g).spikes, first[1].spikes)
    endless = batches(cfg, 2, seed=0, dtype=torch.float64)
    assert all(next(endless).spikes.dtype == torch.float64 for _ in range(5))
