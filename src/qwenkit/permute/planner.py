"""The planner: turn "copy view A into array B" into one kernel call, in pure Python (no C, no memory touched).

A permutation is a strided copy: ``np.transpose(a, axes)`` is a view whose strides, in output-axis order, are A's;
the output's strides are B's. Every decision below is made on (shape, A strides, B strides, itemsize) alone:

1. **Raw elements.** Any dtype is moved as raw elements of ``width`` bytes, the largest of 16/8/4/2/1 dividing its
   itemsize; a larger or odd itemsize (structs, 24-byte records) becomes a trailing unpermuted axis of such elements.
2. **Normalize.** Drop size-1 axes; flip axes whose output stride is negative (moving both base pointers); order axes
   by decreasing output stride (the destination order every loop follows).
3. **Fuse** neighbouring axes that are dense in both A and B (HPTT's ``fuseIndices``).
4. **Widen.** A trailing axis contiguous in both A and B of 2-16 bytes folds into one wider element (a uint8 RGBA
   pixel is moved as one 4-byte element), the icodywu trick.
5. **Classify** into a kernel class: ``rows`` (A's and B's unit-stride axis coincide: memcpy of runs), ``tile`` (a
   block transpose between A's fastest axes and B's contiguous axes; several short axes may be packed on each
   side of the block, see ``_grow_block``; A's fastest axis may be strided, as in a sliced view), ``strided``
   (common runs too short for memcpy, copied item by item), ``interleave``/``deinterleave`` (a short axis beside a
   long one: whole AVX-512 or AVX2 registers permuted by table, see ``_plan_short_axis``), or ``numpy`` when the cost
   model predicts no gain (tiny arrays, outputs without a unit-stride axis, layouts NumPy's loops already copy
   near bandwidth).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from qwenkit.core import system
from qwenkit.permute import codegen
from qwenkit.permute.isa import compiler_flags

MIN_KERNEL_BYTES = 64 * 1024
"""Below this, the copy is delegated to NumPy: the kernel path's fixed cost per call (plan look-up, overlap check,
two data pointers, the cffi call; ``bench.call_costs``, in benchmarks/results/permute_sweep.md) is more than
NumPy's whole transposed copy. At 32 KiB, the former threshold, a 64x128 float32 transpose ran slower by the kernels
than by NumPy."""
STREAM_MIN_BYTES = 8 * 1024 * 1024
"""Output size from which non-temporal stores pay off. Measured: at 4 MiB (20-D all-2) direct stores ran 6.7x NumPy
against 5.4x streamed (the output stays in cache); from 16 MiB streaming won by 1.5-2.5x."""
BLOCK_TARGET_BYTES = 512
"""A block side is grown by packing further short axes until it spans this many bytes (or cannot grow)."""
MIN_ROW_BYTES_FOR_ROWS = 64
"""Common runs shorter than this are copied item by item (``strided``) rather than by one memcpy call each."""
ROWS_INPUT_ORDER_MIN_BYTES = 128
"""Row copies with runs at least this long walk the input in sequence where the locality model ties (``_order_outer``).
Measured on an AVX-512 Xeon, float32 (8, S, 32, D) -> (8, 32, S, D), 64 MiB, in-sequence / output-order time:
64-byte runs 1.17x (slower, so they keep output order), 128 B 0.89x, 256 B 0.42x, 512 B 0.45x, 1 KiB 0.82x, 2 KiB
0.92x, 4 KiB 0.93x; the benchmark's attention case (512 B) went from 0.90x to 1.8-2.0x NumPy with one thread."""
SPAN_RUN_BYTES = (320, 1024)
"""Row copies whose runs are at least the first and under the second this many bytes stream their runs in spans
(``Plan.spans``, codegen ``qk_rows``) where the next-outer axis continues each run in the output. Ad-hoc interleaved
A/Bs on the Xeon, float32 (B, S, H, D) -> (B, H, S, D) into np.empty, spans / run by run x NumPy: 128-byte runs
1.0-1.7 / 1.5-2.0 (lost), 256 B 2.4-2.7 / 2.6-2.8 (lost), 320 B 1.73 / 1.36, 384 B 1.5-1.8 / 1.0-1.2, 512 B
1.4-1.7 / 1.1-1.2, 640 B 1.26 / 1.10, 1 KiB (3-D (1, 0, 2)) 1.2-1.5 / 1.2-1.5 (even), 2 KiB 1.21 / 1.66 (lost),
4 KiB 1.37 / 1.36; the committed A/B is ``bench.span_experiment``. The window is ours, fitted to these runs."""
MIN_PLANE_ELEMENTS = 64
"""A block smaller than this many elements spends more on tile bookkeeping than on moving data; delegated."""
TILE_SHAPE_TABLES: dict[str, dict[int, tuple[int, int, bool]]] = {
    "intel": {1: (128, 64, True), 2: (256, 128, True), 4: (128, 128, True), 8: (128, 128, True),
              16: (256, 128, True)},
    "amd": {1: (64, 64, True), 2: (256, 128, True), 4: (128, 64, True), 8: (256, 128, True), 16: (256, 128, True)},
    "amd-family-23": {1: (256, 256, True), 2: (512, 256, True), 4: (128, 64, True), 8: (128, 256, True),
                      16: (128, 512, True)}}
"""Per CPU vendor (``tile_table_name``), per element width: (bytes of each input row a macro tile reads, bytes of each
output row it writes, column order). Walking tiles down a column of narrow tiles reads each input row in sequence,
and the kernel fetches the next tile of the walk ahead (docs/permute.md, "Prefetch"); the fewer input rows a tile
spans (its output-row bytes over the element width), the fewer streams are in flight.

``intel``, measured by ``benchmarks/permute_bench.py --tiles`` on 8192^2 transposes on the AVX-512 Xeon
(benchmarks/results/permute_xeon/permute_tiles.md, the figures of each run in docs/permute.md, "Tile order"): uint8
in row order with 1 KiB runs (the shape before commit 967278f) ran at 13 % of np.copyto against 39-45 % in column
order; float64 47-55 % as 256 x 256 against 64-70 % as 128 x 128; complex128 34-35 % as 256 x 512 against 67-75 % as
256 x 128. Shapes within about 10 points of each other trade places from run to run on this VM (int16: the table's
shape the fastest of four in one run, the slowest in the next), so the table keeps a shape unless another wins in
every run. It is also the table of every machine that is not AMD's (untuned there).

``amd``, measured on an AMD EPYC Zen 4 (1 MiB 8-way L2) by ``benchmarks/permute_bench.py --tile-table``
(``bench.tile_table_experiment``: every candidate on every tiled matrix case of 8 MiB or more, into aligned and
np.empty outputs; benchmarks/results/permute_zen4/permute_tile_table.md): there the kernel's gather reads alone took
53-92 % of its time (the diagnosis of 2026-12-04; 42-84 % in permute_limits.md of 2026-12-06), and tiles over fewer
input rows won. Geometric mean of % of np.copyto over
the cases and both outputs in two runs of 2026-12-04 (17:51 and 17:54; the reports of commit 38a14a6), the Intel
entry / this one: uint8 128 x 64 25 / 64 x 64 29-30, int16 256 x 128 34-35 / 64 x 128 37 (64 x 64 36-39: the two
trade places), float32 128 x 128 45-48 / 128 x 64 50-54; float64 and complex128 keep the Intel entry (no other
shape won in every run). That was with the earlier micro-tile order (output rows outermost). Remeasured on the same
kind of guest (family 25 model 17) with the present order (commit 59e1512) in four runs on 2026-12-06: the table as it
was with the alias cut on (21:11, permute_tile_table_run1.md) and off (21:15, a wrapper not committed), then this
table with the cut off (21:46, permute_tile_table.md) and forced on (21:50, permute_tile_table_alias_cut_on.md),
geomean % of np.copyto, old entry / new entry: int16 64 x 128 39-41 / 256 x 128 44-45, float64 128 x 128 55-64 /
256 x 128 62-68, in all four runs; uint8, float32 and complex128 keep theirs. The AVX2 guest of the first benchmark
runs (family not recorded) took the table too, unmeasured with it.

``amd-family-23``, measured on an AMD EPYC Zen 2 guest (family 23 model 49, 512 KiB 8-way L2, AVX2) by the same
experiment with the present micro-tile order (input rows outermost) and no L2 alias cut (``ALIAS_CUT``), candidates
64-512 x 64-512 bytes; benchmarks/results/permute_tile_table_run1.md (01:23, before the table was set) and
permute_tile_table.md (01:41, after), geometric mean of % of np.copyto, the ``amd`` entry / this one, run 1 and run 2:
uint8 64 x 64 30 and 35 / 256 x 256 40 and 47; int16 64 x 128 61 and 61 / 512 x 256 70 and 74; float64 128 x 128 42
and 38 / 128 x 256 56 and 44; complex128 256 x 128 40 and 42 / 128 x 512 57 and 64. float32 keeps 128 x 64 (54.0 and
52.4 %), though 128 x 128 (56.5, 54.5) and 256 x 256 (55.0, 54.6) were ahead in both runs, by about the runs' spread:
the shapes trade per case. 128 x 128 takes 2-D 8192^2 (aligned) from 33-34 to 47-48 % and 3-D (2, 0, 1) from 44-45
to 59-61 %, and costs NCHW->NHWC into an aligned output 90-91 -> 59 % (run 1), one of the cases at the issue's
75 %. A choice per plane (by how far apart a column walk's output rows lie) is not built."""
TILE_SHAPES: dict[int, tuple[int, int, bool]] | None = None
"""An override of the machine's table (``check.forced_kernels``, ``bench.tile_table_experiment``); None: the table of
``tile_table_name()``."""


def tile_table_name() -> str:
    """The row of ``TILE_SHAPE_TABLES`` for this machine: ``amd-family-23`` on AMD CPUs of family 23 (measured on a
    Zen 2, model 49; Zen and Zen+ share the family and take it unmeasured), ``amd`` on other AMD CPUs, ``intel`` on
    every other one."""
    if system.cpu_vendor() != "AuthenticAMD":
        return "intel"
    return "amd-family-23" if system.cpu_family() == 23 else "amd"


def tile_shapes() -> dict[int, tuple[int, int, bool]]:
    """The macro tile shapes the planner uses: the override ``TILE_SHAPES`` if set, else this machine's table."""
    return TILE_SHAPES if TILE_SHAPES is not None else TILE_SHAPE_TABLES[tile_table_name()]


WHOLE_ROW_STRIPS: dict[str, bool] = {"intel": True, "amd": False, "amd-family-23": False}
"""Per CPU vendor (``tile_table_name``): whether a whole-line tile plan whose output plane starts off a cache line
and whose rows lie back to back (a plain np.empty output, 16 bytes past a line) streams strips of whole rows, two
partial lines a strip (True), or keeps its whole-line tiles and stores the partial lines of each row directly
(False). The strips (commit 4daea27) replaced direct stores of the whole plane; they were not compared with
whole-line tiles then, and are kept on the Xeon, unmeasured there against them. On the Zen 4 a strip reads every
input row of the block in turn, and the tiles won: the rows "np.empty, other row strips" of
benchmarks/results/permute_zen4/permute_tile_table.md (``bench.tile_table_experiment``) time the other choice in the
same loop."""


SQUARE_STRIPS: dict[str, bool] = {"intel": False, "amd": True, "amd-family-23": False}
"""Per table (``tile_table_name``): whether a whole-line tile plan of an ISA with a square register tile
(``codegen.square_shape``: AVX-512, elements of 2, 4 or 8 bytes) walks square strips instead (``Plan.strips``): the
tile kernel reads the input rows of one output line (32 int16, 16 float32) or two (16 float64) along the whole plane
and streams each square's output lines straight from the registers, with no tile buffer and no software prefetch.
On the Zen 4 guest (``amd``) the first prototype (an ad-hoc C program, 8192^2 float32, 16 rows x whole rows) ran at
86-90 % of memcpy where the tile kernel ran at 50-56 %; the committed A/B is the column "strips off" of the
diagnosis (benchmarks/results/permute_zen4/permute_limits.md). Off on the Xeon (``intel``, AVX-512 too): not
measured there. The Zen 2 (``amd-family-23``) runs AVX2, which has no square step."""

STRIP_MIN_RUN_BYTES = 1024
"""Square strips (``SQUARE_STRIPS``) only for planes whose input rows are at least this long: a strip reads each of
its input rows as one run, and the hardware prefetchers need a long one. Ad-hoc interleaved A/Bs on the Zen 4 guest,
% of np.copyto, strips / tiles: NHWC->NCHW float32 (256-byte runs) 57 / 75, 256^3 float32 (0, 2, 1) (1 KiB runs)
81 / 58; in the C prototype (8192^2 float32) strips over 1, 2 and 4 KiB of each row gave 66-72, 78-80 and 86-90 %."""

ALIAS_CUT: dict[str, bool] = {"intel": True, "amd": True, "amd-family-23": False}
"""Per table (``tile_table_name``): whether a tile whose input rows alias in the L2 gets fewer input rows and a long
p side (``_alias_free_tq``). Measured with the earlier micro-tile order (output rows outermost, which reads each input
line in passes and needs it to stay cached between them) on the Xeon; kept there, unmeasured with the present order
(input rows outermost: each input line is read whole in one pass). Off on the Zen 2, where it cost the 8192^2 float32
transpose a third of its speed (bench.tile_table_experiment, docs/permute.md, "Micro-tile order"). Kept on the Zen 4
(``amd``), where it changes the plans of three matrix cases: in the two committed runs of the present table with
it off and forced on (benchmarks/results/permute_zen4/permute_tile_table.md, 21:46, and
permute_tile_table_alias_cut_on.md, 21:50, ``--alias-cut on``), % of np.copyto into aligned / np.empty outputs, off
against on: 256^3 float32 (2, 1, 0) 43.8 / 39.7 against 58.8 / 51.2, (1, 2, 0) 76.5 / 68.3 against 74.8 / 66.4,
uint8 (2, 1, 0) 33.5 / 22.4 against 26.6 / 20.4 (34.3 / 23.1 with the cut in the 21:11 run: the runs' spread)."""

THREAD_MIN_BYTES = 4 * 1024 * 1024
"""Default threading: one thread per this many bytes of output, at most the usable cores."""
MIN_BYTES_PER_THREAD = 4 * 1024 * 1024
"""An explicit ``threads`` is an upper bound: below this much output per thread, dispatching a chunk to another
thread cost more than it saved (1.6-4 MiB cases ran at 0.2-0.8x NumPy with 2 threads, benchmarks/results)."""
STREAM_TILES, STREAM_WHOLE_ROWS = 1, 2
STREAM_MODES = {0: "off", STREAM_TILES: "whole-line tiles",
                STREAM_WHOLE_ROWS: "whole rows, their unaligned ends stored normally"}
DENSE_MODE = ("the whole block as one contiguous run, except in planes whose rows all start on a cache line "
              "(whole-line tiles)")
STRIDED_MIN_INPUT_RUN = 256
"""On ISAs without masked stores, blocks with output runs shorter than a vector lane are copied element by element
along the input's unit-stride axis only when that axis has at least this many elements. Measured in this session's
benchmark runs: NCHW->NHWC with 3 channels, a run of 50176 pixels, beat NumPy; the 6-D random uint8 layout, whose
input run is 8 elements, ran slower than NumPy that way. The threshold between the two is not measured."""
WHOLE_ROW_MIN_BYTES = 256
"""Output rows that are not line-aligned alike are streamed whole when at least this long (the two partial lines at
their ends are written with ordinary stores)."""


@dataclass(frozen=True)
class Axes:
    """Normalized axes: extents and byte strides on both sides, in destination order (last = B's fastest)."""

    shape: tuple[int, ...]
    sa: tuple[int, ...]
    sb: tuple[int, ...]

    def take(self, indices) -> Axes:
        return Axes(tuple(self.shape[i] for i in indices), tuple(self.sa[i] for i in indices),
                    tuple(self.sb[i] for i in indices))


@dataclass(frozen=True)
class Chunk:
    """One thread's share: flat outer range and output-row (p) range of the block."""

    o0: int
    o1: int
    p0: int = 0
    p1: int = 0


@dataclass(frozen=True, eq=False)
class Plan:
    """An inspectable plan: which kernel, on which normalized axes, in which chunks. ``describe()`` reads it out."""

    kind: str  # "empty" | "numpy" | "rows" | "tile" | "interleave" | "deinterleave" | "strided"
    reason: str
    isa: str
    width: int
    nbytes: int
    offset_a: int = 0
    offset_b: int = 0
    outer: Axes = Axes((), (), ())
    row_bytes: int = 0  # rows: bytes per run; strided: bytes per item
    inner: Axes = Axes((), (), ())  # strided: the innermost axis
    p_axes: Axes = Axes((), (), ())  # tile: axes packed on the A-contiguous side (innermost first)
    q_axes: Axes = Axes((), (), ())  # tile: axes packed on the B-contiguous side (innermost first)
    pb: np.ndarray | None = field(default=None, repr=False)  # tile: B byte offset of each output row
    qa: np.ndarray | None = field(default=None, repr=False)  # tile: A byte offset of each input row
    tp: int = 0
    tq: int = 0
    stream: int = 0  # rows: 0/1; tile: 0 direct, STREAM_TILES, STREAM_WHOLE_ROWS
    dense: bool = False  # tile: the block's output is one contiguous span, streamed whole
    column_order: bool = False  # tile: walk macro tiles down columns (True) or along rows
    whole_row_strips: bool = True  # tile, whole-line tiles: back-to-back output rows off a line go out as row strips
    strips: bool = False  # tile, whole-line tiles: square strips straight to the output (SQUARE_STRIPS)
    probe: int = 0  # tile, diagnosis only: one of codegen.PROBE_READS, PROBE_WRITES, PROBE_NO_PREFETCH
    spans: bool = False  # rows: stream runs in spans of several runs (SPAN_RUN_BYTES)
    short_idx: np.ndarray | None = field(default=None, repr=False)  # (de)interleave: permute index vectors
    short_mask: np.ndarray | None = field(default=None, repr=False)  # (de)interleave: lane masks
    chunks: tuple[Chunk, ...] = ()
    threads: int = 1

    @property
    def square_strips(self) -> bool:
        """Whether the tile kernel walks square strips: ``strips`` takes effect on whole-line tile plans only."""
        return self.strips and self.stream == STREAM_TILES

    @property
    def outer_count(self) -> int:
        return math.prod(self.outer.shape)

    def describe(self) -> str:
        lines = [f"kind={self.kind} ({self.reason}); isa={self.isa}; element={self.width} B; {self.nbytes} bytes; "
                 f"threads={self.threads}"]
        if self.kind == "tile":
            lines.append(f"block {math.prod(self.p_axes.shape)} x {math.prod(self.q_axes.shape)}: p axes "
                         f"{self.p_axes.shape} (A-contiguous), q axes {self.q_axes.shape} (B-contiguous); "
                         + (f"square strips of {codegen.square_shape(self.isa, self.width)[1]} input rows along the "
                            "plane, streamed from the registers; "
                            if self.square_strips else
                            f"macro tile {self.tp} x {self.tq} in {'column' if self.column_order else 'row'} order; ")
                         + f"streaming stores: {DENSE_MODE if self.dense else STREAM_MODES[self.stream]}")
        if self.kind in {"interleave", "deinterleave"}:
            lines.append(f"short axis {self.q_axes.shape[0]} x long axis {self.p_axes.shape[0]}, "
                         + (f"{int(np.count_nonzero(self.short_mask))} masked register permutes"
                            if self.isa == "avx512" else f"{self.q_axes.shape[0] ** 2} byte shuffles (pshufb)")
                         + f" per {self.q_axes.shape[0]} registers")
        if self.kind == "rows":
            spans = "; streamed in spans of several runs" if self.spans else ""
            lines.append(f"runs of {self.row_bytes} bytes{spans}")
        if self.kind == "strided":
            lines.append(f"inner axis {self.inner.shape[0]} (A stride {self.inner.sa[0]}, B {self.inner.sb[0]}), "
                         f"items of {self.row_bytes} bytes")
        if self.kind in {"rows", "tile", "strided", "interleave", "deinterleave"}:
            lines.append(f"outer loops {self.outer.shape} (A strides {self.outer.sa}, B strides {self.outer.sb})")
        return "\n".join(lines)


def element_width(itemsize: int) -> int:
    """The largest kernel element width (16, 8, 4, 2, 1 bytes) that divides ``itemsize``."""
    return next(w for w in reversed(codegen.WIDTHS) if itemsize % w == 0)


def normalize(shape, strides_a, strides_b, itemsize: int) -> tuple[Axes, int, int, int]:
    """Steps 1-4: raw elements, size-1 axes dropped, output strides made positive, destination order, fused, widened.

    Returns ``(axes, width, offset_a, offset_b)`` where the offsets (bytes) move the base pointers to the first
    element of the flipped axes.
    """
    width = element_width(itemsize)
    dims = [(n, sa, sb) for n, sa, sb in zip(shape, strides_a, strides_b, strict=True) if n != 1]
    if itemsize > width:
        dims.append((itemsize // width, width, width))
    offset_a = offset_b = 0
    flipped = []
    for n, sa, sb in dims:
        if sb < 0:
            offset_a += (n - 1) * sa
            offset_b += (n - 1) * sb
            sa, sb = -sa, -sb
        flipped.append((n, sa, sb))
    flipped.sort(key=lambda d: d[2], reverse=True)
    fused: list[tuple[int, int, int]] = []
    for n, sa, sb in flipped:
        if fused:
            pn, psa, psb = fused[-1]
            if psa == sa * n and psb == sb * n:
                fused[-1] = (pn * n, sa, sb)
                continue
        fused.append((n, sa, sb))
    if fused:
        n, sa, sb = fused[-1]
        if sa == width and sb == width:
            wider = math.gcd(n * width, codegen.WIDTHS[-1])
            if wider > width:
                run_bytes, width = n * width, wider
                fused.pop()
                if run_bytes > wider:
                    fused.append((run_bytes // wider, wider, wider))
    axes = Axes(tuple(d[0] for d in fused), tuple(d[1] for d in fused), tuple(d[2] for d in fused))
    return axes, width, offset_a, offset_b


def make_plan_for(shape, strides_a, strides_b, itemsize: int, *, isa: str, threads: int | None,
                  cores: int = 1) -> Plan:
    """Plan copying a view of ``shape``/``strides_a`` into an array with ``strides_b`` (bytes).

    ``threads=None`` picks one thread per ``THREAD_MIN_BYTES`` of output, at most ``cores``; an explicit ``threads``
    is an upper bound, capped at ``cores`` (more threads than cores only take turns) and at one thread per
    ``MIN_BYTES_PER_THREAD``. The plan's ``threads`` is the number actually used (no more than its chunks).
    """
    nbytes = math.prod(shape) * itemsize
    cores = max(1, cores)
    wanted = (min(threads, cores, max(1, nbytes // MIN_BYTES_PER_THREAD)) if threads is not None
              else max(1, min(cores, nbytes // THREAD_MIN_BYTES)))
    plan = _classify(shape, strides_a, strides_b, itemsize, isa=isa, threads=wanted, cores=cores)
    return dataclasses.replace(plan, threads=max(1, min(wanted, len(plan.chunks))))


def _classify(shape, strides_a, strides_b, itemsize: int, *, isa: str, threads: int | None, cores: int) -> Plan:
    nbytes = math.prod(shape) * itemsize
    if nbytes == 0:
        return Plan("empty", "nothing to copy", isa, 1, 0)
    axes, width, offset_a, offset_b = normalize(shape, strides_a, strides_b, itemsize)
    common = dict(isa=isa, width=width, nbytes=nbytes, offset_a=offset_a, offset_b=offset_b)
    if nbytes < MIN_KERNEL_BYTES:
        return Plan("numpy", f"smaller than {MIN_KERNEL_BYTES} bytes", **common)
    n_threads = threads if threads is not None else max(1, min(cores, nbytes // THREAD_MIN_BYTES))
    ndim = len(axes.shape)
    if ndim == 0 or (axes.sa[-1] == width and axes.sb[-1] == width):
        return _plan_rows(axes, n_threads, common)
    if axes.sb[-1] != width:
        return Plan("numpy", "the output has no unit-stride axis", **common)
    p = min(range(ndim), key=lambda k: (abs(axes.sa[k]) if axes.sa[k] else math.inf, -axes.shape[k]))
    if p == ndim - 1 or axes.sa[p] == 0:
        return Plan("numpy", "the input's smallest stride is along the output's unit-stride axis: a strided copy "
                    "that NumPy's loop already streams", **common)
    if axes.sa[p] == -width:
        # A reversed input axis (a[::-1]): walk it forwards in A and backwards in B, so the SIMD kernel applies.
        n = axes.shape[p]
        common = {**common, "offset_a": common["offset_a"] + (n - 1) * axes.sa[p],
                  "offset_b": common["offset_b"] + (n - 1) * axes.sb[p]}
        axes = Axes(axes.shape, tuple(-s if k == p else s for k, s in enumerate(axes.sa)),
                    tuple(-s if k == p else s for k, s in enumerate(axes.sb)))
    return _plan_tile(axes, p, n_threads, common)


def _plan_strided(axes: Axes, run: int, n_threads: int, common: dict, reason: str) -> Plan:
    """Item-by-item copy along the last axis; an item is ``run`` bytes (one element or a short common run)."""
    ndim = len(axes.shape)
    outer = _order_outer(axes.take(range(ndim - 1)), n_threads)
    return Plan("strided", reason, outer=outer, inner=axes.take([ndim - 1]), row_bytes=run,
                chunks=_split_outer(math.prod(outer.shape), n_threads), **common)


def _plan_rows(axes: Axes, n_threads: int, common: dict) -> Plan:
    width = common["width"]
    if not axes.shape:
        return Plan("rows", "a single element", row_bytes=width, chunks=(Chunk(0, 1),), **common)
    row_bytes = axes.shape[-1] * width
    outer = axes.take(range(len(axes.shape) - 1))
    if not outer.shape and n_threads > 1:
        # One long contiguous run: cut it into equal, line-aligned pieces, one outer step each.
        piece = -(-row_bytes // n_threads // 64) * 64
        count = -(-row_bytes // piece)
        if row_bytes % piece == 0:
            return Plan("rows", "contiguous copy split across threads", row_bytes=piece,
                        outer=Axes((count,), (piece,), (piece,)), chunks=_split_outer(count, n_threads), **common)
    if row_bytes < MIN_ROW_BYTES_FOR_ROWS and outer.shape:
        # Short common runs: memcpy per run costs more than the run; copy them item by item along the next axis.
        return _plan_strided(outer, row_bytes, n_threads, common, f"common runs of only {row_bytes} bytes")
    outer = _order_outer(outer, n_threads, input_sequence_on_ties=row_bytes >= ROWS_INPUT_ORDER_MIN_BYTES)
    # Runs stream whatever their alignment: their partial end lines are stored normally (stream_row_unaligned).
    stream = int(_streams(common) and row_bytes >= WHOLE_ROW_MIN_BYTES)
    # Runs of a few hundred bytes whose next-outer axis continues them in the output stream in spans of several runs
    # (codegen.SPAN_BYTES), so that an output off a cache line stores two partial lines per span, not per run.
    spans = bool(stream and SPAN_RUN_BYTES[0] <= row_bytes < SPAN_RUN_BYTES[1] and len(outer.shape) >= 2
                 and outer.sb[-2] == row_bytes)
    if spans:
        outer = _span_cycles(outer, row_bytes)
    return Plan("rows", "input and output share their unit-stride axis", row_bytes=row_bytes, outer=outer,
                stream=stream, spans=spans, chunks=_split_outer(math.prod(outer.shape), n_threads), **common)


def _span_cycles(outer: Axes, row_bytes: int) -> Axes:
    """A span copy holds one cycle of the innermost outer axis, times the runs of each span, in its buffer
    (codegen ``qk_rows``). When that axis is too long for spans of ``codegen.SPAN_BYTES`` (BHSD->BSHD: 2,048
    positions fastest, the heads next), it is cut into blocks of the largest divisor of its length that fits, and the
    blocks go outside the span axis: (..., heads, positions) becomes (..., position blocks, heads, positions in a
    block). Each head then still reads whole blocks of positions in sequence (the same run order inside a block, 32 KiB
    pieces for 64 positions of 512 bytes), and the spans can grow. Below 8 positions a block, it is left as it is."""
    span_runs = -(-codegen.SPAN_BYTES // row_bytes)
    fits = codegen.SPAN_BUFFER_BYTES // (span_runs * row_bytes + 128)
    cycle = outer.shape[-1]
    if cycle <= fits:
        return outer
    block = max((d for d in range(1, fits + 1) if cycle % d == 0), default=1)
    if block < 8:
        return outer
    head = outer.take(range(len(outer.shape) - 2))
    return Axes(head.shape + (cycle // block, outer.shape[-2], block),
                head.sa + (outer.sa[-1] * block, outer.sa[-2], outer.sa[-1]),
                head.sb + (outer.sb[-1] * block, outer.sb[-2], outer.sb[-1]))


def _streams(common: dict) -> bool:
    """Whether non-temporal stores are worth it: the ISA has them and the output is large."""
    return codegen.ISA_SPECS[common["isa"]].stream != "" and common["nbytes"] >= STREAM_MIN_BYTES


def _continuation(axes: Axes, side: list[int], taken: list[int], strides) -> int | None:
    """The axis, not in ``taken``, whose stride (in ``strides``) continues ``side``'s last axis densely."""
    last = side[-1]
    want = strides[last] * axes.shape[last]
    return next((k for k in range(len(axes.shape)) if k not in taken and strides[k] == want), None)


def _grow_block(axes: Axes, p: int, q: int, width: int) -> tuple[list[int], list[int]]:
    """Pack short axes into both sides of the block: the GenTT idea of giving a register tile several small axes.

    The p side starts at A's unit-stride axis and grows by the axis that continues it densely in A; the q side
    starts at B's unit-stride axis (the last) and grows likewise in B. The smaller side (in bytes) grows first, an
    axis goes to one side only, and growth stops at ``BLOCK_TARGET_BYTES`` per side.
    """
    p_side, q_side = [p], [q]

    def extent(side):
        return math.prod(axes.shape[k] for k in side) * width

    while True:
        grew = False
        for side, strides in sorted(((p_side, axes.sa), (q_side, axes.sb)), key=lambda s: extent(s[0])):
            if extent(side) >= BLOCK_TARGET_BYTES:
                continue
            k = _continuation(axes, side, p_side + q_side, strides)
            if k is not None:
                side.append(k)
                grew = True
                break
        if not grew:
            return p_side, q_side


def rows_per_cache_set(offsets: np.ndarray, geometry: tuple[int, int, int]) -> int:
    """The most rows starting at byte ``offsets`` (relative to one base) that map to one set of a cache of
    ``geometry = (sets, ways, line bytes)``: set ``(offset // line) mod sets`` of each row's first line, the
    virtual-address view (with 2 MiB pages, which NumPy asks for on large arrays, the physical one too). A row
    stride that is a multiple of ``sets * line`` (128 KiB on a 2 MiB 16-way L2) puts every row in one set."""
    sets, _, line = geometry
    if offsets.size == 0:
        return 0
    return int(np.bincount((offsets // line) % sets).max())


def _alias_free_tq(qa: np.ndarray, tq: int, line_elements: int, geometry: tuple[int, int, int]) -> int:
    """Shrink a macro tile's input rows while more of them fall into one L2 set than the set has ways (halving, down
    to ``line_elements``: one whole cache line of each output row). Measured on the AVX-512 Xeon (2 MiB 16-way L2),
    3-D 256^3 float32 (1, 2, 0), whose input rows lie 256 KiB apart: 32 rows a tile 33 %, 16 rows 49-50 % of
    np.copyto (two runs of ``bench.alias_experiment``, the latest in benchmarks/results/permute_xeon/permute_tiles.md).
    The form of the rule (more rows in one set than it has ways) is ours; it was measured on that one machine."""
    ways = geometry[1]
    while tq // 2 >= line_elements and tq % 2 == 0 and rows_per_cache_set(qa[:tq], geometry) > ways:
        tq //= 2
    return tq


def _offsets(axes: Axes, side: list[int], strides) -> np.ndarray:
    """Byte offsets of every multi-index over ``side`` (first axis fastest), as int64."""
    offsets = np.zeros(1, dtype=np.int64)
    for k in side:
        offsets = (offsets[None, :] + np.arange(axes.shape[k], dtype=np.int64)[:, None] * strides[k]).reshape(-1)
    return offsets


def _plan_tile(axes: Axes, p: int, n_threads: int, common: dict) -> Plan:
    """Block transpose between input axis ``p`` (A's fastest: unit stride, or strided for sliced inputs) and the
    output's unit-stride axis (the last)."""
    width, isa = common["width"], common["isa"]
    ndim = len(axes.shape)
    p_side, q_side = _grow_block(axes, p, ndim - 1, width)
    n_p = math.prod(axes.shape[k] for k in p_side)
    n_q = math.prod(axes.shape[k] for k in q_side)
    if n_p * n_q < MIN_PLANE_ELEMENTS:
        return Plan("numpy", f"block of {n_p} x {n_q} elements is too small to tile", **common)
    mp, mq = codegen.micro_shape(isa, width)
    short = _plan_short_axis(axes, p, n_threads, common)
    if short is not None:
        return short
    if not codegen.ISA_SPECS[isa].masked and axes.sa[p] == width:
        # Without masked loads/stores, short runs would go through the tile buffers element by element (measured
        # 0.5-0.8x NumPy). Short output runs (NCHW->NHWC with 3 channels): each element is copied along the long
        # input run instead, so the input streams and the short axis becomes an outer loop (NumPy's own loop runs
        # the 3 channels innermost). Short input runs (NHWC->NCHW): that is NumPy's own loop order already; it keeps
        # them.
        if n_q < mq and isa != "scalar" and axes.shape[p] >= STRIDED_MIN_INPUT_RUN:
            return _plan_strided(axes.take([k for k in range(ndim) if k != p] + [p]), width, n_threads, common,
                                 f"output runs of {n_q} elements are shorter than a vector lane and this ISA has no "
                                 "masked stores: element copies along the input's unit-stride axis")
        if n_q < mq and isa != "scalar":
            return Plan("numpy", f"output runs of {n_q} elements are shorter than a vector lane and this ISA has "
                        f"no masked stores; the input's runs ({axes.shape[p]}) are too short to copy along", **common)
        if 2 * n_p <= mp:
            return Plan("numpy", f"input runs of {n_p} elements fill at most half a vector and this ISA has no "
                        "masked loads", **common)
    qa = _offsets(axes, q_side, axes.sa)
    tile_p_bytes, tile_q_bytes, column_order = tile_shapes()[width]
    tq = max(mq, tile_q_bytes // width)
    geometry = system.l2_cache_geometry()
    reason = "block transpose between the two unit-stride sides"
    if ALIAS_CUT[tile_table_name()] and (aliasing := rows_per_cache_set(qa[:tq], geometry)) > geometry[1]:
        # Input rows that alias in the L2: fewer rows a tile, and the p side packs every further axis that continues
        # it densely in A, so that a column of tiles reads each input row as one long run (3-D (2, 1, 0) float32,
        # 16 rows a tile: 1 KiB runs 29-44 %, 256 KiB runs 47-49 % of np.copyto in two runs; permute_tiles.md).
        shrunk = _alias_free_tq(qa, tq, max(mq, 64 // width), geometry)
        reason += (f"; {aliasing} of a tile's {tq} input rows share one L2 set of {geometry[1]} ways: {shrunk} rows "
                   "a tile, each input row read as one long run")
        tq = shrunk
        while (k := _continuation(axes, p_side, p_side + q_side, axes.sa)) is not None:
            p_side.append(k)
        n_p = math.prod(axes.shape[k] for k in p_side)
    pb = _offsets(axes, p_side, axes.sb)
    tp = max(mp, -(-(tile_p_bytes // width) // mp) * mp)
    while tp > mp and tp * tq * width > codegen.TILE_BUFFER_BYTES:
        tp -= mp
    outer_idx = [k for k in range(ndim) if k not in p_side and k not in q_side]
    outer = _order_outer(axes.take(outer_idx), n_threads)
    aligned_rows = bool(np.all((pb - pb[0]) % 64 == 0))
    stream = 0
    # The block's output rows tile one contiguous span that fits the buffer: stream it whole (any alignment).
    dense = _streams(common) and n_p * n_q * width <= codegen.DENSE_BUFFER_BYTES \
        and int(pb.max()) + n_q * width == n_p * n_q * width and np.unique(pb).size == n_p
    if _streams(common) and aligned_rows and (tq * width) % 64 == 0 and n_q >= tq:
        stream = STREAM_TILES
    elif _streams(common) and not aligned_rows and n_q * width >= WHOLE_ROW_MIN_BYTES \
            and mp * n_q * width <= codegen.TILE_BUFFER_BYTES:
        stream = STREAM_WHOLE_ROWS
        tq = n_q
        tp = max(mp, min(tp, codegen.TILE_BUFFER_BYTES // (n_q * width) // mp * mp))
    square = codegen.square_shape(isa, width)[1]
    strips = bool(SQUARE_STRIPS[tile_table_name()] and square and stream == STREAM_TILES and axes.sa[p] == width
                  and n_q >= square and n_p * width >= STRIP_MIN_RUN_BYTES)
    chunks = _split_planes(math.prod(outer.shape), n_p, n_threads, tp)
    return Plan("tile", reason, outer=outer,
                p_axes=axes.take(p_side), q_axes=axes.take(q_side), pb=pb, qa=qa, tp=tp, tq=tq, stream=stream,
                dense=dense, column_order=column_order, whole_row_strips=WHOLE_ROW_STRIPS[tile_table_name()],
                strips=strips, chunks=chunks, **common)


def plan_variants(plan: Plan) -> list[Plan]:
    """Candidates for measured tuning (``make_plan(..., tune=True)``, FFTW's MEASURE): the same kernel with the
    outer loops in locality, input and output order, with streaming stores as planned or off, and a plan with square
    strips also with macro tiles instead. Every candidate writes the same bytes; with several threads the first outer
    axis (the one split across threads) stays first. The planner's own plan comes first."""
    if plan.kind not in {"rows", "tile", "strided", "interleave", "deinterleave"}:
        return [plan]
    outer = plan.outer
    fixed = list(range(1 if plan.threads > 1 and len(outer.shape) > 1 else 0))
    rest = range(len(fixed), len(outer.shape))
    orders = [list(range(len(outer.shape)))] + [fixed + sorted(rest, key=key) for key in
                                                (lambda k: -abs(outer.sa[k]), lambda k: -abs(outer.sb[k]))]
    stores = {(plan.stream, plan.dense, plan.strips), (plan.stream, False, plan.strips), (0, False, False)}
    if plan.strips:
        stores.add((plan.stream, False, False))
    variants, seen = [], set()
    for order in orders:
        for stream, dense, strips in sorted(stores, reverse=True):
            candidate = dataclasses.replace(plan, outer=outer.take(order), stream=stream, dense=dense, strips=strips)
            key = (candidate.outer, stream, dense, strips)
            if key not in seen:
                seen.add(key)
                variants.append(candidate)
    return variants


SHUFFLE_MAX_WIDTH = 4
"""AVX2 runs its short-axis kernels for elements of up to this many bytes (four or more to a 16-byte register)."""


def has_short_axis_kernels(isa: str, width: int) -> bool:
    """Whether the unit for ``isa``/``width`` holds ``qk_interleave``/``qk_deinterleave`` and the planner uses them
    (AVX-512: bytes need VBMI; AVX2: elements of at most ``SHUFFLE_MAX_WIDTH`` bytes)."""
    if isa == "avx2":
        return width <= SHUFFLE_MAX_WIDTH
    if isa != "avx512":
        return False
    return width != 1 or "-mavx512vbmi" in compiler_flags(isa)


def _plan_short_axis(axes: Axes, p: int, n_threads: int, common: dict) -> Plan | None:
    """A short axis (2..8) next to a long one on the same side: whole registers and a table-driven permutation.

    ``interleave``: the output's unit-stride axis q is short and the input's unit-stride axis p follows it densely
    in the output (NCHW->NHWC with 3 channels): k input rows -> one contiguous output run. ``deinterleave``: the
    mirror image (NHWC->NCHW): p is short and q follows it densely in the input. A tile would fill only k of a
    register's 16-byte lane (or k of its elements) here.
    """
    width, isa = common["width"], common["isa"]
    q = len(axes.shape) - 1
    if not has_short_axis_kernels(isa, width) or axes.sa[p] != width:
        return None
    n_p, n_q = axes.shape[p], axes.shape[q]
    if 2 <= n_q <= codegen.MAX_SHORT_AXIS and n_q * width < codegen.LANE_BYTES and axes.sb[p] == n_q * width:
        kind, short, long_axis, rows = "interleave", q, p, [j * axes.sa[q] for j in range(n_q)]
    elif 2 <= n_p <= codegen.MAX_SHORT_AXIS and n_p * width < 32 and axes.sa[q] == n_p * width:
        kind, short, long_axis, rows = "deinterleave", p, q, [i * axes.sb[p] for i in range(n_p)]
    else:
        return None
    idx, mask = codegen.short_axis_permutation(isa, kind, axes.shape[short], width)
    outer = _order_outer(axes.take([k for k in range(len(axes.shape)) if k not in (short, long_axis)]), n_threads)
    chunks = _split_planes(math.prod(outer.shape), axes.shape[long_axis], n_threads, 64)
    return Plan(kind, f"short axis of {axes.shape[short]} packed with a long one into whole registers",
                outer=outer, p_axes=axes.take([long_axis]), q_axes=axes.take([short]),
                qa=np.asarray(rows, dtype=np.int64), short_idx=idx, short_mask=mask, chunks=chunks, **common)


def _order_outer(outer: Axes, n_threads: int, *, input_sequence_on_ties: bool = False) -> Axes:
    """Loop order of the outer axes (first = outermost), a locality cost model.

    Innermost goes the axis with the smallest stride on either side, outermost the one whose smaller stride is the
    largest: consecutive blocks then share cache lines or continue a stream on at least one side. Measured on the
    6-D benchmark case whose items are 32 bytes apart in A (random #0): 3.2-4.2x NumPy against 1.1-1.2x in
    destination order; elsewhere within the run-to-run noise of destination order (benchmarks/results/permute.md).

    With several threads, the axis with the largest strides on both sides then moves to the front, so that
    splitting the outer range gives threads disjoint memory on both sides. Split along an axis that is
    short-strided in the input (e.g. items 32 bytes apart), two threads share every input line and each reads it
    from memory (measured 0.6x NumPy).

    ``input_sequence_on_ties`` (row copies of at least ``ROWS_INPUT_ORDER_MIN_BYTES``): between axes with the same
    smaller stride on opposite sides (BSHD->BHSD's rows are 512 bytes apart in the input along one axis and in the
    output along the other), the one short-strided in the input goes innermost, so that the input is read in
    sequence, which the hardware prefetcher follows; the scattered side is then the output, whose streaming
    stores need no prefetch. Without it the order of such ties is the axes' own order (output order)."""
    def cost(k: int) -> tuple[int, int]:
        tie_break = -abs(outer.sa[k]) if input_sequence_on_ties else 0
        return -min(abs(outer.sa[k]), abs(outer.sb[k])), tie_break

    order = sorted(range(len(outer.shape)), key=cost)
    outer = outer.take(order)
    if n_threads == 1 or len(outer.shape) < 2:
        return outer
    candidates = [k for k, n in enumerate(outer.shape) if n >= n_threads] or list(range(len(outer.shape)))
    k = max(candidates, key=lambda k: min(abs(outer.sa[k]), abs(outer.sb[k])))
    return outer.take([k, *(i for i in range(len(outer.shape)) if i != k)])


def _split_planes(n_outer: int, n_rows: int, n_threads: int, step: int) -> tuple[Chunk, ...]:
    """Chunks over the outer loop, or, with fewer outer steps than threads, also over each plane's rows (in
    multiples of ``step``), so that every thread has work."""
    if n_outer >= n_threads:
        return tuple(Chunk(c.o0, c.o1, 0, n_rows) for c in _split_outer(n_outer, n_threads))
    pieces = -(-n_threads // n_outer)
    per = -(-n_rows // pieces // step) * step
    return tuple(Chunk(o, o + 1, r0, min(r0 + per, n_rows)) for o in range(n_outer) for r0 in range(0, n_rows, per))


def _split_outer(count: int, n_threads: int) -> tuple[Chunk, ...]:
    n = max(1, min(n_threads, count))
    bounds = [count * i // n for i in range(n + 1)]
    return tuple(Chunk(bounds[i], bounds[i + 1]) for i in range(n) if bounds[i + 1] > bounds[i])
