"""Surrogate derivatives of the spike nonlinearity.

The forward pass of a spike is always the Heaviside step ``H(x) = 1 if x > 0 else 0`` of
``x = membrane - threshold``; a surrogate only replaces its derivative in the backward pass.

Each surrogate carries a ``name``, by which the compiled kernels look up the code they switch on
(``snnkern._C.SURROGATES``; ``csrc/lif.h``, ``surrogate_grad``), and a python ``derivative`` used
by the reference backend. To add one: a subclass here, one ``case`` in ``surrogate_grad`` and
its name in csrc/ops.cpp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class Surrogate:
    """Base class: ``param`` is the one shape parameter of the surrogate."""

    param: float
    name: ClassVar[str] = ""
    param_name: ClassVar[str] = "param"
    scaled_by_threshold: ClassVar[bool] = False  # its width is relative to the threshold (> 0)

    def __post_init__(self) -> None:
        if not isinstance(self.param, (int, float)) or not math.isfinite(self.param) or self.param <= 0:
            raise ValueError(
                f"{type(self).__name__}: {self.param_name} must be a finite number > 0, got {self.param!r}"
            )

    def derivative(self, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Derivative of a sigmoid of steepness ``beta`` (seeds 000/001, beta = 5)."""

    param: float = 5.0
    name: ClassVar[str] = "sigmoid"
    param_name: ClassVar[str] = "beta"

    def derivative(self, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.param * x)
        return self.param * s * (1 - s)


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """SuperSpike's fast sigmoid ``1 / (scale |x| + 1)^2`` (seed 004, scale = 100)."""

    param: float = 100.0
    name: ClassVar[str] = "fast_sigmoid"
    param_name: ClassVar[str] = "scale"

    def derivative(self, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        return 1.0 / (self.param * x.abs() + 1.0) ** 2


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Piecewise linear ``gamma * max(0, 1 - |x| / threshold)``.

    Seed 003's e-prop pseudo-derivative (Bellec et al. 2020; NEST 3.8) also divides by the
    threshold: ``0.3 / v_th * max(0, 1 - |x| / v_th)``, which is ``Triangle(0.3 / v_th)`` (0.5 at
    v_th = 0.6).
    """

    param: float = 0.3
    name: ClassVar[str] = "triangle"
    param_name: ClassVar[str] = "gamma"
    scaled_by_threshold: ClassVar[bool] = True

    def derivative(self, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        return self.param * torch.clamp(1.0 - x.abs() / threshold, min=0.0)


@dataclass(frozen=True)
class ATan(Surrogate):
    """Arctangent surrogate ``(alpha / 2) / (1 + (pi/2 * alpha * x)^2)`` (snnTorch's and SpikingJelly's default)."""

    param: float = 2.0
    name: ClassVar[str] = "atan"
    param_name: ClassVar[str] = "alpha"

    def derivative(self, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        return (self.param / 2) / (1 + (math.pi / 2 * self.param * x) ** 2)


@dataclass(frozen=True)
class Exponential(Surrogate):
    """Exponential ``exp(-|x| / w) / w`` with ``w = width * threshold`` (Shrestha and Orchard 2018;
    Sinabs' SingleExponential with grad_scale 1)."""

    param: float = 0.5
    name: ClassVar[str] = "exponential"
    param_name: ClassVar[str] = "width"
    scaled_by_threshold: ClassVar[bool] = True

    def derivative(self, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        w = self.param * threshold
        return torch.exp(-x.abs() / w) / w


class _SpikeFunction(torch.autograd.Function):
    # setup_context apart from forward, and a generated vmap rule: torch.func transforms
    # (grad, vjp, vmap) then work through the reference backend.
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, surrogate: Surrogate, threshold: float) -> torch.Tensor:
        return (x > 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, Surrogate, float], output: torch.Tensor) -> None:
        x, surrogate, threshold = inputs
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.threshold = surrogate, threshold

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x, ctx.threshold), None, None


def spike(x: torch.Tensor, surrogate: Surrogate, threshold: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Heaviside step of ``x`` with the surrogate's derivative in backward (reference backend).
    ``threshold`` only scales the surrogates whose width is relative to it: no gradient reaches
    it from here (a learnable threshold gets its gradient through ``x = u - threshold``)."""
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.detach()
    return _SpikeFunction.apply(x, surrogate, threshold)


class _SpikeCountFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(u: torch.Tensor, surrogate: Surrogate, threshold: torch.Tensor) -> torch.Tensor:
        return (u > 0).to(u.dtype) * torch.trunc(u / threshold)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, Surrogate, torch.Tensor], output: torch.Tensor) -> None:
        u, surrogate, threshold = inputs
        ctx.save_for_backward(u, threshold)
        ctx.surrogate = surrogate

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        u, threshold = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(u - threshold, threshold), None, None


def spike_count(u: torch.Tensor, surrogate: Surrogate, threshold: torch.Tensor) -> torch.Tensor:
    """The number of thresholds in the membrane ``u`` (0 where u <= 0), with the surrogate's
    derivative at ``u - threshold`` in backward (spike='multi' of the reference backend)."""
    return _SpikeCountFunction.apply(u, surrogate, threshold.detach())
