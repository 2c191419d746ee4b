// AVX-512 rows of LayerNorm (see CSquisherKernels.h): the same passes as SquisherLayers'
// `LayerNormKernels` (float lane sums combined in double, two passes for the variance), in one AVX-512
// register with fused multiply-adds instead of four SSE vectors without them.

#include "CSquisherKernels.h"
#include "AVX512Lanes.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define CSQ_LN_TARGET __attribute__((target("avx512f")))

/// `Σ x` over `d` floats: two 16-lane float accumulators, combined in double.
CSQ_LN_TARGET static inline double csq_ln_sum(const float *x, long d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    long i = 0;
    for (; i + 32 <= d; i += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < d; i += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(csq_lanes(d - i), x + i));
    return (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/// `Σ x y` over `d` floats, as ``csq_ln_sum``.
CSQ_LN_TARGET static inline double csq_ln_dot(const float *x, const float *y, long d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    long i = 0;
    for (; i + 32 <= d; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i < d; i += 16) {
        __mmask16 m = csq_lanes(d - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
    }
    return (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

CSQ_LN_TARGET
void csq_layernorm_forward_rows_avx512(const float *x, long rows, long d, float eps, float *normalized, float *reciprocal,
                                       const float *weight, const float *bias, float *y) {
    for (long r = 0; r < rows; r++) {
        const float *row = x + r * d;
        float *out = normalized + r * d;
        __m512 mean = _mm512_set1_ps((float)(csq_ln_sum(row, d) / (double)d));
        for (long i = 0; i < d; i += 16) {
            __mmask16 m = csq_lanes(d - i);
            _mm512_mask_storeu_ps(out + i, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + i), mean));
        }
        double variance = csq_ln_dot(out, out, d) / (double)d;
        float rstd = (float)(1.0 / __builtin_sqrt(variance + (double)eps));
        __m512 scale = _mm512_set1_ps(rstd);
        for (long i = 0; i < d; i += 16) {
            __mmask16 m = csq_lanes(d - i);
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, out + i), scale);
            _mm512_mask_storeu_ps(out + i, m, v);
            if (y) {
                __m512 w = _mm512_maskz_loadu_ps(m, weight + i), b = _mm512_maskz_loadu_ps(m, bias + i);
                _mm512_mask_storeu_ps(y + r * d + i, m, _mm512_fmadd_ps(v, w, b));
            }
        }
        reciprocal[r] = rstd;
    }
}

CSQ_LN_TARGET
void csq_layernorm_input_gradient_rows_avx512(float *gradient, const float *normalized, const float *reciprocal,
                                              const float *weight, long rows, long d) {
    for (long r = 0; r < rows; r++) {
        float *g = gradient + r * d;
        const float *xhat = normalized + r * d;
        if (weight) {
            for (long i = 0; i < d; i += 16) {
                __mmask16 m = csq_lanes(d - i);
                _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, weight + i)));
            }
        }
        __m512 mean = _mm512_set1_ps((float)(csq_ln_sum(g, d) / (double)d));
        __m512 meanProduct = _mm512_set1_ps((float)(csq_ln_dot(g, xhat, d) / (double)d));
        __m512 rstd = _mm512_set1_ps(reciprocal[r]);
        for (long i = 0; i < d; i += 16) {
            __mmask16 m = csq_lanes(d - i);
            __m512 gv = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, g + i), mean);
            gv = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(m, xhat + i), meanProduct, gv);
            _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(rstd, gv));
        }
    }
}

CSQ_LN_TARGET
void csq_layernorm_parameter_sums_avx512(const float *dy, const float *normalized, long rows, long d, float *weightSum, float *biasSum) {
    for (long r = 0; r < rows; r++) {
        const float *g = dy + r * d, *xhat = normalized + r * d;
        for (long i = 0; i < d; i += 16) {
            __mmask16 m = csq_lanes(d - i);
            __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
            _mm512_mask_storeu_ps(biasSum + i, m, _mm512_add_ps(gv, _mm512_maskz_loadu_ps(m, biasSum + i)));
            _mm512_mask_storeu_ps(weightSum + i, m, _mm512_fmadd_ps(gv, _mm512_maskz_loadu_ps(m, xhat + i), _mm512_maskz_loadu_ps(m, weightSum + i)));
        }
    }
}

#else

void csq_layernorm_forward_rows_avx512(const float *x, long rows, long d, float eps, float *normalized, float *reciprocal,
                                       const float *weight, const float *bias, float *y) {
    (void)x; (void)rows; (void)d; (void)eps; (void)normalized; (void)reciprocal; (void)weight; (void)bias; (void)y;
}
void csq_layernorm_input_gradient_rows_avx512(float *gradient, const float *normalized, const float *reciprocal,
                                              const float *weight, long rows, long d) {
    (void)gradient; (void)normalized; (void)reciprocal; (void)weight; (void)rows; (void)d;
}
void csq_layernorm_parameter_sums_avx512(const float *dy, const float *normalized, long rows, long d, float *weightSum, float *biasSum) {
    (void)dy; (void)normalized; (void)rows; (void)d; (void)weightSum; (void)biasSum;
}

#endif
