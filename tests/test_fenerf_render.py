"""Rendering a semantic generator through pigan.render: the semantic planes come with the pixels, the
same whether the image is marched at once or in chunks of rays."""
import pytest
import torch

from pigan import render
from pigan.model.fenerf import SemanticGenerator3d
from pigan.model.render_options import RenderOptions

K = 4


def _gen():
    torch.manual_seed(0)
    return SemanticGenerator3d("SemanticSiren", 13, z_geo_dim=8, z_app_dim=5, num_classes=K, hidden_dim=16,
                               map_hidden_dim=12, feature_grid_channels=3, feature_grid_size=5).eval()


@pytest.mark.parametrize("skip", [False, True])
def test_render_images_returns_semantics_equal_in_ray_chunks(monkeypatch, skip):
    g = _gen()
    # no importance sampling: its uniforms are drawn per chunk, so chunked renders differ by them
    o = RenderOptions(img_size=9, num_steps=6, skip_empty=skip, hierarchical_sample=False)
    f, p = render.latents(g, 2, seed=1)
    px, d, a, sem = render.render_images(g, f, p, o.pitch, o.yaw, o, with_opacity=True, with_semantic=True)
    assert px.shape == (2, 3, 9, 9) and sem.shape == (2, K, 9, 9) and a.shape == (2, 9, 9)
    with torch.no_grad():
        out = g.render(frequencies=f[:1], phase_shifts=p[:1], pitch=o.pitch, yaw=o.yaw, options=o.replace(
            max_batch_size=render.RENDER_CHUNK), jitter=False)
    torch.testing.assert_close(sem[:1], out["semantic"], rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(render, "RENDER_SAMPLES", 20)                   # 3 rays per chunk
    px2, d2, a2, sem2 = render.render_images(g, f, p, o.pitch, o.yaw, o, with_opacity=True, with_semantic=True)
    for x, y in ((px, px2), (d, d2), (a, a2), (sem, sem2)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_with_semantic_needs_a_semantic_generator():
    from pigan.generators import ImplicitGenerator3d

    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8).eval()
    f, p = render.latents(g, 1)
    with pytest.raises(ValueError, match="with_semantic needs a generator with a semantic field"):
        render.render_images(g, f, p, 1.5, 1.5, RenderOptions(img_size=4, num_steps=4), with_semantic=True)


def test_a_white_background_fills_the_rgb_only():
    g = _gen()
    field = g.siren.forward_with_frequencies_phase_shifts

    def sphere(points, freqs, phases, ray_directions=None):
        out = field(points, freqs, phases, ray_directions=ray_directions)
        sigma = 300 * (0.05 - points.norm(dim=-1, keepdim=True))                # empty beyond radius 0.05
        return torch.cat([out[..., :-1], sigma], -1)

    g.siren.forward_with_frequencies_phase_shifts = sphere
    o = RenderOptions(img_size=7, num_steps=6)
    f, p = render.latents(g, 2, seed=2)
    outs = {}
    for white in (False, True):
        torch.manual_seed(0)
        with torch.no_grad():
            outs[white] = g.render(frequencies=f, phase_shifts=p, pitch=o.pitch, yaw=o.yaw, jitter=False,
                                   options=o.replace(white_back=white))
    fill = (1 - outs[False]["opacity"])[:, None]                                 # [B, 1, H, W]
    assert fill.max() > 0.1                                                      # some light reaches the back
    torch.testing.assert_close(outs[True]["pixels"], outs[False]["pixels"] + 2 * fill, rtol=0, atol=1e-6)
    torch.testing.assert_close(outs[True]["semantic"], outs[False]["semantic"], rtol=0, atol=1e-6)
