"""pigan.render and pigan.imaging: the CLI writes its files from a tiny checkpoint; library calls."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pigan import imaging, render
from pigan.checkpoints import save_checkpoint
from pigan.cli import render as render_cli
from pigan.curriculums import get_curriculum
from pigan.generators import ImplicitGenerator3d
from pigan.model.render_options import RenderOptions


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    g = ImplicitGenerator3d("SPATIALSIRENBASELINE", 8, hidden_dim=8, map_hidden_dim=8)
    cur = get_curriculum("demo")
    cur = {str(k) if isinstance(k, int) else k: v for k, v in cur.items()}   # as after JSON
    path = tmp_path_factory.mktemp("ck") / "tiny.pt"
    save_checkpoint(path, generator=g, ema=g.state_dict(), config=cur, extra={"step": 3})
    return path, g


def test_cli_writes_all_outputs(tiny_ckpt, tmp_path, capsys):
    path, _ = tiny_ckpt
    out = tmp_path / "out"
    rc = render_cli.main([str(path), "--out", str(out), "--num", "4", "--identities", "2", "--views", "3",
                          "--pitches", "2", "--resolution", "8", "--steps", "4", "--frames", "3",
                          "--no-progress", "--device", "cpu", "--backend", "reference"])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"samples.png", "depth.png", "depth.json", "multiview.png", "multiview_id0.png", "multiview_id1.png",
            "video.gif"} <= names
    printed = capsys.readouterr().out
    assert "samples.png" in printed
    # 2 x 2 grid of 8 px tiles with 2 px padding: 2 * 10 + 2 = 22.
    assert Image.open(out / "samples.png").size == (22, 22)
    assert Image.open(out / "multiview.png").size == (3 * 10 + 2, 2 * 10 + 2)       # ids x yaws
    assert Image.open(out / "multiview_id0.png").size == (3 * 10 + 2, 2 * 10 + 2)   # pitches x yaws
    gif = Image.open(out / "video.gif")
    assert gif.n_frames == 3
    arr = np.asarray(Image.open(out / "samples.png").convert("RGB"))
    assert arr[2:10, 2:10].std() > 0 or arr[2:10, 2:10].mean() > 0              # rendered, not blank pad


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    rc = render_cli.main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
    assert render_cli.main([str(tmp_path / "x.pt"), "--out", str(tmp_path / "o"), "--resolution", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: pigan render ")
    assert err[1:] == ["pigan render: error: --resolution must be a positive integer, got 0"]


def test_library_calls_are_deterministic_and_pose_dependent(tiny_ckpt):
    _, g = tiny_ckpt
    s = RenderOptions.from_curriculum(get_curriculum("demo"))
    assert s.img_size == 32 and s.white_back is True and s.fov == 12
    a, da = render.render_grid(g, num=2, seed=1, options=s, img_size=6, num_steps=4)
    b, _ = render.render_grid(g, num=2, seed=1, options=s, img_size=6, num_steps=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (2, 3, 6, 6) and da.shape == (2, 6, 6)
    assert a.min() >= -1 and a.max() <= 1
    mv = render.render_multiview(g, num=2, views=3, pitches=1, seed=1, options=s, img_size=6, num_steps=4)
    assert mv.shape == (2, 3, 3, 6, 6)
    torch.testing.assert_close(mv[:, 1], a, rtol=1e-6, atol=1e-6)     # middle view = mean pose
    assert (mv[:, 0] - mv[:, 2]).abs().max() > 0                      # views differ
    state = torch.random.get_rng_state()
    render.latents(g, 3, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())           # global RNG untouched


def test_video_poses_and_imaging():
    p, y = render.video_poses(RenderOptions(h_stddev=math.pi, h_mean=1.0, v_mean=0.7), frames=4)
    assert p == [0.7] * 4 and y[1] - y[0] == pytest.approx(math.pi / 2)
    p, y = render.video_poses(RenderOptions(h_stddev=0.3, v_stddev=0.155), frames=4)
    assert max(abs(v - math.pi / 2) for v in y) <= 0.3 + 1e-9
    with pytest.raises(ValueError, match="mode"):
        render.video_poses(RenderOptions(), mode="spin")
    grid = imaging.make_grid(torch.zeros(5, 3, 4, 4), nrow=2, padding=1)
    assert grid.shape == (3, 3 * 5 + 1, 2 * 5 + 1)
    assert grid[:, 0].eq(1).all() and grid[:, 1:5, 1:5].eq(0).all()
    with pytest.raises(ValueError, match="images"):
        imaging.make_grid(torch.zeros(3, 4, 4))


def test_cli_renders_a_pigan_folder(tmp_path):
    import sys

    from test_checkpoints import _pigan_modules

    mods = _pigan_modules()
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        torch.manual_seed(0)
        gen = mods["generators.generators"].ImplicitGenerator3d(mods["siren.siren"].SPATIALSIRENBASELINE, 16)
        gen.siren = mods["siren.siren"].SPATIALSIRENBASELINE(input_dim=3, z_dim=16, hidden_dim=8)
        torch.save(gen, tmp_path / "generator.pth")
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    out = tmp_path / "out"
    rc = render_cli.main([str(tmp_path), "--out", str(out), "--num", "1", "--identities", "1",
                          "--views", "2", "--pitches", "1", "--resolution", "4", "--steps", "3",
                          "--frames", "0", "--no-progress", "--device", "cpu", "--no-ema"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"samples.png", "depth.png", "depth.json", "multiview.png",
                                               "multiview_id0.png"}


# ------------------------------------------------------------------------------------ depth images
def test_depth_mapping_gives_known_grey_levels_and_background():
    depth = torch.tensor([[[0.9, 1.0, 1.05, 1.2, 0.5]]])                  # [1, 1, 5]
    d = imaging.depth_to_rgb(depth, 0.9, 1.1)
    torch.testing.assert_close(d[0, 0, 0], torch.tensor([1.0, 0.5, 0.25, 0.0, 1.0]))   # near white, clamped
    assert d.shape == (1, 3, 1, 5) and torch.equal(d[:, 0], d[:, 2])
    # With opacity: surface depth = depth / opacity; pixels under the threshold are background.
    opacity = torch.tensor([[[0.5, 1.0, 0.8, 0.49, 0.0]]])
    raw = torch.tensor([[[0.5, 1.0, 0.84, 0.5, 0.0]]])                  # surfaces at 1.0, 1.0, 1.05
    d = imaging.depth_to_rgb(raw, 0.9, 1.1, opacity, threshold=0.5)
    torch.testing.assert_close(d[0, :, 0, :3], torch.tensor([0.5, 0.5, 0.25]).expand(3, 3))
    bg = torch.tensor(imaging.DEPTH_BACKGROUND).reshape(3, 1)
    torch.testing.assert_close(d[0, :, 0, 3:], bg.expand(3, 2))
    assert len(set(imaging.DEPTH_BACKGROUND)) > 1                       # not a grey a depth could take
    with pytest.raises(ValueError, match="same shape"):
        imaging.depth_to_rgb(raw, 0.9, 1.1, opacity[..., :2])


def test_depth_range_is_robust_percentiles_of_the_foreground():
    # 100 foreground pixels at 1.00 .. 1.99 in two maps, plus background at depth 0 and an outlier
    values = 1 + torch.arange(100, dtype=torch.float32) / 100
    depths = [values[:60].reshape(1, 6, 10), torch.cat([values[60:], torch.zeros(4)]).reshape(1, 4, 11)]
    opac = [torch.ones(1, 6, 10), torch.cat([torch.ones(40), torch.zeros(4)]).reshape(1, 4, 11)]
    near, far = imaging.depth_range(depths, opac, 0.5, (0, 100))
    assert (near, far) == pytest.approx((1.0, 1.99))
    near, far = imaging.depth_range(depths, opac, 0.5, (10, 90))
    assert (near, far) == pytest.approx((float(np.percentile(values.numpy(), 10)),
                                         float(np.percentile(values.numpy(), 90))))
    assert imaging.depth_range([torch.ones(1, 2, 2)], [torch.zeros(1, 2, 2)]) is None
    with pytest.raises(ValueError, match="percentiles"):
        imaging.depth_range(depths, opac, 0.5, (50, 10))


def test_depth_images_share_one_range():
    o = RenderOptions(ray_start=0.5, ray_end=2.0)
    near_frame = torch.full((1, 2, 2), 1.0)
    far_frame = torch.full((1, 2, 2), 1.2)
    ones = torch.ones(1, 2, 2)
    (a, b), info = render.depth_images([near_frame, far_frame], [ones, ones], o)
    # one range over both frames: the first is all white, the second all black (a range per frame
    # would give both the same grey)
    assert (info["near"], info["far"]) == pytest.approx((1.0, 1.2))
    assert a.eq(1).all() and b.eq(0).all()
    assert info["foreground_fraction"] == 1 and "percentiles 1-99" in info["range"]
    assert render.describe_depth(info).startswith("1.0000 (white) to 1.2000 (black), foreground depth")
    (a,), info = render.depth_images([near_frame], [ones], o, "rays")
    assert (info["near"], info["far"]) == (0.5, 2.0)
    torch.testing.assert_close(a, torch.full((1, 3, 2, 2), 1 - 0.5 / 1.5))
    (a,), info = render.depth_images([near_frame], [ones], o, (1.0, 3.0))
    assert info["range"] == "given" and a.eq(1).all()
    (a,), info = render.depth_images([near_frame], [torch.zeros(1, 2, 2)], o)        # no foreground
    assert (info["near"], info["far"]) == (0.5, 2.0) and "no foreground" in info["range"]
    assert info["foreground_fraction"] == 0
    torch.testing.assert_close(a[0, :, 0, 0], torch.tensor(imaging.DEPTH_BACKGROUND))
    for bad in ("far", (2.0, 1.0)):
        with pytest.raises(ValueError, match="depth_range"):
            render.depth_images([near_frame], [ones], o, bad)


def test_opacity_is_the_sum_of_the_compositing_weights(tiny_ckpt):
    _, g = tiny_ckpt
    o = RenderOptions.from_curriculum(get_curriculum("demo")).replace(img_size=6, num_steps=4)
    f, p = render.latents(g, 2, seed=1)
    px, d, a = render.render_images(g, f, p, 1.5, 1.6, o, with_opacity=True)
    px2, d2 = render.render_images(g, f, p, 1.5, 1.6, o)
    assert torch.equal(px, px2) and torch.equal(d, d2) and a.shape == (2, 6, 6)
    torch.manual_seed(0)                                 # render_images' importance-sampling seed
    expected = torch.stack([g.render(frequencies=f[i:i + 1], phase_shifts=p[i:i + 1], pitch=1.5, yaw=1.6,
                                     options=o.replace(max_batch_size=render.RENDER_CHUNK), jitter=False)
                            ["weights"].sum((-2, -1)).reshape(6, 6) for i in range(2)])
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-6)
    assert (a >= 0).all() and (a <= 1 + 1e-5).all()


def test_cli_writes_depth_ranges(tiny_ckpt, tmp_path, capsys):
    import json
    path, _ = tiny_ckpt
    base = [str(path), "--num", "1", "--identities", "1", "--views", "1", "--pitches", "1", "--resolution", "6",
            "--steps", "3", "--frames", "2", "--depth-video", "--no-progress", "--device", "cpu"]
    assert render_cli.main([*base, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    for stem in ("depth", "video_depth"):
        info = json.loads((tmp_path / "a" / f"{stem}.json").read_text())
        assert set(info) >= {"near", "far", "range", "opacity_threshold", "foreground_fraction"}
        assert f"{stem} range: {render.describe_depth(info)}" in printed
    assert render_cli.main([*base, "--out", str(tmp_path / "b"), "--depth-range", "rays"]) == 0
    info = json.loads((tmp_path / "b" / "video_depth.json").read_text())
    cur = get_curriculum("demo")
    assert (info["near"], info["far"]) == (cur["ray_start"], cur["ray_end"])
    assert render_cli.main([*base, "--out", str(tmp_path / "c"), "--depth-range", "0.9,1.1"]) == 0
    assert json.loads((tmp_path / "c" / "depth.json").read_text())["range"] == "given"
    for bad in ("near", "1.1,0.9", "1,2,3"):
        assert render_cli.main([*base, "--out", str(tmp_path / "d"), "--depth-range", bad]) == 2
        assert "--depth-range" in capsys.readouterr().err
