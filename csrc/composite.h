// Per-ray alpha compositing, forward and backward, for pi-GAN's quadrature and EG3D's midpoint
// quadrature. Compiled by the CPU ops and by the CUDA kernels.
//
// Layout of one ray: rs [S, C+1] contiguous (sigma last), z [S], noise [S] or null.
// Template NC > 0 fixes the channel count at compile time (registers, unrolled loops); NC == 0 is
// the generic fallback, which composites the channels in chunks of kChunk, recomputing the
// transmittance per chunk instead of holding C accumulators.
//
// Backward: with s_i = act(x_i), e_i = exp(-d_i s_i), a_i = 1 - e_i, p_i = (1 - a_i) + 1e-10,
// T_i = prod_{j<i} p_j and G_i = dL/dw_i,
//   dL/ds_k = d_k e_k T_k (G_k - S_k),   S_k = sum_{i>k} G_i a_i prod_{k<j<i} p_j,
//   S_{k-1} = G_k a_k + p_k S_k.
// The suffix recursion never divides by p_k = 1 - a_k + 1e-10, so it is exact at alpha == 1.
// T_k is recomputed by a forward pass into scratch (S slots per ray).
#pragma once

#include "common.h"

namespace pigan {

constexpr int kChunk = 8;

template <int NC>
struct Chan {
  static constexpr int chunk = NC > 0 ? NC : kChunk;
  PIGAN_HD static int count(int c_runtime) { return NC > 0 ? NC : c_runtime; }
};

// ---------------------------------------------------------------- pi-GAN quadrature
// The per-sample exponentials e_i = exp(-d_i act(x_i)) (and act'(x_i)) come from a terms object:
// RayTerms computes them on demand (CUDA: no per-ray arrays); on the host, block_terms fills
// buffers for a block of rays first, in loops without the transmittance's serial dependency, which
// vectorise, and RayTermsCached reads them. Both evaluate the same expressions with the same ray_exp.

template <typename T, typename A>
struct RayTerms {
  const T* rs;
  const T* z;
  const T* noise;
  int S, K;
  int clamp;
  PIGAN_HD A x(int i) const {
    A v = A(rs[i * K + K - 1]);
    if (noise != nullptr) v += A(noise[i]);
    return v;
  }
  PIGAN_HD A delta(int i) const { return i + 1 < S ? A(z[i + 1]) - A(z[i]) : A(1e10); }
  PIGAN_HD A e(int i) const { return ray_exp(-(delta(i) * activate(x(i), clamp))); }
  PIGAN_HD A e_ds(int i, A& ds) const {
    A s;
    activate_and_grad(x(i), clamp, s, ds);
    return ray_exp(-(delta(i) * s));
  }
  PIGAN_HD bool relu() const { return clamp == kRelu; }
};

template <typename A>
struct RayTermsCached {
  const A* eb;
  const A* dsb;
  const A* db;
  PIGAN_HD A delta(int i) const { return db[i]; }
  PIGAN_HD A e(int i) const { return eb[i]; }
  PIGAN_HD A e_ds(int i, A& ds) const {
    ds = dsb[i];
    return eb[i];
  }
  bool is_relu = false;
  PIGAN_HD bool relu() const { return is_relu; }
};

// Host: e and act' (ds, when not null) of n consecutive rays of S samples (rs, z and noise of
// the rays contiguous), as RayTerms computes them, into arrays of n * S. Loops over all samples
// of the block without loop-carried dependencies: GCC vectorises the relu path and exp_poly.
// dbuf: n * S, receives the deltas.
template <typename T, typename A, int NC>
inline void block_terms(const T* rs, const T* z, const T* noise, int64_t n, int S, int c_rt,
                        int clamp, A* e, A* ds, A* dbuf) {
  const int C = Chan<NC>::count(c_rt);  // a constant stride vectorises the loads of sigma
  const int K = C + 1;
  const int64_t m = n * S;
  if (m <= 0) return;
  if (noise != nullptr) {
    for (int64_t i = 0; i < m; ++i) e[i] = A(rs[i * K + C]) + A(noise[i]);
  } else {
    for (int64_t i = 0; i < m; ++i) e[i] = A(rs[i * K + C]);
  }
  if (clamp == kRelu) {
    if (ds != nullptr) {
      for (int64_t i = 0; i < m; ++i) ds[i] = relu_grad(e[i]);
    }
    for (int64_t i = 0; i < m; ++i) e[i] = relu(e[i]);
  } else {
    for (int64_t i = 0; i < m; ++i) {
      A s, g;
      activate_and_grad(e[i], clamp, s, g);
      if (ds != nullptr) ds[i] = g;
      e[i] = s;
    }
  }
  for (int64_t i = 0; i + 1 < m; ++i) dbuf[i] = A(z[i + 1]) - A(z[i]);
  for (int64_t r = 0; r < n; ++r) dbuf[r * S + S - 1] = A(1e10);
  for (int64_t i = 0; i < m; ++i) e[i] = ray_exp_pre(-(dbuf[i] * e[i]));
  for (int64_t i = 0; i < m; ++i) e[i] = ray_exp_post(e[i]);
}

template <typename T, typename A, int NC, typename Terms>
PIGAN_HD void composite_fwd_ray_terms(const Terms& tm, const T* rs, const T* z, int S, int c_rt,
                                      bool last_back, bool white_back, int fill, T* rgb, T* depth,
                                      T* weights) {
  constexpr int CH = Chan<NC>::chunk;
  const int C = Chan<NC>::count(c_rt);
  const int K = C + 1;
  A W = A(0);
  for (int c0 = 0; c0 < C; c0 += CH) {
    A acc[CH] = {};  // value-initialised: A(0)
    A trans = A(1), wsum = A(0), dsum = A(0);
    for (int i = 0; i < S; ++i) {
      const A alpha = A(1) - tm.e(i);
      A w = alpha * trans;
      wsum += w;
      if (last_back && i == S - 1) w = w + (A(1) - wsum);
#pragma unroll
      for (int k = 0; k < CH; ++k) {
        if (NC > 0 || c0 + k < C) acc[k] += w * A(rs[i * K + c0 + k]);
      }
      if (c0 == 0) {
        dsum += w * A(z[i]);
        weights[i] = T(w);
      }
      trans = trans * ((A(1) - alpha) + A(1e-10));
    }
    if (c0 == 0) {
      W = wsum;
      depth[0] = T(dsum);
    }
#pragma unroll
    for (int k = 0; k < CH; ++k) {
      const int c = c0 + k;
      if (NC == 0 && c >= C) break;
      A v = acc[k];
      if (white_back) v = (v + A(1)) - W;
      if (fill == kFillDebug && W < A(0.9)) v = c == 0 ? A(1) : A(0);
      if (fill == kFillWeight) v = W;
      rgb[c] = T(v);
    }
  }
}

template <typename T, typename A, int NC>
PIGAN_HD void composite_fwd_ray(const T* rs, const T* z, const T* noise, int S, int c_rt, int clamp,
                                bool last_back, bool white_back, int fill, T* rgb, T* depth,
                                T* weights) {
  const RayTerms<T, A> tm{rs, z, noise, S, Chan<NC>::count(c_rt) + 1, clamp};
  composite_fwd_ray_terms<T, A, NC>(tm, rs, z, S, c_rt, last_back, white_back, fill, rgb, depth,
                                    weights);
}

// tbuf: S slots (stride tstride) for T_i, in L1 on the CPU, global memory on CUDA ([S, N], so
// neighbouring threads touch neighbouring words).
template <typename T, typename A, int NC, typename Terms>
PIGAN_HD void composite_bwd_ray_terms(const Terms& tm, const T* rs, const T* z, const T* g_rgb,
                                      const T* g_depth, const T* g_w, int S, int c_rt,
                                      bool last_back, bool white_back, int fill, A* tbuf,
                                      int64_t tstride, T* grad_rs) {
  const int C = Chan<NC>::count(c_rt);
  const int K = C + 1;
  A W = A(0);
  {
    A trans = A(1);
    for (int i = 0; i < S; ++i) {
      const A alpha = A(1) - tm.e(i);
      tbuf[i * tstride] = trans;
      W += alpha * trans;
      trans = trans * ((A(1) - alpha) + A(1e-10));
    }
  }
  // fill 'debug' replaces masked pixels by a constant and 'weight' replaces all of them by W:
  // no gradient reaches the colours there.
  const bool keep = fill == kFillNone || (fill == kFillDebug && !(W < A(0.9)));
  A gsum = A(0);
  for (int c = 0; c < C; ++c) gsum += A(g_rgb[c]);
  const A dW_extra = (white_back && keep ? -gsum : A(0)) + (fill == kFillWeight ? gsum : A(0));
  const A gd = A(g_depth[0]);
  auto g_out_weight = [&](int i) -> A {  // dL/dw'_i, w' being the returned weights
    A g = A(g_w[i]) + gd * A(z[i]);
    if (keep) {
      for (int c = 0; c < C; ++c) g += A(g_rgb[c]) * A(rs[i * K + c]);
    }
    return g;
  };
  const A g_last = (last_back && S > 0) ? g_out_weight(S - 1) : A(0);
  A suffix = A(0);
  for (int i = S - 1; i >= 0; --i) {
    A ds;
    const A e = tm.e_ds(i, ds);
    const A d = tm.delta(i);
    const A alpha = A(1) - e;
    const A p = (A(1) - alpha) + A(1e-10);
    const A Ti = tbuf[i * tstride];
    A w = alpha * Ti;
    A G;
    if (last_back) {
      // w'_{S-1} = 1 - sum_{j<S-1} w_j, so w_{S-1} itself has no effect through it.
      if (i == S - 1) {
        w = w + (A(1) - W);
        G = A(0);
      } else {
        G = g_out_weight(i) - g_last;
      }
    } else {
      G = g_out_weight(i);
    }
    G += dW_extra;
    const A gs = d * e * Ti * (G - suffix);
    suffix = G * alpha + p * suffix;
    grad_rs[i * K + C] = T(act_chain(gs, ds, tm.relu()));
    for (int c = 0; c < C; ++c) grad_rs[i * K + c] = keep ? T(w * A(g_rgb[c])) : T(0);
  }
}

// Host: composite_bwd_ray_terms for a block of n consecutive rays, split into loops. The two
// recursions (T_i forwards, the suffix backwards) step all rays of the block at once, so that their
// serial chains overlap; the per-sample arithmetic around them vectorises. Per ray, the same
// expressions in the same order: bit-identical to composite_bwd_ray_terms.
// e, ds, d: n * S from block_terms; buf: 3 * n * S + 2 * n scratch.
template <typename T, typename A, int NC>
inline void composite_bwd_block_split(const A* e, const A* ds, const A* d, const T* rs, const T* z,
                                      const T* g_rgb, const T* g_depth, const T* g_w, int64_t n,
                                      int S, int c_rt, bool last_back, bool white_back, int fill,
                                      bool relu, A* buf, T* grad_rs) {
  const int C = Chan<NC>::count(c_rt);
  const int64_t K = C + 1;
  const int64_t m = n * S;
  if (m <= 0) return;
  A* tb = buf;         // T_i
  A* gb = tb + m;      // G_i
  A* sb = gb + m;      // suffix S_i
  A* Wb = sb + m;      // W per ray
  A* carry = Wb + n;   // running T or suffix per ray
  for (int64_t r = 0; r < n; ++r) {
    carry[r] = A(1);
    Wb[r] = A(0);
  }
  for (int64_t i = 0; i < S; ++i) {
    for (int64_t r = 0; r < n; ++r) {
      const int64_t j = r * S + i;
      const A alpha = A(1) - e[j];
      const A trans = carry[r];
      tb[j] = trans;
      Wb[r] += alpha * trans;
      carry[r] = trans * ((A(1) - alpha) + A(1e-10));
    }
  }
  auto keeps = [&](int64_t r) {  // see composite_bwd_ray_terms
    return fill == kFillNone || (fill == kFillDebug && !(Wb[r] < A(0.9)));
  };
  for (int64_t r = 0; r < n; ++r) {
    const T* gr = g_rgb + r * C;
    const T* rsr = rs + r * S * K;
    const T* zr = z + r * S;
    const T* gwr = g_w + r * S;
    A* g = gb + r * S;
    const bool keep = keeps(r);
    A gsum = A(0);
    for (int64_t c = 0; c < C; ++c) gsum += A(gr[c]);
    const A dW_extra = (white_back && keep ? -gsum : A(0)) + (fill == kFillWeight ? gsum : A(0));
    const A gd = A(g_depth[r]);
    for (int64_t i = 0; i < S; ++i) g[i] = A(gwr[i]) + gd * A(zr[i]);
    if (keep) {
      for (int64_t c = 0; c < C; ++c) {
        const A gc = A(gr[c]);
        for (int64_t i = 0; i < S; ++i) g[i] += gc * A(rsr[i * K + c]);
      }
    }
    if (last_back) {
      const A g_last = g[S - 1];
      for (int64_t i = 0; i + 1 < S; ++i) g[i] = g[i] - g_last;
      g[S - 1] = A(0);
    }
    for (int64_t i = 0; i < S; ++i) g[i] += dW_extra;
  }
  for (int64_t r = 0; r < n; ++r) carry[r] = A(0);
  for (int64_t i = S - 1; i >= 0; --i) {
    for (int64_t r = 0; r < n; ++r) {
      const int64_t j = r * S + i;
      const A alpha = A(1) - e[j];
      const A suffix = carry[r];
      sb[j] = suffix;
      carry[r] = gb[j] * alpha + ((A(1) - alpha) + A(1e-10)) * suffix;
    }
  }
  for (int64_t r = 0; r < n; ++r) {
    const int64_t o = r * S;
    const T* gr = g_rgb + r * C;
    T* out = grad_rs + o * K;
    const bool keep = keeps(r);
    if (keep) {
      for (int64_t i = 0; i < S; ++i) {
        const A gs = d[o + i] * e[o + i] * tb[o + i] * (gb[o + i] - sb[o + i]);
        const A w = (A(1) - e[o + i]) * tb[o + i];
        for (int64_t c = 0; c < C; ++c) out[i * K + c] = T(w * A(gr[c]));
        out[i * K + C] = T(act_chain(gs, ds[o + i], relu));
      }
    } else {
      for (int64_t i = 0; i < S; ++i) {
        const A gs = d[o + i] * e[o + i] * tb[o + i] * (gb[o + i] - sb[o + i]);
        for (int64_t c = 0; c < C; ++c) out[i * K + c] = T(0);
        out[i * K + C] = T(act_chain(gs, ds[o + i], relu));
      }
    }
    if (last_back && keep) {  // w'_{S-1} = w_{S-1} + (1 - W)
      const int64_t j = o + S - 1;
      const A w = (A(1) - e[j]) * tb[j] + (A(1) - Wb[r]);
      for (int64_t c = 0; c < C; ++c) out[(S - 1) * K + c] = T(w * A(gr[c]));
    }
  }
}

// Recomputes the exponentials in both passes (CUDA, and the CPU's test mode for that variant).
template <typename T, typename A, int NC>
PIGAN_HD void composite_bwd_ray(const T* rs, const T* z, const T* noise, const T* g_rgb,
                                const T* g_depth, const T* g_w, int S, int c_rt, int clamp,
                                bool last_back, bool white_back, int fill, A* tbuf, int64_t tstride,
                                T* grad_rs) {
  const RayTerms<T, A> tm{rs, z, noise, S, Chan<NC>::count(c_rt) + 1, clamp};
  composite_bwd_ray_terms<T, A, NC>(tm, rs, z, g_rgb, g_depth, g_w, S, c_rt, last_back, white_back,
                                    fill, tbuf, tstride, grad_rs);
}

// ---------------------------------------------------------------- EG3D midpoint quadrature
// S samples give S-1 intervals; colour, density and depth are averaged between neighbours;
// density activation softplus(sigma_mid - 1) (kSoftplus) or none (kNoActivation); depth is
// sum(w z_mid) / sum(w), NaN -> +inf, then clamped to [min z, max z] of the ray.

// min and max of the ray's depths, both NaN when any depth is NaN (as torch.amin / amax). S >= 1.
template <typename A, typename T>
PIGAN_HD void ray_z_range(const T* z, int S, A& zmin, A& zmax) {
  zmin = A(z[0]);
  zmax = zmin;
  A nan = zmin;
  for (int i = 1; i < S; ++i) {
    const A v = A(z[i]);
    zmin = v < zmin ? v : zmin;
    zmax = v > zmax ? v : zmax;
    nan = p_isnan(v) ? v : nan;
  }
  if (p_isnan(nan)) zmin = zmax = nan;
}

// torch.clamp(torch.nan_to_num(D, nan=inf), zmin, zmax): NaN -> +inf, +-inf -> the largest finite
// values, then clamped; NaN bounds give NaN.
template <typename A>
PIGAN_HD A midpoint_depth(A D, A zmin, A zmax) {
  if (p_isnan(zmin)) return zmin;
  if (p_isnan(D)) D = zmax;
  if (p_isinf(D)) D = D > A(0) ? p_max_finite(D) : -p_max_finite(D);
  D = D < zmin ? zmin : D;
  return D > zmax ? zmax : D;
}

template <typename A>
PIGAN_HD A midpoint_act(A sm, int clamp) { return clamp == kSoftplus ? softplus(sm - A(1)) : sm; }
template <typename A>
PIGAN_HD A midpoint_act_grad(A sm, int clamp) {
  return clamp == kSoftplus ? softplus_grad(sm - A(1)) : A(1);
}

template <typename T, typename A, int NC>
PIGAN_HD void midpoint_fwd_ray(const T* rs, const T* z, int S, int c_rt, int clamp, bool white_back,
                               T* rgb, T* depth, T* weights) {
  constexpr int CH = Chan<NC>::chunk;
  const int C = Chan<NC>::count(c_rt);
  const int K = C + 1;
  const int n = S - 1;
  A W = A(0), N = A(0);
  for (int c0 = 0; c0 < C; c0 += CH) {
    A acc[CH] = {};  // value-initialised: A(0)
    A trans = A(1), wsum = A(0), nsum = A(0);
    for (int i = 0; i < n; ++i) {
      const A sm = (A(rs[i * K + C]) + A(rs[(i + 1) * K + C])) / A(2);
      const A s = midpoint_act(sm, clamp);
      const A z0 = A(z[i]), z1 = A(z[i + 1]);
      const A d = z1 - z0;
      const A alpha = A(1) - p_exp(-(s * d));
      const A w = alpha * trans;
#pragma unroll
      for (int k = 0; k < CH; ++k) {
        if (NC > 0 || c0 + k < C) {
          acc[k] += w * ((A(rs[i * K + c0 + k]) + A(rs[(i + 1) * K + c0 + k])) / A(2));
        }
      }
      if (c0 == 0) {
        nsum += w * ((z0 + z1) / A(2));
        weights[i] = T(w);
      }
      wsum += w;
      trans = trans * ((A(1) - alpha) + A(1e-10));
    }
    if (c0 == 0) {
      W = wsum;
      N = nsum;
    }
#pragma unroll
    for (int k = 0; k < CH; ++k) {
      const int c = c0 + k;
      if (NC == 0 && c >= C) break;
      rgb[c] = T(white_back ? (acc[k] + A(1)) - W : acc[k]);
    }
  }
  A zmin, zmax;
  ray_z_range(z, S, zmin, zmax);
  depth[0] = T(midpoint_depth(N / W, zmin, zmax));
}

template <typename T, typename A, int NC>
PIGAN_HD void midpoint_bwd_ray(const T* rs, const T* z, const T* g_rgb, const T* g_depth,
                               const T* g_w, int S, int c_rt, int clamp, bool white_back, A* tbuf,
                               int64_t tstride, T* grad_rs) {
  const int C = Chan<NC>::count(c_rt);
  const int K = C + 1;
  const int n = S - 1;
  A W = A(0), N = A(0);
  {
    A trans = A(1);
    for (int i = 0; i < n; ++i) {
      const A sm = (A(rs[i * K + C]) + A(rs[(i + 1) * K + C])) / A(2);
      const A s = midpoint_act(sm, clamp);
      const A z0 = A(z[i]), z1 = A(z[i + 1]);
      const A alpha = A(1) - p_exp(-(s * (z1 - z0)));
      const A w = alpha * trans;
      tbuf[i * tstride] = trans;
      N += w * ((z0 + z1) / A(2));
      W += w;
      trans = trans * ((A(1) - alpha) + A(1e-10));
    }
  }
  A zmin, zmax;
  ray_z_range(z, S, zmin, zmax);
  const A D = N / W;
  // clamp passes the gradient only inside [zmin, zmax]; nan_to_num only where D is finite.
  const bool through = !p_isnan(D) && !p_isinf(D) && D >= zmin && D <= zmax;
  const A gN = through ? A(g_depth[0]) / W : A(0);
  A gsum = A(0);
  for (int c = 0; c < C; ++c) gsum += A(g_rgb[c]);
  const A dW_extra = (white_back ? -gsum : A(0)) + (through ? -gN * D : A(0));
  A suffix = A(0), carry_s = A(0), w_next = A(0);
  for (int i = n - 1; i >= 0; --i) {
    const A sm = (A(rs[i * K + C]) + A(rs[(i + 1) * K + C])) / A(2);
    const A s = midpoint_act(sm, clamp);
    const A z0 = A(z[i]), z1 = A(z[i + 1]);
    const A d = z1 - z0;
    const A e = p_exp(-(s * d));
    const A alpha = A(1) - e;
    const A p = (A(1) - alpha) + A(1e-10);
    const A Ti = tbuf[i * tstride];
    const A w = alpha * Ti;
    A G = A(g_w[i]) + gN * ((z0 + z1) / A(2)) + dW_extra;
    for (int c = 0; c < C; ++c) {
      G += A(g_rgb[c]) * ((A(rs[i * K + c]) + A(rs[(i + 1) * K + c])) / A(2));
    }
    const A gs = d * e * Ti * (G - suffix);
    suffix = G * alpha + p * suffix;
    const A half_gsm = A(0.5) * gs * midpoint_act_grad(sm, clamp);
    grad_rs[(i + 1) * K + C] = T(half_gsm + carry_s);
    carry_s = half_gsm;
    for (int c = 0; c < C; ++c) {
      grad_rs[(i + 1) * K + c] = T(A(0.5) * A(g_rgb[c]) * (w + w_next));
    }
    w_next = w;
  }
  if (S > 0) {
    grad_rs[C] = T(carry_s);
    for (int c = 0; c < C; ++c) grad_rs[c] = T(A(0.5) * A(g_rgb[c]) * w_next);
  }
}

}  // namespace pigan
