// CPU kernels of the compositing ops: blocks of rays through the per-ray code of composite.h, with
// the per-sample terms computed first in long vectorisable loops (host only).
#pragma once

#include <algorithm>
#include <cstdint>

#include "composite.h"
#include "cpu_isa.h"

namespace pigan {

// Rays per block of the compositing loops: the per-sample terms of a block (~1000 samples, a few
// KB per buffer) are computed in long vectorised loops and stay in L1 for the per-ray passes.
inline int64_t block_rays(int64_t S) { return std::max<int64_t>(1, 1024 / std::max<int64_t>(S, 1)); }

// The block functions are compiled once per ISA level of cpu_isa.h (the level in use picked once, so
// PIGAN_CPU_ISA forces these too). Never with FMA contraction, even where the level has FMA: without
// it every level rounds exactly as the scalar RayTerms path does (the CPU's CUDA-variant mode is
// bit-identical); the gain is in the wider vectors. flatten: the header code must be inlined into each
// variant to be compiled for its ISA.
#if defined(__GNUC__) && !defined(__clang__)
#define PIGAN_BLOCK_FLAGS __attribute__((flatten, optimize("fp-contract=off")))
#elif defined(__GNUC__)
#define PIGAN_BLOCK_FLAGS __attribute__((flatten))
#else
#define PIGAN_BLOCK_FLAGS
#endif

// One block of n rays (pointers at its first ray): terms of the block, then the per-ray passes.
// buf: 2 * n * S (e_i, delta_i).
#define PIGAN_COMPOSITE_FWD_ARGS                                                                   \
  const T *rs, const T *z, const T *noise, int64_t n, int S, int C, int clamp, bool last_back,     \
      bool white_back, int fill, T *buf, T *rgb, T *depth, T *weights
// buf: 6 * n * S + 2 * n (e_i, act'(x_i), delta_i, then composite_bwd_block_split's scratch).
#define PIGAN_COMPOSITE_BWD_ARGS                                                                   \
  const T *rs, const T *z, const T *noise, const T *g_rgb, const T *g_depth, const T *g_w,         \
      int64_t n, int S, int C, int clamp, bool last_back, bool white_back, int fill, T *buf, T *grad

#define PIGAN_COMPOSITE_BLOCKS(ATTR, ISA)                                                           \
  template <typename T, int NC>                                                                     \
  ATTR PIGAN_BLOCK_FLAGS void composite_fwd_block_##ISA(PIGAN_COMPOSITE_FWD_ARGS) {                 \
    const int64_t m = n * S;                                                                        \
    block_terms<T, T, NC>(rs, z, noise, n, S, C, clamp, buf, static_cast<T*>(nullptr), buf + m);    \
    for (int64_t r = 0; r < n; ++r) {                                                               \
      const RayTermsCached<T> tm{buf + r * S, nullptr, buf + m + r * S};                            \
      composite_fwd_ray_terms<T, T, NC>(tm, rs + r * S * (C + 1), z + r * S, S, C, last_back,       \
                                        white_back, fill, rgb + r * C, depth + r, weights + r * S); \
    }                                                                                               \
  }                                                                                                 \
  template <typename T, int NC>                                                                     \
  ATTR PIGAN_BLOCK_FLAGS void composite_bwd_block_##ISA(PIGAN_COMPOSITE_BWD_ARGS) {                 \
    const int64_t m = n * S;                                                                        \
    block_terms<T, T, NC>(rs, z, noise, n, S, C, clamp, buf, buf + m, buf + 2 * m);                 \
    composite_bwd_block_split<T, T, NC>(buf, buf + m, buf + 2 * m, rs, z, g_rgb, g_depth, g_w, n,   \
                                        S, C, last_back, white_back, fill, clamp == kRelu,          \
                                        buf + 3 * m, grad);                                         \
  }
PIGAN_FOR_EACH_ISA(PIGAN_COMPOSITE_BLOCKS)
#undef PIGAN_COMPOSITE_BLOCKS

// The variants of the level in use (one lookup per instantiation).
template <typename T, int NC>
void composite_fwd_block(PIGAN_COMPOSITE_FWD_ARGS) {
  static const auto fn = PIGAN_ISA_PICK(composite_fwd_block, cpu_isa(), <T, NC>);
  fn(rs, z, noise, n, S, C, clamp, last_back, white_back, fill, buf, rgb, depth, weights);
}

template <typename T, int NC>
void composite_bwd_block(PIGAN_COMPOSITE_BWD_ARGS) {
  static const auto fn = PIGAN_ISA_PICK(composite_bwd_block, cpu_isa(), <T, NC>);
  fn(rs, z, noise, g_rgb, g_depth, g_w, n, S, C, clamp, last_back, white_back, fill, buf, grad);
}

#undef PIGAN_COMPOSITE_FWD_ARGS
#undef PIGAN_COMPOSITE_BWD_ARGS

}  // namespace pigan
