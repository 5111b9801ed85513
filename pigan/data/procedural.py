"""The embedded procedural 3-D datasets ("shapes" and "faces"): analytic scenes rendered at cameras
drawn like pi-GAN's, generated on first use and cached; each item is ``(image [3, H, W] in [-1, 1],
pose [2] = (pitch, yaw))``."""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..common import atomic_save
from ..ops.rays import create_cam2world_matrix, get_initial_rays_trig, normalize_vecs, sample_camera_positions

# Names of the embedded datasets -> their variant: "shapes" are ellipsoids at random orientations (only
# the lighting shows the camera); "faces" are upright heads facing the mean camera, so that every
# image shows its camera pose, as aligned face photos do.
PROCEDURAL_VARIANTS = {"procedural": "shapes", "shapes": "shapes", "embedded": "shapes",
                       "faces": "faces", "procedural-faces": "faces"}
PROCEDURAL_NAMES = tuple(PROCEDURAL_VARIANTS)
# The procedural datasets' light: a distant light from the upper left of the mean camera, and ambient.
LIGHT, AMBIENT = (-0.4, 0.6, 1.0), 0.35
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """$PIGAN_CACHE, else $XDG_CACHE_HOME/pigan-kernels, else ~/.cache/pigan-kernels."""
    env = os.environ.get("PIGAN_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pigan-kernels"


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random rotation matrices [n, 3, 3] (QR of Gaussian matrices, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[:, :, 0] *= det[:, None]
    return q


def _hsv_to_rgb(h, s, v):
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return table[i, np.arange(len(h))]


def _draw_shapes(rng: np.random.Generator, n: int, radius: float) -> dict:
    """Per-object parameters: ellipsoid axes and orientation, colours and pattern."""
    axes = radius * rng.uniform(0.55, 1.0, size=(n, 3))
    hue = rng.uniform(0, 1, n)
    c1 = _hsv_to_rgb(hue, rng.uniform(0.5, 0.9, n), rng.uniform(0.7, 1.0, n))
    c2 = _hsv_to_rgb((hue + rng.uniform(0.25, 0.75, n)) % 1, rng.uniform(0.4, 0.9, n),
                     rng.uniform(0.3, 0.9, n))
    return {
        "rotation": _random_rotations(rng, n),
        "axes": axes,
        "color1": c1,
        "color2": c2,
        "pattern": rng.integers(0, 4, n),                       # stripes, checker, spots, two-tone
        "freq": rng.integers(2, 6, n).astype(np.float64),
        "pattern_dir": rng.standard_normal((n, 4, 3)),
    }


def faces_from_unit(s: np.ndarray, radius: float) -> dict:
    """Per-head parameters from 12 numbers in [0, 1] per head (s [n, 12]): upright ellipsoids facing
    +z (the mean camera), skin, hair and feature colours, each spread uniformly over its range."""
    n = s.shape[0]
    axes = radius * np.stack([0.72 + 0.13 * s[:, 0], 0.88 + 0.12 * s[:, 1], 0.75 + 0.15 * s[:, 2]], -1)
    hue = s[:, 3]
    return {
        "rotation": np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
        "axes": axes,
        "color1": _hsv_to_rgb(hue, 0.25 + 0.35 * s[:, 4], 0.8 + 0.2 * s[:, 5]),                   # skin
        "color2": _hsv_to_rgb((hue + 0.25 + 0.5 * s[:, 6]) % 1, 0.5 + 0.4 * s[:, 7], 0.25 + 0.35 * s[:, 8]),
        "color3": _hsv_to_rgb(s[:, 9], 0.3 + 0.5 * s[:, 10], 0.05 + 0.2 * s[:, 11]),             # features
        "pattern": np.full(n, 4),                                # hair on the back and the top
        "freq": np.ones(n),
        "pattern_dir": np.broadcast_to(np.eye(4, 3), (n, 4, 3)).copy(),
    }


def _draw_faces(rng: np.random.Generator, n: int, radius: float) -> dict:
    """Random heads: ``faces_from_unit`` of uniform draws."""
    return faces_from_unit(np.stack([rng.random(n) for _ in range(12)], -1), radius)


# Unit directions of the eye centres in a head's frame (+x right, +y up, +z towards the mean camera).
_EYES = F.normalize(torch.tensor([[-0.36, 0.3, 0.88], [0.36, 0.3, 0.88]]), dim=-1)


def _face_features(u: torch.Tensor) -> torch.Tensor:
    """Mask in [0, 1] of the feature colour (two eyes and a mouth) at unit-sphere points u [n, R, 3]."""
    sharp = lambda v: torch.sigmoid(6 * v)
    eyes = sharp(((u @ _EYES.to(u.dtype).T).amax(-1) - 0.965) * 300)
    lat = torch.asin(u[..., 1].clamp(-1, 1))
    lon = torch.atan2(u[..., 0], u[..., 2])                     # 0 straight ahead
    mouth = sharp((0.07 - (lat + 0.42).abs()) * 60) * sharp((0.42 - lon.abs()) * 30)
    return torch.maximum(eyes, mouth)


def _pattern_mask(u: torch.Tensor, kind: torch.Tensor, freq: torch.Tensor, dirs: torch.Tensor):
    """Mask in [0, 1] of colour 2 at unit-sphere points u [n, R, 3] in the object's own frame."""
    dirs = F.normalize(dirs, dim=-1)                                      # [n, 4, 3]
    proj = torch.einsum("nrc,nkc->nrk", u, dirs)                          # [n, R, 4]
    f = freq[:, None]
    stripes = torch.sin(math.pi * f * proj[..., 0])
    lat = torch.asin(u[..., 1].clamp(-1, 1))
    lon = torch.atan2(u[..., 2], u[..., 0])
    checker = torch.sin(f * lon) * torch.sin(f * lat * 2)
    spots = (proj.amax(-1) - 0.8) * 8
    two_tone = proj[..., 0] * 4
    hair = torch.maximum(u[..., 1] - 0.55, -u[..., 2] - 0.05) * 12
    sharp = lambda v: torch.sigmoid(6 * v)
    masks = torch.stack([sharp(stripes), sharp(checker), sharp(spots), sharp(two_tone), sharp(hair)], 0)
    return masks[kind, torch.arange(u.shape[0])]                          # [n, R]


def render_shapes(params: dict, pitch: torch.Tensor, yaw: torch.Tensor, img_size: int, fov: float,
                  background: float = 1.0, light=LIGHT, ambient: float = AMBIENT) -> torch.Tensor:
    """Analytic ray-ellipsoid renders [n, 3, img_size, img_size] in [0, 1] of objects at the origin
    seen by pi-GAN cameras (unit sphere, looking at the origin) at (pitch, yaw) [n, 1]."""
    n = pitch.shape[0]
    dt = torch.float32
    origins = torch.cat([torch.sin(pitch) * torch.cos(yaw), torch.cos(pitch),
                         torch.sin(pitch) * torch.sin(yaw)], -1).to(dt)          # [n, 3]
    cam2world = create_cam2world_matrix(normalize_vecs(-origins), origins)
    _, _, dirs_cam = get_initial_rays_trig(1, 2, "cpu", fov, (img_size, img_size), 0.5, 1.5)
    dirs = dirs_cam[0].to(dt) @ cam2world[:, :3, :3].transpose(1, 2)              # [n, R, 3]
    rot = torch.as_tensor(params["rotation"], dtype=dt)                          # [n, 3, 3] local->world
    axes = torch.as_tensor(params["axes"], dtype=dt)                             # [n, 3]
    # Ray in the ellipsoid's unit-sphere frame: p' = R^T o / a, d' = R^T d / a.
    o_l = (origins[:, None, :] @ rot)[:, 0] / axes                               # [n, 3]
    d_l = (dirs @ rot) / axes[:, None]                                           # [n, R, 3]
    a = (d_l * d_l).sum(-1)
    b = 2 * (d_l * o_l[:, None]).sum(-1)
    c = (o_l * o_l).sum(-1, keepdim=True) - 1
    disc = b * b - 4 * a * c
    hit = disc > 0
    t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)                                # nearest root
    u = o_l[:, None] + t[..., None] * d_l                                        # [n, R, 3] on the sphere
    u = F.normalize(u, dim=-1)
    lit = surface_colour(params, u, light, ambient)
    rgb = torch.where(hit[..., None], lit, torch.full_like(lit, background))
    return rgb.clamp(0, 1).reshape(n, img_size, img_size, 3).permute(0, 3, 1, 2)


def surface_colour(params: dict, u: torch.Tensor, light=LIGHT, ambient: float = AMBIENT) -> torch.Tensor:
    """Lit colour [n, R, 3] (Lambertian, one distant light) of each object's surface at the points of
    its unit sphere u [n, R, 3], in the object's own frame."""
    dt = u.dtype
    rot = torch.as_tensor(params["rotation"], dtype=dt)                          # [n, 3, 3] local->world
    axes = torch.as_tensor(params["axes"], dtype=dt)                             # [n, 3]
    normal_world = F.normalize((u / axes[:, None]) @ rot.transpose(1, 2), dim=-1)
    light_dir = F.normalize(torch.tensor(light, dtype=dt), dim=0)
    shade = ambient + (1 - ambient) * (normal_world @ light_dir).clamp_min(0)    # [n, R]
    mask = _pattern_mask(u, torch.as_tensor(params["pattern"]), torch.as_tensor(params["freq"], dtype=dt),
                         torch.as_tensor(params["pattern_dir"], dtype=dt))
    c1 = torch.as_tensor(params["color1"], dtype=dt)[:, None]
    c2 = torch.as_tensor(params["color2"], dtype=dt)[:, None]
    albedo = c1 * (1 - mask[..., None]) + c2 * mask[..., None]
    if "color3" in params:
        feat = _face_features(u)[..., None]
        albedo = albedo * (1 - feat) + torch.as_tensor(params["color3"], dtype=dt)[:, None] * feat
    return albedo * shade[..., None]


def _draw_poses(n: int, seed: int, camera: dict):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, pitch, yaw = sample_camera_positions(
            device="cpu", n=n, r=1, horizontal_stddev=camera["h_stddev"], vertical_stddev=camera["v_stddev"],
            horizontal_mean=camera["h_mean"], vertical_mean=camera["v_mean"], mode=camera["sample_dist"])
    return pitch, yaw


def _drawer(variant: str):
    """The object sampler of a dataset variant; a ValueError naming the variants otherwise."""
    if variant not in ("shapes", "faces"):
        raise ValueError(f"variant must be 'shapes' or 'faces', got {variant!r}")
    return _draw_faces if variant == "faces" else _draw_shapes


def generate_procedural(num_images: int, render_size: int, seed: int, camera: dict, background: float,
                        supersample: int = 2, chunk: int = 128, variant: str = "shapes") -> dict:
    """Render the dataset: {'images': uint8 [N, 3, S, S], 'poses': float32 [N, 2] (pitch, yaw)}."""
    fov = float(camera["fov"])
    # Largest object that stays inside the view frustum and inside [ray_start, ray_end].
    radius = min(0.92 * math.tan(math.radians(fov) / 2),
                 0.9 * (camera["ray_end"] - camera["ray_start"]) / 2)
    rng = np.random.default_rng(seed)
    params = _drawer(variant)(rng, num_images, radius)
    pitch, yaw = _draw_poses(num_images, seed, camera)
    images = torch.empty(num_images, 3, render_size, render_size, dtype=torch.uint8)
    hi = render_size * supersample
    for s in range(0, num_images, chunk):
        e = min(s + chunk, num_images)
        sub = {k: v[s:e] for k, v in params.items()}
        img = render_shapes(sub, pitch[s:e], yaw[s:e], hi, fov, background)
        if supersample > 1:
            img = F.avg_pool2d(img, supersample)
        images[s:e] = (img * 255).round_().to(torch.uint8)
    return {"images": images, "poses": torch.cat([pitch, yaw], -1).float()}


def default_camera() -> dict:
    """pi-GAN's CelebA camera."""
    return {"fov": 12.0, "ray_start": 0.88, "ray_end": 1.12, "h_stddev": 0.3, "v_stddev": 0.155,
            "h_mean": math.pi / 2, "v_mean": math.pi / 2, "sample_dist": "gaussian"}


class ProceduralShapes(Dataset):
    """Textured, Lambertian-lit ellipsoids rendered analytically from pi-GAN's camera distribution.

    ``variant="shapes"``: patterned ellipsoids at uniformly random orientations. ``variant="faces"``:
    upright heads (skin, hair on the back and top, two eyes and a mouth) facing the mean camera, so
    that the camera pose shows in each image as it does in aligned face photos.

    Deterministic in ``seed`` and the camera; generated once at ``render_size`` and cached on disk
    under ``cache_dir()`` (key = hash of every parameter that changes the pixels), then resized to
    ``img_size`` (area filter) in memory. Items: (image [3, img_size, img_size] in [-1, 1],
    pose [2] = (pitch, yaw) of the camera that rendered it).
    """

    def __init__(self, img_size: int = 32, num_images: int = 2048, seed: int = 0, camera: dict | None = None,
                 render_size: int | None = None, background: float = 1.0, flip: bool = False,
                 cache: bool | str | os.PathLike = True, verbose: bool = False, variant: str = "shapes"):
        _drawer(variant)
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f"img_size must be a positive int, got {img_size!r}")
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive int, got {num_images!r}")
        cam = default_camera()
        cam.update({k: v for k, v in (camera or {}).items() if k in cam})
        if cam["sample_dist"] is None:
            cam["sample_dist"] = "gaussian"
        render_size = int(render_size or max(64, img_size))
        if img_size > render_size:
            raise ValueError(f"img_size {img_size} exceeds render_size {render_size}")
        key_fields = {"version": _CACHE_VERSION, "n": num_images, "size": render_size, "seed": seed,
                      "background": float(background), "camera": {k: (float(v) if k != "sample_dist" else v)
                                                                  for k, v in sorted(cam.items())}}
        if variant != "shapes":         # the original dataset keeps its cache key
            key_fields["variant"] = variant
        key = hashlib.sha1(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
        self.cache_path = None
        data = None
        if cache:
            folder = cache_dir() if cache is True else Path(cache)
            self.cache_path = folder / f"procedural-{key}.pt"
            if self.cache_path.exists():
                try:
                    data = torch.load(self.cache_path, weights_only=True)
                    if data["images"].shape != (num_images, 3, render_size, render_size):
                        data = None
                except Exception as exc:   # a stale or damaged cache is regenerated, never trusted
                    warnings.warn(f"ignoring unreadable dataset cache {str(self.cache_path)!r}: {exc}",
                                  RuntimeWarning)
                    data = None
        self.from_cache = data is not None
        if data is None:
            if verbose:
                label = "procedural" if variant == "shapes" else f"procedural {variant}"
                print(f"generating {label} dataset ({num_images} images at {render_size}px)...", flush=True)
            data = generate_procedural(num_images, render_size, seed, cam, background, variant=variant)
            if self.cache_path is not None:
                try:
                    atomic_save(data, self.cache_path)
                except (OSError, RuntimeError) as exc:     # torch.save's zip writer raises RuntimeError
                    warnings.warn(f"could not write dataset cache {str(self.cache_path)!r}: {exc}",
                                  RuntimeWarning)
        self.camera, self.seed, self.key, self.variant = cam, seed, key, variant
        self.render_size, self.flip = render_size, flip
        self.poses = data["poses"]
        self.raw = data["images"]
        self.set_img_size(img_size)

    def set_img_size(self, img_size: int):
        """Resize the in-memory images (progressive growing changes the resolution)."""
        x = self.raw.float().div_(127.5).sub_(1.0)
        if img_size != self.render_size:
            x = F.interpolate(x, size=(img_size, img_size), mode="area")
        self.images, self.img_size = x.contiguous(), img_size

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        x = self.images[index]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.poses[index]
