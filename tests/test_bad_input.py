"""Bad arguments raise ValueError/TypeError naming the argument, on every backend and wherever the
compiled ops run (the ``where`` fixture, tests/helpers.py): the reference backend, the CPU
kernels, the emulated CUDA lanes and CUDA, with the tensors on the device of ``where``. The
errors of mixed CPU/CUDA arguments are in test_cuda_only.py."""

import math

import pytest
import torch

import snnkern
from helpers import LOW_DTYPES, Where, at, everywhere_and_reference
from snnkern.surrogate import ATan, FastSigmoid, Sigmoid, Triangle

ERR = (ValueError, TypeError)
B, T, N = 2, 5, 3


def _x(where: Where, dtype=torch.float32):
    return torch.randn(B, T, N, dtype=dtype).to(where.device)


def _z(where: Where, *shape, dtype=torch.float32):
    return torch.zeros(shape, dtype=dtype, device=where.device)


def _full(where: Where, shape, value, dtype=torch.float32):
    return torch.full(shape, value, dtype=dtype, device=where.device)


def _lif(where, x=None, alpha=0.9, **kw):
    return snnkern.lif(_x(where) if x is None else x, alpha, backend=where.backend, **kw)


def _leaky(where, x=None, alpha=0.9, **kw):
    return snnkern.leaky(_x(where) if x is None else x, alpha, backend=where.backend, **kw)


_DEFAULT = object()


def _recurrent(where, x=None, alpha=0.9, weight=_DEFAULT, **kw):
    weight = _z(where, N, N) if weight is _DEFAULT else weight
    return snnkern.recurrent_lif(_x(where) if x is None else x, weight, alpha, backend=where.backend, **kw)


FUNCS = [pytest.param(_lif, id="lif"), pytest.param(_leaky, id="leaky"), pytest.param(_recurrent, id="recurrent_lif")]
SPIKING = [pytest.param(_lif, id="lif"), pytest.param(_recurrent, id="recurrent_lif")]


# --------------------------------------------------------------------------------------------
# Shapes, dtypes, devices
# --------------------------------------------------------------------------------------------


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("shape", [(T, N), (N,), ()], ids=["2d", "1d", "0d"])
def test_wrong_rank(fn, where, shape):
    with pytest.raises(ERR, match=r"\bx\b.*3-D"):
        fn(where, x=_z(where, *shape))


@everywhere_and_reference
def test_recurrent_needs_one_neuron_dimension(where):
    # The scans take any neuron shape; the recurrent weight is [neurons, neurons].
    with pytest.raises(ERR, match=r"\bx\b.*3-D.*recurrent"):
        _recurrent(where, x=_z(where, 1, B, T, N))


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
def test_x_not_a_tensor(fn, where):
    with pytest.raises(TypeError, match=r"\bx\b"):
        fn(where, x=[[[0.0]]])


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.uint8])
def test_integer_x(fn, where, dtype):
    with pytest.raises(ERR, match=r"\bx\b.*floating"):
        fn(where, x=_z(where, B, T, N, dtype=dtype))


@at("cpu")
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("dtype", LOW_DTYPES)
def test_half_precision_x_on_cpu_kernels(fn, where, dtype):
    """The CPU kernels are float32/float64: float16 and bfloat16 CPU input is refused with a clear
    error (outside the CUDA lane emulation, which runs it as CUDA does: test_half_precision.py)."""
    x = _x(where, dtype)
    weight = {"weight": _z(where, N, N, dtype=dtype)} if fn is _recurrent else {}
    with pytest.raises((RuntimeError, *ERR), match=r"float32 and float64"):
        fn(where, x=x, **weight)


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn"])
@pytest.mark.parametrize("shape", [(N + 1,), (2,), (N, 1), (1, N), (0,)], ids=["N+1", "2", "Nx1", "1xN", "empty"])
def test_mismatched_decay_shape(fn, where, name, shape):
    bad = _full(where, shape, 0.5)
    kw = {"alpha": 0.9, "alpha_syn": 0.8, name: bad}
    with pytest.raises(ERR, match=name):
        fn(where, alpha=kw["alpha"], alpha_syn=kw["alpha_syn"])


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn"])
def test_integer_decay_tensor(fn, where, name):
    kw = {"alpha": 0.9, "alpha_syn": 0.8, name: _full(where, (N,), 1, dtype=torch.int64)}
    with pytest.raises(ERR, match=name):
        fn(where, alpha=kw["alpha"], alpha_syn=kw["alpha_syn"])


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("shape", [(2, B, N), (4, B, N), (3, B + 1, N), (3, B, N + 1), (B, N), (3, N, B)])
def test_wrong_state_shape(fn, where, shape):
    with pytest.raises(ERR, match="state"):
        fn(where, state=_z(where, *shape))


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
def test_bad_state_type_and_dtype(fn, where):
    with pytest.raises(ERR, match="state"):
        fn(where, state=[[0.0]])
    with pytest.raises(ERR, match="state"):
        fn(where, state=_z(where, 3, B, N, dtype=torch.int64))


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn", "state"])
def test_mixed_devices_meta(fn, where, name):
    """x on the test's device, one other tensor on the meta device: rejected with the argument's name."""
    kw = {"alpha": 0.9, "alpha_syn": 0.8}
    if name == "state":
        kw["state"] = torch.zeros(3, B, N, device="meta")
    else:
        kw[name] = torch.full((N,), 0.5, device="meta")
    alpha = kw.pop("alpha")
    with pytest.raises(ERR, match=name):
        fn(where, alpha=alpha, **kw)


# --------------------------------------------------------------------------------------------
# recurrent_lif: the recurrent weight and the initial spikes
# --------------------------------------------------------------------------------------------


@everywhere_and_reference
@pytest.mark.parametrize(
    "shape",
    [(N, N + 1), (N + 1, N), (N,), (N * N,), (1, N, N), (), (0, 0)],
    ids=["Nx(N+1)", "(N+1)xN", "N", "NN", "1xNxN", "0d", "0x0"],
)
def test_recurrent_weight_wrong_shape(where, shape):
    with pytest.raises(ERR, match="weight"):
        _recurrent(where, weight=_z(where, *shape))


@everywhere_and_reference
@pytest.mark.parametrize(
    "x_dtype, dtype",
    [
        (torch.float32, torch.float64),
        (torch.float32, torch.float16),
        (torch.float32, torch.int64),
        (torch.float32, torch.bool),
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.bfloat16),
    ],
    ids=["f32-f64", "f32-f16", "f32-int64", "f32-bool", "bf16-f32", "f16-bf16"],
)
def test_recurrent_weight_wrong_dtype(where, x_dtype, dtype):
    """The weight must have the dtype of x (no silent cast of a parameter); for float16/bfloat16
    x too, although the decays and the state are float32 there."""
    with pytest.raises(ERR, match="weight"):
        _recurrent(where, x=_x(where, x_dtype), weight=_z(where, N, N, dtype=dtype))


@everywhere_and_reference
@pytest.mark.parametrize("value", [None, [[0.0] * N] * N, 0.5], ids=["none", "list", "float"])
def test_recurrent_weight_not_a_tensor(where, value):
    with pytest.raises(TypeError, match="weight"):
        _recurrent(where, weight=value)


@everywhere_and_reference
@pytest.mark.parametrize("name", ["weight", "spikes"])
def test_recurrent_mixed_devices_meta(where, name):
    """x on the test's device, the weight or the initial spikes on the meta device: rejected with the name."""
    kw = (
        {"weight": torch.zeros(N, N, device="meta")}
        if name == "weight"
        else {"spikes": torch.zeros(B, N, device="meta")}
    )
    with pytest.raises(ERR, match=name):
        _recurrent(where, **kw)


@everywhere_and_reference
@pytest.mark.parametrize(
    "shape",
    [(B, N + 1), (B + 1, N), (N, B), (B * N,), (B, 1, N), (1, N), ()],
    ids=["Bx(N+1)", "(B+1)xN", "NxB", "BN", "Bx1xN", "1xN", "0d"],
)
def test_recurrent_spikes_wrong_shape(where, shape):
    with pytest.raises(ERR, match="spikes"):
        _recurrent(where, spikes=_z(where, *shape))


@everywhere_and_reference
@pytest.mark.parametrize("value", [[[0.0] * N] * B, 1.0, "0"], ids=["list", "float", "str"])
def test_recurrent_spikes_not_a_tensor(where, value):
    with pytest.raises(TypeError, match="spikes"):
        _recurrent(where, spikes=value)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

BAD_DECAYS = [float("nan"), -0.1, 1.5, float("inf"), -float("inf")]


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn"])
@pytest.mark.parametrize("value", BAD_DECAYS, ids=["nan", "neg", "gt1", "inf", "-inf"])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["float", "tensor"])
def test_bad_decay_values(fn, where, name, value, as_tensor):
    bad = torch.tensor([0.5, value, 0.5], device=where.device) if as_tensor else value
    kw = {"alpha": 0.9, "alpha_syn": 0.8, name: bad}
    with pytest.raises(ERR, match=name):
        fn(where, alpha=kw["alpha"], alpha_syn=kw["alpha_syn"])


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("value", [True, "0.9", None, [0.9]], ids=["bool", "str", "none", "list"])
def test_bad_decay_types(fn, where, value):
    with pytest.raises(TypeError, match="alpha"):
        fn(where, alpha=value)


@everywhere_and_reference
@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), "1", None, True],
    ids=["nan", "inf", "str", "none", "bool"],
)
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_threshold(fn, where, value):
    with pytest.raises(ERR, match="threshold"):
        fn(where, threshold=value)


@everywhere_and_reference
@pytest.mark.parametrize("fn", SPIKING)
@pytest.mark.parametrize("value", [0.0, -1.0, "tensor"], ids=["zero", "neg", "tensor"])
@pytest.mark.parametrize(
    "options",
    [
        {"surrogate": snnkern.Triangle()},
        {"surrogate": snnkern.surrogate.Exponential()},
        {"spike": "multi", "reset": "subtract"},
    ],
    ids=["triangle", "exponential", "multi"],
)
def test_threshold_must_be_positive_where_it_scales(fn, where, value, options):
    # Any finite threshold is allowed (Norse uses negative potentials), except where it is a
    # scale: the surrogates whose width is relative to it, and spike counts.
    if value == "tensor":
        value = torch.tensor([0.5, -0.5, 1.0], device=where.device)
    with pytest.raises(ERR, match="threshold must be > 0"):
        fn(where, threshold=value, **options)


@everywhere_and_reference
@pytest.mark.parametrize("fn", SPIKING)
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_any_finite_threshold_otherwise(fn, where, value):
    fn(where, threshold=value)


@everywhere_and_reference
@pytest.mark.parametrize("value", ["delay", "Delayed", "", None, 0])
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_ordering(fn, where, value):
    with pytest.raises(ERR, match="ordering"):
        fn(where, ordering=value)


@everywhere_and_reference
@pytest.mark.parametrize("value", ["reset", "Zero", "", None, 1])
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_reset(fn, where, value):
    with pytest.raises(ERR, match="reset"):
        fn(where, reset=value)


@everywhere_and_reference
@pytest.mark.parametrize("value", ["sigmoid", Sigmoid, 5.0, None])
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_surrogate_type(fn, where, value):
    with pytest.raises(ERR, match="surrogate"):
        fn(where, surrogate=value)


@pytest.mark.parametrize("cls, name", [(Sigmoid, "beta"), (FastSigmoid, "scale"), (Triangle, "gamma"), (ATan, "alpha")])
@pytest.mark.parametrize(
    "value", [0.0, -1.0, float("nan"), float("inf"), "5"], ids=["zero", "neg", "nan", "inf", "str"]
)
def test_bad_surrogate_param(cls, name, value):
    with pytest.raises(ERR, match=name):
        cls(value)


@pytest.mark.parametrize("fn", [snnkern.lif, snnkern.leaky], ids=["lif", "leaky"])
def test_bad_backend(fn):
    with pytest.raises(ValueError, match="backend"):
        fn(torch.zeros(B, T, N), 0.9, backend="cuda")


def test_bad_backend_recurrent():
    with pytest.raises(ValueError, match="backend"):
        snnkern.recurrent_lif(torch.zeros(B, T, N), torch.zeros(N, N), 0.9, backend="cuda")


@pytest.mark.parametrize(
    "tau, dt, name",
    [
        (0.0, 1e-3, "tau"),
        (-20e-3, 1e-3, "tau"),
        (float("nan"), 1e-3, "tau"),
        (float("inf"), 1e-3, "tau"),
        ("20", 1e-3, "tau"),
        (20e-3, 0.0, "dt"),
        (20e-3, -1e-3, "dt"),
        (20e-3, float("nan"), "dt"),
    ],
)
def test_bad_decay_helper(tau, dt, name):
    with pytest.raises(ERR, match=name):
        snnkern.decay(tau, dt)


def test_decay_helper_value():
    assert snnkern.decay(20e-3, 1e-3) == pytest.approx(math.exp(-1 / 20), rel=1e-15)


@everywhere_and_reference
def test_good_input_still_runs(where):
    """The valid neighbours of the bad cases above are accepted (so the errors are not spurious)."""
    x = _x(where)
    r = snnkern.lif(
        x,
        _full(where, (N,), 0.5),
        alpha_syn=1.0,
        threshold=0.5,
        ordering="update_first",
        reset="subtract",
        surrogate=ATan(2.0),
        state=_z(where, 3, B, N),
        backend=where.backend,
    )
    assert r.spikes.shape == (B, T, N) and r.state.shape == (3, B, N)
    r = snnkern.leaky(
        x, 0.0, alpha_syn=torch.tensor(0.3, device=where.device), state=_z(where, 3, B, N), backend=where.backend
    )
    assert r.membrane.shape == (B, T, N)
    r = snnkern.recurrent_lif(
        x, _z(where, N, N), 0.9, spikes=_full(where, (B, N), 1.0), state=_z(where, 3, B, N), backend=where.backend
    )
    assert r.spikes.shape == (B, T, N) and r.state.shape == (3, B, N)
    # Integer or boolean initial spikes are accepted (converted to the dtype of x).
    r = snnkern.recurrent_lif(
        x, _z(where, N, N), 0.9, spikes=_full(where, (B, N), True, dtype=torch.bool), backend=where.backend
    )
    assert r.spikes.shape == (B, T, N)


# --------------------------------------------------------------------------------------------
# The drop-in options: neuron shapes, layouts, resets, spike counts
# --------------------------------------------------------------------------------------------


@everywhere_and_reference
@pytest.mark.parametrize("fn", SPIKING)
@pytest.mark.parametrize("name", ["v_reset", "v_leak"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "0", None], ids=["nan", "inf", "str", "none"])
def test_bad_potential(fn, where, name, value):
    with pytest.raises(ERR, match=name):
        fn(where, **{name: value})


@everywhere_and_reference
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("value", [None, 1, "yes"])
def test_bad_batch_first(fn, where, value):
    with pytest.raises(ERR, match="batch_first"):
        fn(where, batch_first=value)


@everywhere_and_reference
@pytest.mark.parametrize("fn", SPIKING)
@pytest.mark.parametrize("value", ["count", "", None, True])
def test_bad_spike(fn, where, value):
    with pytest.raises(ERR, match="spike"):
        fn(where, spike=value)


@everywhere_and_reference
@pytest.mark.parametrize("fn", SPIKING)
def test_spike_counts_refuse_the_zero_reset(fn, where):
    with pytest.raises(ERR, match=r"spike='multi'.*reset"):
        fn(where, spike="multi", reset="zero")


@everywhere_and_reference
@pytest.mark.parametrize("fn", SPIKING)
def test_spike_counts_refuse_a_learnable_threshold(fn, where):
    threshold = torch.ones(N, device=where.device, requires_grad=True)
    with pytest.raises(ERR, match="learnable threshold"):
        fn(where, spike="multi", reset="subtract", threshold=threshold)


@everywhere_and_reference
@pytest.mark.parametrize("name", ["alpha", "alpha_syn", "threshold"])
@pytest.mark.parametrize("shape", [(3,), (1, 2, 4, 5), (3, 1, 1)], ids=["short", "too-many-dims", "mismatch"])
def test_parameter_not_broadcastable_to_the_neuron_shape(where, name, shape):
    x = torch.randn(B, T, 2, 4, 5, device=where.device)
    value = torch.full(shape, 0.5, device=where.device)
    kwargs = {"alpha": 0.9, name: value}
    with pytest.raises(
        ERR, match=rf"{name} must be a scalar or a tensor broadcastable to the neuron shape \[2, 4, 5\]"
    ):
        snnkern.lif(x, kwargs.pop("alpha"), backend=where.backend, **kwargs)


@everywhere_and_reference
@pytest.mark.parametrize("batch_first", [True, False])
def test_state_of_another_neuron_shape(where, batch_first):
    x = torch.randn(B, T, 2, 3, device=where.device)
    if not batch_first:
        x = x.transpose(0, 1).contiguous()
    with pytest.raises(ERR, match=r"state must have shape \[3, batch, \*neurons\] = \[3, 2, 2, 3\]"):
        snnkern.lif(
            x, 0.9, state=torch.zeros(3, B, 6, device=where.device), batch_first=batch_first, backend=where.backend
        )
