// Adam's element-wise update in C, so that its two fused multiply-adds are FMA instructions rather than
// libm `fmaf` calls (the default Swift build targets baseline x86-64, where `addingProduct` is a call).
// Same operations, same order and same roundings as PyTorch's single-tensor CPU Adam (and as the Swift
// loop in SquisherOptimizers/Adam.swift it replaces), so results are bit-identical at every ISA level:
//   if decay != 1: theta = theta * decay                          param.mul_(1 - lr * weight_decay)  (AdamW)
//   g' = sign * g;  if l2 != 0: g' = fma(theta, l2, g')          grad.add(param, alpha=weight_decay)
//   m  = fma(1 - beta1, g' - m, m)                                exp_avg.lerp_(grad, 1 - beta1)
//   v  = fma((1 - beta2) * g', g', v * beta2)                     exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
//   theta = (negStep * m) / (sqrt(v) / bc2sqrt + eps) + theta     param.addcdiv_(exp_avg, denom, -step_size)
// Vector sqrt and divide are correctly rounded (IEEE), like their scalar forms.
#include "CSquisherKernels.h"
#include "AVX512Lanes.h"
#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CSQ_X86 1
#endif

typedef struct {
    float sign, l2, oneMinusBeta1, oneMinusBeta2, beta2, negStep, bc2sqrt, eps, decay;
} csq_adam_constants;

/// One element, with explicit fmaf (exact fused multiply-add wherever it compiles to).
static inline void csq_adam_scalar(long i, const float *g, float *m, float *v, float *theta, const csq_adam_constants *k) {
    if (k->decay != 1.0f) theta[i] = theta[i] * k->decay;
    float gi = k->sign * g[i];
    if (k->l2 != 0.0f) gi = fmaf(theta[i], k->l2, gi);
    float mi = fmaf(k->oneMinusBeta1, gi - m[i], m[i]);
    float vb = v[i] * k->beta2;
    float gs = k->oneMinusBeta2 * gi;
    float vi = fmaf(gs, gi, vb);
    float root = sqrtf(vi);
    float denominator = root / k->bc2sqrt;
    denominator = denominator + k->eps;
    float stepped = k->negStep * mi;
    stepped = stepped / denominator;
    m[i] = mi;
    v[i] = vi;
    theta[i] = stepped + theta[i];
}

static void csq_adam_portable(long n, const float *g, float *m, float *v, float *theta, const csq_adam_constants *k) {
    for (long i = 0; i < n; i++) csq_adam_scalar(i, g, m, v, theta, k);
}

#ifdef CSQ_X86
__attribute__((target("avx2,fma")))
static void csq_adam_avx2(long n, const float *g, float *m, float *v, float *theta, const csq_adam_constants *k) {
    const __m256 sign = _mm256_set1_ps(k->sign), l2 = _mm256_set1_ps(k->l2);
    const __m256 b1 = _mm256_set1_ps(k->oneMinusBeta1), ob2 = _mm256_set1_ps(k->oneMinusBeta2);
    const __m256 beta2 = _mm256_set1_ps(k->beta2), step = _mm256_set1_ps(k->negStep);
    const __m256 bc = _mm256_set1_ps(k->bc2sqrt), eps = _mm256_set1_ps(k->eps), decayFactor = _mm256_set1_ps(k->decay);
    const int decay = k->l2 != 0.0f, shrink = k->decay != 1.0f;
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_mul_ps(sign, _mm256_loadu_ps(g + i));
        __m256 th = _mm256_loadu_ps(theta + i);
        if (shrink) th = _mm256_mul_ps(th, decayFactor);
        if (decay) gi = _mm256_fmadd_ps(th, l2, gi);
        __m256 mi = _mm256_loadu_ps(m + i);
        mi = _mm256_fmadd_ps(b1, _mm256_sub_ps(gi, mi), mi);
        __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(ob2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), beta2));
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc), eps);
        th = _mm256_add_ps(_mm256_div_ps(_mm256_mul_ps(step, mi), den), th);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(theta + i, th);
    }
    for (; i < n; i++) csq_adam_scalar(i, g, m, v, theta, k);
}

__attribute__((target("avx512f,fma")))
static void csq_adam_avx512(long n, const float *g, float *m, float *v, float *theta, const csq_adam_constants *k) {
    const __m512 sign = _mm512_set1_ps(k->sign), l2 = _mm512_set1_ps(k->l2);
    const __m512 b1 = _mm512_set1_ps(k->oneMinusBeta1), ob2 = _mm512_set1_ps(k->oneMinusBeta2);
    const __m512 beta2 = _mm512_set1_ps(k->beta2), step = _mm512_set1_ps(k->negStep);
    const __m512 bc = _mm512_set1_ps(k->bc2sqrt), eps = _mm512_set1_ps(k->eps), decayFactor = _mm512_set1_ps(k->decay);
    const int decay = k->l2 != 0.0f, shrink = k->decay != 1.0f;
    for (long i = 0; i < n; i += 16) {
        __mmask16 mask = csq_lanes(n - i);
        __m512 gi = _mm512_mul_ps(sign, _mm512_maskz_loadu_ps(mask, g + i));
        __m512 th = _mm512_maskz_loadu_ps(mask, theta + i);
        if (shrink) th = _mm512_mul_ps(th, decayFactor);
        if (decay) gi = _mm512_fmadd_ps(th, l2, gi);
        __m512 mi = _mm512_maskz_loadu_ps(mask, m + i);
        mi = _mm512_fmadd_ps(b1, _mm512_sub_ps(gi, mi), mi);
        __m512 vi = _mm512_fmadd_ps(_mm512_mul_ps(ob2, gi), gi, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, v + i), beta2));
        __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc), eps);
        th = _mm512_add_ps(_mm512_div_ps(_mm512_mul_ps(step, mi), den), th);
        _mm512_mask_storeu_ps(m + i, mask, mi);
        _mm512_mask_storeu_ps(v + i, mask, vi);
        _mm512_mask_storeu_ps(theta + i, mask, th);
    }
}
#endif

void csq_adam_update(long n, const float *g, float *m, float *v, float *theta, float sign, float l2,
                     float oneMinusBeta1, float oneMinusBeta2, float beta2, float negStep, float bc2sqrt,
                     float eps, float decay) {
    const csq_adam_constants k = {sign, l2, oneMinusBeta1, oneMinusBeta2, beta2, negStep, bc2sqrt, eps, decay};
#ifdef CSQ_X86
    const int level = csq_isa_level();
    if (level >= 3) { csq_adam_avx512(n, g, m, v, theta, &k); return; }
    if (level >= 2) { csq_adam_avx2(n, g, m, v, theta, &k); return; }
#endif
    csq_adam_portable(n, g, m, v, theta, &k);
}
