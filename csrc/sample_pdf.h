// Per-sample inverse-CDF sampling (pi-GAN's sample_pdf), compiled by the CPU ops and the CUDA kernels.
//
// One ray: bins [M+1], weights [M]; total = sum_j (weights_j + eps) (computed by the caller, see
// torch_cpu_row_sum). cdf_0 = 0, cdf_k = T(sum_{j<k} A(pdf_j)), pdf_j = T((w_j + eps) / total); with
// A = double for float on the CPU this is exactly torch.cumsum's CPU accumulation. The sample index
// is torch.searchsorted's (a lower-bound binary search, cdf_lower_bound), so that weights which make
// the cdf non-monotone (negative weights, a zero or NaN total) give what the reference gives.
#pragma once

#include "common.h"

namespace pigan {

// torch.searchsorted(cdf, u, right=False) on one row of n entries: its binary search, step for step
// (on a non-decreasing cdf, the number of entries below u).
template <typename T, typename CdfAt>
PIGAN_HD int cdf_lower_bound(const CdfAt& cdf, int n, T u) {
  int start = 0, end = n;
  while (start < end) {
    const int mid = start + ((end - start) >> 1);
    if (!(cdf(mid) >= u)) {
      start = mid + 1;
    } else {
      end = mid;
    }
  }
  return start;
}

// The sample for index i = cdf_lower_bound(...) in [0, M+1], with torch's clamps and eps rule.
template <typename Sx, typename T>
PIGAN_HD T sample_between(const Sx* bins, int M, int i, T cdf_lo, T cdf_hi, T eps, T u) {
  const int lo = i > 0 ? i - 1 : 0;
  const int hi = i < M ? i : M;
  T denom = T(cdf_hi - cdf_lo);
  if (denom < eps) denom = T(1);
  const T b_lo = T(bins[lo]);
  return T(b_lo + T(T(T(u - cdf_lo) / denom) * T(T(bins[hi]) - b_lo)));
}

// Whether every pdf_j = (w_j + eps) / total is >= 0 (no NaN): then the cdf is non-decreasing and
// a forward scan finds the same index as the binary search.
template <typename Sx, typename T>
PIGAN_HD bool pdf_non_negative(const Sx* w, int M, T total, T eps) {
  if (!(total > T(0)) || p_isinf(total)) return false;
  for (int j = 0; j < M; ++j) {
    if (!(T(T(w[j]) + eps) >= T(0))) return false;
  }
  return true;
}

// One sample without a stored cdf (the CUDA kernel: one thread per sample, no scratch memory).
// monotone (pdf_non_negative): scan the cdf forwards, rebuilding it on the way; else run torch's
// binary search on cdf values rebuilt per probe (O(M log M), only for invalid weights).
// Sx: storage type, T: compute type (float for half storage), A: cdf accumulation type.
template <typename Sx, typename T, typename A>
PIGAN_HD T sample_pdf_one(const Sx* bins, const Sx* w, int M, T total, T eps, T u, bool monotone) {
  auto pdf = [&](int j) { return T(T(T(w[j]) + eps) / total); };
  if (!monotone) {
    auto cdf = [&](int k) {
      A run = A(0);
      for (int j = 0; j < k; ++j) run += A(pdf(j));
      return T(run);
    };
    const int i = cdf_lower_bound(cdf, M + 1, u);
    const int lo = i > 0 ? i - 1 : 0;
    const int hi = i < M ? i : M;
    return sample_between(bins, M, i, cdf(lo), cdf(hi), eps, u);
  }
  int i = 0;  // first i with cdf_i >= u, else M + 1
  T cur = T(0), prev = T(0);
  A run = A(0);
  for (;;) {
    if (cur >= u) break;
    if (i == M) {
      i = M + 1;
      break;
    }
    prev = cur;
    run += A(pdf(i));
    cur = T(run);
    ++i;
  }
  const T cdf_lo = (i == 0 || i == M + 1) ? cur : prev;
  return sample_between(bins, M, i, cdf_lo, cur, eps, u);
}

// The same computation split in two, for one thread per ray (the CPU): build the cdf once, then
// invert it per sample. Same float operations in the same order as sample_pdf_one, so the two give
// identical samples (tests run both). Returns whether every pdf_j >= 0 (the cdf is non-decreasing).
template <typename Sx, typename T, typename A>
PIGAN_HD bool build_cdf(const Sx* w, int M, T total, T eps, T* cdf) {
  A run = A(0);
  cdf[0] = T(0);
  bool monotone = true;
  for (int j = 0; j < M; ++j) {
    const T pdf = T(T(T(w[j]) + eps) / total);
    monotone = monotone && pdf >= T(0);
    run += A(pdf);
    cdf[j + 1] = T(run);
  }
  return monotone;
}

template <typename Sx, typename T>
PIGAN_HD T invert_cdf(const Sx* bins, const T* cdf, int M, T eps, T u, bool monotone) {
  int i = 0;
  if (monotone && u == u) {
    // On a non-decreasing cdf the binary search's index is the number of entries below u; counting
    // has no data-dependent branch and vectorises (random u made searches mispredict).
    for (int j = 0; j <= M; ++j) i += cdf[j] < u ? 1 : 0;
  } else {
    i = cdf_lower_bound([cdf](int k) { return cdf[k]; }, M + 1, u);
  }
  const int lo = i > 0 ? i - 1 : 0;
  const int hi = i < M ? i : M;
  return sample_between(bins, M, i, cdf[lo], cdf[hi], eps, u);
}

// The sum of (w_j + eps) in the order torch's CPU sum kernel uses (SumKernel.cpp, cascade_sum):
// rows at least one vector long are summed lane-wise (vec_n lanes) with 4-way ILP, the tail and
// the lanes then added in order; shorter rows use the 4-way ILP scalar sum. Reproducing it makes
// sample_pdf bit-identical to the reference on CPU. Rows shorter than 16 * 4 per lane take the
// flat branch of torch's multi-level accumulation; longer ones add the chunked levels.
template <typename T>
PIGAN_HD T ilp4_row_sum(const T* w, int64_t stride, int64_t size, T eps) {
  const int64_t size_ilp = size / 4;
  // multi_row_sum over rows of 4 with its level structure
  int64_t lp = 0;
  {
    int64_t v = size_ilp > 1 ? size_ilp - 1 : 0;
    int64_t lg = 0;
    while (v > 0) {
      ++lg;
      v >>= 1;
    }
    lp = lg / 4 > 4 ? lg / 4 : 4;
  }
  const int64_t step = int64_t(1) << lp;
  const int64_t mask = step - 1;
  T acc[4][4];
  for (int a = 0; a < 4; ++a)
    for (int k = 0; k < 4; ++k) acc[a][k] = T(0);
  int64_t i = 0;
  for (; i + step <= size_ilp;) {
    for (int64_t j = 0; j < step; ++j, ++i) {
      for (int k = 0; k < 4; ++k) acc[0][k] += T(w[(i * 4 + k) * stride] + eps);
    }
    for (int j = 1; j < 4; ++j) {
      for (int k = 0; k < 4; ++k) {
        acc[j][k] += acc[j - 1][k];
        acc[j - 1][k] = T(0);
      }
      if ((i & (mask << (j * lp))) != 0) break;
    }
  }
  for (; i < size_ilp; ++i) {
    for (int k = 0; k < 4; ++k) acc[0][k] += T(w[(i * 4 + k) * stride] + eps);
  }
  for (int j = 1; j < 4; ++j)
    for (int k = 0; k < 4; ++k) acc[0][k] += acc[j][k];
  for (int64_t t = size_ilp * 4; t < size; ++t) acc[0][0] += T(w[t * stride] + eps);
  for (int k = 1; k < 4; ++k) acc[0][0] += acc[0][k];
  return acc[0][0];
}

template <typename T>
PIGAN_HD T torch_cpu_row_sum(const T* w, int M, T eps, int vec_n) {
  if (vec_n > 1 && M >= vec_n) {
    const int vec_size = M / vec_n;
    T final_acc = T(0);
    for (int k = vec_size * vec_n; k < M; ++k) final_acc += T(w[k] + eps);
    for (int l = 0; l < vec_n; ++l) final_acc += ilp4_row_sum(w + l, vec_n, vec_size, eps);
    return final_acc;
  }
  return ilp4_row_sum(w, 1, M, eps);
}

// Plain sequential sum (the CUDA path: torch's own CUDA reduction order is not reproducible anyway).
template <typename Sx, typename T, typename A>
PIGAN_HD T seq_row_sum(const Sx* w, int M, T eps) {
  A s = A(0);
  for (int j = 0; j < M; ++j) s += A(T(T(w[j]) + eps));
  return T(s);
}

}  // namespace pigan
