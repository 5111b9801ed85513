"""Inputs, float64 reference results and error measures shared by the FiLM-SIREN tests
(CPU/interpreter in test_film_siren.py, GPU in test_film_siren_gpu.py)."""
from __future__ import annotations

import torch

# Tolerances, as max |error| over max |reference| (y is in [-1, 1], so for y it is absolute), about
# 2-3x the largest error measured over several seeds (native fp32: y 2.6e-5, grads 6.2e-6; interpreter
# fp32: y 1.3e-5, grads 4.3e-6; interpreter fp16: y 2.5e-4, grads 4.5e-4; native bf16: y 2.0e-3, grads
# 3.1e-3). fp32's floor is the rounding of a sine argument of a few hundred (~1.5e-5: freq ~ 30
# multiplies the error of z); fp16/bf16's is half an ulp at 1 (the output's own rounding).
TOL = {
    "float32": {"y": 6e-5, "grad": 2e-5},
    "float16": {"y": 1e-3, "grad": 1.5e-3},
    "bfloat16": {"y": 5e-3, "grad": 8e-3},
    "tf32": {"y": 5e-2, "grad": 5e-2},
    "float64": {"y": 1e-12, "grad": 1e-11},
    # run_double_case: "y" bounds the first gradients, "grad" the second derivatives (fp32)
    "double": {"y": 2e-5, "grad": 1e-4},
}
GRAD_NAMES = ("x", "weight", "bias", "freq", "phase")


def make_inputs(B, N, K, H, dtype=torch.float32, bias=True, seed=0, device="cpu", freq_scale=4.0):
    """x in [-1, 1] (a sine layer's output), z = x W^T + b ~ N(0, 1), freq ~ 30 + noise as pi-GAN's
    frequencies (raw * 15 + 30), so the sine argument reaches a few hundred."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, N, K, generator=g, dtype=torch.float64) * 2 - 1
    w = torch.randn(H, K, generator=g, dtype=torch.float64) / K ** 0.5
    b = torch.randn(H, generator=g, dtype=torch.float64) * 0.5 if bias else None
    f = torch.randn(B, H, generator=g, dtype=torch.float64) * freq_scale + 30
    p = torch.randn(B, H, generator=g, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) if t is not None else None for t in (x, w, b, f, p)]


def split_parts(x, split):
    return (x[..., :split], x[..., split:]) if split else x


def reference(x, w, b, f, p, dy):
    """float64 forward and gradients of the reference twin (inputs taken at their own rounding)."""
    from pigan.ops import _film_siren
    leaves = [t.detach().double().requires_grad_() if t is not None else None for t in (x, w, b, f, p)]
    y = _film_siren(*leaves)
    grads = torch.autograd.grad(y, [t for t in leaves if t is not None], dy.double())
    return y.detach(), list(grads)


def rel_err(a, ref):
    return ((a.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def strided(layout, x, w, b, f, p):
    """The same values in non-contiguous layouts (leaves that are views of larger or permuted storage).
    layout: "+"-joined names of xT (x a transposed view), wT (W a transposed view), cols (freq and phase
    column slices of [B, 120] tensors: strides (120, 1)), bias2 (bias with stride 2)."""
    names = set(layout.split("+")) if layout else set()
    if "xT" in names:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    if "wT" in names:
        w = w.t().contiguous().t()
    if "cols" in names:
        wide = [torch.zeros(f.shape[0], 120, dtype=f.dtype, device=f.device) for _ in range(2)]
        wide[0][:, 5:5 + f.shape[1]] = f
        wide[1][:, 60:60 + p.shape[1]] = p
        f, p = wide[0][:, 5:5 + f.shape[1]], wide[1][:, 60:60 + p.shape[1]]
        assert f.stride() == (120, 1) and p.stride() == (120, 1)
    if "bias2" in names and b is not None:
        wide = torch.zeros(2 * b.shape[0], dtype=b.dtype, device=b.device)
        wide[::2] = b
        b = wide[::2]
    return x, w, b, f, p


def run_case(fn, B, N, K, H, dtype, bias=True, split=0, seed=0, device="cpu", ref_cast=None, layout=""):
    """Forward + backward of fn(x, w, b, f, p) vs the float64 reference -> dict of errors.
    ref_cast: the dtype autocast gives x, weight and bias (the reference starts from those roundings).
    layout: see strided(); "dy0" in it makes the cotangent an expanded [B, 1, H] (stride 0 along N),
    "dyT" a transposed view of a [B, H, N] tensor, "dy2" every other column of a [B, N, 2H] tensor."""
    x, w, b, f, p = strided(layout, *make_inputs(B, N, K, H, dtype, bias, seed, device))
    leaves = [t.requires_grad_() for t in (x, w, b, f, p) if t is not None]
    y = fn(split_parts(x, split), w, b, f, p)
    g = torch.Generator().manual_seed(seed + 1)
    names = layout.split("+")
    if "dy0" in names:
        dy = torch.randn(B, 1, H, generator=g, dtype=torch.float64).to(device=device, dtype=y.dtype)
        dy = dy.expand(y.shape)
    elif "dyT" in names:
        dy = torch.randn(B, H, N, generator=g, dtype=torch.float64).to(device=device, dtype=y.dtype)
        dy = dy.transpose(1, 2)
    elif "dy2" in names:
        dy = torch.randn(B, N, 2 * H, generator=g, dtype=torch.float64).to(device=device, dtype=y.dtype)
        dy = dy[..., ::2]
    else:
        dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(device=device, dtype=y.dtype)
    grads = torch.autograd.grad(y, leaves, dy)
    rx, rw, rb = (t.detach().to(ref_cast) if ref_cast and t is not None else t for t in (x, w, b))
    y_ref, g_ref = reference(rx, rw, rb, f, p, dy)
    names = [n for n, t in zip(GRAD_NAMES, (x, w, b, f, p)) if t is not None]
    return {
        "dtype": str(y.dtype).replace("torch.", ""),
        "y": rel_err(y, y_ref),
        "grads": {n: rel_err(a, r) for n, a, r in zip(names, grads, g_ref)},
        "finite": bool(torch.isfinite(y).all()) and all(bool(torch.isfinite(a).all()) for a in grads),
        "grad_dtypes_ok": all(a.dtype == t.dtype for a, t in zip(grads, leaves)),
    }


def run_double_case(fn, B, N, K, H, dtype, bias=True, split=0, seed=0, device="cpu"):
    """Double backward: first gradients with create_graph=True, then the gradient of a random linear
    form of them (as a gradient penalty takes) w.r.t. every input and the cotangent, against float64
    reference twin -> dict of errors ("y": first gradients, "grads": second)."""
    x, w, b, f, p = make_inputs(B, N, K, H, dtype, bias, seed, device)
    g = torch.Generator().manual_seed(seed + 7)

    def second(fn, ts, dt):
        ts = [t.detach().to(dt).requires_grad_() for t in ts]
        xx, ww, bb, ff, pp = (ts[0], ts[1], ts[2], ts[3], ts[4]) if bias else (ts[0], ts[1], None, ts[2], ts[3])
        y = fn(split_parts(xx, split), ww, bb, ff, pp)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        dy = dy.to(device=device, dtype=dt).requires_grad_()
        first = torch.autograd.grad(y, ts, dy, create_graph=True)
        vs = [torch.randn(t.shape, generator=torch.Generator().manual_seed(seed + 11 + i),
                          dtype=torch.float64).to(device=device, dtype=dt) for i, t in enumerate(first)]
        form = sum((a * v).sum() for a, v in zip(first, vs))
        return first, torch.autograd.grad(form, ts + [dy])

    from pigan.ops import _film_siren
    ts = [t for t in (x, w, b, f, p) if t is not None]
    first, sec = second(fn, ts, dtype)
    first_ref, sec_ref = second(_film_siren, ts, torch.float64)
    names = [n for n, t in zip(GRAD_NAMES, (x, w, b, f, p)) if t is not None] + ["dy"]
    return {
        "dtype": str(first[0].dtype).replace("torch.", ""),
        "y": max(rel_err(a, r) for a, r in zip(first, first_ref)),
        "grads": {n: rel_err(a, r) for n, a, r in zip(names, sec, sec_ref)},
        "finite": all(bool(torch.isfinite(a).all()) for a in (*first, *sec)),
        "grad_dtypes_ok": all(a.dtype == dtype for a in sec),
    }


def check(res, tol_key):
    tol = TOL[tol_key]
    assert res["finite"], res
    assert res["grad_dtypes_ok"], res
    assert res["y"] <= tol["y"], f"forward error {res['y']:.2e} > {tol['y']:.0e}: {res}"
    for name, e in res["grads"].items():
        assert e <= tol["grad"], f"d{name} error {e:.2e} > {tol['grad']:.0e}: {res}"
