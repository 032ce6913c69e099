/* An alternative structure for the 2-D float32 transpose, timed by its halves (benchmarks/permute_panel_probe.py).

   Panel scheme: R input rows x K columns are copied row by row, each row one sequential run, into an L2-sized
   panel (one read stream at a time instead of the tile kernel's R interleaved ones); the panel is then transposed
   in 8 x 8 AVX2 register tiles into an L1 buffer of 8 output rows x R elements, and each of those rows goes out as
   one run of R * 4 bytes of non-temporal stores. Modes: 0 the whole transpose; 1 only the panel copies (the reads);
   2 only the streamed rows (the writes, from a buffer that is never filled). Prints "label<TAB>seconds" per
   contender (minimum over the rounds) and "correct<TAB>0|1". Panels of 8192 columns are whole rows of the 8192^2
   input: their reads walk the input in memory order. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* out[k * so + i] = in[i * si + k] for an 8 x 8 tile, out aligned to 32 bytes. */
static inline void transpose8(const float *in, int64_t si, float *out, int64_t so)
{
    __m256 r[8], t[8], s[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(in + i * si);
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {
        const int b = 4 * h;
        s[b + 0] = _mm256_shuffle_ps(t[b + 0], t[b + 2], 0x44);
        s[b + 1] = _mm256_shuffle_ps(t[b + 0], t[b + 2], 0xEE);
        s[b + 2] = _mm256_shuffle_ps(t[b + 1], t[b + 3], 0x44);
        s[b + 3] = _mm256_shuffle_ps(t[b + 1], t[b + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {
        _mm256_store_ps(out + k * so, _mm256_permute2f128_ps(s[k], s[k + 4], 0x20));
        _mm256_store_ps(out + (k + 4) * so, _mm256_permute2f128_ps(s[k], s[k + 4], 0x31));
    }
}

static void panel_transpose(const float *a, float *b, int64_t n, int64_t rows, int64_t cols, int mode,
                            float *panel, float *strip)
{
    for (int64_t r0 = 0; r0 < n; r0 += rows)
        for (int64_t c0 = 0; c0 < n; c0 += cols) {
            if (mode != 2)
                for (int64_t r = 0; r < rows; ++r) {
                    if (r + 1 < rows)
                        for (int64_t k = 0; k < cols * 4; k += 64)
                            __builtin_prefetch((const char *)(a + (r0 + r + 1) * n + c0) + k, 0, 3);
                    memcpy(panel + r * cols, a + (r0 + r) * n + c0, (size_t)cols * 4);
                }
            if (mode == 1) continue;
            for (int64_t c = 0; c < cols; c += 8) {
                if (mode == 0)
                    for (int64_t r = 0; r < rows; r += 8) transpose8(panel + r * cols + c, cols, strip + r, rows);
                for (int64_t k = 0; k < 8; ++k) {
                    float *dst = b + (c0 + c + k) * n + r0;
                    for (int64_t e = 0; e < rows; e += 8) _mm256_stream_ps(dst + e, _mm256_load_ps(strip + k * rows + e));
                }
            }
        }
    _mm_sfence();
}

int main(int argc, char **argv)
{
    const int64_t n = argc > 1 ? atoll(argv[1]) : 8192;
    const int rounds = argc > 2 ? atoi(argv[2]) : 3;
    static const int64_t shapes[][2] = {{64, 256}, {64, 512}, {64, 1024}, {64, 2048}, {128, 256}, {128, 512}, {64, 8192}, {8, 8192}};
    enum { NSHAPES = sizeof shapes / sizeof shapes[0], NMODES = 3 };
    static const char *mode_names[NMODES] = {"transpose", "reads alone", "writes alone"};
    float *a = aligned_alloc(64, (size_t)(n * n * 4)), *b = aligned_alloc(64, (size_t)(n * n * 4));
    float *panel = aligned_alloc(64, 64 * 8192 * 4), *strip = aligned_alloc(64, 8 * 128 * 4);
    if (!a || !b || !panel || !strip) return 1;
    for (int64_t i = 0; i < n * n; ++i) a[i] = (float)i;
    memset(b, 0, (size_t)(n * n * 4));
    memset(strip, 0, 8 * 128 * 4);
    double copy_best = 1e30, best[NSHAPES][NMODES];
    for (int s = 0; s < NSHAPES; ++s)
        for (int m = 0; m < NMODES; ++m) best[s][m] = 1e30;
    for (int round = 0; round < rounds; ++round) {
        double t = now();
        memcpy(b, a, (size_t)(n * n * 4));
        t = now() - t;
        if (t < copy_best) copy_best = t;
        for (int s = 0; s < NSHAPES; ++s)
            for (int m = 0; m < NMODES; ++m) {
                t = now();
                panel_transpose(a, b, n, shapes[s][0], shapes[s][1], m, panel, strip);
                t = now() - t;
                if (t < best[s][m]) best[s][m] = t;
            }
    }
    printf("memcpy\t%.9f\n", copy_best);
    for (int s = 0; s < NSHAPES; ++s)
        for (int m = 0; m < NMODES; ++m)
            printf("%lld x %lld\t%s\t%.9f\n", (long long)shapes[s][0], (long long)shapes[s][1], mode_names[m], best[s][m]);
    panel_transpose(a, b, n, shapes[0][0], shapes[0][1], 0, panel, strip);
    int correct = 1;
    for (int64_t i = 0; i < n; i += 7)
        for (int64_t j = 0; j < n; j += 5) correct &= b[j * n + i] == a[i * n + j];
    printf("correct\t%d\n", correct);
    return 0;
}
