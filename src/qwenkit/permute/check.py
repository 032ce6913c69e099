"""The randomized equivalence check behind ``qwenkit permute check``: every ISA, many dtypes, shapes and layouts.

Independent of the test suite's hypothesis strategies on purpose: a second, plain generator of cases (random shapes
with short, odd and size-1 axes, random permutations, sliced/negative/Fortran/broadcast/misaligned inputs), each
compared byte for byte with ``np.ascontiguousarray(np.transpose(a, axes))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from qwenkit.permute import api, planner
from qwenkit.permute.isa import cpu_isas

DTYPES = ("bool", "uint8", "int16", "float16", "float32", ">f4", "int64", "float64", "complex64", "complex128",
          "V3", "V12", "V24")
LAYOUTS = ("c", "fortran", "sliced", "negative", "broadcast", "misaligned")


@dataclass
class CheckReport:
    cases: int
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def random_case(rng: np.random.Generator, max_elements: int = 60_000) -> tuple[np.ndarray, tuple[int, ...], str]:
    ndim = int(rng.integers(1, 7))
    shape = []
    budget = max_elements
    for _ in range(ndim):
        n = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 130]))
        n = max(1, min(n, budget))
        budget //= n
        shape.append(n)
    dtype = np.dtype(str(rng.choice(DTYPES)))
    layout = str(rng.choice(LAYOUTS))
    data = rng.integers(0, 256, size=(int(np.prod(shape)) + 64) * dtype.itemsize + 1, dtype=np.uint8)

    def fresh(dims):
        count = int(np.prod(dims)) * dtype.itemsize
        return data[:count].view(dtype).reshape(dims)

    if layout == "fortran":
        a = np.asfortranarray(fresh(shape))
    elif layout == "sliced":  # every other element along up to two axes: no unit-stride axis there
        doubled = set(rng.choice(ndim, size=min(2, ndim), replace=False).tolist())
        big_shape = [2 * n if k in doubled else n for k, n in enumerate(shape)]
        big = rng.integers(0, 256, size=int(np.prod(big_shape)) * dtype.itemsize, dtype=np.uint8).view(dtype)
        big = big.reshape(big_shape)
        a = big[tuple(slice(None, None, 2) if k in doubled else slice(None) for k in range(ndim))]
    elif layout == "negative":
        a = fresh(shape)[tuple(slice(None, None, int(rng.choice([1, -1]))) for _ in shape)]
    elif layout == "broadcast":
        small = list(shape)
        small[int(rng.integers(ndim))] = 1
        a = np.broadcast_to(fresh(small), shape)
    elif layout == "misaligned":
        count = int(np.prod(shape)) * dtype.itemsize
        a = data[1:1 + count].view(dtype).reshape(shape)
    else:
        a = fresh(shape)
    return a, tuple(int(k) for k in rng.permutation(ndim)), f"{dtype} {tuple(shape)} {layout}"


FORCED_SETTINGS = {
    "MIN_KERNEL_BYTES": 0, "MIN_ROW_BYTES_FOR_ROWS": 0, "MIN_PLANE_ELEMENTS": 0, "STREAM_MIN_BYTES": 0,
    "WHOLE_ROW_MIN_BYTES": 16, "MIN_BYTES_PER_THREAD": 1,
    # every streaming row copy whose next-outer axis continues its runs streams them in spans
    "SPAN_RUN_BYTES": (1, 1 << 62),
    # small macro tiles in both walking orders, so that small arrays hold several full tiles plus edges
    "TILE_SHAPES": {w: (128, 64, w in (2, 8)) for w in (1, 2, 4, 8, 16)},
    # square strips (where this machine's table takes them) on planes of any length
    "STRIP_MIN_RUN_BYTES": 0,
}


@contextlib.contextmanager
def forced_kernels() -> Iterator[None]:
    """Lower the planner's size thresholds and tile sizes for the duration, so that small arrays (cheap to check)
    run through every C kernel, streaming paths included, instead of being delegated to NumPy."""
    saved = {name: getattr(planner, name) for name in FORCED_SETTINGS}
    for name, value in FORCED_SETTINGS.items():
        setattr(planner, name, value)
    api._cached_plan.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(planner, name, value)
        api._cached_plan.cache_clear()


def run_check(cases: int = 300, seed: int = 0, *, isas: list[str] | None = None, threads=(1, 2),
              force_kernels: bool = True, progress: Callable[[str], None] | None = None) -> CheckReport:
    """Compare ``permute`` with NumPy on ``cases`` random cases for every ISA and thread count.

    ``force_kernels`` runs it under ``forced_kernels()``, so small cases exercise the C kernels (streaming stores
    included) rather than the NumPy delegation.
    """
    isas = isas or cpu_isas()
    rng = np.random.default_rng(seed)
    failures = []
    with forced_kernels() if force_kernels else contextlib.nullcontext():
        for index in range(cases):
            a, axes, label = random_case(rng)
            want = np.ascontiguousarray(np.transpose(a, axes)).tobytes()
            for isa in isas:
                for n_threads in threads:
                    got = api.permute(a, axes, isa=isa, threads=n_threads)
                    if got.tobytes() != want:
                        failures.append(f"case {index}: {label} axes={axes} isa={isa} threads={n_threads}")
            if progress and (index + 1) % 50 == 0:
                progress(f"{index + 1}/{cases} cases, {len(failures)} failures")
    return CheckReport(cases, failures)
