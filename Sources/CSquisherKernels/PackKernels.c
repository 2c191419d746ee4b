// AVX-512 packing of GEMM operands into the slivers the micro-kernels read (see CSquisherKernels.h).
// The Swift build targets baseline x86-64, where the same loops run four floats at a time; these
// run sixteen, with masked loads and stores for the zero padding and the ragged ends.

#include "CSquisherKernels.h"
#include "AVX512Lanes.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define CSQ_PACK_TARGET __attribute__((target("avx512f")))

/// Rows ahead that the copying pack prefetches (BENCHMARKS.md, "Matrix multiply").
#define CSQ_PACK_PREFETCH_ROWS 4

CSQ_PACK_TARGET
void csq_pack_copy_avx512(const float *src, long ld, long depth, long count, long width, float *dst) {
    // Row by row of the source (each row read front to back), each row scattered
    // into the slivers; lanes at or beyond `count` load as zero (the padding of the last sliver).
    long slivers = (count + width - 1) / width;
    for (long p = 0; p < depth; p++) {
        const float *s = src + p * ld;
        // The rows are strided (a band of columns of a wider matrix, each row in another page): the
        // hardware prefetcher does not follow them, so fetch the row a few ahead while this one is copied.
        if (p + CSQ_PACK_PREFETCH_ROWS < depth) {
            const char *ahead = (const char *)(s + CSQ_PACK_PREFETCH_ROWS * ld);
            for (long byte = 0; byte < count * (long)sizeof(float); byte += 64) _mm_prefetch(ahead + byte, _MM_HINT_T0);
        }
        for (long sliver = 0; sliver < slivers; sliver++) {
            const float *from = s + sliver * width;
            float *d = dst + sliver * width * depth + p * width;
            long left = count - sliver * width;
            if (width == 32 && left >= 32) {
                _mm512_storeu_ps(d, _mm512_loadu_ps(from));
                _mm512_storeu_ps(d + 16, _mm512_loadu_ps(from + 16));
                continue;
            }
            for (long j = 0; j < width; j += 16) {
                __m512 v = _mm512_maskz_loadu_ps(csq_lanes(left - j), from + j);
                _mm512_mask_storeu_ps(d + j, csq_lanes(width - j), v);
            }
        }
    }
}

/// Transposes 16 vectors in place: afterwards `r[q]` lane `l` holds what `r[l]` lane `q` held.
CSQ_PACK_TARGET static inline void csq_transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    // Interleave 32-bit pairs within 128-bit lanes: t[2i], t[2i+1] from rows 2i and 2i+1.
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Interleave 64-bit pairs: lane L of u[4i + c] is rows 4i..4i+3 of column 4L + c.
    for (int i = 0; i < 4; i++) {
        __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
        __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    // Gather lane L of u[c], u[4 + c], u[8 + c], u[12 + c] into column 4L + c.
    for (int c = 0; c < 4; c++) {
        __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        __m512 y0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
}

CSQ_PACK_TARGET
void csq_pack_transpose_avx512(const float *src, long ld, long lines, long depth, long width, float *dst) {
    // Groups of 16 destination lanes; lines at or beyond `lines` are zero vectors (the padding).
    for (long l0 = 0; l0 < width; l0 += 16) {
        long rows = lines - l0 < 0 ? 0 : (lines - l0 < 16 ? lines - l0 : 16);
        __mmask16 storeMask = csq_lanes(width - l0);
        for (long p = 0; p < depth; p += 16) {
            long steps = depth - p < 16 ? depth - p : 16;
            __mmask16 loadMask = csq_lanes(steps);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                r[i] = i < rows ? _mm512_maskz_loadu_ps(loadMask, src + (l0 + i) * ld + p) : _mm512_setzero_ps();
            }
            csq_transpose16(r);
            for (long q = 0; q < steps; q++) {
                _mm512_mask_storeu_ps(dst + (p + q) * width + l0, storeMask, r[q]);
            }
        }
    }
}

#else

void csq_pack_copy_avx512(const float *src, long ld, long depth, long count, long width, float *dst) {
    long slivers = (count + width - 1) / width;
    for (long sliver = 0; sliver < slivers; sliver++)
        for (long p = 0; p < depth; p++)
            for (long j = 0; j < width; j++) {
                long column = sliver * width + j;
                dst[sliver * width * depth + p * width + j] = column < count ? src[p * ld + column] : 0.0f;
            }
}

void csq_pack_transpose_avx512(const float *src, long ld, long lines, long depth, long width, float *dst) {
    for (long p = 0; p < depth; p++)
        for (long l = 0; l < width; l++) dst[p * width + l] = l < lines ? src[l * ld + p] : 0.0f;
}

#endif
