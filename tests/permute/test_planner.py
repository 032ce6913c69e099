"""The planner on hand-worked layouts: fusion, widening, classification, block packing, thread chunks."""

from __future__ import annotations

import numpy as np
import pytest

from qwenkit.permute import available_isas, codegen, planner
from qwenkit.permute.planner import make_plan_for, normalize


def _plan(a, axes, *, threads=1, isa="avx2", cores=None):
    view = np.transpose(a, axes)
    c_strides = np.empty(view.shape, a.dtype).strides
    return make_plan_for(view.shape, view.strides, c_strides, a.dtype.itemsize, isa=isa, threads=threads,
                         cores=cores or threads)


def test_fuses_axes_that_stay_adjacent_and_dense():
    a = np.empty((4, 5, 6, 7), np.float32)
    view = a.transpose(2, 3, 0, 1)  # (6,7) and (4,5) each stay together
    axes, width, _, _ = normalize(view.shape, view.strides, np.empty(view.shape, a.dtype).strides, 4)
    assert axes.shape == (42, 20) and width == 4


def test_widens_a_short_unpermuted_inner_axis():
    a = np.empty((64, 32, 4), np.uint8)  # RGBA image, transpose H and W
    view = a.transpose(1, 0, 2)
    axes, width, _, _ = normalize(view.shape, view.strides, np.empty(view.shape, np.uint8).strides, 1)
    assert width == 4 and axes.shape == (32, 64)


def test_odd_itemsizes_become_runs_of_smaller_elements():
    axes, width, _, _ = normalize((10, 20), (12, 240), (240, 12), 12)
    assert width == 4 and axes.shape[-1] == 3


def test_negative_output_strides_flip_both_sides():
    axes, _, offset_a, offset_b = normalize((5, 6), (4, 20), (-24, 4), 4)
    assert offset_b == -4 * 24 and offset_a == 4 * 4
    assert all(s > 0 for s in axes.sb)


def test_classes():
    assert _plan(np.empty((512, 512), np.float32), (1, 0)).kind == "tile"
    assert _plan(np.empty((64, 64, 64), np.float32), (1, 0, 2)).kind == "rows"
    assert _plan(np.empty((8,), np.float32), (0,)).kind == "numpy"  # tiny
    assert _plan(np.empty((512, 512), np.float32), (0, 1)).kind == "rows"  # a plain copy


def test_short_axes_are_packed_into_the_block():
    """The TTC case: A's unit axis is 15 long; the next input axis (15) is packed beside it, giving a 225 x 32
    block instead of a 15 x 32 one."""
    plan = _plan(np.empty((16, 32, 15, 32, 15, 15), np.float32), (0, 3, 2, 5, 4, 1))
    assert plan.kind == "tile"
    assert plan.p_axes.shape == (15, 15) and plan.q_axes.shape == (32,)
    assert plan.pb.size == 225 and plan.qa.size == 32


def test_all_size_two_tensor_packs_many_axes():
    rng = np.random.default_rng(0)
    plan = _plan(np.empty((2,) * 16, np.float32), tuple(rng.permutation(16)))
    assert plan.kind == "tile"
    assert len(plan.p_axes.shape) + len(plan.q_axes.shape) >= 4
    assert max(plan.pb.size, plan.qa.size) * plan.width >= planner.BLOCK_TARGET_BYTES


def test_block_offset_tables_address_the_right_bytes(forced_kernels):
    """For the first outer index, output element (i, j) of the block must be input element (j, i) of the block."""
    a = np.arange(6 * 10 * 12, dtype=np.int16).reshape(6, 10, 12)
    plan = _plan(a, (2, 0, 1))
    assert plan.kind == "tile" and plan.width == 2
    expected = np.ascontiguousarray(a.transpose(2, 0, 1)).view(np.uint8).reshape(-1)
    source = a.view(np.uint8).reshape(-1)
    for i in range(plan.pb.size):
        for j in range(plan.qa.size):
            got = expected[plan.offset_b + plan.pb[i] + 2 * j:][:2]
            want = source[plan.offset_a + plan.qa[j] + 2 * i:][:2]
            assert np.array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_chunks_cover_the_work_once(forced_kernels, threads):
    plan = _plan(np.empty((300, 700), np.float32), (1, 0), threads=threads)  # as many cores as threads
    covered = np.zeros(plan.pb.size, int)
    for chunk in plan.chunks:
        assert chunk.o0 == 0 and chunk.o1 == 1
        covered[chunk.p0:chunk.p1] += 1
    assert (covered == 1).all() and plan.threads == threads
    plan3 = _plan(np.empty((40, 300, 70), np.float32), (0, 2, 1), threads=threads)
    assert sum(c.o1 - c.o0 for c in plan3.chunks) == plan3.outer_count


def test_scalar_isa_never_streams():
    plan = _plan(np.empty((2048, 2048), np.float32), (1, 0), isa="scalar")
    assert plan.kind == "tile" and not plan.stream


def test_explicit_threads_are_an_upper_bound():
    small = _plan(np.empty((512, 512), np.float32), (1, 0), threads=2)  # 1 MiB: one thread is cheaper
    assert small.threads == 1
    large = _plan(np.empty((2048, 2048), np.float32), (1, 0), threads=2)  # 16 MiB
    assert large.threads == 2 and len(large.chunks) == 2


def test_threads_split_an_axis_with_large_strides_on_both_sides():
    """Splitting along an axis whose input stride is one 32-byte item would make both threads read every input
    line; the split axis must be far-strided in both arrays."""
    plan = _plan(np.empty((19, 16, 14, 11, 12, 8), np.float32), (4, 1, 2, 0, 3, 5), threads=2)
    assert plan.kind == "strided" and plan.threads == 2
    reach = [min(a, b) for a, b in zip(plan.outer.sa, plan.outer.sb, strict=True)]
    assert reach[0] == max(reach)
    single = _plan(np.empty((19, 16, 14, 11, 12, 8), np.float32), (4, 1, 2, 0, 3, 5), threads=1)
    single_reach = [min(a, b) for a, b in zip(single.outer.sa, single.outer.sb, strict=True)]
    assert single_reach == sorted(single_reach, reverse=True), "one thread: innermost = smallest stride on a side"
    assert single.outer.sa[-1] == 32, "the items 32 bytes apart in A are walked innermost"


def test_explicit_threads_are_capped_at_the_usable_cores(forced_kernels):
    """threads=1000 on a 2-core machine must not start 1000 (or 16) threads: the plan uses at most the cores."""
    a = np.empty((512, 512), np.float32)
    assert _plan(a, (1, 0), threads=1000, cores=2).threads == 2
    assert _plan(a, (1, 0), threads=1000, cores=1).threads == 1
    assert _plan(a, (1, 0), threads=None, cores=2).threads <= 2


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_short_output_runs_without_masks_copy_along_the_long_input_run(dtype):
    """NCHW->NHWC with 3 channels on an ISA without masked stores: element copies along the input's unit-stride
    axis (W*H), the channel axis an outer loop; the reverse layout with short input runs of bytes stays with
    NumPy."""
    from qwenkit.permute import make_plan

    a = np.arange(4 * 3 * 96 * 64).astype(dtype).reshape(4, 3, 96, 64)
    assert planner.STRIDED_MIN_INPUT_RUN <= 96 * 64
    plan = _plan(a, (0, 2, 3, 1), isa="sse2")
    assert plan.kind == "strided" and plan.inner.shape == (96 * 64,)
    assert plan.inner.sa == (a.itemsize,) and plan.inner.sb == (3 * a.itemsize,) and plan.outer.shape == (4, 3)
    short_run = np.empty((16, 3, 4, 8), dtype)  # input runs of 32 elements: too short to copy along
    assert _plan(short_run, (0, 2, 3, 1), isa="sse2").kind == "numpy"
    if a.itemsize == 1:  # 3 bytes fill at most half of a 16-byte vector
        assert _plan(np.ascontiguousarray(a.transpose(0, 2, 3, 1)), (0, 3, 1, 2), isa="sse2").kind == "numpy"
    want = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    for isa in set(available_isas()) & {"sse2", "neon"}:
        for threads in (1, 2):
            run = make_plan(a, (0, 2, 3, 1), isa=isa, threads=threads)
            assert run.plan.kind == "strided" and np.array_equal(run(a), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_avx2_shuffles_a_short_axis_beside_a_long_one(dtype):
    """AVX2 has pshufb but no masked stores: NCHW->NHWC and NHWC->NCHW with 3 channels run the byte-shuffle
    kernels for elements of up to 4 bytes (a 16-byte register holds 4 or more); 8-byte elements do not."""
    from qwenkit.permute import make_plan

    nchw = np.arange(4 * 3 * 96 * 64).astype(dtype).reshape(4, 3, 96, 64)
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    shuffles = nchw.itemsize <= planner.SHUFFLE_MAX_WIDTH
    to_nhwc, to_nchw = _plan(nchw, (0, 2, 3, 1), isa="avx2"), _plan(nhwc, (0, 3, 1, 2), isa="avx2")
    if not shuffles:
        assert {to_nhwc.kind, to_nchw.kind}.isdisjoint({"interleave", "deinterleave"})
        return
    assert (to_nhwc.kind, to_nchw.kind) == ("interleave", "deinterleave")
    assert to_nhwc.short_idx.shape == (3, 3, 16) and "byte shuffles (pshufb)" in to_nhwc.describe()
    if "avx2" in available_isas():
        for threads in (1, 2):
            assert np.array_equal(make_plan(nchw, (0, 2, 3, 1), isa="avx2", threads=threads)(nchw), nhwc)
            assert np.array_equal(make_plan(nhwc, (0, 3, 1, 2), isa="avx2", threads=threads)(nhwc), nchw)


@pytest.mark.parametrize("threads", [1, 2])
def test_row_copies_read_the_input_in_sequence_where_the_locality_model_ties(threads):
    """BSHD->BHSD: rows are one run apart in the input along S and in the output along H; from
    ``ROWS_INPUT_ORDER_MIN_BYTES`` the input-sequential axis goes innermost, shorter runs keep output order."""
    row = planner.ROWS_INPUT_ORDER_MIN_BYTES // 4
    plan = _plan(np.empty((2, 64, 8, row), np.float32), (0, 2, 1, 3), threads=threads, cores=threads)
    assert plan.kind == "rows" and plan.row_bytes == 4 * row
    assert plan.outer.sa[-1] == plan.row_bytes and plan.outer.sb[-1] == 64 * plan.row_bytes
    short = _plan(np.empty((2, 64, 8, row // 2), np.float32), (0, 2, 1, 3), threads=threads, cores=threads)
    assert short.kind == "rows" and short.outer.sb[-1] == short.row_bytes


def test_rows_per_cache_set_counts_first_lines_per_set():
    geometry = (2048, 16, 64)  # 128 KiB span
    offsets = np.array([0, 128 * 1024, 256 * 1024, 64, 8192], np.int64)
    assert planner.rows_per_cache_set(offsets, geometry) == 3
    assert planner.rows_per_cache_set(np.arange(32, dtype=np.int64) * 32768, geometry) == 8
    assert planner.rows_per_cache_set(np.zeros(0, np.int64), geometry) == 0


def test_input_rows_that_alias_in_the_l2_get_shorter_tiles_and_long_runs(monkeypatch):
    """256^3 float32 (2, 1, 0): input rows 256 KiB apart all fall in one set of a 2 MiB 16-way L2. The tile keeps
    one cache line of each output row (16 rows) and the p side takes the outer axis that continues it in A (the
    Intel tile table: 128-byte output rows, 32 float32 input rows a tile)."""
    monkeypatch.setattr(planner.system, "cpu_vendor", lambda: "GenuineIntel")
    assert planner.ALIAS_CUT["intel"]
    monkeypatch.setattr(planner.system, "l2_cache_geometry", lambda: (2048, 16, 64))
    cube = np.empty((256, 256, 256), np.float32)
    aliased = _plan(cube, (2, 1, 0), isa="avx512")
    assert aliased.kind == "tile" and aliased.tq == 16
    assert aliased.p_axes.shape == (256, 256) and aliased.outer.shape == ()
    assert "32 of a tile's 32 input rows share one L2 set of 16 ways: 16 rows a tile" in aliased.reason
    square = _plan(np.empty((8192, 8192), np.float32), (1, 0), isa="avx512")
    assert square.tq == 32, "rows 32 KiB apart: 8 a set, within 16 ways; the tile is unchanged"
    monkeypatch.setattr(planner.system, "l2_cache_geometry", lambda: (2048, 2**40, 64))
    unlimited = _plan(cube, (2, 1, 0), isa="avx512")
    assert unlimited.tq == 32 and unlimited.p_axes.shape == (256,)


@pytest.mark.parametrize("axes", [(2, 1, 0), (1, 2, 0)])
def test_alias_free_tiles_copy_the_right_bytes(monkeypatch, forced_kernels, axes):
    from qwenkit.permute import make_plan

    monkeypatch.setattr(planner.system, "l2_cache_geometry", lambda: (16, 2, 64))  # a 1 KiB set span
    monkeypatch.setitem(planner.ALIAS_CUT, planner.tile_table_name(), True)  # the rule, whatever this machine's table
    a = np.random.default_rng(3).standard_normal((128, 8, 128)).astype(np.float32)  # input rows 4 KiB apart
    expected = np.ascontiguousarray(a.transpose(axes))
    plan = make_plan(a, axes, threads=1)
    packed_p_side = {(2, 1, 0): (128, 8), (1, 2, 0): (1024,)}[axes]
    assert plan.plan.kind == "tile" and plan.plan.tq == 16 and plan.plan.p_axes.shape == packed_p_side
    assert plan(a).tobytes() == expected.tobytes()


def test_l2_geometry_is_read_from_sysfs_and_falls_back(tmp_path):
    from qwenkit.core import system

    for index, (level, sets, ways) in enumerate([("1", "64", "12"), ("2", "2048", "16")]):
        entry = tmp_path / f"index{index}"
        entry.mkdir()
        for name, value in (("level", level), ("number_of_sets", sets), ("ways_of_associativity", ways),
                            ("coherency_line_size", "64")):
            (entry / name).write_text(value + "\n")
    assert system.read_l2_geometry(tmp_path) == (2048, 16, 64)
    (tmp_path / "index1" / "ways_of_associativity").write_text("junk\n")
    assert system.read_l2_geometry(tmp_path) == system.L2_FALLBACK_GEOMETRY
    assert system.read_l2_geometry(tmp_path / "missing") == system.L2_FALLBACK_GEOMETRY
    sets, ways, line = system.l2_cache_geometry()
    assert sets > 0 and ways > 0 and line > 0


def test_row_copies_stream_in_spans_only_in_the_measured_window():
    """``Plan.spans``: BSHD->BHSD float32 row copies (the next-outer axis continues each run in the output) stream
    their runs in spans for runs of ``SPAN_RUN_BYTES``, not shorter or longer ones, and not into an output whose
    runs have gaps between them (no outer axis continues a run)."""
    from qwenkit.permute import make_plan

    def spans(shape, axes):
        a = np.zeros(shape, np.float32)
        out = np.empty(tuple(shape[k] for k in axes), np.float32)
        return make_plan(a, axes, out, threads=1).plan

    low, high = planner.SPAN_RUN_BYTES
    for head in (low // 4, 128, high // 4 - 1):
        plan = spans((4, 1024, 8, head), (0, 2, 1, 3))
        assert plan.kind == "rows" and plan.spans and "in spans" in plan.describe()
    for head in (low // 4 - 8, high // 4):
        plan = spans((4, 1024, 8, head), (0, 2, 1, 3))
        assert plan.kind == "rows" and plan.stream and not plan.spans
    reverse = spans((8, 32, 2048, 128), (0, 2, 1, 3))  # BHSD->BSHD: 2,048 positions fastest, cut into blocks
    assert reverse.spans and reverse.outer.shape == (8, 16, 32, 128) and reverse.outer.sb[-2] == 512
    a = np.zeros((4, 1024, 8, 128), np.float32)
    gapped = np.empty((4, 8, 1024, 256), np.float32)[..., :128]  # 512-byte runs 1 KiB apart: none continues one
    plan = make_plan(a, (0, 2, 1, 3), gapped, threads=1).plan
    assert plan.kind == "rows" and plan.stream and not plan.spans


@pytest.mark.parametrize(("vendor", "family", "table"), [
    ("AuthenticAMD", 25, "amd"), ("AuthenticAMD", None, "amd"), ("AuthenticAMD", 23, "amd-family-23"),
    ("GenuineIntel", 6, "intel"), ("GenuineIntel", 23, "intel"), ("", None, "intel")])
def test_the_tile_table_and_the_row_strips_follow_the_cpu_vendor_and_family(monkeypatch, vendor, family, table):
    monkeypatch.setattr(planner.system, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(planner.system, "cpu_family", lambda: family)
    assert planner.tile_table_name() == table and planner.tile_shapes() is planner.TILE_SHAPE_TABLES[table]
    plan = _plan(np.empty((32, 64, 56, 56), np.float32), (0, 2, 3, 1), isa="avx512")  # NCHW -> NHWC, 25 MB
    assert plan.kind == "tile" and plan.stream == planner.STREAM_TILES
    assert plan.tq == planner.TILE_SHAPE_TABLES[table][4][1] // 4
    assert plan.whole_row_strips is planner.WHOLE_ROW_STRIPS[table]


def test_every_tile_table_covers_every_width_with_whole_output_lines():
    for table in planner.TILE_SHAPE_TABLES.values():
        assert sorted(table) == [1, 2, 4, 8, 16]
        assert all(tq_bytes % 64 == 0 and tp_bytes % 64 == 0 for tp_bytes, tq_bytes, _ in table.values())
    assert set(planner.WHOLE_ROW_STRIPS) == set(planner.TILE_SHAPE_TABLES) == set(planner.ALIAS_CUT)


def test_the_family_23_table_keeps_aliasing_input_rows_in_one_tile(monkeypatch):
    """8192^2 float32 on a 512 KiB 8-way L2 (the Zen 2's): 64 input rows 32 KiB apart fall in two sets, 32 a set. The
    ``amd-family-23`` table keeps its tile (ALIAS_CUT off there); the ``amd`` table's rule halves it."""
    monkeypatch.setattr(planner.system, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(planner.system, "l2_cache_geometry", lambda: (1024, 8, 64))
    monkeypatch.setattr(planner, "TILE_SHAPES", {**planner.TILE_SHAPE_TABLES["amd"], 4: (256, 256, True)})
    square = np.empty((8192, 8192), np.float32)
    monkeypatch.setattr(planner.system, "cpu_family", lambda: 23)
    kept = _plan(square, (1, 0))
    assert kept.kind == "tile" and kept.tq == 64 and "share one L2 set" not in kept.reason
    monkeypatch.setattr(planner.system, "cpu_family", lambda: 25)
    cut = _plan(square, (1, 0))
    assert cut.tq == 16 and "32 of a tile's 64 input rows share one L2 set of 8 ways: 16 rows a tile" in cut.reason


@pytest.mark.parametrize("strips", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])  # row order and column order under forced_kernels
def test_back_to_back_rows_off_a_cache_line_copy_the_right_bytes_as_strips_or_tiles(forced_kernels, strips, dtype):
    """NCHW -> NHWC into an output 16 bytes past a cache line (what np.empty gives): its 64-element rows lie back
    to back, and each plane (too large for the dense path's buffer) goes out as whole-row strips or as whole-line
    tiles with direct partial lines."""
    import dataclasses

    from qwenkit.permute import empty_aligned, make_plan

    a = np.random.default_rng(5).standard_normal((2, 64, 33, 40)).astype(dtype)
    expected = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    buffer = empty_aligned((expected.nbytes + 64,), np.uint8)
    out = buffer[16:16 + expected.nbytes].view(dtype).reshape(expected.shape)
    runner = make_plan(a, (0, 2, 3, 1), out, threads=1)
    assert runner.plan.kind == "tile" and runner.plan.stream == planner.STREAM_TILES and runner.plan.tq < 64
    assert not runner.plan.dense and 33 * 40 * 64 * a.itemsize > codegen.DENSE_BUFFER_BYTES
    runner._use(dataclasses.replace(runner.plan, whole_row_strips=strips))
    runner(a, out)
    assert out.tobytes() == expected.tobytes()


@pytest.mark.parametrize(("vendor", "family", "width", "isa", "p_len", "expected"), [
    ("AuthenticAMD", 25, 4, "avx512", 8192, True), ("AuthenticAMD", 25, 8, "avx512", 8192, True),
    ("AuthenticAMD", 25, 4, "avx512", 64, False),  # 256-byte input runs: shorter than STRIP_MIN_RUN_BYTES
    ("AuthenticAMD", 25, 16, "avx512", 8192, False), ("AuthenticAMD", 25, 2, "avx512", 8192, True),
    ("AuthenticAMD", 25, 1, "avx512", 8192, False),
    ("AuthenticAMD", 25, 4, "avx2", 8192, False), ("GenuineIntel", 6, 4, "avx512", 8192, False)])
def test_square_strips_follow_the_table_the_isa_the_width_and_the_run_length(monkeypatch, vendor, family, width,
                                                                            isa, p_len, expected):
    monkeypatch.setattr(planner.system, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(planner.system, "cpu_family", lambda: family)
    dtype = {1: np.uint8, 2: np.int16, 4: np.float32, 8: np.float64, 16: np.complex128}[width]
    plan = _plan(np.empty((2**24 // (p_len * width), p_len), dtype), (1, 0), isa=isa)  # 16 MiB: streamed
    assert plan.kind == "tile" and plan.stream == planner.STREAM_TILES
    assert plan.strips is expected
    assert ("square strips of" in plan.describe()) is expected
    assert set(planner.SQUARE_STRIPS) == set(planner.TILE_SHAPE_TABLES)


def test_square_steps_cover_whole_output_lines():
    assert [codegen.square_shape("avx512", w) for w in (2, 4, 8)] == [(16, 32), (16, 16), (8, 16)]
    assert all(codegen.square_shape(isa, w) == (0, 0) for isa in ("scalar", "sse2", "avx2", "neon")
               for w in codegen.WIDTHS)
    assert codegen.square_shape("avx512", 1) == codegen.square_shape("avx512", 16) == (0, 0)


needs_avx512 = pytest.mark.skipif("avx512" not in available_isas(), reason="this CPU does not run AVX-512")


@needs_avx512
@pytest.mark.parametrize("dtype", ["int16", "float32", "float64"])
@pytest.mark.parametrize(("shape", "axes"), [((320, 517), (1, 0)), ((64, 1030), (1, 0)), ((32, 33, 70), (2, 1, 0)),
                                             ((9, 64, 130), (0, 2, 1)), ((12, 32, 70), (2, 0, 1))])
@pytest.mark.parametrize("input_offset", [0, 8, 16, 24])
@pytest.mark.parametrize("threads", [1, 2])
def test_square_strips_copy_the_right_bytes(forced_kernels, monkeypatch, dtype, shape, axes, input_offset, threads):
    """The strip walk on planes with partial squares at every edge: rows past the last whole square, input rows
    that start off a line (the squares then begin at the next line), output rows whose first line is partial, and
    threads splitting a plane; each compared with NumPy's bytes, and with the tile kernel's (strips off)."""
    import dataclasses

    from qwenkit.permute import empty_aligned, make_plan

    monkeypatch.setattr(planner, "SQUARE_STRIPS", dict.fromkeys(planner.SQUARE_STRIPS, True))
    itemsize = np.dtype(dtype).itemsize
    count = int(np.prod(shape))
    raw = np.random.default_rng(11).integers(0, 256, size=count * itemsize + 128, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + input_offset
    a = raw[start:start + count * itemsize].view(dtype).reshape(shape)
    expected = np.ascontiguousarray(a.transpose(axes))
    for out_offset in (0, 16):
        buffer = empty_aligned((expected.nbytes + 64,), np.uint8)
        out = buffer[out_offset:out_offset + expected.nbytes].view(dtype).reshape(expected.shape)
        runner = make_plan(a, axes, out, threads=threads, isa="avx512")
        assert runner.plan.kind == "tile" and runner.plan.strips and "square strips" in runner.describe()
        for strips in (True, False):
            runner._use(dataclasses.replace(runner.plan, strips=strips))
            out.fill(0)
            runner(a, out)
            assert out.tobytes() == expected.tobytes(), (out_offset, strips)


@needs_avx512
def test_square_strip_probes_split_the_reads_from_the_writes(forced_kernels, monkeypatch):
    """Diagnosis only: the reads probe leaves the squares' output lines unwritten, the writes probe fills them with
    zeros without reading; the whole kernel writes NumPy's bytes."""
    import dataclasses

    from qwenkit.permute import empty_aligned, make_plan

    monkeypatch.setattr(planner, "SQUARE_STRIPS", dict.fromkeys(planner.SQUARE_STRIPS, True))
    a = empty_aligned((256, 512), np.float32)  # line-aligned input rows and 512 = 32 squares: no direct stores
    a[...] = (np.arange(256 * 512, dtype=np.float32) + 1).reshape(256, 512)
    out = empty_aligned((512, 256), np.float32)
    runner = make_plan(a, (1, 0), out, threads=1, isa="avx512")
    base = runner.plan
    assert base.strips
    runner._use(dataclasses.replace(base, probe=codegen.PROBE_READS))
    out.fill(7)
    runner(a, out)
    assert np.all(out == 7)
    runner._use(dataclasses.replace(base, probe=codegen.PROBE_WRITES))
    runner(a, out)
    assert np.all(out == 0)
    runner._use(base)
    runner(a, out)
    assert np.array_equal(out, a.T)
