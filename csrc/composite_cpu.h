// CPU kernels of the compositing ops: blocks of rays through the per-ray code of composite.h, with
// the per-sample terms computed first in long vectorisable loops (host only).
#pragma once

#include <algorithm>
#include <cstdint>

#include "composite.h"

namespace pigan {

// Rays per block of the compositing loops: the per-sample terms of a block (~1000 samples, a few
// KB per buffer) are computed in long vectorised loops and stay in L1 for the per-ray passes.
inline int64_t block_rays(int64_t S) { return std::max<int64_t>(1, 1024 / std::max<int64_t>(S, 1)); }

// The block functions below are compiled for CPUs with AVX2 (8 float lanes instead of SSE2's 4)
// and for the baseline ISA. Not FMA: without contraction both clones round exactly as the scalar
// RayTerms path does (the CPU's CUDA-variant mode is bit-identical).
// flatten: the header code must be inlined into each clone to be compiled for its ISA.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define PIGAN_CLONES __attribute__((target_clones("avx2", "default"), flatten))
#elif defined(__GNUC__)
#define PIGAN_CLONES __attribute__((flatten))
#else
#define PIGAN_CLONES
#endif

// One block of n rays (pointers at its first ray): terms of the block, then the per-ray passes.
// buf: 2 * n * S (e_i, delta_i).
template <typename T, int NC>
PIGAN_CLONES void composite_fwd_block(
    const T* rs, const T* z, const T* noise, int64_t n, int S, int C, int clamp, bool last_back,
    bool white_back, int fill, T* buf, T* rgb, T* depth, T* weights) {
  const int64_t m = n * S;
  block_terms<T, T, NC>(rs, z, noise, n, S, C, clamp, buf, static_cast<T*>(nullptr), buf + m);
  for (int64_t r = 0; r < n; ++r) {
    const RayTermsCached<T> tm{buf + r * S, nullptr, buf + m + r * S};
    composite_fwd_ray_terms<T, T, NC>(tm, rs + r * S * (C + 1), z + r * S, S, C, last_back,
                                      white_back, fill, rgb + r * C, depth + r, weights + r * S);
  }
}

// buf: 6 * n * S + 2 * n (e_i, act'(x_i), delta_i, then composite_bwd_block_split's scratch).
template <typename T, int NC>
PIGAN_CLONES void composite_bwd_block(
    const T* rs, const T* z, const T* noise, const T* g_rgb, const T* g_depth, const T* g_w,
    int64_t n, int S, int C, int clamp, bool last_back, bool white_back, int fill, T* buf,
    T* grad) {
  const int64_t m = n * S;
  block_terms<T, T, NC>(rs, z, noise, n, S, C, clamp, buf, buf + m, buf + 2 * m);
  composite_bwd_block_split<T, T, NC>(buf, buf + m, buf + 2 * m, rs, z, g_rgb, g_depth, g_w, n, S,
                                      C, last_back, white_back, fill, clamp == kRelu, buf + 3 * m, grad);
}

}  // namespace pigan
