// CPU entry points of the rendering ops: check, allocate, run the per-ray header code over rays with
// at::parallel_for. float16 / bfloat16 inputs are computed in float32 and cast back.
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include "composite_cpu.h"
#include "dispatch.h"
#include "merge.h"
#include "render_checks.h"
#include "sample_pdf.h"

namespace pigan {
namespace {

bool is_reduced(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

at::Tensor work(const at::Tensor& t) {
  return (is_reduced(t) ? t.to(at::kFloat) : t).contiguous();
}

at::Tensor back(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

// Rays per task: compositing costs ~S*C flops per ray, so a few hundred rays amortise a task.
int64_t grain_for(int64_t per_ray) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(per_ray, 1)); }

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Typed pointers of the compositing forward ops, N = B*R rays.
template <typename T>
struct FwdPtrs {
  const T* rs;     // [N, S, C+1]
  const T* z;      // [N, S]
  const T* noise;  // [N, S] or nullptr
  T* rgb;          // [N, C]
  T* depth;        // [N]
  T* weights;      // [N, n]
};

// Typed pointers of the compositing backward ops, N = B*R rays.
template <typename T>
struct BwdPtrs {
  const T* rs;       // [N, S, C+1]
  const T* z;        // [N, S]
  const T* noise;    // [N, S] or nullptr
  const T* g_rgb;    // [N, C]
  const T* g_depth;  // [N]
  const T* g_w;      // [N, n]
  T* grad;           // [N, S, C+1]
};

// rays(Type<T>, integral_constant<NC>, ptrs, begin, end) over ranges of the rays of rs [B, R, S, C+1],
// in parallel, element type and channel count dispatched once.
template <typename P, typename F>
void parallel_over_rays(const at::Tensor& rs, const char* op, P&& make_ptrs, F&& rays) {
  const int64_t S = rs.size(2), C = rs.size(3) - 1;
  dispatch_float_channels<false>(rs.scalar_type(), C, op, [&](auto t, auto nc) {
    const auto ptrs = make_ptrs(t);
    at::parallel_for(0, rs.size(0) * rs.size(1), grain_for(S * (C + 1)),
                     [&](int64_t b, int64_t e) { rays(t, nc, ptrs, b, e); });
  });
}

// The shared body of the forward ops (inputs already checked): work in float32 for float16 /
// bfloat16, allocate the outputs with n weights per ray, run `rays`, cast back.
template <typename F>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_fwd_cpu(
    const at::Tensor& rs_in, const at::Tensor& z_in, const c10::optional<at::Tensor>& noise_in,
    int64_t n, const char* op, F&& rays) {
  const auto dtype = rs_in.scalar_type();
  const at::Tensor rs = work(rs_in), z = work(z_in);
  const at::Tensor noise = noise_in.has_value() ? work(*noise_in) : at::Tensor();
  at::Tensor rgb, depth, weights;
  std::tie(rgb, depth, weights) = new_fwd_outputs(rs, n);
  const auto make_ptrs = [&](auto t) {
    using T = typename decltype(t)::type;
    return FwdPtrs<T>{rs.data_ptr<T>(),  z.data_ptr<T>(),     opt_ptr<T>(noise),
                      rgb.data_ptr<T>(), depth.data_ptr<T>(), weights.data_ptr<T>()};
  };
  parallel_over_rays(rs, op, make_ptrs, rays);
  return {back(rgb, dtype), back(depth, dtype), back(weights, dtype)};
}

// The shared body of the backward ops (inputs already checked), as run_fwd_cpu.
template <typename F>
at::Tensor run_bwd_cpu(const at::Tensor& g_rgb_in, const at::Tensor& g_depth_in,
                       const at::Tensor& g_w_in, const at::Tensor& rs_in, const at::Tensor& z_in,
                       const c10::optional<at::Tensor>& noise_in, const char* op, F&& rays) {
  const auto dtype = rs_in.scalar_type();
  const at::Tensor rs = work(rs_in), z = work(z_in);
  const at::Tensor noise = noise_in.has_value() ? work(*noise_in) : at::Tensor();
  const at::Tensor g_rgb = work(g_rgb_in), g_depth = work(g_depth_in), g_w = work(g_w_in);
  at::Tensor grad = new_output(rs.sizes(), rs.options());
  const auto make_ptrs = [&](auto t) {
    using T = typename decltype(t)::type;
    return BwdPtrs<T>{rs.data_ptr<T>(),    z.data_ptr<T>(),       opt_ptr<T>(noise),
                      g_rgb.data_ptr<T>(), g_depth.data_ptr<T>(), g_w.data_ptr<T>(),
                      grad.data_ptr<T>()};
  };
  parallel_over_rays(rs, op, make_ptrs, rays);
  return back(grad, dtype);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_fwd_cpu(
    const at::Tensor& rs_in, const at::Tensor& z_in, const c10::optional<at::Tensor>& noise_in,
    int64_t clamp, bool last_back, bool white_back, int64_t fill) {
  check_composite(rs_in, z_in, noise_in, clamp, fill, false);
  const int64_t S = rs_in.size(2), C = rs_in.size(3) - 1, nb = block_rays(S);
  const auto rays = [&](auto t, auto nc, const auto& p, int64_t b, int64_t e) {
    using scalar_t = typename decltype(t)::type;
    std::vector<scalar_t> buf(2 * nb * S);
    for (int64_t r0 = b; r0 < e; r0 += nb) {
      composite_fwd_block<scalar_t, decltype(nc)::value>(
          p.rs + r0 * S * (C + 1), p.z + r0 * S, p.noise ? p.noise + r0 * S : nullptr,
          std::min(nb, e - r0), int(S), int(C), int(clamp), last_back, white_back, int(fill),
          buf.data(), p.rgb + r0 * C, p.depth + r0, p.weights + r0 * S);
    }
  };
  return run_fwd_cpu(rs_in, z_in, noise_in, S, "composite_fwd_cpu", rays);
}

at::Tensor composite_bwd_cpu(const at::Tensor& g_rgb_in, const at::Tensor& g_depth_in,
                             const at::Tensor& g_w_in, const at::Tensor& rs_in,
                             const at::Tensor& z_in, const c10::optional<at::Tensor>& noise_in,
                             int64_t clamp, bool last_back, bool white_back, int64_t fill) {
  check_composite(rs_in, z_in, noise_in, clamp, fill, false);
  check_cotangents(g_rgb_in, g_depth_in, g_w_in, rs_in, rs_in.size(2));
  const int64_t S = rs_in.size(2), C = rs_in.size(3) - 1, nb = block_rays(S);
  const bool recompute = composite_recompute_mode();
  const auto rays = [&](auto t, auto nc, const auto& p, int64_t b, int64_t e) {
    using scalar_t = typename decltype(t)::type;
    constexpr int NC = decltype(nc)::value;
    std::vector<scalar_t> buf(6 * nb * S + 2 * nb + std::max<int64_t>(S, 1));
    for (int64_t r0 = b; r0 < e; r0 += nb) {
      const int64_t n = std::min(nb, e - r0);
      if (recompute) {  // the CUDA kernel's variant
        for (int64_t r = r0; r < r0 + n; ++r) {
          composite_bwd_ray<scalar_t, scalar_t, NC>(
              p.rs + r * S * (C + 1), p.z + r * S, p.noise ? p.noise + r * S : nullptr,
              p.g_rgb + r * C, p.g_depth + r, p.g_w + r * S, int(S), int(C), int(clamp), last_back,
              white_back, int(fill), buf.data(), 1, p.grad + r * S * (C + 1));
        }
      } else {
        composite_bwd_block<scalar_t, NC>(p.rs + r0 * S * (C + 1), p.z + r0 * S,
                                          p.noise ? p.noise + r0 * S : nullptr, p.g_rgb + r0 * C,
                                          p.g_depth + r0, p.g_w + r0 * S, n, int(S), int(C),
                                          int(clamp), last_back, white_back, int(fill), buf.data(),
                                          p.grad + r0 * S * (C + 1));
      }
    }
  };
  return run_bwd_cpu(g_rgb_in, g_depth_in, g_w_in, rs_in, z_in, noise_in, "composite_bwd_cpu", rays);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> midpoint_fwd_cpu(const at::Tensor& rs_in,
                                                                const at::Tensor& z_in,
                                                                int64_t clamp, bool white_back) {
  check_composite(rs_in, z_in, c10::nullopt, clamp, 0, true);
  const int64_t S = rs_in.size(2), C = rs_in.size(3) - 1, n = std::max<int64_t>(S - 1, 0);
  const auto rays = [&](auto t, auto nc, const auto& p, int64_t b, int64_t e) {
    using scalar_t = typename decltype(t)::type;
    for (int64_t r = b; r < e; ++r) {
      midpoint_fwd_ray<scalar_t, scalar_t, decltype(nc)::value>(
          p.rs + r * S * (C + 1), p.z + r * S, int(S), int(C), int(clamp), white_back, p.rgb + r * C,
          p.depth + r, p.weights + r * n);
    }
  };
  return run_fwd_cpu(rs_in, z_in, c10::nullopt, n, "midpoint_fwd_cpu", rays);
}

at::Tensor midpoint_bwd_cpu(const at::Tensor& g_rgb_in, const at::Tensor& g_depth_in,
                            const at::Tensor& g_w_in, const at::Tensor& rs_in,
                            const at::Tensor& z_in, int64_t clamp, bool white_back) {
  check_composite(rs_in, z_in, c10::nullopt, clamp, 0, true);
  check_cotangents(g_rgb_in, g_depth_in, g_w_in, rs_in, std::max<int64_t>(rs_in.size(2) - 1, 0));
  const int64_t S = rs_in.size(2), C = rs_in.size(3) - 1, n = std::max<int64_t>(S - 1, 0);
  const auto rays = [&](auto t, auto nc, const auto& p, int64_t b, int64_t e) {
    using scalar_t = typename decltype(t)::type;
    std::vector<scalar_t> tbuf(std::max<int64_t>(n, 1));
    for (int64_t r = b; r < e; ++r) {
      midpoint_bwd_ray<scalar_t, scalar_t, decltype(nc)::value>(
          p.rs + r * S * (C + 1), p.z + r * S, p.g_rgb + r * C, p.g_depth + r, p.g_w + r * n,
          int(S), int(C), int(clamp), white_back, tbuf.data(), 1, p.grad + r * S * (C + 1));
    }
  };
  return run_bwd_cpu(g_rgb_in, g_depth_in, g_w_in, rs_in, z_in, c10::nullopt, "midpoint_bwd_cpu",
                     rays);
}

// Lanes of the vectors torch's CPU sum kernel uses for T. It depends on which kernel variant the
// dispatcher picked (sum has no AVX512 variant, so AVX2 serves AVX512 CPUs), so it is measured once:
// the lane count whose emulation reproduces at::sum bit for bit on deterministic probe rows.
template <typename T>
int sum_lanes() {
  static const int lanes = [] {
    const int lengths[] = {5, 7, 9, 13, 17, 23, 33, 47, 77, 130};
    const int candidates[] = {int(32 / sizeof(T)), int(64 / sizeof(T)), int(16 / sizeof(T)), 0};
    const int64_t rows = 16;
    bool ok[4] = {true, true, true, true};
    for (int L : lengths) {
      std::vector<T> data(rows * L);
      for (int64_t i = 0; i < rows * L; ++i) {
        // mixed magnitudes so that different summation orders round differently
        const double frac = std::fmod(double(i) * 0.6180339887498949 + 0.1, 1.0);
        data[i] = T(frac * frac * frac * std::pow(10.0, double(i % 7) - 3.0));
      }
      const at::Tensor x = at::from_blob(data.data(), {rows, int64_t(L)},
                                         at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
      const at::Tensor sums = x.sum(-1).contiguous();
      const T* ps = sums.data_ptr<T>();
      for (int c = 0; c < 4; ++c) {
        for (int64_t r = 0; r < rows && ok[c]; ++r) {
          ok[c] = torch_cpu_row_sum(data.data() + r * L, L, T(0), candidates[c]) == ps[r];
        }
      }
    }
    for (int c = 0; c < 4; ++c) {
      if (ok[c]) return candidates[c];
    }
    TORCH_WARN_ONCE("pigan: could not reproduce torch's CPU sum order; native sample_pdf may differ "
                    "from the reference in the last bit");
    return candidates[0];
  }();
  return lanes;
}

at::Tensor sample_pdf_cpu(const at::Tensor& bins_in, const at::Tensor& w_in, const at::Tensor& u_in,
                          double eps, const c10::optional<at::Tensor>& total_in) {
  check_sample_pdf(bins_in, w_in, u_in, total_in);
  const auto dtype = bins_in.scalar_type();
  const at::Tensor bins = work(bins_in), w = work(w_in), u = work(u_in);
  const at::Tensor total = total_in.has_value() ? work(*total_in).reshape({-1}) : at::Tensor();
  const int64_t N = w.size(0), M = w.size(1), K = u.size(1);
  at::Tensor out = new_output({N, K}, bins.options());
  dispatch_float<false>(bins.scalar_type(), "sample_pdf_cpu", [&](auto t) {
    using scalar_t = typename decltype(t)::type;
    const scalar_t* ptotal = total.defined() ? total.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pb = bins.data_ptr<scalar_t>();
    const scalar_t* pw = w.data_ptr<scalar_t>();
    const scalar_t* pu = u.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const scalar_t e = scalar_t(eps);
    const int vec_n = sum_lanes<scalar_t>();
    const bool scan = sample_pdf_scan_mode();
    at::parallel_for(0, N, grain_for(M + K * M), [&](int64_t b, int64_t end) {
      std::vector<scalar_t> cdf(M + 1);
      for (int64_t r = b; r < end; ++r) {
        const scalar_t* wr = pw + r * M;
        const scalar_t* br = pb + r * (M + 1);
        const scalar_t total = ptotal ? ptotal[r] : torch_cpu_row_sum(wr, int(M), e, vec_n);
        // torch.cumsum on CPU accumulates in double for float and double alike.
        if (scan) {  // the CUDA kernel's per-sample code path
          const bool monotone = pdf_non_negative(wr, int(M), total, e);
          for (int64_t k = 0; k < K; ++k) {
            po[r * K + k] = sample_pdf_one<scalar_t, scalar_t, double>(br, wr, int(M), total, e,
                                                                       pu[r * K + k], monotone);
          }
        } else {
          const bool monotone = build_cdf<scalar_t, scalar_t, double>(wr, int(M), total, e, cdf.data());
          for (int64_t k = 0; k < K; ++k) {
            po[r * K + k] = invert_cdf<scalar_t, scalar_t>(br, cdf.data(), int(M), e, pu[r * K + k],
                                                           monotone);
          }
        }
      }
    });
  });
  return back(out, dtype);
}

std::tuple<at::Tensor, at::Tensor> merge_samples_cpu(const at::Tensor& zc_in, const at::Tensor& zf_in) {
  check_merge(zc_in, zf_in);
  const auto dtype = zf_in.scalar_type();
  const at::Tensor zc = work(zc_in), zf = work(zf_in);
  const int64_t B = zf.size(0), R = zf.size(1), S1 = zc.size(2), S2 = zf.size(2), N = B * R;
  const int64_t S = S1 + S2;
  at::Tensor z_all = new_output({B, R, S, 1}, zf.options());
  at::Tensor idx = new_output({B, R, S}, zf.options().dtype(at::kLong));
  dispatch_float<false>(zf.scalar_type(), "merge_samples_cpu", [&](auto t) {
    using scalar_t = typename decltype(t)::type;
    const scalar_t* pc = zc.data_ptr<scalar_t>();
    const scalar_t* pf = zf.data_ptr<scalar_t>();
    scalar_t* po = z_all.data_ptr<scalar_t>();
    int64_t* pi = idx.data_ptr<int64_t>();
    at::parallel_for(0, N, grain_for(S * 4), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        merge_ray<scalar_t, scalar_t>(pc + r * S1, int(S1), pf + r * S2, int(S2), po + r * S,
                                      pi + r * S);
      }
    });
  });
  return {back(z_all, dtype), idx};
}

}  // namespace
}  // namespace pigan

TORCH_LIBRARY_IMPL(pigan, CPU, m) {
  PIGAN_IMPL_RENDER_OPS(m, cpu);
}
