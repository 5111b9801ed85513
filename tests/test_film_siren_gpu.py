"""pigan.ops.film_siren on CUDA: the real Triton kernels (plain and autotuned launches) and the
native path against the float64 reference twin, every precision. Needs a GPU (marker `gpu`)."""
from __future__ import annotations

import pytest
import torch

from film_inputs import GRAD_NAMES, TOL, check, make_inputs, reference, rel_err, run_case

gpu = pytest.mark.gpu                   # skipped without CUDA by tests/conftest.py

GPU_SHAPES = [(1, 1, 3, 32, 0), (3, 129, 259, 256, 3), (2, 1000, 256, 256, 0), (2, 4099, 3, 256, 0),
              (1, 70000, 256, 256, 0)]


@pytest.fixture
def tf32_switch():
    old = torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@gpu
@pytest.mark.parametrize("backend", ["triton", "native"])
@pytest.mark.parametrize("prec", ["float32", "tf32", "bfloat16", "float16"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: "x".join(map(str, s[:4])))
def test_gpu_matches_reference(tf32_switch, backend, prec, shape):
    from pigan.kernels import film_siren as K
    from pigan.ops import film_siren, use_backend
    B, N, Kd, H, split = shape
    torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
    dtype = torch.float32 if prec == "tf32" else getattr(torch, prec)
    K.POISON = True
    try:
        def fn(*a):
            with use_backend(backend):
                return film_siren(*a)
        res = run_case(fn, B, N, Kd, H, dtype, True, split, device="cuda")
    finally:
        K.POISON = False
    check(res, prec)


# Autotuned launches (N >= 4096 points per sample): (B, N, K, H, split, bias, layout). H = 97 and 200
# are not multiples of any BLOCK_N; the layouts give strided, transposed and stride-0 cotangents.
AUTOTUNED = [
    (2, 4099, 3, 256, 0, True, ""),
    (3, 5000, 256, 97, 0, False, ""),
    (2, 8192, 259, 200, 3, True, "dyT"),
    (2, 4096, 256, 256, 0, False, "dy0"),
    (2, 6000, 64, 130, 0, True, "dy2+xT+wT+cols+bias2"),
]


@gpu
@pytest.mark.parametrize("prec", ["bfloat16", "float16", "tf32", "float32"])
@pytest.mark.parametrize("case", AUTOTUNED, ids=lambda c: "x".join(map(str, c[:4])) + f"-b{int(c[5])}-{c[6] or 'dense'}")
def test_gpu_autotuned_matches_reference(tf32_switch, prec, case):
    from pigan.kernels import film_siren as K
    from pigan.ops import film_siren, use_backend
    B, N, Kd, H, split, bias, layout = case
    torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
    dtype = torch.float32 if prec == "tf32" else getattr(torch, prec)
    x = torch.empty(B, N, Kd, device="cuda", dtype=dtype)
    assert K._fixed_config(N, Kd, H, x) is None                        # the autotuner's path
    K.POISON = True
    try:
        def fn(*a):
            with use_backend("triton"):
                return film_siren(*a)
        res = run_case(fn, B, N, Kd, H, dtype, bias, split, device="cuda", layout=layout)
    finally:
        K.POISON = False
    check(res, prec)
    assert K._film_fwd_kernel.cache and K._film_bwd_kernel.cache      # autotuned configs were chosen
    limit = K.smem_limit(x.device)
    for kern in (K._film_fwd_kernel, K._film_bwd_kernel):
        for cfg in kern.cache.values():
            assert K._config_smem(cfg, x.element_size()) <= limit, cfg


@gpu
def test_gpu_auto_backend_per_precision(tf32_switch):
    """auto: IEEE fp32 runs native (cuBLAS), TF32 and bf16 run Triton; available_backends says so."""
    from pigan import ops
    from pigan.ops import film
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")

    def chosen(dtype):
        return film.FILM.select(dev, *make_inputs(1, 2, 3, 4, dtype, device="cuda"))[0]
    assert chosen(torch.float32) == "native"
    assert chosen(torch.bfloat16) == "triton"
    torch.backends.cuda.matmul.allow_tf32 = True
    assert chosen(torch.float32) == "triton"
    assert film.AUTO_NOTE in ops.available_backends()["triton"]["notes"]


@gpu
@pytest.mark.parametrize("ac_dtype", ["bfloat16", "float16"])
def test_gpu_autocast(ac_dtype):
    from pigan.ops import film_siren, use_backend
    x, w, b, f, p = make_inputs(2, 3000, 259, 256, torch.float32, device="cuda")
    leaves = [t.requires_grad_() for t in (x, w, b, f, p)]
    dt = getattr(torch, ac_dtype)
    with torch.autocast("cuda", dtype=dt), use_backend("triton"):
        y = film_siren((x[..., :3], x[..., 3:]), w, b, f, p)
    assert y.dtype == dt
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, dy)
    assert all(a.dtype == torch.float32 for a in grads)
    low = [t.detach().to(dt) for t in (x, w, b)]
    y_ref, g_ref = reference(low[0], low[1], low[2], f.detach(), p.detach(), dy)
    assert rel_err(y, y_ref) <= TOL[ac_dtype]["y"]
    for name, a, r in zip(GRAD_NAMES, grads, g_ref):
        assert rel_err(a, r) <= TOL[ac_dtype]["grad"], name

