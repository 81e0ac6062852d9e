"""Shared test helpers: random cases, running an op forward + backward, comparing two runs.

Used by test_ops.py (CPU) and test_cuda.py (the same checks on CUDA), and test_seed_parity.py.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import pytest
import torch

import snnkern
from snnkern import ops
from snnkern.surrogate import ATan, FastSigmoid, Sigmoid, Triangle

HAVE_C = ops._C is not None
ON_REFERENCE_ENV = os.environ.get("SNNKERN_BACKEND") == "reference"

# Tests that need the compiled ops skip only when the extension is missing AND the reference
# backend was asked for explicitly; without the extension and without that variable,
# `import snnkern` itself raises, so the suite fails loudly at collection.
needs_compiled = pytest.mark.skipif(
    not HAVE_C and ON_REFERENCE_ENV,
    reason="snnkern._C not built and SNNKERN_BACKEND=reference is set")

HAVE_CUDA = torch.cuda.is_available() and HAVE_C and snnkern.compiled_with_cuda()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device and a CUDA build of snnkern")

BACKENDS = [pytest.param("reference", id="reference"),
            pytest.param("compiled", id="compiled", marks=needs_compiled)]

ORDERINGS = ("delayed", "spike_first", "update_first")
RESETS = ("zero", "subtract", "none")
SURROGATES = (Sigmoid(5.0), FastSigmoid(100.0), Triangle(0.3), ATan(2.0))
SURROGATE_IDS = ("sigmoid", "fastsigmoid", "triangle", "atan")
EMPTY_SHAPES = [(0, 5, 3), (2, 0, 3), (2, 5, 0), (0, 0, 0)]

# Tolerances for comparing the compiled ops with the reference loops (same dtype).
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}
# Low-precision inputs against the float32 reference on the upcast inputs.
LOW_TOL = {torch.bfloat16: dict(rtol=2e-2, atol=2e-2), torch.float16: dict(rtol=2e-3, atol=2e-3)}


def all_lif_options():
    """Every combination of the lif options (ordering x reset x detach x syn x surrogate x alpha kind x membrane)."""
    combos = itertools.product(ORDERINGS, RESETS, (False, True), (False, True),
                               range(len(SURROGATES)), ("scalar", "tensor"), (False, True))
    params = []
    for ordering, reset, detach, syn, s, alpha_kind, mem in combos:
        ident = f"{ordering}-{reset}-{'det' if detach else 'nodet'}-{'syn' if syn else 'nosyn'}-" \
                f"{SURROGATE_IDS[s]}-{alpha_kind}-{'mem' if mem else 'nomem'}"
        params.append(pytest.param(dict(ordering=ordering, reset=reset, detach_reset=detach,
                                        surrogate=SURROGATES[s], return_membrane=mem),
                                   syn, alpha_kind, id=ident))
    return params


@dataclass
class Case:
    """One set of inputs: leaves that require grad are listed in ``leaves``."""

    x: torch.Tensor
    alpha: object                      # float or tensor [N]
    alpha_syn: object                  # None, float or tensor [N]
    state: Optional[torch.Tensor]      # [3, B, N] or None

    def leaves(self) -> List[torch.Tensor]:
        out = [self.x]
        for v in (self.alpha, self.alpha_syn, self.state):
            if isinstance(v, torch.Tensor):
                out.append(v)
        return [t for t in out if t.requires_grad]

    def names(self) -> List[str]:
        names = ["x", "alpha", "alpha_syn", "state"]
        vals = [self.x, self.alpha, self.alpha_syn, self.state]
        return [n for n, v in zip(names, vals) if isinstance(v, torch.Tensor) and v.requires_grad]


def make_case(b, t, n, dtype=torch.float64, device="cpu", *, syn=False, alpha_kind="tensor",
              with_state=True, seed=0, requires_grad=True, x_scale=0.6, x_shift=0.3) -> Case:
    """Random inputs with a decent spike rate at threshold 1 and a random nonzero initial state."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, lo=0.0, hi=1.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype).to(device)

    x = (torch.randn(b, t, n, generator=g, dtype=torch.float64) * x_scale + x_shift).to(dtype).to(device)
    if alpha_kind == "tensor":
        alpha = rand(n, lo=0.7, hi=0.95)
        alpha_syn = rand(n, lo=0.5, hi=0.9) if syn else None
    else:
        alpha, alpha_syn = 0.85, (0.7 if syn else None)
    state = None
    if with_state:
        state = (torch.randn(3, b, n, generator=g, dtype=torch.float64) * 0.5 + 0.2).to(dtype).to(device)
    case = Case(x, alpha, alpha_syn, state)
    if requires_grad:
        for v in (case.x, case.alpha, case.alpha_syn, case.state):
            if isinstance(v, torch.Tensor):
                v.requires_grad_(True)
    return case


def clone_case(case: Case, dtype=None, device=None, round_to: Optional[torch.dtype] = None) -> Case:
    """A detached copy as new leaves (optionally cast), with the same requires_grad flags.

    ``round_to``: round every tensor through that dtype first (then cast to ``dtype``)."""

    def cp(v):
        if not isinstance(v, torch.Tensor):
            return v
        w = v.detach()
        if round_to is not None:
            w = w.to(round_to)
        w = w.to(dtype=dtype or v.dtype, device=device or v.device).clone()
        return w.requires_grad_(v.requires_grad)

    return Case(cp(case.x), cp(case.alpha), cp(case.alpha_syn), cp(case.state))


def upstream_like(t: Optional[torch.Tensor], seed: int, round_to: Optional[torch.dtype] = None):
    """Random upstream gradient of ``t``'s shape (CPU generator, so equal on every device).

    ``round_to``: round the values through that dtype first (to give a float32 reference the
    same upstream values as a bfloat16/float16 run)."""
    if t is None:
        return None
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(t.shape, generator=g, dtype=torch.float64)
    if round_to is not None:
        u = u.to(round_to)
    return u.to(dtype=t.dtype, device=t.device)


def _grads(loss, case: Case, extra: Optional[Dict[str, Optional[torch.Tensor]]] = None) -> Dict[str, torch.Tensor]:
    """Gradients of ``loss`` w.r.t. the case's leaves and the tensors in ``extra`` that require grad."""
    leaves, names = case.leaves(), case.names()
    for name, t in (extra or {}).items():
        if isinstance(t, torch.Tensor) and t.requires_grad:
            leaves.append(t)
            names.append(name)
    if not leaves:
        return {}
    if not loss.requires_grad:
        grads = [None] * len(leaves)
    else:
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return {name: (torch.zeros_like(leaf) if gr is None else gr)
            for name, leaf, gr in zip(names, leaves, grads)}


def run_lif(case: Case, backend: str, seed: int = 123, round_to: Optional[torch.dtype] = None,
            **opts) -> Dict[str, torch.Tensor]:
    """lif forward, then backward of sum(out * random upstream) over spikes, membrane and final state.

    The upstream gradients depend only on the output shapes and ``seed``, so two backends get
    the same ones.
    """
    res = snnkern.lif(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, backend=backend, **opts)
    return _outputs_and_grads(res, case, seed, round_to, opts.get("return_membrane"))


def _outputs_and_grads(res, case: Case, seed: int, round_to: Optional[torch.dtype], return_membrane,
                       extra: Optional[Dict[str, Optional[torch.Tensor]]] = None) -> Dict[str, torch.Tensor]:
    """The outputs of a LIFResult and the gradients of sum(out * random upstream) over them."""
    out = {"spikes": res.spikes, "state": res.state}
    if return_membrane:
        assert res.membrane is not None
        out["membrane"] = res.membrane
    else:
        assert res.membrane is None
    loss = sum((v * upstream_like(v, seed + k, round_to)).sum() for k, v in enumerate(out.values()))
    out.update({"grad_" + k: v for k, v in _grads(loss, case, extra).items()})
    return {k: v.detach() for k, v in out.items()}


def make_recurrent_weight(n, dtype=torch.float64, device="cpu", seed=0, scale=1.0, requires_grad=True,
                          quantum: Optional[float] = None) -> torch.Tensor:
    """Random recurrent weight [n, n] ([out, in]): entries N(0, scale^2 / n) plus an inhibitory mean
    -0.7 scale / n (a neuron whose inputs all spike gets -0.7 scale on average), so that with
    make_recurrent_case's inputs the recurrent input visibly changes the spikes (each input spike
    moves a neuron by ~scale / sqrt(n)) while the spike rate stays moderate, at any n.
    ``quantum``: round the entries to multiples of it (with a power of two such as 1/8, the
    entries and their sums over up to 32 binary spikes are exact in bfloat16 and float16)."""
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(n, n, generator=g, dtype=torch.float64) - 0.7 / max(n, 1) ** 0.5) * (scale / max(n, 1) ** 0.5)
    if quantum is not None:
        w = (w / quantum).round() * quantum
    return w.to(dtype=dtype, device=device).requires_grad_(requires_grad)


def make_initial_spikes(b, n, dtype=torch.float64, device="cpu", seed=0, p=0.3, requires_grad=True):
    """Binary spikes [b, n] of the step before the first (the ``spikes=`` argument of recurrent_lif)."""
    g = torch.Generator().manual_seed(seed)
    z = (torch.rand(b, n, generator=g, dtype=torch.float64) < p).to(dtype=dtype, device=device)
    return z.requires_grad_(requires_grad)


def make_recurrent_case(b, t, n, dtype=torch.float64, device="cpu", *, syn=True, alpha_kind="tensor", seed=0,
                        requires_grad=True, with_state=True, x_shift=0.0, scale=1.0, quantum=None):
    """(case, weight, spikes0) for recurrent_lif: make_case's inputs with a lower mean drive (the
    recurrent input adds to it), a make_recurrent_weight and binary initial spikes."""
    case = make_case(b, t, n, dtype, device, syn=syn, alpha_kind=alpha_kind, with_state=with_state, seed=seed,
                     requires_grad=requires_grad, x_shift=x_shift)
    weight = make_recurrent_weight(n, dtype, device, seed + 1, scale, requires_grad=requires_grad, quantum=quantum)
    return case, weight, make_initial_spikes(b, n, dtype, device, seed + 2, requires_grad=requires_grad)


def clone_leaf(t: Optional[torch.Tensor], dtype=None, device=None) -> Optional[torch.Tensor]:
    """A detached copy of ``t`` (optionally cast) as a new leaf with the same requires_grad."""
    if t is None:
        return None
    return t.detach().to(dtype=dtype or t.dtype, device=device or t.device).clone().requires_grad_(t.requires_grad)


def run_recurrent(case: Case, weight: torch.Tensor, spikes0: Optional[torch.Tensor], backend: str, seed: int = 123,
                  round_to: Optional[torch.dtype] = None, **opts) -> Dict[str, torch.Tensor]:
    """recurrent_lif forward, then backward of sum(out * random upstream) over spikes, membrane and
    final state, as run_lif; the gradients include ``weight`` and ``spikes0`` when they require grad."""
    res = snnkern.recurrent_lif(case.x, weight, case.alpha, alpha_syn=case.alpha_syn, state=case.state,
                                spikes=spikes0, backend=backend, **opts)
    return _outputs_and_grads(res, case, seed, round_to, opts.get("return_membrane"),
                              {"weight": weight, "spikes0": spikes0})


def run_leaky(case: Case, backend: str, seed: int = 321, round_to: Optional[torch.dtype] = None
              ) -> Dict[str, torch.Tensor]:
    res = snnkern.leaky(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, backend=backend)
    out = {"membrane": res.membrane, "state": res.state}
    loss = sum((v * upstream_like(v, seed + k, round_to)).sum() for k, v in enumerate(out.values()))
    out.update({"grad_" + k: v for k, v in _grads(loss, case).items()})
    return {k: v.detach() for k, v in out.items()}


def assert_same(got: Dict[str, torch.Tensor], want: Dict[str, torch.Tensor], tol: dict,
                exact_spikes: bool = True, upcast_want: bool = False):
    """Spikes bitwise equal; everything else within ``tol``; same keys, shapes and dtypes."""
    assert got.keys() == want.keys()
    for key in want:
        g, w = got[key], want[key]
        assert g.shape == w.shape, f"{key}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        if upcast_want:
            g = g.to(w.dtype)
        else:
            assert g.dtype == w.dtype, f"{key}: dtype {g.dtype} != {w.dtype}"
        if key == "spikes" and exact_spikes:
            bad = (g != w).sum().item()
            assert bad == 0, f"spikes differ at {bad} of {w.numel()} positions"
        else:
            torch.testing.assert_close(g, w, **tol, msg=lambda m, key=key: f"{key}: {m}")


def assert_same_scaled(got: Dict[str, torch.Tensor], want: Dict[str, torch.Tensor], tol: dict,
                       upcast_want: bool = False):
    """assert_same, except that each gradient's atol is ``tol["atol"]`` times its largest magnitude.

    The gradients of recurrent_lif are sums over many terms (grad_weight and grad_alpha over B*T
    of them, and every gradient over the T steps of the backward recursion, through the
    recurrent matmul) which the kernel adds in another order than autograd. Their rounding error
    is of the order eps * (number of terms) * (size of the largest terms), whatever the size of
    the sum itself: an element that is a small difference of large terms carries the absolute
    error of the large terms, so a per-element rtol (or a fixed atol) is the wrong measure. The
    largest |gradient| stands for the size of the terms, so the tolerance is relative to it
    (never below ``tol["atol"]``). Spikes stay bitwise equal, the forward outputs within ``tol``."""
    grads = [k for k in want if k.startswith("grad_")]
    assert_same({k: v for k, v in got.items() if k not in grads},
                {k: v for k, v in want.items() if k not in grads}, tol, upcast_want=upcast_want)
    for key in grads:
        g, w = got[key], want[key]
        assert g.shape == w.shape, f"{key}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        g = g.to(w.dtype) if upcast_want else g
        assert g.dtype == w.dtype, f"{key}: dtype {g.dtype} != {w.dtype}"
        scale = max(1.0, w.abs().max().item()) if w.numel() else 1.0
        torch.testing.assert_close(g, w, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                   msg=lambda m, key=key, scale=scale: f"{key} (atol scaled by {scale:.3g}): {m}")


def spike_rate(spikes: torch.Tensor) -> float:
    return spikes.float().mean().item() if spikes.numel() else 0.0


def chunked_lif(case, backend, chunks, seed=77, **opts):
    t_total = case.x.shape[1]
    assert sum(chunks) == t_total
    # Upstream gradients for the whole run, then split along time, so both runs get the same.
    ref_shape = case.x.detach()
    g_spikes = upstream_like(ref_shape, seed)
    g_mem = upstream_like(ref_shape, seed + 1)
    g_state = upstream_like(case.x.new_empty(3, case.x.shape[0], case.x.shape[2]), seed + 2)
    if chunks == [t_total]:
        pieces = [snnkern.lif(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state,
                              return_membrane=True, backend=backend, **opts)]
    else:
        pieces, state, start = [], case.state, 0
        for length in chunks:
            r = snnkern.lif(case.x[:, start:start + length], case.alpha, alpha_syn=case.alpha_syn, state=state,
                            return_membrane=True, backend=backend, **opts)
            pieces.append(r)
            state, start = r.state, start + length
    spikes = torch.cat([p.spikes for p in pieces], dim=1)
    membrane = torch.cat([p.membrane for p in pieces], dim=1)
    final = pieces[-1].state
    loss = (spikes * g_spikes).sum() + (membrane * g_mem).sum() + (final * g_state).sum()
    leaves = case.leaves()
    grads = torch.autograd.grad(loss, leaves)
    out = {"spikes": spikes.detach(), "membrane": membrane.detach(), "state": final.detach()}
    out.update({"grad_" + k: g for k, g in zip(case.names(), grads)})
    return out


def assert_opcheck(op, args) -> None:
    """torch.library.opcheck passes every one of its checks on ``op(*args)``."""
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), result
