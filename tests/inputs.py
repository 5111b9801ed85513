"""Input makers shared by the tests and the benchmarks (a plain module, so that both can import it:
tests as ``from inputs import ...``, benchmarks after putting tests/ on sys.path).

Every maker draws in float64 from its own seeded generator on the CPU, then rounds to ``dtype`` and
moves to ``device``: the same seed gives the same values on every device, and a reference computed in
float64 from the rounded inputs is the exact answer for them.
"""
from __future__ import annotations

import contextlib

import pytest
import torch


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def depths(B, R, S, seed=0, near=0.88, far=1.12):
    """Stratified depths as pi-GAN's ray sampler jitters them: sorted, [B, R, S, 1], float64."""
    z = torch.linspace(near, far, S, dtype=torch.float64).expand(B, R, S).clone()
    if S > 1:
        z = z + (torch.rand(B, R, S, generator=_gen(seed + 7), dtype=torch.float64) - 0.5) * (far - near) / (S - 1)
    return z[..., None]


def composite_inputs(B, R, S, C, dtype=torch.float32, device="cpu", seed=0, opaque=False):
    """rgb_sigma [B, R, S, C+1] (colours in [0, 1), densities ~ 3 N(0, 1) kept 0.2 away from relu's
    kink so that gradcheck is well defined) and z_vals [B, R, S, 1] in [0.88, 1.12].
    ``opaque``: alpha == 1 exactly in the middle of every ray (sigma = 1e4)."""
    g = _gen(seed)
    rgb = torch.rand(B, R, S, C, generator=g, dtype=torch.float64)
    sigma = torch.randn(B, R, S, 1, generator=g, dtype=torch.float64) * 3
    sigma = sigma + 0.2 * torch.sign(sigma)
    if opaque:
        sigma[:, :, S // 2] = 1e4
    rgb_sigma = torch.cat([rgb, sigma], -1)
    return rgb_sigma.to(dtype).to(device), depths(B, R, S, seed).to(dtype).to(device)


def bins_weights(N, M, dtype=torch.float32, device="cpu", seed=0, zero_rows=()):
    """bins [N, M+1] sorted in [0.88, 1.12] and weights [N, M] >= 0 (cubed uniforms: peaked rows);
    the rows in ``zero_rows`` have all-zero weights."""
    g = _gen(seed)
    bins = torch.sort(torch.rand(N, M + 1, generator=g, dtype=torch.float64), -1).values * 0.24 + 0.88
    weights = torch.rand(N, M, generator=g, dtype=torch.float64) ** 3
    weights[list(zero_rows)] = 0
    return bins.to(dtype).to(device), weights.to(dtype).to(device)


def coarse_and_fine(B, R, S1, S2, dtype=torch.float32, device="cpu", seed=0):
    """Coarse depths [B, R, S1, 1] (sorted, jittered, as pi-GAN) and fine depths [B, R, S2, 1] (from
    stratified importance sampling between the coarse midpoints: unsorted along the ray)."""
    g = _gen(seed)
    z = depths(B, R, S1, seed)[..., 0].to(dtype)
    if S1 < 3:
        fine = torch.rand(B, R, S2, generator=g, dtype=torch.float64).to(dtype) * 0.3 + 0.85
        return z[..., None].to(device), fine[..., None].to(device)
    from pigan.ops.sampling import _sample_pdf

    mids = 0.5 * (z[..., 1:] + z[..., :-1]).reshape(B * R, S1 - 1)
    w = torch.rand(B * R, S1 - 2, generator=g, dtype=torch.float64).to(dtype)
    fine = _sample_pdf(mids, w, S2, u=torch.rand(B * R, S2, generator=g, dtype=torch.float64).to(dtype))
    return z[..., None].to(device), fine.reshape(B, R, S2, 1).to(device)


def cotangents(outs, seed=0):
    """Random upstream gradients, float64, one per output (same shapes and device)."""
    g = _gen(seed + 1)
    return [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device) for o in outs]


def fwd_bwd(fn, rgb_sigma, z_vals, cot, *args):
    """(outputs, d<outputs, cot>/d rgb_sigma) of ``fn(rgb_sigma, z_vals, *args)``, in float64."""
    x = rgb_sigma.detach().clone().requires_grad_(True)
    outs = fn(x, z_vals, *args)
    sum((o.double() * c).sum() for o, c in zip(outs, cot)).backward()
    return [o.detach() for o in outs], x.grad


# Tolerances of a fast path against the float64 twin evaluated on the same (rounded) inputs. Half
# inputs accumulate in float32: only output rounding remains. CUDA's expf differs from the CPU's.
_TOL = {torch.float64: (1e-9, 1e-10), torch.float16: (1e-2, 1e-2), torch.bfloat16: (4e-2, 4e-2)}


def tol(dtype, device="cpu"):
    if dtype == torch.float32:
        rt = 2e-5 if torch.device(device).type == "cpu" else 1e-4
        return dict(rtol=rt, atol=rt)
    rt, at = _TOL[dtype]
    return dict(rtol=rt, atol=at)


def assert_close(actual, expected, **kw):
    """assert_close in float64 with NaN == NaN (inputs of different dtypes compared by value)."""
    torch.testing.assert_close(actual.double(), expected.double(), equal_nan=True, **kw)


@contextlib.contextmanager
def raises_on(backend, exc, match):
    """``pytest.raises(exc, match=match)`` with ``backend`` in force: the bad-input tests' frame."""
    from pigan import ops

    with ops.use_backend(backend), pytest.raises(exc, match=match):
        yield


def blocky_images(folder, count: int, size: int, seed: int = 0):
    """``count`` PNGs in ``folder`` (created): random 3x3 colour patterns scaled to size x size."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        arr = (rng.uniform(0, 1, (3, 3, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).resize((size, size), Image.Resampling.NEAREST).save(folder / f"{i:02d}.png")
    return folder
