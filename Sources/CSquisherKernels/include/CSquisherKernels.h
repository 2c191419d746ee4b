#ifndef CSQUISHER_KERNELS_H
#define CSQUISHER_KERNELS_H

/// Micro-kernels that need instruction sets the default Swift build does not target
/// (AVX2/FMA, AVX-512). Each entry point dispatches at run time on the CPU's features.
/// Everything else in Squisher is Swift.

/// Returns the instruction-set level the kernels dispatch to: 0 = portable, 2 = AVX2+FMA, 3 = AVX-512F.
int csq_isa_level(void);

#endif
