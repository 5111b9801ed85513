"""FiLM-modulated sine layer: y = sin(freq * (x W^T + b) + phase), pi-GAN's FiLMLayer (docs/MODEL.md section 2).

``film_siren`` dispatches to the fastest backend; ``_film_siren`` is the pure-PyTorch reference twin.
``x`` may be one tensor [B, N, K] or a tuple of tensors [B, N, K_i] that stand for their concatenation
along the last dimension (the colour layer's cat([directions, features])): fast paths then never
store the concatenated copy for backward.

Backends (all save for backward only the input parts, weight, bias, freq and phase; the [B, N, H]
pre-activation is recomputed in backward):
- "triton" (pigan.kernels.film_siren): one GEMM kernel with bias, FiLM and sine in its epilogue;
  CUDA tensors, or CPU tensors under TRITON_INTERPRET=1. float64 is not a Triton dtype: it runs the
  native path below.
- "native": on CPU tensors the C++ ops of csrc/film_cpu.cpp (a row-blocked addmm whose blocks get the
  sine while still in cache; a one-pass backward epilogue). On CUDA tensors, and where pigan._C lacks
  these ops, cuBLAS addmm plus torch elementwise ops (the sine argument formed in fp32).
- "auto" on CUDA: Triton, except for IEEE float32 (TF32 off), which runs "native" (AUTO_NOTE; the
  table's ``prefer`` hook).

Each fast path is a _autograd.FastPath (_FiLMNative, _FiLMTriton) that supplies a forward and a
backward epilogue (dz, dfreq, dphase from a recomputed z); the backward's GEMMs, the bias gradient and
the split into parts are written once (_film_backward). _FiLMNative is also the autograd of the raw
torch.ops.pigan.film_forward (one part). Under create_graph=True the backward returns the reference
twin's gradients (_autograd.twin_grads), so second derivatives are exact on every backend.
Under torch.autocast the fast paths follow the autocast dtype as ``linear`` does (x, weight and bias
are cast; the result has the autocast dtype); freq and phase are read in fp32. The reference twin
keeps eager semantics. Outside autocast all tensors must share one dtype; under it x, weight and bias
must after that cast (a float64 weight is not cast, and then neither are the others): else TypeError.
"""
from __future__ import annotations

import torch

from pigan.kernels._runtime import cuda_fp32_matmul_precision

from . import _autograd, _backend
from ._checks import check_same_device, check_same_dtype, check_tensor

def _as_parts(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _check_film_args(x, weight, bias, freq, phase):
    parts = _as_parts(x)
    if not parts:
        raise ValueError("x must be a tensor or a non-empty tuple of tensors")
    for i, p in enumerate(parts):
        check_tensor("x" if len(parts) == 1 else f"x[{i}]", p, ndim=3)
        if p.shape[:2] != parts[0].shape[:2]:
            raise ValueError(f"x[{i}] must share the leading [B, N] dims {tuple(parts[0].shape[:2])}, "
                             f"got {tuple(p.shape)}")
    B, N = parts[0].shape[:2]
    K = sum(p.shape[-1] for p in parts)
    check_tensor("weight", weight, ndim=2)
    H = weight.shape[0]
    if weight.shape[1] != K:
        raise ValueError(f"weight must have shape [H, K] with K = {K} (the last dim of x), "
                         f"got {tuple(weight.shape)}")
    if bias is not None:
        check_tensor("bias", bias, ndim=1)
        if bias.shape[0] != H:
            raise ValueError(f"bias must have shape [{H}], got {tuple(bias.shape)}")
    for name, t in (("freq", freq), ("phase", phase)):
        check_tensor(name, t, ndim=2)
        if tuple(t.shape) != (B, H):
            raise ValueError(f"{name} must have shape [B, H] = [{B}, {H}], got {tuple(t.shape)}")
    check_same_device(**{f"x{i}": p for i, p in enumerate(parts)}, weight=weight, bias=bias,
                      freq=freq, phase=phase)
    return parts


def _film_siren(x, weight, bias, freq, phase):
    """Reference twin: eager PyTorch, as pi-GAN's FiLMLayer computes it."""
    _check_film_args(x, weight, bias, freq, phase)
    return _film_siren_impl(x, weight, bias, freq, phase)


def _film_siren_impl(x, weight, bias, freq, phase):
    parts = _as_parts(x)
    x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    y = torch.nn.functional.linear(x, weight, bias)                 # [B, N, H]
    freq = freq.unsqueeze(1).expand_as(y)
    phase = phase.unsqueeze(1).expand_as(y)
    return torch.sin(freq * y + phase)


def _autocast_dtype(device_type: str):
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def film_siren(x, weight, bias, freq, phase):
    """FiLM-SIREN layer. x [B, N, K] (or a tuple of parts), weight [H, K], bias [H] or None,
    freq and phase [B, H] (broadcast over the N points) -> y [B, N, H]."""
    parts = _check_film_args(x, weight, bias, freq, phase)
    if _autocast_dtype(parts[0].device.type) is None:
        check_same_dtype(**{f"x{i}": p for i, p in enumerate(parts)}, weight=weight, bias=bias,
                         freq=freq, phase=phase)
    else:
        # The GEMM operands as _cast_for_autocast will leave them (dtype-only: nothing is cast twice):
        # a float64 weight is not cast, so fp32 x with it would otherwise fail inside the GEMM.
        cast = _autocast_target(parts[0].device.type, weight)
        check_same_dtype(**{f"x{i}": _dtype_probe(p, cast) for i, p in enumerate(parts)},
                         weight=_dtype_probe(weight, cast), bias=_dtype_probe(bias, cast))
    return FILM.run(parts[0].device, x, weight, bias, freq, phase)


# What "auto" does per precision where it would pick Triton (see available_backends()).
AUTO_NOTE = ("film_siren under auto: Triton for float16/bfloat16 and TF32 float32; native (cuBLAS addmm + "
             "torch elementwise) for IEEE float32, where Triton's tl.dot becomes an FMA loop")


def _auto_prefers(name, device, x, weight, bias, freq, phase):
    """FILM's ``prefer`` hook: "auto" leaves IEEE float32 (no TF32) to the native path where it would
    pick Triton, as cuBLAS runs fp32 GEMMs far faster than Triton's FMA-loop dot."""
    if name != "triton":
        return name
    dtype = _autocast_target(device.type, weight) or weight.dtype
    return "native" if dtype == torch.float32 and cuda_fp32_matmul_precision() == "ieee" else name


def _autocast_target(device_type: str, weight):
    """The dtype _cast_for_autocast gives the GEMM operands, or None (no autocast, or a float64 weight,
    which autocast leaves alone)."""
    dt = _autocast_dtype(device_type)
    return None if dt is None or weight.dtype == torch.float64 else dt


def _dtype_probe(t, dtype):
    """An empty stand-in with the dtype t will have after the cast (for check_same_dtype)."""
    if t is None or dtype is None:
        return t
    return t.new_empty(0, dtype=dtype)


def _cast_for_autocast(parts, weight, bias):
    """Cast the GEMM operands like autocast casts ``linear``'s (float64 is left alone, as autocast does)."""
    dt = _autocast_target(parts[0].device.type, weight)
    if dt is None:
        return parts, weight, bias
    parts = tuple(p.to(dt) for p in parts)
    return parts, weight.to(dt), (bias.to(dt) if bias is not None else None)


def _cat(parts):
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


_CPU_OPS = ("film_forward", "film_forward_pre", "film_sine_out", "film_bwd_epilogue_", "film_bwd_pre_")


def _has_cpu_ops() -> bool:
    return all(hasattr(torch.ops.pigan, n) for n in _CPU_OPS)


def _cpu_ops_available() -> bool:
    """Whether pigan._C (loaded) carries csrc/film_cpu.cpp's ops."""
    return _backend.native_module() is not None and _has_cpu_ops()


def _fused_cpu(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and _cpu_ops_available()


def _film_arg(z, freq, phase):
    """freq * z + phase for z [B, N, H] (fp32 or float64) and freq/phase [B, H]."""
    return torch.addcmul(phase.to(z.dtype).unsqueeze(1), z, freq.to(z.dtype).unsqueeze(1))


def _preactivation(x2, weight, bias):
    """z = x2 W^T + b [M, H] with fp32 (float64) results even for half/bfloat16 operands: the sine
    argument freq * z + phase must not see a z rounded to 8 bits of mantissa."""
    if x2.dtype in (torch.float32, torch.float64):
        return torch.addmm(bias, x2, weight.t()) if bias is not None else x2.mm(weight.t())
    z = None
    if x2.is_cuda:
        try:  # cuBLAS low-precision GEMM with an fp32 result (torch >= 2.8)
            z = torch.mm(x2, weight.t(), out_dtype=torch.float32)
        except (TypeError, RuntimeError):
            z = None
    if z is None:
        z = x2.float().mm(weight.float().t())
    return z + bias.float() if bias is not None else z


def _native_forward(x, weight, bias, freq, phase):
    """y [B, N, H] in x's dtype: the fused C++ op on CPU, addmm + torch elementwise elsewhere."""
    B, N, K = x.shape
    H = weight.shape[0]
    if _fused_cpu(x):
        return torch.ops.pigan.film_forward(x, weight, bias, freq, phase)
    z = _preactivation(x.reshape(B * N, K), weight, bias).view(B, N, H)
    return torch.addcmul(phase.unsqueeze(1).to(z.dtype), z, freq.unsqueeze(1).to(z.dtype),
                         out=z).sin_().to(x.dtype)


def _native_epilogue(x, weight, bias, freq, phase, dy):
    """(dz [B, N, H], dfreq [B, H], dphase [B, H]) from a recomputed z. On CPU dz is fp32 (float64) even
    for half/bfloat16 layers, as the C++ epilogue works in its accumulation dtype."""
    B, N, K = x.shape
    H = weight.shape[0]
    x2 = x.reshape(B * N, K)
    if _fused_cpu(x):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        b = bias.to(acc) if bias is not None else None
        # The bias goes into the epilogue: addmm would first broadcast it over all of z.
        z = x2.to(acc).mm(weight.to(acc).t()).view(B, N, H)
        dfreq, dphase = torch.ops.pigan.film_bwd_epilogue_(z, dy, freq, phase, b)
        return z, dfreq, dphase                                         # z holds dz now
    z = _preactivation(x2, weight, bias).view(B, N, H)                  # fp32 or float64
    g = dy.to(z.dtype) * torch.cos(_film_arg(z, freq, phase))
    return (g * freq.to(g.dtype).unsqueeze(1)).to(x.dtype), (g * z).sum(1), g.sum(1)


def _triton_forward(x, weight, bias, freq, phase):
    from pigan.kernels import film_siren as kernels  # imports triton: only when this backend runs
    return kernels.film_fwd(x, weight, bias, freq, phase)


def _triton_epilogue(x, weight, bias, freq, phase, dy):
    from pigan.kernels import film_siren as kernels
    return kernels.film_bwd_epilogue(x, weight, bias, freq, phase, dy)


def _film_backward(epilogue, needs, dy, parts, weight, bias, freq, phase):
    """Gradients (*parts, weight, bias, freq, phase) of a fast path's layer for the cotangent dy.

    ``epilogue`` (the path's) gives dz = dy * cos(arg) * freq and the per-sample sums dfreq, dphase;
    the GEMMs run in dz's dtype: dW = dz^T x, dx = dz W; db = sum over points of dz = sum_b freq[b] *
    dphase[b].
    """
    x = _cat(parts)
    B, N, K = x.shape
    H = weight.shape[0]
    need_parts, (need_w, need_b, need_f, need_p) = needs[:-4], needs[-4:]
    with torch.autocast(x.device.type, enabled=False):              # the GEMMs keep dz's dtype
        dz, dfreq, dphase = epilogue(x, weight, bias, freq, phase, dy)
        dz2 = dz.reshape(B * N, H)
        dweight = dbias = None
        if need_w:
            dweight = dz2.t().mm(x.reshape(B * N, K).to(dz.dtype)).to(weight.dtype)
        if bias is not None and need_b:
            dbias = (freq.to(dphase.dtype) * dphase).sum(0).to(bias.dtype)
        dparts = [None] * len(parts)
        if any(need_parts):
            dx = dz2.mm(weight.to(dz.dtype)).view(B, N, K).to(x.dtype)
            dparts = list(torch.split(dx, [p.shape[-1] for p in parts], dim=-1)) if len(parts) > 1 else [dx]
    return (*dparts, dweight, dbias, dfreq.to(freq.dtype) if need_f else None,
            dphase.to(phase.dtype) if need_p else None)


def _film_twin(*inputs):
    *parts, weight, bias, freq, phase = inputs
    return _film_siren_impl(tuple(parts), weight, bias, freq, phase)


def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _film_grads(ctx, dy, epilogue):
    """The backward of the fast paths' Functions, whose inputs are (*parts, weight, bias, freq, phase)."""
    inputs = ctx.saved_tensors
    if torch.is_grad_enabled():
        with torch.autocast(dy.device.type, enabled=False):
            return _autograd.twin_grads(_film_twin, inputs, ctx.needs_input_grad, (dy,))
    *parts, weight, bias, freq, phase = inputs
    return _film_backward(epilogue, ctx.needs_input_grad, dy, parts, weight, bias, freq, phase)


def _fast_path(name: str, forward, epilogue, doc: str):
    """The Function of one fast path: inputs (*parts, weight, bias, freq, phase), ``forward`` gives y
    and ``epilogue`` the backward's dz, dfreq, dphase."""
    def compute(*inputs):
        *parts, weight, bias, freq, phase = inputs
        return forward(_cat(parts), weight, bias, freq, phase)

    def backward(ctx, dy):
        return _film_grads(ctx, dy, epilogue)

    return type(name, (_autograd.FastPath,), {"__doc__": doc, "compute": staticmethod(compute),
                                             "save": staticmethod(_save_inputs),
                                             "backward": staticmethod(backward)})


# The native path is registered on torch.ops.pigan.film_forward as well: that op is it with one part.
_FiLMNative = _fast_path("_FiLMNative", _native_forward, _native_epilogue, "The native path of film_siren.")
_FiLMTriton = _fast_path("_FiLMTriton", _triton_forward, _triton_epilogue, "The Triton path of film_siren.")


def _film_pre_twin(x, weight, bias, freq, phase):
    z = torch.nn.functional.linear(x, weight, bias)                 # [B, N, H]
    return torch.sin(freq.unsqueeze(1) * z + phase.unsqueeze(1)), z


class _FiLMForwardPre(_autograd.FastPath):
    """torch.ops.pigan.film_forward_pre (y and the pre-activation z) and its autograd (registered on
    the op): the second output makes the twin's recomputed gradients the simpler backward."""

    @staticmethod
    def compute(x, weight, bias, freq, phase):
        return torch.ops.pigan.film_forward_pre(x, weight, bias, freq, phase)

    save = staticmethod(_save_inputs)

    @staticmethod
    def backward(ctx, dy, dz):
        return _autograd.twin_grads(_film_pre_twin, ctx.saved_tensors, ctx.needs_input_grad, (dy, dz))


@_backend.when_native_loaded
def _register_native():
    # Fake kernels (shapes for torch.compile / FakeTensor tracing of the native CPU path) and the
    # autograd of the two forward ops. The others are backward passes that write in place. This runs
    # inside pigan._C's loading (native_module() would re-enter it): ask torch.ops directly.
    if not _has_cpu_ops():
        return

    def film_forward_fake(x, weight, bias, freq, phase):
        return x.new_empty((x.shape[0], x.shape[1], weight.shape[0]))

    def film_forward_pre_fake(x, weight, bias, freq, phase):
        y = film_forward_fake(x, weight, bias, freq, phase)
        return y, torch.empty_like(y)

    def film_sine_out_fake(out, pre, freq, phase):
        return None

    def sums_fake(z, dy, freq, phase, bias=None):
        return z.new_empty((z.shape[0], z.shape[2])), z.new_empty((z.shape[0], z.shape[2]))

    for name, fn in (("film_forward", film_forward_fake), ("film_forward_pre", film_forward_pre_fake),
                     ("film_sine_out", film_sine_out_fake), ("film_bwd_epilogue_", sums_fake),
                     ("film_bwd_pre_", sums_fake)):
        _backend.register_fake(f"pigan::{name}", fn)
    _autograd.register_autograd("pigan::film_forward", _FiLMNative)
    _autograd.register_autograd("pigan::film_forward_pre", _FiLMForwardPre)


def _film_native(x, weight, bias, freq, phase):
    parts, weight, bias = _cast_for_autocast(_as_parts(x), weight, bias)
    with torch.autocast(parts[0].device.type, enabled=False):
        return _FiLMNative.apply(*parts, weight, bias, freq, phase)


def _film_triton(x, weight, bias, freq, phase):
    parts, weight, bias = _cast_for_autocast(_as_parts(x), weight, bias)
    # float64 is not a Triton dtype: it runs the native path.
    path = _FiLMNative if weight.dtype == torch.float64 else _FiLMTriton
    if path is _FiLMTriton and bias is not None and bias.stride(0) != 1:
        bias = bias.contiguous()                                        # the kernels index bias[h]
    with torch.autocast(parts[0].device.type, enabled=False):
        return path.apply(*parts, weight, bias, freq, phase)


FILM = _backend.Op("film_siren", reference=_film_siren_impl, native=_film_native, triton=_film_triton,
                   prefer=_auto_prefers)
_backend.add_note("triton", AUTO_NOTE)
