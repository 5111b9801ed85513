"""The ops against outputs of the published pi-GAN code (tests/data/pigan_vectors.pt; what each key
holds is in tests/data/README.md and docs/MODEL.md section 9)."""
import math
from pathlib import Path

import pytest
import torch

from pigan import ops

VECTORS = Path(__file__).parent / "data" / "pigan_vectors.pt"


@pytest.fixture(scope="module")
def vec():
    return torch.load(VECTORS, weights_only=True)


def test_rays(vec):
    n, steps, fov, w, h, start, end = vec["rays.args"].tolist()
    points, z_vals, dirs = ops.get_initial_rays_trig(int(n), int(steps), "cpu", fov, (int(w), int(h)), start, end)
    torch.testing.assert_close(points, vec["rays.points"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(z_vals, vec["rays.z_vals"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dirs, vec["rays.dirs"], rtol=1e-6, atol=1e-7)


def test_cam2world(vec):
    origins = vec["cam2world.origins"]
    m = ops.create_cam2world_matrix(ops.normalize_vecs(-origins), origins)
    torch.testing.assert_close(m, vec["cam2world.matrix"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["gaussian", "uniform", "spherical_uniform"])
def test_camera_modes(vec, mode):
    h_mean, v_mean = vec["camera.args"].tolist()
    assert math.isclose(h_mean, math.pi / 2 + 0.3, rel_tol=1e-6) and math.isclose(v_mean, math.pi / 2 - 0.2,
                                                                                    rel_tol=1e-6)
    pos, pitch, yaw = ops.sample_camera_positions("cpu", n=3, r=1, horizontal_stddev=0, vertical_stddev=0,
                                                  horizontal_mean=math.pi / 2 + 0.3,
                                                  vertical_mean=math.pi / 2 - 0.2, mode=mode)
    torch.testing.assert_close(pos, vec[f"camera.{mode}.pos"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pitch, vec[f"camera.{mode}.pitch"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(yaw, vec[f"camera.{mode}.yaw"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_composite(vec, backend):
    with ops.use_backend(backend):
        rgb, depth, weights = ops.fancy_integration(vec["composite.rgb_sigma"], vec["composite.z_vals"],
                                                    noise_std=0, last_back=True, clamp_mode="relu")
    torch.testing.assert_close(rgb, vec["composite.relu_last_back.rgb"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(depth, vec["composite.relu_last_back.depth"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weights, vec["composite.relu_last_back.weights"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_sample_pdf(vec, backend):
    assert (vec["sample_pdf.weights"][0] == 0).all()  # the all-zero row is part of the check
    with ops.use_backend(backend):
        out = ops.sample_pdf(vec["sample_pdf.bins"], vec["sample_pdf.weights"], 12, det=True)
    torch.testing.assert_close(out, vec["sample_pdf.det12"], rtol=1e-12, atol=1e-12)
