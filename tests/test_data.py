"""Datasets: the embedded procedural 3-D shapes and CelebA-style image folders."""
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from pigan.data import ImageFolder, ProceduralShapes, build_dataset, render_shapes
from pigan.data.procedural import _draw_faces, _draw_shapes


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PIGAN_CACHE", str(folder))
    return folder


def test_procedural_deterministic_by_seed(cache):
    a = ProceduralShapes(img_size=16, num_images=24, seed=3, render_size=16, cache=False)
    b = ProceduralShapes(img_size=16, num_images=24, seed=3, render_size=16, cache=False)
    c = ProceduralShapes(img_size=16, num_images=24, seed=4, render_size=16, cache=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.poses, b.poses)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (24, 3, 16, 16)
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert not cache.exists()          # cache=False writes nothing


def test_procedural_cached_on_disk(cache):
    first = ProceduralShapes(img_size=8, num_images=20, seed=1, render_size=16)
    assert not first.from_cache
    files = list(cache.glob("procedural-*.pt"))
    assert files == [first.cache_path]
    assert not list(cache.glob("*.tmp"))      # atomic write left no temporary file
    second = ProceduralShapes(img_size=8, num_images=20, seed=1, render_size=16)
    assert second.from_cache and torch.equal(first.images, second.images)
    # another camera is another dataset, under another key
    other = ProceduralShapes(img_size=8, num_images=20, seed=1, render_size=16, camera={"h_stddev": 0.5})
    assert not other.from_cache and other.cache_path != first.cache_path
    # a damaged cache file is regenerated with a warning, never trusted
    first.cache_path.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable dataset cache"):
        again = ProceduralShapes(img_size=8, num_images=20, seed=1, render_size=16)
    assert torch.equal(again.images, first.images)


def test_procedural_poses_follow_camera_distribution(cache):
    ds = ProceduralShapes(img_size=8, num_images=400, seed=0, render_size=8, cache=False,
                          camera={"h_stddev": 0.3, "v_stddev": 0.155, "sample_dist": "gaussian"})
    pitch, yaw = ds.poses[:, 0], ds.poses[:, 1]
    assert abs(yaw.mean().item() - math.pi / 2) < 0.06 and abs(yaw.std().item() - 0.3) < 0.05
    assert abs(pitch.mean().item() - math.pi / 2) < 0.04 and abs(pitch.std().item() - 0.155) < 0.03
    img, pose = ds[5]
    assert img.shape == (3, 8, 8) and torch.equal(pose, ds.poses[5])


def test_render_is_an_object_on_background():
    rng = np.random.default_rng(0)
    params = _draw_shapes(rng, 2, radius=0.09)
    pitch = torch.full((2, 1), math.pi / 2)
    yaw = torch.full((2, 1), math.pi / 2)
    img = render_shapes(params, pitch, yaw, 32, fov=12, background=1.0)     # [2, 3, 32, 32] in [0, 1]
    assert img.shape == (2, 3, 32, 32)
    assert torch.all(img[:, :, 0, 0] == 1.0)                     # corners: white background
    assert torch.all(img[:, :, 16, 16].sum(1) < 2.95)            # centre: the (coloured, shaded) object
    # seen from the other side, the same object shows other pixels (it is 3-D, not a sprite)
    back = render_shapes(params, pitch, yaw + math.pi, 32, fov=12, background=1.0)
    assert (back - img).abs().mean() > 0.01


def test_faces_face_the_mean_camera_so_the_pose_shows():
    params = _draw_faces(np.random.default_rng(0), 3, radius=0.09)
    half = math.pi / 2
    pose = lambda p, y: (torch.full((3, 1), p), torch.full((3, 1), y))
    # Unshaded (ambient 1) the albedo alone: a head seen from the mean camera is left-right symmetric,
    front = render_shapes(params, *pose(half, half), 48, fov=12, ambient=1.0)        # [3, 3, 48, 48]
    # (the eyes' edges are steep: a ray grazing one differs by float rounding, hence max 5e-3)
    assert torch.allclose(front, front.flip(-1), atol=5e-3) and (front - front.flip(-1)).abs().mean() < 1e-5
    assert front[:, :, 24].std() > 0.1                        # and not blank: eyes, mouth, hair
    # seen from a yaw to one side it is not, and it mirrors the view from the other side,
    left = render_shapes(params, *pose(half, half - 0.3), 48, fov=12, ambient=1.0)
    right = render_shapes(params, *pose(half, half + 0.3), 48, fov=12, ambient=1.0)
    assert (left - left.flip(-1)).abs().mean() > 0.02
    assert torch.allclose(left, right.flip(-1), atol=5e-3) and (left - right.flip(-1)).abs().mean() < 1e-5
    # and from above the face moves down the image (the camera pitch shows too).
    above = render_shapes(params, *pose(half - 0.15, half), 48, fov=12, ambient=1.0)
    assert (above - front).abs().mean() > 0.02
    # Faces are upright: every head has the identity orientation.
    assert np.array_equal(params["rotation"], np.broadcast_to(np.eye(3), (3, 3, 3)))


def test_faces_variant_is_its_own_dataset(cache):
    shapes = build_dataset("procedural", 16, num_images=8, render_size=16)
    faces = build_dataset("faces", 16, num_images=8, render_size=16)
    assert isinstance(faces, ProceduralShapes) and (faces.variant, shapes.variant) == ("faces", "shapes")
    assert faces.key != shapes.key and faces.cache_path != shapes.cache_path     # cached apart
    assert torch.equal(faces.poses, shapes.poses)             # same cameras, other objects
    assert not torch.equal(faces.images, shapes.images)
    again = build_dataset("procedural-faces", 16, num_images=8, render_size=16)
    assert again.from_cache and torch.equal(again.images, faces.images)
    with pytest.raises(ValueError, match="variant must be 'shapes' or 'faces', got 'cars'"):
        ProceduralShapes(img_size=8, num_images=4, cache=False, variant="cars")


def test_set_img_size_resizes(cache):
    ds = ProceduralShapes(img_size=16, num_images=8, seed=0, render_size=16, cache=False)
    ds.set_img_size(8)
    assert ds[0][0].shape == (3, 8, 8) and len(ds) == 8
    with pytest.raises(ValueError, match="img_size"):
        ProceduralShapes(img_size=0, num_images=8, cache=False)


def _write(path, size=(20, 12), color=(255, 0, 0), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def test_image_folder_recursive_crop_resize_and_skips_corrupt(tmp_path):
    root = tmp_path / "faces"
    _write(root / "a.png", (20, 12), (255, 0, 0))
    _write(root / "sub" / "b.jpg", (12, 30), (0, 0, 255))
    _write(root / "sub" / "deeper" / "c.JPEG", (16, 16), (0, 255, 0), fmt="JPEG")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "notes.txt").write_text("ignored")
    with pytest.warns(RuntimeWarning, match=r"skipped 1 unreadable image file\(s\) of 4"):
        ds = ImageFolder(root, img_size=8, flip=False)
    assert len(ds) == 3 and ds.num_skipped == 1
    assert ds.skipped[0].name == "broken.jpg"
    x, pose = ds[0]                                   # a.png: red, centre-cropped to 12x12, resized
    assert x.shape == (3, 8, 8) and torch.isnan(pose).all()
    assert torch.allclose(x[0], torch.ones(8, 8)) and torch.allclose(x[1], -torch.ones(8, 8))
    assert x.min() >= -1 and x.max() <= 1


def test_image_folder_truncated_file_falls_back_and_counts(tmp_path):
    root = tmp_path / "imgs"
    _write(root / "a.jpg", (16, 16), (10, 200, 30), fmt="JPEG")
    _write(root / "b.jpg", (16, 16), (200, 10, 30), fmt="JPEG")
    data = (root / "a.jpg").read_bytes()
    (root / "a.jpg").write_bytes(data[: len(data) // 3])     # header intact, pixels cut
    ds = ImageFolder(root, img_size=8)      # the header check passes: JPEG verify() does not decode
    assert ds.num_skipped == 0
    with pytest.warns(RuntimeWarning, match=r"could not decode .*a\.jpg.*1 failed so far"):
        x, _ = ds[0]
    assert ds.num_failed_loads == 1
    assert x[0].mean() > 0.3 and x[1].mean() < -0.5     # it is b.jpg (red) instead


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing", img_size=8)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="contains no images"):
        ImageFolder(tmp_path / "empty", img_size=8)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of the 1 image files"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ImageFolder(bad, img_size=8)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        ImageFolder(tmp_path / "file.png", img_size=8)


def test_build_dataset_dispatch(tmp_path, cache):
    assert isinstance(build_dataset("procedural", 8, num_images=8, render_size=8), ProceduralShapes)
    _write(tmp_path / "d" / "a.png")
    assert isinstance(build_dataset(tmp_path / "d", 8), ImageFolder)
