"""pigan.render and pigan.imaging: the CLI writes its files from a tiny checkpoint; library calls."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pigan import imaging, render
from pigan.checkpoints import save_checkpoint
from pigan.curriculums import get_curriculum
from pigan.generators import ImplicitGenerator3d
from pigan.render_options import RenderOptions


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
    rc = render.main([str(path), "--out", str(out), "--num", "4", "--identities", "2", "--views", "3",
                      "--pitches", "2", "--resolution", "8", "--steps", "4", "--frames", "3",
                      "--no-progress", "--device", "cpu", "--backend", "reference"])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"samples.png", "depth.png", "multiview.png", "multiview_id0.png", "multiview_id1.png",
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
    rc = render.main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        render.main([str(tmp_path / "x.pt"), "--out", str(tmp_path / "o"), "--resolution", "0"])


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
    d = imaging.depth_to_rgb(torch.tensor([[[0.9, 1.1]]]), 0.9, 1.1)
    torch.testing.assert_close(d[0, :, 0, 0], torch.ones(3))           # near = bright
    torch.testing.assert_close(d[0, :, 0, 1], torch.zeros(3))
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
    rc = render.main([str(tmp_path), "--out", str(out), "--num", "1", "--identities", "1",
                      "--views", "2", "--pitches", "1", "--resolution", "4", "--steps", "3",
                      "--frames", "0", "--no-progress", "--device", "cpu", "--no-ema"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"samples.png", "depth.png", "multiview.png",
                                               "multiview_id0.png"}
