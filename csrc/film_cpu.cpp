// FiLM-SIREN passes on CPU tensors (the "native" backend of pigan.ops.film_siren and film_siren_stack).
//
// The layer is y = sin(freq[b] * z + phase[b]) with z = x W^T + bias.
//   film_forward(x, weight, bias, freq, phase) -> y     row blocks of mm, each followed at once by the
//                                                      bias + sine pass on the block (still in cache)
//   film_forward_pre(...) -> (y, z)                     the same, keeping the pre-activation z
//   film_sine_out(out, z, freq, phase)                  out = sin(freq * z + phase)
//   film_bwd_epilogue_(z, dy, freq, phase, bias)        z <- dz = dy * cos(freq * (z + bias) + phase) * freq
//                                                      on a recomputed z = x W^T, and returns per-sample
//                                                      dfreq = sum_n g * (z + bias), dphase = sum_n g
//                                                      (g = dy * cos), [B, H] each
//   film_bwd_pre_(dy, z, freq, phase)                   the same from a saved z (bias included), writing
//                                                      dz over dy
// z and dy are contiguous [B, N, H]; freq and phase are [B, H] of any float dtype. Float rows use a
// branch-free sin/cos that GCC vectorises, compiled for AVX-512, AVX2 + FMA and baseline x86-64
// (cpu_isa.h picks one at load time; PIGAN_CPU_ISA forces one); double uses std::sin/std::cos (it
// exists for gradcheck). Half and bfloat16 layers run their GEMM blocks in fp32 (widened operands),
// so z and the sine argument are fp32 as in the Triton kernels; the backward epilogue takes float or
// double (callers widen half/bfloat16).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common.h"
#include "cpu_isa.h"
#include "render_checks.h"

namespace {

using pigan::check_dim;
using pigan::check_dtype;
using pigan::check_float;

constexpr int64_t kChunk = 256;        // rows of one sample per backward task (one partial-sum row)
constexpr float kMaxFastArg = 8192.f;  // beyond this the 3-part pi/2 reduction loses bits: use libm

// sin(x + shift * pi/2) via Cody-Waite reduction to r in [-pi/4, pi/4] and Cephes' minimax polynomials
// there (about 1 ulp), for |x| <= kMaxFastArg. Branch-free: the quadrant q picks the sine or cosine
// polynomial and the sign by bit masks, not by a conditional, so that GCC vectorises loops of it for
// every ISA level (a float select on an integer condition kept the AVX2 loop scalar). q comes from the
// bits of the rounded x * 2/pi (1.5 * 2^23 added puts the integer in the low mantissa bits), which
// also saves a float-to-int conversion. Where FMA is available GCC contracts the reduction and the
// polynomials, which only makes them more accurate.
PIGAN_ALWAYS_INLINE float quadrant_sin(float x, uint32_t shift) {
  constexpr float magic = 12582912.f;
  const float t = x * 0.636619772367581343f + magic;
  const float jf = t - magic;                                   // round-to-nearest(x * 2/pi)
  float r = x - jf * 1.5703125f;
  r = r - jf * 4.837512969970703125e-4f;
  r = r - jf * 7.54978995489188216e-8f;
  const uint32_t q = __builtin_bit_cast(uint32_t, t) - __builtin_bit_cast(uint32_t, magic) + shift;
  const float r2 = r * r;
  const float s = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  const float c = 1.f - 0.5f * r2 +
                  r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  const uint32_t odd = 0u - (q & 1u);                           // all ones in quadrants 1 and 3: cosine
  const uint32_t v = (__builtin_bit_cast(uint32_t, c) & odd) | (__builtin_bit_cast(uint32_t, s) & ~odd);
  return __builtin_bit_cast(float, v ^ ((q & 2u) << 30));       // quadrants 2 and 3: negated
}

// Row passes. A row is H values of one point; b is the bias row (zeros when the values already hold it),
// f and p the point's sample's freq and phase rows. With v = z + b and a = f * v + p:
//   sine_row:  y = sin(a)                                   (y may alias z)
//   add_row:   z = v
//   bwd_row:   g = dy * cos(a); sgz += g * v; sg += g; dz = g * f   (dz may alias z or dy)
// Float rows use the polynomial sine unless some |a| of the row exceeds kMaxFastArg (never in
// practice): then libm does the row. The test is an OR-reduction (not a max) so that it vectorises
// without fast-math.
//
// The float passes are written once (the *_body functions, always inlined) and compiled per ISA level
// (cpu_isa.h). Results go through a small local tile before the store to y / dz: those may alias the
// inputs exactly (in place), and with the inputs' unknown aliasing GCC would vectorise only behind a
// run-time overlap check that an in-place call fails; a local array aliases nothing.
constexpr int64_t kTile = 128;

PIGAN_ALWAYS_INLINE bool arg_too_large_body(const float* __restrict z, const float* __restrict b,
                                            const float* __restrict f, const float* __restrict p, int64_t H) {
  int bad = 0;
  for (int64_t h = 0; h < H; ++h) bad |= std::fabs(f[h] * (z[h] + b[h]) + p[h]) > kMaxFastArg;
  return bad != 0;
}

PIGAN_ALWAYS_INLINE void sine_row_fast_body(float* y, const float* z, const float* __restrict b,
                                            const float* __restrict f, const float* __restrict p, int64_t H) {
  for (int64_t h0 = 0; h0 < H; h0 += kTile) {
    const int64_t n = std::min(kTile, H - h0);
    float tile[kTile];
    for (int64_t i = 0; i < n; ++i) tile[i] = quadrant_sin(f[h0 + i] * (z[h0 + i] + b[h0 + i]) + p[h0 + i], 0);
    for (int64_t i = 0; i < n; ++i) y[h0 + i] = tile[i];
  }
}

PIGAN_ALWAYS_INLINE void bwd_row_fast_body(float* dz, const float* z, const float* dy, const float* __restrict b,
                                           const float* __restrict f, const float* __restrict p,
                                           float* __restrict sgz, float* __restrict sg, int64_t H) {
  for (int64_t h0 = 0; h0 < H; h0 += kTile) {
    const int64_t n = std::min(kTile, H - h0);
    float tile[kTile];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t h = h0 + i;
      const float v = z[h] + b[h];
      const float g = dy[h] * quadrant_sin(f[h] * v + p[h], 1);
      sgz[h] += g * v;
      sg[h] += g;
      tile[i] = g * f[h];
    }
    for (int64_t i = 0; i < n; ++i) dz[h0 + i] = tile[i];
  }
}

// The libm rows stay out of line: inlined into an FMA variant, their argument would be contracted and
// round differently from the baseline build's.
template <typename T>
PIGAN_NOINLINE void sine_row_libm(T* y, const T* z, const T* b, const T* f, const T* p, int64_t H) {
  for (int64_t h = 0; h < H; ++h) y[h] = std::sin(f[h] * (z[h] + b[h]) + p[h]);
}

template <typename T>
PIGAN_NOINLINE void bwd_row_libm(T* dz, const T* z, const T* dy, const T* b, const T* f, const T* p,
                                            T* sgz, T* sg, int64_t H) {
  for (int64_t h = 0; h < H; ++h) {
    const T v = z[h] + b[h];
    const T g = dy[h] * std::cos(f[h] * v + p[h]);
    sgz[h] += g * v;
    sg[h] += g;
    dz[h] = g * f[h];
  }
}

#define PIGAN_FILM_ROWS(ATTR, ISA)                                                                          \
  ATTR void sine_row_##ISA(float* y, const float* z, const float* b, const float* f, const float* p,        \
                           int64_t H) {                                                                     \
    if (arg_too_large_body(z, b, f, p, H)) sine_row_libm(y, z, b, f, p, H);                                 \
    else sine_row_fast_body(y, z, b, f, p, H);                                                              \
  }                                                                                                         \
  ATTR void add_row_##ISA(float* __restrict z, const float* __restrict b, int64_t H) {                      \
    for (int64_t h = 0; h < H; ++h) z[h] += b[h];                                                           \
  }                                                                                                         \
  ATTR void bwd_row_##ISA(float* dz, const float* z, const float* dy, const float* b, const float* f,       \
                          const float* p, float* sgz, float* sg, int64_t H) {                               \
    if (arg_too_large_body(z, b, f, p, H)) bwd_row_libm(dz, z, dy, b, f, p, sgz, sg, H);                    \
    else bwd_row_fast_body(dz, z, dy, b, f, p, sgz, sg, H);                                                 \
  }
PIGAN_FOR_EACH_ISA(PIGAN_FILM_ROWS)
#undef PIGAN_FILM_ROWS

// The float row passes of the ISA level in use, chosen once.
struct FloatRows {
  void (*sine)(float*, const float*, const float*, const float*, const float*, int64_t);
  void (*add)(float*, const float*, int64_t);
  void (*bwd)(float*, const float*, const float*, const float*, const float*, const float*, float*, float*,
              int64_t);
};

const FloatRows& float_rows() {
  static const FloatRows rows = [] {
    [[maybe_unused]] const pigan::CpuIsa isa = pigan::cpu_isa();
    return FloatRows{PIGAN_ISA_PICK(sine_row, isa), PIGAN_ISA_PICK(add_row, isa), PIGAN_ISA_PICK(bwd_row, isa)};
  }();
  return rows;
}

void sine_row(float* y, const float* z, const float* b, const float* f, const float* p, int64_t H) {
  float_rows().sine(y, z, b, f, p, H);
}
void sine_row(double* y, const double* z, const double* b, const double* f, const double* p, int64_t H) {
  sine_row_libm(y, z, b, f, p, H);
}
void add_row(float* z, const float* b, int64_t H) { float_rows().add(z, b, H); }
void add_row(double* z, const double* b, int64_t H) {
  for (int64_t h = 0; h < H; ++h) z[h] += b[h];
}
void bwd_row(float* dz, const float* z, const float* dy, const float* b, const float* f, const float* p,
             float* sgz, float* sg, int64_t H) {
  float_rows().bwd(dz, z, dy, b, f, p, sgz, sg, H);
}
void bwd_row(double* dz, const double* z, const double* dy, const double* b, const double* f, const double* p,
             double* sgz, double* sg, int64_t H) {
  bwd_row_libm(dz, z, dy, b, f, p, sgz, sg, H);
}

void check_cpu(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got one on ", t.device());
}

// freq and phase [B, H] of any floating dtype (read in z's accumulation dtype), on the CPU.
void check_film_params(const at::Tensor& freq, const at::Tensor& phase, int64_t B, int64_t H, const char* op) {
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{freq, "freq"}, {phase, "phase"}}) {
    check_float(t, name);
    check_cpu(t, op, name);
    TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == B && t.size(1) == H, op, ": ", name, " must have shape [",
                      B, ", ", H, "], got ", t.sizes());
  }
}

// A [B, N, H] per-point tensor of the epilogue ops: contiguous float32 or float64 on the CPU.
void check_rows(const at::Tensor& z, const char* op, const char* name) {
  TORCH_CHECK_TYPE(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble, op, ": ", name,
                   " must be float32 or float64 (widen half/bfloat16 first), got ", z.scalar_type());
  check_cpu(z, op, name);
  check_dim(z, 3, name);
  TORCH_CHECK_VALUE(z.is_contiguous(), op, ": ", name, " must be contiguous, got strides ", z.strides());
}

// A second [B, N, H] tensor beside z: same shape; same dtype and contiguous when it is written.
void check_like(const at::Tensor& t, const at::Tensor& z, const char* op, const char* name, bool written) {
  check_float(t, name);
  check_cpu(t, op, name);
  TORCH_CHECK_VALUE(t.sizes() == z.sizes(), op, ": ", name, " must have shape ", z.sizes(), ", got ", t.sizes());
  if (written) {
    check_dtype(t, z, name);
    TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous, got strides ", t.strides());
  }
}

// The bias row as a contiguous [H] tensor of dtype dt (zeros without a bias).
at::Tensor bias_row(const std::optional<at::Tensor>& bias, int64_t H, at::ScalarType dt, const char* op) {
  if (!bias.has_value() || !bias->defined()) return at::zeros({H}, at::TensorOptions().dtype(dt));
  check_float(*bias, "bias");
  check_cpu(*bias, op, "bias");
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == H, op, ": bias must have shape [", H, "], got ",
                    bias->sizes());
  return bias->to(dt).contiguous();
}

// Rows r0 .. r0 + rows of a [B * N, H] layer (N points per sample) given as the block zb [rows, H]:
// y = sin(freq * (z + b) + phase) into yb (may be zb); with store_pre (yb is then not zb), zb itself
// becomes z + b afterwards.
template <typename T>
void sine_block(const at::Tensor& yb, const at::Tensor& zb, const at::Tensor& b, const at::Tensor& freq,
                const at::Tensor& phase, int64_t N, int64_t r0, bool store_pre) {
  const int64_t rows = zb.size(0), H = zb.size(1);
  T* y = yb.data_ptr<T>();
  T* z = zb.data_ptr<T>();
  const T *bp = b.data_ptr<T>(), *fp = freq.data_ptr<T>(), *pp = phase.data_ptr<T>();
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t s = (r0 + i) / N;
    sine_row(y + i * H, z + i * H, bp, fp + s * H, pp + s * H, H);
    if (store_pre) add_row(z + i * H, bp, H);
  }
}

// The forward layer, blocked: each task runs the GEMM of kRowBlock rows and applies bias, FiLM and sine
// to that block while it is still in cache (a GEMM inside a parallel task runs on one thread). The
// bias is added in the row pass, not by addmm: addmm first broadcasts it into the output block, an
// extra pass over the block. x [B, N, K], weight [H, K], bias [H] or None (x's dtype), freq/phase
// [B, H] -> y [B, N, H]; with pre (float32/float64 only) the pre-activation x W^T + b is kept there.
constexpr int64_t kRowBlock = 256;

void forward_blocked(const at::Tensor& x_in, const at::Tensor& weight, const std::optional<at::Tensor>& bias_in,
                     const at::Tensor& freq_in, const at::Tensor& phase_in, const at::Tensor& y,
                     const at::Tensor& pre) {
  const int64_t B = x_in.size(0), N = x_in.size(1), K = x_in.size(2), H = weight.size(0), M = B * N;
  if (y.numel() == 0) return;
  const bool dbl = y.scalar_type() == at::kDouble;
  const auto acc_t = dbl ? at::kDouble : at::kFloat;
  const bool widen = y.scalar_type() != acc_t;                         // half / bfloat16
  const bool keep = pre.defined();
  const auto x = x_in.reshape({M, K}).contiguous();
  const auto wt = weight.to(acc_t).t();
  const auto bias = bias_row(bias_in, H, acc_t, "film_forward");
  const auto freq = freq_in.to(acc_t).contiguous(), phase = phase_in.to(acc_t).contiguous();
  auto y2 = y.view({M, H});
  auto pre2 = keep ? pre.view({M, H}) : at::Tensor();
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
        zb = keep ? pre2.narrow(0, r0, rows) : y2.narrow(0, r0, rows);
      }
      at::mm_out(zb, xb, wt);
      const auto yb = widen ? zb : y2.narrow(0, r0, rows);
      if (dbl) sine_block<double>(yb, zb, bias, freq, phase, N, r0, keep);
      else sine_block<float>(yb, zb, bias, freq, phase, N, r0, keep);
      if (widen) y2.narrow(0, r0, rows).copy_(zb);
    }
  });
}

// x [B, N, K], weight [H, K], bias [H] or None: one floating dtype, CPU; freq/phase [B, H].
void check_forward_args(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        const at::Tensor& freq, const at::Tensor& phase, const char* op) {
  check_float(x, "x");
  check_float(weight, "weight");
  check_dim(x, 3, "x");
  check_dim(weight, 2, "weight");
  check_cpu(x, op, "x");
  check_cpu(weight, op, "weight");
  check_dtype(weight, x, "weight");
  TORCH_CHECK_VALUE(weight.size(1) == x.size(2), op, ": weight must have shape [H, ", x.size(2),
                    "] (K = the last dim of x), got ", weight.sizes());
  if (bias.has_value() && bias->defined()) check_dtype(*bias, x, "bias");   // shape: bias_row
  check_film_params(freq, phase, x.size(0), weight.size(0), op);
}

at::Tensor film_forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        const at::Tensor& freq, const at::Tensor& phase) {
  check_forward_args(x, weight, bias, freq, phase, "film_forward");
  auto y = at::empty({x.size(0), x.size(1), weight.size(0)}, x.options().memory_format(at::MemoryFormat::Contiguous));
  forward_blocked(x, weight, bias, freq, phase, y, at::Tensor());
  return y;
}

// film_forward that also returns the pre-activation z = x W^T + b (what a layer stack saves for backward).
std::tuple<at::Tensor, at::Tensor> film_forward_pre(const at::Tensor& x, const at::Tensor& weight,
                                                    const std::optional<at::Tensor>& bias, const at::Tensor& freq,
                                                    const at::Tensor& phase) {
  check_forward_args(x, weight, bias, freq, phase, "film_forward_pre");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                   "film_forward_pre: x must be float32 or float64, got ", x.scalar_type());
  auto y = at::empty({x.size(0), x.size(1), weight.size(0)}, x.options().memory_format(at::MemoryFormat::Contiguous));
  auto pre = at::empty_like(y);
  forward_blocked(x, weight, bias, freq, phase, y, pre);
  return {y, pre};
}

// out = sin(freq * pre + phase): a stack's backward rebuilds a layer's input from the previous layer's
// saved pre-activation with this (one elementwise pass instead of a GEMM).
void film_sine_out(at::Tensor out, const at::Tensor& pre, const at::Tensor& freq_in, const at::Tensor& phase_in) {
  check_rows(pre, "film_sine_out", "pre");
  check_like(out, pre, "film_sine_out", "out", true);
  check_film_params(freq_in, phase_in, pre.size(0), pre.size(2), "film_sine_out");
  const int64_t B = pre.size(0), N = pre.size(1), H = pre.size(2), M = B * N;
  if (pre.numel() == 0) return;
  const auto freq = freq_in.to(pre.scalar_type()).contiguous(), phase = phase_in.to(pre.scalar_type()).contiguous();
  const auto zero = at::zeros({H}, pre.options());
  const auto pre2 = pre.view({M, H}), out2 = out.view({M, H});
  at::parallel_for(0, (M + kRowBlock - 1) / kRowBlock, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * kRowBlock, rows = std::min(M, r0 + kRowBlock) - r0;
      const auto zb = pre2.narrow(0, r0, rows), yb = out2.narrow(0, r0, rows);
      if (pre.scalar_type() == at::kDouble) sine_block<double>(yb, zb, zero, freq, phase, N, r0, false);
      else sine_block<float>(yb, zb, zero, freq, phase, N, r0, false);
    }
  });
}

// The backward row pass over [B, N, H] z (+ bias) and dy, writing dz = dy * cos(a) * freq into dz (z's or
// dy's storage) and returning per-sample dfreq = sum_n g * (z + b) and dphase = sum_n g, [B, H] each.
template <typename T>
std::tuple<at::Tensor, at::Tensor> bwd_pass(const at::Tensor& dz, const at::Tensor& z, const at::Tensor& dy,
                                            const at::Tensor& bias, const at::Tensor& freq, const at::Tensor& phase) {
  const int64_t B = z.size(0), N = z.size(1), H = z.size(2);
  const int64_t chunks = std::max<int64_t>(1, (N + kChunk - 1) / kChunk);
  // One partial-sum row per (sample, chunk of points): no shared accumulators between tasks.
  auto pgz = at::zeros({B, chunks, H}, z.options());
  auto pg = at::zeros({B, chunks, H}, z.options());
  if (z.numel() == 0) return {pgz.sum(1), pg.sum(1)};
  T* dzp = dz.data_ptr<T>();
  const T *zp = z.data_ptr<T>(), *dyp = dy.data_ptr<T>(), *bp = bias.data_ptr<T>();
  const T *fp = freq.data_ptr<T>(), *pp = phase.data_ptr<T>();
  T *gz = pgz.data_ptr<T>(), *gg = pg.data_ptr<T>();
  at::parallel_for(0, B * chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / chunks, n0 = (t % chunks) * kChunk, n1 = std::min(N, n0 + kChunk);
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t r = (b * N + n) * H;
        bwd_row(dzp + r, zp + r, dyp + r, bp, fp + b * H, pp + b * H, gz + t * H, gg + t * H, H);
      }
    }
  });
  return {pgz.sum(1), pg.sum(1)};
}

// Layer backward after the recomputed GEMM z = x W^T (bias not yet added: pass it here): z <- dz.
std::tuple<at::Tensor, at::Tensor> film_bwd_epilogue_(at::Tensor z, const at::Tensor& dy_in,
                                                      const at::Tensor& freq_in, const at::Tensor& phase_in,
                                                      const std::optional<at::Tensor>& bias_in) {
  check_rows(z, "film_bwd_epilogue_", "z");
  check_like(dy_in, z, "film_bwd_epilogue_", "dy", false);
  check_film_params(freq_in, phase_in, z.size(0), z.size(2), "film_bwd_epilogue_");
  const auto dt = z.scalar_type();
  const auto dy = dy_in.to(dt).contiguous();
  const auto freq = freq_in.to(dt).contiguous(), phase = phase_in.to(dt).contiguous();
  const auto bias = bias_row(bias_in, z.size(2), dt, "film_bwd_epilogue_");
  if (dt == at::kDouble) return bwd_pass<double>(z, z, dy, bias, freq, phase);
  return bwd_pass<float>(z, z, dy, bias, freq, phase);
}

// Layer backward from a saved pre-activation (bias included): dy <- dz in place, pre untouched.
std::tuple<at::Tensor, at::Tensor> film_bwd_pre_(at::Tensor dy, const at::Tensor& pre, const at::Tensor& freq_in,
                                                 const at::Tensor& phase_in) {
  check_rows(pre, "film_bwd_pre_", "pre");
  check_like(dy, pre, "film_bwd_pre_", "dy", true);
  check_film_params(freq_in, phase_in, pre.size(0), pre.size(2), "film_bwd_pre_");
  const auto dt = pre.scalar_type();
  const auto freq = freq_in.to(dt).contiguous(), phase = phase_in.to(dt).contiguous();
  const auto zero = at::zeros({pre.size(2)}, pre.options());
  if (dt == at::kDouble) return bwd_pass<double>(dy, pre, dy, zero, freq, phase);
  return bwd_pass<float>(dy, pre, dy, zero, freq, phase);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(pigan, m) {
  m.def("film_forward(Tensor x, Tensor weight, Tensor? bias, Tensor freq, Tensor phase) -> Tensor");
  m.def("film_forward_pre(Tensor x, Tensor weight, Tensor? bias, Tensor freq, Tensor phase) -> (Tensor, Tensor)");
  m.def("film_sine_out(Tensor(a!) out, Tensor pre, Tensor freq, Tensor phase) -> ()");
  m.def("film_bwd_epilogue_(Tensor(a!) z, Tensor dy, Tensor freq, Tensor phase, Tensor? bias=None) -> (Tensor, Tensor)");
  m.def("film_bwd_pre_(Tensor(a!) dy, Tensor pre, Tensor freq, Tensor phase) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(pigan, CPU, m) {
  m.impl("film_forward", &film_forward);
  m.impl("film_forward_pre", &film_forward_pre);
  m.impl("film_sine_out", &film_sine_out);
  m.impl("film_bwd_epilogue_", &film_bwd_epilogue_);
  m.impl("film_bwd_pre_", &film_bwd_pre_);
}
