// CPU entry points of the empty-space skipping ops: check, allocate (render_checks.h), run the
// per-point / per-ray code of skipping.h with at::parallel_for. float16 / bfloat16 are read as
// stored: grid_occupied rounds each step to them as the twin does, composite_window accumulates in
// float32.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "dispatch.h"
#include "render_checks.h"
#include "skipping.h"

namespace pigan {
namespace {

// Items per task: a few thousand operations amortise one.
int64_t grain_for(int64_t per_item) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(per_item, 1)); }

void grid_occupied_loops(const at::Tensor& points, const at::Tensor& grid, const at::Tensor& lo,
                         const at::Tensor& span, const at::Tensor& out) {
  const int64_t N = points.size(1), G = grid.size(1), cells = G * G * G;
  const bool* pg = grid.const_data_ptr<bool>();
  bool* po = out.mutable_data_ptr<bool>();
  dispatch_float<true>(points.scalar_type(), "grid_occupied_cpu", [&](auto t) {
    using T = typename decltype(t)::type;
    const T *pp = points.const_data_ptr<T>(), *pl = lo.const_data_ptr<T>(), *ps = span.const_data_ptr<T>();
    at::parallel_for(0, points.size(0) * N, grain_for(16), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = i / N;
        po[i] = point_occupied<T, at::opmath_type<T>>(pp + 3 * i, pl + 3 * r, ps + 3 * r, pg + r * cells, G);
      }
    });
  });
}

void march_window_loops(const at::Tensor& need, const at::Tensor& start, const at::Tensor& alive,
                        int64_t k, const at::Tensor& end) {
  const int64_t S = need.size(1);
  const bool* pn = need.const_data_ptr<bool>();
  const int64_t* ps = start.const_data_ptr<int64_t>();
  const bool* pa = alive.const_data_ptr<bool>();
  int64_t* pe = end.mutable_data_ptr<int64_t>();
  at::parallel_for(0, need.size(0), grain_for(S), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) pe[r] = window_end(pn + r * S, S, ps[r], pa[r], k);
  });
}

void composite_window_loops(const at::Tensor& rs, const at::Tensor& z, const at::Tensor& occ,
                            const at::Tensor& start, const at::Tensor& end, const at::Tensor& t_in,
                            double eps, int clamp, const at::Tensor& weights, const at::Tensor& acc,
                            const at::Tensor& t_out, const at::Tensor& stop) {
  const int64_t S = rs.size(1), C = rs.size(2) - 1;
  const bool* po = occ.const_data_ptr<bool>();
  const int64_t* pstart = start.const_data_ptr<int64_t>();
  const int64_t* pend = end.const_data_ptr<int64_t>();
  int64_t* pstop = stop.mutable_data_ptr<int64_t>();
  dispatch_float<true>(rs.scalar_type(), "composite_window_cpu", [&](auto t) {
    using T = typename decltype(t)::type;
    using A = at::opmath_type<T>;
    const T *prs = rs.const_data_ptr<T>(), *pz = z.const_data_ptr<T>(), *pt = t_in.const_data_ptr<T>();
    T* pw = weights.mutable_data_ptr<T>();
    A *pacc = acc.mutable_data_ptr<A>(), *pto = t_out.mutable_data_ptr<A>();
    at::parallel_for(0, rs.size(0), grain_for(S * (C + 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        A tr = A(pt[r]);
        pstop[r] = composite_window_ray<T, A>(prs + r * S * (C + 1), pz + r * S, po + r * S, S, C,
                                              pstart[r], pend[r], A(eps), clamp, tr, pw + r * S,
                                              pacc + r * (C + 1));
        pto[r] = tr;
      }
    });
  });
}

at::Tensor grid_occupied_cpu(const at::Tensor& points, const at::Tensor& grid, const at::Tensor& lo,
                             const at::Tensor& hi) {
  check_grid_occupied(points, grid, lo, hi);
  return run_grid_occupied(points, grid, lo, hi, grid_occupied_loops);
}

at::Tensor march_window_cpu(const at::Tensor& need, const at::Tensor& start, const at::Tensor& alive,
                            int64_t k) {
  check_march_window(need, start, alive, k);
  return run_march_window(need, start, alive, k, march_window_loops);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_window_cpu(
    const at::Tensor& rs, const at::Tensor& z, const at::Tensor& occ, const at::Tensor& start,
    const at::Tensor& end, const at::Tensor& trans, double eps, c10::string_view clamp_mode) {
  const int clamp = check_composite_window(rs, z, occ, start, end, trans, eps, clamp_mode);
  return run_composite_window(rs, z, occ, start, end, trans, eps, clamp, composite_window_loops);
}

}  // namespace
}  // namespace pigan

TORCH_LIBRARY_IMPL(pigan, CPU, m) {
  PIGAN_IMPL_SKIPPING_OPS(m, cpu);
}
