"""FENeRF's model (pigan.model.fenerf_siren, pigan.model.fenerf, CCSDoubleEncoderDiscriminator): the field
against a plain-torch transcription, channel order, exact disentanglement of geometry and appearance,
fast backends vs reference, gradcheck, checkpoints, the skip-empty marcher, discriminators, label maps."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close_scaled, assert_fast_as_accurate, fast_cpu_backends, scaled_error
from pigan import ops
from pigan.checkpoints import build_discriminator, build_generator, load_generator, save_checkpoint
from pigan.model import skipping
from pigan.model.discriminators import DISCRIMINATORS, CCSDoubleEncoderDiscriminator
from pigan.model.fenerf import SemanticGenerator3d, label_planes, semantic_labels
from pigan.model.fenerf_siren import SemanticSiren
from pigan.model.generators import GENERATORS, cam2world_from_angles
from pigan.model.render_options import RenderOptions

K, ZG, ZA, H = 4, 8, 5, 16
SMALL = dict(hidden_dim=H, map_hidden_dim=12, feature_grid_channels=3, feature_grid_size=5)
META = dict(img_size=6, fov=12, ray_start=0.88, ray_end=1.12, num_steps=5, h_stddev=0.3, v_stddev=0.155,
            h_mean=math.pi / 2, v_mean=math.pi / 2, hierarchical_sample=True, sample_dist="gaussian",
            clamp_mode="relu", nerf_noise=0.5)


def make_siren(seed=0, **kw):
    torch.manual_seed(seed)
    return SemanticSiren(z_geo_dim=ZG, z_app_dim=ZA, num_classes=K, **{**SMALL, **kw})


def make_gen(seed=0, **kw):
    torch.manual_seed(seed)
    return SemanticGenerator3d("SemanticSiren", ZG + ZA, z_geo_dim=ZG, z_app_dim=ZA, num_classes=K, **{**SMALL, **kw})


def fenerf_forward(m, x, freqs, phases, dirs):
    """FENeRF's TextureEmbedding semantic siren written out in plain torch (independent of pigan.ops):
    joined modulations split into trunk / colour blocks; output reordered to (rgb, logits, sigma)."""
    f, p = freqs * 15 + 30, phases
    if m.warp is not None:
        x = x * (2 / m.warp)
    B, N, _ = x.shape
    feats = []
    if m.feature_grid_channels:
        g = F.grid_sample(m.feature_grid.expand(B, -1, -1, -1, -1), x.reshape(B, 1, 1, N, 3), mode="bilinear",
                          padding_mode="zeros", align_corners=True)            # [B, c, 1, 1, N]
        feats = [g.reshape(B, -1, N).permute(0, 2, 1)]
    h = x
    for i, film in enumerate(m.network):
        h = torch.sin(f[:, None, i * H:(i + 1) * H] * film.layer(h) + p[:, None, i * H:(i + 1) * H])
    sigma = m.final_layer(h)
    labels = h
    for lin in m.semantic_head:
        labels = lin(labels)
    c = torch.cat([dirs, *feats, h], -1)
    for j, film in enumerate(m.color_network):
        k = 8 + j
        c = torch.sin(f[:, None, k * H:(k + 1) * H] * film.layer(c) + p[:, None, k * H:(k + 1) * H])
    rgb = torch.sigmoid(m.color_layer_linear(c))
    return torch.cat([rgb, labels, sigma], -1)


# ---------------------------------------------------------------------------- the field
def test_layout_and_the_field_is_fenerfs():
    m = make_siren(1)
    lay = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert lay["network.0.layer.weight"] == (H, 3) and lay["final_layer.weight"] == (1, H)
    assert lay["color_network.0.layer.weight"] == (H, 3 + 3 + H)           # dirs, grid features, trunk
    assert [lay[f"semantic_head.{i}.weight"] for i in range(3)] == [(H, H), (H, H), (K, H)]
    assert lay["color_layer_linear.weight"] == (3, H) and lay["feature_grid"] == (1, 3, 5, 5, 5)
    # FENeRF's mapping networks: 5 Linear layers each, outputs 8 (trunk) and 3 (colour) blocks x 2
    assert lay["mapping_network.geometry.network.8.weight"] == (8 * H * 2, 12)
    assert lay["mapping_network.appearance.network.8.weight"] == (3 * H * 2, 12)
    assert lay["mapping_network.geometry.network.0.weight"] == (12, ZG)
    assert lay["mapping_network.appearance.network.0.weight"] == (12, ZA)
    assert m.output_dim == 3 + K + 1 and m.z_dim == ZG + ZA and m.modulation_dim == 11 * H

    x, dirs, z = torch.randn(2, 9, 3) * 0.1, F.normalize(torch.randn(2, 9, 3), dim=-1), torch.randn(2, ZG + ZA)
    with ops.use_backend("reference"):
        out = m(x, z, dirs)
    f, p = m.mapping_network(z)
    assert f.shape == p.shape == (2, 11 * H)
    torch.testing.assert_close(out, fenerf_forward(m, x, f, p, dirs), rtol=0, atol=0)
    assert out.shape == (2, 9, 3 + K + 1)
    assert out[..., :3].min() > 0 and out[..., :3].max() < 1                # rgb first, a sigmoid


def test_mapping_is_two_networks_on_the_halves_of_z():
    m = make_siren(2)
    zg, za = torch.randn(3, ZG), torch.randn(3, ZA)
    z = m.join_latent(zg, za)
    f, p = m.mapping_network(z)
    fg, pg = m.mapping_network.geometry(zg)
    fa, pa = m.mapping_network.appearance(za)
    assert torch.equal(f, torch.cat([fg, fa], -1)) and torch.equal(p, torch.cat([pg, pa], -1))
    assert torch.equal(f[:, m.geometry_columns], fg) and torch.equal(p[:, m.appearance_columns], pa)
    assert all(torch.equal(a, b) for a, b in zip(m.split_latent(z), (zg, za)))
    assert all(torch.equal(a, b) for a, b in zip(m.split_modulations(f), (fg, fa)))
    assert torch.equal(m.join_modulations(fg, fa), f)


def test_no_grid_and_no_warp_variant():
    m = make_siren(3, feature_grid_channels=0, warp=None, color_layers=1, semantic_layers=1)
    assert not hasattr(m, "feature_grid") and not hasattr(m, "gridwarper")
    assert m.color_network[0].layer.in_features == 3 + H and len(m.semantic_head) == 1
    x, dirs, z = torch.randn(2, 7, 3), torch.randn(2, 7, 3), torch.randn(2, ZG + ZA)
    f, p = m.mapping_network(z)
    assert f.shape == (2, 9 * H)
    with ops.use_backend("reference"):
        out = m.forward_with_frequencies_phase_shifts(x, f, p, dirs)
    torch.testing.assert_close(out, fenerf_forward(m, x, f, p, dirs), rtol=0, atol=0)


def test_geometry_outputs_do_not_depend_on_the_appearance_columns():
    """What the editing tool relies on: sigma and the logits have exactly zero gradient with respect to
    the appearance modulations; rgb has a nonzero one."""
    m = make_siren(4)
    x, dirs = torch.randn(2, 11, 3) * 0.1, torch.randn(2, 11, 3)
    f, p = (t.detach().requires_grad_() for t in m.mapping_network(torch.randn(2, ZG + ZA)))
    out = m.forward_with_frequencies_phase_shifts(x, f, p, dirs)
    gf, gp = torch.autograd.grad(out[..., 3:].sum(), (f, p), retain_graph=True)
    assert gf[:, m.appearance_columns].abs().max() == 0 and gp[:, m.appearance_columns].abs().max() == 0
    assert gf[:, m.geometry_columns].abs().max() > 0
    gf, _ = torch.autograd.grad(out[..., :3].sum(), (f, p))
    assert gf[:, m.appearance_columns].abs().max() > 0


@pytest.mark.parametrize("backend", fast_cpu_backends())
def test_siren_fast_backend_matches_reference_forward_and_backward(backend):
    m = make_siren(5, feature_grid_init_std=0.5)
    x, dirs, z = torch.randn(3, 97, 3) * 0.1, torch.randn(3, 97, 3), torch.randn(3, ZG + ZA)
    cot = torch.randn(3, 97, 3 + K + 1)

    def run(module, name, dtype):
        module.zero_grad()
        xx = x.to(dtype).clone().requires_grad_()
        zz = z.to(dtype).clone().requires_grad_()
        with ops.use_backend(name):
            out = module(xx, zz, dirs.to(dtype))
        (out * cot.to(dtype)).sum().backward()
        return {"out": out.detach(), "x.grad": xx.grad, "z.grad": zz.grad,
                **{k: p.grad.clone() for k, p in module.named_parameters()}}

    exact = run(copy.deepcopy(m).double(), "reference", torch.float64)
    ref, fast = run(m, "reference", torch.float32), run(m, backend, torch.float32)
    assert_fast_as_accurate(exact, ref, fast, backend, ref_tol=1e-4)


@pytest.mark.parametrize("backend", fast_cpu_backends())
def test_siren_gradcheck_float64(backend):
    m = make_siren(6, hidden_dim=6, map_hidden_dim=6, feature_grid_channels=2, feature_grid_size=3,
                   feature_grid_init_std=0.5, color_layers=2, semantic_layers=2).double()
    x = ((torch.rand(1, 4, 3, dtype=torch.float64) - 0.5) * 0.2).requires_grad_()
    dirs = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    z = torch.randn(1, ZG + ZA, dtype=torch.float64, requires_grad=True)
    names = ["feature_grid", "network.3.layer.weight", "semantic_head.0.weight", "color_network.0.layer.weight",
             "mapping_network.appearance.network.8.bias"]
    params = [m.get_parameter(n).detach().clone().requires_grad_() for n in names]

    def field(x, z, dirs, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, z, dirs))

    with ops.use_backend(backend):
        assert torch.autograd.gradcheck(field, (x, z, dirs, *params))


# ---------------------------------------------------------------------------- the generator
def test_generator_outputs_and_channel_order():
    g = make_gen(7)
    z = torch.randn(2, ZG + ZA)
    out = g.render(z, pitch=1.5, yaw=1.6, img_size=7, num_steps=6)
    assert out["pixels"].shape == (2, 3, 7, 7) and out["semantic"].shape == (2, K, 7, 7)
    assert out["opacity"].shape == out["depth"].shape == (2, 7, 7)
    torch.testing.assert_close(out["opacity"], out["weights"].sum((-2, -1)).reshape(2, 7, 7), rtol=0, atol=0)
    assert out["pixels"].min() >= -1 and out["pixels"].max() <= 1

    # the training pass: cat(rgb, semantics) both *2-1; FENeRF's two-latent call is the same pass
    torch.manual_seed(3)
    imgs, pose = g(z, **META)
    torch.manual_seed(3)
    imgs2, pose2 = g(z[:, :ZG], z[:, ZG:], **META)
    assert imgs.shape == (2, 3 + K, 6, 6) and pose.shape == (2, 2)
    assert torch.equal(imgs, imgs2) and torch.equal(pose, pose2)

    # the same pass at an explicit camera: render's pixels and semantic are its channels
    o = RenderOptions(img_size=5, num_steps=4, nerf_noise=0.0)
    torch.manual_seed(4)
    r = g.render(z, pitch=1.5, yaw=1.6, options=o)
    torch.manual_seed(4)
    rgb, _, _ = g.march(*g.siren.mapping_network(z), *g.camera_rays(2, 5, o.fov, o.ray_start, o.ray_end, 4),
                        cam2world_from_angles(torch.full((2, 1), 1.5), torch.full((2, 1), 1.6)), o)
    img = rgb.reshape(2, 5, 5, 3 + K).permute(0, 3, 1, 2) * 2 - 1
    assert torch.equal(r["pixels"], img[:, :3]) and torch.equal(r["semantic"], img[:, 3:])


def test_render_takes_the_two_latents_and_truncation():
    g = make_gen(8)
    zg, za = torch.randn(2, ZG), torch.randn(2, ZA)
    torch.manual_seed(1)
    a = g.render(z_geo=zg, z_app=za, pitch=1.5, yaw=1.6, img_size=5, num_steps=4)
    torch.manual_seed(1)
    b = g.render(g.join_latent(zg, za), pitch=1.5, yaw=1.6, img_size=5, num_steps=4)
    assert torch.equal(a["pixels"], b["pixels"]) and torch.equal(a["semantic"], b["semantic"])
    f, _ = g.generate_avg_frequencies(n=64)
    assert f.shape == (1, g.siren.modulation_dim)
    t = g.render(z_geo=zg, z_app=za, psi=0.5, pitch=1.5, yaw=1.6, img_size=5, num_steps=4)
    assert t["semantic"].shape == (2, K, 5, 5)
    with pytest.raises(ValueError, match="both"):
        g.render(z_geo=zg, pitch=1.5, yaw=1.6)
    with pytest.raises(ValueError, match="not both"):
        g.render(g.join_latent(zg, za), z_geo=zg, z_app=za, pitch=1.5, yaw=1.6)
    with pytest.raises(ValueError, match="z_app"):
        g.join_latent(zg, torch.randn(2, ZA + 1))


def test_disentanglement_is_exact():
    g = make_gen(9, feature_grid_init_std=0.5)
    zg, za1, za2 = torch.randn(2, ZG), torch.randn(2, ZA), torch.randn(2, ZA)

    def render(zg, za):
        torch.manual_seed(11)                                    # same jitter and importance uniforms
        return g.render(z_geo=zg, z_app=za, pitch=1.5, yaw=1.65, img_size=9, num_steps=8, nerf_noise=0.3)

    a, b = render(zg, za1), render(zg, za2)
    for k in ("depth", "opacity", "semantic", "weights"):
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert torch.equal(semantic_labels(a["semantic"], a["opacity"], 0.2),
                       semantic_labels(b["semantic"], b["opacity"], 0.2))
    assert (a["pixels"] - b["pixels"]).abs().max() > 1e-3

    # at the field: same z_geo -> same sigma and logits at every point
    x, dirs = torch.randn(2, 50, 3) * 0.1, torch.randn(2, 50, 3)
    o1 = g.siren(x, g.join_latent(zg, za1), dirs)
    o2 = g.siren(x, g.join_latent(zg, za2), dirs)
    torch.testing.assert_close(o1[..., 3:], o2[..., 3:], rtol=0, atol=1e-6)

    # the training pass: semantic channels equal, rgb channels differ
    torch.manual_seed(5)
    i1, _ = g(zg, za1, **META)
    torch.manual_seed(5)
    i2, _ = g(zg, za2, **META)
    torch.testing.assert_close(i1[:, 3:], i2[:, 3:], rtol=0, atol=1e-6)
    assert (i1[:, :3] - i2[:, :3]).abs().max() > 1e-3

    # the geometry latent changes the geometry
    c = render(torch.randn(2, ZG), za1)
    assert (c["depth"] - a["depth"]).abs().max() > 1e-4 and (c["semantic"] - a["semantic"]).abs().max() > 1e-3


@pytest.mark.parametrize("backend", fast_cpu_backends())
def test_render_fast_backend_matches_reference_forward_and_backward(backend):
    g = make_gen(10, hidden_dim=24)
    z = torch.randn(2, ZG + ZA)
    cot_p, cot_s = torch.randn(2, 3, 7, 7), torch.randn(2, K, 7, 7)
    kw = dict(pitch=torch.tensor([[1.4], [1.7]]), yaw=torch.tensor([[1.3], [1.9]]), img_size=7, num_steps=6,
              jitter=False, nerf_noise=0.0)

    def run(gen, name, dtype):
        gen.zero_grad()
        torch.manual_seed(5)
        with ops.use_backend(name):
            out = gen.render(z.to(dtype), **kw)
        ((out["pixels"] * cot_p.to(dtype)).sum() + (out["semantic"] * cot_s.to(dtype)).sum()).backward()
        return {**{k: out[k].detach() for k in ("pixels", "semantic", "depth", "opacity")},
                **{k: p.grad.clone() for k, p in gen.named_parameters()}}

    exact = run(copy.deepcopy(g).double(), "reference", torch.float64)
    ref, fast = run(g, "reference", torch.float32), run(g, backend, torch.float32)
    assert_fast_as_accurate(exact, ref, fast, backend, ref_tol=5e-4)


@pytest.mark.gpu
def test_cuda_render_matches_reference(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)   # fp32 GEMMs, as the CPU's
    g = make_gen(16, hidden_dim=64).cuda()
    z = torch.randn(2, ZG + ZA, device="cuda")
    cot_p, cot_s = torch.randn(2, 3, 16, 16, device="cuda"), torch.randn(2, K, 16, 16, device="cuda")
    kw = dict(pitch=torch.tensor([[1.4], [1.7]]), yaw=torch.tensor([[1.3], [1.9]]), img_size=16, num_steps=8,
              jitter=False, nerf_noise=0.0)

    def run(gen, name, dtype, **extra):
        gen.zero_grad()
        torch.manual_seed(5)
        with ops.use_backend(name):
            out = gen.render(z.to(dtype), **kw, **extra)
        ((out["pixels"] * cot_p.to(dtype)).sum() + (out["semantic"] * cot_s.to(dtype)).sum()).backward()
        return {**{k: out[k].detach() for k in ("pixels", "semantic", "depth", "opacity")},
                **{k: p.grad.clone() for k, p in gen.named_parameters()}}

    g64 = copy.deepcopy(g).double()
    for extra in ({"hierarchical_sample": False}, {}):
        exact = run(g64, "reference", torch.float64, **extra)
        ref, fast = run(g, "reference", torch.float32, **extra), run(g, "auto", torch.float32, **extra)
        for k in exact:
            ref_err = scaled_error(ref[k], exact[k])
            assert ref_err <= 5e-4, f"reference {k} {extra}: fp32 error {ref_err:.2e}"
            assert_close_scaled(fast[k], exact[k], 2 * ref_err + 1e-5, f"cuda auto {k} {extra}")


def test_checkpoint_round_trip(tmp_path):
    g = make_gen(12)
    path = save_checkpoint(tmp_path / "g.pt", generator=g, ema=g.state_dict())
    h = load_generator(path)
    assert type(h) is SemanticGenerator3d and h.config == g.config
    assert h.config["z_geo_dim"] == ZG and h.config["num_classes"] == K and h.config["siren"] == "SemanticSiren"
    z = torch.randn(2, ZG + ZA)
    torch.manual_seed(2)
    a = g.eval().render(z, pitch=1.5, yaw=1.6, img_size=6, num_steps=5)
    torch.manual_seed(2)
    b = h.render(z, pitch=1.5, yaw=1.6, img_size=6, num_steps=5)
    for k in ("pixels", "semantic", "depth", "opacity"):
        assert torch.equal(a[k], b[k]), k
    assert GENERATORS["SemanticGenerator3d"] is SemanticGenerator3d
    assert type(build_generator(g.config | {"class": "SemanticGenerator3d"})) is SemanticGenerator3d


class SphereSemanticSiren(SemanticSiren):
    """The real field, with its density replaced by a sphere of radius 0.05 around a latent-dependent
    centre (empty space around it for the skipping marcher to skip)."""

    def forward_with_frequencies_phase_shifts(self, input, frequencies, phase_shifts, ray_directions, **kwargs):
        out = super().forward_with_frequencies_phase_shifts(input, frequencies, phase_shifts, ray_directions)
        centre = torch.cat([torch.tanh(frequencies[:, None, :2]) / 100, torch.zeros_like(frequencies[:, None, :1])], -1)
        sigma = 300 * (0.05 - (input - centre.to(input.dtype)).norm(dim=-1, keepdim=True)) / 0.05
        return torch.cat([out[..., :-1], sigma], -1)


def test_skip_empty_render_equals_the_exact_one(monkeypatch):
    monkeypatch.setattr(skipping, "GRID_SHARE", 1.0)              # as tests/test_skipping_render.py
    torch.manual_seed(13)
    g = SemanticGenerator3d(SphereSemanticSiren, z_geo_dim=ZG, z_app_dim=ZA, num_classes=K, **SMALL).eval()
    z = torch.randn(2, ZG + ZA)
    o = RenderOptions(img_size=21, num_steps=24)

    def render(options):
        torch.manual_seed(0)
        with torch.no_grad():
            return g.render(z, pitch=1.5, yaw=1.7, options=options, jitter=False)

    exact, skip = render(o), render(o.replace(skip_empty=True))
    stats = skip["skipping"]
    assert stats["fallback"] == 0 and stats["samples_per_ray"] < 0.6 * stats["exact_samples_per_ray"]
    # test_skipping_render's tolerance; the logits are not in [0, 1] like rgb: scaled by their size
    atol = 2 * (skipping.TERMINATE + 48 * skipping.ALPHA_SKIP)
    for k in ("pixels", "depth", "opacity"):
        torch.testing.assert_close(skip[k], exact[k], rtol=0, atol=atol, msg=k)
    scale = exact["semantic"].abs().max().item()
    torch.testing.assert_close(skip["semantic"], exact["semantic"], rtol=0, atol=atol * max(scale, 1.0))
    assert (exact["opacity"] > 0.9).any() and (exact["opacity"] < 0.1).any()


# ---------------------------------------------------------------------------- discriminators
@pytest.mark.parametrize("channels", [3, 3 + K])
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_double_encoder_discriminator_shapes(channels, size, alpha):
    torch.manual_seed(0)
    d = build_discriminator({"class": "CCSDoubleEncoderDiscriminator", "latent_geo_dim": ZG, "latent_app_dim": ZA,
                             "input_channels": channels, "max_channels": 16})
    assert d.fromRGB[0].model[0].in_channels == channels and d.final_layer.out_channels == 1 + ZG + ZA + 2
    x = torch.randn(2, channels, size, size, requires_grad=True)
    score, zg, za, pose = d(x, alpha)
    assert score.shape == (2, 1) and zg.shape == (2, ZG) and za.shape == (2, ZA) and pose.shape == (2, 2)
    torch.autograd.grad(score.sum(), x)                                        # R1 needs this
    assert type(build_discriminator({"class": type(d).__name__, **d.config})) is CCSDoubleEncoderDiscriminator


def test_double_encoder_default_is_fenerfs_width_and_reads_generator_images():
    d = CCSDoubleEncoderDiscriminator(256, 256, 3 + K)
    assert d.final_layer.out_channels == 1 + 256 + 256 + 2 and d.final_layer.in_channels == 400
    assert DISCRIMINATORS["CCSDoubleEncoderDiscriminator"] is CCSDoubleEncoderDiscriminator
    g = make_gen(14)
    torch.manual_seed(1)
    fake, _ = g(torch.randn(2, ZG + ZA), **{**META, "img_size": 8})
    labels = torch.randint(0, K + 1, (2, 8, 8))
    real = torch.cat([torch.rand(2, 3, 8, 8) * 2 - 1, label_planes(labels, K)], 1)
    small = CCSDoubleEncoderDiscriminator(ZG, ZA, 3 + K, max_channels=8)
    for x in (fake, real):
        assert small(x, 1.0)[0].shape == (2, 1)
    with pytest.raises(ValueError, match=r"\[B, 7, S, S\]"):
        small(torch.randn(2, 3, 8, 8), 1.0)


# ---------------------------------------------------------------------------- label maps
def test_semantic_labels_and_label_planes_on_hand_made_input():
    sem = torch.tensor([[[[0.1, 2.0], [-1.0, 0.0]],
                         [[0.5, 1.0], [3.0, -5.0]],
                         [[0.2, 0.0], [0.0, -4.0]]]])                    # [1, 3, 2, 2]
    opacity = torch.tensor([[[0.95, 0.5], [1.0, 0.9]]])
    assert torch.equal(semantic_labels(sem, opacity), torch.tensor([[[2, 0], [2, 1]]]))
    assert torch.equal(semantic_labels(sem, opacity, threshold=0.0), torch.tensor([[[2, 1], [2, 1]]]))
    assert semantic_labels(sem, opacity).dtype == torch.int64
    planes = label_planes(torch.tensor([[[0, 1], [3, 2]]]), 3)
    want = torch.tensor([[[[-1, 1], [-1, -1]], [[-1, -1], [-1, 1]], [[-1, -1], [1, -1]]]], dtype=torch.float32)
    assert torch.equal(planes, want)
    # a label map through its planes and back (full opacity) is itself, the background aside
    labels = torch.randint(1, 4, (2, 5, 5))
    assert torch.equal(semantic_labels(label_planes(labels, 3), torch.ones(2, 5, 5)), labels)
    with pytest.raises(ValueError, match="opacity"):
        semantic_labels(sem, opacity[0])
    with pytest.raises(ValueError, match="semantic"):
        semantic_labels(sem[0], opacity)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        label_planes(torch.tensor([[[4]]]), 3)
    with pytest.raises(ValueError, match="integer label map"):
        label_planes(torch.zeros(1, 2, 2), 3)


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kw,name", [
    (dict(num_classes=0), "num_classes"), (dict(z_geo_dim=-1), "z_geo_dim"), (dict(z_app_dim=1.5), "z_app_dim"),
    (dict(hidden_dim=0), "hidden_dim"), (dict(color_layers=0), "color_layers"),
    (dict(semantic_layers=0), "semantic_layers"), (dict(feature_grid_channels=-1), "feature_grid_channels"),
    (dict(feature_grid_size=0), "feature_grid_size"), (dict(mapping_hidden_layers=5), "mapping_hidden_layers"),
    (dict(warp=0), "warp"), (dict(warp="wide"), "warp"), (dict(feature_grid_init_std=-1.0), "feature_grid_init_std"),
    (dict(map_hidden_dim=True), "map_hidden_dim"),
])
def test_bad_siren_arguments_name_the_argument(kw, name):
    args = dict(z_geo_dim=ZG, z_app_dim=ZA, num_classes=K, hidden_dim=8, map_hidden_dim=8, feature_grid_size=3)
    with pytest.raises(ValueError, match=name):
        SemanticSiren(**{**args, **kw})


def test_bad_generator_and_discriminator_arguments():
    base = dict(z_geo_dim=ZG, z_app_dim=ZA, num_classes=K, hidden_dim=8, map_hidden_dim=8, feature_grid_size=3)
    with pytest.raises(ValueError, match="num_classes"):
        SemanticGenerator3d("SemanticSiren", z_geo_dim=ZG, z_app_dim=ZA)
    with pytest.raises(ValueError, match="z_dim"):
        SemanticGenerator3d("SemanticSiren", 7, **base)
    with pytest.raises(ValueError, match="latent_dim"):
        SemanticGenerator3d("SemanticSiren", **base, latent_dim=3)
    with pytest.raises(ValueError, match="siren"):
        SemanticGenerator3d("TALLSIREN", **base)
    with pytest.raises(ValueError, match="siren"):
        build_generator({"class": "SemanticGenerator3d", "z_dim": ZG + ZA, **base})
    for kw, name in ((dict(input_channels=0), "input_channels"), (dict(latent_geo_dim=-2), "latent_geo_dim"),
                     (dict(latent_app_dim=None), "latent_app_dim")):
        with pytest.raises(ValueError, match=name):
            CCSDoubleEncoderDiscriminator(**kw)
    m = make_siren(15)
    with pytest.raises(ValueError, match=r"z must have shape \[B, z_geo_dim \+ z_app_dim\]"):
        m.mapping_network(torch.randn(2, ZG))
    with pytest.raises(ValueError, match="frequencies"):
        m.forward_with_frequencies_phase_shifts(torch.randn(1, 2, 3), torch.randn(1, 9 * H), torch.randn(1, 11 * H),
                                                torch.randn(1, 2, 3))
