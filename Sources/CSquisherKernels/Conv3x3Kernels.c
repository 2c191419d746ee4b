// Direct (no im2col, no GEMM) 3x3, stride-1 convolution of one sample, for few input channels, where
// the column matrix would have only 9·C rows and a generic GEMM runs far below peak.
//
// The sample is first copied into a zero-padded plane per channel ("scratch"):
//   rows  PH = H + 2·padH, row length PW = roundUp(OW, 16) + 2 with OW = W + 2·padW - 2,
//   xp[c][r][q] = x[c][r - padH][q - padW] inside the image, 0 elsewhere,
// so every output row is 16-wide vector loads at three shifted offsets of three padded rows:
//   y[o][oh][ow] = bias[o] + sum_{c,i,j} w[o][c][i][j] · xp[c][oh + i][ow + j]
//   dW[o][c][i][j] += sum_{oh,ow} dy[o][oh][ow] · xp[c][oh + i][ow + j]
//   db[o] += sum_{oh,ow} dy[o][oh][ow]      (float per sample, added to a double)
// AVX-512 kernels with masked tails, and a portable version the compiler vectorizes (also compiled
// for AVX2 + FMA through a per-function target attribute).
#include "CSquisherKernels.h"
#include <string.h>

#define CSQ_UNROLL _Pragma("clang loop unroll(full)")

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CSQ_X86 1
#endif

static inline long csq_round16(long x) { return (x + 15) / 16 * 16; }

long csq_conv3x3_scratch_count(long channels, long height, long width, long padH, long padW) {
    long ow = width + 2 * padW - 2;
    return channels * (height + 2 * padH) * (csq_round16(ow) + 2) + 16;
}

/// Fills the padded planes of one sample.
__attribute__((no_builtin("memcpy")))
static void csq_conv3x3_pad(long channels, long height, long width, long padH, long padW, const float *x,
                            float *xp) {
    long ph = height + 2 * padH, pw = csq_round16(width + 2 * padW - 2) + 2;
    memset(xp, 0, (size_t)(channels * ph * pw + 16) * sizeof(float));
    // Rows of small images: a plain loop the compiler vectorizes, not a memcpy call per row.
    for (long c = 0; c < channels; c++)
        for (long r = 0; r < height; r++) {
            float *restrict to = xp + (c * ph + r + padH) * pw + padW;
            const float *restrict from = x + (c * height + r) * width;
            for (long q = 0; q < width; q++) to[q] = from[q];
        }
}

// ---------------------------------------------------------------------------------------------
// Portable kernels (also instantiated for AVX2 + FMA). Chunks of 16 outputs, accumulators in arrays.
#define CSQ_CONV_PORTABLE(SUFFIX, ATTRIBUTE)                                                             \
ATTRIBUTE static void csq_conv3x3_forward_##SUFFIX(long C, long PH, long PW, long O, long OH, long OW,   \
                                                   const float *xp, const float *w, const float *bias,   \
                                                   float *y) {                                           \
    for (long o = 0; o < O; o++) {                                                                       \
        float b = bias ? bias[o] : 0.0f;                                                                 \
        for (long oh = 0; oh < OH; oh++) {                                                               \
            float *yr = y + (o * OH + oh) * OW;                                                          \
            for (long q = 0; q < OW; q += 16) {                                                          \
                float acc[16];                                                                           \
                for (int l = 0; l < 16; l++) acc[l] = b;                                                 \
                for (long c = 0; c < C; c++) {                                                           \
                    const float *wc = w + (o * C + c) * 9;                                               \
                    for (int i = 0; i < 3; i++) {                                                        \
                        const float *row = xp + (c * PH + oh + i) * PW + q;                              \
                        for (int j = 0; j < 3; j++) {                                                    \
                            float wij = wc[i * 3 + j];                                                   \
                            for (int l = 0; l < 16; l++) acc[l] += wij * row[j + l];                     \
                        }                                                                                \
                    }                                                                                    \
                }                                                                                        \
                long n = OW - q < 16 ? OW - q : 16;                                                      \
                for (long l = 0; l < n; l++) yr[q + l] = acc[l];                                         \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
}                                                                                                        \
ATTRIBUTE static void csq_conv3x3_weight_grad_##SUFFIX(long C, long PH, long PW, long O, long OH,        \
                                                       long OW, const float *xp, const float *dy,        \
                                                       float *dw, double *db) {                          \
    for (long o = 0; o < O; o++) {                                                                       \
        float bsum[16] = {0};                                                                            \
        for (long c = 0; c < C; c++) {                                                                   \
            float acc[9][16] = {{0}};                                                                    \
            for (long oh = 0; oh < OH; oh++) {                                                           \
                const float *g = dy + (o * OH + oh) * OW;                                                \
                for (long q = 0; q < OW; q += 16) {                                                      \
                    float gv[16];                                                                        \
                    long n = OW - q < 16 ? OW - q : 16;                                                  \
                    for (int l = 0; l < 16; l++) gv[l] = l < n ? g[q + l] : 0.0f;                        \
                    if (c == 0) for (int l = 0; l < 16; l++) bsum[l] += gv[l];                           \
                    for (int i = 0; i < 3; i++) {                                                        \
                        const float *row = xp + (c * PH + oh + i) * PW + q;                              \
                        for (int j = 0; j < 3; j++)                                                      \
                            for (int l = 0; l < 16; l++)                                                 \
                                acc[i * 3 + j][l] += gv[l] * (l < n ? row[j + l] : 0.0f);                \
                    }                                                                                    \
                }                                                                                        \
            }                                                                                            \
            for (int t = 0; t < 9; t++) {                                                                \
                float s = 0;                                                                             \
                for (int l = 0; l < 16; l++) s += acc[t][l];                                             \
                dw[(o * C + c) * 9 + t] += s;                                                            \
            }                                                                                            \
        }                                                                                                \
        if (db) {                                                                                        \
            float s = 0;                                                                                 \
            for (int l = 0; l < 16; l++) s += bsum[l];                                                   \
            db[o] += (double)s;                                                                          \
        }                                                                                                \
    }                                                                                                    \
}

CSQ_CONV_PORTABLE(portable, )
#ifdef CSQ_X86
CSQ_CONV_PORTABLE(avx2, __attribute__((target("avx2,fma"))))

// ---------------------------------------------------------------------------------------------
// AVX-512 forward: register blocks of OB output channels x RB output rows x one 16-column chunk
// (OB·RB accumulators). Per input channel the block's 9·OB weights are broadcast once and each of the
// (RB + 2)·3 input vectors feeds up to 3·OB fused multiply-adds: about one load per two FMAs.
__attribute__((target("avx512f"), always_inline))
static inline void csq_conv3x3_block_avx512(const int OB, const int RB, long C, long PH, long PW, long OH, long OW,
                                            const float *xp, const float *w, const float *bias, float *y,
                                            long o, long oh, long q) {
    long n = OW - q < 16 ? OW - q : 16;
    __mmask16 mask = (__mmask16)((1u << n) - 1u);
    __m512 acc[2][4];
    CSQ_UNROLL for (int b = 0; b < OB; b++) {
        __m512 start = _mm512_set1_ps(bias ? bias[o + b] : 0.0f);
        CSQ_UNROLL for (int r = 0; r < RB; r++) acc[b][r] = start;
    }
    for (long c = 0; c < C; c++) {
        __m512 wv[2][9];
        CSQ_UNROLL for (int b = 0; b < OB; b++)
            CSQ_UNROLL for (int t = 0; t < 9; t++) wv[b][t] = _mm512_set1_ps(w[((o + b) * C + c) * 9 + t]);
        const float *base = xp + (c * PH + oh) * PW + q;
        CSQ_UNROLL for (int r = 0; r < RB + 2; r++) {
            CSQ_UNROLL for (int j = 0; j < 3; j++) {
                __m512 v = _mm512_loadu_ps(base + r * PW + j);
                CSQ_UNROLL for (int b = 0; b < OB; b++)
                    CSQ_UNROLL for (int rb = 0; rb < RB; rb++) {
                        int i = r - rb;
                        if (i >= 0 && i < 3) acc[b][rb] = _mm512_fmadd_ps(wv[b][i * 3 + j], v, acc[b][rb]);
                    }
            }
        }
    }
    CSQ_UNROLL for (int b = 0; b < OB; b++)
        CSQ_UNROLL for (int rb = 0; rb < RB; rb++)
            _mm512_mask_storeu_ps(y + ((o + b) * OH + oh + rb) * OW + q, mask, acc[b][rb]);
}

__attribute__((target("avx512f")))
static void csq_conv3x3_rows_avx512(const int OB, long C, long PH, long PW, long OH, long OW, const float *xp,
                                    const float *w, const float *bias, float *y, long o) {
    for (long oh = 0; oh < OH; oh += 4) {
        long rows = OH - oh < 4 ? OH - oh : 4;
        for (long q = 0; q < OW; q += 16) {
            if (OB == 2) {
                switch (rows) {
                case 4: csq_conv3x3_block_avx512(2, 4, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                case 3: csq_conv3x3_block_avx512(2, 3, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                case 2: csq_conv3x3_block_avx512(2, 2, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                default: csq_conv3x3_block_avx512(2, 1, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                }
            } else {
                switch (rows) {
                case 4: csq_conv3x3_block_avx512(1, 4, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                case 3: csq_conv3x3_block_avx512(1, 3, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                case 2: csq_conv3x3_block_avx512(1, 2, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                default: csq_conv3x3_block_avx512(1, 1, C, PH, PW, OH, OW, xp, w, bias, y, o, oh, q); break;
                }
            }
        }
    }
}

__attribute__((target("avx512f")))
static void csq_conv3x3_forward_avx512(long C, long PH, long PW, long O, long OH, long OW, const float *xp,
                                       const float *w, const float *bias, float *y) {
    long o = 0;
    for (; o + 2 <= O; o += 2) csq_conv3x3_rows_avx512(2, C, PH, PW, OH, OW, xp, w, bias, y, o);
    if (o < O) csq_conv3x3_rows_avx512(1, C, PH, PW, OH, OW, xp, w, bias, y, o);
}

/// Weight and bias gradient: 9 accumulators per (o, c), masked loads in the tail chunk (so that padding
/// beyond the output width never meets a zeroed gradient lane as 0 · inf).
__attribute__((target("avx512f")))
static void csq_conv3x3_weight_grad_avx512(long C, long PH, long PW, long O, long OH, long OW, const float *xp,
                                           const float *dy, float *dw, double *db) {
    for (long o = 0; o < O; o++) {
        __m512 bsum = _mm512_setzero_ps();
        for (long c = 0; c < C; c++) {
            __m512 acc[9];
            for (int t = 0; t < 9; t++) acc[t] = _mm512_setzero_ps();
            for (long oh = 0; oh < OH; oh++) {
                const float *g = dy + (o * OH + oh) * OW;
                for (long q = 0; q < OW; q += 16) {
                    long n = OW - q < 16 ? OW - q : 16;
                    __mmask16 mask = (__mmask16)((1u << n) - 1u);
                    __m512 gv = _mm512_maskz_loadu_ps(mask, g + q);
                    if (c == 0) bsum = _mm512_add_ps(bsum, gv);
                    for (int i = 0; i < 3; i++) {
                        const float *row = xp + (c * PH + oh + i) * PW + q;
                        for (int j = 0; j < 3; j++)
                            acc[i * 3 + j] = _mm512_fmadd_ps(gv, _mm512_maskz_loadu_ps(mask, row + j), acc[i * 3 + j]);
                    }
                }
            }
            float *d = dw + (o * C + c) * 9;
            for (int t = 0; t < 9; t++) d[t] += _mm512_reduce_add_ps(acc[t]);
        }
        if (db) db[o] += (double)_mm512_reduce_add_ps(bsum);
    }
}
#endif

void csq_conv3x3_forward(int level, long channels, long height, long width, long padH, long padW,
                         long outChannels, const float *x, const float *w, const float *bias, float *y,
                         float *scratch) {
    long ph = height + 2 * padH, oh = ph - 2, ow = width + 2 * padW - 2, pw = csq_round16(ow) + 2;
    csq_conv3x3_pad(channels, height, width, padH, padW, x, scratch);
#ifdef CSQ_X86
    if (level > csq_isa_level()) level = csq_isa_level();
    if (level >= 3) { csq_conv3x3_forward_avx512(channels, ph, pw, outChannels, oh, ow, scratch, w, bias, y); return; }
    if (level >= 2) { csq_conv3x3_forward_avx2(channels, ph, pw, outChannels, oh, ow, scratch, w, bias, y); return; }
#endif
    csq_conv3x3_forward_portable(channels, ph, pw, outChannels, oh, ow, scratch, w, bias, y);
}

void csq_conv3x3_weight_gradient(int level, long channels, long height, long width, long padH, long padW,
                                 long outChannels, const float *x, const float *dy, float *dw, double *db,
                                 float *scratch) {
    long ph = height + 2 * padH, oh = ph - 2, ow = width + 2 * padW - 2, pw = csq_round16(ow) + 2;
    csq_conv3x3_pad(channels, height, width, padH, padW, x, scratch);
#ifdef CSQ_X86
    if (level > csq_isa_level()) level = csq_isa_level();
    if (level >= 3) { csq_conv3x3_weight_grad_avx512(channels, ph, pw, outChannels, oh, ow, scratch, dy, dw, db); return; }
    if (level >= 2) { csq_conv3x3_weight_grad_avx2(channels, ph, pw, outChannels, oh, ow, scratch, dy, dw, db); return; }
#endif
    csq_conv3x3_weight_grad_portable(channels, ph, pw, outChannels, oh, ow, scratch, dy, dw, db);
}
