"""Shared test helpers: where the compiled ops run, random cases, running an op forward +
backward, comparing two runs.

Where the compiled ops run (the ``where`` fixture of conftest.py, parametrised with the
decorators below): every test of the compiled kernels takes ``where`` and builds its tensors on
``where.device``:

* ``"cpu"``: the CPU kernels (SIMD lanes, at::parallel_for, event-driven spike products);
* ``"emulated"``: CPU tensors inside ``snnkern.testing.cuda_lane_emulation()``: the CUDA
  build's lane code and the CUDA launcher's orchestration, run on the host (every machine);
* ``"cuda"``: the CUDA kernels, where a GPU and a CUDA build are present;
* ``"reference"`` (only for tests that also check the reference backend on its own): the
  pure-PyTorch loops on CPU tensors, no kernel at all.

The reference the kernels are compared with runs on the same device tensors (it is pure
PyTorch, untouched by the emulation).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass

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
    not HAVE_C and ON_REFERENCE_ENV, reason="snnkern._C not built and SNNKERN_BACKEND=reference is set"
)

HAVE_CUDA = torch.cuda.is_available() and HAVE_C and snnkern.compiled_with_cuda()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device and a CUDA build of snnkern")


@dataclass(frozen=True)
class Where:
    """Where a test runs the ops: ``name`` (reference, cpu, emulated, cuda) and the ``device``
    its tensors live on."""

    name: str
    device: str

    @property
    def backend(self) -> str:
        """The ``backend=`` argument of the python API."""
        return "reference" if self.name == "reference" else "compiled"


WHERE_PARAMS = {
    "reference": pytest.param("reference", id="reference"),
    "cpu": pytest.param("cpu", id="cpu", marks=needs_compiled),
    "emulated": pytest.param("emulated", id="emulated", marks=needs_compiled),
    "cuda": pytest.param("cuda", id="cuda", marks=needs_cuda),
}
WHERES = [WHERE_PARAMS[name] for name in ("cpu", "emulated", "cuda")]


def where_params(*names: str):
    """The ``where`` params of ``names`` (for a joint parametrize with other arguments)."""
    return [WHERE_PARAMS[name] for name in names]


def where_cases(*cases: tuple):
    """Params for a joint ``parametrize("where, ...", ..., indirect=["where"])``: each case is
    ``(where name, *values)`` and gets that where's marks."""
    return [pytest.param(*case, id="-".join(map(str, case)), marks=WHERE_PARAMS[case[0]].marks) for case in cases]


def at(*names: str):
    """Parametrise a test's ``where`` fixture over ``names``."""
    return pytest.mark.parametrize("where", where_params(*names), indirect=True)


# The compiled ops wherever they run; the same and the reference backend on its own; the CUDA
# build's lane code only (half precision).
everywhere = pytest.mark.parametrize("where", WHERES, indirect=True)
everywhere_and_reference = at("reference", "cpu", "emulated", "cuda")
on_lanes = at("emulated", "cuda")

ORDERINGS = ("delayed", "spike_first", "update_first", "charge_first")
RESETS = ("zero", "subtract", "none")
SURROGATES = (Sigmoid(5.0), FastSigmoid(100.0), Triangle(0.3), ATan(2.0))
SURROGATE_IDS = ("sigmoid", "fastsigmoid", "triangle", "atan")
EMPTY_SHAPES = [(0, 5, 3), (2, 0, 3), (2, 5, 0), (0, 0, 0)]

# Tolerances for comparing the compiled ops with the reference loops (same dtype).
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}
# Low-precision inputs against the float32 reference on the upcast inputs.
LOW_TOL = {torch.bfloat16: dict(rtol=2e-2, atol=2e-2), torch.float16: dict(rtol=2e-3, atol=2e-3)}
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
LOW_DTYPES = [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float16, id="f16")]


def all_lif_options():
    """Every combination of the lif options (ordering x reset x detach x syn x surrogate x alpha kind x membrane)."""
    combos = itertools.product(
        ORDERINGS, RESETS, (False, True), (False, True), range(len(SURROGATES)), ("scalar", "tensor"), (False, True)
    )
    params = []
    for ordering, reset, detach, syn, s, alpha_kind, mem in combos:
        ident = (
            f"{ordering}-{reset}-{'det' if detach else 'nodet'}-{'syn' if syn else 'nosyn'}-"
            f"{SURROGATE_IDS[s]}-{alpha_kind}-{'mem' if mem else 'nomem'}"
        )
        params.append(
            pytest.param(
                dict(ordering=ordering, reset=reset, detach_reset=detach, surrogate=SURROGATES[s], return_membrane=mem),
                syn,
                alpha_kind,
                id=ident,
            )
        )
    return params


@dataclass
class Case:
    """One set of inputs: leaves that require grad are listed in ``leaves``."""

    x: torch.Tensor
    alpha: object  # float or tensor [N]
    alpha_syn: object  # None, float or tensor [N]
    state: torch.Tensor | None  # [3, B, N] or None

    def leaves(self) -> list[torch.Tensor]:
        out = [self.x]
        for v in (self.alpha, self.alpha_syn, self.state):
            if isinstance(v, torch.Tensor):
                out.append(v)
        return [t for t in out if t.requires_grad]

    def names(self) -> list[str]:
        names = ["x", "alpha", "alpha_syn", "state"]
        vals = [self.x, self.alpha, self.alpha_syn, self.state]
        return [n for n, v in zip(names, vals) if isinstance(v, torch.Tensor) and v.requires_grad]


def make_case(
    b,
    t,
    n,
    dtype=torch.float64,
    device="cpu",
    *,
    syn=False,
    alpha_kind="tensor",
    with_state=True,
    seed=0,
    requires_grad=True,
    x_scale=0.6,
    x_shift=0.3,
) -> Case:
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


def clone_case(case: Case, dtype=None, device=None, round_to: torch.dtype | None = None) -> Case:
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


def upstream_like(t: torch.Tensor | None, seed: int, round_to: torch.dtype | None = None):
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


def _grads(loss, case: Case, extra: dict[str, torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
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
    return {name: (torch.zeros_like(leaf) if gr is None else gr) for name, leaf, gr in zip(names, leaves, grads)}


def run_lif(
    case: Case, backend: str, seed: int = 123, round_to: torch.dtype | None = None, **opts
) -> dict[str, torch.Tensor]:
    """lif forward, then backward of sum(out * random upstream) over spikes, membrane and final state.

    The upstream gradients depend only on the output shapes and ``seed``, so two backends get
    the same ones.
    """

    def run():
        res = snnkern.lif(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, backend=backend, **opts)
        return _outputs_and_grads(res, case, seed, round_to, opts.get("return_membrane"))

    if backend != "reference":
        return run()
    return _cached_reference(
        "lif", (case.x, case.alpha, case.alpha_syn, case.state), dict(opts, seed=seed, round_to=round_to), run
    )


# The reference loops are the slow half of the parity tests, and a test parametrised over
# ``where`` runs them on the very same inputs for "cpu" and "emulated" (one after the other:
# ``where`` varies fastest). Their results are kept under a fingerprint of everything they depend
# on (each input's dtype, shape, device, requires_grad and bytes; the options; the upstream
# seed), so that the second run reuses them instead of recomputing the same numbers. The least
# recently used results go once they exceed _CACHE_BYTES.
_REFERENCE_CACHE: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
_CACHE_BYTES = 256 << 20
_cached_bytes = 0


def _fingerprint(value) -> object:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        data = t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return (
            "tensor",
            str(t.dtype),
            tuple(t.shape),
            str(t.device),
            value.requires_grad,
            hashlib.blake2b(data, digest_size=16).hexdigest(),
        )
    return repr(value)


def _nbytes(result: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for v in result.values())


def _cached_reference(name: str, inputs: tuple, opts: dict, compute) -> dict[str, torch.Tensor]:
    key = (name, tuple(_fingerprint(v) for v in inputs), tuple(sorted((k, _fingerprint(v)) for k, v in opts.items())))
    global _cached_bytes
    result = _REFERENCE_CACHE.get(key)
    if result is None:
        result = compute()
        _REFERENCE_CACHE[key] = result
        _cached_bytes += _nbytes(result)
        while _cached_bytes > _CACHE_BYTES:
            _cached_bytes -= _nbytes(_REFERENCE_CACHE.popitem(last=False)[1])
    else:
        _REFERENCE_CACHE.move_to_end(key)
    return {k: v.clone() for k, v in result.items()}


def _outputs_and_grads(
    res,
    case: Case,
    seed: int,
    round_to: torch.dtype | None,
    return_membrane,
    extra: dict[str, torch.Tensor | None] | None = None,
) -> dict[str, torch.Tensor]:
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


def make_recurrent_weight(
    n, dtype=torch.float64, device="cpu", seed=0, scale=1.0, requires_grad=True, quantum: float | None = None
) -> torch.Tensor:
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


def make_recurrent_case(
    b,
    t,
    n,
    dtype=torch.float64,
    device="cpu",
    *,
    syn=True,
    alpha_kind="tensor",
    seed=0,
    requires_grad=True,
    with_state=True,
    x_shift=0.0,
    scale=1.0,
    quantum=None,
):
    """(case, weight, spikes0) for recurrent_lif: make_case's inputs with a lower mean drive (the
    recurrent input adds to it), a make_recurrent_weight and binary initial spikes."""
    case = make_case(
        b,
        t,
        n,
        dtype,
        device,
        syn=syn,
        alpha_kind=alpha_kind,
        with_state=with_state,
        seed=seed,
        requires_grad=requires_grad,
        x_shift=x_shift,
    )
    weight = make_recurrent_weight(n, dtype, device, seed + 1, scale, requires_grad=requires_grad, quantum=quantum)
    return case, weight, make_initial_spikes(b, n, dtype, device, seed + 2, requires_grad=requires_grad)


def clone_leaf(t: torch.Tensor | None, dtype=None, device=None) -> torch.Tensor | None:
    """A detached copy of ``t`` (optionally cast) as a new leaf with the same requires_grad."""
    if t is None:
        return None
    return t.detach().to(dtype=dtype or t.dtype, device=device or t.device).clone().requires_grad_(t.requires_grad)


def run_recurrent(
    case: Case,
    weight: torch.Tensor,
    spikes0: torch.Tensor | None,
    backend: str,
    seed: int = 123,
    round_to: torch.dtype | None = None,
    **opts,
) -> dict[str, torch.Tensor]:
    """recurrent_lif forward, then backward of sum(out * random upstream) over spikes, membrane and
    final state, as run_lif; the gradients include ``weight`` and ``spikes0`` when they require grad."""

    def run():
        res = snnkern.recurrent_lif(
            case.x,
            weight,
            case.alpha,
            alpha_syn=case.alpha_syn,
            state=case.state,
            spikes=spikes0,
            backend=backend,
            **opts,
        )
        return _outputs_and_grads(
            res, case, seed, round_to, opts.get("return_membrane"), {"weight": weight, "spikes0": spikes0}
        )

    if backend != "reference":
        return run()
    return _cached_reference(
        "recurrent_lif",
        (case.x, case.alpha, case.alpha_syn, case.state, weight, spikes0),
        dict(opts, seed=seed, round_to=round_to),
        run,
    )


def run_leaky(
    case: Case, backend: str, seed: int = 321, round_to: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    def run():
        res = snnkern.leaky(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state, backend=backend)
        out = {"membrane": res.membrane, "state": res.state}
        loss = sum((v * upstream_like(v, seed + k, round_to)).sum() for k, v in enumerate(out.values()))
        out.update({"grad_" + k: v for k, v in _grads(loss, case).items()})
        return {k: v.detach() for k, v in out.items()}

    if backend != "reference":
        return run()
    return _cached_reference(
        "leaky", (case.x, case.alpha, case.alpha_syn, case.state), dict(seed=seed, round_to=round_to), run
    )


def assert_same(
    got: dict[str, torch.Tensor],
    want: dict[str, torch.Tensor],
    tol: dict,
    exact_spikes: bool = True,
    upcast_want: bool = False,
):
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


def assert_same_scaled(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tol: dict, upcast_want: bool = False
):
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
    assert_same(
        {k: v for k, v in got.items() if k not in grads},
        {k: v for k, v in want.items() if k not in grads},
        tol,
        upcast_want=upcast_want,
    )
    for key in grads:
        g, w = got[key], want[key]
        assert g.shape == w.shape, f"{key}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        g = g.to(w.dtype) if upcast_want else g
        assert g.dtype == w.dtype, f"{key}: dtype {g.dtype} != {w.dtype}"
        scale = max(1.0, w.abs().max().item()) if w.numel() else 1.0
        torch.testing.assert_close(
            g,
            w,
            rtol=tol["rtol"],
            atol=tol["atol"] * scale,
            msg=lambda m, key=key, scale=scale: f"{key} (atol scaled by {scale:.3g}): {m}",
        )


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
        pieces = [
            snnkern.lif(
                case.x,
                case.alpha,
                alpha_syn=case.alpha_syn,
                state=case.state,
                return_membrane=True,
                backend=backend,
                **opts,
            )
        ]
    else:
        pieces, state, start = [], case.state, 0
        for length in chunks:
            r = snnkern.lif(
                case.x[:, start : start + length],
                case.alpha,
                alpha_syn=case.alpha_syn,
                state=state,
                return_membrane=True,
                backend=backend,
                **opts,
            )
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


# --------------------------------------------------------------------------------------------
# Spike products (tests/test_spike_linear.py, tests/test_spike_events.py)
# --------------------------------------------------------------------------------------------

# (M, K, N): K on and off the SIMD width (8 floats / 4 doubles with AVX2, 16 / 8 with AVX-512),
# N on and off the column block (8 vectors: 64 floats / 32 doubles with AVX2), M = 1.
# (64, 300, 513): many CUDA blocks / CPU row tasks.
SPIKE_SHAPES = [
    (1, 1, 1),
    (1, 13, 7),
    (3, 13, 100),
    (5, 700, 130),
    (17, 64, 200),
    (4, 8, 64),
    (2, 16, 128),
    (9, 130, 1),
    (1, 700, 200),
    (6, 33, 513),
    (64, 300, 513),
]
SPIKE_SHAPE_IDS = ["x".join(map(str, s)) for s in SPIKE_SHAPES]
SPIKE_PRODUCTS = [pytest.param(False, id="spike_matmul"), pytest.param(True, id="spike_matmul_t")]


def make_spikes(m, k, density, dtype=torch.float64, seed=0, kind="binary", device="cpu", negative_zeros=False):
    """[m, k] with about ``density`` nonzeros: 0/1 spikes ("binary"), spike counts 1..3
    ("counts"), signed normal values ("signed"), or rows of each ("mixed": binary, counts,
    binary, signed, ... by row; "mixed_counts": binary, binary, counts, ...). With
    ``negative_zeros`` every third zero is -0.0 (still a zero: binary rows stay binary)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(m, k, generator=g, dtype=torch.float64) < density
    ones = torch.ones(m, k, dtype=torch.float64)

    def counts():
        return torch.randint(1, 4, (m, k), generator=g).to(torch.float64)

    def signed():
        values = torch.randn(m, k, generator=g, dtype=torch.float64)
        return torch.where(values == 0, ones, values)

    row = torch.arange(m)[:, None]
    if kind == "binary":
        values = ones
    elif kind == "counts":
        values = counts()
    elif kind == "signed":
        values = signed()
    elif kind == "mixed":
        by_count, by_sign = counts(), signed()
        values = torch.where(row % 4 == 1, by_count, torch.where(row % 4 == 3, by_sign, ones))
    elif kind == "mixed_counts":
        values = torch.where(row % 3 == 2, counts(), ones)
    else:
        raise ValueError(kind)
    out = values * mask
    if negative_zeros:
        negative = (~mask) & (torch.arange(m * k).reshape(m, k) % 3 == 0)
        out = torch.where(negative, torch.full_like(out, -0.0), out)
    return out.to(dtype).to(device)


def make_dense(*shape, dtype=torch.float64, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def run_spike_product(transpose, spikes, other, events=None):
    """spike_matmul_t (``transpose``) or spike_matmul of spikes and other, with events if given."""
    op = torch.ops.snnkern.spike_matmul_t if transpose else torch.ops.snnkern.spike_matmul
    return op(spikes, other) if events is None else op(spikes, other, events)


NONCONTIGUOUS_LAYOUTS = ["transposed", "sliced", "strided", "expanded"]


def noncontiguous(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The values of ``t`` [r, c] as a non-contiguous view (NaN around them where sliced or
    strided; "expanded": every row the first of ``t``)."""
    r, c = t.shape
    if layout == "transposed":
        out = t.t().contiguous().t()
    elif layout == "sliced":
        big = torch.full((r + 3, c + 5), float("nan"), dtype=t.dtype, device=t.device)
        big[2 : 2 + r, 3 : 3 + c] = t
        out = big[2 : 2 + r, 3 : 3 + c]
    elif layout == "strided":
        big = torch.full((r, 2 * c), float("nan"), dtype=t.dtype, device=t.device)
        big[:, ::2] = t
        out = big[:, ::2]
    elif layout == "expanded":
        return t[:1].expand(r, c)
    else:
        raise ValueError(layout)
    assert torch.equal(out, t) and not out.is_contiguous()
    return out


def assert_bitwise(got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    """Same shape, dtype and bits (NaN where NaN, -0.0 where -0.0)."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    as_int = {
        torch.float64: torch.int64,
        torch.float32: torch.int32,
        torch.float16: torch.int16,
        torch.bfloat16: torch.int16,
    }
    g, w = got.contiguous().view(as_int[got.dtype]), want.contiguous().view(as_int[want.dtype])
    bad = int((g != w).sum())
    assert bad == 0, f"{what}: {bad} of {got.numel()} entries differ in their bits"
