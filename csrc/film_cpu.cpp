// FiLM-SIREN epilogues on CPU tensors (the "native" backend of pigan.ops.film_siren).
//
// The layer is y = sin(freq[b] * z + phase[b]) with z = x W^T + bias.
//   film_forward(x, weight, bias, freq, phase) -> y   row blocks of addmm, each followed at once by the
//                                                    sine pass on the block (still in cache)
//   film_bwd_epilogue_(z, dy, freq, phase)  z <- dz = dy * cos(freq * z + phase) * freq, in place on the
//                                           recomputed z, and returns per-sample dfreq = sum_n g * z and
//                                           dphase = sum_n g (g = dy * cos), [B, H] each
// z and dy are contiguous [B, N, H]; freq and phase are [B, H] of any float dtype. Float rows use a
// branch-free sin/cos that GCC vectorises, compiled for AVX-512, AVX2 and baseline x86-64 (target_clones
// picks one at load time); double uses std::sin/std::cos (it exists for gradcheck). Half and bfloat16
// layers run their GEMM blocks in fp32 (widened operands), so z and the sine argument are fp32 as in
// the Triton kernels; the backward epilogue takes float or double (callers widen half/bfloat16).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kChunk = 256;        // rows of one sample per backward task (one partial-sum row)
constexpr float kMaxFastArg = 8192.f;  // beyond this the 3-part pi/2 reduction loses bits: use libm

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define PIGAN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PIGAN_CLONES
#endif

// sin(r + q * pi/2) for the quadrant q of x, via Cody-Waite reduction and Cephes' minimax polynomials
// on [-pi/4, pi/4] (about 1 ulp there). `shift` = 0 gives sin, 1 gives cos.
inline float quadrant_sin(float x, int shift) {
  const float jf = (x * 0.636619772367581343f + 12582912.f) - 12582912.f;  // round-to-nearest(x*2/pi)
  float r = x - jf * 1.5703125f;
  r = r - jf * 4.837512969970703125e-4f;
  r = r - jf * 7.54978995489188216e-8f;
  const int q = static_cast<int>(jf) + shift;
  const float r2 = r * r;
  const float s = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  const float c = 1.f - 0.5f * r2 +
                  r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  const float v = (q & 1) ? c : s;
  return (q & 2) ? -v : v;
}

// Whether some |freq * z + phase| of a row exceeds kMaxFastArg (never in practice): then libm does the
// row. An OR-reduction (not a max) so that it vectorises without fast-math.
PIGAN_CLONES bool arg_too_large(const float* __restrict z, const float* __restrict f,
                                const float* __restrict p, int64_t H) {
  int bad = 0;
  for (int64_t h = 0; h < H; ++h) bad |= std::fabs(f[h] * z[h] + p[h]) > kMaxFastArg;
  return bad != 0;
}

PIGAN_CLONES void fwd_row(float* __restrict z, const float* __restrict f, const float* __restrict p,
                          int64_t H) {
  for (int64_t h = 0; h < H; ++h) z[h] = quadrant_sin(f[h] * z[h] + p[h], 0);
}

void fwd_row_exact(float* z, const float* f, const float* p, int64_t H) {
  for (int64_t h = 0; h < H; ++h) z[h] = std::sin(f[h] * z[h] + p[h]);
}

PIGAN_CLONES void bwd_row(float* __restrict z, const float* __restrict dy, const float* __restrict f,
                          const float* __restrict p, float* __restrict sgz, float* __restrict sg,
                          int64_t H) {
  for (int64_t h = 0; h < H; ++h) {
    const float zz = z[h];
    const float g = dy[h] * quadrant_sin(f[h] * zz + p[h], 1);
    sgz[h] += g * zz;
    sg[h] += g;
    z[h] = g * f[h];
  }
}

void bwd_row_exact(float* z, const float* dy, const float* f, const float* p, float* sgz, float* sg,
                   int64_t H) {
  for (int64_t h = 0; h < H; ++h) {
    const float zz = z[h];
    const float g = dy[h] * std::cos(f[h] * zz + p[h]);
    sgz[h] += g * zz;
    sg[h] += g;
    z[h] = g * f[h];
  }
}

void check_args(const at::Tensor& z, const at::Tensor& freq, const at::Tensor& phase, const char* op) {
  TORCH_CHECK(z.device().is_cpu() && freq.device().is_cpu() && phase.device().is_cpu(), op,
              ": expects CPU tensors");
  TORCH_CHECK(z.dim() == 3 && z.is_contiguous(), op, ": z must be a contiguous [B, N, H] tensor, got ",
              z.sizes());
  const auto B = z.size(0), H = z.size(2);
  TORCH_CHECK(freq.dim() == 2 && freq.size(0) == B && freq.size(1) == H, op, ": freq must be [", B,
              ", ", H, "], got ", freq.sizes());
  TORCH_CHECK(phase.dim() == 2 && phase.size(0) == B && phase.size(1) == H, op, ": phase must be [",
              B, ", ", H, "], got ", phase.sizes());
}

// sin(freq * z + phase) in place on a block z [rows, H] (contiguous) holding rows r0 .. r0 + rows of
// the [B * N, H] layer output; freq/phase [B, H] contiguous, float (double for a double block).
void sin_block(const at::Tensor& z, const at::Tensor& freq, const at::Tensor& phase, int64_t N, int64_t r0) {
  const int64_t rows = z.size(0), H = z.size(1);
  if (z.scalar_type() == at::kDouble) {
    double* zp = z.data_ptr<double>();
    const double *fp = freq.data_ptr<double>(), *pp = phase.data_ptr<double>();
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t b = (r0 + i) / N;
      for (int64_t h = 0; h < H; ++h) zp[i * H + h] = std::sin(fp[b * H + h] * zp[i * H + h] + pp[b * H + h]);
    }
    return;
  }
  float* zp = z.data_ptr<float>();
  const float *fp = freq.data_ptr<float>(), *pp = phase.data_ptr<float>();
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t b = (r0 + i) / N;
    float* row = zp + i * H;
    if (arg_too_large(row, fp + b * H, pp + b * H, H)) fwd_row_exact(row, fp + b * H, pp + b * H, H);
    else fwd_row(row, fp + b * H, pp + b * H, H);
  }
}

// The whole forward layer, blocked: each task runs the GEMM of kRowBlock rows and applies the sine to
// that block while it is still in cache (a GEMM inside a parallel task runs on one thread).
// x [B, N, K], weight [H, K], bias [H] or None (x's dtype), freq/phase [B, H] -> y [B, N, H].
constexpr int64_t kRowBlock = 256;

at::Tensor film_forward(const at::Tensor& x_in, const at::Tensor& weight, const std::optional<at::Tensor>& bias_in,
                        const at::Tensor& freq_in, const at::Tensor& phase_in) {
  TORCH_CHECK(x_in.dim() == 3 && weight.dim() == 2 && x_in.size(2) == weight.size(1),
              "film_forward: x must be [B, N, K] and weight [H, K], got ", x_in.sizes(), " and ", weight.sizes());
  const bool has_bias = bias_in.has_value() && bias_in->defined();
  TORCH_CHECK(x_in.scalar_type() == weight.scalar_type() &&
                  (!has_bias || bias_in->scalar_type() == weight.scalar_type()),
              "film_forward: x, weight and bias must share one dtype");
  const int64_t B = x_in.size(0), N = x_in.size(1), K = x_in.size(2), H = weight.size(0), M = B * N;
  auto y = at::empty({B, N, H}, x_in.options().memory_format(at::MemoryFormat::Contiguous));
  check_args(y, freq_in, phase_in, "film_forward");
  if (y.numel() == 0) return y;
  const bool dbl = y.scalar_type() == at::kDouble;
  const auto acc_t = dbl ? at::kDouble : at::kFloat;
  const bool widen = y.scalar_type() != acc_t;                         // half / bfloat16
  const auto x = x_in.reshape({M, K}).contiguous();
  const auto wt = weight.to(acc_t).t();
  const auto bias = has_bias ? bias_in->to(acc_t) : at::Tensor();
  const auto freq = freq_in.to(acc_t).contiguous(), phase = phase_in.to(acc_t).contiguous();
  auto y2 = y.view({M, H});
  const int64_t blocks = (M + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    // Worker threads do not inherit the caller's grad mode: keep these GEMMs below autograd.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor zbuf;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * kRowBlock, rows = std::min(M, r0 + kRowBlock) - r0;
      auto xb = x.narrow(0, r0, rows);
      at::Tensor zb;
      if (widen) {
        if (!zbuf.defined() || zbuf.size(0) < rows) zbuf = at::empty({rows, H}, y.options().dtype(acc_t));
        zb = zbuf.narrow(0, 0, rows);
        xb = xb.to(acc_t);
      } else {
        zb = y2.narrow(0, r0, rows);
      }
      if (has_bias) at::addmm_out(zb, bias, xb, wt);
      else at::mm_out(zb, xb, wt);
      sin_block(zb, freq, phase, N, r0);
      if (widen) y2.narrow(0, r0, rows).copy_(zb);
    }
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> film_bwd_epilogue_(at::Tensor z, const at::Tensor& dy_in,
                                                      const at::Tensor& freq_in, const at::Tensor& phase_in) {
  check_args(z, freq_in, phase_in, "film_bwd_epilogue_");
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble,
              "film_bwd_epilogue_: z must be float32 or float64 (widen half/bfloat16 first), got ",
              z.scalar_type());
  TORCH_CHECK(dy_in.sizes() == z.sizes(), "film_bwd_epilogue_: dy must have the shape of z ", z.sizes(),
              ", got ", dy_in.sizes());
  const int64_t B = z.size(0), N = z.size(1), H = z.size(2);
  const int64_t chunks = std::max<int64_t>(1, (N + kChunk - 1) / kChunk);
  // One partial-sum row per (sample, chunk of points): no shared accumulators between tasks.
  auto pgz = at::zeros({B, chunks, H}, z.options());
  auto pg = at::zeros({B, chunks, H}, z.options());
  if (z.numel() == 0) return {pgz.sum(1), pg.sum(1)};
  const auto dy = dy_in.to(z.scalar_type()).contiguous();
  const auto freq = freq_in.to(z.scalar_type()).contiguous(), phase = phase_in.to(z.scalar_type()).contiguous();
  if (z.scalar_type() == at::kDouble) {
    double* zp = z.data_ptr<double>();
    const double *dyp = dy.data_ptr<double>(), *fp = freq.data_ptr<double>(), *pp = phase.data_ptr<double>();
    double *gz = pgz.data_ptr<double>(), *gg = pg.data_ptr<double>();
    at::parallel_for(0, B * chunks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / chunks, n0 = (t % chunks) * kChunk, n1 = std::min(N, n0 + kChunk);
        for (int64_t n = n0; n < n1; ++n) {
          const int64_t r = b * N + n;
          for (int64_t h = 0; h < H; ++h) {
            const double zz = zp[r * H + h], f = fp[b * H + h];
            const double g = dyp[r * H + h] * std::cos(f * zz + pp[b * H + h]);
            gz[t * H + h] += g * zz;
            gg[t * H + h] += g;
            zp[r * H + h] = g * f;
          }
        }
      }
    });
    return {pgz.sum(1), pg.sum(1)};
  }
  float* zp = z.data_ptr<float>();
  const float *dyp = dy.data_ptr<float>(), *fp = freq.data_ptr<float>(), *pp = phase.data_ptr<float>();
  float *gz = pgz.data_ptr<float>(), *gg = pg.data_ptr<float>();
  at::parallel_for(0, B * chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / chunks, n0 = (t % chunks) * kChunk, n1 = std::min(N, n0 + kChunk);
      const float *f = fp + b * H, *p = pp + b * H;
      for (int64_t n = n0; n < n1; ++n) {
        float* row = zp + (b * N + n) * H;
        const float* drow = dyp + (b * N + n) * H;
        if (arg_too_large(row, f, p, H)) bwd_row_exact(row, drow, f, p, gz + t * H, gg + t * H, H);
        else bwd_row(row, drow, f, p, gz + t * H, gg + t * H, H);
      }
    }
  });
  return {pgz.sum(1), pg.sum(1)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(pigan, m) {
  m.def("film_forward(Tensor x, Tensor weight, Tensor? bias, Tensor freq, Tensor phase) -> Tensor");
  m.def("film_bwd_epilogue_(Tensor(a!) z, Tensor dy, Tensor freq, Tensor phase) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(pigan, CPU, m) {
  m.impl("film_forward", &film_forward);
  m.impl("film_bwd_epilogue_", &film_bwd_epilogue_);
}
