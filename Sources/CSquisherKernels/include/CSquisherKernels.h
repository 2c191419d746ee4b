#ifndef CSQUISHER_KERNELS_H
#define CSQUISHER_KERNELS_H

/// Micro-kernels that need instruction sets the default Swift build does not target
/// (AVX2/FMA, AVX-512). Each entry point dispatches at run time on the CPU's features.
/// Everything else in Squisher is Swift.

/// Returns the instruction-set level the kernels dispatch to: 0 = portable, 2 = AVX2+FMA, 3 = AVX-512F.
int csq_isa_level(void);

/// A single-precision GEMM micro-kernel on packed panels:
/// `C[i, j] = alpha * sum_p a[p*mrMax + i] * b[p*nrMax + j] + beta * C[i, j]` for `i < mr`, `j < nr`,
/// where `a` holds `kc` groups of `mrMax` floats, `b` holds `kc` groups of `nrMax` floats (zero-padded),
/// `C` is row-major with leading dimension `ldc`, and `beta == 0` means C is not read.
typedef void (*csq_sgemm_kernel_fn)(long kc, const float *a, const float *b, float *c, long ldc,
                                    long mr, long nr, float alpha, float beta);

/// A micro-kernel and its register-tile shape.
typedef struct {
    int mr;                     ///< Rows of the tile (the packed A sliver width).
    int nr;                     ///< Columns of the tile (the packed B sliver width).
    csq_sgemm_kernel_fn kernel; ///< The kernel.
    int level;                  ///< The ISA level the kernel needs (0, 2 or 3).
    int prefetch;               ///< Software prefetch distance of the A and B slivers, in depth steps (0 = none).
} csq_sgemm_kernel_info;

/// Returns the micro-kernel for ISA `level` (clamped to what exists; the caller must pass a level the CPU
/// supports, normally `csq_isa_level()`). `variant` 0 is the default tile shape; other variants exist for
/// benchmarking tile shapes: AVX-512 1 = 14x32, 2 = 6x64, 3 = 8x48 (0 = 12x32), 4 = 12x32 without software
/// prefetch (the AVX-512 kernels prefetch 16 depth steps ahead); AVX2 1 = 4x24 (0 = 6x16).
csq_sgemm_kernel_info csq_sgemm_kernel_for(int level, int variant);

/// The micro-kernel with the squares epilogue for ISA `level`, or one with `kernel == NULL` where there is
/// none (below AVX-512): it computes the same tile `acc = sum_p a[p*MR + i] * b[p*NR + j]` and adds
/// `(alpha * acc) * acc` to `C[i, j]` (two roundings of the products, then the sum; no fused multiply-add,
/// so the result is that of storing `acc` and adding its scaled squares); `beta` is ignored.
csq_sgemm_kernel_info csq_sgemm_squares_kernel_for(int level);

/// Packs rows for the GEMM micro-kernels (AVX-512F; call only at ISA level 3) into slivers of `width`
/// columns: sliver `s` starts at `s*width*depth`; for `p < depth`, `dst[s*width*depth + p*width + j] =
/// src[p*ld + s*width + j]` where `s*width + j < count`, and `0` in the rest of the last sliver.
/// Used for op(B) slivers of a non-transposed B and op(A) slivers of a transposed A.
void csq_pack_copy_avx512(const float *src, long ld, long depth, long count, long width, float *dst);

/// Packs lines transposed for the GEMM micro-kernels (AVX-512F; call only at ISA level 3): for `p < depth`,
/// `dst[p*width + l] = src[l*ld + p]` for `l < lines` and `0` for `lines <= l < width`.
/// Used for op(A) slivers of a non-transposed A and op(B) slivers of a transposed B.
void csq_pack_transpose_avx512(const float *src, long ld, long lines, long depth, long width, float *dst);

/// GELU and its derivative element-wise (AVX-512F; call only at ISA level 3), for `i < n`:
/// `y[i] = gelu(x[i])`, `dy[i] = gelu'(x[i])`; the tanh approximation when `tanhForm` is nonzero, else
/// the exact erf form. Same formulas as SquisherLayers' `VectorMath` (relative error below 1e-5 against
/// Double over [-9, 9]); exactly 0 for very negative inputs, never subnormal.
void csq_gelu_avx512(long n, const float *x, float *y, float *dy, int tanhForm);

/// Softmax in place over `row[0 ..< count]` (AVX-512F; call only at ISA level 3): `row[i] = e^(row[i] - max) / Σ`,
/// the sum accumulated in double; `row[count ..< total]` set to 0. `count >= 1`.
void csq_softmax_row_avx512(float *row, long count, long total);

/// The backward of one softmax row (AVX-512F; call only at ISA level 3), in place over the gradient:
/// `g[i] = p[i] · (g[i] − Σ_j p[j] g[j])` for `i < count`.
void csq_softmax_backward_row_avx512(const float *p, float *g, long count);

/// LayerNorm forward over `rows` rows of `d` floats (AVX-512F; call only at ISA level 3), as SquisherLayers'
/// `LayerNormKernels.forward`: `normalized = (x − mean)·rstd`, `reciprocal[r] = rstd = 1/sqrt(var + eps)`
/// (biased variance of the centred row, sums combined in double) and, when `y` is not NULL,
/// `y = normalized ⊙ weight + bias`.
void csq_layernorm_forward_rows_avx512(const float *x, long rows, long d, float eps, float *normalized, float *reciprocal,
                                       const float *weight, const float *bias, float *y);

/// LayerNorm input gradient over `rows` rows (AVX-512F; call only at ISA level 3), in place over `gradient`
/// (which holds `dy`): `dx̂ = dy ⊙ weight` (weight NULL: `dy`), `dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))`.
void csq_layernorm_input_gradient_rows_avx512(float *gradient, const float *normalized, const float *reciprocal,
                                              const float *weight, long rows, long d);

/// Adds `Σ_rows dy ⊙ x̂` to `weightSum` and `Σ_rows dy` to `biasSum` (`d` floats each; AVX-512F, level 3 only).
void csq_layernorm_parameter_sums_avx512(const float *dy, const float *normalized, long rows, long d, float *weightSum, float *biasSum);

/// Benchmark helper: runs `iterations` rounds of independent FMA chains (no memory traffic) at ISA `level`
/// (2 or 3) and stores the flop count in `*flops` (0 for levels without FMA); returns a checksum.
/// Timing it gives the core's float32 FMA peak.
double csq_fma_peak_probe(int level, long iterations, double *flops);

/// Adam's element-wise update (PyTorch's single-tensor CPU Adam without AMSGrad), in place, bit-identical
/// at every ISA level (FMA instructions where available, `fmaf` otherwise), for `i < n`:
/// `theta[i] = theta[i]*decay` if `decay != 1` (AdamW's decoupled decay `param.mul_(1 - lr*wd)`, applied first);
/// `g' = sign*g[i]` (then `fma(theta[i], l2, g')` if `l2 != 0`); `m[i] = fma(oneMinusBeta1, g' - m[i], m[i])`;
/// `v[i] = fma(oneMinusBeta2*g', g', v[i]*beta2)`; `theta[i] = (negStep*m[i]) / (sqrt(v[i])/bc2sqrt + eps) + theta[i]`.
void csq_adam_update(long n, const float *g, float *m, float *v, float *theta, float sign, float l2,
                     float oneMinusBeta1, float oneMinusBeta2, float beta2, float negStep, float bc2sqrt,
                     float eps, float decay);

/// The Squisher's EMA of squared gradients, in place: v = fma((1 - beta2) * g, g, v * beta2) per element
/// (PyTorch Adam's exp_avg_sq rounding).
void csq_ema_square_update(long n, const float *g, float *v, float beta2, float oneMinusBeta2);

/// The running sum of squared gradients, in place: v = fma(g, g, v) per element (Adagrad's sum).
void csq_sum_square_update(long n, const float *g, float *v);

/// Scalars of scratch space that `csq_conv3x3_forward` and `csq_conv3x3_weight_gradient` need for one
/// sample `[channels, height, width]` with zero padding `padH`, `padW` (the zero-padded planes).
long csq_conv3x3_scratch_count(long channels, long height, long width, long padH, long padW);

/// Direct 3x3, stride-1 convolution of one sample (no im2col): `x [C, H, W]`, `w [O, C, 3, 3]`,
/// `bias [O]` or NULL, `y [O, OH, OW]` with `OH = H + 2 padH - 2`, `OW = W + 2 padW - 2` (written, not
/// accumulated): `y[o][oh][ow] = bias[o] + sum_{c,i,j} w[o][c][i][j] x[c][oh - padH + i][ow - padW + j]`
/// (zero outside the image). `scratch` holds `csq_conv3x3_scratch_count` floats. `level` is the ISA level
/// to use (capped at `csq_isa_level()`).
void csq_conv3x3_forward(int level, long channels, long height, long width, long padH, long padW,
                         long outChannels, const float *x, const float *w, const float *bias, float *y,
                         float *scratch);

/// The parameter gradients of that convolution for one sample, accumulated:
/// `dw[o][c][i][j] += sum_{oh,ow} dy[o][oh][ow] x[c][oh - padH + i][ow - padW + j]` (float), and when `db`
/// is not NULL `db[o] += sum_{oh,ow} dy[o][oh][ow]` (summed in float over the sample, added in double).
void csq_conv3x3_weight_gradient(int level, long channels, long height, long width, long padH, long padW,
                                 long outChannels, const float *x, const float *dy, float *dw, double *db,
                                 float *scratch);

#endif
