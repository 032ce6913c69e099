"""The generated NEON kernels, cross-compiled for aarch64 and run under qemu against the generated scalar kernels.

Skipped where the cross toolchain is absent (``apt-get install gcc-aarch64-linux-gnu qemu-user-static``): the
host CPU cannot run NEON code, so this is the only way an x86 machine checks the NEON generator.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from qwenkit.permute import codegen

CROSS_CC = shutil.which("aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
pytestmark = pytest.mark.skipif(CROSS_CC is None or QEMU is None, reason="no aarch64 cross compiler or qemu")

_SYMBOLS = ("qk_tile", "qk_rows", "qk_strided", "qk_micro_p", "qk_micro_q", "qk_probe_read", "qk_probe_write")

_DRIVER = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { int64_t np, nq, tp, tq; int64_t sp; int32_t column_order; const int64_t *pb; const int64_t *qa;
                 int32_t nouter; const int64_t *oshape; const int64_t *oa; const int64_t *ob; int32_t stream;
                 int32_t dense; int32_t probe; int32_t whole_row_strips; int32_t strips;
} qk_tile_args;
#define DECLARE(prefix) \
  void prefix##_qk_tile(const char *, char *, const qk_tile_args *, int64_t, int64_t, int64_t, int64_t); \
  int32_t prefix##_qk_micro_p(void);
DECLARE(neon)
DECLARE(ref)
static uint64_t state = 88172645463325252ull;
static unsigned char next_byte(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }

/* An R x C input (rows of C elements, row stride C*step*W) transposed into C x R, on two outer copies. */
static int run(int64_t R, int64_t C, int64_t step, int64_t tp, int64_t tq, int stream, int column_order, int misalign)
{
    const int64_t in_bytes = 2 * R * C * step * W + 64, out_bytes = 2 * R * C * W + 128;
    char *a = malloc(in_bytes), *b1 = aligned_alloc(64, out_bytes), *b2 = aligned_alloc(64, out_bytes);
    int64_t *pb = malloc(C * sizeof(int64_t)), *qa = malloc(R * sizeof(int64_t));
    for (int64_t k = 0; k < in_bytes; ++k) a[k] = (char)next_byte();
    memset(b1, 0, out_bytes); memset(b2, 0, out_bytes);
    for (int64_t i = 0; i < C; ++i) pb[i] = i * R * W;
    for (int64_t j = 0; j < R; ++j) qa[j] = j * C * step * W;
    int64_t oshape[1] = {2}, oa[1] = {R * C * step * W}, ob[1] = {R * C * W};
    qk_tile_args t = {C, R, tp, tq, step * W, column_order, pb, qa, 1, oshape, oa, ob, stream};
    neon_qk_tile(a, b1 + misalign, &t, 0, 2, 0, C);
    ref_qk_tile(a, b2 + misalign, &t, 0, 2, 0, C);
    int bad = memcmp(b1, b2, out_bytes) != 0;
    if (bad) printf("MISMATCH W=%d R=%lld C=%lld step=%lld tp=%lld tq=%lld stream=%d col=%d mis=%d\n", W,
                    (long long)R, (long long)C, (long long)step, (long long)tp, (long long)tq, stream, column_order,
                    misalign);
    free(a); free(b1); free(b2); free(pb); free(qa);
    return bad;
}

int main(void)
{
    const int64_t sizes[] = {1, 3, 15, 16, 17, 33, 64, 100, 129};
    int failures = 0, runs = 0;
    const int64_t mp = neon_qk_micro_p();
    for (int si = 0; si < 9; ++si)
        for (int sj = 0; sj < 9; ++sj)
            for (int step = 1; step <= 2; ++step)
                for (int mode = 0; mode < 4; ++mode) {
                    const int64_t tq = 64 / W, tp = mp * 2;
                    failures += run(sizes[si], sizes[sj], step, tp, tq, mode & 1, (mode >> 1) & 1, mode == 3 ? W : 0);
                    ++runs;
                }
    printf("%d runs, %d failures\n", runs, failures);
    return failures != 0;
}
"""


@pytest.mark.parametrize("width", codegen.WIDTHS)
def test_neon_kernels_match_scalar_under_qemu(tmp_path, width):
    objects = []
    for isa, prefix in (("neon", "neon"), ("scalar", "ref")):
        source = tmp_path / f"{prefix}.c"
        source.write_text(codegen.generate_source(isa, width))
        renames = [f"-D{name}={prefix}_{name}" for name in _SYMBOLS]
        obj = tmp_path / f"{prefix}.o"
        subprocess.run([CROSS_CC, "-O2", "-std=c11", "-c", *renames, "-o", str(obj), str(source)], check=True,
                       capture_output=True, text=True)
        objects.append(str(obj))
    driver = tmp_path / "driver.c"
    driver.write_text(f"#define W {width}\n" + _DRIVER)
    binary = tmp_path / "driver"
    subprocess.run([CROSS_CC, "-O1", "-std=c11", "-static", "-o", str(binary), str(driver), *objects], check=True,
                   capture_output=True, text=True)
    done = subprocess.run([QEMU, str(binary)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 failures" in done.stdout
