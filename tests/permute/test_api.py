"""The API contract: NumPy's exceptions for bad ``axes``, checks on ``out``, 0-d and empty arrays, plans, overlap."""

from __future__ import annotations

import numpy as np
import pytest

from qwenkit.permute import UnknownIsaError, available_isas, make_plan, permute


def _reference_error(a, axes):
    try:
        np.transpose(a, axes)
    except Exception as exc:  # the reference exception, whatever NumPy raises
        return type(exc)
    return None


@pytest.mark.parametrize("axes", [(0, 0, 1), (0, 1), (0, 1, 3), (0, 1, -4), (0, 1.0, 2), "abc", (0, 1, 2, 3)])
def test_invalid_axes_raise_numpys_exception(axes):
    a = np.zeros((2, 3, 4))
    expected = _reference_error(a, axes)
    assert expected is not None
    with pytest.raises(expected):
        permute(a, axes)


def test_zero_dimensional_and_empty_like_numpy():
    scalar = np.array(3.5)
    assert permute(scalar).shape == np.ascontiguousarray(np.transpose(scalar)).shape == (1,)
    assert permute(scalar)[0] == 3.5
    empty = np.zeros((3, 0, 5), np.float32)
    assert permute(empty, (2, 0, 1)).shape == (5, 3, 0)


def test_negative_axes_and_default_reverse():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.array_equal(permute(a, (-1, 0, -2)), np.ascontiguousarray(a.transpose(-1, 0, -2)))
    assert np.array_equal(permute(a), np.ascontiguousarray(a.T))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_lists_and_subclasses_become_plain_arrays():
    matrix = np.matrix([[1, 2], [3, 4]])
    assert type(permute(matrix)) is np.ndarray
    assert np.array_equal(permute([[1, 2, 3]]), np.array([[1], [2], [3]]))


def test_out_is_checked():
    a = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="shape"):
        permute(a, out=np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        permute(a, out=np.zeros((5, 4), np.float64))
    read_only = np.zeros((5, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        permute(a, out=read_only)
    with pytest.raises(TypeError):
        permute(a, out=[[0.0] * 4] * 5)


def test_out_overlapping_input_behaves_like_numpy(forced_kernels):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((64, 64)).astype(np.float32)
    expected = np.ascontiguousarray(base.T)
    result = permute(base, out=base)  # in place: NumPy copies through a temporary
    assert result is base and np.array_equal(base, expected)


def test_self_overlapping_out_is_written_like_numpy():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    out_ours = np.lib.stride_tricks.as_strided(np.zeros(8, np.int64), (3, 2), (8, 8), writeable=True)
    out_numpy = np.lib.stride_tricks.as_strided(np.zeros(8, np.int64), (3, 2), (8, 8), writeable=True)
    permute(a, out=out_ours)
    np.copyto(out_numpy, a.T)
    assert np.array_equal(out_ours.base, out_numpy.base)


def test_object_arrays_are_copied_by_reference():
    items = [object() for _ in range(6)]
    a = np.empty((2, 3), dtype=object)
    a[...] = np.array(items, dtype=object).reshape(2, 3)
    result = permute(a)
    assert all(result[j, i] is a[i, j] for i in range(2) for j in range(3))


def test_plan_is_reusable_and_checks_layout(forced_kernels):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 40, 33)).astype(np.float32)
    plan = make_plan(a, (2, 0, 1), threads=2)
    assert plan.plan.kind == "tile" and "block" in plan.describe()
    for _ in range(3):
        b = rng.standard_normal(a.shape).astype(np.float32)
        assert np.array_equal(plan(b), np.ascontiguousarray(b.transpose(2, 0, 1)))
    out = np.empty((33, 8, 40), np.float32)
    assert plan(a, out) is out
    with pytest.raises(ValueError, match="plan is for"):
        plan(a[:, :, :32])
    with pytest.raises(ValueError, match="plan writes"):
        plan(a, np.empty((33, 8, 40), np.float32, order="F"))


def test_threads_and_isa_arguments_are_validated():
    a = np.zeros((3, 3))
    with pytest.raises(ValueError, match="threads"):
        permute(a, threads=0)
    with pytest.raises(UnknownIsaError):
        permute(a, isa="avx9000")
    assert available_isas()[0] == "scalar"


def test_isa_environment_variable(monkeypatch, forced_kernels):
    monkeypatch.setenv("QWENKIT_PERMUTE_ISA", "scalar")
    assert make_plan(np.zeros((64, 64), np.float32)).isa == "scalar"
    monkeypatch.setenv("QWENKIT_PERMUTE_ISA", "not-an-isa")
    with pytest.raises(UnknownIsaError):
        make_plan(np.zeros((64, 64), np.float32))


def test_byte_order_and_nan_payloads_survive(forced_kernels):
    bits = np.arange(64 * 48, dtype=np.uint32) | np.uint32(0x7FC00000)  # NaNs with distinct payloads
    a = bits.view(np.float32).reshape(64, 48).astype(">f4")
    result = permute(a)
    assert result.dtype == np.dtype(">f4")
    assert result.tobytes() == np.ascontiguousarray(a.T).tobytes()


@pytest.mark.parametrize("threads", [1, 2])
def test_tuned_plans_measure_variants_and_keep_the_bytes(forced_kernels, threads):
    """make_plan(tune=True) times the planner's variants (loop orders, streaming on/off) and keeps the fastest;
    every variant writes NumPy's bytes, and with threads the split axis stays first."""
    from qwenkit.permute.planner import plan_variants

    rng = np.random.default_rng(3)
    for shape, axes in [((3, 4, 5, 4, 5, 5), (0, 3, 2, 5, 4, 1)), ((5, 6, 4, 7, 3), (4, 1, 2, 0, 3)),
                        ((6, 9, 40), (1, 0, 2))]:
        a = rng.standard_normal(shape).astype(np.float32)
        want = np.ascontiguousarray(a.transpose(axes))
        plan = make_plan(a, axes, threads=threads)
        variants = plan_variants(plan.plan)
        keys = [(v.outer, v.stream, v.dense) for v in variants]
        assert keys[0] == (plan.plan.outer, plan.plan.stream, plan.plan.dense) and len(set(keys)) == len(keys)
        for variant in variants:
            assert variant.outer.shape[:1] == plan.plan.outer.shape[:1] or plan.plan.threads == 1
            candidate = make_plan(a, axes, threads=threads)
            candidate._use(variant)
            assert np.array_equal(candidate(a), want)
        tuned = make_plan(a, axes, threads=threads, tune=True)
        assert np.array_equal(tuned(a), want)
        if len(variants) > 1:
            assert (tuned.plan.outer, tuned.plan.stream, tuned.plan.dense) in keys
            assert "tuned: fastest of" in tuned.describe()
