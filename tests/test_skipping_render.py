"""Renders that skip empty space (RenderOptions.skip_empty) against the exact marcher: the same pixels,
depth and opacity from fewer evaluations, every marcher setting, the fallback, the refusals."""
import pytest
import torch

from pigan import render
from pigan.generators import ImplicitGenerator3d
from pigan.model import skipping
from pigan.model.render_options import RenderOptions


class Spheres:
    """A scene per latent: a sphere of radius 0.06 + 0.02 tanh(f0) around (f1, f2, 0) / 50 with density
    ``scale`` inside, negative outside, and colours varying in space; a latent with f3 > 5 fills
    the volume (positive density everywhere). Counts its evaluations."""

    def __init__(self, scale=300.0):
        self.scale, self.evaluations = scale, 0

    def __call__(self, points, freqs, phases, ray_directions=None):
        self.evaluations += points.shape[0] * points.shape[1]
        f = freqs[:, None, :4].to(points.dtype)
        centre = torch.cat([f[..., 1:3] / 50, torch.zeros_like(f[..., :1])], -1)
        radius = 0.06 + 0.02 * torch.tanh(f[..., :1])
        d = (points - centre).norm(dim=-1, keepdim=True)
        sigma = self.scale * (radius - d) / radius
        sigma = torch.where(f[..., 3:4] > 5, torch.full_like(sigma, 3.0), sigma)
        rgb = 0.5 + 0.5 * torch.sin(40 * points + phases[:, None, :3].to(points.dtype))
        if ray_directions is not None:
            rgb = rgb + 0.05 * ray_directions
        return torch.cat([rgb, sigma], -1)


@pytest.fixture(autouse=True)
def _fine_proposals(monkeypatch):
    # renders of a few hundred rays would get 4^3 to 9^3 cells, too coarse to skip much of these
    # small spheres; a proposal as costly as a tenth of the render is the real sizes' business
    monkeypatch.setattr(skipping, "GRID_SHARE", 1.0)


@pytest.fixture()
def gen():
    torch.manual_seed(0)
    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8).eval()
    g.siren.forward_with_frequencies_phase_shifts = Spheres()
    return g


def _latents(n, full=()):
    f = torch.randn(n, 72) * 0.5
    p = torch.randn(n, 72)
    for i in full:
        f[i, 3] = 10.0
    return f, p


def _render(g, f, p, o, seed=0, pitch=1.5, yaw=1.7):
    torch.manual_seed(seed)
    with torch.no_grad():
        return g.render(frequencies=f, phase_shifts=p, pitch=pitch, yaw=yaw, options=o, jitter=False)


def _assert_same_image(skip, exact, atol=None):
    # the light skipping may lose: below TERMINATE behind a ray's end, below ALPHA_SKIP per skipped
    # sample (at most 2 x 24 here); x2 for pixels in [-1, 1]
    atol = atol if atol is not None else 2 * (skipping.TERMINATE + 48 * skipping.ALPHA_SKIP)
    torch.testing.assert_close(skip["pixels"], exact["pixels"], rtol=0, atol=atol)
    torch.testing.assert_close(skip["depth"], exact["depth"], rtol=0, atol=atol)
    torch.testing.assert_close(skip["weights"].sum((-2, -1)), exact["weights"].sum((-2, -1)), rtol=0, atol=atol)


SETTINGS = [
    {},
    {"white_back": True},
    {"last_back": True},
    {"hierarchical_sample": False},
    {"lock_view_dependence": True},
    {"clamp_mode": "softplus"},
    {"fill_mode": "weight"},
    {"fill_mode": "debug", "white_back": True},
    {"max_batch_size": 7},
    {"num_steps": 7},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=[",".join(f"{k}={v}" for k, v in s.items()) or "default"
                                                    for s in SETTINGS])
def test_skipping_gives_the_exact_pixels_from_fewer_samples(gen, settings):
    settings = dict(settings)
    o = RenderOptions(img_size=23, num_steps=settings.pop("num_steps", 24), **settings)
    f, p = _latents(2)
    exact = _render(gen, f, p, o)
    skip = _render(gen, f, p, o.replace(skip_empty=True))
    _assert_same_image(skip, exact)
    stats = skip["skipping"]
    assert stats["fallback"] == 0
    assert stats["exact_samples_per_ray"] == o.num_steps * (2 if o.hierarchical_sample else 1)
    assert stats["samples_per_ray"] < 0.6 * stats["exact_samples_per_ray"]
    assert skip["weights"].shape == exact["weights"].shape


def test_the_evaluations_counted_are_the_network_calls(gen):
    o = RenderOptions(img_size=16, num_steps=12)
    f, p = _latents(1)
    field = gen.siren.forward_with_frequencies_phase_shifts
    skip = _render(gen, f, p, o.replace(skip_empty=True))
    stats = skip["skipping"]
    assert field.evaluations == stats["proposal_queries"] + round(stats["samples_per_ray"] * 16 * 16)


def test_importance_samples_are_the_exact_marchers(gen):
    """Seeded alike, the accelerated render is much closer to the exact one than two exact renders with
    different uniforms are to each other."""
    o = RenderOptions(img_size=20, num_steps=12)
    f, p = _latents(1)
    a, b = _render(gen, f, p, o, seed=0), _render(gen, f, p, o, seed=1)
    skip = _render(gen, f, p, o.replace(skip_empty=True), seed=0)
    noise = (a["pixels"] - b["pixels"]).abs().max()
    assert noise > 1e-2
    assert (skip["pixels"] - a["pixels"]).abs().max() < noise / 10


def test_stopped_rays_give_their_last_light_to_the_surface_not_the_background(gen, monkeypatch):
    """A stopped ray's remaining light goes to the sample it stopped at, so surface pixels are not
    tinted towards a white background: no bias, where the background would add up to TERMINATE."""
    monkeypatch.setattr(skipping, "TERMINATE", 2e-2)           # a tint large enough to measure
    o = RenderOptions(img_size=24, num_steps=24, white_back=True)
    f, p = _latents(2)
    exact = _render(gen, f, p, o)
    skip = _render(gen, f, p, o.replace(skip_empty=True))
    surface = exact["weights"].sum((-2, -1)).reshape(2, 24, 24) > 0.99
    assert surface.sum() > 50
    diff = (skip["pixels"] - exact["pixels"]).permute(0, 2, 3, 1)[surface]      # [n, 3]
    # white would add 2 x (residual transmittance) x (1 - colour) to every pixel of a stopped ray
    assert diff.mean().abs() < 0.05 * skipping.TERMINATE
    assert diff.abs().max() < 2 * skipping.TERMINATE


def test_a_full_proposal_falls_back_to_the_exact_marcher(gen):
    o = RenderOptions(img_size=12, num_steps=10, white_back=True)
    f, p = _latents(2, full=(0, 1))
    exact = _render(gen, f, p, o)
    skip = _render(gen, f, p, o.replace(skip_empty=True))
    assert torch.equal(skip["pixels"], exact["pixels"]) and torch.equal(skip["depth"], exact["depth"])
    assert skip["skipping"]["fallback"] == 2 and skip["skipping"]["occupancy"] == 1.0


def test_a_batch_with_one_full_proposal_marches_that_latent_exactly(gen):
    o = RenderOptions(img_size=12, num_steps=10)
    f, p = _latents(2, full=(1,))
    exact = _render(gen, f, p, o)
    skip = _render(gen, f, p, o.replace(skip_empty=True))
    _assert_same_image(skip, exact)
    torch.testing.assert_close(skip["pixels"][1], exact["pixels"][1], rtol=1e-5, atol=1e-5)
    assert skip["skipping"]["fallback"] == 1


def test_ray_chunked_renders_share_one_proposal(gen, monkeypatch):
    o = RenderOptions(img_size=18, num_steps=8)
    f, p = _latents(2)
    monkeypatch.setattr(render, "RENDER_SAMPLES", 40 * 8)             # 9 chunks of 40 rays per image
    exact = render.render_images(gen, f, p, 1.5, 1.7, o, with_opacity=True)
    built = []
    real = skipping.build_proposal
    monkeypatch.setattr(skipping, "build_proposal", lambda *a, **k: built.append(1) or real(*a, **k))
    tally = skipping.SkipTally()
    skip = render.render_images(gen, f, p, 1.5, 1.7, o.replace(skip_empty=True), with_opacity=True, tally=tally)
    for s, e in zip(skip, exact):
        torch.testing.assert_close(s, e, rtol=0, atol=2 * (skipping.TERMINATE + 16 * skipping.ALPHA_SKIP))
    assert len(built) == 2 and tally.images == 2 and tally.rays == 2 * 18 * 18
    assert tally.evaluations < 0.6 * tally.exact
    assert "samples per ray evaluated" in tally.summary()


def test_skipping_refuses_gradients_and_density_noise(gen):
    o = RenderOptions(img_size=8, num_steps=6, skip_empty=True)
    f, p = _latents(1)
    with pytest.raises(ValueError, match="no gradients"):
        gen.render(frequencies=f.requires_grad_(), phase_shifts=p, pitch=1.5, yaw=1.6, options=o)
    with pytest.raises(ValueError, match="nerf_noise"), torch.no_grad():
        gen.render(frequencies=f, phase_shifts=p, pitch=1.5, yaw=1.6, options=o.replace(nerf_noise=0.5))


def test_grid_sizes_scale_with_the_render():
    assert skipping.grid_size_for(16 * 16 * 24) < skipping.grid_size_for(64 * 64 * 48) <= skipping.GRID_SIZE
    assert skipping.grid_size_for(1) >= 4


def test_render_command_skips_by_default_and_reports_it(gen, tmp_path, capsys, monkeypatch):
    from pigan.checkpoints import save_checkpoint
    from pigan.cli import render as render_cli
    from pigan.curriculums import get_curriculum

    path = tmp_path / "g.pt"
    cur = get_curriculum("demo")
    real = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8)
    save_checkpoint(path, generator=real, ema=real.state_dict(),
                    config={str(k) if isinstance(k, int) else k: v for k, v in cur.items()})
    seen = []
    write = render.write_samples
    monkeypatch.setattr(render, "write_samples", lambda *a, **k: seen.append(k["options"]) or write(*a, **k))
    args = [str(path), "--num", "1", "--identities", "1", "--views", "1", "--pitches", "1", "--resolution", "6",
            "--steps", "4", "--frames", "0", "--no-progress", "--device", "cpu"]
    assert render_cli.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert seen[-1].skip_empty and "empty-space skipping:" in capsys.readouterr().out
    assert render_cli.main(args + ["--out", str(tmp_path / "b"), "--exact"]) == 0
    assert not seen[-1].skip_empty and "empty-space skipping" not in capsys.readouterr().out


def test_eval_and_invert_take_the_switch():
    from pigan.cli import eval as eval_cli
    from pigan.cli import invert as invert_cli

    assert eval_cli.build_parser().parse_args(["c", "--real", "faces"]).skip_empty is False
    assert eval_cli.build_parser().parse_args(["c", "--real", "faces", "--skip-empty"]).skip_empty
    assert invert_cli.build_parser().parse_args(["c", "i", "--exact"]).exact
