"""Property tests: ``permute`` equals ``np.ascontiguousarray(np.transpose(a, axes))`` bit for bit, on every ISA this
CPU runs plus scalar, with 1 and 2 threads, for every dtype class, shape class and input/output layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenkit.permute import available_isas, permute

ISAS = available_isas()
DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.float16, np.int32, np.float32, np.int64, np.float64,
          np.complex64, np.complex128, np.dtype(">f4"), np.dtype(">c16"), np.dtype("V3"), np.dtype("V12"),
          np.dtype("V24"), np.dtype("V48"), np.dtype([("a", "<u2"), ("b", "u1")]), np.clongdouble]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _random_bytes(rng, shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


@st.composite
def layouts(draw, max_dims=6, max_elements=40_000):
    """An array of any dtype and a layout: sliced with steps (negative too), base-transposed, broadcast, or on a
    misaligned buffer; plus a random ``axes``."""
    ndim = draw(st.integers(0, max_dims))
    shape = []
    budget = max_elements
    for _ in range(ndim):
        n = draw(st.sampled_from([1, 2, 3, 5, 7, 15, 16, 17, 31, 32, 33, 64, 65, 100, 129]))
        n = max(1, min(n, budget))
        budget //= n
        shape.append(n)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["c", "f", "sliced", "negative", "broadcast", "misaligned", "transposed-base"]))
    if kind == "c" or ndim == 0:
        a = _random_bytes(rng, shape, dtype)
    elif kind == "f":
        a = np.asfortranarray(_random_bytes(rng, shape, dtype))
    elif kind == "sliced":
        steps = [draw(st.integers(1, 3)) for _ in shape]
        base = _random_bytes(rng, [n * s + 1 for n, s in zip(shape, steps, strict=True)], dtype)
        a = base[tuple(slice(1, 1 + n * s, s) for n, s in zip(shape, steps, strict=True))]
    elif kind == "negative":
        a = _random_bytes(rng, shape, dtype)[tuple(slice(None, None, draw(st.sampled_from([1, -1]))) for _ in shape)]
    elif kind == "broadcast":
        axis = draw(st.integers(0, ndim - 1))
        small = list(shape)
        small[axis] = 1
        a = np.broadcast_to(_random_bytes(rng, small, dtype), shape)
    elif kind == "misaligned":
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = rng.integers(0, 256, size=nbytes + 1, dtype=np.uint8)
        a = raw[1:].view(dtype).reshape(shape) if nbytes else np.empty(shape, dtype)
    else:
        a = np.transpose(_random_bytes(rng, shape[::-1], dtype))
    axes = draw(st.permutations(range(ndim))) if draw(st.booleans()) or ndim == 0 else None
    return a, (tuple(axes) if axes is not None else None)


def _expected(a, axes):
    return np.ascontiguousarray(np.transpose(a, axes))


def _assert_bits_equal(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.flags.c_contiguous
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("threads", [1, 2])
@given(case=layouts())
@SETTINGS
def test_matches_numpy_on_every_isa(forced_kernels, threads, case):
    a, axes = case
    want = _expected(a, axes)
    for isa in ISAS:
        _assert_bits_equal(permute(a, axes, threads=threads, isa=isa), want)


@given(case=layouts(max_dims=4), out_kind=st.sampled_from(["c", "f", "strided", "negative"]))
@SETTINGS
def test_out_of_any_layout(forced_kernels, case, out_kind):
    a, axes = case
    want = _expected(a, axes)
    shape = want.shape
    if out_kind == "c":
        out = np.zeros(shape, a.dtype)
    elif out_kind == "f":
        out = np.zeros(shape, a.dtype, order="F")
    elif out_kind == "strided":
        out = np.zeros([2 * n for n in shape], a.dtype)[tuple(slice(None, None, 2) for _ in shape)]
    else:
        out = np.zeros(shape, a.dtype)[tuple(slice(None, None, -1) for _ in shape)]
    for isa in ISAS:
        out[...] = np.zeros((), a.dtype)
        result = permute(a, axes, out=out, threads=2, isa=isa)
        assert result is out
        assert np.ascontiguousarray(out).tobytes() == want.tobytes()


@given(case=layouts(max_dims=3, max_elements=300_000))
@settings(max_examples=15, deadline=None, derandomize=True)
def test_default_thresholds_on_larger_arrays(case):
    a, axes = case
    for isa in ISAS:
        _assert_bits_equal(permute(a, axes, isa=isa, threads=2), _expected(a, axes))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64, np.complex128])
def test_many_short_axes(forced_kernels, isa, dtype):
    """GenTT's special case: a 16-D all-size-2 tensor under random permutations, and a 6-D odd-size case."""
    rng = np.random.default_rng(7)
    a = _random_bytes(rng, (2,) * 16, dtype)
    for _ in range(3):
        axes = tuple(rng.permutation(16))
        _assert_bits_equal(permute(a, axes, isa=isa, threads=2), _expected(a, axes))
    b = _random_bytes(rng, (3, 4, 5, 4, 5, 5), dtype)
    _assert_bits_equal(permute(b, (0, 3, 2, 5, 4, 1), isa=isa), _expected(b, (0, 3, 2, 5, 4, 1)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("channels", [2, 3, 4, 5, 7, 8])
@pytest.mark.parametrize("threads", [1, 2])
def test_short_axis_next_to_a_long_one(forced_kernels, dtype, channels, threads):
    """NCHW<->NHWC with few channels: the interleave/deinterleave kernels where the ISA has them (AVX-512),
    tiles or NumPy elsewhere; lengths with tails in every register position."""
    rng = np.random.default_rng(channels)
    for pixels in (1, 63, 65, 257):
        nchw = _random_bytes(rng, (2, channels, pixels), dtype)
        nhwc = _random_bytes(rng, (2, pixels, channels), dtype)
        for isa in ISAS:
            _assert_bits_equal(permute(nchw, (0, 2, 1), isa=isa, threads=threads), _expected(nchw, (0, 2, 1)))
            _assert_bits_equal(permute(nhwc, (0, 2, 1), isa=isa, threads=threads), _expected(nhwc, (0, 2, 1)))


def test_thirty_two_dimensions(forced_kernels):
    rng = np.random.default_rng(32)
    shape = [2] * 12 + [1] * 16 + [3] * 4
    rng.shuffle(shape)
    a = _random_bytes(rng, shape, np.int16)
    for _ in range(3):
        axes = tuple(int(k) for k in rng.permutation(32))
        for isa in ISAS:
            _assert_bits_equal(permute(a, axes, isa=isa, threads=2), _expected(a, axes))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("offset", [0, 4, 16, 36, 48])
@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_outputs_at_any_offset_in_a_cache_line(forced_kernels, isa, offset, threads):
    """np.empty outputs start 16 bytes past a cache line: the streaming paths (whole-line tiles, a dense block
    streamed as one run, rows) must write the same bits whatever the output's offset within a line."""
    from qwenkit.permute import make_plan

    rng = np.random.default_rng(offset)
    cases = [((3, 4, 5, 4, 5, 5), (0, 3, 2, 5, 4, 1)),  # the TTC layout, small: a dense block
             ((6, 40, 48), (2, 1, 0)), ((8, 7, 64), (1, 0, 2)), ((5, 9, 33, 3), (0, 2, 1, 3))]
    for shape, axes in cases:
        a = _random_bytes(rng, shape, np.float32)
        want = _expected(a, axes)
        raw = np.zeros(want.nbytes + 128, np.uint8)
        start = (-raw.ctypes.data) % 64 + offset
        out = raw[start:start + want.nbytes].view(np.float32).reshape(want.shape)
        plan = make_plan(a, axes, out=out, threads=threads, isa=isa)
        if shape[0] == 3 and isa != "scalar" and isa != "neon":
            assert plan.plan.dense, plan.describe()
        _assert_bits_equal(plan(a, out), want)
        assert not raw[:start].any() and not raw[start + want.nbytes:].any(), "wrote outside the output"


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_row_copies_streamed_in_spans(forced_kernels, dtype, threads):
    """BSHD->BHSD row copies with their runs streamed in spans (``Plan.spans``): outputs off a cache line by every
    offset class and aligned ones, cycles cut by the threads' shares (odd S and H), runs of odd lengths, a next-outer
    axis that ends inside a span, so many heads that the buffer holds fewer than two runs a head (run by run), and
    the reverse relayout whose long position axis is cut into blocks; the bytes around the output stay untouched."""
    import warnings

    from qwenkit.permute import PermuteFallbackWarning, make_plan

    warnings.simplefilter("error", PermuteFallbackWarning)  # the kernel itself must run, not NumPy's fallback
    rng = np.random.default_rng(7)
    itemsize = np.dtype(dtype).itemsize
    short, long = 128 // itemsize + 3, 320 // itemsize + 1  # runs the planner walks in the input's order
    for shape, axes in (((2, 7, 5, short), (0, 2, 1, 3)), ((3, 33, 3, long), (0, 2, 1, 3)),
                        ((1, 9, 4096, short), (0, 2, 1, 3)), ((2, 65, 2, long), (0, 2, 1, 3)),
                        # BHSD->BSHD: the positions, fastest, cut into blocks (600) or not (601, a prime)
                        ((2, 5, 600, short), (0, 2, 1, 3)), ((1, 3, 601, short), (0, 2, 1, 3))):
        a = _random_bytes(rng, shape, dtype)
        out_shape = tuple(shape[k] for k in axes)
        nbytes = int(np.prod(shape)) * itemsize
        for offset in (0, 4, 16, 48, 64 - itemsize):
            backing = np.zeros(nbytes + 128, np.uint8)
            start = -backing.ctypes.data % 64 + offset
            out = backing[start:start + nbytes].view(dtype).reshape(out_shape)
            assert make_plan(a, axes, out, threads=threads).plan.spans
            assert permute(a, axes, out=out, threads=threads) is out
            _assert_bits_equal(out, _expected(a, axes))
            assert not backing[:start].any() and not backing[start + nbytes:].any()
