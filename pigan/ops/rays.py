"""Rays and cameras with pi-GAN's names and signatures: ray sampler, camera poses, point transforms.

These are cheap, memory-light tensor programs with no fast-path twin: one implementation serves
every backend.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch

CAMERA_MODES = ("gaussian", "normal", "uniform", "hybrid", "truncated_gaussian", "spherical_uniform")


def normalize_vecs(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / torch.norm(vectors, dim=-1, keepdim=True)


def _device(device, *tensors):
    if device is not None:
        return torch.device(device)
    for t in tensors:
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")


def get_initial_rays_trig(n, num_steps, device, fov, resolution, ray_start, ray_end):
    """Camera-space rays of an image: points [n, W*H, S, 3], z_vals [n, W*H, S, 1], dirs [n, W*H, 3].

    ``resolution`` is (W, H); ``fov`` in degrees.
    """
    W, H = resolution
    if n < 1 or num_steps < 1 or W < 1 or H < 1:
        raise ValueError(f"n, num_steps and resolution must be positive, got n={n}, "
                         f"num_steps={num_steps}, resolution={resolution}")
    device = _device(device)
    x = torch.linspace(-1, 1, W, device=device).repeat(H)                  # [H*W], x fastest
    y = torch.linspace(1, -1, H, device=device).repeat_interleave(W)       # [H*W]
    z = -torch.ones_like(x) / np.tan((2 * math.pi * fov / 360) / 2)
    rays_d_cam = normalize_vecs(torch.stack([x, y, z], -1))                # [R, 3]
    z_vals = torch.linspace(ray_start, ray_end, num_steps, device=device).reshape(1, num_steps, 1)
    z_vals = z_vals.repeat(W * H, 1, 1)                                    # [R, S, 1]
    points = rays_d_cam.unsqueeze(1) * z_vals                              # [R, S, 3]
    return (points.unsqueeze(0).repeat(n, 1, 1, 1), z_vals.unsqueeze(0).repeat(n, 1, 1, 1),
            rays_d_cam.unsqueeze(0).repeat(n, 1, 1))


def perturb_points(points, z_vals, ray_directions, device=None):
    """Stratified jitter: one uniform offset per sample, scaled by the first sample spacing."""
    device = _device(device, z_vals)
    distance_between_points = z_vals[:, :, 1:2, :] - z_vals[:, :, 0:1, :]
    offset = (torch.rand(z_vals.shape, device=device, dtype=z_vals.dtype) - 0.5) * distance_between_points
    z_vals = z_vals + offset
    points = points + offset * ray_directions.unsqueeze(2)
    return points, z_vals


def truncated_normal_(tensor, mean=0.0, std=1.0):
    """Normal samples resampled into (-2, 2) (pi-GAN's four-draw trick)."""
    tmp = tensor.new_empty(tensor.shape + (4,)).normal_()
    valid = (tmp < 2) & (tmp > -2)
    ind = valid.max(-1, keepdim=True)[1]
    tensor.data.copy_(tmp.gather(-1, ind).squeeze(-1))
    tensor.data.mul_(std).add_(mean)
    return tensor


def sample_camera_positions(device=None, n=1, r=1, horizontal_stddev=1, vertical_stddev=1,
                            horizontal_mean=math.pi * 0.5, vertical_mean=math.pi * 0.5, mode="normal"):
    """Camera origins on a sphere of radius r: (positions [n, 3], pitch phi [n, 1], yaw theta [n, 1])."""
    device = _device(device)
    if mode == "uniform":
        theta = (torch.rand((n, 1), device=device) - 0.5) * 2 * horizontal_stddev + horizontal_mean
        phi = (torch.rand((n, 1), device=device) - 0.5) * 2 * vertical_stddev + vertical_mean
    elif mode in ("normal", "gaussian"):
        theta = torch.randn((n, 1), device=device) * horizontal_stddev + horizontal_mean
        phi = torch.randn((n, 1), device=device) * vertical_stddev + vertical_mean
    elif mode == "hybrid":
        if random.random() < 0.5:
            theta = (torch.rand((n, 1), device=device) - 0.5) * 2 * horizontal_stddev * 2 + horizontal_mean
            phi = (torch.rand((n, 1), device=device) - 0.5) * 2 * vertical_stddev * 2 + vertical_mean
        else:
            theta = torch.randn((n, 1), device=device) * horizontal_stddev + horizontal_mean
            phi = torch.randn((n, 1), device=device) * vertical_stddev + vertical_mean
    elif mode == "truncated_gaussian":
        theta = truncated_normal_(torch.zeros((n, 1), device=device)) * horizontal_stddev + horizontal_mean
        phi = truncated_normal_(torch.zeros((n, 1), device=device)) * vertical_stddev + vertical_mean
    elif mode == "spherical_uniform":
        theta = (torch.rand((n, 1), device=device) - 0.5) * 2 * horizontal_stddev + horizontal_mean
        v_stddev, v_mean = vertical_stddev / math.pi, vertical_mean / math.pi
        v = (torch.rand((n, 1), device=device) - 0.5) * 2 * v_stddev + v_mean
        v = torch.clamp(v, 1e-5, 1 - 1e-5)
        phi = torch.arccos(1 - 2 * v)
    elif mode is None or mode == "mean":
        theta = torch.ones((n, 1), device=device) * horizontal_mean
        phi = torch.ones((n, 1), device=device) * vertical_mean
    else:
        raise ValueError(f"mode must be one of {CAMERA_MODES} (or None for the mean pose), got {mode!r}")
    phi = torch.clamp(phi, 1e-5, math.pi - 1e-5)
    return camera_origins(phi, theta, r), phi, theta


def camera_origins(pitch: torch.Tensor, yaw: torch.Tensor, r: float = 1.0) -> torch.Tensor:
    """Origins [n, 3] on the sphere for pitch phi and yaw theta ([n, 1] each)."""
    return torch.cat([r * torch.sin(pitch) * torch.cos(yaw), r * torch.cos(pitch),
                      r * torch.sin(pitch) * torch.sin(yaw)], dim=-1)


def create_cam2world_matrix(forward_vector, origin, device=None):
    """Camera-to-world matrices [n, 4, 4]: rotation columns (-left, up, -forward), translation origin."""
    device = _device(device, forward_vector)
    forward_vector = normalize_vecs(forward_vector)
    up_vector = torch.tensor([0, 1, 0], dtype=forward_vector.dtype, device=device).expand_as(forward_vector)
    left_vector = normalize_vecs(torch.cross(up_vector, forward_vector, dim=-1))
    up_vector = normalize_vecs(torch.cross(forward_vector, left_vector, dim=-1))
    n = forward_vector.shape[0]
    cam2world = torch.eye(4, device=device, dtype=forward_vector.dtype).unsqueeze(0).repeat(n, 1, 1)
    cam2world[:, :3, :3] = torch.stack((-left_vector, up_vector, -forward_vector), dim=-1)
    cam2world[:, :3, 3] = origin
    return cam2world


def transform_points_to_world(points, ray_directions, cam2world):
    """Camera-space points [n, R, S, 3] and directions [n, R, 3] to world space; also ray origins."""
    n, num_rays, num_steps, _ = points.shape
    rot, trans = cam2world[:, :3, :3], cam2world[:, :3, 3]
    world_points = (points.reshape(n, -1, 3) @ rot.transpose(1, 2) + trans[:, None]).reshape(
        n, num_rays, num_steps, 3)
    world_dirs = ray_directions.reshape(n, -1, 3) @ rot.transpose(1, 2)
    origins = trans[:, None, :].expand(n, num_rays, 3)
    return world_points, world_dirs, origins


def transform_sampled_points(points, z_vals, ray_directions, device=None, h_stddev=1, v_stddev=1,
                             h_mean=math.pi * 0.5, v_mean=math.pi * 0.5, mode="normal"):
    """Jitter the samples, draw a camera per image and move everything to world space.

    Returns (points [n, R, S, 3], z_vals, ray_directions [n, R, 3], ray_origins [n, R, 3], pitch, yaw).
    """
    device = _device(device, points)
    points, z_vals = perturb_points(points, z_vals, ray_directions, device)
    camera_origin, pitch, yaw = sample_camera_positions(
        n=points.shape[0], r=1, horizontal_stddev=h_stddev, vertical_stddev=v_stddev,
        horizontal_mean=h_mean, vertical_mean=v_mean, device=device, mode=mode)
    cam2world = create_cam2world_matrix(normalize_vecs(-camera_origin), camera_origin, device=device)
    wp, wd, wo = transform_points_to_world(points, ray_directions, cam2world)
    return wp, z_vals, wd, wo, pitch, yaw
