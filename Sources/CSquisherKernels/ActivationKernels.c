// AVX-512 GELU with its derivative and softmax rows forward and backward (see CSquisherKernels.h). The Swift build targets baseline x86-64,
// where SquisherLayers' 16-lane `VectorMath` runs as four SSE vectors without FMA; these are the same
// formulas (Cephes `expf`, Numerical Recipes' `erfcc`, the tanh form as `x · sigmoid(2u)`) in one
// AVX-512 register with fused multiply-adds, so results differ from the Swift path by a few ulp.

#include "CSquisherKernels.h"
#include "AVX512Lanes.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define CSQ_ACT_TARGET __attribute__((target("avx512f")))

/// `e^x` per lane: `x = n ln 2 + r`, degree-6 polynomial in `r`, `2^n` from the exponent bits. Below -87
/// exactly 0, above 88 +inf (no subnormal results); NaN stays NaN.
CSQ_ACT_TARGET static inline __m512 csq_exp(__m512 x) {
    const __m512 low = _mm512_set1_ps(-87.0f), high = _mm512_set1_ps(88.0f), magic = _mm512_set1_ps(12582912.0f);
    __m512 clamped = _mm512_min_ps(_mm512_max_ps(x, low), high);
    __m512 shifted = _mm512_fmadd_ps(clamped, _mm512_set1_ps(1.44269504f), magic);
    __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), clamped);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(magic));
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(127)), 23));
    __m512 result = _mm512_mul_ps(p, scale);
    result = _mm512_mask_mov_ps(result, _mm512_cmp_ps_mask(x, low, _CMP_LT_OQ), _mm512_setzero_ps());
    result = _mm512_mask_mov_ps(result, _mm512_cmp_ps_mask(x, high, _CMP_GT_OQ), _mm512_set1_ps(__builtin_inff()));
    // NaN lanes: min/max returned the bound; give NaN back.
    return _mm512_mask_mov_ps(result, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

/// `(x Φ(x), Φ(x) + x φ(x))` with `Φ(x) = erfc(-x/√2)/2` from the Chebyshev `erfcc` fit.
CSQ_ACT_TARGET static inline void csq_gelu_exact(__m512 x, __m512 *value, __m512 *slope) {
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
    __m512 a = _mm512_abs_ps(z);
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(a, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    __m512 erfc = _mm512_mul_ps(t, csq_exp(_mm512_fnmadd_ps(a, a, p)));
    __m512 half = _mm512_mul_ps(erfc, _mm512_set1_ps(0.5f));
    __m512 cdf = _mm512_mask_mov_ps(half, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ),
                                    _mm512_sub_ps(_mm512_set1_ps(1.0f), half));
    __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(0.39894228040143268f),
                               csq_exp(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x, x))));
    *value = _mm512_mul_ps(x, cdf);
    *slope = _mm512_fmadd_ps(x, pdf, cdf);
}

/// With `u = √(2/π) (x + 0.044715 x³)` and `s = sigmoid(2u)`: `(x s, s + 2 x s (1 − s) du/dx)`.
CSQ_ACT_TARGET static inline void csq_gelu_tanh(__m512 x, __m512 *value, __m512 *slope) {
    const __m512 c = _mm512_set1_ps(0.79788456080286536f), cubic = _mm512_set1_ps(0.044715f), one = _mm512_set1_ps(1.0f);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = _mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_mul_ps(cubic, x2), x, x));
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, csq_exp(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u))));
    __m512 du = _mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_set1_ps(3.0f * 0.044715f), x2, one));
    __m512 xs = _mm512_mul_ps(x, s);
    *value = xs;
    *slope = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), xs), _mm512_sub_ps(one, s)), du, s);
}

CSQ_ACT_TARGET
void csq_gelu_avx512(long n, const float *x, float *y, float *dy, int tanhForm) {
    for (long i = 0; i < n; i += 16) {
        __mmask16 lanes = csq_lanes(n - i);
        __m512 v = _mm512_maskz_loadu_ps(lanes, x + i), value, slope;
        if (tanhForm) csq_gelu_tanh(v, &value, &slope);
        else csq_gelu_exact(v, &value, &slope);
        _mm512_mask_storeu_ps(y + i, lanes, value);
        _mm512_mask_storeu_ps(dy + i, lanes, slope);
    }
}

/// The horizontal sum of `v`'s lanes in double, added to `sum`.
CSQ_ACT_TARGET static inline __m512d csq_add_lanes_pd(__m512d sum, __m512 v) {
    sum = _mm512_add_pd(sum, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    return _mm512_add_pd(sum, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

CSQ_ACT_TARGET
void csq_softmax_row_avx512(float *row, long count, long total) {
    __m512 maximum = _mm512_set1_ps(-__builtin_inff());
    for (long i = 0; i < count; i += 16) {
        __mmask16 lanes = csq_lanes(count - i);
        maximum = _mm512_mask_max_ps(maximum, lanes, maximum, _mm512_maskz_loadu_ps(lanes, row + i));
    }
    __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(maximum));
    __m512d sum = _mm512_setzero_pd();
    for (long i = 0; i < count; i += 16) {
        __mmask16 lanes = csq_lanes(count - i);
        __m512 e = _mm512_maskz_mov_ps(lanes, csq_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, row + i), shift)));
        _mm512_mask_storeu_ps(row + i, lanes, e);
        sum = csq_add_lanes_pd(sum, e);
    }
    __m512 inverse = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(sum)));
    for (long i = 0; i < count; i += 16) {
        __mmask16 lanes = csq_lanes(count - i);
        _mm512_mask_storeu_ps(row + i, lanes, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, row + i), inverse));
    }
    for (long i = count; i < total; i++) row[i] = 0.0f;
}

CSQ_ACT_TARGET
void csq_softmax_backward_row_avx512(const float *p, float *g, long count) {
    __m512 dot = _mm512_setzero_ps();
    for (long i = 0; i < count; i += 16) {
        __mmask16 lanes = csq_lanes(count - i);
        dot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, p + i), _mm512_maskz_loadu_ps(lanes, g + i), dot);
    }
    __m512 d = _mm512_set1_ps(_mm512_reduce_add_ps(dot));
    for (long i = 0; i < count; i += 16) {
        __mmask16 lanes = csq_lanes(count - i);
        __m512 pv = _mm512_maskz_loadu_ps(lanes, p + i), gv = _mm512_maskz_loadu_ps(lanes, g + i);
        _mm512_mask_storeu_ps(g + i, lanes, _mm512_mul_ps(pv, _mm512_sub_ps(gv, d)));
    }
}

#else

void csq_softmax_row_avx512(float *row, long count, long total) { (void)row; (void)count; (void)total; }
void csq_softmax_backward_row_avx512(const float *p, float *g, long count) { (void)p; (void)g; (void)count; }

void csq_gelu_avx512(long n, const float *x, float *y, float *dy, int tanhForm) {
    (void)n; (void)x; (void)y; (void)dy; (void)tanhForm;
}

#endif
