"""``permute`` and reusable plans: NumPy semantics, generated C underneath.

``permute(a, axes)`` returns what ``np.ascontiguousarray(np.transpose(a, axes))`` returns, bit for bit (so a 0-d
input gives shape ``(1,)``, as there), always as a fresh array. ``axes`` is validated by NumPy's own ``transpose``,
so invalid axes raise exactly NumPy's exceptions. Arrays the kernels cannot or should not handle (object dtypes,
overlapping ``out``, tiny or already-fast layouts, a missing compiler) are copied by ``np.copyto``, which gives the
same bytes.

Safe in every process: the thread pools and the locks are made anew in a child after ``os.fork`` (a pool inherited
from the parent has no live worker, so a child submitting to it would wait for ever), and nothing here reads
``/proc`` or the environment on the path of an array small enough for NumPy.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from qwenkit.core.system import usable_cores
from qwenkit.permute import build, planner
from qwenkit.permute.build import Kernels, load_kernels
from qwenkit.permute.isa import resolve_isa
from qwenkit.permute.planner import Plan, make_plan_for, plan_variants

OUTPUT_ALIGNMENT = 64
"""Outputs ``permute`` allocates start on a cache line, so streaming stores cover whole lines from the first row."""


class PermutePlan:
    """A plan for one input layout, dtype, ``axes`` and output layout, reusable like an FFTW/HPTT plan.

    ``plan(a)`` or ``plan(a, out)`` runs it on any array with the layout it was made for. ``plan.describe()`` says
    which kernel runs and how the axes were fused, packed and split across threads.
    """

    def __init__(self, shape, dtype, strides_in, axes, strides_out, *, threads: int | None, isa: str):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.strides_in = tuple(strides_in)
        self.axes = tuple(axes)
        self.out_shape = tuple(self.shape[k] for k in self.axes) or (1,)
        self.strides_out = tuple(strides_out)
        self.isa = isa
        view_strides = tuple(self.strides_in[k] for k in self.axes)
        out_strides = self.strides_out if self.axes else ()
        if self.dtype.hasobject:
            self.plan = Plan("numpy", "object references are copied by NumPy", isa, 1,
                             math.prod(self.out_shape) * self.dtype.itemsize)
        else:
            self.plan = make_plan_for(self.out_shape if self.axes else (), view_strides, out_strides,
                                      self.dtype.itemsize, isa=isa, threads=threads, cores=usable_cores())
        self._runners: list | None = None
        self._keep_alive: list = []
        self._ffi = None
        self.tuning: dict | None = None
        self._delegates = self.plan.kind == "numpy"

    def describe(self) -> str:
        text = self.plan.describe()
        if self.tuning:
            tuning = self.tuning
            text += (f"\ntuned: fastest of {tuning['candidates']} measured variants, {1e3 * tuning['seconds']:.3g} ms "
                     f"(the default plan: {1e3 * tuning['default_seconds']:.3g} ms)")
        return text

    def tune(self, a: np.ndarray, out: np.ndarray | None = None, *, repeats: int = 3) -> PermutePlan:
        """Time every candidate of ``planner.plan_variants`` (loop orders, streaming on/off) on ``a`` and ``out``
        (minimum of ``repeats`` runs each) and keep the fastest. The plan then stays as fast as measured here for
        arrays with this layout; the result bytes never depend on the choice."""
        if out is None:
            out = empty_aligned(self.out_shape, self.dtype)
        candidates = plan_variants(self.plan)
        if len(candidates) == 1:
            return self
        seconds = []
        for candidate in candidates:
            self._use(candidate)
            self(a, out)  # bind (and compile) outside the timed runs
            timed = []
            for _ in range(repeats):
                started = time.perf_counter()
                self(a, out)
                timed.append(time.perf_counter() - started)
            seconds.append(min(timed))
        best = min(range(len(candidates)), key=seconds.__getitem__)
        self._use(candidates[best])
        self.tuning = {"candidates": len(candidates), "seconds": seconds[best], "default_seconds": seconds[0]}
        return self

    def _use(self, plan: Plan) -> None:
        with _BIND_LOCK:
            self.plan, self._runners, self._keep_alive = plan, None, []
            self._delegates = plan.kind == "numpy"

    def __repr__(self) -> str:
        return (f"PermutePlan(shape={self.shape}, dtype={self.dtype}, axes={self.axes}, kind={self.plan.kind!r}, "
                f"isa={self.isa!r}, threads={self.plan.threads})")

    def __call__(self, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if a.shape != self.shape or a.strides != self.strides_in or a.dtype != self.dtype:
            raise ValueError(f"this plan is for shape {self.shape}, dtype {self.dtype}, strides {self.strides_in}; "
                             f"got {a.shape}, {a.dtype}, {a.strides}: make a new plan for this layout")
        view = a.transpose(self.axes)
        if out is None:
            out = _new_output(self.out_shape, self.dtype)
        elif out.shape != self.out_shape or out.strides != self.strides_out:
            raise ValueError(f"this plan writes an output of shape {self.out_shape} and strides {self.strides_out}; "
                             f"got {out.shape} and {out.strides}")
        elif out.dtype != self.dtype or not out.flags.writeable:
            _check_out(out, self.out_shape, self.dtype)
        return self._run(view, out, a)

    def _run(self, view: np.ndarray, out: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
        """Copy ``view`` (the transposed input) into ``out``, both already checked against this plan. ``source``,
        when given, is the array ``view`` was transposed from (same data pointer)."""
        if self._delegates:
            out[...] = view
            return out
        if self.plan.kind == "empty":
            return out
        if view.ndim == 0:
            view = view.reshape(1)
        if np.may_share_memory(view, out):
            np.copyto(out, view)
            return out
        runners = self._runners if self._runners else self._bind()
        if runners is None:
            np.copyto(out, view)
            return out
        pointer_a = _data_pointer(self._ffi, view if source is None else source, view, self.plan.offset_a)
        pointer_b = _data_pointer(self._ffi, out, out, self.plan.offset_b)
        if len(runners) == 1:
            runners[0](pointer_a, pointer_b)
        else:
            pending = [_pool(self.plan.threads).submit(run, pointer_a, pointer_b) for run in runners[1:]]
            runners[0](pointer_a, pointer_b)
            for future in pending:
                future.result()
        return out

    def _bind(self):
        """One callable per thread chunk, holding the cffi arguments; built once per plan."""
        with _BIND_LOCK:
            if self._runners is None:
                kernels = load_kernels(self.isa, self.plan.width)
                if kernels is None:
                    self._runners = []
                else:
                    self._runners, self._keep_alive = _bind_plan(self.plan, kernels)
                    self._ffi = kernels.ffi
            return self._runners or None


def _bind_plan(plan: Plan, kernels: Kernels) -> tuple[list, list]:
    """``(runners, keep)``: one callable per thread chunk, taking the two cffi data pointers (``_data_pointer``),
    and the arrays and cffi structs they point into (which must live as long as the runners)."""
    ffi, lib = kernels.ffi, kernels.lib
    keep: list = []

    def pointer(values, ctype: str = "const int64_t *", dtype=np.int64) -> object:
        array = np.ascontiguousarray(values, dtype=dtype)
        keep.append(array)
        return ffi.cast(ctype, array.ctypes.data)

    nouter = len(plan.outer.shape)
    oshape, oa, ob = pointer(plan.outer.shape), pointer(plan.outer.sa), pointer(plan.outer.sb)
    if plan.kind == "rows":
        def run(a, b, c):
            lib.qk_rows(a, b, plan.row_bytes, nouter, oshape, oa, ob, c.o0, c.o1, int(plan.stream), int(plan.spans))
    elif plan.kind == "strided":
        def run(a, b, c):
            lib.qk_strided(a, b, plan.inner.shape[0], plan.inner.sa[0], plan.inner.sb[0],
                           plan.row_bytes // plan.width, nouter, oshape, oa, ob, c.o0, c.o1)
    elif plan.kind in {"interleave", "deinterleave"}:
        args = ffi.new("qk_short_args *", {
            "k": plan.q_axes.shape[0], "rows": pointer(plan.qa), "idx": pointer(plan.short_idx, "const void *", None),
            "mask": pointer(plan.short_mask, "const uint64_t *", np.uint64), "nouter": nouter, "oshape": oshape,
            "oa": oa, "ob": ob})
        kernel = lib.qk_interleave if plan.kind == "interleave" else lib.qk_deinterleave

        def run(a, b, c):
            kernel(a, b, args, c.o0, c.o1, c.p0, c.p1)
    else:
        args = ffi.new("qk_tile_args *", {
            "np": plan.pb.size, "nq": plan.qa.size, "tp": plan.tp, "tq": plan.tq, "sp": plan.p_axes.sa[0],
            "column_order": int(plan.column_order), "pb": pointer(plan.pb), "qa": pointer(plan.qa),
            "nouter": nouter, "oshape": oshape, "oa": oa, "ob": ob, "stream": int(plan.stream),
            "dense": int(plan.dense), "probe": plan.probe, "whole_row_strips": int(plan.whole_row_strips),
            "strips": int(plan.strips)})

        def run(a, b, c):
            lib.qk_tile(a, b, args, c.o0, c.o1, c.p0, c.p1)
    if plan.kind in {"interleave", "deinterleave", "tile"}:
        keep.append(args)
    return [functools.partial(run, c=chunk) for chunk in plan.chunks], keep


def _data_pointer(ffi, array: np.ndarray, view: np.ndarray, offset: int):
    """A ``char *`` to ``view``'s first byte plus ``offset``. ``array`` shares ``view``'s data pointer; when it is
    C-contiguous, ``ffi.from_buffer`` gives the pointer, else it comes from ``__array_interface__``, several times
    slower (NumPy builds a dict of the whole layout; both are timed in the size sweep's call-cost table)."""
    try:
        pointer = ffi.from_buffer(array)
    except (ValueError, TypeError, BufferError):  # not C-contiguous, or a dtype without a buffer format
        return ffi.cast("char *", view.__array_interface__["data"][0] + offset)
    return pointer + offset if offset else pointer


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_BIND_LOCK = threading.Lock()
"""Guards binding plans to libraries (and so compiling); one lock for all plans, so a fork can renew it."""


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool per thread count (like BLAS's threads): ``threads - 1`` workers beside the calling
    thread, which runs the first chunk itself. The C calls run with the GIL released by cffi."""
    pool = _POOLS.get(threads)
    if pool is None:
        with _POOLS_LOCK:
            pool = _POOLS.get(threads)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=max(1, threads - 1), thread_name_prefix="qwenkit-permute")
                _POOLS[threads] = pool
    return pool


def _renew_after_fork_in_child() -> None:
    """In a forked child the parent's pool workers do not exist (an inherited pool would queue work that nothing
    runs) and a lock another thread held at the fork stays held: forget the pools, make new locks. The pools are
    dropped, not shut down: shutting down would wait for the parent's threads."""
    global _POOLS_LOCK, _BIND_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()
    _BIND_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_renew_after_fork_in_child)


def _new_output(shape, dtype) -> np.ndarray:
    """The output ``permute`` allocates: line-aligned where streaming stores may write it (from
    ``planner.STREAM_MIN_BYTES``), else a plain ``np.empty`` (aligning costs more than a small copy)."""
    if math.prod(shape) * dtype.itemsize < planner.STREAM_MIN_BYTES:
        return np.empty(shape, dtype)
    return empty_aligned(shape, dtype)


def empty_aligned(shape, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on a ``OUTPUT_ALIGNMENT``-byte boundary."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:  # references cannot live in a reinterpreted byte buffer
        return np.empty(shape, dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + OUTPUT_ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % OUTPUT_ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _check_out(out, shape, dtype) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}; the permuted array has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}; permute copies bits and needs exactly {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writeable array")


def _overlaps_itself(out: np.ndarray) -> bool:
    """True when two indices of ``out`` may address the same byte (zero or interleaved strides)."""
    dims = sorted((abs(s), n) for n, s in zip(out.shape, out.strides, strict=True) if n > 1)
    extent = out.itemsize
    for stride, n in dims:
        if stride < extent:
            return True
        extent = stride * (n - 1) + extent
    return False


@functools.lru_cache(maxsize=512)
def _cached_plan(shape, dtype, strides_in, axes, strides_out, threads, isa) -> PermutePlan:
    """Plans per layout; the key is what the call already holds (``axes`` as given), so a hit costs one look-up."""
    return PermutePlan(shape, dtype, strides_in, _axes_of_shape(len(shape), axes), strides_out, threads=threads,
                       isa=resolve_isa(isa))


def make_plan(a: np.ndarray, axes=None, out: np.ndarray | None = None, *, threads: int | None = None,
              isa: str = "auto", tune: bool = False) -> PermutePlan:
    """A reusable plan for arrays laid out like ``a`` (and ``out``, when given; else a C-contiguous output).

    ``tune=True`` measures the planner's candidate variants on ``a`` (and ``out``) and keeps the fastest
    (``PermutePlan.tune``): worth it for a layout that is permuted many times; it writes into ``out``."""
    a = np.asarray(a)
    view = np.transpose(a, axes)
    full_axes = _axes_of(a, axes)
    out_shape = view.shape or (1,)
    strides_out = out.strides if out is not None else _c_strides(out_shape, a.dtype.itemsize)
    if out is not None:
        _check_out(out, out_shape, a.dtype)
        if _overlaps_itself(out):
            raise ValueError("out has overlapping elements (zero or interleaved strides); plans need a plain output, "
                             "permute(a, axes, out=out) copies into such an array the way NumPy does")
    plan = PermutePlan(a.shape, a.dtype, a.strides, full_axes, strides_out, threads=_check_threads(threads),
                       isa=resolve_isa(isa))
    return plan.tune(a, out) if tune else plan


def permute_python(a, axes=None, out: np.ndarray | None = None, *, threads: int | None = None,
                   isa: str = "auto") -> np.ndarray:
    """``np.ascontiguousarray(np.transpose(a, axes))``, bit for bit, as a fresh array, or that written into ``out``.

    ``threads``: number of threads (default: one per 4 MiB of output, at most the usable cores; an explicit number
    is capped at the usable cores). ``isa``: ``"auto"`` (``$QWENKIT_PERMUTE_ISA`` or the best this CPU runs), or
    ``available_isas()`` names.

    Arrays under ``planner.MIN_KERNEL_BYTES`` take a short path straight to NumPy's copy: no plan, no ISA or
    environment look-up. Its first tier (default ``threads`` and ``isa``, an ``out`` of exactly the permuted shape
    and the identical dtype object, or no ``out``) costs a handful of attribute checks and then NumPy's cheapest
    calls, ``out[...] = view`` (which skips ``np.copyto``'s argument parsing) or ``view.copy()``, which win back
    part of what the Python call and the checks cost (measured per piece in the size sweep, docs/permute.md);
    everything else small takes the checked tier below (larger object arrays are planned as ``numpy`` and copied
    the same way). Where the C extension ``qwenkit.permute._shortpath`` is built (``pip install`` builds it when
    a C compiler and Python's headers are there), ``permute`` is that first tier in C, calling this function for
    everything else; ``permute_python`` is the same without it.
    """
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    view = a.T if axes is None else a.transpose(axes)  # validates axes with NumPy's own exceptions
    if a.nbytes < planner.MIN_KERNEL_BYTES and threads is None and isa == "auto":
        if out is None:
            if a.ndim:
                return view.copy()  # C order, always a fresh array, as np.ascontiguousarray of a view
        else:
            try:
                fits = out.shape == view.shape and out.dtype is a.dtype
            except AttributeError:  # not an array: the checked tier raises the TypeError
                fits = False
            if fits:
                out[...] = view  # NumPy's assignment: checks writeability, buffers overlapping operands
                return out
    if threads is not None:
        threads = _check_threads(threads)
    if a.nbytes < planner.MIN_KERNEL_BYTES:
        if isa != "auto":
            resolve_isa(isa)
        if out is None:
            result = np.ascontiguousarray(view)
            if result is view or a.ndim == 0:  # already contiguous (or 0-d): ascontiguousarray shares a's memory
                result = result.copy()
            return result
        if type(out) is not np.ndarray or out.shape != view.shape or (out.dtype is not a.dtype
                                                                      and out.dtype != a.dtype):
            _check_out(out, view.shape or (1,), a.dtype)  # raises, except for a 0-d input or an ndarray subclass
        out[...] = view
        return out
    out_shape = view.shape or (1,)
    if out is None:
        out = _new_output(out_shape, a.dtype)
    else:
        _check_out(out, out_shape, a.dtype)
        if not out.flags.forc and _overlaps_itself(out):
            np.copyto(out, view.reshape(out_shape))
            return out
    key_axes = axes if axes is None or type(axes) is tuple else tuple(axes)
    return _cached_plan(a.shape, a.dtype, a.strides, key_axes, out.strides, threads, isa)._run(view, out, a)


def _axes_of(a: np.ndarray, axes) -> tuple[int, ...]:
    return _axes_of_shape(a.ndim, axes)


def _axes_of_shape(ndim: int, axes) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))[::-1]
    return tuple(int(k) % ndim for k in axes) if ndim else ()


def _c_strides(shape, itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _check_threads(threads: int | None) -> int | None:
    if threads is not None and (not isinstance(threads, int | np.integer) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return None if threads is None else int(threads)


def clear_cache() -> int:
    """Delete the compiled kernels on disk and forget this process's plans; returns how many libraries were removed.

    Libraries already loaded stay mapped for plans still held by the caller; new plans compile afresh.
    """
    _cached_plan.cache_clear()
    return build.clear_cache()


def _with_c_short_path(python_permute):
    """``python_permute`` behind the C short path of ``_shortpath.c``, or itself where the extension is not built."""
    try:
        from qwenkit.permute import _shortpath
    except ImportError:
        return python_permute
    fast = _shortpath.bind(python_permute, planner)
    fast.__name__ = fast.__qualname__ = "permute"
    return fast


permute = _with_c_short_path(permute_python)
SHORT_PATH_IN_C = permute is not permute_python
"""Whether ``permute``'s short path for small arrays runs in C (the extension was built)."""
