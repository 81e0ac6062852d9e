"""What only CUDA has: streams, devices other than cuda:0, half precision on the device itself
(against the emulated CUDA lanes, which run the same lane code on the host), CUDA autocast, and
arguments on two devices. Everything else the CUDA kernels do is tested by the other files, with
``where="cuda"`` (tests/helpers.py). Skipped without a CUDA device and a CUDA build of snnkern."""

import pytest
import torch

import snnkern
from helpers import (
    HAVE_C,
    LOW_DTYPES,
    LOW_TOL,
    SURROGATES,
    TOL,
    Case,
    assert_same_scaled,
    clone_case,
    clone_leaf,
    make_case,
    make_recurrent_case,
    needs_cuda,
    run_leaky,
    run_lif,
    run_recurrent,
    spike_rate,
    upstream_like,
)
from snnkern.nn import LIF, LeakyReadout, RecurrentLIF
from snnkern.testing import cuda_lane_emulation

F32 = torch.float32
ERR = (ValueError, TypeError)


def _on(case: Case, device) -> Case:
    return clone_case(case, device=device)


def _cpu(result):
    return {k: v.cpu() for k, v in result.items()}


def _assert_same_run(got, want):
    """Two runs of the same ops on the same values: spikes bitwise, the rest within the float32
    TOL relative to each output's largest magnitude (cuBLAS does not promise the same bits on
    another stream or device)."""
    assert got.keys() == want.keys()
    for key in want:
        g, w = got[key].cpu(), want[key].cpu()
        assert g.isfinite().all(), f"{key}: not finite (inputs read before they were written?)"
        if key.endswith("spikes"):
            assert torch.equal(g, w), f"{key}: differ at {(g != w).sum().item()} positions"
        else:
            scale = max(1.0, w.abs().max().item()) if w.numel() else 1.0
            torch.testing.assert_close(
                g, w, rtol=TOL[F32]["rtol"], atol=TOL[F32]["atol"] * scale, msg=lambda m, key=key: f"{key}: {m}"
            )


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _all_ops(case: Case, weight, spikes0):
    """lif, leaky, recurrent_lif and spike_linear forward and backward on ``case`` (a dict of
    outputs and gradients)."""
    opts = dict(ordering="spike_first", reset="subtract", surrogate=SURROGATES[1], return_membrane=True)
    out = {"lif_" + k: v for k, v in run_lif(clone_case(case), "compiled", **opts).items()}
    out.update({"leaky_" + k: v for k, v in run_leaky(clone_case(case), "compiled").items()})
    out.update(
        {
            "rec_" + k: v
            for k, v in run_recurrent(
                clone_case(case), clone_leaf(weight), clone_leaf(spikes0), "compiled", **opts
            ).items()
        }
    )
    x, w = (clone_leaf(t) for t in (out["lif_spikes"], weight))
    x.requires_grad_()
    lin = snnkern.spike_linear(x, w)
    gx, gw = torch.autograd.grad((lin * upstream_like(lin, 5)).sum(), (x, w))
    out.update(linear=lin.detach(), linear_grad_x=gx, linear_grad_weight=gw)
    return out


@needs_cuda
def test_non_default_stream():
    """The ops launch on the current stream: run on a side stream after a long sleep and a copy
    queued there, they read the copied inputs (not the NaN the tensors held before) and give the
    default stream's results."""
    case, weight, spikes0 = make_recurrent_case(16, 40, 96, F32, "cuda", seed=3)
    want = _all_ops(case, weight, spikes0)
    assert 0.0 < spike_rate(want["lif_spikes"]) < 1.0

    side = torch.cuda.Stream()
    holders = [torch.full_like(t, float("nan")) for t in (case.x, case.alpha, case.alpha_syn, case.state, weight)]
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # ~tens of ms: the copies below land late on this stream
        for holder, t in zip(holders, (case.x, case.alpha, case.alpha_syn, case.state, weight)):
            holder.copy_(t.detach(), non_blocking=True)
        got = _all_ops(Case(*(h.requires_grad_() for h in holders[:4])), holders[4].requires_grad_(), spikes0)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    _assert_same_run(got, want)


# --------------------------------------------------------------------------------------------
# A device other than cuda:0
# --------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    """Tensors on cuda:1 (while cuda:0 is the current device): the ops compute there, their outputs
    and gradients are on cuda:1 and equal those of the same inputs on cuda:0."""
    case, weight, spikes0 = make_recurrent_case(8, 20, 48, F32, "cuda:0", seed=4)
    assert torch.cuda.current_device() == 0
    want = _all_ops(case, weight, spikes0)
    got = _all_ops(_on(case, "cuda:1"), clone_leaf(weight, device="cuda:1"), clone_leaf(spikes0, device="cuda:1"))
    assert torch.cuda.current_device() == 0
    for key in want:
        assert got[key].device == torch.device("cuda:1"), key
    _assert_same_run(got, want)


# --------------------------------------------------------------------------------------------
# Half precision on the device against the emulated lanes
# --------------------------------------------------------------------------------------------


def _assert_device_matches_emulation(got, want, low):
    """The CUDA run against the emulated lanes (the same lane code on the host): spikes bitwise;
    the rest within the storage dtype's tolerance (the device may contract multiply-adds
    differently from the host compiler), the float32 outputs within the float32 one."""
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype, key
    assert torch.equal(got["spikes"], want["spikes"]), (
        f"spikes differ at {(got['spikes'] != want['spikes']).sum().item()} positions"
    )
    low_keys = [k for k in want if want[k].dtype == low and k != "spikes"]
    f32_keys = [k for k in want if want[k].dtype == F32]
    assert_same_scaled({k: got[k] for k in low_keys}, {k: want[k] for k in low_keys}, LOW_TOL[low])
    assert_same_scaled({k: got[k] for k in f32_keys}, {k: want[k] for k in f32_keys}, TOL[F32])


@needs_cuda
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("op", ["lif", "recurrent_lif"])
def test_half_precision_matches_emulation(op, low):
    base, weight, spikes0 = make_recurrent_case(4, 24, 40, F32, syn=True, seed=6, quantum=0.125)
    lp = clone_case(base)
    lp.x = base.x.detach().to(low).requires_grad_()
    lp_weight, lp_spikes0 = clone_leaf(weight, dtype=low), clone_leaf(spikes0, dtype=low)
    opts = dict(ordering="update_first", reset="zero", surrogate=SURROGATES[0], return_membrane=True)

    def run(device):
        case = _on(lp, device)
        if op == "lif":
            return _cpu(run_lif(case, "compiled", round_to=low, **opts))
        return _cpu(
            run_recurrent(
                case,
                clone_leaf(lp_weight, device=device),
                clone_leaf(lp_spikes0, device=device),
                "compiled",
                round_to=low,
                **opts,
            )
        )

    got = run("cuda")
    with cuda_lane_emulation():
        want = run("cpu")
    assert got["spikes"].dtype == low and got["state"].dtype == F32
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    _assert_device_matches_emulation(got, want, low)


@needs_cuda
@pytest.mark.parametrize("low", LOW_DTYPES)
def test_half_precision_leaky_matches_emulation(low):
    base = make_case(4, 24, 40, F32, syn=True, seed=7)
    lp = clone_case(base)
    lp.x = base.x.detach().to(low).requires_grad_()
    got = _cpu(run_leaky(_on(lp, "cuda"), "compiled", round_to=low))
    with cuda_lane_emulation():
        want = run_leaky(_on(lp, "cpu"), "compiled", round_to=low)
    low_keys = [k for k in want if want[k].dtype == low]
    f32_keys = [k for k in want if want[k].dtype == F32]
    assert low_keys == ["membrane", "grad_x"] and "state" in f32_keys
    assert_same_scaled({k: got[k] for k in low_keys}, {k: want[k] for k in low_keys}, LOW_TOL[low])
    assert_same_scaled({k: got[k] for k in f32_keys}, {k: want[k] for k in f32_keys}, TOL[F32])


# --------------------------------------------------------------------------------------------
# CUDA autocast
# --------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("low", LOW_DTYPES)
def test_ops_under_cuda_autocast(low):
    """Under CUDA autocast the sequences and the recurrent weight run in the autocast dtype and
    the decays and the state stay float32: the results equal the explicit call with x and the
    weight cast to it."""
    case, weight, spikes0 = make_recurrent_case(3, 12, 16, F32, "cuda", seed=8, requires_grad=False)
    args = dict(alpha_syn=case.alpha_syn, state=case.state, return_membrane=True)
    with torch.autocast("cuda", dtype=low):
        lif = snnkern.lif(case.x, case.alpha, **args)
        rec = snnkern.recurrent_lif(case.x, weight, case.alpha, spikes=spikes0, **args)
        leaky = snnkern.leaky(case.x, case.alpha, alpha_syn=case.alpha_syn, state=case.state)
        lin = snnkern.spike_linear(lif.spikes.float(), weight)
    want_lif = snnkern.lif(case.x.to(low), case.alpha, **args)
    want_rec = snnkern.recurrent_lif(case.x.to(low), weight.to(low), case.alpha, spikes=spikes0, **args)
    want_leaky = snnkern.leaky(case.x.to(low), case.alpha, alpha_syn=case.alpha_syn, state=case.state)
    want_lin = snnkern.spike_linear(lif.spikes, weight.to(low))
    for got, want in ((lif, want_lif), (rec, want_rec)):
        assert got.spikes.dtype == got.membrane.dtype == low and got.state.dtype == F32
        for g, w in zip(got, want):
            assert torch.equal(g, w)
    assert leaky.membrane.dtype == low and leaky.state.dtype == F32
    assert torch.equal(leaky.membrane, want_leaky.membrane) and torch.equal(leaky.state, want_leaky.state)
    assert lin.dtype == low and torch.equal(lin, want_lin)


@needs_cuda
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("name", ["lif", "recurrent", "readout"])
def test_layers_under_cuda_autocast(name, low):
    """float32 layers under CUDA autocast: forward and backward run, the outputs come in the
    autocast dtype and the parameters get float32 gradients."""
    torch.manual_seed(9)
    layer = {
        "lif": lambda: LIF(12, 16, alpha=0.9, alpha_syn=0.8, learn_alpha=True),
        "recurrent": lambda: RecurrentLIF(12, 16, alpha=0.9, learn_alpha=True),
        "readout": lambda: LeakyReadout(12, 16, alpha=0.9, learn_alpha=True),
    }[name]().cuda()
    g = torch.Generator().manual_seed(10)
    x = (torch.rand(3, 20, 12, generator=g) < 0.3).float().cuda()
    with torch.autocast("cuda", dtype=low):
        out = layer(x)
    assert out.dtype == low
    grads = torch.autograd.grad((out.float() * upstream_like(out, 11, low).float()).sum(), list(layer.parameters()))
    assert all(gr.dtype == F32 and gr.isfinite().all() for gr in grads)


# --------------------------------------------------------------------------------------------
# Arguments on two devices
# --------------------------------------------------------------------------------------------

BACKENDS = ["reference", "compiled"]
B, T, N = 2, 5, 3


def _call(fn, backend, device, other_device, name):
    x = torch.randn(B, T, N, device=device)
    kw = {"alpha": 0.9}
    if name == "state":
        kw["state"] = torch.zeros(3, B, N, device=other_device)
    elif name == "alpha":
        kw["alpha"] = torch.full((N,), 0.5, device=other_device)
    if fn == "recurrent_lif":
        weight = torch.zeros(N, N, device=other_device if name == "weight" else device)
        if name == "spikes":
            kw["spikes"] = torch.zeros(B, N, device=other_device)
        return snnkern.recurrent_lif(x, weight, kw.pop("alpha"), backend=backend, **kw)
    return getattr(snnkern, fn)(x, kw.pop("alpha"), backend=backend, **kw)


MIXED = [
    ("lif", "alpha"),
    ("lif", "state"),
    ("leaky", "alpha"),
    ("leaky", "state"),
    ("recurrent_lif", "alpha"),
    ("recurrent_lif", "state"),
    ("recurrent_lif", "weight"),
    ("recurrent_lif", "spikes"),
]


@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_device, other_device", [("cuda", "cpu"), ("cpu", "cuda")], ids=["x_cuda", "x_cpu"])
@pytest.mark.parametrize("fn, name", MIXED, ids=[f"{f}-{n}" for f, n in MIXED])
def test_mixed_devices(fn, name, x_device, other_device, backend):
    """x on one device and another argument on the other: rejected with the argument's name."""
    with pytest.raises(ERR, match=name):
        _call(fn, backend, x_device, other_device, name)


@needs_cuda
@pytest.mark.parametrize("transpose", [False, True], ids=["spike_matmul", "spike_matmul_t"])
def test_mixed_devices_raw_ops(transpose):
    """The raw ops check the devices too (torch.ops.snnkern.* called directly)."""
    spikes = torch.zeros(2, 4, device="cuda")
    other = torch.zeros(2 if transpose else 4, 3)
    op = torch.ops.snnkern.spike_matmul_t if transpose else torch.ops.snnkern.spike_matmul
    with pytest.raises(RuntimeError, match=r"other is on cpu but spikes is on cuda"):
        op(spikes, other)
    case = make_case(B, T, N, F32, "cuda", requires_grad=False)
    a = snnkern._checks.prepare_lif_args(case.x, case.alpha, state=case.state)
    options = (*snnkern.ops.op_options(a), True, False, False)
    with pytest.raises(RuntimeError, match=r"alpha is on cpu but x is on cuda"):
        torch.ops.snnkern.lif_forward(a.x, a.alpha.cpu(), None, a.threshold, None, a.state, *options)


@pytest.mark.skipif(
    not torch.cuda.is_available() or not HAVE_C or snnkern.compiled_with_cuda(),
    reason="needs a CUDA device and a CPU-only build of snnkern",
)
def test_cuda_input_without_cuda_build():
    with pytest.raises(RuntimeError, match="CUDA"):
        snnkern.lif(torch.randn(B, T, N, device="cuda"), 0.9, backend="compiled")
