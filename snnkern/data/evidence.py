"""Evidence-accumulation task of seed 003 (NEST's e-prop example "Tutorial on learning to accumulate
evidence with e-prop", after Bellec et al. 2020, Nature Communications 11:3625).

The task models an animal running along a track: it sees a number of cues, each on its left or its
right, waits through a delay, and must then turn to the side that showed more cues. A network sees
the track through four input populations of Bernoulli (Poisson) spike sources, in this channel
order:

* ``left``: fires during the cue window of every cue shown on the left;
* ``right``: fires during the cue window of every cue shown on the right;
* ``recall``: fires during the final recall window, when the decision is due;
* ``background``: fires throughout the trial, at a fraction of the cue rate.

Seed 003's numbers, used as the defaults of :class:`EvidenceConfig` (1 ms per step):

* 40 inputs in 4 populations of 10 (left, right, recall, background);
* 7 cues of 100 steps, each preceded by 50 steps of spacing (1050 steps of cues in all), then
  1050 steps of background only, then 150 steps of recall: 2250 steps per trial;
* spike probability 0.04 per step (40 Hz) for an active cue or recall population, and a quarter of
  that, 0.01 (10 Hz), for the background population, which is on during the whole trial;
* no input spikes at all in the first step of a trial (the seed removes them for NEST's sake);
* cue sides: per trial one side is favoured at random with probability 1/2; each cue is then drawn
  independently, on the unfavoured side with probability ``prob_group`` = 0.3 and on the favoured side
  with probability 0.7;
* target: the side with the majority of the cues actually shown (``1`` = right when more than
  ``n_cues // 2`` cues are on the right, else ``0`` = left); the readouts are trained on the recall
  window only. (The seed's prose calls the favoured side the target, but its code uses the realised
  majority, as here; the two differ in about 13 % of trials at the defaults.)

Time layout of one trial (defaults in brackets), with ``P = spacing_steps + cue_steps``::

    cue c = 0 .. n_cues-1:  spacing [c P, c P + spacing)       background only
                            cue     [c P + spacing, (c+1) P)   background + left or right
    delay                   [n_cues P, n_cues P + background)  background only     [1050, 2100)
    recall                  [steps - recall_steps, steps)      background + recall [2100, 2250)

Generation is vectorised torch code with no loop over the batch, the time steps or the cues. Every
random number comes from one ``torch.Generator``, in a fixed order (favoured sides [batch], cue
draws [batch, n_cues], spike uniforms [batch, steps, input_size]) and on the generator's device, so
a CPU generator with a given seed gives the same batch on every machine and every target device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.types import Device

__all__ = [
    "EvidenceConfig",
    "EvidenceBatch",
    "generate",
    "batches",
    "firing_probability",
    "cue_step_index",
    "recall_window",
]

LEFT, RIGHT = 0, 1  # cue sides and class indices (the seed's readout 0 is "left", readout 1 "right")


@dataclass
class EvidenceConfig:
    """Parameters of the evidence-accumulation task (defaults: seed 003, one step = 1 ms)."""

    n_cues: int = 7  # cues per trial; odd, so that one side always has the majority
    cue_steps: int = 100  # steps of one cue presentation
    spacing_steps: int = 50  # steps of silence (background only) before each cue
    background_steps: int = 1050  # delay after the last cue: background input only
    recall_steps: int = 150  # final window in which the recall population fires and the answer is due
    n_left: int = 10  # neurons of the left-cue population
    n_right: int = 10  # neurons of the right-cue population
    n_recall: int = 10  # neurons of the recall population
    n_background: int = 10  # neurons of the background-noise population (0: no background input)
    prob_group: float = 0.3  # probability of a cue on the trial's unfavoured side (1 - it: favoured side)
    spike_prob: float = 0.04  # spike probability per step of an active cue or recall neuron (40 Hz at 1 ms)
    background_ratio: float = 0.25  # background spike probability per step = spike_prob * background_ratio
    silent_first_step: bool = True  # no input spikes in a trial's first step, as in the seed
    num_classes: int = 2  # left (0) and right (1): the task has exactly two classes

    def __post_init__(self) -> None:
        for name, minimum in (
            ("n_cues", 1),
            ("cue_steps", 1),
            ("spacing_steps", 0),
            ("background_steps", 0),
            ("recall_steps", 1),
            ("n_left", 1),
            ("n_right", 1),
            ("n_recall", 1),
            ("n_background", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
                kind = "a positive int" if minimum == 1 else "a non-negative int"
                raise ValueError(f"EvidenceConfig.{name} must be {kind}, got {value!r}")
            setattr(self, name, int(value))
        if self.n_cues % 2 == 0:
            raise ValueError(
                f"EvidenceConfig.n_cues must be odd so that one side always has the majority, got {self.n_cues}"
            )
        for name in ("prob_group", "spike_prob"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"EvidenceConfig.{name} must be a probability in [0, 1], got {value!r}")
            setattr(self, name, float(value))
        ratio = self.background_ratio
        if not _is_real(ratio) or not math.isfinite(ratio) or ratio < 0.0 or self.spike_prob * ratio > 1.0:
            raise ValueError(
                "EvidenceConfig.background_ratio must be >= 0 with spike_prob * background_ratio <= 1, "
                f"got {ratio!r} (spike_prob {self.spike_prob})"
            )
        self.background_ratio = float(ratio)
        if not isinstance(self.silent_first_step, bool):
            raise ValueError(f"EvidenceConfig.silent_first_step must be a bool, got {self.silent_first_step!r}")
        if (
            not isinstance(self.num_classes, numbers.Integral)
            or isinstance(self.num_classes, bool)
            or self.num_classes != 2
        ):
            raise ValueError(f"EvidenceConfig.num_classes must be 2 (left, right), got {self.num_classes!r}")

    @property
    def period(self) -> int:
        """Steps from the start of one cue's spacing to the start of the next: spacing + cue."""
        return self.spacing_steps + self.cue_steps

    @property
    def cue_phase_steps(self) -> int:
        """Steps of the cue phase (all spacings and cues): ``n_cues * period`` (1050)."""
        return self.n_cues * self.period

    @property
    def steps(self) -> int:
        """Steps of one trial: cue phase + background delay + recall (2250)."""
        return self.cue_phase_steps + self.background_steps + self.recall_steps

    @property
    def recall_start(self) -> int:
        """First step of the recall window (2100)."""
        return self.steps - self.recall_steps

    @property
    def input_size(self) -> int:
        """Input channels: left + right + recall + background (40)."""
        return self.n_left + self.n_right + self.n_recall + self.n_background

    @property
    def background_prob(self) -> float:
        """Spike probability per step of a background neuron (0.01)."""
        return self.spike_prob * self.background_ratio

    @property
    def populations(self) -> dict[str, slice]:
        """Input channels of each population, in channel order: left, right, recall, background."""
        sizes = {"left": self.n_left, "right": self.n_right, "recall": self.n_recall, "background": self.n_background}
        out: dict[str, slice] = {}
        start = 0
        for name, size in sizes.items():
            out[name] = slice(start, start + size)
            start += size
        return out

    @property
    def cue_windows(self) -> list[tuple[int, int]]:
        """``[start, stop)`` steps of each cue: ``[(50, 150), (200, 300), ..., (950, 1050)]``."""
        return [(c * self.period + self.spacing_steps, (c + 1) * self.period) for c in range(self.n_cues)]


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class EvidenceBatch(NamedTuple):
    """One batch of trials.

    Attributes:
        spikes: ``[batch, steps, input_size]`` of 0/1 in the requested dtype, channels in the order
            left, right, recall, background (:attr:`EvidenceConfig.populations`).
        targets: ``[batch]`` long, the majority side: 0 = left, 1 = right.
        recall_mask: ``[steps]`` bool, True in the recall window (where the loss is taken).
        cue_sides: ``[batch, n_cues]`` long, the side of each cue: 0 = left, 1 = right.
    """

    spikes: torch.Tensor
    targets: torch.Tensor
    recall_mask: torch.Tensor
    cue_sides: torch.Tensor


def cue_step_index(config: EvidenceConfig, device: Device = None) -> torch.Tensor:
    """Index of the cue shown at each step, ``[steps]`` long, -1 outside the cue windows."""
    t = torch.arange(config.steps, device=device)
    cue, within = t // config.period, t % config.period
    shown = (cue < config.n_cues) & (within >= config.spacing_steps)
    return torch.where(shown, cue, torch.full_like(cue, -1))


def recall_window(config: EvidenceConfig, device: Device = None) -> torch.Tensor:
    """``[steps]`` bool, True in the recall window."""
    return torch.arange(config.steps, device=device) >= config.recall_start


def _population_rates(
    config: EvidenceConfig, cue_sides: torch.Tensor, dtype: torch.dtype
) -> list[tuple[torch.Tensor, slice]]:
    """Spike probability per step of each population, ``[batch or 1, steps]``, with its channels.
    The one description of the layout: :func:`firing_probability` and :func:`generate` both use it."""
    if cue_sides.dim() != 2 or cue_sides.shape[1] != config.n_cues:
        raise ValueError(f"cue_sides must have shape [batch, {config.n_cues}], got {tuple(cue_sides.shape)}")
    device, p = cue_sides.device, config.spike_prob
    index = cue_step_index(config, device)
    side = cue_sides[:, index.clamp(min=0)]  # [batch, steps]: the side of the cue shown at each step
    shown = index >= 0
    pops = config.populations
    rates = [
        (((side == LEFT) & shown).to(dtype) * p, pops["left"]),
        (((side == RIGHT) & shown).to(dtype) * p, pops["right"]),
        (recall_window(config, device)[None].to(dtype) * p, pops["recall"]),
        (torch.full((1, config.steps), config.background_prob, dtype=dtype, device=device), pops["background"]),
    ]
    if config.silent_first_step:
        for rate, _ in rates:
            rate[:, 0] = 0.0
    return rates


def firing_probability(
    config: EvidenceConfig, cue_sides: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Spike probability per step of every input channel, ``[batch, steps, input_size]``, for the cue
    sides ``cue_sides`` ``[batch, n_cues]`` (0 = left, 1 = right), on ``cue_sides``' device."""
    batch = cue_sides.shape[0]
    parts = [
        rate[:, :, None].expand(batch, -1, chans.stop - chans.start)
        for rate, chans in _population_rates(config, cue_sides, dtype)
    ]
    return torch.cat(parts, dim=2)


def generate(
    config: EvidenceConfig,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> EvidenceBatch:
    """Draw ``batch_size`` fresh trials of the evidence-accumulation task.

    Args:
        config: :class:`EvidenceConfig`.
        batch_size: number of trials (0 gives empty tensors).
        generator: source of every random number; they are drawn on its device (CPU when None, from
            torch's default generator), so a seeded CPU generator reproduces the batch on any machine.
        device: where the returned tensors live (default: the generator's device).
        dtype: dtype of ``spikes`` (any floating dtype, or bool).

    Returns:
        :class:`EvidenceBatch` ``(spikes [batch, steps, input_size], targets [batch], recall_mask [steps],
        cue_sides [batch, n_cues])``.
    """
    if not isinstance(config, EvidenceConfig):
        raise TypeError(f"config must be an EvidenceConfig, got {type(config).__name__}")
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 0:
        raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
    draw_on = generator.device if generator is not None else torch.device("cpu")
    out_on = torch.device(device) if device is not None else draw_on
    batch = int(batch_size)

    favoured = torch.randint(0, 2, (batch,), generator=generator, device=draw_on)
    # each cue lands on the favoured side with probability 1 - prob_group
    p_right = torch.full((batch,), config.prob_group, dtype=torch.float64, device=draw_on)
    p_right[favoured == RIGHT] = 1.0 - config.prob_group
    u_cues = torch.rand((batch, config.n_cues), generator=generator, device=draw_on, dtype=torch.float64)
    cue_sides = (u_cues < p_right[:, None]).long()
    # a spike where the uniform falls below the probability (the seed's comparison); one uniform
    # per (trial, step, channel), compared population by population without a probability tensor
    shape = (batch, config.steps, config.input_size)
    uniforms = torch.rand(shape, generator=generator, device=draw_on, dtype=torch.float32)
    spikes = torch.empty(uniforms.shape, dtype=torch.bool, device=draw_on)
    for rate, chans in _population_rates(config, cue_sides, uniforms.dtype):
        torch.lt(uniforms[:, :, chans], rate[:, :, None], out=spikes[:, :, chans])
    del uniforms
    targets = (cue_sides.sum(dim=1) > config.n_cues // 2).long()
    return EvidenceBatch(
        spikes=spikes.to(device=out_on, dtype=dtype),
        targets=targets.to(out_on),
        recall_mask=recall_window(config, out_on),
        cue_sides=cue_sides.to(out_on),
    )


def batches(
    config: EvidenceConfig,
    batch_size: int,
    seed: int,
    num_batches: int | None = None,
    device: Device = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[EvidenceBatch]:
    """Yield fresh batches from one CPU generator seeded with ``seed``: ``num_batches`` of them, or
    without end when it is None. The same seed gives the same sequence of batches everywhere."""
    if num_batches is not None and (
        not isinstance(num_batches, numbers.Integral) or isinstance(num_batches, bool) or num_batches < 0
    ):
        raise ValueError(f"num_batches must be a non-negative int or None, got {num_batches!r}")
    generator = torch.Generator().manual_seed(int(seed))
    count = 0
    while num_batches is None or count < num_batches:
        yield generate(config, batch_size, generator=generator, device=device, dtype=dtype)
        count += 1
