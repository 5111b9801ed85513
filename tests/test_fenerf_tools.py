"""FENeRF's tools on tiny semantic generators: `pigan render`'s semantic maps and shape x texture grid,
`pigan invert --mask`, `pigan edit` (refit_shape), `pigan eval`'s mIoU against a segmenter, and the
errors of each on bad input.

The test generator: a SemanticGenerator3d as small as tests/test_fenerf_model.py's, with its first
layer damped x0.3 (a smooth field, whose latents an inversion can follow), softplus densities (every
sample has a gradient) and its semantic head re-drawn with unit-scale weights: at FENeRF's
initialisation the head's logits vary by ~1e-4 over the image, so every pixel would get one label.
With the re-drawn head the label maps hold two to three classes and change with the shape code.
"""
import json
import math

import numpy as np
import pytest
import torch

from pigan import imaging, render
from pigan.checkpoints import save_checkpoint
from pigan.data import mean_iou, write_label_png
from pigan.model.fenerf import SemanticGenerator3d, semantic_labels
from pigan.model.render_options import RenderOptions

K, ZG, ZA = 4, 8, 5
CAMERA = {"fov": 12, "ray_start": 0.88, "ray_end": 1.12, "hierarchical_sample": False, "clamp_mode": "softplus",
          "h_stddev": 0.3, "v_stddev": 0.155}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)        # tiny ops: threading only adds synchronisation cost
    yield
    torch.set_num_threads(n)


def make_gen(seed=0):
    torch.manual_seed(seed)
    g = SemanticGenerator3d("SemanticSiren", ZG + ZA, z_geo_dim=ZG, z_app_dim=ZA, num_classes=K, hidden_dim=16,
                            map_hidden_dim=12, feature_grid_channels=3, feature_grid_size=5)
    with torch.no_grad():
        g.siren.network[0].layer.weight *= 0.3
        g.siren.color_layer_linear.weight *= 10
        for lin in g.siren.semantic_head:
            lin.weight.normal_(0, 1 / lin.weight.shape[1] ** 0.5)
            lin.bias.zero_()
    return g.eval()


def options(size=12, steps=6, **kw):
    return RenderOptions.from_curriculum(CAMERA, img_size=size, num_steps=steps).replace(**kw)


def save_semantic_checkpoint(path, g=None):
    g = g or make_gen()
    cur = {**CAMERA, "0": {"img_size": 12, "num_steps": 6, "batch_size": 2}}
    return save_checkpoint(path, generator=g, ema=g.state_dict(), config=cur)


# ---------------------------------------------------------------------------- render
@pytest.mark.parametrize("skip", [False, True])
def test_swap_grid_rows_share_the_shape_and_columns_the_texture(skip):
    g = make_gen()
    o = options(size=10, skip_empty=skip, hierarchical_sample=True)
    cells = render.render_swap(g, num=3, seed=2, psi=0.8, options=o)
    n = 3
    px, depth, opacity, sem = (cells[k].reshape(n, n, *cells[k].shape[1:])
                               for k in ("pixels", "depth", "opacity", "semantic"))
    assert px.shape == (n, n, 3, 10, 10) and sem.shape == (n, n, K, 10, 10)
    for j in range(1, n):                   # one shape per row: its geometry is the same field, bit for bit
        assert torch.equal(depth[:, j], depth[:, 0]) and torch.equal(opacity[:, j], opacity[:, 0])
        assert torch.equal(sem[:, j], sem[:, 0])
    assert (depth[0, 0] - depth[1, 0]).abs().max() > 1e-4                       # rows differ in shape
    assert (px[0, 0] - px[0, 1]).abs().max() > 1e-3                             # columns in texture
    f, p = cells["frequencies"].reshape(n, n, -1), cells["phase_shifts"].reshape(n, n, -1)
    geo, app = g.geometry_columns, g.appearance_columns
    assert torch.equal(f[:, :, geo], f[:, :1, geo].expand(-1, n, -1))          # rows share geometry columns
    assert torch.equal(p[:, :, app], p[:1, :, app].expand(n, -1, -1))          # columns share appearance ones
    # the diagonal is the sample grid of the same seed
    f0, p0 = render.latents(g, n, seed=2, psi=0.8)
    torch.testing.assert_close(torch.stack([f[i, i] for i in range(n)]), f0, rtol=0, atol=0)
    torch.testing.assert_close(torch.stack([p[i, i] for i in range(n)]), p0, rtol=0, atol=0)


def test_swap_needs_a_semantic_generator(tmp_path):
    from pigan.generators import ImplicitGenerator3d

    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8).eval()
    with pytest.raises(ValueError, match="semantic generator"):
        render.render_swap(g, 2, options=options())
    with pytest.raises(ValueError, match="swap needs a semantic generator"):
        render.write_samples(g, tmp_path / "o", num=1, swap=2, options=options())


def test_semantic_images_colour_the_label_map():
    sem = torch.full((1, K, 2, 3), -1.0)
    sem[0, 2, 0, 0] = 1.0                                   # class 3 at (0, 0); elsewhere class 1 (ties: first)
    opacity = torch.ones(1, 2, 3)
    opacity[0, 1, 2] = 0.5                                  # background
    labels = semantic_labels(sem, opacity)
    assert labels[0].tolist() == [[3, 1, 1], [1, 1, 0]]
    from pigan.data import colorize_labels
    torch.testing.assert_close(imaging.semantic_images(sem, opacity), colorize_labels(labels, K + 1))


def test_render_cli_writes_semantic_maps_and_the_swap_grid(tmp_path, capsys):
    from PIL import Image

    from pigan.cli import render as render_cli

    ckpt = save_semantic_checkpoint(tmp_path / "fenerf.pt")
    out = tmp_path / "out"
    rc = render_cli.main([str(ckpt), "--out", str(out), "--num", "4", "--identities", "2", "--views", "2",
                          "--pitches", "1", "--resolution", "6", "--steps", "3", "--frames", "2", "--depth-video",
                          "--interpolate", "0", "1", "--frames-per-seed", "1", "--swap", "3", "--no-progress",
                          "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    for stem in ("samples", "multiview", "multiview_id0", "multiview_id1", "swap"):
        assert {f"{stem}.png", f"{stem}_semantic.png"} <= names
        a, b = Image.open(out / f"{stem}.png"), Image.open(out / f"{stem}_semantic.png")
        assert a.size == b.size                              # the maps are laid out as the images
    for stem in ("video", "video_depth", "interpolation", "interpolation_semantic", "video_semantic"):
        assert f"{stem}.gif" in names
    assert Image.open(out / "swap.png").size == (3 * 8 + 2,) * 2                # 3 x 3 tiles of 6 px, 2 px padding
    # the semantic grid shows the palette's colours only
    from pigan.data import palette
    colours = {tuple(c) for c in palette(K + 1).tolist()} | {(255, 255, 255)}  # + the grid's padding
    shown = np.asarray(Image.open(out / "samples_semantic.png").convert("RGB")).reshape(-1, 3)
    pixels = {tuple(c) for c in shown.tolist()}
    assert pixels <= colours and len(pixels) >= 2
    # default: a 4 x 4 swap grid for a semantic checkpoint
    out2 = tmp_path / "out2"
    assert render_cli.main([str(ckpt), "--out", str(out2), "--num", "1", "--identities", "0", "--resolution", "4",
                            "--steps", "3", "--frames", "0", "--no-progress", "--device", "cpu"]) == 0
    assert Image.open(out2 / "swap.png").size == (4 * 6 + 2,) * 2
    out3 = tmp_path / "out3"
    assert render_cli.main([str(ckpt), "--out", str(out3), "--num", "1", "--identities", "0", "--resolution", "4",
                            "--steps", "3", "--frames", "0", "--swap", "0", "--no-progress", "--device", "cpu"]) == 0
    assert not (out3 / "swap.png").exists() and (out3 / "samples_semantic.png").exists()


def test_render_cli_refuses_swap_on_a_pigan_checkpoint(tmp_path, capsys):
    from pigan.cli import render as render_cli
    from pigan.generators import ImplicitGenerator3d

    g = ImplicitGenerator3d("SPATIALSIRENBASELINE", 8, hidden_dim=8, map_hidden_dim=8)
    ckpt = save_checkpoint(tmp_path / "pigan.pt", generator=g, config=CAMERA)
    rc = render_cli.main([str(ckpt), "--out", str(tmp_path / "o"), "--swap", "2", "--device", "cpu"])
    assert rc == 2
    assert "--swap needs a semantic (FENeRF) checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert render_cli.main([str(ckpt), "--out", str(tmp_path / "o"), "--swap", "-1", "--device", "cpu"]) == 2


# ---------------------------------------------------------------------------- invert with a mask, edit
def known_render(g, z, o):
    """(image [3, H, W], label map [1, H, W], frequencies, phase shifts) of latent z rendered at the mean pose."""
    from pigan.invert import render_outputs

    with torch.no_grad():
        f, p = g.siren.mapping_network(z)
        out = render_outputs(g, f, p, o, jitter=False)
    return out["pixels"][0], semantic_labels(out["semantic"], out["opacity"]), f, p


@pytest.mark.parametrize("seed", [0, 2])
def test_invert_with_a_mask_lowers_both_losses(seed):
    from pigan.invert import InvertOptions, invert

    g = make_gen(seed)
    o = options(size=12, steps=6)
    image, labels, _, _ = known_render(g, torch.randn(1, ZG + ZA, generator=torch.Generator().manual_seed(100 + seed)),
                                       o)
    assert len(labels.unique()) >= 3                         # a mask with parts to fit
    params = {k: v.clone() for k, v in g.state_dict().items()}
    res = invert(g, image, InvertOptions(iterations=150, num_avg=500, render=o, seed=1), mask=labels)
    assert all(torch.equal(v, params[k]) for k, v in g.state_dict().items())           # generator untouched
    start = res["trace"][0]
    # FENeRF's weights: 0.2 x pixel MSE + 1 x semantic MSE; both parts fall (measured on seeds 0-2:
    # pixels / 1.3-1.9, semantic planes / 6-11)
    assert res["mse"] < 0.85 * start["mse"] and res["semantic_mse"] < 0.25 * start["semantic_mse"]
    assert res["loss"] == pytest.approx(0.2 * res["mse"] + res["semantic_mse"], rel=1e-6)
    assert res["labels"].shape == labels.shape and torch.equal(res["mask"].cpu(), labels)
    miou, _ = mean_iou(res["labels"], labels, K + 1)
    assert res["miou"] == pytest.approx(miou) and res["miou"] > 0.45
    # the mask carries what the image does not: an image-only fit recovers the label map worse
    plain = invert(g, image, InvertOptions(iterations=150, num_avg=500, render=o, seed=1))
    assert "mask" not in plain and plain["labels"].shape == labels.shape                 # the fitted map, always
    assert mean_iou(plain["labels"], labels, K + 1)[0] < res["miou"]


@pytest.mark.parametrize("seed", [0, 1])
def test_refit_shape_moves_only_the_geometry_towards_the_edited_mask(seed):
    from pigan.invert import InvertOptions, edit_scores, refit_shape

    g = make_gen(seed)
    o = options(size=12, steps=6)
    z = torch.randn(1, ZG + ZA, generator=torch.Generator().manual_seed(100 + seed))
    image, labels, f, p = known_render(g, z, o)
    # the edited mask: the label map of another shape code under the same texture code
    z_edit = torch.cat([torch.randn(1, ZG, generator=torch.Generator().manual_seed(7 + seed)), z[:, ZG:]], 1)
    _, target, _, _ = known_render(g, z_edit, o)
    res = refit_shape(g, f, p, target, InvertOptions(iterations=150, render=o, seed=1), render=o)
    app, geo = g.appearance_columns, g.geometry_columns
    assert torch.equal(res["frequencies"][:, app], f[:, app]) and torch.equal(res["phase_shifts"][:, app], p[:, app])
    assert (res["frequencies"][:, geo] - f[:, geo]).abs().max() > 0.05
    assert res["semantic_mse"] < 0.2 * res["start"]["semantic_mse"]
    scores = edit_scores({"fit": image.unsqueeze(0), "labels": labels}, res, target, K)
    # measured on seeds 0-2: the edited region's mIoU 0 -> 0.71-0.97, the whole image's 0.14-0.26 -> 0.70-0.98
    assert scores["region_pixels"] > 20 and scores["region_miou_before"] == 0
    assert scores["region_miou_after"] > 0.5 and scores["miou_after"] > scores["miou_before"] + 0.3
    assert 10 < scores["unedited_psnr"] < 60
    # an unchanged mask is an empty edit
    same = edit_scores({"fit": image.unsqueeze(0), "labels": labels}, {"fit": image.unsqueeze(0), "labels": labels},
                       labels, K)
    assert same["region_pixels"] == 0 and math.isnan(same["region_miou_after"]) and same["unedited_psnr"] == math.inf


def test_refit_shape_errors():
    from pigan.common import UsageError
    from pigan.generators import ImplicitGenerator3d
    from pigan.invert import InvertOptions, refit_shape

    g = make_gen()
    f, p = render.latents(g, 1)
    mask = torch.zeros(1, 6, 6, dtype=torch.long)
    quick = InvertOptions(iterations=1)
    five = mask.clone()
    five[0, 2, 3] = 5
    with pytest.raises(UsageError, match=r"class indices 0\.\.5.*expected values in 0\.\.4"):
        refit_shape(g, f, p, five, quick)
    with pytest.raises(UsageError, match="integer class indices"):
        refit_shape(g, f, p, mask.float(), quick)
    with pytest.raises(UsageError, match="square"):
        refit_shape(g, f, p, mask[:, :4], quick)
    with pytest.raises(UsageError, match=r"one latent's modulations \[1, D\]"):
        refit_shape(g, f.expand(2, -1), p, mask, quick)
    with pytest.raises(UsageError, match="generator's 176 columns"):
        refit_shape(g, f[:, :100], p[:, :100], mask, quick)
    with pytest.raises(UsageError, match="semantic_weight > 0"):
        refit_shape(g, f, p, mask, quick.replace(semantic_weight=0))
    pigan = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8)
    with pytest.raises(UsageError, match="needs a semantic"):
        refit_shape(pigan, f, p, mask, quick)


def _write_pair(tmp_path, g, o, seed=0, stem="face"):
    """An image and its label PNG rendered from a known latent: (image path, mask path, labels [1, H, W])."""
    from PIL import Image

    image, labels, _, _ = known_render(g, torch.randn(1, ZG + ZA, generator=torch.Generator().manual_seed(seed)), o)
    img_path = tmp_path / f"{stem}.png"
    Image.fromarray(imaging.to_uint8(imaging.to_unit(image))).save(img_path)
    mask_path = tmp_path / f"{stem}_mask.png"
    write_label_png(mask_path, labels[0])
    return img_path, mask_path, labels


def test_invert_cli_with_a_mask_writes_the_semantic_outputs(tmp_path, capsys):
    from pigan.cli.invert import main

    g = make_gen()
    ckpt = save_semantic_checkpoint(tmp_path / "fenerf.pt", g)
    img, mask, labels = _write_pair(tmp_path, g, options())
    out = tmp_path / "out"
    rc = main([str(ckpt), str(img), "--mask", str(mask), "--out", str(out), "--iterations", "3", "--num-avg", "16",
               "--views", "2", "--frames", "2", "--no-progress", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "semantic mse" in text and "mIoU" in text and "against the mask" in text
    names = {p.name for p in out.iterdir()}
    assert {"face_fit.png", "face_semantic.png", "face_labels.png", "face_views_semantic.png",
            "face_latent.pt"} <= names
    saved = torch.load(out / "face_latent.pt", weights_only=True)
    assert saved["labels"].shape == labels.shape and 0 <= saved["miou"] <= 1
    from pigan.data import read_label_png
    assert torch.equal(read_label_png(out / "face_labels.png"), saved["labels"][0])
    # a mask twice the image's size is a scaled copy: resized to the fit resolution
    from PIL import Image
    big = tmp_path / "big.png"
    Image.open(mask).resize((24, 24), Image.Resampling.NEAREST).save(big)
    assert main([str(ckpt), str(img), "--mask", str(big), "--out", str(tmp_path / "o2"), "--iterations", "1",
                 "--num-avg", "8", "--views", "1", "--frames", "1", "--no-progress", "--device", "cpu"]) == 0
    from pigan.invert import load_mask
    assert torch.equal(load_mask(big, 12, g, image=img), labels)           # 2x2 blocks of one class: exact


def test_invert_cli_mask_errors_exit_2(tmp_path, capsys):
    from PIL import Image

    from pigan.cli.invert import main
    from pigan.generators import ImplicitGenerator3d

    g = make_gen()
    ckpt = save_semantic_checkpoint(tmp_path / "fenerf.pt", g)
    img, mask, labels = _write_pair(tmp_path, g, options())
    wide = tmp_path / "wide.png"
    write_label_png(wide, torch.zeros(12, 20, dtype=torch.long))
    many = tmp_path / "many.png"
    write_label_png(many, torch.full((12, 12), 7, dtype=torch.long))
    colour = tmp_path / "colour.png"
    Image.new("RGB", (12, 12), (10, 200, 30)).save(colour)
    pigan = save_checkpoint(tmp_path / "pigan.pt", generator=ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8,
                                                                                    map_hidden_dim=8), config=CAMERA)
    out = tmp_path / "never"
    base = ["--out", str(out), "--iterations", "1", "--no-progress", "--device", "cpu"]
    cases = [([str(ckpt), str(img), "--mask", str(wide)], "is 20x12 pixels but the image"),
             ([str(ckpt), str(img), "--mask", str(many)], "class indices up to 7, but the generator has 4 classes"),
             ([str(ckpt), str(img), "--mask", str(colour)], "is not a label image"),
             ([str(ckpt), str(img), "--mask", str(tmp_path / "none.png")], "does not exist"),
             ([str(ckpt), str(img), "--mask", str(tmp_path)], "a file for one image"),
             ([str(pigan), str(img), "--mask", str(mask)], "--mask needs a semantic (FENeRF) checkpoint"),
             ([str(ckpt), str(img), "--mask", str(mask), "--semantic-weight", "-1"], "--semantic-weight"),
             ([str(ckpt), str(img), "--mask", str(mask), "--image-weight", "0", "--semantic-weight", "0"],
              "nothing to match"),
             ([str(ckpt), str(img), "--background-mask"], "--background-mask needs --mask")]
    for argv, message in cases:
        assert main(argv + base) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not out.exists()
    # a folder of images with a folder of masks: pairs by stem; a missing one is named before any fit
    folder, masks = tmp_path / "imgs", tmp_path / "masks"
    folder.mkdir()
    masks.mkdir()
    (folder / "a.png").write_bytes(img.read_bytes())
    (folder / "b.png").write_bytes(img.read_bytes())
    (masks / "a.png").write_bytes(mask.read_bytes())
    assert main([str(ckpt), str(folder), "--mask", str(masks)] + base) == 2
    assert "no mask for 1 image(s)" in capsys.readouterr().err and not out.exists()
    (masks / "b.png").write_bytes(mask.read_bytes())
    assert main([str(ckpt), str(folder), "--mask", str(masks), "--num-avg", "8", "--views", "1", "--frames", "1"]
                + base) == 0
    assert (out / "a_semantic.png").exists() and (out / "b_semantic.png").exists()


def test_edit_cli_writes_the_edit_and_its_scores(tmp_path, capsys):
    from pigan.cli import main as pigan_main

    g = make_gen(1)
    ckpt = save_semantic_checkpoint(tmp_path / "fenerf.pt", g)
    o = options()
    img, mask, labels = _write_pair(tmp_path, g, o, seed=101)
    z_edit = torch.randn(1, ZG + ZA, generator=torch.Generator().manual_seed(8))
    _, edited, _, _ = known_render(g, z_edit, o)
    edited_path = tmp_path / "edited.png"
    write_label_png(edited_path, edited[0])
    out = tmp_path / "out"
    rc = pigan_main(["edit", str(ckpt), str(img), "--mask", str(edited_path), "--original-mask", str(mask),
                     "--out", str(out), "--iterations", "20", "--edit-iterations", "60", "--num-avg", "64",
                     "--views", "3", "--no-progress", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "inversion: best mse" in text and "edited region" in text and "dB PSNR" in text
    names = {p.name for p in out.iterdir()}
    assert {"face_edit.png", "face_edit_views.png", "face_edit_labels.png", "face_edit_loss.png",
            "face_edit_latent.pt", "face_edit.json"} <= names
    record = json.loads((out / "face_edit.json").read_text())
    scores = record["scores"]
    assert scores["region_pixels"] > 0 and scores["region_miou_after"] > scores["region_miou_before"]
    assert record["checks"][0]["iteration"] == 0 and record["settings"]["edit_iterations"] == 60
    saved = torch.load(out / "face_edit_latent.pt", weights_only=True)
    app = g.appearance_columns
    assert torch.equal(saved["frequencies"][:, app], saved["before_frequencies"][:, app])
    assert torch.equal(saved["phase_shifts"][:, app], saved["before_phase_shifts"][:, app])
    # from the inversion's latent file instead of inverting again (no --original-mask: the region is
    # measured against the rendered label map)
    from pigan.cli.invert import main as invert_main
    assert invert_main([str(ckpt), str(img), "--out", str(tmp_path / "inv"), "--iterations", "5", "--num-avg", "16",
                        "--views", "1", "--frames", "1", "--no-progress", "--device", "cpu"]) == 0
    assert (tmp_path / "inv" / "face_semantic.png").exists()          # a semantic fit shows its map, mask or not
    capsys.readouterr()
    rc = pigan_main(["edit", str(ckpt), str(img), "--mask", str(edited_path), "--latent",
                     str(tmp_path / "inv" / "face_latent.pt"), "--out", str(tmp_path / "out2"),
                     "--edit-iterations", "5", "--views", "1", "--no-progress", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert "inversion:" not in capsys.readouterr().out and (tmp_path / "out2" / "face_edit.png").exists()


def test_edit_cli_errors_exit_2(tmp_path, capsys):
    from pigan.cli import main as pigan_main
    from pigan.generators import ImplicitGenerator3d

    g = make_gen()
    ckpt = save_semantic_checkpoint(tmp_path / "fenerf.pt", g)
    img, mask, _ = _write_pair(tmp_path, g, options())
    many = tmp_path / "many.png"
    write_label_png(many, torch.full((12, 12), 9, dtype=torch.long))
    wide = tmp_path / "wide.png"
    write_label_png(wide, torch.zeros(12, 30, dtype=torch.long))
    pigan = save_checkpoint(tmp_path / "pigan.pt", generator=ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8,
                                                                                    map_hidden_dim=8), config=CAMERA)
    bad_latent = tmp_path / "bad.pt"
    torch.save({"frequencies": torch.zeros(1, 5), "phase_shifts": torch.zeros(1, 5), "pitch": 1.0, "yaw": 1.0},
               bad_latent)
    out = tmp_path / "never"
    base = ["--out", str(out), "--iterations", "1", "--no-progress", "--device", "cpu"]
    with pytest.raises(SystemExit) as exc:                  # argparse's own errors exit 2 by themselves
        pigan_main(["edit", str(ckpt), str(img)] + base)
    assert exc.value.code == 2 and "the following arguments are required: --mask" in capsys.readouterr().err
    cases = [(["edit", str(tmp_path / "no.pt"), str(img), "--mask", str(mask)], "does not exist"),
             (["edit", str(ckpt), str(tmp_path / "no.png"), "--mask", str(mask)], "image"),
             (["edit", str(ckpt), str(img), "--mask", str(tmp_path / "no.png")], "--mask"),
             (["edit", str(ckpt), str(img), "--mask", str(many)], "class indices up to 9"),
             (["edit", str(ckpt), str(img), "--mask", str(mask), "--original-mask", str(wide)],
              "--original-mask"),
             (["edit", str(pigan), str(img), "--mask", str(mask)], "needs a semantic (FENeRF) checkpoint"),
             (["edit", str(ckpt), str(img), "--mask", str(mask), "--latent", str(bad_latent)],
              "this generator takes [1, 176]"),
             (["edit", str(ckpt), str(img), "--mask", str(mask), "--edit-iterations", "0"], "--edit-iterations"),
             (["edit", str(ckpt), str(img), "--mask", str(mask), "--background-mask"], "needs --original-mask")]
    for argv, message in cases:
        assert pigan_main(argv + base) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not out.exists()


# ---------------------------------------------------------------------------- eval: mIoU against a segmenter
class ColourSegmenter(torch.nn.Module):
    """A fixed 1x1 convolution of the colours: logits [B, classes, H, W] (a stand-in for a face parser)."""

    def __init__(self, classes=K + 1):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, classes, 1)

    def forward(self, x):
        return self.conv(x) * 20


class ConstantSegmenter(torch.nn.Module):
    """Every pixel is class ``label``."""

    def __init__(self, label):
        super().__init__()
        self.label, self.classes = label, K + 1

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.classes, x.shape[2], x.shape[3])
        out[:, self.label] = 1.0
        return out


class ChannelCheckingExtractor:
    name = "test-channels"

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(tuple(images.shape))
        f = torch.nn.functional.adaptive_avg_pool2d(images.double() / 255, 2).flatten(1)
        return f, None


def _scripted(module, path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)               # torch.jit's deprecation notices
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_semantic_agreement_names_classes_and_pools_pixels():
    from pigan.evaluate import class_names, semantic_agreement

    rendered = torch.tensor([[[0, 1], [1, 2]], [[2, 2], [0, 0]]])
    segmented = torch.tensor([[[0, 1], [2, 2]], [[2, 2], [0, 1]]])
    r = semantic_agreement(rendered, segmented, K, "seg")
    # pooled over both images: background 2/3 (3 rendered, 2 segmented, 2 shared), skin 1/3, hair 3/4
    assert r["per_class_iou"] == {"background": pytest.approx(2 / 3), "skin": pytest.approx(1 / 3),
                                  "hair": pytest.approx(3 / 4), "eyes": None, "mouth": None}
    assert r["miou"] == pytest.approx((2 / 3 + 1 / 3 + 3 / 4) / 3) and r["miou_classes"] == 3
    assert r["segmenter"] == "seg" and r["semantic_images"] == 2
    assert class_names(18)[13] == "hair" and class_names(2) == ("background", "class_1", "class_2")


def test_generated_features_with_a_segmenter(tmp_path):
    from pigan import evaluate as ev
    from pigan.metrics import TorchScriptSegmenter

    pytest.importorskip("torch_fidelity")
    g = make_gen()
    o = options(size=8, steps=4)
    seg = TorchScriptSegmenter(_scripted(ColourSegmenter(), tmp_path / "seg.pt"), num_classes=K + 1)
    ex = ChannelCheckingExtractor()
    feats, logits, kept, (rendered, segmented) = ev.generated_features(g, ex, o, count=5, size=8, batch_size=2,
                                                                       seed=1, keep_images=5, segmenter=seg)
    assert set(ex.seen) == {(2, 3, 8, 8), (1, 3, 8, 8)}                    # only the image channels reach it
    assert feats.shape == (5, 12) and logits is None
    assert rendered.shape == segmented.shape == (5, 8, 8) and rendered.dtype == torch.uint8
    assert torch.equal(segmented.long(), seg(kept))                        # the segmenter saw the rendered images
    again = ev.generated_features(g, ChannelCheckingExtractor(), o, count=5, size=8, batch_size=2, seed=1,
                                  segmenter=seg)
    assert torch.equal(again[3][0], rendered) and torch.equal(again[0], feats)
    # without a segmenter, the same three items as for any generator
    assert len(ev.generated_features(g, ChannelCheckingExtractor(), o, count=2, size=8, batch_size=2)) == 3
    # a constant segmenter: IoU of its class = that class's share of the rendered pixels, 0 for the others
    hair = TorchScriptSegmenter(_scripted(ConstantSegmenter(2), tmp_path / "c.pt"), num_classes=K + 1)
    _, _, _, (r2, s2) = ev.generated_features(g, ChannelCheckingExtractor(), o, count=5, size=8, batch_size=2,
                                              seed=1, segmenter=hair)
    scores = ev.semantic_agreement(r2, s2, K)["per_class_iou"]
    assert scores["hair"] == pytest.approx((r2 == 2).double().mean().item())
    for name, c in (("background", 0), ("skin", 1), ("eyes", 3), ("mouth", 4)):
        assert scores[name] == (0.0 if (r2 == c).any() else None)
    from pigan.generators import ImplicitGenerator3d
    plain = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8).eval()
    with pytest.raises(ValueError, match="a semantic generator is needed"):
        ev.generated_features(plain, ChannelCheckingExtractor(), o, count=2, size=8, segmenter=seg)


def test_segmenter_checks_its_output(tmp_path):
    from pigan.metrics import TorchScriptSegmenter

    wrong = TorchScriptSegmenter(_scripted(ColourSegmenter(K + 2), tmp_path / "w.pt"), num_classes=K + 1)
    with pytest.raises(ValueError, match=r"returned \(1, 6, 4, 4\).*expected logits \[1, 5, 4, 4\]"):
        wrong(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="images must be a tensor"):
        wrong(torch.zeros(1, 4, 4))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript module"):
        TorchScriptSegmenter(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TorchScriptSegmenter(tmp_path / "none.pt")


def test_eval_cli_reports_miou_with_a_segmenter(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch_fidelity")
    from inputs import blocky_images
    from pigan import metrics
    from pigan.cli import eval as eval_cli
    from pigan.generators import ImplicitGenerator3d

    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(metrics, "InceptionExtractor", lambda weights, device: ChannelCheckingExtractor())
    ckpt = save_semantic_checkpoint(tmp_path / "fenerf.pt")
    real = blocky_images(tmp_path / "real", 8, 8)
    seg = _scripted(ColourSegmenter(), tmp_path / "seg.pt")
    out = tmp_path / "eval.json"
    common = ["--real", str(real), "--real-count", "8", "--fake-count", "4", "--size", "8", "--batch-size", "2",
              "--kid-subset-size", "4", "--kid-subsets", "2", "--no-progress", "--device", "cpu"]
    assert eval_cli.main([str(ckpt), *common, "--segmenter", str(seg), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert 0 <= result["miou"] <= 1 and set(result["per_class_iou"]) == {"background", "skin", "hair", "eyes", "mouth"}
    assert result["semantic_images"] == 4 and result["segmenter"].startswith("TorchScript segmenter seg.pt sha256:")
    assert "mIoU" in printed and f"{result['miou']:.3f}" in printed and "fid" in result
    # without --segmenter: no mIoU
    assert eval_cli.main([str(ckpt), *common, "--json", str(tmp_path / "plain.json")]) == 0
    assert "miou" not in json.loads((tmp_path / "plain.json").read_text())
    # errors: exit 2, one line, nothing written
    pigan = save_checkpoint(tmp_path / "pigan.pt", generator=ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8,
                                                                                    map_hidden_dim=8), config=CAMERA)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    wrong = _scripted(ColourSegmenter(K + 3), tmp_path / "wrong.pt")
    capsys.readouterr()
    for ck, s, message in ((pigan, seg, "--segmenter needs a semantic (FENeRF) checkpoint"),
                           (ckpt, tmp_path / "none.pt", "does not exist"),
                           (ckpt, tmp_path / "junk.pt", "not a TorchScript module"),
                           (ckpt, wrong, "expected logits [2, 5, 8, 8]")):
        bad = tmp_path / "bad.json"
        assert eval_cli.main([str(ck), *common, "--segmenter", str(s), "--json", str(bad)]) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not bad.exists()


def test_mask_background_blackens_the_background():
    from pigan.common import UsageError
    from pigan.invert import mask_background

    image = torch.rand(3, 2, 3) * 2 - 1
    labels = torch.tensor([[0, 1, 2], [3, 0, 4]])
    out = mask_background(image, labels)
    assert torch.equal(out[:, labels == 0], torch.full((3, 2), -1.0))
    assert torch.equal(out[:, labels != 0], image[:, labels != 0])
    with pytest.raises(UsageError, match="same size"):
        mask_background(image, labels[:, :2])
