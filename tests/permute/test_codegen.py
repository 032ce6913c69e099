"""The code generator: the transpose network and the short-axis permutation tables, checked by simulation
independently of the generator's own checks, and the emitted source for every ISA and width."""

from __future__ import annotations

import numpy as np
import pytest

from qwenkit.permute import codegen


def _run_network(m: int) -> list[list[tuple[int, int]]]:
    load_rows, stages = codegen.transpose_network(m)
    regs = [[(row, col) for col in range(m)] for row in load_rows]
    for start in range(0, len(stages), m):
        new = []
        for chunk, k, lo_from, hi_from in stages[start:start + m]:
            half = slice(m // 2, m) if k % 2 else slice(0, m // 2)
            a, b = regs[lo_from][half], regs[hi_from][half]
            new.append([x for c in range(0, m // 2, chunk) for x in a[c:c + chunk] + b[c:c + chunk]])
        regs = new
    return regs


@pytest.mark.parametrize("m", [1, 2, 4, 8, 16])
def test_transpose_network_transposes(m):
    assert _run_network(m) == [[(row, k) for row in range(m)] for k in range(m)]


@pytest.mark.parametrize("kind", ["interleave", "deinterleave"])
@pytest.mark.parametrize("width", codegen.WIDTHS)
@pytest.mark.parametrize("k", range(2, codegen.MAX_SHORT_AXIS + 1))
def test_short_axis_tables_permute_correctly(kind, width, k):
    idx, mask = codegen.short_axis_tables(kind, k, width)
    lanes, units = 64 // width, max(1, width // 8)
    per_register = 64 // min(width, 8)
    if kind == "interleave":  # register s: L consecutive elements of input row s
        registers = [[(s, e // units, e % units) for e in range(per_register)] for s in range(k)]
    else:  # register m: elements m*L.. of the contiguous input run (long index, short index)
        registers = [[divmod(m * lanes + e // units, k) + (e % units,) for e in range(per_register)] for m in range(k)]
    for m in range(k):
        out = [None] * per_register
        for s in range(k):
            for e in range(per_register):
                if int(mask[m, s]) >> e & 1:
                    assert out[e] is None, "two sources write one lane"
                    out[e] = registers[s][int(idx[m, s, e])]
        for e in range(per_register):
            element, sub = divmod(e, units)
            if kind == "interleave":
                g = m * lanes + element
                assert out[e] == (g % k, g // k, sub)
            else:
                assert out[e] == (element, m, sub)


def _pshufb(register: list, index: np.ndarray) -> list:
    """An independent model of SSSE3 ``pshufb``: byte b takes ``register[index[b] & 15]``, or zero (None here)
    where the index' high bit is set."""
    return [None if i & 0x80 else register[i & 15] for i in index.tolist()]


@pytest.mark.parametrize("kind", ["interleave", "deinterleave"])
@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("k", range(2, codegen.MAX_SHORT_AXIS + 1))
def test_byte_shuffle_tables_permute_correctly(kind, width, k):
    """OR over the k sources of pshufb(r_s, idx[m, s]) puts the right byte of the right element in every output
    byte, from exactly one source, and the masks name that source."""
    idx, mask = codegen.byte_shuffle_tables(kind, k, width)
    lanes = 16 // width
    if kind == "interleave":  # register s: L consecutive elements of input row s, as (row, element, byte)
        registers = [[(s, b // width, b % width) for b in range(16)] for s in range(k)]
    else:  # register m: bytes 16m.. of the contiguous input run, element g = (long index, short index) = divmod(g, k)
        registers = [[divmod((m * 16 + b) // width, k) + (b % width,) for b in range(16)] for m in range(k)]
    for m in range(k):
        out = [None] * 16
        for s in range(k):
            for b, value in enumerate(_pshufb(registers[s], idx[m, s])):
                assert (value is not None) == bool(int(mask[m, s]) >> b & 1)
                if value is not None:
                    assert out[b] is None, "two sources write one byte"
                    out[b] = value
        for b in range(16):
            element = b // width
            if kind == "interleave":
                g = m * lanes + element
                assert out[b] == (g % k, g // k, b % width)
            else:
                assert out[b] == (element, m, b % width)


def test_byte_shuffle_tables_need_two_elements_to_a_register():
    with pytest.raises(ValueError, match="width 16"):
        codegen.byte_shuffle_tables("interleave", 2, 16)
    with pytest.raises(ValueError, match="no short-axis kernels"):
        codegen.short_axis_permutation("sse2", "interleave", 3, 1)


@pytest.mark.parametrize("isa", list(codegen.ISA_SPECS))
@pytest.mark.parametrize("width", codegen.WIDTHS)
def test_every_unit_is_generated(isa, width):
    source = codegen.generate_source(isa, width)
    for symbol in ("void qk_tile(", "void qk_rows(", "void qk_strided("):
        assert symbol in source
    assert f"#define W {width}" in source
    if isa == "neon" and width < 16:
        assert "vzip1q_u" in source and "vzip2q_u" in source
    if isa == "avx512":
        assert "qk_interleave" in source and "_mm512_stream_si512" in source
    if isa == "avx2":
        assert ("_mm_shuffle_epi8" in source) == (width <= 8)
    if isa == "scalar":
        assert "immintrin" not in source and "arm_neon" not in source


def test_unknown_isa_or_width_is_an_error():
    with pytest.raises(ValueError):
        codegen.generate_source("avx9000", 4)
    with pytest.raises(ValueError):
        codegen.generate_source("avx2", 3)
