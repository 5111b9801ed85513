"""scripts/distill_fenerf.py: the analytic semantic heads it regresses on (the dataset's heads, labels
and renders at the dataset's mouth and hairline; the two shape extensions; the geometry / appearance
split of the targets) and a short run end to end."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pigan.checkpoints import load_for_render, load_generator
from pigan.data import (FACE_CLASSES, default_camera, face_part_labels, render_face_labels, render_shapes,
                        surface_colour)
from pigan.model.fenerf import SemanticGenerator3d

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "distill_fenerf.py"
_spec = importlib.util.spec_from_file_location("distill_fenerf", _PATH)
distill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(distill)

RADIUS = distill.distill_faces.head_radius(default_camera())
Z_GEO, Z_APP = 8, 10


def _heads(n=5, seed=0, **edit):
    z = torch.randn(n, Z_GEO + Z_APP, generator=torch.Generator().manual_seed(seed))
    return z, distill.edit_head(distill.head_params(z, Z_GEO, RADIUS), **edit)


def _sphere(n, r, seed=1):
    return F.normalize(torch.randn(n, r, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_dataset_head_labels_and_colours_at_surface_points():
    _, params = _heads(mouth_scale=1.0, hairline=0.0)
    u = _sphere(5, 4000)
    # concentrate half the points on the face, where the eyes and the mouth are
    u[:, ::2] = F.normalize(u[:, ::2] * 0.4 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    labels = distill.part_labels(params, u)
    assert torch.equal(labels, face_part_labels(params, u))
    assert set(labels.unique().tolist()) == {1, 2, 3, 4}
    assert torch.allclose(distill.head_colour(params, u), surface_colour(params, u), atol=1e-6)
    w = distill.part_weights(params, u)
    assert torch.allclose(w.sum(-1), torch.ones(5, 4000), atol=1e-6) and w.min() >= 0


def test_dataset_head_renders_match_the_dataset_renderer():
    _, params = _heads(mouth_scale=1.0, hairline=0.0)
    gen = torch.Generator().manual_seed(3)
    pitch = math.pi / 2 + 0.15 * torch.randn(5, 1, generator=gen)
    yaw = math.pi / 2 + 0.5 * torch.randn(5, 1, generator=gen)
    rgb, labels = distill.render_heads(params, pitch, yaw, 37, 12.0)
    assert torch.allclose(rgb, render_shapes(params, pitch, yaw, 37, 12.0), atol=1e-5)
    assert torch.equal(labels, render_face_labels(params, pitch, yaw, 37, 12.0))


def test_the_field_labels_the_surface_points_inside_and_outside():
    _, params = _heads()
    u = _sphere(5, 500)
    axes = torch.as_tensor(params["axes"], dtype=torch.float32)[:, None]
    for scale in (0.999, 0.6):                        # just under the surface, deep inside: the radial projection
        sigma, rgb, w = distill.semantic_field(params, u * axes * scale)
        assert (sigma > 0).all()
        assert torch.equal(w.argmax(-1) + 1, distill.part_labels(params, u))
        # u re-normalised from x / axes differs by ~1e-7; the eyes' mask rises by ~1e3 per unit there
        assert torch.allclose(rgb, distill.head_colour(params, u).clamp(0, 1), atol=1e-4)
    sigma, _, _ = distill.semantic_field(params, u * axes * 1.2)
    assert (sigma == -1).all()                        # outside: no density (the loss zeroes the logits there)


def test_geometry_targets_depend_on_z_geo_only():
    z, _ = _heads(n=4)
    x = (torch.rand(4, 3000, 3, generator=torch.Generator().manual_seed(5)) * 2 - 1) * 0.11
    z2 = z.clone()
    z2[:, Z_GEO:] = torch.randn(4, Z_APP)             # another appearance code
    a = distill.semantic_field(distill.head_params(z, Z_GEO, RADIUS), x)
    b = distill.semantic_field(distill.head_params(z2, Z_GEO, RADIUS), x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])          # density and labels unchanged
    assert not torch.allclose(a[1], b[1], atol=1e-3)                    # colours changed
    z3 = z.clone()
    z3[:, 3:5] += 1.5                                  # mouth and hairline units of the geometry code
    c = distill.semantic_field(distill.head_params(z3, Z_GEO, RADIUS), x)
    assert torch.equal(a[0], c[0]) and not torch.equal(a[2], c[2])


def test_shape_extensions_move_the_mouth_and_the_hairline():
    _, params = _heads(n=3)
    counts = {}
    for m in (0.75, 1.0, 1.5):
        _, labels = distill.render_heads(distill.edit_head(params, mouth_scale=m), math.pi / 2, math.pi / 2,
                                         256, 12.0)
        mouth = (labels == 4).double()
        rows = torch.arange(256, dtype=torch.float64)
        counts[m] = (mouth.sum((1, 2)), (mouth.sum(2) * rows).sum(1) / mouth.sum((1, 2)))
    for m in (0.75, 1.5):                              # area ~ scale^2, about a fixed centre
        ratio = counts[m][0] / counts[1.0][0]
        assert ((ratio > 0.8 * m * m) & (ratio < 1.2 * m * m)).all(), (m, ratio)
        assert (counts[m][1] - counts[1.0][1]).abs().max() < 1.0
    hair = [(distill.render_heads(distill.edit_head(params, hairline=h), math.pi / 2, math.pi / 2, 64, 12.0)[1]
             == 2).sum((1, 2)) for h in (-0.1, 0.0, 0.2)]
    assert ((hair[0] > hair[1]) & (hair[1] > hair[2])).all()            # a higher hairline, less hair


def test_latent_for_sets_the_edit_and_nothing_else():
    z, params = _heads(n=3)
    z2 = distill.latent_for(z, mouth_scale=1.3, hairline=torch.tensor([-0.05, 0.0, 0.1]))
    p2 = distill.head_params(z2, Z_GEO, RADIUS)
    assert np.allclose(p2["mouth_scale"], 1.3) and np.allclose(p2["hairline"], [-0.05, 0.0, 0.1])
    assert torch.equal(torch.cat([z2[:, :3], z2[:, 5:]], 1), torch.cat([z[:, :3], z[:, 5:]], 1))
    for key in ("axes", "color1", "color2", "color3"):
        assert np.array_equal(p2[key], params[key])
    with pytest.raises(ValueError, match="mouth_scale"):
        distill.latent_for(z, mouth_scale=2.0)
    with pytest.raises(ValueError, match="z_geo_dim"):
        distill.head_params(z, 4, RADIUS)


def test_short_run_writes_a_loadable_checkpoint_and_checks_it(tmp_path, capsys):
    out, report = tmp_path / "g.pt", tmp_path / "r.json"
    args = ["--out", str(out), "--batch", "2", "--points", "64", "--width", "16", "--z-geo-dim", str(Z_GEO),
            "--z-app-dim", str(Z_APP), "--threads", "1", "--check", "--check-heads", "2", "--check-size", "16"]
    assert distill.main(args + ["--steps", "3", "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "step 3/3" in text and "mIoU" in text
    g = load_generator(out)
    assert isinstance(g, SemanticGenerator3d) and g.siren.hidden_dim == 16
    assert (g.z_geo_dim, g.z_app_dim, g.num_classes) == (Z_GEO, Z_APP, len(FACE_CLASSES) - 1)
    g2, config = load_for_render(out)
    assert config["generator"] == "SemanticGenerator3d" and config["white_back"] is True
    r = json.loads(report.read_text())
    assert list(r["per_yaw"]) == [str(d) for d in distill.YAWS_DEG]
    for per in r["per_yaw"].values():
        assert len(per["psnr"]) == 2 and all(math.isfinite(v) for v in per["psnr"])
        assert set(per["iou"]) == set(FACE_CLASSES)
    assert 0 <= r["all"]["iou"]["background"] <= 1
    # --steps 0 checks the written checkpoint: the same report
    assert distill.main(args + ["--steps", "0", "--json", str(tmp_path / "r2.json")]) == 0
    again = json.loads((tmp_path / "r2.json").read_text())
    assert again["all"]["psnr_mean"] == pytest.approx(r["all"]["psnr_mean"], abs=1e-6)
    assert again["all"]["iou"] == pytest.approx(r["all"]["iou"], nan_ok=True)
