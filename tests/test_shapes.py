"""pigan.shapes: the grid convention, chunk-size invariance, marching cubes against an analytic
sphere, and the .mrc / .ply / .obj files loading back."""
import math

import numpy as np
import pytest
import torch

from pigan import shapes
from pigan.checkpoints import save_checkpoint
from pigan.cli import shapes as shapes_cli
from pigan.curriculums import get_curriculum
from pigan.generators import ImplicitGenerator3d


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return ImplicitGenerator3d("SPATIALSIRENBASELINE", 8, hidden_dim=16, map_hidden_dim=16).eval()


def test_grid_points_follow_the_documented_convention():
    n, s = 5, 0.3
    pts = shapes.grid_points(n, s).reshape(n, n, n, 3)
    axis = torch.linspace(-s / 2, s / 2, n)
    i, j, k = 1, 3, 4
    torch.testing.assert_close(pts[i, j, k], torch.stack([axis[i], axis[j], axis[k]]))
    torch.testing.assert_close(shapes.grid_points(n, s, 7, 19), shapes.grid_points(n, s)[7:19])


def test_density_grid_matches_pointwise_siren_and_is_chunk_invariant(gen):
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(1))
    n, s = 9, 0.4
    a = shapes.density_grid(gen, z, n, s, psi=1.0, chunk_size=97)
    b = shapes.density_grid(gen, z, n, s, psi=1.0, chunk_size=n ** 3)
    c = shapes.density_grid(gen, z, n, s, psi=1.0, chunk_size=1)
    assert a.shape == (n, n, n) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
    # sigma[i, j, k] is the siren's density at (x_i, y_j, z_k).
    axis = np.linspace(-s / 2, s / 2, n)
    p = torch.tensor([[axis[2], axis[5], axis[7]]], dtype=torch.float32)
    f, ph = gen.siren.mapping_network(z)
    with torch.no_grad():
        ref = gen.siren.forward_with_frequencies_phase_shifts(
            p[None], f, ph, ray_directions=torch.tensor([[[0.0, 0, -1]]]))[0, 0, 3]
    assert a[2, 5, 7] == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    # Truncation changes the shape; psi=0 gives the average latent's shape for any z.
    assert not np.allclose(shapes.density_grid(gen, z, n, s, psi=0.5), a)
    z2 = torch.randn(1, 8, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(shapes.density_grid(gen, z, n, s, psi=0.0),
                               shapes.density_grid(gen, z2, n, s, psi=0.0), rtol=1e-5, atol=1e-5)


def test_density_grid_bad_input(gen):
    with pytest.raises(ValueError, match="resolution"):
        shapes.density_grid(gen, torch.zeros(1, 8), 1, 0.3)
    with pytest.raises(ValueError, match="z_dim"):
        shapes.density_grid(gen, torch.zeros(1, 5), 4, 0.3)
    with pytest.raises(ValueError, match="cube_size"):
        shapes.density_grid(gen, torch.zeros(1, 8), 4, 0.0)


def _sphere(n, s, r, center=(0.0, 0.0, 0.0)):
    axis = np.linspace(-s / 2, s / 2, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    # Linear in the distance, as a density rising inward: sigma = 10 at the surface.
    return (10 + 100 * (r - np.sqrt((x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2)))


def test_sphere_mesh_has_the_analytic_volume_and_area():
    measure = pytest.importorskip("skimage.measure")

    n, s, r = 96, 0.3, 0.1
    verts, faces = shapes.extract_mesh(_sphere(n, s, r), 10.0, s)
    assert verts.dtype == np.float32 and faces.dtype == np.int64 and faces.shape[1] == 3
    radii = np.linalg.norm(verts, axis=1)
    assert np.abs(radii - r).max() < 0.01 * r                      # world units, centred at 0
    vol = shapes.mesh_volume(verts, faces)                          # > 0: outward winding
    assert vol == pytest.approx(4 / 3 * math.pi * r ** 3, rel=0.01)
    assert measure.mesh_surface_area(verts, faces) == pytest.approx(4 * math.pi * r ** 2, rel=0.01)


def test_off_centre_sphere_lands_where_it_is():
    pytest.importorskip("skimage")
    n, s, r, c = 64, 0.4, 0.06, (0.05, -0.08, 0.02)
    verts, faces = shapes.extract_mesh(_sphere(n, s, r, c), 10.0, s)
    np.testing.assert_allclose(verts.mean(0), c, atol=2e-3)


def test_extract_mesh_bad_input():
    pytest.importorskip("skimage")
    with pytest.raises(ValueError, match="does not cross"):
        shapes.extract_mesh(np.zeros((4, 4, 4)), 10.0, 0.3)
    with pytest.raises(ValueError, match="cubic"):
        shapes.extract_mesh(np.zeros((4, 4, 5)), 0.0, 0.3)


def test_files_load_back_with_their_libraries(tmp_path):
    pytest.importorskip("skimage")
    mrcfile = pytest.importorskip("mrcfile")
    plyfile = pytest.importorskip("plyfile")
    n, s = 24, 0.3
    sigma = _sphere(n, s, 0.1).astype(np.float32)
    sigma[3, 5, 7] = 123.0                                           # an asymmetric marker
    shapes.write_mrc(sigma, tmp_path / "v.mrc", s)
    with mrcfile.open(tmp_path / "v.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data.transpose(2, 1, 0), sigma)
        assert mrc.data[7, 5, 3] == 123.0
        assert float(mrc.voxel_size.x) == pytest.approx(s / (n - 1), rel=1e-6)
        assert float(mrc.header.origin.x) == pytest.approx(-s / 2, rel=1e-6)
    verts, faces = shapes.extract_mesh(sigma, 10.0, s)
    colors = np.random.default_rng(0).integers(0, 256, (len(verts), 3)).astype(np.uint8)
    shapes.write_ply(verts, faces, tmp_path / "m.ply", colors)
    ply = plyfile.PlyData.read(str(tmp_path / "m.ply"))
    v = ply["vertex"]
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), verts)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), colors)
    np.testing.assert_array_equal(np.stack(ply["face"]["vertex_indices"]), faces)
    shapes.write_obj(verts, faces, tmp_path / "m.obj", colors)
    lines = (tmp_path / "m.obj").read_text().splitlines()
    vl = np.array([[float(t) for t in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    fl = np.array([[int(t) for t in ln.split()[1:]] for ln in lines if ln.startswith("f ")])
    np.testing.assert_allclose(vl[:, :3], verts, atol=1e-6)
    np.testing.assert_array_equal(np.round(vl[:, 3:] * 255), colors)          # 4 decimals recover bytes
    np.testing.assert_array_equal(fl - 1, faces)


def test_field_colors_are_the_sirens_rgb(gen):
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(3))
    verts = np.random.default_rng(0).uniform(-0.1, 0.1, (13, 3)).astype(np.float32)
    col = shapes.field_colors(gen, z, verts, psi=1.0, chunk_size=5)
    f, p = gen.siren.mapping_network(z)
    with torch.no_grad():
        rgb = gen.siren.forward_with_frequencies_phase_shifts(
            torch.from_numpy(verts)[None], f, p, ray_directions=torch.tensor([0.0, 0, -1]).expand(1, 13, 3))[0, :, :3]
    np.testing.assert_array_equal(col, (rgb.clamp(0, 1) * 255).round().byte().numpy())


def test_cli_writes_volume_mesh_and_preview(gen, tmp_path, capsys):
    pytest.importorskip("mrcfile")
    pytest.importorskip("plyfile")
    pytest.importorskip("skimage")
    path = tmp_path / "g.pt"
    cur = get_curriculum("demo")
    save_checkpoint(path, generator=gen, ema=gen.state_dict(),
                    config={str(k) if isinstance(k, int) else k: v for k, v in cur.items()})
    sigma = shapes.density_grid(gen, torch.randn(1, 8, generator=torch.Generator().manual_seed(0)), 12, 0.3)
    level = float(np.median(sigma))                                 # surely crosses
    rc = shapes_cli.main([str(path), "--out", str(tmp_path / "o"), "--seeds", "0", "1", "--resolution", "12",
                          "--level", str(level), "--obj", "--preview", "--no-progress", "--device", "cpu"])
    assert rc == 0
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"seed0.mrc", "seed0.ply", "seed0.obj", "seed0.png", "seed1.mrc", "seed1.ply"} <= names
    assert "vertices" in capsys.readouterr().out
    # A level outside the density: the volume is still written, the mesh is refused, exit code 1.
    rc = shapes_cli.main([str(path), "--out", str(tmp_path / "o2"), "--resolution", "6", "--level", "1e9",
                          "--no-progress"])
    assert rc == 1 and (tmp_path / "o2" / "seed0.mrc").exists()
    assert "does not cross" in capsys.readouterr().err
    assert shapes_cli.main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o3")]) == 2
    assert shapes_cli.main([str(path), "--out", str(tmp_path / "o4"), "--resolution", "1"]) == 2
    assert "--resolution must be a number >= 2, got 1" in capsys.readouterr().err


def test_default_levels():
    assert shapes.default_level(None) == shapes.DEFAULT_LEVEL == 10
    assert shapes.default_level(get_curriculum("celeba")) == 10
    assert shapes.default_level(get_curriculum("demo")) == shapes.DEMO_LEVEL
    assert shapes.default_level({"shape_level": 3, "dataset": "procedural"}) == 3
