"""Spike events: ``torch.ops.snnkern.spike_events`` (the nonzeros of a binary spikes [M, K] as
bits, int32 [M, ceil(K / 32) + 1]) and the ``events`` argument of the spike products
``torch.ops.snnkern.spike_matmul`` / ``spike_matmul_t``; on the CPU kernels, the emulated CUDA
build and CUDA (the ``where`` fixture, tests/helpers.py). How :func:`snnkern.spike_linear` uses
them is tested in tests/test_spike_linear.py.

The format (csrc/cpu/spike_matmul.h, spike_events): with W = ceil(K / 32), bit j of word w of
row m is set iff spikes[m, 32 w + j] != 0, the bits at columns >= K are 0 and word W (the flag)
is 1, where every entry of the row is 0 or 1 (-0.0 counts as 0); a row with any other value (2,
0.5, -1, NaN, inf) has all its W + 1 words 0. The CPU products read the nonzeros of a flagged row
from its bits instead of scanning it, and must give the result without events bit for bit; the
CUDA build (and its emulation) runs the dense product and only validates events.
"""

import pytest
import torch
import torch.nn.functional as F

from helpers import (
    DTYPES,
    LOW_DTYPES,
    NONCONTIGUOUS_LAYOUTS,
    SPIKE_PRODUCTS,
    SPIKE_SHAPES,
    assert_bitwise,
    assert_opcheck,
    at,
    everywhere,
    make_dense,
    make_spikes,
    needs_cuda,
    noncontiguous,
    on_lanes,
    run_spike_product,
)
from snnkern import reference_ops

NAN, INF = float("nan"), float("inf")

K_VALUES = [0, 1, 7, 31, 32, 33, 63, 64, 65, 100, 700]
M_VALUES = [0, 1, 5, 130]
EVENT_DENSITIES = [0.0, 0.02, 0.5, 1.0]
# Values that make a row non-binary.
BAD_VALUES = [2.0, 0.5, -1.0, NAN, INF]
BAD_IDS = ["2", "0.5", "-1", "nan", "inf"]

PRODUCT_DENSITIES = [0.0, 0.02, 0.3, 1.0]


def event_words(k: int) -> int:
    return (k + 31) // 32


def spike_events(spikes):
    return torch.ops.snnkern.spike_events(spikes)


def spoil_rows(spikes: torch.Tensor, seed: int) -> torch.Tensor:
    """A copy of ``spikes`` in which every third row (1, 4, 7, ...) holds one non-binary value
    (cycling through BAD_VALUES) at the first column, the last, column 31, column 32 or a random
    one (cycling, where the row is that long)."""
    spikes = spikes.clone()
    m, k = spikes.shape
    if k == 0:
        return spikes
    g = torch.Generator().manual_seed(seed)
    for i, r in enumerate(range(1, m, 3)):
        positions = [0, k - 1, 31, 32, int(torch.randint(0, k, (1,), generator=g))]
        positions = [p for p in positions if p < k]
        spikes[r, positions[i % len(positions)]] = BAD_VALUES[i % len(BAD_VALUES)]
    return spikes


def binary_rows(spikes: torch.Tensor) -> torch.Tensor:
    """[M] bool: the rows whose entries are all 0 or 1."""
    return ((spikes == 0) | (spikes == 1)).all(dim=1)


def unpack_bits(events: torch.Tensor) -> torch.Tensor:
    """The W words of each row of ``events`` [M, W + 1] as bits, bool [M, 32 W]."""
    m, width = events.shape
    words = events[:, : width - 1].to(torch.int64) & 0xFFFFFFFF
    return ((words[:, :, None] >> torch.arange(32, device=events.device)) & 1).bool().reshape(m, 32 * (width - 1))


def assert_events_format(events: torch.Tensor, spikes: torch.Tensor) -> None:
    """``events`` is the spike events of ``spikes`` per the format, checked bit by bit (not
    through the reference)."""
    m, k = spikes.shape
    w = event_words(k)
    assert events.dtype == torch.int32
    assert events.shape == (m, w + 1)
    assert events.device == spikes.device
    binary = binary_rows(spikes)
    assert torch.equal(events[:, w], binary.to(torch.int32)), "flags differ"
    bits = unpack_bits(events)
    want = F.pad((spikes != 0) & binary[:, None], (0, 32 * w - k))
    assert torch.equal(bits, want), f"bits differ in rows {torch.nonzero((bits != want).any(1)).flatten().tolist()}"


# --------------------------------------------------------------------------------------------
# spike_events: the format
# --------------------------------------------------------------------------------------------


def _check_events_over_shapes(density, dtype, device, seed0=0):
    for m in M_VALUES:
        for k in K_VALUES:
            seed = seed0 + 1000 * m + k
            spikes = spoil_rows(make_spikes(m, k, density, dtype, seed=seed, negative_zeros=True), seed)
            spikes = spikes.to(device)
            got = spike_events(spikes)
            label = f"M={m} K={k} density={density} {dtype}"
            assert got.device.type == spikes.device.type, label
            want = reference_ops.spike_events(spikes)
            assert torch.equal(got, want), f"{label}: differs from the reference in rows " + str(
                torch.nonzero((got != want).any(1)).flatten().tolist()
            )
            assert_events_format(got, spikes)
            if m >= 5 and k >= 1:  # both kinds of row are there
                binary = binary_rows(spikes)
                assert binary.any() and not binary.all(), label
            if density < 1.0 and m * k >= 100:  # and -0.0 in binary rows
                assert ((spikes == 0) & spikes.signbit() & binary_rows(spikes)[:, None]).any(), label


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", EVENT_DENSITIES)
def test_spike_events_matches_reference(density, dtype, where):
    """Over M x K (K on and off the word width and the SIMD width), binary rows (with -0.0 in
    them) and rows spoiled by one non-binary value: equal to the reference, and to the format
    decoded bit by bit."""
    _check_events_over_shapes(density, dtype, where.device)


@on_lanes
@pytest.mark.parametrize("low", LOW_DTYPES)
@pytest.mark.parametrize("density", [0.02, 0.5, 1.0])
def test_spike_events_half_precision(density, low, where):
    """float16 and bfloat16 (the CUDA build and its emulation): the same format."""
    _check_events_over_shapes(density, low, where.device, seed0=7)


@at("cpu")
@pytest.mark.parametrize("low", LOW_DTYPES)
def test_spike_events_cpu_refuses_half(low, where):
    with pytest.raises(RuntimeError, match=r"snnkern\.spike_events\b.*float32 and float64"):
        spike_events(torch.zeros(3, 40, dtype=low))


@everywhere
@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_events_by_hand(dtype, where):
    """K = 70 (W = 3): ones at columns 0, 31, 32 and 69 give the words 1 | 1 << 31 (bit 31 makes
    the int32 negative), 1 and 1 << 5, and the flag 1."""
    rows = torch.zeros(7, 70, dtype=dtype)
    rows[0, [0, 31, 32, 69]] = 1.0
    rows[1] = 1.0  # all ones: words of 32 bits are -1, the last 6 bits of the third
    # rows[2]: all zeros
    rows[3] = -0.0  # -0.0 is zero
    rows[3, 5] = 1.0
    rows[4, [0, 31, 32, 69]] = 1.0
    rows[4, 40] = 2.0  # one count: no bits at all
    rows[5, 69] = NAN
    rows[6, 0] = -INF
    got = spike_events(rows.to(where.device))
    want = torch.tensor(
        [
            [-2147483647, 1, 1 << 5, 1],
            [-1, -1, 0b111111, 1],
            [0, 0, 0, 1],
            [1 << 5, 0, 0, 1],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ],
        dtype=torch.int32,
    )
    assert got.dtype == torch.int32 and got.device.type == where.device
    assert got.cpu().tolist() == want.tolist()


@everywhere
@pytest.mark.parametrize("bad", BAD_VALUES + [-0.5, 1.5, -INF], ids=[*BAD_IDS, "-0.5", "1.5", "-inf"])
def test_spike_events_one_bad_entry(bad, where):
    """A single non-binary value, at the first column, column 31, 32, 63, 64 or the last, in a
    row of zeros or of ones: that row's words are all 0; the binary rows beside it keep theirs."""
    for k in (1, 31, 32, 33, 64, 65, 100, 700):
        for pos in sorted({0, 31, 32, 63, 64, k - 1}):
            if pos >= k:
                continue
            spikes = make_spikes(4, k, 0.3, torch.float64, seed=k + pos, device=where.device, negative_zeros=True)
            spikes[2] = 1.0
            spikes[1, pos] = bad
            spikes[3] = 1.0
            spikes[3, pos] = bad
            got = spike_events(spikes)
            w = event_words(k)
            assert torch.equal(got[[1, 3]], torch.zeros(2, w + 1, dtype=torch.int32, device=where.device)), (k, pos)
            assert got[[0, 2], w].tolist() == [1, 1], (k, pos)
            assert_events_format(got, spikes)
            assert torch.equal(got, reference_ops.spike_events(spikes)), (k, pos)


@everywhere
@pytest.mark.parametrize("layout", NONCONTIGUOUS_LAYOUTS)
def test_spike_events_noncontiguous(layout, where):
    """A non-contiguous spikes gives the events of its values (not of the memory around them)."""
    spikes = spoil_rows(make_spikes(9, 70, 0.3, torch.float32, seed=3, device=where.device, negative_zeros=True), 3)
    view = noncontiguous(spikes, layout)
    got = spike_events(view)
    assert_events_format(got, view.contiguous())
    assert torch.equal(got, spike_events(view.contiguous()))


# --------------------------------------------------------------------------------------------
# The products with events: bit for bit the products without
# --------------------------------------------------------------------------------------------


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["binary", "mixed"])
def test_products_with_events_bitwise(kind, dtype, transpose, where):
    """events = spike_events(spikes): the same result bit for bit as without events, over the
    shapes of test_spike_linear.py and densities 0 to 1; binary spikes (with -0.0), or rows of
    counts and signed values between binary ones (those are scanned either way)."""
    for m, k, n in SPIKE_SHAPES:
        for density in PRODUCT_DENSITIES:
            seed = m * 1000 + k + int(density * 100)
            spikes = make_spikes(m, k, density, dtype, seed=seed, kind=kind, device=where.device, negative_zeros=True)
            other = make_dense(m if transpose else k, n, dtype=dtype, seed=n, device=where.device)
            events = spike_events(spikes)
            if kind == "mixed" and m >= 4 and density >= 0.3:
                flags = events[:, -1]
                assert flags.any() and not flags.all(), "both kinds of row"
            got = run_spike_product(transpose, spikes, other, events)
            want = run_spike_product(transpose, spikes, other)
            assert_bitwise(got, want, f"{m}x{k}x{n} density {density}")


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_products_with_events_nan_rows(dtype, transpose, where):
    """Rows spoiled by NaN, inf, 2, 0.5 or -1 (events all 0 there) between binary rows: the
    result with events is the result without, bit for bit (NaN where NaN)."""
    m, k, n = 16, 70, 37
    spikes = spoil_rows(make_spikes(m, k, 0.3, dtype, seed=8, device=where.device, negative_zeros=True), 8)
    assert spikes.isnan().any() and spikes.isinf().any()
    other = make_dense(m if transpose else k, n, dtype=dtype, seed=9, device=where.device)
    got = run_spike_product(transpose, spikes, other, spike_events(spikes))
    want = run_spike_product(transpose, spikes, other)
    assert got.isnan().any()
    assert_bitwise(got, want)


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_products_with_events_exact_on_integers(dtype, transpose, where):
    """With spike counts and binary rows and integer ``other`` every partial sum is exact: the
    result with events is the dense product bit for bit (a dropped or doubled term shows)."""
    for m, k, n in [(7, 13, 100), (40, 700, 130), (3, 33, 513), (50, 64, 9)]:
        spikes = make_spikes(m, k, 0.3, dtype, seed=11, kind="mixed_counts", device=where.device, negative_zeros=True)
        g = torch.Generator().manual_seed(12)
        other = torch.randint(-8, 9, (m if transpose else k, n), generator=g).to(dtype).to(where.device)
        got = run_spike_product(transpose, spikes, other, spike_events(spikes))
        want = (spikes.t() if transpose else spikes).double() @ other.double()
        assert torch.equal(got.double(), want), (m, k, n)


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("layout", NONCONTIGUOUS_LAYOUTS)
def test_products_with_events_noncontiguous(layout, transpose, where):
    """Non-contiguous spikes, other and events: the same bits as contiguous ones without events."""
    m, k, n = 11, 70, 37
    spikes = make_spikes(m, k, 0.3, torch.float64, seed=5, kind="mixed", device=where.device, negative_zeros=True)
    other = make_dense(m if transpose else k, n, seed=6, device=where.device)
    events = spike_events(spikes)
    s, o = noncontiguous(spikes, layout), noncontiguous(other, layout)
    if layout == "expanded":  # every row the first: its events, expanded too
        e = spike_events(s.contiguous())[:1].expand(m, -1)
    else:
        e = events.t().contiguous().t()
    assert not e.is_contiguous()
    assert torch.equal(e, spike_events(s))
    got = run_spike_product(transpose, s, o, e)
    want = run_spike_product(transpose, s.contiguous(), o.contiguous())
    assert_bitwise(got, want)


@at("cpu")
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("bad", [INF, NAN], ids=["inf", "nan"])
def test_products_with_events_zeros_skip_nonfinite(bad, transpose, where):
    """The CPU kernels: zeros contribute nothing, read from events too. A non-finite row of
    ``other`` selected only by zeros (and -0.0) of binary rows leaves their outputs finite; the
    result is the one without events bit for bit."""
    if transpose:
        m, k, n = 20, 37, 70
        spikes = make_spikes(m, k, 0.3, torch.float64, seed=9, negative_zeros=True)
        other = make_dense(m, n, seed=10)
        spikes[7] = 0.0
        spikes[7, [0, 36]] = 1.0
        spikes[7, 8] = -0.0
        other[7] = bad
        hit = torch.zeros(k, dtype=torch.bool)
        hit[[0, 36]] = True
    else:
        m, k, n = 12, 70, 37
        spikes = make_spikes(m, k, 0.3, torch.float64, seed=9, negative_zeros=True)
        other = make_dense(k, n, seed=10)
        spikes[:, 33] = 0.0
        spikes[1::3, 33] = -0.0
        spikes[4, 33] = 1.0
        other[33] = bad
        hit = torch.zeros(m, dtype=torch.bool)
        hit[4] = True
    events = spike_events(spikes)
    assert events[:, -1].all()
    got = run_spike_product(transpose, spikes, other, events)
    assert not torch.isfinite(got[hit]).any()
    assert torch.isfinite(got[~hit]).all()
    assert_bitwise(got, run_spike_product(transpose, spikes, other))


@at("cpu")  # at::parallel_for of the CPU kernels
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(600, 300, 100), (2000, 13, 7), (64, 130, 513)], ids=lambda s: "x".join(map(str, s)))
def test_products_with_events_threads(shape, dtype, transpose, where):
    """1, 2 and 3 threads, with events: the result without events (1 thread) bit for bit; and
    spike_events itself the same on any number of threads."""
    m, k, n = shape
    spikes = make_spikes(m, k, 0.1, dtype, seed=21, kind="mixed", negative_zeros=True)
    other = make_dense(m if transpose else k, n, dtype=dtype, seed=22)
    original = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = run_spike_product(transpose, spikes, other)
        want_events = reference_ops.spike_events(spikes)
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert torch.get_num_threads() == threads
            events = spike_events(spikes)
            assert torch.equal(events, want_events), f"{threads} threads: events differ"
            assert_bitwise(run_spike_product(transpose, spikes, other, events), want, f"{threads} threads")
    finally:
        torch.set_num_threads(original)
    assert torch.get_num_threads() == original


F32, F64 = torch.float32, torch.float64


@at("cpu")  # the CPU kernel's chunks of rows (spike_matmul_t_part in csrc/cpu/spike_matmul.h)
@pytest.mark.parametrize(
    "shape, density, dtype",
    [
        pytest.param((20000, 700, 128), 0.3, F32, id="by-nonzeros-f32"),  # chunks end at their nonzeros (~80 rows)
        pytest.param((9000, 13, 130), 0.5, F32, id="by-rows-f32"),  # chunks end at their rows of `other`
        pytest.param((9000, 13, 130), 0.5, F64, id="by-rows-f64"),
        pytest.param((5000, 1, 1), 1.0, F64, id="one-column-f64"),  # all of a chunk's nonzeros in one column
        pytest.param((3000, 33, 1), 0.5, F32, id="tail-bit-f32"),  # a last word of one bit
        pytest.param((3000, 33, 1), 0.5, F64, id="tail-bit-f64"),
    ],
)
def test_spike_matmul_t_with_events_over_many_chunks(shape, density, dtype, where):
    """spike_matmul_t over many chunks per thread, the nonzeros of binary rows read from events
    (rows of counts between them scanned): exact integer sums, the dense product bit for bit, and
    the result without events."""
    m, k, n = shape
    spikes = make_spikes(m, k, density, dtype, seed=13, kind="mixed_counts", negative_zeros=False)
    g = torch.Generator().manual_seed(14)
    other = torch.randint(-8, 9, (m, n), generator=g).to(dtype)
    events = spike_events(spikes)
    if k > 1:
        assert 0 < int(events[:, -1].sum()) < m
    got = run_spike_product(True, spikes, other, events)
    assert torch.equal(got.double(), spikes.t().double() @ other.double())
    assert_bitwise(got, run_spike_product(True, spikes, other))


# --------------------------------------------------------------------------------------------
# Bad events, bad spikes
# --------------------------------------------------------------------------------------------


def _widen(e: torch.Tensor, by: int) -> torch.Tensor:
    return torch.cat([e, torch.zeros(e.shape[0], by, dtype=e.dtype, device=e.device)], dim=1)


# Each: events (right for spikes) -> a wrong one.
BAD_EVENTS = {
    "int64": lambda e: e.to(torch.int64),
    "int16": lambda e: e.to(torch.int16),
    "float32": lambda e: e.to(torch.float32),
    "bool": lambda e: e.bool(),
    "1d": lambda e: e.reshape(-1),
    "3d": lambda e: e.unsqueeze(0),
    "0d": lambda e: torch.tensor(1, dtype=torch.int32, device=e.device),
    "rows_plus_1": lambda e: torch.cat([e, e.new_zeros(1, e.shape[1])]),
    "rows_minus_1": lambda e: e[:-1] if len(e) else e.new_zeros(1, e.shape[1]),
    "width_W": lambda e: e[:, :-1],
    "width_W+2": lambda e: _widen(e, 1),
    "width_W+33": lambda e: _widen(e, 32),
    "transposed": lambda e: e.t(),
}
BAD_EVENT_SHAPES = [(5, 70, 3), (5, 64, 3), (0, 70, 3), (5, 70, 0), (5, 0, 3), (1, 1, 1)]


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("case", list(BAD_EVENTS))
def test_products_bad_events(case, transpose, where):
    """events of another dtype or shape than spike_events(spikes): a RuntimeError naming events,
    also where the result is empty (M, N or K zero) and on the CUDA build, which does not read
    them."""
    name = "spike_matmul_t" if transpose else "spike_matmul"
    for m, k, n in BAD_EVENT_SHAPES:
        spikes = make_spikes(m, k, 0.3, torch.float32, seed=1, device=where.device, negative_zeros=True)
        other = make_dense(m if transpose else k, n, dtype=torch.float32, device=where.device)
        events = spike_events(spikes)
        bad = BAD_EVENTS[case](events)
        if case == "transposed" and bad.shape == events.shape:
            continue  # square: a transposed view of the right shape is not wrong
        assert bad.dtype != torch.int32 or bad.shape != events.shape, (case, m, k, n)
        with pytest.raises(RuntimeError, match=rf"snnkern\.{name}\b.*events"):
            run_spike_product(transpose, spikes, other, bad)


@needs_cuda
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("events_on", ["cpu", "cuda"])
def test_products_events_on_another_device(events_on, transpose):
    spikes_on = "cuda" if events_on == "cpu" else "cpu"
    spikes = make_spikes(5, 70, 0.3, torch.float32, seed=2, device=spikes_on, negative_zeros=True)
    other = make_dense(5 if transpose else 70, 3, dtype=torch.float32, device=spikes_on)
    events = spike_events(spikes).to(events_on)
    with pytest.raises(RuntimeError, match=r"events"):
        run_spike_product(transpose, spikes, other, events)


# spikes for spike_events, as a function of zeros(*shape, dtype=), and the error it must raise.
BAD_SPIKES = {
    "0d": (lambda z: z(), r"spikes must be a matrix"),
    "1d": (lambda z: z(40), r"spikes must be a matrix"),
    "3d": (lambda z: z(2, 3, 40), r"spikes must be a matrix"),
    "int64": (lambda z: z(3, 40, dtype=torch.int64), r"spikes must be floating point"),
    "int32": (lambda z: z(3, 40, dtype=torch.int32), r"spikes must be floating point"),
    "bool": (lambda z: z(3, 40, dtype=torch.bool), r"spikes must be floating point"),
}


@everywhere
@pytest.mark.parametrize("case", list(BAD_SPIKES))
def test_spike_events_bad_spikes(case, where):
    make, pattern = BAD_SPIKES[case]

    def zeros(*shape, dtype=torch.float32):
        return torch.zeros(shape, dtype=dtype, device=where.device)

    with pytest.raises(RuntimeError, match=rf"snnkern\.spike_events\b.*{pattern}"):
        spike_events(make(zeros))
    with pytest.raises(ValueError, match=r"spikes"):
        reference_ops.spike_events(make(zeros))


# Tampered events: the CPU kernels read the nonzeros of every row whose flag is nonzero from its
# bits (each bit a 1, the bits past column K ignored) and scan the other rows; they never read or
# write outside the matrices. The CUDA build (and its emulation) does not read them at all.

TAMPER_SHAPES = [(5, 70, 3), (9, 700, 130), (4, 32, 64), (3, 1, 7), (6, 33, 513), (200, 13, 7), (40, 65, 20)]


def read_as_cpu_kernel(spikes: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
    """The matrix the CPU kernels multiply given ``events``: a row with a nonzero flag is its
    bits at columns < K as 0/1, any other row is the row of spikes."""
    k = spikes.shape[1]
    bits = unpack_bits(events)[:, :k].to(spikes.dtype)
    return torch.where(events[:, -1:] != 0, bits, spikes)


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tamper", ["all_bits", "past_k", "foreign", "empty", "flags_off", "random"])
def test_products_tampered_events(tamper, dtype, transpose, where):
    """Events of the right dtype and shape but not of these spikes: the CPU kernels multiply the
    matrix the events describe (read_as_cpu_kernel), bit for bit as that matrix without events,
    and never crash; the CUDA build ignores them (the product without events).

    all_bits: every word -1 (each row all ones, whatever spikes holds); past_k: the bits past
    column K set too (ignored: the right result); foreign: the events of the binarised spikes
    (the counts and signed values read as 1); empty: the events of zeros (flagged rows without
    bits); flags_off: every word 0 (every row scanned: the right result); random: random words."""
    for m, k, n in TAMPER_SHAPES:
        spikes = make_spikes(m, k, 0.3, dtype, seed=m + k, kind="mixed", device=where.device, negative_zeros=True)
        other = make_dense(m if transpose else k, n, dtype=dtype, seed=n, device=where.device)
        events = spike_events(spikes)
        w = event_words(k)
        if tamper == "all_bits":
            events = events.fill_(-1)
        elif tamper == "past_k":
            if k % 32 == 0:
                continue
            past = torch.tensor(-(1 << (k % 32)), dtype=torch.int32)  # the bits at columns >= K
            events[:, w - 1] |= past.to(where.device)
            assert not torch.equal(events, spike_events(spikes))
        elif tamper == "foreign":
            events = spike_events((spikes != 0).to(dtype))
        elif tamper == "empty":
            events = spike_events(torch.zeros_like(spikes))
        elif tamper == "flags_off":
            events = events.zero_()
        else:
            g = torch.Generator().manual_seed(m * k)
            events = torch.randint(-(2**31), 2**31, (m, w + 1), generator=g, dtype=torch.int64)
            events = events.to(torch.int32).to(where.device)
            events[::3, -1] = 0
        got = run_spike_product(transpose, spikes, other, events)
        assert got.shape == ((k, n) if transpose else (m, n)) and got.dtype == dtype
        if where.name != "cpu":
            assert_bitwise(got, run_spike_product(transpose, spikes, other), f"{m}x{k}x{n}: events are not read")
            continue
        read = read_as_cpu_kernel(spikes, events)
        if tamper in ("past_k", "flags_off"):
            assert torch.equal(read, spikes)
        assert_bitwise(got, run_spike_product(transpose, read, other), f"{m}x{k}x{n}")
        if tamper == "all_bits":
            assert_bitwise(got, run_spike_product(transpose, torch.ones_like(spikes), other), f"{m}x{k}x{n}: all ones")


# --------------------------------------------------------------------------------------------
# torch.library.opcheck and gradcheck
# --------------------------------------------------------------------------------------------

OPCHECK_SHAPES = [(3, 13, 7), (2, 5, 3), (1, 1, 1), (6, 40, 70), (5, 70, 4), (0, 4, 3), (3, 0, 2), (3, 4, 0), (0, 0, 0)]
OPCHECK_IDS = ["x".join(map(str, s)) for s in OPCHECK_SHAPES]


@everywhere
@pytest.mark.parametrize("shape", [(3, 13), (2, 5), (1, 1), (6, 40), (5, 70), (4, 64), (0, 4), (3, 0), (0, 0)])
def test_opcheck_spike_events(shape, where):
    m, k = shape
    spikes = spoil_rows(make_spikes(m, k, 0.4, torch.float64, seed=1, device=where.device, negative_zeros=True), 1)
    assert_opcheck(torch.ops.snnkern.spike_events.default, (spikes,))


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("shape", OPCHECK_SHAPES, ids=OPCHECK_IDS)
def test_opcheck_products_with_events(shape, requires_grad, transpose, where):
    m, k, n = shape
    spikes = make_spikes(
        m, k, 0.4, torch.float64, seed=1, kind="mixed_counts", device=where.device, negative_zeros=True
    )
    other = make_dense(m if transpose else k, n, seed=2, device=where.device)
    events = spike_events(spikes)
    op = torch.ops.snnkern.spike_matmul_t.default if transpose else torch.ops.snnkern.spike_matmul.default
    assert_opcheck(op, (spikes.requires_grad_(requires_grad), other.requires_grad_(requires_grad), events))


@everywhere
@pytest.mark.parametrize("transpose", SPIKE_PRODUCTS)
@pytest.mark.parametrize("shape", [(3, 6, 4), (1, 9, 1), (5, 1, 3), (3, 33, 2)], ids=lambda s: "x".join(map(str, s)))
def test_products_gradcheck_with_events(shape, transpose, where):
    """float64 gradcheck with events (not differentiable): w.r.t. ``other`` with fixed events of
    binary spikes; w.r.t. both with rows of signed values only (flags 0, so a perturbed entry is
    still scanned); w.r.t. both with the events made from the perturbed spikes, as spike_linear
    does (mixed rows)."""
    m, k, n = shape
    op = torch.ops.snnkern.spike_matmul_t if transpose else torch.ops.snnkern.spike_matmul
    kw = dict(eps=1e-6, atol=1e-8, rtol=1e-7)
    rows_of_other = m if transpose else k

    binary = make_spikes(m, k, 0.5, torch.float64, seed=8, device=where.device, negative_zeros=True)
    binary[0, 0] = 1.0
    events = spike_events(binary)
    assert events[:, -1].all()
    other = make_dense(rows_of_other, n, seed=9, device=where.device).requires_grad_()
    assert torch.autograd.gradcheck(op, (binary, other, events), **kw)

    # Every entry near 3: no row is binary, perturbed or not.
    signed = (
        make_spikes(m, k, 1.0, torch.float64, seed=10, kind="signed", device=where.device, negative_zeros=True) * 0.4
        + 3.0
    )
    signed = signed.detach().requires_grad_()
    events = spike_events(signed.detach())
    assert not events.any()
    assert torch.autograd.gradcheck(op, (signed, other, events), **kw)

    mixed = make_spikes(
        m, k, 0.5, torch.float64, seed=11, kind="mixed", device=where.device, negative_zeros=True
    ).requires_grad_()

    def with_fresh_events(spikes, other):
        return op(spikes, other, spike_events(spikes.detach()))

    assert torch.autograd.gradcheck(with_fresh_events, (mixed, other), **kw)
