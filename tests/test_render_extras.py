"""pigan render's research additions: ray-chunked marching (large images, --ray-step-multiplier),
latent-interpolation and depth videos, --lock-view-dependence."""
import pytest
import torch
from PIL import Image

from pigan import render
from pigan.checkpoints import save_checkpoint
from pigan.cli import render as render_cli
from pigan.curriculums import get_curriculum
from pigan.generators import ImplicitGenerator3d
from pigan.model.render_options import RenderOptions


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8).eval()


def _latent(g, seed=0):
    return render.latents(g, 1, seed, psi=0.7)


def test_ray_chunks_equal_one_march(gen):
    f, p = _latent(gen)
    o = RenderOptions(img_size=9, num_steps=5, hierarchical_sample=False, white_back=True)
    pitch, yaw = torch.tensor([1.5]), torch.tensor([1.7])
    whole = gen.render(frequencies=f, phase_shifts=p, pitch=pitch, yaw=yaw, options=o, jitter=False)
    for samples in (5, 7 * 5, 81 * 5):                  # one ray, 7 rays (uneven tail), all rays
        px, depth, opacity, _ = render._render_in_ray_chunks(gen, f, p, pitch, yaw, o, max_samples=samples,
                                                             with_opacity=True)
        torch.testing.assert_close(px, whole["pixels"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(depth, whole["depth"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(opacity, whole["weights"].sum((-2, -1)).reshape(1, 9, 9), rtol=1e-5, atol=1e-6)


def test_large_images_are_marched_in_bounded_chunks(gen, monkeypatch):
    f, p = _latent(gen)
    o = RenderOptions(img_size=12, num_steps=6, hierarchical_sample=True, white_back=True)
    seen = []
    march = gen.march

    def spy(freqs, phases, points, *a, **k):
        seen.append(points.shape[1] * points.shape[2])
        return march(freqs, phases, points, *a, **k)

    monkeypatch.setattr(gen, "march", spy)
    monkeypatch.setattr(render, "RENDER_SAMPLES", 10 * 6)
    px, depth = render.render_images(gen, f, p, 1.5, 1.6, o)
    assert px.shape == (1, 3, 12, 12) and depth.shape == (1, 12, 12)
    assert len(seen) == 15 and max(seen) <= 60                   # 144 rays in chunks of 10
    assert torch.isfinite(px).all() and (px.abs() <= 1).all()
    # Small images keep the single march.
    seen.clear()
    monkeypatch.setattr(render, "RENDER_SAMPLES", 1 << 20)
    render.render_images(gen, f, p, 1.5, 1.6, o)
    assert seen == [144 * 6]


def test_lock_view_dependence_fixes_the_colour_direction(gen):
    f, p = _latent(gen)
    o = RenderOptions(img_size=6, num_steps=4, hierarchical_sample=False)
    free, _ = render.render_images(gen, f, p, 1.5, 1.6, o)
    locked, _ = render.render_images(gen, f, p, 1.5, 1.6, o.replace(lock_view_dependence=True))
    assert not torch.allclose(free, locked)
    # Locked: the siren sees the direction (0, 0, -1) for every sample.
    seen = []
    fwd = gen.siren.forward_with_frequencies_phase_shifts

    def spy(x, fr, ph, ray_directions, **k):
        seen.append(ray_directions)
        return fwd(x, fr, ph, ray_directions=ray_directions, **k)

    gen.siren.forward_with_frequencies_phase_shifts = spy
    try:
        render.render_images(gen, f, p, 1.3, 1.9, o.replace(lock_view_dependence=True))
    finally:
        del gen.siren.forward_with_frequencies_phase_shifts
    d = torch.cat([s.reshape(-1, 3) for s in seen])
    assert torch.equal(d, torch.tensor([0.0, 0.0, -1.0]).expand_as(d))


def test_interpolation_passes_through_each_seed(gen):
    o = RenderOptions(img_size=6, num_steps=4, hierarchical_sample=False)
    frames, depths, info = render.render_interpolation(gen, [3, 5, 8], frames_per_seed=2, psi=0.7, options=o)
    assert len(frames) == 6 and len(depths) == 6 and frames[0].shape == (3, 6, 6)
    assert depths[0].shape == (3, 6, 6) and info["near"] <= info["far"]
    assert all(0 <= float(fr.min()) and float(fr.max()) <= 1 for fr in frames)
    pitches, yaws = render.video_poses(o, 6, "auto")
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(5))
    f, p = render.latents(gen, 1, 3, 0.7, z=z)
    expected, _ = render.render_images(gen, f, p, pitches[2], yaws[2], o)
    torch.testing.assert_close(frames[2], (expected[0] + 1) / 2)            # frame 2 is seed 5 exactly
    assert not torch.allclose(frames[1], frames[2])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        render.render_interpolation(gen, [1], options=o)


def test_cli_writes_depth_and_interpolation_videos(gen, tmp_path, monkeypatch):
    path = tmp_path / "g.pt"
    cur = get_curriculum("demo")
    save_checkpoint(path, generator=gen, ema=gen.state_dict(),
                    config={str(k) if isinstance(k, int) else k: v for k, v in cur.items()})
    seen = {}
    write = render.write_samples

    def spy(*a, **k):
        seen.update(k)
        return write(*a, **k)

    monkeypatch.setattr(render, "write_samples", spy)
    out = tmp_path / "o"
    rc = render_cli.main([str(path), "--out", str(out), "--num", "1", "--identities", "1", "--views", "1",
                          "--pitches", "1", "--resolution", "6", "--steps", "3", "--frames", "2", "--depth-video",
                          "--interpolate", "0", "1", "--frames-per-seed", "2", "--lock-view-dependence",
                          "--ray-step-multiplier", "2", "--no-progress", "--device", "cpu"])
    assert rc == 0
    for name, n in (("video_depth.gif", 2), ("interpolation.gif", 4), ("interpolation_depth.gif", 4)):
        assert Image.open(out / name).n_frames == n
    assert seen["options"].num_steps == 6 and seen["options"].lock_view_dependence
    assert render_cli.main([str(path), "--out", str(out), "--interpolate", "3"]) == 2
    assert render_cli.main([str(path), "--out", str(out), "--ray-step-multiplier", "0"]) == 2
