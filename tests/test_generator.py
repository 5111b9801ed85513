"""pigan.generators.ImplicitGenerator3d: pi-GAN's pass (RNG order and formulas), fast backends vs
reference with fixed cameras, gradients, staged_forward, truncation, lock_view_dependence."""
import copy
import math

import pytest
import torch

from conftest import assert_close_scaled, assert_fast_as_accurate, fast_cpu_backends, scaled_error
from pigan import ops
from pigan.generators import ImplicitGenerator3d, cam2world_from_angles
from pigan.siren import SPATIALSIRENBASELINE, TALLSIREN

META = dict(img_size=6, fov=12, ray_start=0.88, ray_end=1.12, num_steps=5, h_stddev=0.3,
            v_stddev=0.155, h_mean=math.pi / 2, v_mean=math.pi / 2, hierarchical_sample=True,
            sample_dist="gaussian", clamp_mode="relu")


def make_gen(cls=SPATIALSIRENBASELINE, seed=0, hidden=16, z_dim=8):
    torch.manual_seed(seed)
    return ImplicitGenerator3d(cls, z_dim, hidden_dim=hidden)


def pigan_forward(g, z, img_size, fov, ray_start, ray_end, num_steps, h_stddev, v_stddev, h_mean,
                  v_mean, hierarchical_sample, sample_dist, nerf_noise, clamp_mode="relu",
                  white_back=False, last_back=False, lock_view_dependence=False, **_):
    """pi-GAN's ImplicitGenerator3d.forward transcribed step by step (homogeneous bmm transform,
    noise drawn by every composite even at std 0, torch.sort merge) on the reference twins."""
    B = z.shape[0]
    R = img_size * img_size
    with torch.no_grad():
        points, z_vals, dirs = ops.get_initial_rays_trig(B, num_steps, "cpu", fov, (img_size, img_size),
                                                         ray_start, ray_end)
        spacing = z_vals[:, :, 1:2] - z_vals[:, :, 0:1]
        offset = (torch.rand(z_vals.shape) - 0.5) * spacing
        z_vals = z_vals + offset
        points = points + offset * dirs.unsqueeze(2)
        origin, pitch, yaw = ops.sample_camera_positions(
            n=B, r=1, horizontal_stddev=h_stddev, vertical_stddev=v_stddev, horizontal_mean=h_mean,
            vertical_mean=v_mean, device="cpu", mode=sample_dist)
        c2w = ops.create_cam2world_matrix(ops.normalize_vecs(-origin), origin)
        hom = torch.ones(B, R, num_steps, 4)
        hom[..., :3] = points
        wp = torch.bmm(c2w, hom.reshape(B, -1, 4).permute(0, 2, 1)).permute(0, 2, 1)[..., :3]
        wp = wp.reshape(B, R * num_steps, 3)
        wd = torch.bmm(c2w[:, :3, :3], dirs.reshape(B, -1, 3).permute(0, 2, 1)).permute(0, 2, 1)
        ho = torch.zeros(B, 4, R)
        ho[:, 3] = 1
        wo = torch.bmm(c2w, ho).permute(0, 2, 1)[..., :3]
        dexp = wd.unsqueeze(-2).expand(-1, -1, num_steps, -1).reshape(B, R * num_steps, 3)
        if lock_view_dependence:
            dexp = torch.zeros_like(dexp)
            dexp[..., -1] = -1
    with ops.use_backend("reference"):                                # the oracle: reference twins only
        coarse = g.siren(wp, z, ray_directions=dexp).reshape(B, R, num_steps, 4)

    def integrate(out, zv, **kw):
        noise = torch.randn(out[..., 3:].shape) * nerf_noise
        return ops._composite(out, zv, noise, clamp_mode=clamp_mode, **kw)

    if hierarchical_sample:
        with torch.no_grad():
            _, _, w = integrate(coarse, z_vals)
            w = w.reshape(B * R, num_steps) + 1e-5
            zf = z_vals.reshape(B * R, num_steps)
            mids = 0.5 * (zf[:, :-1] + zf[:, 1:])
            fine_z = ops._sample_pdf(mids, w[:, 1:-1], num_steps, det=False).reshape(B, R, num_steps, 1)
            fp = (wo.unsqueeze(2) + wd.unsqueeze(2) * fine_z.expand(-1, -1, -1, 3)).reshape(B, -1, 3)
        with ops.use_backend("reference"):
            fine = g.siren(fp, z, ray_directions=dexp).reshape(B, R, num_steps, 4)
        all_out = torch.cat([fine, coarse], -2)
        all_z = torch.cat([fine_z, z_vals], -2)
        _, idx = torch.sort(all_z, dim=-2)
        all_z = torch.gather(all_z, -2, idx)
        all_out = torch.gather(all_out, -2, idx.expand(-1, -1, -1, 4))
    else:
        all_out, all_z = coarse, z_vals
    rgb, _, _ = integrate(all_out, all_z, white_back=white_back, last_back=last_back)
    pixels = rgb.reshape(B, img_size, img_size, 3).permute(0, 3, 1, 2).contiguous() * 2 - 1
    return pixels, torch.cat([pitch, yaw], -1)


@pytest.mark.parametrize("cls,options", [
    (SPATIALSIRENBASELINE, dict(nerf_noise=0.5, last_back=True)),
    (SPATIALSIRENBASELINE, dict(nerf_noise=0.0)),                    # pi-GAN still draws the noise
    (TALLSIREN, dict(nerf_noise=0.3, white_back=True, sample_dist="spherical_uniform")),
    (TALLSIREN, dict(nerf_noise=0.3, hierarchical_sample=False, lock_view_dependence=True)),
])
def test_forward_is_pigans_pass_under_reference_backend(cls, options):
    g = make_gen(cls)
    z = torch.randn(2, 8)
    meta = {**META, **options}
    torch.manual_seed(11)
    with ops.use_backend("reference"):
        pixels, pose = g(z, **meta)
    torch.manual_seed(11)
    want_pixels, want_pose = pigan_forward(g, z, **meta)
    assert pixels.shape == (2, 3, 6, 6) and pose.shape == (2, 2)
    torch.testing.assert_close(pose, want_pose, rtol=0, atol=0)
    torch.testing.assert_close(pixels, want_pixels, rtol=1e-5, atol=1e-5)
    # The RNG streams end in the same place: pi-GAN's draw order was followed exactly.
    torch.manual_seed(11)
    with ops.use_backend("reference"):
        g(z, **meta)
    a = torch.rand(4)
    torch.manual_seed(11)
    pigan_forward(g, z, **meta)
    torch.testing.assert_close(a, torch.rand(4), rtol=0, atol=0)


def test_output_range_shapes_and_gradients_reach_every_parameter():
    g = make_gen()
    z = torch.randn(3, 8)
    pixels, pose = g(z, **{**META, "nerf_noise": 1.0, "white_back": True})
    assert pixels.shape == (3, 3, 6, 6) and pose.shape == (3, 2)
    assert pixels.min() >= -1 and pixels.max() <= 1 + 1e-6   # white_back keeps rgb in [0, 1]
    pixels.square().mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backend", fast_cpu_backends())
def test_fast_backend_equals_reference_with_fixed_cameras(backend):
    g = make_gen(hidden=32)
    z = torch.randn(2, 8)
    cot = torch.randn(2, 3, 7, 7)
    kw = dict(pitch=torch.tensor([[1.4], [1.7]]), yaw=torch.tensor([[1.3], [1.9]]), img_size=7,
              num_steps=6, jitter=False, nerf_noise=0.0, last_back=True)

    def run(gen, name, dtype):
        gen.zero_grad()
        torch.manual_seed(5)                                          # same sample_pdf uniforms
        with ops.use_backend(name):
            out = gen.render(z.to(dtype), **kw)
        (out["pixels"] * cot.to(dtype)).sum().backward()
        return {**{k: out[k].detach() for k in ("pixels", "depth", "weights")},
                **{k: p.grad.clone() for k, p in gen.named_parameters()}}

    exact = run(copy.deepcopy(g).double(), "reference", torch.float64)
    ref, fast = run(g, "reference", torch.float32), run(g, backend, torch.float32)
    assert_fast_as_accurate(exact, ref, fast, backend, ref_tol=5e-4)


def test_render_explicit_cameras_and_pose_api_agree():
    g = make_gen()
    z = torch.randn(2, 8)
    pitch, yaw = torch.tensor([[1.5], [1.6]]), torch.tensor([[1.2], [2.0]])
    kw = dict(img_size=5, num_steps=4, jitter=False)
    torch.manual_seed(0)
    a = g.render(z, pitch=pitch, yaw=yaw, **kw)
    torch.manual_seed(0)
    b = g.render(z, cam2world=cam2world_from_angles(pitch, yaw), **kw)
    torch.testing.assert_close(a["pixels"], b["pixels"], rtol=0, atol=0)
    # With fixed cameras, no jitter, no noise and no importance sampling the render is deterministic.
    c = g.render(z, pitch=pitch, yaw=yaw, hierarchical_sample=False, **kw)
    d = g.render(z, pitch=pitch, yaw=yaw, hierarchical_sample=False, **kw)
    torch.testing.assert_close(c["pixels"], d["pixels"], rtol=0, atol=0)
    assert a["depth"].shape == (2, 5, 5) and a["weights"].shape == (2, 25, 8, 1)
    with pytest.raises(ValueError, match="cam2world"):
        g.render(z, **kw)
    with pytest.raises(ValueError, match="cam2world"):
        g.render(z, cam2world=torch.eye(4)[None], **kw)


def test_staged_forward_is_chunked_forward_with_truncation():
    g = make_gen()
    z = torch.randn(2, 8)
    meta = {**META, "nerf_noise": 0.0, "last_back": True}
    torch.manual_seed(3)
    pixels, depth = g.staged_forward(z, psi=1, max_batch_size=37, **meta)   # 6*6*5 = 180 points/pass
    torch.manual_seed(3)
    g.generate_avg_frequencies()
    f, p = g.siren.mapping_network(z)
    with torch.no_grad():
        want, _ = g.forward_with_frequencies(f, p, **meta)
    assert pixels.device.type == "cpu" and depth.shape == (2, 6, 6)
    torch.testing.assert_close(pixels, want, rtol=1e-5, atol=1e-5)
    assert ((depth > 0.8) & (depth < 1.2)).float().mean() > 0.5        # depth lies in the ray range
    # psi = 0 maps every z to the average: identical images for different z (fixed camera, no jitter).
    p0 = g.render(torch.randn(2, 8), psi=0, pitch=1.5, yaw=1.6, img_size=5, num_steps=4, jitter=False,
                  hierarchical_sample=False)["pixels"]
    torch.testing.assert_close(p0[0], p0[1], rtol=1e-6, atol=1e-6)
    p1 = g.render(torch.randn(2, 8), psi=1, pitch=1.5, yaw=1.6, img_size=5, num_steps=4, jitter=False,
                  hierarchical_sample=False)["pixels"]
    assert (p1[0] - p1[1]).abs().max() > 1e-3


def test_lock_view_dependence_feeds_constant_directions():
    g = make_gen()
    seen = []
    orig = g.siren.forward_with_frequencies_phase_shifts

    def spy(x, f, p, ray_directions, **kw):
        seen.append(ray_directions.clone())
        return orig(x, f, p, ray_directions, **kw)

    g.siren.forward_with_frequencies_phase_shifts = spy
    z = torch.randn(2, 8)
    g.render(z, pitch=1.3, yaw=1.9, img_size=4, num_steps=3, lock_view_dependence=True)
    assert len(seen) == 2
    for d in seen:
        torch.testing.assert_close(d, torch.tensor([0.0, 0.0, -1.0]).expand_as(d), rtol=0, atol=0)
    seen.clear()
    g.render(z, pitch=1.3, yaw=1.9, img_size=4, num_steps=3)
    assert not torch.allclose(seen[0], torch.tensor([0.0, 0.0, -1.0]).expand_as(seen[0]))
    torch.testing.assert_close(seen[0].norm(dim=-1), torch.ones(seen[0].shape[:2]))


def test_options_and_builders():
    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, mapping_hidden_layers=4, batch_size=3)
    assert g.config == {"siren": "TALLSIREN", "z_dim": 8, "hidden_dim": 8, "mapping_hidden_layers": 4}
    assert "siren.mapping_network.network.8.weight" in g.state_dict()
    with pytest.raises(ValueError, match="siren"):
        ImplicitGenerator3d("NOSIREN", 8)
    g.set_device("cpu")
    assert g.avg_frequencies.shape == (1, 9 * 8 * 2 // 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fast_path_matches_reference(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)   # fp32 GEMMs, as the CPU's
    g = make_gen(hidden=64).cuda()
    z = torch.randn(2, 8, device="cuda")
    cot = torch.randn(2, 3, 16, 16, device="cuda")
    kw = dict(pitch=torch.tensor([[1.4], [1.7]]), yaw=torch.tensor([[1.3], [1.9]]), img_size=16,
              num_steps=8, jitter=False, nerf_noise=0.0, last_back=True)

    def run(gen, name, dtype, **extra):
        gen.zero_grad()
        torch.manual_seed(5)                                          # same CUDA sample_pdf uniforms
        with ops.use_backend(name):
            out = gen.render(z.to(dtype), **kw, **extra)
        (out["pixels"] * cot.to(dtype)).sum().backward()
        return {**{k: out[k].detach() for k in ("pixels", "depth")},
                **{k: p.grad.clone() for k, p in gen.named_parameters()}}

    g64 = copy.deepcopy(g).double()
    for extra in ({"hierarchical_sample": False}, {}):
        exact = run(g64, "reference", torch.float64, **extra)
        ref, fast = run(g, "reference", torch.float32, **extra), run(g, "auto", torch.float32, **extra)
        for k in exact:
            # As the CPU test: the fast path is as accurate as pi-GAN's fp32 computation, both measured
            # against the float64 oracle (TF32 is off: torch's default for matmuls, which Triton follows).
            ref_err = scaled_error(ref[k], exact[k])
            assert ref_err <= 5e-4, f"reference {k} {extra}: fp32 error {ref_err:.2e}"
            assert_close_scaled(fast[k], exact[k], 2 * ref_err + 1e-5, f"cuda auto {k} {extra}")
    # The GPU render agrees with the CPU float64 oracle where no random numbers are involved, as
    # closely as the CPU fp32 reference does.
    cpu = copy.deepcopy(g).cpu()
    cpu64 = copy.deepcopy(cpu).double()
    with torch.no_grad(), ops.use_backend("reference"):
        want = cpu64.render(z.cpu().double(), hierarchical_sample=False, **kw)["pixels"]
        ref32 = cpu.render(z.cpu(), hierarchical_sample=False, **kw)["pixels"]
    with torch.no_grad():
        got = g.render(z, hierarchical_sample=False, **kw)["pixels"].cpu()
    assert_close_scaled(got, want, 2 * scaled_error(ref32, want) + 1e-5, "cuda vs cpu float64")


@pytest.mark.gpu
def test_generator_forward_backward_cuda_matches_reference():
    torch.manual_seed(0)
    gen = ImplicitGenerator3d(SPATIALSIRENBASELINE, 16, hidden_dim=32).cuda()
    z = torch.randn(2, 16, device="cuda")
    meta = dict(img_size=16, fov=12, ray_start=0.88, ray_end=1.12, num_steps=12, h_stddev=0.3,
                v_stddev=0.155, h_mean=math.pi / 2, v_mean=math.pi / 2, hierarchical_sample=True,
                sample_dist="gaussian", clamp_mode="relu", nerf_noise=0.5)

    def step(backend):
        gen.zero_grad()
        torch.manual_seed(1)
        with ops.use_backend(backend):
            img, pose = gen(z, **meta)
            img.square().mean().backward()
        return img.detach(), [p.grad.detach().clone() for p in gen.parameters() if p.grad is not None]

    ref_img, ref_grads = step("reference")
    nat_img, nat_grads = step("native")
    # film_siren runs on Triton under both "native" and auto (TF32 matmuls): ~1e-3 relative per layer.
    torch.testing.assert_close(nat_img, ref_img, rtol=1e-2, atol=1e-2)
    assert len(nat_grads) == len(ref_grads)
    for a, b in zip(nat_grads, ref_grads):
        scale = b.abs().max().clamp_min(1e-6)
        torch.testing.assert_close(a / scale, b / scale, rtol=2e-2, atol=2e-2)
