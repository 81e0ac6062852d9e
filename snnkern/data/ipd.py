"""Interaural phase difference (IPD) stimuli of seed 000, the annotated IPD sound-localisation
tutorial (Cosyne 2022 tutorial by Dan Goodman, annotated version), with the noise-offset mode of
seed 001, its noise-offset / Dale's-law variant (same tutorial series).

Each ear has ``anf_per_ear`` auditory nerve fibres with phase delays evenly spaced in
``[0, pi/2]``; the second ear is additionally delayed by the IPD. A fibre fires as a Bernoulli
(Poisson) process with probability per step ``rate_max * dt * (0.5 (1 + sin theta))**envelope_power``
where ``theta = 2 pi (f t + offset) + delay``. A spike is drawn by comparing that probability
with a uniform number ``u``.

The uniform numbers are drawn once per data set; with ``phase_offset=True`` (seed 001) the
offset is re-drawn whenever :meth:`IPDDataset.redraw_offset` is called (every epoch in the
trainer) and the spikes are recomputed from the *same* uniforms. Everything is vectorised torch
code on the data set's device and drawn from a ``torch.Generator``, so a seed reproduces it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.types import Device


@dataclass
class IPDConfig:
    """Stimulus parameters (defaults: seed 000)."""

    anf_per_ear: int = 100  # fibres per ear; the input has 2 * anf_per_ear channels
    frequency: float = 20.0  # tone frequency, Hz
    rate_max: float = 600.0  # maximum firing rate, Hz
    envelope_power: float = 2.0  # sharpness of the rate envelope
    duration: float = 0.1  # seconds
    dt: float = 1e-3  # seconds
    num_classes: int = 12  # IPD classes over (-pi/2, pi/2): 15 degree bins by default
    phase_offset: bool = False  # seed 001: random phase offset of the tone, redrawn per epoch

    @property
    def steps(self) -> int:
        return round(self.duration / self.dt)

    @property
    def input_size(self) -> int:
        return 2 * self.anf_per_ear


def discretise(ipds: torch.Tensor, num_classes: int = 12) -> torch.Tensor:
    """Class index of each IPD in (-pi/2, pi/2): ``floor((ipd + pi/2) * num_classes / pi)``."""
    return ((ipds + math.pi / 2) * num_classes / math.pi).long().clamp_(0, num_classes - 1)


def continuise(indices: torch.Tensor, num_classes: int = 12) -> torch.Tensor:
    """Centre of each class bin, in radians."""
    return (indices.to(torch.get_default_dtype()) + 0.5) / num_classes * math.pi - math.pi / 2


def _envelope(theta: torch.Tensor, config: IPDConfig) -> torch.Tensor:
    """``rate_max * dt * (0.5 (1 + sin theta))**envelope_power``, computed in place on ``theta``."""
    p = theta.sin_().add_(1.0).mul_(0.5)
    power = config.envelope_power
    p = p.pow_(int(power)) if float(power).is_integer() else p.pow_(power)
    return p.mul_(config.rate_max * config.dt)


def _ear_phases(config: IPDConfig, offset: float, device: Device, dtype: torch.dtype) -> torch.Tensor:
    """Phase of each fibre of the first ear at each step, [steps, anf_per_ear]."""
    times = torch.arange(config.steps, device=device, dtype=dtype) * config.dt
    phi = 2 * math.pi * (config.frequency * times + offset)
    delays = torch.linspace(0, math.pi / 2, config.anf_per_ear, device=device, dtype=dtype)
    return phi[:, None] + delays[None, :]


def firing_probability(ipds: torch.Tensor, config: IPDConfig, offset: float = 0.0) -> torch.Tensor:
    """Spike probability per step, [samples, steps, 2 * anf_per_ear] (first ear, then second ear)."""
    base = _ear_phases(config, offset, ipds.device, ipds.dtype)
    left = _envelope(base.clone(), config).expand(ipds.shape[0], -1, -1)
    right = _envelope(base[None] + ipds[:, None, None], config)
    return torch.cat([left, right], dim=2)


def spikes_from_uniforms(
    ipds: torch.Tensor, uniforms: torch.Tensor, config: IPDConfig, offset: float = 0.0
) -> torch.Tensor:
    """Bool spikes ``probability > u`` [samples, steps, 2A] for uniforms ``u`` of the same shape."""
    a = config.anf_per_ear
    base = _ear_phases(config, offset, ipds.device, ipds.dtype)
    left = _envelope(base.clone(), config)[None] > uniforms[:, :, :a]
    right = _envelope(base[None] + ipds[:, None, None], config) > uniforms[:, :, a:]
    return torch.cat([left, right], dim=2)


class IPDDataset:
    """A fixed set of IPDs and uniform draws; spikes computed from them (and the current offset).

    Args:
        num_samples: number of stimuli.
        config: :class:`IPDConfig`.
        generator: ``torch.Generator`` on ``device``; drawn from for the IPDs, the uniforms and
            the offsets.
        device: where the data lives.

    Attributes: ``ipds`` [N] radians, ``labels`` [N] class indices, ``spikes`` [N, T, 2A] bool.
    """

    def __init__(self, num_samples: int, config: IPDConfig, generator: torch.Generator, device: Device = None) -> None:
        self.config = config
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        n, shape = num_samples, (num_samples, config.steps, config.input_size)
        self.ipds = torch.rand(n, generator=generator, device=self.device) * math.pi - math.pi / 2
        self.labels = discretise(self.ipds, config.num_classes)
        # The uniforms are kept only with phase offsets (the spikes are recomputed from them).
        self.uniforms: torch.Tensor | None
        if config.phase_offset:
            self.uniforms = torch.rand(shape, generator=generator, device=self.device)
            self.offset = float(torch.rand((), generator=generator, device=self.device))
            self.spikes = spikes_from_uniforms(self.ipds, self.uniforms, config, self.offset)
        else:
            # without offsets the spikes never change: keep only them (a quarter of the memory)
            self.uniforms = None
            self.offset = 0.0
            u = torch.rand(shape, generator=generator, device=self.device)
            self.spikes = spikes_from_uniforms(self.ipds, u, config)
            del u

    def redraw_offset(self, generator: torch.Generator) -> float:
        """Draw a new phase offset in [0, 1) cycles and recompute the spikes (seed 001 mode only)."""
        if not self.config.phase_offset or self.uniforms is None:
            return self.offset
        self.offset = float(torch.rand((), generator=generator, device=self.device))
        self.spikes = spikes_from_uniforms(self.ipds, self.uniforms, self.config, self.offset)
        return self.offset

    def __len__(self) -> int:
        return self.ipds.shape[0]

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(spikes [B, T, 2A] float, labels [B], ipds [B])``; the last partial batch is dropped
        as in the seeds. ``shuffle`` uses ``generator`` (a CPU or same-device generator)."""
        n = len(self)
        if shuffle:
            order = torch.randperm(
                n, generator=generator, device=generator.device if generator is not None else self.device
            ).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for k in range(n // batch_size):
            idx = order[k * batch_size : (k + 1) * batch_size]
            yield self.spikes[idx].to(dtype), self.labels[idx], self.ipds[idx]
