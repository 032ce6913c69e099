"""The short path for arrays under ``planner.MIN_KERNEL_BYTES`` and the dispatch threshold (behaviour, not timing):
its cheap first tier and the checked tier give NumPy's bytes and the same errors as the planned path."""

from __future__ import annotations

import numpy as np
import pytest

from qwenkit.permute import api, permute, planner


def _plans() -> int:
    return api._cached_plan.cache_info().currsize


def test_dispatch_threshold_plans_only_from_min_kernel_bytes():
    api._cached_plan.cache_clear()
    elements = planner.MIN_KERNEL_BYTES // 4
    below = np.arange(elements - 1, dtype=np.float32).reshape(1, -1)
    at = np.arange(elements, dtype=np.float32).reshape(-1, 64)
    assert below.nbytes < planner.MIN_KERNEL_BYTES <= at.nbytes
    assert np.array_equal(permute(below), below.T) and _plans() == 0
    assert np.array_equal(permute(at), at.T) and _plans() == 1


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.complex128, ">i2", "V3"])
def test_first_tier_matches_numpy_for_out_and_allocation(dtype):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=4 * 6 * 5 * np.dtype(dtype).itemsize, dtype=np.uint8)
    a = raw.view(dtype).reshape(4, 6, 5)
    api._cached_plan.cache_clear()
    for axes in [(2, 0, 1), None, (0, 1, 2), (-1, 0, 1)]:
        want = np.ascontiguousarray(np.transpose(a, axes))
        got = permute(a, axes)
        assert got.tobytes() == want.tobytes() and got.flags.c_contiguous and not np.shares_memory(got, a)
        out = np.empty(want.shape, np.dtype(dtype))  # an equal dtype that may be another object: checked tier
        assert permute(a, axes, out=out) is out and out.tobytes() == want.tobytes()
        same = np.empty(want.shape, a.dtype)  # the identical dtype object: first tier
        assert permute(a, axes, out=same) is same and same.tobytes() == want.tobytes()
    assert _plans() == 0


def test_first_tier_keeps_every_check():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    broadcastable = np.zeros((1, 4, 3), np.float32)  # np.copyto would broadcast into it; permute refuses
    with pytest.raises(ValueError, match="shape"):
        permute(a, out=broadcastable)
    assert not broadcastable.any()
    with pytest.raises(TypeError, match="numpy.ndarray"):
        permute(a, out=[[0.0] * 3] * 4)
    with pytest.raises(TypeError, match="dtype"):
        permute(a, out=np.empty((4, 3), np.float64))
    frozen = np.zeros((4, 3), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        permute(a, out=frozen)
    with pytest.raises(ValueError, match="threads"):
        permute(a, threads=-1)
    assert np.array_equal(permute(a, threads=2, isa="scalar"), a.T)
    assert permute(np.float32(7)).shape == (1,) and permute(np.float32(7))[0] == 7
    assert np.array_equal(permute([[1, 2, 3]]), [[1], [2], [3]])


def test_first_tier_out_aliasing_the_input_is_buffered_like_numpy():
    square = np.arange(25, dtype=np.int16).reshape(5, 5)
    want = np.ascontiguousarray(square.T)
    assert permute(square, out=square) is square and np.array_equal(square, want)
    shifted = np.arange(30, dtype=np.int16).reshape(5, 6)
    view_out = shifted[:, 1:]  # overlaps its own input
    want = np.ascontiguousarray(shifted[:, :5].T)
    assert permute(shifted[:, :5], out=view_out) is view_out and np.array_equal(view_out, want)


def test_ndarray_subclass_out_is_written():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    out = np.zeros((3, 2)).view(np.matrix)
    assert permute(a, out=out) is out and np.array_equal(np.asarray(out), a.T)


def _outcome(fn, *args, **kwargs):
    """('ok', bytes, shape, is-out) or ('raise', exception type, message) of one call."""
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # the comparison is of exceptions too
        return ("raise", type(exc), str(exc))
    return ("ok", result.tobytes(), result.shape, result is kwargs.get("out", args[2] if len(args) > 2 else None))


def test_the_c_short_path_is_built_here_and_looks_like_the_python_function():
    """The set-up builds the extension (a C compiler and Python's headers are among its requirements)."""
    import inspect

    assert api.SHORT_PATH_IN_C, "qwenkit.permute._shortpath is not built: run `pip install -e .` with a C compiler"
    assert permute.__wrapped__ is api.permute_python and permute.__doc__ == api.permute_python.__doc__
    assert permute.__name__ == "permute" and permute.__module__ == "qwenkit.permute.api"
    assert str(inspect.signature(permute)) == str(inspect.signature(api.permute_python))
    import pickle

    assert pickle.loads(pickle.dumps(permute)) is permute  # by reference, as a function: multiprocessing can send it


def test_the_c_short_path_gives_the_python_function_outcome_for_every_call_form():
    """Same bytes, the same array returned, the same exception type and message, over the forms a user writes:
    positional and keyword ``axes``/``out``, every axes spelling NumPy accepts or refuses, outputs of every kind."""
    if not api.SHORT_PATH_IN_C:
        pytest.skip("the C short path is not built")
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    frozen = np.zeros((4, 3, 2), np.float32)
    frozen.flags.writeable = False
    axes_forms = [None, (2, 1, 0), [2, 1, 0], np.array([2, 1, 0]), (-1, 1, 0), (0, 1, 2), (1, 1, 0), (0, 1),
                  (0, 1, 5), "abc", 1.5, (2.0, 1, 0)]
    outs = [lambda: None, lambda: np.empty((4, 3, 2), np.float32), lambda: np.empty((4, 3, 2), np.dtype("float32")),
            lambda: np.empty((1, 3, 2), np.float32), lambda: np.empty((4, 3, 2), np.float64), lambda: frozen,
            lambda: np.empty((4, 3, 2), np.float32)[::-1], lambda: [[0.0]], lambda: np.empty((2, 3, 4), np.float32)]
    for axes in axes_forms:
        for make_out in outs:
            for form in ("positional", "keywords", "mixed"):
                python_out, c_out = make_out(), make_out()
                if form == "positional":
                    want = _outcome(api.permute_python, a, axes, python_out)
                    got = _outcome(permute, a, axes, c_out)
                elif form == "keywords":
                    want = _outcome(api.permute_python, a, axes=axes, out=python_out)
                    got = _outcome(permute, a, axes=axes, out=c_out)
                else:
                    want = _outcome(api.permute_python, a, axes, out=python_out, threads=None, isa="auto")
                    got = _outcome(permute, a, axes, out=c_out, threads=None, isa="auto")
                assert got == want, (axes, python_out, form)
    for args, kwargs in [((a,), {"threads": 2}), ((a,), {"isa": "scalar"}), ((a,), {"isa": "nope"}),
                         ((a,), {"bogus": 1}), ((), {"a": a}), ((a, None, None, None), {}), ((a,), {"axes": None}),
                         ((a, None), {"axes": None}), ((np.float32(3),), {}), (([[1, 2], [3, 4]],), {}),
                         ((np.arange(6).reshape(2, 3).view(np.matrix),), {}), ((np.array([object(), 1]),), {})]:
        assert _outcome(permute, *args, **kwargs)[:2] == _outcome(api.permute_python, *args, **kwargs)[:2], kwargs


def test_the_c_short_path_reads_the_threshold_on_every_call(monkeypatch):
    if not api.SHORT_PATH_IN_C:
        pytest.skip("the C short path is not built")
    a = np.arange(64, dtype=np.float32).reshape(8, 8)
    api._cached_plan.cache_clear()
    monkeypatch.setattr(planner, "MIN_KERNEL_BYTES", 0)  # every array goes to the planned path now
    assert np.array_equal(permute(a, (1, 0)), a.T) and _plans() == 1


SHORT_DTYPES = [np.bool_, np.int8, np.uint16, ">i2", np.float16, np.float32, ">f4", np.int64, np.complex64,
                np.complex128, np.longdouble, "M8[s]", "m8[ns]",
                # not a copy of bytes by the fixed loop: NumPy's own copy
                np.clongdouble, object, "U3", "S5", "V3", [("x", "i4"), ("y", "f2")]]


def _short_inputs(dtype, rng):
    """Arrays under 4 KiB of every layout a caller passes: C, sliced, negative strides, size-1 and empty axes, 8-D
    (the fixed loop's most) and 9-D (NumPy's copy)."""
    dtype = np.dtype(dtype)

    def filled(shape):
        if dtype.kind == "O":
            return np.array(rng.integers(0, 99, size=shape).tolist(), dtype=object).reshape(shape)
        raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
        return raw.view(dtype).reshape(shape)

    yield filled((3, 5)), (1, 0)
    yield filled((2, 3, 4)), (2, 0, 1)
    yield filled((6, 8))[::2, 1::3], (1, 0)
    yield filled((4, 5))[::-1, ::-2], (1, 0)
    yield filled((1, 4, 1, 3)), (3, 1, 2, 0)
    yield filled((3, 0, 2)), (2, 1, 0)
    yield filled((2,) * 8), (7, 5, 3, 1, 0, 2, 4, 6)
    yield filled((2,) * 9), tuple(range(8, -1, -1))
    yield filled((7,)), None


@pytest.mark.parametrize("dtype", SHORT_DTYPES, ids=str)
def test_the_c_short_path_copies_numpys_bytes_for_every_dtype_and_layout(dtype):
    """The fixed loop of ``_shortpath.c`` (numbers, bool, float16, datetimes of 1-16 bytes, up to 8-D and 4 KiB)
    and NumPy's copy behind it for everything else: NumPy's bytes, allocating and into C, strided and negative
    outputs, and an out that overlaps its input."""
    rng = np.random.default_rng(1)
    for a, axes in _short_inputs(dtype, rng):
        want = np.ascontiguousarray(np.transpose(a, axes))
        got = permute(a, axes)
        assert got.dtype is a.dtype or got.dtype == a.dtype
        assert got.shape == want.shape and got.tobytes() == want.tobytes() and got.flags.c_contiguous
        into_c = np.zeros(want.shape, a.dtype)
        assert permute(a, axes, out=into_c) is into_c and into_c.tobytes() == want.tobytes()
        backing = np.zeros(tuple(2 * n for n in want.shape), a.dtype)
        strided = backing[tuple(slice(None, None, -2) for _ in want.shape)]
        assert permute(a, axes, out=strided) is strided and np.ascontiguousarray(strided).tobytes() == want.tobytes()
    square = np.arange(36, dtype=np.float32).reshape(6, 6)
    overlapping = square[::-1]  # the same bytes as its input, rows reversed
    want = np.ascontiguousarray(square.T)
    assert permute(square, out=overlapping) is overlapping and np.array_equal(overlapping, want)
