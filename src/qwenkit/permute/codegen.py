"""C code generator: one translation unit per (ISA, element width) holding every kernel class.

A kernel moves raw elements of ``width`` bytes (1, 2, 4, 8 or 16); the planner maps every dtype onto one of these.
Each unit exports these functions (see ``CDEF``):

- ``qk_rows``: copy contiguous runs (the input's and the output's unit-stride axis are the same axis);
- ``qk_strided``: copy along one axis item by item (an item: one element, or a short run of elements that is
  contiguous on both sides), for layouts without two distinct unit-stride axes or with runs too short for memcpy;
- ``qk_tile``: the block transpose. The *block* is an ``np x nq`` plane: ``p`` runs over elements that are contiguous
  in the input (one or more packed input axes), ``q`` over elements contiguous in the output. Input row ``j`` starts at
  byte ``qa[j]``, output row ``i`` at ``pb[i]`` (tables, so a row index may span several short axes). The plane is cut
  into macro tiles (``tp x tq``) and those into micro tiles that are transposed in registers. When the input's
  fastest axis is itself strided (``sp != width``, a sliced view), the same tiling runs with element copies;
- ``qk_interleave``/``qk_deinterleave`` (AVX-512 and AVX2 units only): a short axis beside a long one, whole
  registers permuted by tables: 64-byte registers by ``vperm*`` from ``short_axis_tables`` (AVX-512), 16-byte
  registers by ``pshufb`` from ``byte_shuffle_tables`` (AVX2).

The micro tile is a *lane-parallel* transpose: a vector of ``V`` bytes holds ``V/16`` independent 128-bit lanes, each
lane an ``m x m`` block with ``m = 16/width``. ``log2(m)`` stages of unpack-low/high (x86) or zip1/zip2 (NEON) with
doubling chunk sizes transpose every lane at once (``transpose_network`` derives and checks the register order in
Python), so one micro tile is ``m`` input rows of ``V/width`` elements, giving ``V/width`` output rows of ``m``
elements (16 bytes each). Where the output is large and its rows are cache-line aligned, a macro tile is transposed
into an aligned L1 buffer and then written with non-temporal stores of whole cache lines: partial-line streaming
stores break write combining and run slower than NumPy (docs/permute.md). On AVX-512 with elements of 2, 4 or 8
bytes such planes can instead walk *square strips* (``square_shape``, ``Plan.strips``): the input rows of one output
line are transposed whole in registers, square by square along the plane, and each output line is streamed straight
from a register, with no buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WIDTHS: tuple[int, ...] = (1, 2, 4, 8, 16)
LANE_BYTES = 16
TILE_BUFFER_BYTES = 65536
DENSE_BUFFER_BYTES = 262144
MAX_TILE_P = 1024
MAX_OUTER_DIMS = 64
PROBE_READS, PROBE_WRITES, PROBE_NO_PREFETCH = 1, 2, 3
"""``qk_tile_args.probe`` (diagnosis only, ``Plan.probe``): a streaming tile kernel's loads and shuffles without
its output stores; its stores without its loads or its prefetches of the input (until commit 0b7c1da this probe still
fetched the whole input ahead, so its "writes alone" included reads); the whole kernel without its software
prefetches."""
SPAN_BUFFER_BYTES = 1 << 20
"""The heap buffer of a row copy that streams its runs in spans (``Plan.spans``): half the Xeon's 2 MiB L2. In the
ad-hoc A/B that chose it (float32 BSHD->BHSD into np.empty, 512-byte runs) 256 KiB gave 1.55x NumPy, 1 MiB 1.72x,
2 MiB 1.29x."""
SPAN_BYTES = 4096
"""How long a span a row copy with ``Plan.spans`` gathers for each output position, at most (as the buffer allows).
Longer spans leave fewer partial lines but make the copy into the buffer and the streaming out longer phases, which do
not overlap; ad-hoc on the Xeon, BSHD->BHSD into np.empty, 512-byte runs: 1 KiB spans 1.14x NumPy, 2 KiB 1.40x,
4 KiB 1.49x, 16 KiB 1.54x; 128-byte runs lost at every length (the committed A/B: ``bench.span_experiment``)."""
DENSE_PREFETCH_MIN_BYTES = 65536
"""A plane that goes through the dense buffer and holds more than this many bytes fetches the next plane's input rows
while it is transposed (6-D random #2 int16: 285 rows of 578 bytes, 68 KiB apart, 161 KiB a plane; the column
"prefetch off, kernel time x" of benchmarks/results/permute_xeon/permute_limits.md). No other plane does. The
next-plane fetch used to serve every plane up to 64 KiB and contiguous ones up to 256 KiB; it slowed the planes it
served: TTC's 28 KiB planes ran 1.5x faster without it in the diagnosis of commit dc5c8aa (committed at c9bc982;
1.2x in a first run minutes before, not kept), and the 20-D all-size-2 cases 1.1-1.6x and the TTC case into np.empty
1.2x in ad-hoc interleaved A/Bs (not committed). On the whole-line tile path the column walk fetches ahead itself
(docs/permute.md, "Prefetch"). The 64 KiB bound sits between the dense planes measured (28 KiB: slower with the
fetch; 161 KiB: faster); it is not tuned further."""

CDEF = """
typedef struct {
    int64_t np, nq, tp, tq;
    int64_t sp;
    int32_t column_order;
    const int64_t *pb;
    const int64_t *qa;
    int32_t nouter;
    const int64_t *oshape;
    const int64_t *oa;
    const int64_t *ob;
    int32_t stream;
    int32_t dense;
    int32_t probe;
    int32_t whole_row_strips;
    int32_t strips;
} qk_tile_args;
void qk_tile(const char *a, char *b, const qk_tile_args *t, int64_t o0, int64_t o1, int64_t p0, int64_t p1);
void qk_rows(const char *a, char *b, int64_t row_bytes, int32_t nouter, const int64_t *oshape,
             const int64_t *oa, const int64_t *ob, int64_t o0, int64_t o1, int32_t stream, int32_t spans);
void qk_strided(const char *a, char *b, int64_t n, int64_t sa, int64_t sb, int64_t run, int32_t nouter,
                const int64_t *oshape, const int64_t *oa, const int64_t *ob, int64_t o0, int64_t o1);
int32_t qk_micro_p(void);
int32_t qk_micro_q(void);
uint64_t qk_probe_read(const char *a, int64_t bytes);
void qk_probe_write(char *b, int64_t bytes, int32_t stream);
typedef struct {
    int32_t k;
    const int64_t *rows;
    const void *idx;
    const uint64_t *mask;
    int32_t nouter;
    const int64_t *oshape;
    const int64_t *oa;
    const int64_t *ob;
} qk_short_args;
void qk_interleave(const char *a, char *b, const qk_short_args *s, int64_t o0, int64_t o1, int64_t p0, int64_t p1);
void qk_deinterleave(const char *a, char *b, const qk_short_args *s, int64_t o0, int64_t o1, int64_t p0, int64_t p1);
"""


@dataclass(frozen=True)
class IsaSpec:
    """How one instruction set spells the few vector operations the micro kernels need."""

    name: str
    vector_bytes: int
    include: str
    vtype: str = ""
    load: str = ""  # {p}
    load_aligned: str = ""
    zero: str = ""
    unpack: dict[int, tuple[str, str]] = field(default_factory=dict)  # chunk bits -> (low, high) templates {a},{b}
    lane: tuple[str, ...] = ()  # per 128-bit lane: {v} -> that lane as a 16-byte value
    store16: str = ""  # {p},{v}
    stream: str = ""  # {p},{v}: non-temporal store of a full vector; "" where the ISA has none
    fence: str = ""
    masked: bool = False  # AVX-512BW/VL byte masks for partial micro tiles



def _x86_unpack(prefix: str) -> dict[int, tuple[str, str]]:
    return {bits: (f"{prefix}_unpacklo_epi{bits}({{a}}, {{b}})", f"{prefix}_unpackhi_epi{bits}({{a}}, {{b}})")
            for bits in (8, 16, 32, 64)}


def _neon_unpack() -> dict[int, tuple[str, str]]:
    out = {}
    for bits in (8, 16, 32, 64):
        def zip_(which: int, bits: int = bits) -> str:
            if bits == 8:
                return f"vzip{which}q_u8({{a}}, {{b}})"
            return (f"vreinterpretq_u8_u{bits}(vzip{which}q_u{bits}(vreinterpretq_u{bits}_u8({{a}}), "
                    f"vreinterpretq_u{bits}_u8({{b}})))")
        out[bits] = (zip_(1), zip_(2))
    return out


ISA_SPECS: dict[str, IsaSpec] = {
    "scalar": IsaSpec("scalar", 0, ""),
    "sse2": IsaSpec(
        "sse2", 16, "#include <emmintrin.h>", "__m128i", "_mm_loadu_si128((const __m128i *)({p}))",
        "_mm_load_si128((const __m128i *)({p}))", "_mm_setzero_si128()", _x86_unpack("_mm"), ("{v}",),
        "_mm_storeu_si128((__m128i *)({p}), {v})", "_mm_stream_si128((__m128i *)({p}), {v})", "_mm_sfence()"),
    "avx2": IsaSpec(
        "avx2", 32, "#include <immintrin.h>", "__m256i", "_mm256_loadu_si256((const __m256i *)({p}))",
        "_mm256_load_si256((const __m256i *)({p}))", "_mm256_setzero_si256()", _x86_unpack("_mm256"),
        ("_mm256_castsi256_si128({v})", "_mm256_extracti128_si256({v}, 1)"),
        "_mm_storeu_si128((__m128i *)({p}), {v})", "_mm256_stream_si256((__m256i *)({p}), {v})", "_mm_sfence()"),
    "avx512": IsaSpec(
        "avx512", 64, "#include <immintrin.h>", "__m512i", "_mm512_loadu_si512((const void *)({p}))",
        "_mm512_load_si512((const void *)({p}))", "_mm512_setzero_si512()", _x86_unpack("_mm512"),
        ("_mm512_castsi512_si128({v})", *(f"_mm512_extracti32x4_epi32({{v}}, {lane})" for lane in (1, 2, 3))),
        "_mm_storeu_si128((__m128i *)({p}), {v})", "_mm512_stream_si512((void *)({p}), {v})", "_mm_sfence()",
        masked=True),
    # NEON has no plain non-temporal store intrinsic; the tile buffer is still written out in whole lines.
    "neon": IsaSpec(
        "neon", 16, "#include <arm_neon.h>", "uint8x16_t", "vld1q_u8((const uint8_t *)({p}))",
        "vld1q_u8((const uint8_t *)({p}))", "vdupq_n_u8(0)", _neon_unpack(), ("{v}",),
        "vst1q_u8((uint8_t *)({p}), {v})", "vst1q_u8((uint8_t *)({p}), {v})", ""),
}


SHORT_AXIS_ISAS = ("avx512", "avx2")
MAX_SHORT_AXIS = 8
"""The short-axis kernels permute across up to this many registers (the short axis' length)."""


def short_axis_tables(kind: str, k: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Index vectors and lane masks of the register permutation for ``qk_interleave``/``qk_deinterleave``.

    A register holds ``L = 64/width`` elements, permuted in units of ``pw = min(width, 8)`` bytes (a 16-byte
    element is two 8-byte units). ``interleave``: registers ``r_s`` hold ``L`` consecutive elements of input row
    ``s`` (``s < k``); output register ``m`` must hold elements ``m*L .. m*L+L-1`` of the interleaved run, where
    element ``g`` is element ``g // k`` of row ``g % k``. ``deinterleave`` is the inverse: registers hold the
    contiguous input run, output register ``i`` gathers every ``k``-th element starting at ``i``. Output register
    ``m`` = OR over sources ``s`` of ``permutexvar(idx[m, s], r_s)`` on lanes ``mask[m, s]`` (one masked permute per
    source that contributes), so the shuffle work per register is at most ``k`` instructions.
    """
    lanes = 64 // width
    units = max(1, width // 8)
    per_unit = 64 // min(width, 8)
    idx = np.zeros((k, k, per_unit), dtype=f"<u{min(width, 8)}")
    mask = np.zeros((k, k), dtype=np.uint64)
    for m in range(k):
        for e in range(per_unit):
            element, sub = divmod(e, units)
            if kind == "interleave":
                g = m * lanes + element
                source, position = g % k, g // k
            elif kind == "deinterleave":
                g = element * k + m
                source, position = divmod(g, lanes)
            else:
                raise ValueError(f"unknown short-axis kernel {kind!r}")
            idx[m, source, e] = position * units + sub
            mask[m, source] |= np.uint64(1) << np.uint64(e)
    return idx, mask


SHUFFLE_BYTES = 16
"""The AVX2 short-axis kernels permute 16-byte registers (``pshufb`` works within 128-bit lanes)."""
SHUFFLE_ZERO = 0x80
"""A ``pshufb`` index with its high bit set writes a zero byte: the lane comes from another source register."""


def byte_shuffle_tables(kind: str, k: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte index vectors and source masks of the AVX2 register permutation for ``qk_interleave``/
    ``qk_deinterleave``: the same permutation as ``short_axis_tables`` on 16-byte registers of ``L = 16/width``
    elements, by ``pshufb``, which has no lane mask: output register ``m`` = OR over sources ``s`` of
    ``pshufb(r_s, idx[m, s])``, where ``idx[m, s]`` holds the byte of ``r_s`` for every lane that ``s`` supplies and
    ``SHUFFLE_ZERO`` elsewhere. ``mask[m, s]`` has bit ``b`` set where output byte ``b`` comes from ``s`` (zero:
    ``s`` supplies nothing to ``m``). Element ``g`` of the interleaved run is element ``g // k`` of row ``g % k``
    (``interleave``); ``deinterleave`` is the inverse."""
    if width not in WIDTHS or width > SHUFFLE_BYTES // 2:
        raise ValueError(f"a 16-byte register holds at least two elements; width {width} does not fit")
    lanes = SHUFFLE_BYTES // width
    idx = np.full((k, k, SHUFFLE_BYTES), SHUFFLE_ZERO, dtype=np.uint8)
    mask = np.zeros((k, k), dtype=np.uint64)
    element_bytes = np.arange(width, dtype=np.uint8)
    for m in range(k):
        for e in range(lanes):
            if kind == "interleave":
                g = m * lanes + e
                source, position = g % k, g // k
            elif kind == "deinterleave":
                g = e * k + m
                source, position = divmod(g, lanes)
            else:
                raise ValueError(f"unknown short-axis kernel {kind!r}")
            idx[m, source, e * width:(e + 1) * width] = position * width + element_bytes
            mask[m, source] |= np.uint64(((1 << width) - 1) << (e * width))
    return idx, mask


def short_axis_permutation(isa: str, kind: str, k: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The tables ``isa``'s short-axis kernels read: ``short_axis_tables`` (AVX-512) or ``byte_shuffle_tables``
    (AVX2)."""
    if isa == "avx512":
        return short_axis_tables(kind, k, width)
    if isa == "avx2":
        return byte_shuffle_tables(kind, k, width)
    raise ValueError(f"no short-axis kernels for ISA {isa!r}; they exist for {SHORT_AXIS_ISAS}")


def bit_reverse(value: int, bits: int) -> int:
    return int(format(value, f"0{bits}b")[::-1], 2) if bits else 0


def transpose_network(m: int) -> tuple[list[int], list[tuple[int, int, int, int]]]:
    """The in-lane ``m x m`` transpose as unpack stages, and the input row each register must be loaded with.

    Returns ``(load_rows, stages)``: register ``k`` is loaded with input row ``load_rows[k]`` (a bit reversal), and
    each stage entry ``(chunk, k, lo_from, hi_from)`` says: with chunks of ``chunk`` elements, new register ``k`` is
    the low (``k`` even) or high interleave of old registers ``lo_from`` and ``hi_from``. After the stages, register
    ``k`` holds output row ``k`` with its elements in input-row order. The claim is checked by simulation here, at
    generation time, so a wrong network can never be emitted.
    """
    bits = m.bit_length() - 1
    load_rows = [bit_reverse(k, bits) for k in range(m)]
    regs = [[(row, col) for col in range(m)] for row in load_rows]
    stages: list[tuple[int, int, int, int]] = []
    chunk = 1
    while chunk < m:
        new = []
        for k in range(m):
            a, b = regs[k // 2], regs[k // 2 + m // 2]
            half = slice(m // 2, m) if k % 2 else slice(0, m // 2)
            a, b = a[half], b[half]
            merged = []
            for start in range(0, m // 2, chunk):
                merged += a[start:start + chunk] + b[start:start + chunk]
            new.append(merged)
            stages.append((chunk, k, k // 2, k // 2 + m // 2))
        regs = new
        chunk *= 2
    for k, reg in enumerate(regs):
        if reg != [(row, k) for row in range(m)]:
            raise AssertionError(f"transpose network for m={m} is wrong at register {k}: {reg}")
    return load_rows, stages


def micro_shape(isa: str, width: int) -> tuple[int, int]:
    """``(mp, mq)``: output rows and input rows of one micro tile (``mp`` elements are loaded per input row)."""
    spec = ISA_SPECS[isa]
    if isa == "scalar":
        return 8, 8
    return spec.vector_bytes // width, LANE_BYTES // width


def square_shape(isa: str, width: int) -> tuple[int, int]:
    """``(output rows, input rows)`` of one square step of ``isa`` for ``width``-byte elements (``Plan.strips``), or
    ``(0, 0)`` where there is none. The input rows make one 64-byte line of each output row, two for float64.

    AVX-512 only. Elements of 4 or 8 bytes: one square of ``n = 64 / width`` input rows of one 64-byte register each,
    transposed whole in registers: the lane-parallel network of the micro tile on each group of ``m = 16 / width``
    registers, then a 4 x 4 transpose of their 128-bit lanes (two stages of ``shuffle_i64x2``), so that each of the
    ``n`` registers holds one output row's whole line. float64 takes two such squares a step (16 input rows, two
    lines of each output row streamed back to back): in the C prototype (8192^2 float64) 8 rows a strip ran at
    84-85 % of memcpy and 16 rows at 108-110 % (glibc's memcpy of 512 MiB is not the limit there); float32 ran at
    82-86 % with either. 2-byte elements: two squares of 16 rows of 32 bytes (16 x 16
    in 256-bit registers: the network, then ``permute2x128``), whose halves are joined into each output line before
    it is stored (streaming each half alone, 16 lines apart, ran at 22 % of memcpy in the C prototype against 69 %
    joined). Bytes (64 input rows a line) ran at 40 % in the prototype, no better than the tile kernel; 16-byte
    elements make a strip of 4 input rows, which ran 8192^2 complex128 at 73 % of np.copyto against 80 % for the tile
    kernel (ad-hoc interleaved A/Bs on the Zen 4 guest). Neither has a square step."""
    if isa != "avx512" or width not in (2, 4, 8):
        return 0, 0
    return {2: (16, 32), 4: (16, 16), 8: (8, 16)}[width]


def generate_source(isa: str, width: int) -> str:
    """The complete C11 translation unit for ``isa`` and elements of ``width`` bytes."""
    if width not in WIDTHS:
        raise ValueError(f"element width {width} is not one of {WIDTHS}")
    if isa not in ISA_SPECS:
        raise ValueError(f"no code generator for ISA {isa!r}; known: {list(ISA_SPECS)}")
    spec = ISA_SPECS[isa]
    mp, mq = micro_shape(isa, width)
    square_p, square_q = square_shape(isa, width)
    micro = _scalar_micro() if isa == "scalar" else _vector_micro(spec, width)
    head = f"""/* Generated by qwenkit.permute.codegen for ISA {isa}, elements of {width} bytes. Do not edit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
{spec.include}
#define W {width}
#define MP {mp}
#define MQ {mq}
#define TILE_BUFFER_BYTES {TILE_BUFFER_BYTES}
#define DENSE_BUFFER_BYTES {DENSE_BUFFER_BYTES}
#define SPAN_BUFFER_BYTES {SPAN_BUFFER_BYTES}
#define SPAN_BYTES {SPAN_BYTES}
#define MAX_TILE_P {MAX_TILE_P}
#define MAX_OUTER_DIMS {MAX_OUTER_DIMS}
#define DENSE_PREFETCH_MIN_BYTES {DENSE_PREFETCH_MIN_BYTES}
#define PROBE_READS {PROBE_READS}
#define PROBE_WRITES {PROBE_WRITES}
#define PROBE_NO_PREFETCH {PROBE_NO_PREFETCH}
#define MAX_SHORT_AXIS {MAX_SHORT_AXIS}
#define HAVE_STREAM {1 if spec.stream else 0}
#define VB {max(spec.vector_bytes, 16)}
#define SQUARE_P {square_p}
#define SQUARE {square_q}
#define SQUARE_LINES {square_q * width // 64}
{CDEF}
"""
    stream_row = _stream_row(spec)
    if isa == "avx512":
        short = _SHORT_AXIS_C.replace("@PW@", str(min(width, 8)))
    elif isa == "avx2" and width <= SHUFFLE_BYTES // 2:
        short = _SHORT_AXIS_SHUFFLE_C
    else:
        short = ""
    square = "" if not square_p else _square_half_micro(width) if width == 2 else _square_micro(spec, width)
    return head + micro + square + stream_row + _COMMON_C + short


def _scalar_micro() -> str:
    return """
static inline void micro_part(const char *a, const int64_t *qa, int nqv, char *b, const int64_t *pb, int npv)
{
    for (int i = 0; i < npv; ++i)
        for (int j = 0; j < nqv; ++j)
            memcpy(b + pb[i] + (int64_t)j * W, a + qa[j] + (int64_t)i * W, W);
}

static inline void micro_full(const char *a, const int64_t *qa, char *b, const int64_t *pb)
{
    micro_part(a, qa, MQ, b, pb, MP);
}
"""


def _lane_network(name: str, vtype: str, unpack: dict[int, tuple[str, str]], width: int) -> str:
    """C function ``name(vtype *r)``: the in-lane ``m x m`` transpose of ``transpose_network`` (``m = 16 / width``) on
    ``m`` registers of type ``vtype``, each stage spelled with the ``unpack`` templates of its chunk size."""
    m = LANE_BYTES // width
    _, stages = transpose_network(m)
    lines = [f"static inline void {name}({vtype} *r)", "{"]
    for stage_start in range(0, len(stages), m):
        block = stages[stage_start:stage_start + m]
        lo, hi = unpack[block[0][0] * width * 8]
        names = [f"t{stage_start // m}_{k}" for k in range(m)]
        for (_, k, src_a, src_b), temp in zip(block, names, strict=True):
            expr = (hi if k % 2 else lo).format(a=f"r[{src_a}]", b=f"r[{src_b}]")
            lines.append(f"    {vtype} {temp} = {expr};")
        lines += [f"    r[{k}] = {temp};" for k, temp in enumerate(names)]
    if not stages:
        lines.append("    (void)r;  /* 16-byte elements: each lane already is one output row */")
    lines.append("}")
    return "\n".join(lines)


def _vector_micro(spec: IsaSpec, width: int) -> str:
    m = LANE_BYTES // width
    load_rows, _ = transpose_network(m)
    vt = spec.vtype
    network = _lane_network("transpose_lanes", vt, spec.unpack, width) + "\n"

    loads_full = "\n".join(f"    r[{k}] = {spec.load.format(p=f'a + qa[{row}]')};" for k, row in enumerate(load_rows))
    # Register k, lane l holds output row l*m + k; lanes are extracted with literal indices (immediates).
    outputs = [(lane * m + k, spec.lane[lane].format(v=f"r[{k}]")) for lane in range(len(spec.lane)) for k in range(m)]
    stores_full = "\n".join(f"    {spec.store16.format(p=f'b + pb[{row}]', v=value)};" for row, value in outputs)
    if spec.masked:
        part_setup = """    const __mmask64 load_mask = npv * W >= 64 ? ~(__mmask64)0
                                : (((__mmask64)1 << (npv * W)) - 1);
    const __mmask16 store_mask = (__mmask16)((1u << (nqv * W)) - 1);"""
        part_load = f"(row < nqv ? _mm512_maskz_loadu_epi8(load_mask, a + qa[row]) : {spec.zero})"
        stores_part = "\n".join(
            f"    if ({row} < npv) _mm_mask_storeu_epi8(b + pb[{row}], store_mask, {value});" for row, value in outputs)
    else:
        part_setup = "    _Alignas(64) char tmp[VB];"
        part_load = "load_part(a + qa[row], row < nqv ? npv : 0, tmp)"
        stores_part = "\n".join(
            f"    if ({row} < npv) store_part(b + pb[{row}], {value}, nqv, tmp);" for row, value in outputs)
    helpers = "" if spec.masked else f"""
/* Partial rows never write past the array. A short row is loaded whole when the whole vector lies in the same
   4 KiB page as its first byte (so the load cannot fault; the extra lanes only reach output rows that are not
   stored), else through a small stack buffer. */
static inline vec_t load_part(const char *src, int n, char *tmp)
{{
    if (n == MP || (n > 0 && ((uintptr_t)src & 4095) <= 4096 - VB)) return {spec.load.format(p='src')};
    memset(tmp, 0, VB);
    for (int e = 0; e < n; ++e) memcpy(tmp + e * W, src + e * W, W);
    return {spec.load.format(p='tmp')};
}}

static inline void store_part(char *dst, {"uint8x16_t" if spec.name == "neon" else "__m128i"} v, int n, char *tmp)
{{
    if (n == MQ) {{ {spec.store16.format(p='dst', v='v')}; return; }}
    {spec.store16.format(p='tmp', v='v')};
    for (int e = 0; e < n; ++e) memcpy(dst + e * W, tmp + e * W, W);
}}
"""
    return f"""
typedef {vt} vec_t;
static const int load_rows[MQ] = {{{", ".join(map(str, load_rows))}}};
{network}{helpers}
static inline void micro_full(const char *a, const int64_t *qa, char *b, const int64_t *pb)
{{
    vec_t r[MQ];
{loads_full}
    transpose_lanes(r);
{stores_full}
}}

static inline void micro_part(const char *a, const int64_t *qa, int nqv, char *b, const int64_t *pb, int npv)
{{
    vec_t r[MQ];
{part_setup}
    for (int k = 0; k < MQ; ++k) {{
        const int row = load_rows[k];
        r[k] = {part_load};
    }}
    transpose_lanes(r);
{stores_part}
}}
"""


def _square_micro(spec: IsaSpec, width: int) -> str:
    """``square_full``: the square register tiles of ``square_shape`` (AVX-512, elements of 4 or 8 bytes), streamed
    straight to the output: one square of 16 float32 rows, two of 8 float64 rows (``SQUARE_LINES``: two lines of each
    output row a step).

    In square ``h``, register ``h*n + g*m + k`` (``n = 64 / width``) is loaded with input row
    ``h*n + g*m + load_rows[k]``; ``transpose_lanes`` on each group of ``m`` leaves lane ``l`` of register
    ``h*n + g*m + c`` holding output row ``l*m + c``'s elements of input rows ``h*n + g*m .. +m-1``; for each ``c``
    the four registers' lanes are then transposed: ``x = shuffle(r_g0, r_g1, 0x44 / 0xEE)`` pairs lanes 0-1 / 2-3,
    ``y = shuffle(x_a, x_b, 0x88 / 0xDD)`` takes the even / odd lanes, so ``y_l`` is output row ``l*m + c``'s line
    ``h`` whole."""
    m = LANE_BYTES // width
    n = 64 // width
    lines = square_shape("avx512", width)[1] // n
    load_rows, _ = transpose_network(m)
    loads = "\n".join(f"        r[{h * n + g * m + k}] = {spec.load.format(p=f'rows[{h * n + g * m + row}] + off')};"
                      for h in range(lines) for g in range(4) for k, row in enumerate(load_rows))
    lanes = "\n".join(f"        transpose_lanes(r + {h * n + g * m});" for h in range(lines) for g in range(4)) \
        if m > 1 else ""
    cross = []
    for h in range(lines):
        for c in range(m):
            r0, r1, r2, r3 = (f"r[{h * n + g * m + c}]" for g in range(4))
            cross += [f"        const vec_t x{h}_{c}_0 = _mm512_shuffle_i64x2({r0}, {r1}, 0x44);",
                      f"        const vec_t x{h}_{c}_1 = _mm512_shuffle_i64x2({r0}, {r1}, 0xEE);",
                      f"        const vec_t x{h}_{c}_2 = _mm512_shuffle_i64x2({r2}, {r3}, 0x44);",
                      f"        const vec_t x{h}_{c}_3 = _mm512_shuffle_i64x2({r2}, {r3}, 0xEE);"]
        for c in range(m):
            cross += [f"        y[{h * n + 0 * m + c}] = _mm512_shuffle_i64x2(x{h}_{c}_0, x{h}_{c}_2, 0x88);",
                      f"        y[{h * n + 1 * m + c}] = _mm512_shuffle_i64x2(x{h}_{c}_0, x{h}_{c}_2, 0xDD);",
                      f"        y[{h * n + 2 * m + c}] = _mm512_shuffle_i64x2(x{h}_{c}_1, x{h}_{c}_3, 0x88);",
                      f"        y[{h * n + 3 * m + c}] = _mm512_shuffle_i64x2(x{h}_{c}_1, x{h}_{c}_3, 0xDD);"]
    cross_text = "\n".join(cross)
    return f"""
/* One square step: B[pb[i] + j*W] = rows[j][off + i*W] for i < SQUARE_P, j < SQUARE, SQUARE_LINES whole 64-byte
   lines of each output row, streamed one after the other (the caller guarantees every b + pb[i] is line-aligned).
   The input rows come as a local array of pointers, not as the plan's offset table: loads from the table cannot be
   moved above the stores before them (the compiler must assume a char store may alias it), and in an ad-hoc C
   prototype (8192^2 float32, Zen 4 guest) the table cost 83-86 -> 60-64 % of memcpy, the local array 80-82 %.
   PROBE_READS stores the lines to `sink` (a cached buffer) instead; PROBE_WRITES streams zeros without loading. */
static inline void square_full(const char *const *rows, int64_t off, char *b, const int64_t *pb, int probe,
                               char *sink)
{{
    vec_t r[SQUARE], y[SQUARE_P * SQUARE_LINES];
    if (probe == PROBE_WRITES) {{
        for (int k = 0; k < SQUARE_P * SQUARE_LINES; ++k) y[k] = {spec.zero};
    }} else {{
{loads}
{lanes}
{cross_text}
    }}
{_SQUARE_STORES}}}
"""


_SQUARE_STORES = """    if (probe == PROBE_READS)
        for (int k = 0; k < SQUARE_P * SQUARE_LINES; ++k) _mm512_store_si512((void *)(sink + 64 * k), y[k]);
    else
        for (int k = 0; k < SQUARE_P; ++k)
            for (int h = 0; h < SQUARE_LINES; ++h)
                _mm512_stream_si512((void *)(b + pb[k] + 64 * h), y[h * SQUARE_P + k]);
"""


def _square_half_micro(width: int) -> str:
    """``square_full`` for 2-byte elements: two 16 x 16 squares in 256-bit registers, joined into whole lines.

    Square ``h`` (input rows ``16h .. 16h+15``): register ``16h + 8g + k`` is loaded with input row
    ``16h + 8g + load_rows[k]``; the lane network on each group of 8 leaves lane ``l`` of register ``16h + 8g + c``
    holding output row ``8l + c``'s elements of input rows ``16h + 8g .. +7``; ``permute2x128(.., 0x20 / 0x31)`` of
    groups 0 and 1 gives output row ``c`` / ``8 + c`` of the square (32 bytes), and ``inserti64x4`` puts square 1's
    half after square 0's."""
    m = LANE_BYTES // width
    load_rows, _ = transpose_network(m)
    network = _lane_network("transpose_lanes_half", "__m256i", _x86_unpack("_mm256"), width)
    loads = "\n".join(
        f"        r[{16 * h + m * g + k}] = _mm256_loadu_si256((const __m256i *)(rows[{16 * h + m * g + row}] + off));"
        for h in range(2) for g in range(2) for k, row in enumerate(load_rows))
    lanes = "\n".join(f"        transpose_lanes_half(r + {16 * h + m * g});" for h in range(2) for g in range(2))
    joins = []
    for c in range(m):
        for out_row, imm in ((c, "0x20"), (m + c, "0x31")):
            halves = [f"_mm256_permute2x128_si256(r[{16 * h + c}], r[{16 * h + m + c}], {imm})" for h in range(2)]
            joins.append(f"        y[{out_row}] = _mm512_inserti64x4(_mm512_castsi256_si512({halves[0]}), "
                         f"{halves[1]}, 1);")
    join_text = "\n".join(joins)
    return f"""
{network}

/* One square step of 2-byte elements: B[pb[i] + j*W] = rows[j][off + i*W] for i < SQUARE_P (16), j < SQUARE (32),
   each output row one whole 64-byte line, streamed; rows, PROBE_READS and PROBE_WRITES as for the 64-byte squares
   of the other widths (codegen._square_micro). */
static inline void square_full(const char *const *rows, int64_t off, char *b, const int64_t *pb, int probe,
                               char *sink)
{{
    __m256i r[SQUARE];
    __m512i y[SQUARE_P];
    if (probe == PROBE_WRITES) {{
        for (int k = 0; k < SQUARE_P; ++k) y[k] = _mm512_setzero_si512();
    }} else {{
{loads}
{lanes}
{join_text}
    }}
{_SQUARE_STORES}}}
"""


_STREAM_ROW_UNALIGNED = r"""
/* Copy a run with ordinary stores for its partial first and last cache lines and streaming stores for the whole
   lines between (partial-line streaming stores break write combining), whatever the run's alignment. */
static inline void stream_row_unaligned(char *dst, const char *src, int64_t bytes)
{
    int64_t head = (int64_t)((64 - ((uintptr_t)dst & 63)) & 63);
    if (head > bytes) head = bytes;
    memcpy(dst, src, (size_t)head);
    const int64_t body = (bytes - head) / 64 * 64;
    stream_copy(dst + head, src + head, body);
    memcpy(dst + head + body, src + head + body, (size_t)(bytes - head - body));
}

"""


def _stream_row(spec: IsaSpec) -> str:
    if not spec.stream:
        return """
static inline void stream_row(char *dst, const char *src, int64_t bytes) { memcpy(dst, src, (size_t)bytes); }
static inline void stream_copy(char *dst, const char *src, int64_t bytes) { memcpy(dst, src, (size_t)bytes); }
static inline void stream_fence(void) {}
""" + _STREAM_ROW_UNALIGNED
    body = spec.stream.format(p="dst + k", v=spec.load_aligned.format(p="src + k"))
    body_unaligned = spec.stream.format(p="dst + k", v=spec.load.format(p="src + k"))
    fence = f"{spec.fence};" if spec.fence else ""
    return f"""
static inline void stream_row(char *dst, const char *src, int64_t bytes)
{{
    for (int64_t k = 0; k < bytes; k += VB) {body};
}}
static inline void stream_copy(char *dst, const char *src, int64_t bytes)
{{
    for (int64_t k = 0; k < bytes; k += VB) {body_unaligned};
}}
static inline void stream_fence(void) {{ {fence} }}
""" + _STREAM_ROW_UNALIGNED


_COMMON_C = r"""
int32_t qk_micro_p(void) { return MP; }
int32_t qk_micro_q(void) { return MQ; }

/* Diagnosis only (qk_tile_args.probe, benchmark --diagnose; the values are codegen.PROBE_*): PROBE_READS runs a
   streaming tile kernel's loads and shuffles into its buffer and never stores to the output; PROBE_WRITES stores
   the buffer to the output without reading the input or fetching it ahead. Either half alone shows what the other
   costs.
   PROBE_NO_PREFETCH runs the whole kernel without its software prefetches (the column walk,
   DENSE_PREFETCH_MIN_BYTES, the whole-row strips), for an A/B in one process. */

/* Diagnosis only: a sequential read of every byte (XOR-folded so that the loads are kept), and a sequential write
   of zeros with streaming stores (stream) or ordinary ones (each line read for ownership before it is written). */
uint64_t qk_probe_read(const char *a, int64_t bytes)
{
    uint64_t acc[8] = {0};
    int64_t k = 0;
    for (; k + 64 <= bytes; k += 64)
        for (int j = 0; j < 8; ++j) { uint64_t v; memcpy(&v, a + k + 8 * j, 8); acc[j] ^= v; }
    for (; k < bytes; ++k) acc[0] ^= (uint8_t)a[k];
    return acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
}

void qk_probe_write(char *b, int64_t bytes, int32_t stream)
{
    _Alignas(64) static const char zeros[4096];
    for (int64_t k = 0; k < bytes; k += 4096) {
        const int64_t n = bytes - k < 4096 ? bytes - k : 4096;
        if (stream && HAVE_STREAM) stream_row_unaligned(b + k, zeros, n);
        else memcpy(b + k, zeros, (size_t)n);
    }
    if (stream && HAVE_STREAM) stream_fence();
}

/* Odometer over the outer axes (last fastest): set the index and byte offsets of flat position o. */
static inline void outer_seek(int32_t n, const int64_t *shape, const int64_t *sa, const int64_t *sb, int64_t o,
                              int64_t *idx, int64_t *off_a, int64_t *off_b)
{
    *off_a = 0; *off_b = 0;
    for (int32_t d = n - 1; d >= 0; --d) {
        idx[d] = o % shape[d];
        o /= shape[d];
        *off_a += idx[d] * sa[d];
        *off_b += idx[d] * sb[d];
    }
}

static inline void outer_next(int32_t n, const int64_t *shape, const int64_t *sa, const int64_t *sb,
                              int64_t *idx, int64_t *off_a, int64_t *off_b)
{
    for (int32_t d = n - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) { *off_a += sa[d]; *off_b += sb[d]; return; }
        idx[d] = 0;
        *off_a -= (shape[d] - 1) * sa[d];
        *off_b -= (shape[d] - 1) * sb[d];
    }
}

/* Runs streamed in spans (Plan.spans: the planner has checked that the second-innermost outer axis lays its runs
   back to back in the output, BSHD->BHSD: one head's positions, while the input is walked with the innermost axis
   fastest, the heads). Each run streamed alone stores its two partial end lines normally whenever the runs are not
   whole, aligned lines (an np.empty output starts 16 bytes past one). Here k whole cycles of the innermost axis are
   copied, in the input's order, into a buffer that holds each cycle position's k runs back to back at its output
   offset within a line, and each of those spans is streamed as one run: two partial lines per span instead of two
   per run. Returns the buffer's slot size per innermost index, or 0 when this call does not take the path (every run
   whole aligned lines, or the buffer too small for two runs a slot; then `*k_max` is 0). */
static int64_t span_slots(char *b, int64_t off_b, int64_t row_bytes, int32_t nouter, const int64_t *oshape,
                          const int64_t *ob, int64_t *k_max)
{
    *k_max = 0;
    if (nouter < 2 || ob[nouter - 2] != row_bytes || oshape[nouter - 1] < 2) return 0;
    uintptr_t low = (uintptr_t)(b + off_b) | (uintptr_t)row_bytes;
    for (int32_t d = 0; d < nouter; ++d) low |= (uintptr_t)ob[d];
    if ((low & 63) == 0) return 0;  /* every run is whole aligned lines: streamed alone already */
    const int64_t slot = SPAN_BUFFER_BYTES / oshape[nouter - 1] / 64 * 64;
    if (slot < 128) return 0;
    *k_max = (slot - 64) / row_bytes;
    const int64_t k_span = (SPAN_BYTES + row_bytes - 1) / row_bytes;
    if (*k_max > k_span) *k_max = k_span;
    return *k_max >= 2 ? slot : 0;
}

void qk_rows(const char *a, char *b, int64_t row_bytes, int32_t nouter, const int64_t *oshape,
             const int64_t *oa, const int64_t *ob, int64_t o0, int64_t o1, int32_t stream, int32_t spans)
{
    int64_t idx[MAX_OUTER_DIMS], off_a, off_b;
    stream = stream && HAVE_STREAM;
    outer_seek(nouter, oshape, oa, ob, o0, idx, &off_a, &off_b);
    int64_t k_max = 0;
    const int64_t slot = stream && spans ? span_slots(b, off_b, row_bytes, nouter, oshape, ob, &k_max) : 0;
    char *staged = slot ? aligned_alloc(64, SPAN_BUFFER_BYTES) : NULL;
    const int64_t cycle = nouter >= 2 ? oshape[nouter - 1] : 1, cycle_step = nouter >= 2 ? ob[nouter - 1] : 0;
    for (int64_t o = o0; o < o1;) {
        if (staged && idx[nouter - 1] == 0) {
            /* whole cycles left in this thread's share, without leaving the current run of the span axis */
            int64_t k = (o1 - o) / cycle;
            if (k > oshape[nouter - 2] - idx[nouter - 2]) k = oshape[nouter - 2] - idx[nouter - 2];
            if (k > k_max) k = k_max;
            if (k >= 2) {
                const int64_t first_b = off_b;
                for (int64_t g = 0; g < k; ++g)
                    for (int64_t h = 0; h < cycle; ++h, ++o) {
                        const uintptr_t lead = (uintptr_t)(b + first_b + h * cycle_step) & 63;
                        memcpy(staged + h * slot + lead + g * row_bytes, a + off_a, (size_t)row_bytes);
                        outer_next(nouter, oshape, oa, ob, idx, &off_a, &off_b);
                    }
                for (int64_t h = 0; h < cycle; ++h) {
                    char *dst = b + first_b + h * cycle_step;
                    stream_row_unaligned(dst, staged + h * slot + ((uintptr_t)dst & 63), k * row_bytes);
                }
                continue;
            }
        }
        char *dst = b + off_b;
        if (stream) stream_row_unaligned(dst, a + off_a, row_bytes);
        else memcpy(dst, a + off_a, (size_t)row_bytes);
        outer_next(nouter, oshape, oa, ob, idx, &off_a, &off_b);
        ++o;
    }
    if (stream) stream_fence();
    free(staged);
}

/* n items along one axis (byte strides sa, sb), each a run of `run` contiguous elements on both sides. */
void qk_strided(const char *a, char *b, int64_t n, int64_t sa, int64_t sb, int64_t run, int32_t nouter,
                const int64_t *oshape, const int64_t *oa, const int64_t *ob, int64_t o0, int64_t o1)
{
    int64_t idx[MAX_OUTER_DIMS], off_a, off_b;
    outer_seek(nouter, oshape, oa, ob, o0, idx, &off_a, &off_b);
    for (int64_t o = o0; o < o1; ++o) {
        const char *src = a + off_a;
        char *dst = b + off_b;
        if (run == 1)
            for (int64_t k = 0; k < n; ++k) memcpy(dst + k * sb, src + k * sa, W);
        else
            for (int64_t k = 0; k < n; ++k)
                for (int64_t e = 0; e < run; ++e) memcpy(dst + k * sb + e * W, src + k * sa + e * W, W);
        outer_next(nouter, oshape, oa, ob, idx, &off_a, &off_b);
    }
}

/* Transpose an np x nq block: B[pb[i] + j*W] = A[qa[j] + i*W] (a, b, qa, pb already offset to the block).
   A block at least one micro tile wide never runs a partial tile: the last tile of a row or column is moved back
   to end at the edge and rewrites a few elements with the same values (inside this block, so inside this thread's
   share). Only blocks narrower than a micro tile take the masked / buffered partial path.
   `inputs_outer` picks the order of the micro tiles. Into the tile buffer (1): the block's input rows outermost, the
   MQ input rows of one step read across the whole block before the next MQ rows, so each input cache line is read
   whole in one pass and need not stay cached between passes (with output rows outermost, a block of 64 input rows
   32 KiB apart read each line in two passes: 8192^2 float32 ran at 21 % of np.copyto against 46 % on the Zen 2).
   Straight to the output (0): output rows outermost, so that each output line is written whole by consecutive
   micro tiles (input rows outermost ran 512^2 float32, in cache, at 10 GB/s against 23). docs/permute.md,
   "Micro-tile order". */
static void transpose_block(const char *a, int64_t sp, const int64_t *qa, char *b, const int64_t *pb, int64_t np,
                            int64_t nq, int inputs_outer)
{
    if (sp != W) {  /* the input's fastest axis is strided (a sliced view): blocked element copies */
        for (int64_t i = 0; i < np; ++i)
            for (int64_t j = 0; j < nq; ++j) memcpy(b + pb[i] + j * W, a + qa[j] + i * sp, W);
        return;
    }
    if (np >= MP && nq >= MQ && inputs_outer) {
        for (int64_t j0 = 0; j0 < nq; j0 += MQ) {
            const int64_t j = j0 + MQ <= nq ? j0 : nq - MQ;
            for (int64_t i0 = 0; i0 < np; i0 += MP) {
                const int64_t i = i0 + MP <= np ? i0 : np - MP;
                micro_full(a + i * W, qa + j, b + j * W, pb + i);
            }
        }
        return;
    }
    if (np >= MP && nq >= MQ) {
        for (int64_t i0 = 0; i0 < np; i0 += MP) {
            const int64_t i = i0 + MP <= np ? i0 : np - MP;
            for (int64_t j0 = 0; j0 < nq; j0 += MQ) {
                const int64_t j = j0 + MQ <= nq ? j0 : nq - MQ;
                micro_full(a + i * W, qa + j, b + j * W, pb + i);
            }
        }
        return;
    }
    for (int64_t i = 0; i < np; i += MP) {
        const int npv = np - i < MP ? (int)(np - i) : MP;
        for (int64_t j = 0; j < nq; j += MQ) {
            const int nqv = nq - j < MQ ? (int)(nq - j) : MQ;
            micro_part(a + i * W, qa + j, nqv, b + j * W, pb + i, npv);
        }
    }
}

#if SQUARE
/* Square strips (Plan.strips): SQUARE input rows at a time (SQUARE_LINES lines of each output row), each strip
   walked along the plane's whole p range, SQUARE_P output rows a step, in square register tiles that go straight to
   the output as whole streamed lines. The strip's SQUARE input rows are read as long sequential runs, which the
   hardware prefetchers follow (no software prefetch), and there is no tile buffer. The partial-line columns
   [0, head) and [lines_end, nq) and the rows after the last whole square get direct stores. */
static void plane_strips(const char *a, char *b, const qk_tile_args *t, int64_t p0, int64_t p1, int64_t head,
                         int64_t lines_end, char *sink)
{
    const int64_t nq = t->nq;
    if (head > 0) transpose_block(a + p0 * W, W, t->qa, b, t->pb + p0, p1 - p0, head, 0);
    if (lines_end < nq)
        transpose_block(a + p0 * W, W, t->qa + lines_end, b + lines_end * W, t->pb + p0, p1 - p0, nq - lines_end, 0);
    /* whole strips; a last line of columns that makes no whole strip (float64: an odd number of lines) is stored
       directly */
    const int64_t strips_end = head + (lines_end - head) / SQUARE * SQUARE;
    if (strips_end < lines_end)
        transpose_block(a + p0 * W, W, t->qa + strips_end, b + strips_end * W, t->pb + p0, p1 - p0,
                        lines_end - strips_end, 0);
    for (int64_t jq = head; jq < strips_end; jq += SQUARE) {
        const char *rows[SQUARE];
        for (int k = 0; k < SQUARE; ++k) rows[k] = a + t->qa[jq + k];
        /* Input rows that start alike within a line (NumPy's arrays start 16 bytes past one) begin their squares at
           the next line, so that no 64-byte load spans two lines; the rows before it get direct stores. */
        const uintptr_t lead = (uintptr_t)(rows[0] + p0 * W) & 63;
        int alike = lead % W == 0;
        for (int k = 1; k < SQUARE; ++k) alike &= ((uintptr_t)(rows[k] + p0 * W) & 63) == lead;
        int64_t first = p0 + (alike && lead ? (int64_t)(64 - lead) / W : 0);
        if (first > p1) first = p1;
        if (first > p0)
            transpose_block(a + p0 * W, W, t->qa + jq, b + jq * W, t->pb + p0, first - p0, SQUARE, 0);
        const int64_t square_end = first + (p1 - first) / SQUARE_P * SQUARE_P;
        for (int64_t ip = first; ip < square_end; ip += SQUARE_P)
            square_full(rows, ip * W, b + jq * W, t->pb + ip, t->probe, sink);
        if (square_end < p1)
            transpose_block(a + square_end * W, W, t->qa + jq, b + jq * W, t->pb + square_end, p1 - square_end,
                            SQUARE, 0);
    }
}
#endif

/* Tiled transpose without the buffer: macro tiles in output-row order, micro tiles straight to the output. */
static void plane_direct(const char *a, char *b, const qk_tile_args *t, int64_t p0, int64_t p1)
{
    for (int64_t ip = p0; ip < p1; ip += t->tp) {
        const int64_t rows = p1 - ip < t->tp ? p1 - ip : t->tp;
        for (int64_t jq = 0; jq < t->nq; jq += t->tq) {
            const int64_t cols = t->nq - jq < t->tq ? t->nq - jq : t->tq;
            transpose_block(a + ip * t->sp, t->sp, t->qa + jq, b + jq * W, t->pb + ip, rows, cols, 0);
        }
    }
}

/* Whether a run issues its software prefetches of the input: not without them (PROBE_NO_PREFETCH), and not when it
   stores without reading (PROBE_WRITES: its writes alone, with no input traffic at all). */
static inline int prefetches(const qk_tile_args *t)
{
    return t->probe != PROBE_NO_PREFETCH && t->probe != PROBE_WRITES;
}

/* Ask for the input rows [j0, j1) of the next macro tile while this one is transposed: the rows are short runs
   in different pages, which the hardware prefetchers do not follow. */
static inline void prefetch_rows(const char *a, const int64_t *qa, int64_t j0, int64_t j1, int64_t row_bytes)
{
    if (row_bytes < 0) { a += row_bytes; row_bytes = -row_bytes; }
    for (int64_t j = j0; j < j1; ++j)
        for (int64_t k = 0; k < row_bytes; k += 64) __builtin_prefetch(a + qa[j] + k, 0, 3);
}

/* A macro tile of `cols` columns (whole cache lines of each output row) through the aligned buffer, then out with
   whole-line non-temporal stores. */
static inline void buffered_tile(const char *a_rows, const qk_tile_args *t, char *b, const int64_t *pb,
                                 int64_t rows, int64_t jq, int64_t cols, char *buf, const int64_t *pbuf)
{
    if (t->probe != PROBE_WRITES) transpose_block(a_rows, t->sp, t->qa + jq, buf, pbuf, rows, cols, 1);
    if (t->probe != PROBE_READS)
        for (int64_t i = 0; i < rows; ++i) stream_row(b + pb[i] + jq * W, buf + i * t->tq * W, cols * W);
}

/* Output rows that are not cache-line aligned alike, or too short for a whole-line tile: a strip of whole output
   rows is transposed into the buffer, then each run of rows that lie back to back in the output goes out as one
   stream (ordinary stores for its partial end lines only). */
static void plane_whole_rows(const char *a, char *b, const qk_tile_args *t, int64_t p0, int64_t p1,
                             char *buf, const int64_t *prow, int64_t rows_fit)
{
    const int64_t row = t->nq * W;
    for (int64_t ip = p0; ip < p1; ip += rows_fit) {
        const int64_t rows = p1 - ip < rows_fit ? p1 - ip : rows_fit;
        /* the strip sits in the buffer at the output's offset within a cache line: aligned loads feed the stores */
        char *strip = buf + ((uintptr_t)(b + t->pb[ip]) & 63);
        /* the next strip's input rows (NCHW->NHWC into np.empty: 64 rows of 128 bytes a strip) */
        const int64_t next = ip + rows, next_rows = p1 - next < rows_fit ? p1 - next : rows_fit;
        if (prefetches(t) && next < p1)
            prefetch_rows(a + next * t->sp, t->qa, 0, t->nq, next_rows * t->sp);
        if (t->probe != PROBE_WRITES) transpose_block(a + ip * t->sp, t->sp, t->qa, strip, prow, rows, t->nq, 1);
        if (t->probe == PROBE_READS) continue;
        for (int64_t i = 0; i < rows;) {
            int64_t k = i + 1;
            while (k < rows && t->pb[ip + k] == t->pb[ip + k - 1] + row) ++k;
            stream_row_unaligned(b + t->pb[ip + i], strip + i * row, (k - i) * row);
            i = k;
        }
    }
}

/* A block whose output rows tile one contiguous span (the TTC case: 225 rows of 128 bytes that interleave into
   28.8 KB): transposed whole into the buffer at the output's own offsets, then streamed out as one run, whatever the
   output's alignment (a short row streamed alone would cost two partial lines whenever the output is unaligned). */
static void plane_dense(const char *a, char *b, const qk_tile_args *t, char *buf)
{
    char *block = buf + ((uintptr_t)b & 63);
    if (t->probe != PROBE_WRITES) transpose_block(a, t->sp, t->qa, block, t->pb, t->np, t->nq, 1);
    if (t->probe != PROBE_READS) stream_row_unaligned(b, block, t->np * t->nq * W);
}

/* One plane, output rows [p0, p1), streaming: the columns before the first cache-line-aligned output column and
   after the last whole line are written directly; the tiles between go through the buffer. Row order walks a
   strip of output rows across all columns (long input runs per tile); column order walks down a strip of columns
   (each input row read sequentially across tiles): the planner picks per element width, as measured. */
static void plane(const char *a, char *b, const qk_tile_args *t, int64_t p0, int64_t p1,
                  char *buf, const int64_t *pbuf, const int64_t *prow, int64_t rows_fit)
{
    const int64_t nq = t->nq, tq = t->tq, tp = t->tp, sp = t->sp;
    const int64_t misalign = (int64_t)((uintptr_t)(b + t->pb[p0]) & 63);
    /* Columns [head, lines_end) are whole cache lines of every output row; the partial lines before and after
       (an output that does not start on a line: np.empty gives 16 bytes past one) get direct stores. */
    int64_t head = ((64 - misalign) & 63) / W;
    if (head > nq) head = nq;
    const int64_t lines_end = head + (nq - head) * W / 64 * 64 / W;
    /* Unaligned output whose rows lie back to back (NCHW->NHWC: 256-byte rows): strips of whole rows stream as one
       run each, so only the strip's two end lines are partial, not two per row, where the plan says so
       (`whole_row_strips`, planner.WHOLE_ROW_STRIPS); else whole-line tiles, the partial lines stored directly. The
       strips too when no whole line fits. */
    const int contiguous_rows = p1 - p0 > 1 && t->pb[p0 + 1] == t->pb[p0] + nq * W;
    if (misalign != 0 && rows_fit >= MP
        && ((contiguous_rows && t->whole_row_strips) || lines_end == head || misalign % W != 0)) {
        plane_whole_rows(a, b, t, p0, p1, buf, prow, rows_fit < tp ? rows_fit : tp);
        return;
    }
    if (misalign % W != 0) { plane_direct(a, b, t, p0, p1); return; }
#if SQUARE
    if (t->strips && sp == W) { plane_strips(a, b, t, p0, p1, head, lines_end, buf); return; }
#endif
    const int may_prefetch = prefetches(t);
    for (int64_t ip = p0; ip < p1; ip += tp) {
        const int64_t rows = p1 - ip < tp ? p1 - ip : tp;
        if (head > 0) transpose_block(a + ip * sp, sp, t->qa, b, t->pb + ip, rows, head, 0);
        if (lines_end < nq)
            transpose_block(a + ip * sp, sp, t->qa + lines_end, b + lines_end * W, t->pb + ip, rows, nq - lines_end, 0);
        if (!t->column_order)
            for (int64_t jq = head; jq < lines_end; jq += tq) {
                if (may_prefetch)
                    prefetch_rows(a + ip * sp, t->qa, jq + tq, jq + 2 * tq < lines_end ? jq + 2 * tq : lines_end,
                                  rows * sp);
                buffered_tile(a + ip * sp, t, b, t->pb + ip, rows, jq, lines_end - jq < tq ? lines_end - jq : tq,
                              buf, pbuf);
            }
    }
    /* Each tile fetches the next one of the walk: the tile below it, or at the foot of a column the top of the next
       column, so that a short column (NHWC->NCHW: 2 tiles) is not left unfetched at every step (docs/permute.md,
       "Prefetch"). */
    const int64_t top_rows = p1 - p0 < tp ? p1 - p0 : tp;
    if (t->column_order)
        for (int64_t jq = head; jq < lines_end; jq += tq) {
            const int64_t cols = lines_end - jq < tq ? lines_end - jq : tq;
            const int64_t next_jq = jq + tq, next_cols = lines_end - next_jq < tq ? lines_end - next_jq : tq;
            for (int64_t ip = p0; ip < p1; ip += tp) {
                const int64_t rows = p1 - ip < tp ? p1 - ip : tp;
                const int64_t next = ip + tp, next_rows = p1 - next < tp ? p1 - next : tp;
                if (may_prefetch && next < p1) prefetch_rows(a + next * sp, t->qa, jq, jq + cols, next_rows * sp);
                else if (may_prefetch && next_jq < lines_end)
                    prefetch_rows(a + p0 * sp, t->qa, next_jq, next_jq + next_cols, top_rows * sp);
                buffered_tile(a + ip * sp, t, b, t->pb + ip, rows, jq, cols, buf, pbuf);
            }
        }
}

void qk_tile(const char *a, char *b, const qk_tile_args *t, int64_t o0, int64_t o1, int64_t p0, int64_t p1)
{
    _Alignas(64) char buf[TILE_BUFFER_BYTES + 64];
    int64_t pbuf[MAX_TILE_P], prow[MAX_TILE_P];
    /* stream: 0 direct stores; 1 buffered tiles, rows aligned alike; 2 buffered whole rows, any alignment.
       dense: the whole block buffered and streamed as one run (its output is one contiguous span), when this
       chunk holds whole planes; else the stream mode above. */
    const int stream = HAVE_STREAM && t->tp <= MAX_TILE_P && t->tp * t->tq * W <= TILE_BUFFER_BYTES ? t->stream : 0;
    /* how many whole output rows (a multiple of the micro tile) the buffer holds */
    int64_t rows_fit = t->nq * W <= TILE_BUFFER_BYTES ? TILE_BUFFER_BYTES / (t->nq * W) / MP * MP : 0;
    if (rows_fit > MAX_TILE_P) rows_fit = MAX_TILE_P;
    /* the dense block's buffer (up to 256 KiB, L2-sized) lives on the heap (thread stacks may be small), allocated
       by the first plane that takes the dense path; if it cannot be, every plane takes the other paths */
    int dense_fits = HAVE_STREAM && t->dense && p0 == 0 && p1 == t->np && t->np * t->nq * W <= DENSE_BUFFER_BYTES;
    char *dense_buf = NULL;
    if (stream) {
        for (int64_t i = 0; i < t->tp; ++i) pbuf[i] = i * t->tq * W;
        for (int64_t i = 0; i < rows_fit; ++i) prow[i] = i * t->nq * W;
    }
    int64_t idx[MAX_OUTER_DIMS], off_a, off_b, next_idx[MAX_OUTER_DIMS], next_a, next_b;
    outer_seek(t->nouter, t->oshape, t->oa, t->ob, o0, idx, &off_a, &off_b);
    const int64_t plane_bytes = (p1 - p0) * t->nq * W;
    outer_seek(t->nouter, t->oshape, t->oa, t->ob, o0, next_idx, &next_a, &next_b);
    for (int64_t o = o0; o < o1; ++o) {
        outer_next(t->nouter, t->oshape, t->oa, t->ob, next_idx, &next_a, &next_b);
        /* a plane whose rows all start on cache lines streams whole-line tiles (faster there: docs/permute.md, 3-D
           (0, 2, 1) and TTC); the dense path pays where they cannot run: rows off a line, or not aligned alike */
        int dense = dense_fits && (stream != 1 || ((uintptr_t)(b + off_b + t->pb[0]) & 63) != 0);
        if (dense && !dense_buf && !(dense_buf = aligned_alloc(64, DENSE_BUFFER_BYTES + 64))) dense = dense_fits = 0;
        /* which planes fetch the next one's input rows: DENSE_PREFETCH_MIN_BYTES in codegen.py */
        if (prefetches(t) && o + 1 < o1 && dense && plane_bytes > DENSE_PREFETCH_MIN_BYTES)
            prefetch_rows(a + next_a + p0 * t->sp, t->qa, 0, t->nq, (p1 - p0) * t->sp);
        if (dense) plane_dense(a + off_a, b + off_b, t, dense_buf);
        else if (stream == 1) plane(a + off_a, b + off_b, t, p0, p1, buf, pbuf, prow, rows_fit);
        else if (stream == 2 && rows_fit >= MP) plane_whole_rows(a + off_a, b + off_b, t, p0, p1, buf, prow, rows_fit);
        else plane_direct(a + off_a, b + off_b, t, p0, p1);
        outer_next(t->nouter, t->oshape, t->oa, t->ob, idx, &off_a, &off_b);
    }
    if (stream || dense_buf) stream_fence();
    free(dense_buf);
}
"""

# AVX-512 short-axis kernels: a short axis (2..8 long) packed with a long one into whole registers and permuted with
# vpermb/vpermw/vpermd/vpermq (permutexvar) from tables the planner computes (``short_axis_tables``). Bytes need
# AVX-512 VBMI; without it (no __AVX512VBMI__) the byte unit has no such kernels and the planner does not ask.
_SHORT_AXIS_C = r"""
#define PW @PW@
#if PW == 1
#  define PERMUTE(src, m, i, v) _mm512_mask_permutexvar_epi8(src, m, i, v)
#  ifdef __AVX512VBMI__
#    define HAVE_SHORT_AXIS 1
#  else
#    define HAVE_SHORT_AXIS 0
#  endif
#elif PW == 2
#  define PERMUTE(src, m, i, v) _mm512_mask_permutexvar_epi16(src, m, i, v)
#  define HAVE_SHORT_AXIS 1
#elif PW == 4
#  define PERMUTE(src, m, i, v) _mm512_mask_permutexvar_epi32(src, m, i, v)
#  define HAVE_SHORT_AXIS 1
#else
#  define PERMUTE(src, m, i, v) _mm512_mask_permutexvar_epi64(src, (__mmask8)(m), i, v)
#  define HAVE_SHORT_AXIS 1
#endif
#if HAVE_SHORT_AXIS
#define SHORT_L (64 / W)

static inline __mmask64 byte_mask(int64_t bytes)
{
    return bytes >= 64 ? ~(__mmask64)0 : bytes <= 0 ? 0 : (((__mmask64)1 << bytes) - 1);
}

static inline __m512i permute_from(const __m512i *r, int32_t k, const char *idx, const uint64_t *mask, int32_t m)
{
    __m512i out = _mm512_setzero_si512();
    for (int32_t s = 0; s < k; ++s) {
        const uint64_t lanes = mask[m * k + s];
        if (lanes) out = PERMUTE(out, lanes, _mm512_loadu_si512(idx + (int64_t)(m * k + s) * 64), r[s]);
    }
    return out;
}

/* Interleave: k input rows (at rows[s]) of a long contiguous axis -> one contiguous output run, row index fastest.
   n (<= SHORT_L) elements of each row from element i on. */
static inline void interleave_group(const char *src, char *dst, const qk_short_args *t, int64_t i, int64_t n)
{
    const int32_t k = t->k;
    __m512i r[MAX_SHORT_AXIS];
    const __mmask64 load_mask = byte_mask(n * W);
    for (int32_t s = 0; s < k; ++s) r[s] = _mm512_maskz_loadu_epi8(load_mask, src + t->rows[s] + i * W);
    char *run = dst + i * k * W;
    for (int32_t m = 0; m < k; ++m) {
        const __m512i out = permute_from(r, k, (const char *)t->idx, t->mask, m);
        if (n == SHORT_L) _mm512_storeu_si512(run + m * 64, out);
        else _mm512_mask_storeu_epi8(run + m * 64, byte_mask(n * k * W - m * 64), out);
    }
}

/* Deinterleave: one contiguous input run, short index fastest -> k output rows (at rows[i]) of the long axis. */
static inline void deinterleave_group(const char *src, char *dst, const qk_short_args *t, int64_t j, int64_t n)
{
    const int32_t k = t->k;
    __m512i r[MAX_SHORT_AXIS];
    const char *run = src + j * k * W;
    for (int32_t m = 0; m < k; ++m)
        r[m] = n == SHORT_L ? _mm512_loadu_si512(run + m * 64)
                            : _mm512_maskz_loadu_epi8(byte_mask(n * k * W - m * 64), run + m * 64);
    for (int32_t i = 0; i < k; ++i) {
        const __m512i out = permute_from(r, k, (const char *)t->idx, t->mask, i);
        if (n == SHORT_L) _mm512_storeu_si512(dst + t->rows[i] + j * W, out);
        else _mm512_mask_storeu_epi8(dst + t->rows[i] + j * W, byte_mask(n * W), out);
    }
}

/* Both kernels: the outer loop, and the long axis [p0, p1) in groups of one register's worth of elements. */
static inline void short_axis(const char *a, char *b, const qk_short_args *t, int64_t o0, int64_t o1, int64_t p0,
                              int64_t p1, int interleave)
{
    int64_t ix[MAX_OUTER_DIMS], off_a, off_b;
    outer_seek(t->nouter, t->oshape, t->oa, t->ob, o0, ix, &off_a, &off_b);
    for (int64_t o = o0; o < o1; ++o) {
        for (int64_t e = p0; e < p1; e += SHORT_L) {
            const int64_t n = p1 - e < SHORT_L ? p1 - e : SHORT_L;
            if (interleave) interleave_group(a + off_a, b + off_b, t, e, n);
            else deinterleave_group(a + off_a, b + off_b, t, e, n);
        }
        outer_next(t->nouter, t->oshape, t->oa, t->ob, ix, &off_a, &off_b);
    }
}

void qk_interleave(const char *a, char *b, const qk_short_args *t, int64_t o0, int64_t o1, int64_t p0, int64_t p1)
{
    short_axis(a, b, t, o0, o1, p0, p1, 1);
}

void qk_deinterleave(const char *a, char *b, const qk_short_args *t, int64_t o0, int64_t o1, int64_t p0, int64_t p1)
{
    short_axis(a, b, t, o0, o1, p0, p1, 0);
}
#endif
"""

# AVX2 short-axis kernels: the same loops on 16-byte registers, permuted with pshufb from the byte tables of
# ``byte_shuffle_tables`` (an index byte of 0x80 gives zero, so the k sources are ORed). The k x k tables are copied
# into a local array once per call, so the stores (char pointers, which may alias anything) do not force them to be
# reloaded; k is a constant in each case of the switch, so the loops over sources and registers unroll. Tails
# (fewer than one register's elements) go through a zeroed register by memcpy.
_SHORT_AXIS_SHUFFLE_C = r"""
#define SHORT_L (16 / W)
#define SHUFFLE_INLINE static inline __attribute__((always_inline))

SHUFFLE_INLINE __m128i shuffle_load(const char *p, int64_t bytes)
{
    if (bytes >= 16) return _mm_loadu_si128((const __m128i *)p);
    __m128i v = _mm_setzero_si128();
    if (bytes > 0) memcpy(&v, p, (size_t)bytes);
    return v;
}

SHUFFLE_INLINE void shuffle_store(char *p, __m128i v, int64_t bytes)
{
    if (bytes >= 16) _mm_storeu_si128((__m128i *)p, v);
    else if (bytes > 0) memcpy(p, &v, (size_t)bytes);
}

SHUFFLE_INLINE __m128i shuffle_from(const __m128i *r, const __m128i *tab, int32_t k, int32_t m)
{
    __m128i out = _mm_shuffle_epi8(r[0], tab[m * k]);
    for (int32_t s = 1; s < k; ++s) out = _mm_or_si128(out, _mm_shuffle_epi8(r[s], tab[m * k + s]));
    return out;
}

/* Interleave: k input rows (at rows[s]) -> one contiguous output run, row index fastest; n (<= SHORT_L) elements of
   each row from element i on. */
SHUFFLE_INLINE void interleave_group(const char *src, char *dst, const int64_t *rows, const __m128i *tab, int32_t k,
                                     int64_t i, int64_t n)
{
    __m128i r[MAX_SHORT_AXIS];
    for (int32_t s = 0; s < k; ++s) r[s] = shuffle_load(src + rows[s] + i * W, n * W);
    char *run = dst + i * k * W;
    for (int32_t m = 0; m < k; ++m) shuffle_store(run + m * 16, shuffle_from(r, tab, k, m), n * k * W - m * 16);
}

/* Deinterleave: one contiguous input run, short index fastest -> k output rows (at rows[i]) of the long axis. */
SHUFFLE_INLINE void deinterleave_group(const char *src, char *dst, const int64_t *rows, const __m128i *tab,
                                       int32_t k, int64_t j, int64_t n)
{
    __m128i r[MAX_SHORT_AXIS];
    const char *run = src + j * k * W;
    for (int32_t m = 0; m < k; ++m) r[m] = shuffle_load(run + m * 16, n * k * W - m * 16);
    for (int32_t i = 0; i < k; ++i) shuffle_store(dst + rows[i] + j * W, shuffle_from(r, tab, k, i), n * W);
}

SHUFFLE_INLINE void short_axis_k(const char *a, char *b, const qk_short_args *t, int32_t k, int64_t o0, int64_t o1,
                                 int64_t p0, int64_t p1, int interleave)
{
    __m128i tab[MAX_SHORT_AXIS * MAX_SHORT_AXIS];
    int64_t rows[MAX_SHORT_AXIS];
    for (int32_t e = 0; e < k * k; ++e) tab[e] = _mm_loadu_si128((const __m128i *)((const char *)t->idx + e * 16));
    for (int32_t s = 0; s < k; ++s) rows[s] = t->rows[s];
    int64_t ix[MAX_OUTER_DIMS], off_a, off_b;
    outer_seek(t->nouter, t->oshape, t->oa, t->ob, o0, ix, &off_a, &off_b);
    for (int64_t o = o0; o < o1; ++o) {
        int64_t e = p0;
        for (; e + SHORT_L <= p1; e += SHORT_L) {
            if (interleave) interleave_group(a + off_a, b + off_b, rows, tab, k, e, SHORT_L);
            else deinterleave_group(a + off_a, b + off_b, rows, tab, k, e, SHORT_L);
        }
        if (e < p1) {
            if (interleave) interleave_group(a + off_a, b + off_b, rows, tab, k, e, p1 - e);
            else deinterleave_group(a + off_a, b + off_b, rows, tab, k, e, p1 - e);
        }
        outer_next(t->nouter, t->oshape, t->oa, t->ob, ix, &off_a, &off_b);
    }
}

static void short_axis(const char *a, char *b, const qk_short_args *t, int64_t o0, int64_t o1, int64_t p0,
                       int64_t p1, int interleave)
{
    switch (t->k) {
    case 2: short_axis_k(a, b, t, 2, o0, o1, p0, p1, interleave); break;
    case 3: short_axis_k(a, b, t, 3, o0, o1, p0, p1, interleave); break;
    case 4: short_axis_k(a, b, t, 4, o0, o1, p0, p1, interleave); break;
    case 5: short_axis_k(a, b, t, 5, o0, o1, p0, p1, interleave); break;
    case 6: short_axis_k(a, b, t, 6, o0, o1, p0, p1, interleave); break;
    case 7: short_axis_k(a, b, t, 7, o0, o1, p0, p1, interleave); break;
    default: /* 8: the planner asks for 2..MAX_SHORT_AXIS */
        short_axis_k(a, b, t, MAX_SHORT_AXIS, o0, o1, p0, p1, interleave); break;
    }
}

void qk_interleave(const char *a, char *b, const qk_short_args *t, int64_t o0, int64_t o1, int64_t p0, int64_t p1)
{
    short_axis(a, b, t, o0, o1, p0, p1, 1);
}

void qk_deinterleave(const char *a, char *b, const qk_short_args *t, int64_t o0, int64_t o1, int64_t p0, int64_t p1)
{
    short_axis(a, b, t, o0, o1, p0, p1, 0);
}
"""
