// The Squisher's hook accumulators in C, so that their fused multiply-adds are FMA instructions rather
// than libm `fmaf` calls (see AdamKernels.c). Same roundings as PyTorch's Adam and Adagrad:
//   EMA:         v = fma((1 - beta2) * g, g, v * beta2)     exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
//   running sum: v = fma(g, g, v)                           state_sum.addcmul_(grad, grad, value=1)
#include "CSquisherKernels.h"
#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CSQ_X86 1
#endif

static void csq_ema_portable(long n, const float *g, float *v, float beta2, float oneMinusBeta2) {
    for (long i = 0; i < n; i++) v[i] = fmaf(oneMinusBeta2 * g[i], g[i], v[i] * beta2);
}

static void csq_sum_portable(long n, const float *g, float *v) {
    for (long i = 0; i < n; i++) v[i] = fmaf(g[i], g[i], v[i]);
}

#ifdef CSQ_X86
__attribute__((target("avx2,fma")))
static void csq_ema_avx2(long n, const float *g, float *v, float beta2, float oneMinusBeta2) {
    const __m256 b = _mm256_set1_ps(beta2), a = _mm256_set1_ps(oneMinusBeta2);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 vb = _mm256_mul_ps(_mm256_loadu_ps(v + i), b);
        _mm256_storeu_ps(v + i, _mm256_fmadd_ps(_mm256_mul_ps(a, gi), gi, vb));
    }
    for (; i < n; i++) v[i] = fmaf(oneMinusBeta2 * g[i], g[i], v[i] * beta2);
}

__attribute__((target("avx2,fma")))
static void csq_sum_avx2(long n, const float *g, float *v) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        _mm256_storeu_ps(v + i, _mm256_fmadd_ps(gi, gi, _mm256_loadu_ps(v + i)));
    }
    for (; i < n; i++) v[i] = fmaf(g[i], g[i], v[i]);
}
#endif

void csq_ema_square_update(long n, const float *g, float *v, float beta2, float oneMinusBeta2) {
#ifdef CSQ_X86
    if (csq_isa_level() >= 2) { csq_ema_avx2(n, g, v, beta2, oneMinusBeta2); return; }
#endif
    csq_ema_portable(n, g, v, beta2, oneMinusBeta2);
}

void csq_sum_square_update(long n, const float *g, float *v) {
#ifdef CSQ_X86
    if (csq_isa_level() >= 2) { csq_sum_avx2(n, g, v); return; }
#endif
    csq_sum_portable(n, g, v);
}
