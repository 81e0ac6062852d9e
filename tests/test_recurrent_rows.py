"""The two paths of snnkern.recurrent_lif: the row tasks (the whole time loop of a batch row in
one task on the CPU, one thread block on CUDA; csrc/recurrent_rows.h) and the per-step path
(one task per time step with the recurrent product between them), which serves the shapes the
row tasks do not take (CUDA and its emulation: more than 1024 neurons) and which
``snnkern.testing.recurrent_per_step()`` forces anywhere.

test_recurrent.py checks the default path (the row tasks) against the reference on every
option. Here: the per-step path against the reference, the two paths against each other on odd
shapes, the emulated row block's two weight layouts (in shared memory up to 48 KiB, read from
global memory above) and its fallback, and gradcheck of both paths.
"""

import contextlib
import math

import pytest
import torch

import snnkern
from helpers import (
    DTYPES,
    LOW_DTYPES,
    ORDERINGS,
    RESETS,
    TOL,
    assert_same,
    assert_same_scaled,
    at,
    clone_case,
    clone_leaf,
    everywhere,
    make_recurrent_case,
    run_recurrent,
    spike_rate,
)
from snnkern.surrogate import FastSigmoid, Sigmoid
from snnkern.testing import recurrent_per_step, recurrent_per_step_active

PATHS = ["rows", "per_step"]


def _path(name):
    return recurrent_per_step() if name == "per_step" else contextlib.nullcontext()


def _run(case, weight, spikes0, path, **opts):
    with _path(path):
        return run_recurrent(clone_case(case), clone_leaf(weight), clone_leaf(spikes0), "compiled", **opts)


def _assert_close(got, want, dtype):
    if dtype == torch.float64:
        assert_same(got, want, TOL[dtype])
    else:
        assert_same_scaled(got, want, TOL[dtype])


def _rows_on_thread_counts(case, weight, spikes0, **opts):
    """The row tasks' results on 1, 2 and 3 CPU threads."""
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(_run(case, weight, spikes0, "rows", **opts))
    finally:
        torch.set_num_threads(before)
    return results


def test_switch_restores_and_nests():
    assert not recurrent_per_step_active()
    with recurrent_per_step():
        assert recurrent_per_step_active()
        with recurrent_per_step():
            assert recurrent_per_step_active()
        assert recurrent_per_step_active()
    assert not recurrent_per_step_active()
    with pytest.raises(KeyError), recurrent_per_step():
        raise KeyError("inside")
    assert not recurrent_per_step_active()


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("syn", [False, True], ids=["nosyn", "syn"])
def test_per_step_path_matches_reference(ordering, reset, syn, dtype, where):
    case, weight, spikes0 = make_recurrent_case(3, 9, 6, dtype, where.device, syn=syn, seed=11)
    opts = dict(ordering=ordering, reset=reset, surrogate=Sigmoid(4.0), return_membrane=True)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    got = _run(case, weight, spikes0, "per_step", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    _assert_close(got, want, dtype)


# Odd shapes: one neuron, one step, one row, a partial SIMD vector, several CPU row blocks (16
# rows each), and N straddling the emulated shared-memory limit for float32 (100: weights in
# "shared memory", 120: read from global memory).
SHAPES = [(1, 1, 1), (1, 7, 1), (2, 1, 5), (1, 9, 9), (3, 6, 17), (37, 4, 12), (2, 5, 100), (2, 4, 120)]


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ordering", ["delayed", "update_first"])
def test_rows_equal_per_step_and_reference(shape, ordering, dtype, where):
    b, t, n = shape
    case, weight, spikes0 = make_recurrent_case(b, t, n, dtype, where.device, syn=True, seed=3)
    opts = dict(ordering=ordering, reset="subtract", surrogate=FastSigmoid(20.0), return_membrane=True)
    rows = _run(case, weight, spikes0, "rows", **opts)
    per_step = _run(case, weight, spikes0, "per_step", **opts)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    assert torch.equal(rows["spikes"], per_step["spikes"])
    _assert_close(rows, per_step, dtype)
    _assert_close(rows, want, dtype)


@at("emulated")
@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_more_neurons_than_a_block_runs_per_step(dtype, where):
    """1030 neurons exceed the 1024 threads of a row block: the emulated CUDA launcher declines
    the row task and the op runs per step, with the same result as the reference."""
    case, weight, spikes0 = make_recurrent_case(1, 3, 1030, dtype, where.device, syn=False, seed=5, scale=0.05)
    opts = dict(ordering="spike_first", reset="zero", surrogate=FastSigmoid(10.0))
    got = _run(case, weight, spikes0, "rows", **opts)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    assert 0.0 < spike_rate(want["spikes"]) < 1.0
    _assert_close(got, want, dtype)


@at("emulated", "cuda")
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("n", [16, 200])
def test_low_precision_rows_near_per_step(low, n, where):
    """float16/bfloat16: the row block sums the recurrent input in float32 (the per-step path
    rounds the product to the storage type first), so the two agree to the storage precision."""
    case, weight, spikes0 = make_recurrent_case(2, 6, n, torch.float32, where.device, syn=True, seed=9, scale=0.3)
    low_case = clone_case(case, dtype=low)
    low_weight, low_spikes0 = clone_leaf(weight, low), clone_leaf(spikes0, low)
    opts = dict(ordering="spike_first", reset="zero", surrogate=Sigmoid(2.0))
    with torch.no_grad():
        outs = []
        for path in PATHS:
            with _path(path):
                r = snnkern.recurrent_lif(
                    low_case.x, low_weight, low_case.alpha, alpha_syn=low_case.alpha_syn, spikes=low_spikes0, **opts
                )
            outs.append(r)
    mismatch = (outs[0].spikes != outs[1].spikes).float().mean().item()
    assert mismatch < 0.02, f"{mismatch:.1%} of the spikes differ between the paths"
    torch.testing.assert_close(outs[0].state, outs[1].state, rtol=0.05, atol=0.05)


@everywhere
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_gradcheck_both_paths(path, ordering, where):
    """float64 gradcheck of x, weight, decays, state and initial spikes where no spike can occur (threshold far
    above the drive), so the outputs are smooth and the analytic gradient is the true one."""
    case, weight, spikes0 = make_recurrent_case(2, 4, 3, torch.float64, where.device, syn=True, seed=2, scale=0.3)
    leaves = [case.x, weight, case.alpha, case.alpha_syn, case.state, spikes0]

    def f(x, w, alpha, alpha_syn, state, spikes):
        r = snnkern.recurrent_lif(
            x,
            w,
            alpha,
            alpha_syn=alpha_syn,
            state=state,
            spikes=spikes,
            threshold=50.0,
            ordering=ordering,
            return_membrane=True,
        )
        return r.membrane, r.state

    with _path(path):
        assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-8, rtol=1e-6)


@at("cpu")
def test_rows_bitwise_same_on_any_thread_count(where):
    """The CPU row tasks sum every output in one order whatever the threads: bitwise equal."""
    case, weight, spikes0 = make_recurrent_case(37, 12, 20, torch.float32, "cpu", syn=True, seed=4)
    opts = dict(ordering="spike_first", reset="zero", surrogate=FastSigmoid(20.0), return_membrane=True)
    results = _rows_on_thread_counts(case, weight, spikes0, **opts)
    for other in results[1:]:
        for key, value in results[0].items():
            assert torch.equal(value, other[key]), key


@at("cpu")
@pytest.mark.parametrize(
    "shape",
    [(149, 5, 13), (1040, 3, 5), (1024, 3, 260)],
    ids=["a part per block", "blocks sharing parts", "formed after"],
)
def test_rows_weight_gradient_over_blocks_and_parts(shape, where):
    """The CPU's backward row task forms the weight gradient itself, in parts of its blocks of 16
    rows (at most 64 parts: 65 blocks share them), every 64 rows of dL/dx; where 64 partial sums
    [N, N] would pass 32 MB (N = 260 in float64), the blocks run without them and the gradient is
    formed after. Each equals the per-step path's (formed after, over all rows) and the
    reference, and is bitwise the same on any thread count."""
    b, t, n = shape
    case, weight, spikes0 = make_recurrent_case(b, t, n, torch.float64, "cpu", syn=True, seed=9)
    opts = dict(ordering="spike_first", reset="zero", surrogate=FastSigmoid(20.0))
    rows = _run(case, weight, spikes0, "rows", **opts)
    per_step = _run(case, weight, spikes0, "per_step", **opts)
    want = run_recurrent(case, weight, spikes0, "reference", **opts)
    assert 0.05 < spike_rate(rows["spikes"]) < 0.95
    assert {"grad_weight", "grad_spikes0"} <= rows.keys()
    assert_same(rows, per_step, TOL[torch.float64])
    assert_same(rows, want, TOL[torch.float64])
    results = [r["grad_weight"] for r in _rows_on_thread_counts(case, weight, spikes0, **opts)]
    assert all(torch.equal(results[0], other) for other in results[1:])


@at("cpu", "emulated", "cuda")
def test_rows_silent_neurons_non_finite_weights_add_nothing(where):
    """The row tasks gather the weights of the neurons that fired: the inf and NaN weights of a
    neuron that never fires (its input far below threshold) add nothing to the forward, as if
    they were zero (a dense product would give NaN for 0 * inf)."""
    case, weight, _ = make_recurrent_case(2, 6, 5, torch.float64, where.device, syn=False, seed=8, requires_grad=False)
    x = case.x.clone()
    x[:, :, 4] = -100.0  # neuron 4 never fires
    finite = weight.clone()
    finite[:, 4] = 0.0
    bad = weight.clone()
    bad[0, 4], bad[1, 4] = math.inf, math.nan
    opts = dict(ordering="spike_first", reset="zero")
    want = snnkern.recurrent_lif(x, finite, case.alpha, **opts, return_membrane=True)
    got = snnkern.recurrent_lif(x, bad, case.alpha, **opts, return_membrane=True)
    assert want.spikes[..., 4].sum() == 0 and 0 < spike_rate(want.spikes) < 1
    assert torch.equal(got.spikes, want.spikes) and torch.equal(got.membrane, want.membrane)
