// Per-ray merge of fine and coarse depths, compiled by the CPU ops and the CUDA kernels. The result
// equals a stable sort of cat([fine, coarse]) (NaN last, as torch.sort): ties keep fine before
// coarse, and idx indexes the concatenation.
//
// The output ray itself is the only scratch: the fine list (unsorted when it comes from stratified
// sample_pdf) is insertion-sorted into out[0, S2); a sorted coarse list (the usual case) is then
// merged in from the back in one pass. An unsorted coarse list falls back to continuing the
// insertion sort, which is still exact.
#pragma once

#include "common.h"

namespace pigan {

template <typename A>
PIGAN_HD bool sort_less(A a, A b) {  // torch.sort order: NaN greater than everything
  return a < b || (!p_isnan(a) && p_isnan(b));
}

template <typename T, typename A>
PIGAN_HD void insert_sorted(T* out_z, int64_t* out_idx, int p, A v, int64_t id) {
  while (p > 0 && sort_less(v, A(out_z[p - 1]))) {
    out_z[p] = out_z[p - 1];
    out_idx[p] = out_idx[p - 1];
    --p;
  }
  out_z[p] = T(v);
  out_idx[p] = id;
}

template <typename T, typename A>
PIGAN_HD void merge_ray(const T* zc, int S1, const T* zf, int S2, T* out_z, int64_t* out_idx) {
  for (int k = 0; k < S2; ++k) insert_sorted<T, A>(out_z, out_idx, k, A(zf[k]), int64_t(k));
  bool sorted = true;
  for (int j = 1; j < S1; ++j) {
    if (sort_less(A(zc[j]), A(zc[j - 1]))) {
      sorted = false;
      break;
    }
  }
  if (!sorted) {
    for (int j = 0; j < S1; ++j) {
      insert_sorted<T, A>(out_z, out_idx, S2 + j, A(zc[j]), int64_t(S2 + j));
    }
    return;
  }
  int i = S2 - 1, j = S1 - 1, p = S1 + S2 - 1;
  while (j >= 0) {  // writes at p >= i never clobber an unread fine entry
    const A c = A(zc[j]);
    if (i >= 0 && sort_less(c, A(out_z[i]))) {
      out_z[p] = out_z[i];
      out_idx[p] = out_idx[i];
      --i;
    } else {
      out_z[p] = T(c);
      out_idx[p] = int64_t(S2 + j);
      --j;
    }
    --p;
  }
}

}  // namespace pigan
