// Register-tiled single-precision GEMM micro-kernels, one per instruction set, selected at run time.
//
// Every kernel computes one MR x NR tile of C from packed panels:
//   a: kc groups of MR floats (column p of the MR-row sliver of op(A), zero-padded),
//   b: kc groups of NR floats (row p of the NR-column sliver of op(B), zero-padded),
//   C[i, j] = alpha * sum_p a[p*MR + i] * b[p*NR + j] + beta * C[i, j]   for i < mr, j < nr,
// where beta == 0 means C is written without being read (NaNs in C are overwritten).
// Only these kernels need AVX2/FMA or AVX-512; each is compiled for its ISA through a per-function
// target attribute, so the default (baseline x86-64) build still carries them all.
#include "CSquisherKernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CSQ_X86 1
#endif

#define CSQ_UNROLL _Pragma("clang loop unroll(full)")

/// Writes the accumulated tile `acc` (MR x NR, row stride NR) into C with alpha/beta, for a partial tile.
static inline void csq_store_partial(const float *acc, long accStride, float *c, long ldc, long mr, long nr,
                                     float alpha, float beta) {
    for (long i = 0; i < mr; i++) {
        float *row = c + i * ldc;
        const float *src = acc + i * accStride;
        if (beta == 0.0f) {
            for (long j = 0; j < nr; j++) row[j] = alpha * src[j];
        } else {
            for (long j = 0; j < nr; j++) row[j] = alpha * src[j] + beta * row[j];
        }
    }
}

/// Adds `scale * acc * acc` (rounded as `(scale * acc) * acc + C`, no fused multiply-add) to a partial tile
/// of C: the rounding of computing the product into memory and then adding its scaled squares.
static inline void csq_add_squares_partial(const float *acc, long accStride, float *c, long ldc, long mr,
                                           long nr, float scale) {
#pragma clang fp contract(off)
    for (long i = 0; i < mr; i++) {
        float *row = c + i * ldc;
        const float *src = acc + i * accStride;
        for (long j = 0; j < nr; j++) row[j] = (scale * src[j]) * src[j] + row[j];
    }
}

// ---------------------------------------------------------------------------------------------
// Portable kernel (baseline x86-64 / other architectures): 4 x 16, plain C the compiler vectorizes.
#define CSQ_P_MR 4
#define CSQ_P_NR 16
static void csq_sgemm_portable_4x16(long kc, const float *restrict a, const float *restrict b, float *restrict c,
                                    long ldc, long mr, long nr, float alpha, float beta) {
    float acc[CSQ_P_MR][CSQ_P_NR] = {{0}};
    for (long p = 0; p < kc; p++) {
        const float *bp = b + p * CSQ_P_NR;
        const float *ap = a + p * CSQ_P_MR;
        CSQ_UNROLL for (int i = 0; i < CSQ_P_MR; i++) {
            float ai = ap[i];
            CSQ_UNROLL for (int j = 0; j < CSQ_P_NR; j++) acc[i][j] += ai * bp[j];
        }
    }
    csq_store_partial(&acc[0][0], CSQ_P_NR, c, ldc, mr, nr, alpha, beta);
}

#ifdef CSQ_X86
// ---------------------------------------------------------------------------------------------
// AVX2 + FMA: MR x (8 * NV) tiles in ymm registers, A broadcast, B loaded.
#define CSQ_DEFINE_AVX2(MR, NV)                                                                          \
__attribute__((target("avx2,fma")))                                                                     \
static void csq_sgemm_avx2_##MR##x##NV(long kc, const float *restrict a, const float *restrict b,        \
                                       float *restrict c, long ldc, long mr, long nr, float alpha,       \
                                       float beta) {                                                     \
    __m256 acc[MR][NV];                                                                                  \
    CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++)                      \
        acc[i][v] = _mm256_setzero_ps();                                                                 \
    CSQ_UNROLL for (int i = 0; i < MR; i++) {                                                            \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                                          \
        _mm_prefetch((const char *)(c + i * ldc + 8 * NV - 1), _MM_HINT_T0);                            \
    }                                                                                                    \
    for (long p = 0; p < kc; p++) {                                                                      \
        __m256 bv[NV];                                                                                   \
        CSQ_UNROLL for (int v = 0; v < NV; v++) bv[v] = _mm256_loadu_ps(b + 8 * v);                      \
        CSQ_UNROLL for (int i = 0; i < MR; i++) {                                                        \
            __m256 ai = _mm256_broadcast_ss(a + i);                                                      \
            CSQ_UNROLL for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);   \
        }                                                                                                \
        a += MR;                                                                                         \
        b += 8 * NV;                                                                                     \
    }                                                                                                    \
    __m256 va = _mm256_set1_ps(alpha);                                                                   \
    if (mr == MR && nr == 8 * NV) {                                                                      \
        if (beta == 0.0f) {                                                                              \
            CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++)              \
                _mm256_storeu_ps(c + i * ldc + 8 * v, _mm256_mul_ps(va, acc[i][v]));                     \
        } else {                                                                                         \
            __m256 vb = _mm256_set1_ps(beta);                                                            \
            CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++) {            \
                float *cp = c + i * ldc + 8 * v;                                                         \
                _mm256_storeu_ps(cp, _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp), _mm256_mul_ps(va, acc[i][v]))); \
            }                                                                                            \
        }                                                                                                \
    } else {                                                                                             \
        float tile[MR * 8 * NV];                                                                         \
        CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++)                  \
            _mm256_storeu_ps(tile + i * 8 * NV + 8 * v, acc[i][v]);                                      \
        csq_store_partial(tile, 8 * NV, c, ldc, mr, nr, alpha, beta);                                    \
    }                                                                                                    \
}

// ---------------------------------------------------------------------------------------------
// One depth step of the AVX-512 kernels: NV zmm loads of the B sliver, MR broadcasts of the A sliver,
// MR x NV FMAs into the accumulators `acc`; then both sliver pointers move one step on.
#define CSQ_AVX512_DEPTH_STEP(MR, NV)                                                                    \
    do {                                                                                                 \
        __m512 bv[NV];                                                                                   \
        CSQ_UNROLL for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);                     \
        CSQ_UNROLL for (int i = 0; i < MR; i++) {                                                        \
            __m512 ai = _mm512_set1_ps(a[i]);                                                            \
            CSQ_UNROLL for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);   \
        }                                                                                                \
        a += MR;                                                                                         \
        b += 16 * NV;                                                                                    \
    } while (0)

// AVX-512F: MR x (16 * NV) tiles in zmm registers (32 of them), A broadcast, B loaded. With PF (PFB) > 0,
// the depth loop is unrolled by 4 and each depth step prefetches the A (B) sliver PF (PFB) steps ahead
// into L1 (measured 0-15% faster than none on the GPT-2 block products; BENCHMARKS.md, "Matrix multiply").
#define CSQ_DEFINE_AVX512(NAME, MR, NV, PF, PFB, SQ)                                                        \
__attribute__((target("avx512f,avx512dq,fma")))                                                         \
static void NAME(long kc, const float *restrict a, const float *restrict b,                             \
                 float *restrict c, long ldc, long mr, long nr, float alpha, float beta) {              \
    __m512 acc[MR][NV];                                                                                  \
    CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++)                      \
        acc[i][v] = _mm512_setzero_ps();                                                                 \
    CSQ_UNROLL for (int i = 0; i < MR; i++) {                                                            \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                                          \
        _mm_prefetch((const char *)(c + i * ldc + 16 * NV - 1), _MM_HINT_T0);                            \
    }                                                                                                    \
    long p = 0;                                                                                          \
    if (PF > 0 || PFB > 0) {                                                                             \
        for (; p + 4 <= kc; p += 4) {                                                                    \
            CSQ_UNROLL for (int u = 0; u < 4; u++) {                                                     \
                if (PF > 0) _mm_prefetch((const char *)(a + PF * MR), _MM_HINT_T0);                      \
                if (PFB > 0) CSQ_UNROLL for (int v = 0; v < NV; v++)                                     \
                    _mm_prefetch((const char *)(b + PFB * 16 * NV + 16 * v), _MM_HINT_T0);             \
                CSQ_AVX512_DEPTH_STEP(MR, NV);                                                           \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
    for (; p < kc; p++) {                                                                                \
        CSQ_AVX512_DEPTH_STEP(MR, NV);                                                                   \
    }                                                                                                    \
    __m512 va = _mm512_set1_ps(alpha);                                                                   \
    if (SQ) {                                                                                            \
        /* C += (alpha * acc) * acc, beta ignored (csq_sgemm_squares_kernel_for). */                     \
        if (mr == MR && nr == 16 * NV) {                                                                 \
            CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++) {            \
                float *cp = c + i * ldc + 16 * v;                                                        \
                __m512 square = _mm512_mul_ps(_mm512_mul_ps(va, acc[i][v]), acc[i][v]);                  \
                _mm512_storeu_ps(cp, _mm512_add_ps(square, _mm512_loadu_ps(cp)));                        \
            }                                                                                            \
        } else {                                                                                         \
            float tile[MR * 16 * NV];                                                                    \
            CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++)              \
                _mm512_storeu_ps(tile + i * 16 * NV + 16 * v, acc[i][v]);                                \
            csq_add_squares_partial(tile, 16 * NV, c, ldc, mr, nr, alpha);                               \
        }                                                                                                \
        return;                                                                                          \
    }                                                                                                    \
    if (mr == MR && nr == 16 * NV) {                                                                     \
        if (beta == 0.0f) {                                                                              \
            CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++)              \
                _mm512_storeu_ps(c + i * ldc + 16 * v, _mm512_mul_ps(va, acc[i][v]));                    \
        } else {                                                                                         \
            __m512 vb = _mm512_set1_ps(beta);                                                            \
            CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++) {            \
                float *cp = c + i * ldc + 16 * v;                                                        \
                _mm512_storeu_ps(cp, _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), _mm512_mul_ps(va, acc[i][v]))); \
            }                                                                                            \
        }                                                                                                \
    } else {                                                                                             \
        float tile[MR * 16 * NV];                                                                        \
        CSQ_UNROLL for (int i = 0; i < MR; i++) CSQ_UNROLL for (int v = 0; v < NV; v++)                  \
            _mm512_storeu_ps(tile + i * 16 * NV + 16 * v, acc[i][v]);                                    \
        csq_store_partial(tile, 16 * NV, c, ldc, mr, nr, alpha, beta);                                   \
    }                                                                                                    \
}

CSQ_DEFINE_AVX2(6, 2)
CSQ_DEFINE_AVX2(4, 3)
// Prefetch distance 16 depth steps (768 B of A, 2 KiB of B ahead), measured against none and 8, 32, and
// A only (BENCHMARKS.md, "Matrix multiply"); the 12x32 kernel without prefetch stays as variant 4.
CSQ_DEFINE_AVX512(csq_sgemm_avx512_12x2, 12, 2, 16, 16, 0)
CSQ_DEFINE_AVX512(csq_sgemm_avx512_14x2, 14, 2, 16, 16, 0)
CSQ_DEFINE_AVX512(csq_sgemm_avx512_6x4, 6, 4, 16, 16, 0)
CSQ_DEFINE_AVX512(csq_sgemm_avx512_8x3, 8, 3, 16, 16, 0)
CSQ_DEFINE_AVX512(csq_sgemm_avx512_12x2_noprefetch, 12, 2, 0, 0, 0)
// The default tile shape with the squares epilogue (csq_sgemm_squares_kernel_for).
CSQ_DEFINE_AVX512(csq_sgemm_avx512_12x2_squares, 12, 2, 16, 16, 1)
#endif

csq_sgemm_kernel_info csq_sgemm_kernel_for(int level, int variant) {
    csq_sgemm_kernel_info portable = {CSQ_P_MR, CSQ_P_NR, csq_sgemm_portable_4x16, 0, 0};
#ifdef CSQ_X86
    if (level >= 3) {
        switch (variant) {
        case 1: return (csq_sgemm_kernel_info){14, 32, csq_sgemm_avx512_14x2, 3, 16};
        case 2: return (csq_sgemm_kernel_info){6, 64, csq_sgemm_avx512_6x4, 3, 16};
        case 3: return (csq_sgemm_kernel_info){8, 48, csq_sgemm_avx512_8x3, 3, 16};
        case 4: return (csq_sgemm_kernel_info){12, 32, csq_sgemm_avx512_12x2_noprefetch, 3, 0};
        default: return (csq_sgemm_kernel_info){12, 32, csq_sgemm_avx512_12x2, 3, 16};
        }
    }
    if (level >= 2) {
        switch (variant) {
        case 1: return (csq_sgemm_kernel_info){4, 24, csq_sgemm_avx2_4x3, 2, 0};
        default: return (csq_sgemm_kernel_info){6, 16, csq_sgemm_avx2_6x2, 2, 0};
        }
    }
#endif
    (void)variant;
    return portable;
}

csq_sgemm_kernel_info csq_sgemm_squares_kernel_for(int level) {
#ifdef CSQ_X86
    if (level >= 3) return (csq_sgemm_kernel_info){12, 32, csq_sgemm_avx512_12x2_squares, 3, 16};
#endif
    (void)level;
    return (csq_sgemm_kernel_info){0, 0, 0, 0, 0};
}

// ---------------------------------------------------------------------------------------------
// Peak probe for benchmarks: independent FMA chains with no memory traffic, to measure the machine's
// float32 FMA throughput (flops = iterations * chains * lanes * 2).
#ifdef CSQ_X86
__attribute__((target("avx512f,fma")))
static float csq_probe_avx512(long iterations) {
    __m512 acc[24];
    CSQ_UNROLL for (int j = 0; j < 24; j++) acc[j] = _mm512_set1_ps((float)j);
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iterations; i++) {
        CSQ_UNROLL for (int j = 0; j < 24; j++) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
    }
    __m512 s = _mm512_setzero_ps();
    CSQ_UNROLL for (int j = 0; j < 24; j++) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
static float csq_probe_avx2(long iterations) {
    __m256 acc[12];
    CSQ_UNROLL for (int j = 0; j < 12; j++) acc[j] = _mm256_set1_ps((float)j);
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iterations; i++) {
        CSQ_UNROLL for (int j = 0; j < 12; j++) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
    }
    float out[8];
    __m256 s = _mm256_setzero_ps();
    CSQ_UNROLL for (int j = 0; j < 12; j++) s = _mm256_add_ps(s, acc[j]);
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

double csq_fma_peak_probe(int level, long iterations, double *flops) {
#ifdef CSQ_X86
    if (level >= 3) { *flops = (double)iterations * 24 * 16 * 2; return csq_probe_avx512(iterations); }
    if (level >= 2) { *flops = (double)iterations * 12 * 8 * 2; return csq_probe_avx2(iterations); }
#endif
    (void)level;
    *flops = 0;
    return 0;
}
