// Shared by the AVX-512 kernels of this target (not part of the public header).
#ifndef CSQ_AVX512_LANES_H
#define CSQ_AVX512_LANES_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/// The mask of the first `count` of 16 lanes (all 16 when `count >= 16`, none when `count <= 0`).
__attribute__((target("avx512f"))) static inline __mmask16 csq_lanes(long count) {
    if (count >= 16) return (__mmask16)0xFFFF;
    if (count <= 0) return 0;
    return (__mmask16)((1u << count) - 1u);
}
#endif

#endif
