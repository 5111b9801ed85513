// Per-point and per-ray code of the empty-space skipping ops (pigan/ops/skipping.py), compiled by the
// CPU ops (skipping_cpu.cpp) and the CUDA kernels (skipping.cu). Each function does what the
// reference twin does for one point or one ray, with the twin's operations in the twin's order.
//
// T is the storage type, A its arithmetic type (float for float16 / bfloat16, else T).
#pragma once

#include "common.h"

namespace pigan {

PIGAN_HD float p_floor(float x) { return ::floorf(x); }
PIGAN_HD double p_floor(double x) { return ::floor(x); }

// grid_occupied for one point p[3] (x, y, z) in the box lo[3] .. lo + span (span = hi - lo, both in
// the points' type) over a grid [G, G, G] indexed [z][y][x]. Each step is rounded back to T, as
// torch rounds each elementwise op of the twin, so that half points find the twin's cells too.
template <typename T, typename A>
PIGAN_HD bool point_occupied(const T* p, const T* lo, const T* span, const bool* grid, int64_t G) {
  int64_t flat = 0;
  for (int a = 2; a >= 0; --a) {
    const A rel = A(T(A(T(A(p[a]) - A(lo[a]))) / A(span[a])));
    // Outside the box (NaN included) the grid says nothing: the point must be evaluated. The twin
    // masks such points after the lookup; returning first keeps a NaN cell index from being used.
    if (!(rel >= A(0) && rel < A(1))) return true;
    const A cell = p_floor(A(T(rel * A(G))));
    flat = flat * G + (cell < A(G - 1) ? int64_t(cell) : G - 1);
  }
  return grid[flat];
}

// march_window for one ray: the index just after its k-th needed sample at or after `start` (S when
// it has fewer); a dead ray's window is empty. A negative start counts from 0, as the twin's mask.
PIGAN_HD int64_t window_end(const bool* need, int64_t S, int64_t start, bool alive, int64_t k) {
  if (!alive) return start;
  int64_t count = 0;
  for (int64_t i = start > 0 ? start : 0; i < S; ++i) {
    if (need[i] && ++count == k) return i + 1;
  }
  return S;
}

// composite_window for one ray: rs [S, C+1] (sigma last), z [S], occ [S]. Composites the samples of
// [start, end) in order from the transmittance t (updated in place), writes w [S] (zero outside
// [start, stop)) and acc [C+1] (sum of w * (rgb, z)), returns stop. Unoccupied samples have alpha 0
// and are never read (their values may be unset); the window is clipped to [0, S) for reading, while
// stop is `end` itself when the ray does not terminate, as in the twin.
template <typename T, typename A>
PIGAN_HD int64_t composite_window_ray(const T* rs, const T* z, const bool* occ, int64_t S, int64_t C,
                                      int64_t start, int64_t end, A eps, int clamp, A& t, T* w,
                                      A* acc) {
  for (int64_t c = 0; c <= C; ++c) acc[c] = A(0);
  const int64_t lo = start < 0 ? 0 : (start < S ? start : S);
  const int64_t hi = end < lo ? lo : (end < S ? end : S);
  int64_t i = 0, stop = end;
  for (; i < lo; ++i) w[i] = T(0);
  while (i < hi) {
    A wi = A(0);
    if (occ[i]) {
      const T* x = rs + i * (C + 1);
      const A delta = i + 1 < S ? A(z[i + 1]) - A(z[i]) : A(1e10);
      const A alpha = A(1) - ray_exp(-(delta * activate(A(x[C]), clamp)));
      wi = t * alpha;
      t = t * ((A(1) - alpha) + A(1e-10));
      for (int64_t c = 0; c < C; ++c) acc[c] += wi * A(x[c]);
      acc[C] += wi * A(z[i]);
    }
    w[i++] = T(wi);
    if (t < eps) {
      stop = i;
      break;
    }
  }
  for (; i < S; ++i) w[i] = T(0);
  return stop;
}

}  // namespace pigan
