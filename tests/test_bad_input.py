"""Bad arguments raise ValueError/TypeError naming the argument, on every backend."""
import math

import pytest
import torch

import snnkern
from snnkern.surrogate import ATan, FastSigmoid, Sigmoid, Triangle

from helpers import BACKENDS, HAVE_C

ERR = (ValueError, TypeError)
B, T, N = 2, 5, 3


def _x(dtype=torch.float32, device="cpu"):
    return torch.randn(B, T, N, dtype=dtype, device=device)


def _lif(backend, x=None, alpha=0.9, **kw):
    return snnkern.lif(_x() if x is None else x, alpha, backend=backend, **kw)


def _leaky(backend, x=None, alpha=0.9, **kw):
    return snnkern.leaky(_x() if x is None else x, alpha, backend=backend, **kw)


_DEFAULT = object()


def _recurrent(backend, x=None, alpha=0.9, weight=_DEFAULT, **kw):
    weight = torch.zeros(N, N) if weight is _DEFAULT else weight
    return snnkern.recurrent_lif(_x() if x is None else x, weight, alpha, backend=backend, **kw)


FUNCS = [pytest.param(_lif, id="lif"), pytest.param(_leaky, id="leaky"),
         pytest.param(_recurrent, id="recurrent_lif")]
SPIKING = [pytest.param(_lif, id="lif"), pytest.param(_recurrent, id="recurrent_lif")]


# --------------------------------------------------------------------------------------------
# Shapes, dtypes, devices
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("shape", [(T, N), (N,), (1, B, T, N), ()], ids=["2d", "1d", "4d", "0d"])
def test_wrong_rank(fn, backend, shape):
    with pytest.raises(ERR, match=r"\bx\b.*3-D"):
        fn(backend, x=torch.zeros(shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
def test_x_not_a_tensor(fn, backend):
    with pytest.raises(TypeError, match=r"\bx\b"):
        fn(backend, x=[[[0.0]]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.uint8])
def test_integer_x(fn, backend, dtype):
    with pytest.raises(ERR, match=r"\bx\b.*floating"):
        fn(backend, x=torch.zeros(B, T, N, dtype=dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn"])
@pytest.mark.parametrize("shape", [(N + 1,), (2,), (N, 1), (1, N), (0,)], ids=["N+1", "2", "Nx1", "1xN", "empty"])
def test_mismatched_decay_shape(fn, backend, name, shape):
    bad = torch.full(shape, 0.5)
    kw = {"alpha": 0.9, "alpha_syn": 0.8, name: bad}
    with pytest.raises(ERR, match=name):
        fn(backend, alpha=kw["alpha"], alpha_syn=kw["alpha_syn"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn"])
def test_integer_decay_tensor(fn, backend, name):
    kw = {"alpha": 0.9, "alpha_syn": 0.8, name: torch.ones(N, dtype=torch.int64)}
    with pytest.raises(ERR, match=name):
        fn(backend, alpha=kw["alpha"], alpha_syn=kw["alpha_syn"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("shape", [(2, B, N), (4, B, N), (3, B + 1, N), (3, B, N + 1), (B, N), (3, N, B)])
def test_wrong_state_shape(fn, backend, shape):
    with pytest.raises(ERR, match="state"):
        fn(backend, state=torch.zeros(shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
def test_bad_state_type_and_dtype(fn, backend):
    with pytest.raises(ERR, match="state"):
        fn(backend, state=[[0.0]])
    with pytest.raises(ERR, match="state"):
        fn(backend, state=torch.zeros(3, B, N, dtype=torch.int64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn", "state"])
def test_mixed_devices_meta(fn, backend, name):
    """x on the CPU, one other tensor on the meta device: rejected with the argument's name."""
    kw = {"alpha": 0.9, "alpha_syn": 0.8}
    if name == "state":
        kw["state"] = torch.zeros(3, B, N, device="meta")
    else:
        kw[name] = torch.full((N,), 0.5, device="meta")
    alpha = kw.pop("alpha")
    with pytest.raises(ERR, match=name):
        fn(backend, alpha=alpha, **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "state"])
def test_mixed_devices_cuda(fn, backend, name):
    kw = {"alpha": 0.9}
    if name == "state":
        kw["state"] = torch.zeros(3, B, N, device="cuda")
    else:
        kw["alpha"] = torch.full((N,), 0.5, device="cuda")
    with pytest.raises(ERR, match=name):
        fn(backend, **kw)


@pytest.mark.skipif(not torch.cuda.is_available() or not HAVE_C or snnkern.compiled_with_cuda(),
                    reason="needs a CUDA device and a CPU-only build of snnkern")
def test_cuda_input_without_cuda_build():
    with pytest.raises(RuntimeError, match="CUDA"):
        snnkern.lif(_x(device="cuda"), 0.9, backend="compiled")


# --------------------------------------------------------------------------------------------
# recurrent_lif: the recurrent weight and the initial spikes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(N, N + 1), (N + 1, N), (N,), (N * N,), (1, N, N), (), (0, 0)],
                         ids=["Nx(N+1)", "(N+1)xN", "N", "NN", "1xNxN", "0d", "0x0"])
def test_recurrent_weight_wrong_shape(backend, shape):
    with pytest.raises(ERR, match="weight"):
        _recurrent(backend, weight=torch.zeros(shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64, torch.bool])
def test_recurrent_weight_wrong_dtype(backend, dtype):
    """x is float32: the weight must be float32 too (no silent cast of a parameter)."""
    with pytest.raises(ERR, match="weight"):
        _recurrent(backend, weight=torch.zeros(N, N, dtype=dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [None, [[0.0] * N] * N, 0.5], ids=["none", "list", "float"])
def test_recurrent_weight_not_a_tensor(backend, value):
    with pytest.raises(TypeError, match="weight"):
        _recurrent(backend, weight=value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["weight", "spikes"])
def test_recurrent_mixed_devices_meta(backend, name):
    """x on the CPU, the weight or the initial spikes on the meta device: rejected with the name."""
    kw = {"weight": torch.zeros(N, N, device="meta")} if name == "weight" else \
        {"spikes": torch.zeros(B, N, device="meta")}
    with pytest.raises(ERR, match=name):
        _recurrent(backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(B, N + 1), (B + 1, N), (N, B), (B * N,), (B, 1, N), (1, N), ()],
                         ids=["Bx(N+1)", "(B+1)xN", "NxB", "BN", "Bx1xN", "1xN", "0d"])
def test_recurrent_spikes_wrong_shape(backend, shape):
    with pytest.raises(ERR, match="spikes"):
        _recurrent(backend, spikes=torch.zeros(shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [[[0.0] * N] * B, 1.0, "0"], ids=["list", "float", "str"])
def test_recurrent_spikes_not_a_tensor(backend, value):
    with pytest.raises(TypeError, match="spikes"):
        _recurrent(backend, spikes=value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["weight", "spikes"])
def test_recurrent_mixed_devices_cuda(backend, name):
    kw = {"weight": torch.zeros(N, N, device="cuda")} if name == "weight" else \
        {"spikes": torch.zeros(B, N, device="cuda")}
    with pytest.raises(ERR, match=name):
        _recurrent(backend, **kw)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

BAD_DECAYS = [float("nan"), -0.1, 1.5, float("inf"), -float("inf")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("name", ["alpha", "alpha_syn"])
@pytest.mark.parametrize("value", BAD_DECAYS, ids=["nan", "neg", "gt1", "inf", "-inf"])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["float", "tensor"])
def test_bad_decay_values(fn, backend, name, value, as_tensor):
    bad = torch.tensor([0.5, value, 0.5]) if as_tensor else value
    kw = {"alpha": 0.9, "alpha_syn": 0.8, name: bad}
    with pytest.raises(ERR, match=name):
        fn(backend, alpha=kw["alpha"], alpha_syn=kw["alpha_syn"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("value", [True, "0.9", None, [0.9]], ids=["bool", "str", "none", "list"])
def test_bad_decay_types(fn, backend, value):
    with pytest.raises(TypeError, match="alpha"):
        fn(backend, alpha=value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), "1", None, True],
                         ids=["zero", "neg", "nan", "inf", "str", "none", "bool"])
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_threshold(fn, backend, value):
    with pytest.raises(ERR, match="threshold"):
        fn(backend, threshold=value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", ["delay", "Delayed", "", None, 0])
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_ordering(fn, backend, value):
    with pytest.raises(ERR, match="ordering"):
        fn(backend, ordering=value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", ["reset", "Zero", "", None, 1])
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_reset(fn, backend, value):
    with pytest.raises(ERR, match="reset"):
        fn(backend, reset=value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", ["sigmoid", Sigmoid, 5.0, None])
@pytest.mark.parametrize("fn", SPIKING)
def test_bad_surrogate_type(fn, backend, value):
    with pytest.raises(ERR, match="surrogate"):
        fn(backend, surrogate=value)


@pytest.mark.parametrize("cls, name", [(Sigmoid, "beta"), (FastSigmoid, "scale"), (Triangle, "gamma"),
                                       (ATan, "alpha")])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), "5"],
                         ids=["zero", "neg", "nan", "inf", "str"])
def test_bad_surrogate_param(cls, name, value):
    with pytest.raises(ERR, match=name):
        cls(value)


@pytest.mark.parametrize("fn", FUNCS)
def test_bad_backend(fn):
    with pytest.raises(ValueError, match="backend"):
        fn("cuda")


@pytest.mark.parametrize("tau, dt, name", [(0.0, 1e-3, "tau"), (-20e-3, 1e-3, "tau"), (float("nan"), 1e-3, "tau"),
                                           (float("inf"), 1e-3, "tau"), ("20", 1e-3, "tau"),
                                           (20e-3, 0.0, "dt"), (20e-3, -1e-3, "dt"), (20e-3, float("nan"), "dt")])
def test_bad_decay_helper(tau, dt, name):
    with pytest.raises(ERR, match=name):
        snnkern.decay(tau, dt)


def test_decay_helper_value():
    assert snnkern.decay(20e-3, 1e-3) == pytest.approx(math.exp(-1 / 20), rel=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_good_input_still_runs(backend):
    """The valid neighbours of the bad cases above are accepted (so the errors are not spurious)."""
    x = _x()
    r = snnkern.lif(x, torch.full((N,), 0.5), alpha_syn=1.0, threshold=0.5, ordering="update_first",
                    reset="subtract", surrogate=ATan(2.0), state=torch.zeros(3, B, N), backend=backend)
    assert r.spikes.shape == (B, T, N) and r.state.shape == (3, B, N)
    r = snnkern.leaky(x, 0.0, alpha_syn=torch.tensor(0.3), state=torch.zeros(3, B, N), backend=backend)
    assert r.membrane.shape == (B, T, N)
    r = snnkern.recurrent_lif(x, torch.zeros(N, N), 0.9, spikes=torch.ones(B, N), state=torch.zeros(3, B, N),
                              backend=backend)
    assert r.spikes.shape == (B, T, N) and r.state.shape == (3, B, N)
    # Integer or boolean initial spikes are accepted (converted to the dtype of x).
    r = snnkern.recurrent_lif(x, torch.zeros(N, N), 0.9, spikes=torch.ones(B, N, dtype=torch.bool), backend=backend)
    assert r.spikes.shape == (B, T, N)
