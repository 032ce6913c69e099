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
