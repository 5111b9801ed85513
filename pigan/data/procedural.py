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
from .labels import FACE_CLASSES, resize_labels

# Names of the embedded datasets -> their variant: "shapes" are ellipsoids at random orientations (only
# the lighting shows the camera); "faces" are upright heads facing the mean camera, so that every
# image shows its camera pose, as aligned face photos do.
PROCEDURAL_VARIANTS = {"procedural": "shapes", "shapes": "shapes", "embedded": "shapes",
                       "faces": "faces", "procedural-faces": "faces"}
PROCEDURAL_NAMES = tuple(PROCEDURAL_VARIANTS)
# The procedural datasets' light: a distant light from the upper left of the mean camera, and ambient.
LIGHT, AMBIENT = (-0.4, 0.6, 1.0), 0.35
_CACHE_VERSION = 1
_LABEL_VERSION = 1      # the part-label rule; a new rule renames the label cache files


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


def _sharp(v: torch.Tensor) -> torch.Tensor:
    """A steep step from 0 to 1 across v = 0 (the masks' edges)."""
    return torch.sigmoid(6 * v)


def _face_parts(u: torch.Tensor):
    """Masks in [0, 1] of the eyes and of the mouth ([n, R] each) at unit-sphere points u [n, R, 3]."""
    eyes = _sharp(((u @ _EYES.to(u.dtype).T).amax(-1) - 0.965) * 300)
    lat = torch.asin(u[..., 1].clamp(-1, 1))
    lon = torch.atan2(u[..., 0], u[..., 2])                     # 0 straight ahead
    mouth = _sharp((0.07 - (lat + 0.42).abs()) * 60) * _sharp((0.42 - lon.abs()) * 30)
    return eyes, mouth


def _face_features(u: torch.Tensor) -> torch.Tensor:
    """Mask in [0, 1] of the feature colour (two eyes and a mouth) at unit-sphere points u [n, R, 3]."""
    return torch.maximum(*_face_parts(u))


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
    masks = torch.stack([_sharp(stripes), _sharp(checker), _sharp(spots), _sharp(two_tone), _sharp(hair)], 0)
    return masks[kind, torch.arange(u.shape[0])]                          # [n, R]


def render_shapes(params: dict, pitch: torch.Tensor, yaw: torch.Tensor, img_size: int, fov: float,
                  background: float = 1.0, light=LIGHT, ambient: float = AMBIENT) -> torch.Tensor:
    """Analytic ray-ellipsoid renders [n, 3, img_size, img_size] in [0, 1] of objects at the origin
    seen by pi-GAN cameras (unit sphere, looking at the origin) at (pitch, yaw) [n, 1]."""
    return _render(params, pitch, yaw, img_size, fov, background, light, ambient, False)[0]


def render_face_labels(params: dict, pitch: torch.Tensor, yaw: torch.Tensor, img_size: int,
                       fov: float) -> torch.Tensor:
    """Part labels int64 [n, img_size, img_size] (indices into FACE_CLASSES) of the heads that
    ``render_shapes`` draws with the same arguments, one per ray (see ``face_part_labels``)."""
    return _render(params, pitch, yaw, img_size, fov, 1.0, LIGHT, AMBIENT, True, colours=False)[1]


def _render(params, pitch, yaw, img_size, fov, background, light, ambient, labels, colours=True):
    """(rgb [n, 3, S, S] or None, labels [n, S, S] or None) from one ray cast: the colours of
    ``render_shapes`` and, if ``labels``, the part labels of ``face_part_labels`` (0 where a ray misses)."""
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
    rgb = parts = None
    if colours:
        lit = surface_colour(params, u, light, ambient)
        rgb = torch.where(hit[..., None], lit, torch.full_like(lit, background))
        rgb = rgb.clamp(0, 1).reshape(n, img_size, img_size, 3).permute(0, 3, 1, 2)
    if labels:
        parts = torch.where(hit, face_part_labels(params, u), torch.zeros_like(hit, dtype=torch.long))
        parts = parts.reshape(n, img_size, img_size)
    return rgb, parts


def surface_colour(params: dict, u: torch.Tensor, light=LIGHT, ambient: float = AMBIENT) -> torch.Tensor:
    """Lit colour [n, R, 3] (Lambertian, one distant light) of each object's surface at the points of
    its unit sphere u [n, R, 3], in the object's own frame."""
    dt = u.dtype
    rot = torch.as_tensor(params["rotation"], dtype=dt)                          # [n, 3, 3] local->world
    axes = torch.as_tensor(params["axes"], dtype=dt)                             # [n, 3]
    normal_world = F.normalize((u / axes[:, None]) @ rot.transpose(1, 2), dim=-1)
    light_dir = F.normalize(torch.tensor(light, dtype=dt), dim=0)
    shade = ambient + (1 - ambient) * (normal_world @ light_dir).clamp_min(0)    # [n, R]
    mask = _colour2_mask(params, u)
    c1 = torch.as_tensor(params["color1"], dtype=dt)[:, None]
    c2 = torch.as_tensor(params["color2"], dtype=dt)[:, None]
    albedo = c1 * (1 - mask[..., None]) + c2 * mask[..., None]
    if "color3" in params:
        feat = _face_features(u)[..., None]
        albedo = albedo * (1 - feat) + torch.as_tensor(params["color3"], dtype=dt)[:, None] * feat
    return albedo * shade[..., None]


def _colour2_mask(params: dict, u: torch.Tensor) -> torch.Tensor:
    """The weight [n, R] of colour 2 (a head's hair) at unit-sphere points u [n, R, 3]."""
    dt = u.dtype
    return _pattern_mask(u, torch.as_tensor(params["pattern"]), torch.as_tensor(params["freq"], dtype=dt),
                         torch.as_tensor(params["pattern_dir"], dtype=dt))


def face_part_labels(params: dict, u: torch.Tensor) -> torch.Tensor:
    """Part labels int64 [n, R] (1 skin, 2 hair, 3 eyes, 4 mouth; FACE_CLASSES) of heads' surfaces at
    the points of their unit spheres u [n, R, 3]: the part whose colour has the largest weight in
    ``surface_colour``'s albedo mix, i.e. skin (1-h)(1-f), hair h(1-f), features f (h the hair mask,
    f the feature mask), the features being eyes or mouth by the larger of their two masks. Ties go
    to the lower index."""
    if "color3" not in params:
        raise ValueError("part labels exist only for the 'faces' variant (its parameters have 'color3')")
    hair = _colour2_mask(params, u)
    eyes, mouth = _face_parts(u)
    feat = torch.maximum(eyes, mouth)
    weights = torch.stack([(1 - hair) * (1 - feat), hair * (1 - feat),
                           torch.where(eyes >= mouth, feat, torch.zeros_like(feat)),
                           torch.where(eyes >= mouth, torch.zeros_like(feat), feat)], -1)   # [n, R, 4]
    return weights.argmax(-1) + 1


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
                        supersample: int = 2, chunk: int = 128, variant: str = "shapes", labels: bool = False,
                        images: bool = True) -> dict:
    """Render the dataset: {'images': uint8 [N, 3, S, S], 'poses': float32 [N, 2] (pitch, yaw)}.

    ``labels`` (faces only) adds 'labels': uint8 [N, S, S] of FACE_CLASSES indices, each pixel taking
    the part seen by the most of its supersample x supersample rays, the rays whose colours the
    pixel averages (``resize_labels``: ties to the lower index, so a pixel half background is
    background). ``images=False`` skips the colours (labels for an already cached dataset)."""
    if labels and variant != "faces":
        raise ValueError(f"part labels exist only for the 'faces' variant, got variant {variant!r}")
    fov = float(camera["fov"])
    # Largest object that stays inside the view frustum and inside [ray_start, ray_end].
    radius = min(0.92 * math.tan(math.radians(fov) / 2),
                 0.9 * (camera["ray_end"] - camera["ray_start"]) / 2)
    rng = np.random.default_rng(seed)
    params = _drawer(variant)(rng, num_images, radius)
    pitch, yaw = _draw_poses(num_images, seed, camera)
    out = {"poses": torch.cat([pitch, yaw], -1).float()}
    if images:
        out["images"] = torch.empty(num_images, 3, render_size, render_size, dtype=torch.uint8)
    if labels:
        out["labels"] = torch.empty(num_images, render_size, render_size, dtype=torch.uint8)
    hi = render_size * supersample
    for s in range(0, num_images, chunk):
        e = min(s + chunk, num_images)
        sub = {k: v[s:e] for k, v in params.items()}
        img, parts = _render(sub, pitch[s:e], yaw[s:e], hi, fov, background, LIGHT, AMBIENT, labels, images)
        if images:
            if supersample > 1:
                img = F.avg_pool2d(img, supersample)
            out["images"][s:e] = (img * 255).round_().to(torch.uint8)
        if labels:
            out["labels"][s:e] = resize_labels(parts, render_size, len(FACE_CLASSES)).to(torch.uint8)
    return out


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

    ``labels=True`` (faces only) adds part labels: items become (image, pose, labels int64
    [img_size, img_size]) of ``classes`` = FACE_CLASSES indices (``generate_procedural`` says which
    part a pixel gets; ``set_img_size`` resizes them with ``resize_labels``, the labels' counterpart
    of the images' area filter). They are cached in a file of their own next to the images'
    (``label_cache_path``), so a dataset without labels neither computes nor loads them.
    """

    def __init__(self, img_size: int = 32, num_images: int = 2048, seed: int = 0, camera: dict | None = None,
                 render_size: int | None = None, background: float = 1.0, flip: bool = False,
                 cache: bool | str | os.PathLike = True, verbose: bool = False, variant: str = "shapes",
                 labels: bool = False):
        _drawer(variant)
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f"img_size must be a positive int, got {img_size!r}")
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive int, got {num_images!r}")
        if not isinstance(labels, bool):
            raise ValueError(f"labels must be True or False, got {labels!r}")
        if labels and variant != "faces":
            raise ValueError(f"labels=True needs variant 'faces' (only the heads have parts), got {variant!r}")
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
        self.cache_path = self.label_cache_path = None
        if cache:
            folder = cache_dir() if cache is True else Path(cache)
            self.cache_path = folder / f"procedural-{key}.pt"
            if labels:
                self.label_cache_path = folder / f"procedural-{key}-labels-v{_LABEL_VERSION}.pt"
        data = _load_cache(self.cache_path, "images", (num_images, 3, render_size, render_size))
        found = _load_cache(self.label_cache_path, "labels", (num_images, render_size, render_size))
        self.from_cache, self.labels_from_cache = data is not None, found is not None
        want_labels = labels and found is None
        if data is None or want_labels:
            if verbose:
                what = "procedural" if variant == "shapes" else f"procedural {variant}"
                what += " dataset" if data is None else " part labels"
                print(f"generating {what} ({num_images} images at {render_size}px)...", flush=True)
            made = generate_procedural(num_images, render_size, seed, cam, background, variant=variant,
                                       labels=want_labels, images=data is None)
            if data is None:
                data = {"images": made["images"], "poses": made["poses"]}
                _store_cache(data, self.cache_path)
            if want_labels:
                found = {"labels": made["labels"]}
                _store_cache(found, self.label_cache_path)
        self.camera, self.seed, self.key, self.variant = cam, seed, key, variant
        self.render_size, self.flip = render_size, flip
        self.poses = data["poses"]
        self.raw = data["images"]
        self.raw_labels = found["labels"] if labels else None           # uint8 [N, S, S]
        self.classes = FACE_CLASSES if labels else None
        self.labels = None
        self.set_img_size(img_size)

    def set_img_size(self, img_size: int):
        """Resize the in-memory images (progressive growing changes the resolution), and the labels."""
        x = self.raw.float().div_(127.5).sub_(1.0)
        if img_size != self.render_size:
            x = F.interpolate(x, size=(img_size, img_size), mode="area")
        if self.raw_labels is not None:
            self.labels = resize_labels(self.raw_labels, img_size, len(FACE_CLASSES))    # int64 [N, H, W]
        self.images, self.img_size = x.contiguous(), img_size

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        x = self.images[index]
        flip = self.flip and torch.rand(()) < 0.5
        if flip:
            x = x.flip(-1)
        if self.labels is None:
            return x, self.poses[index]
        lab = self.labels[index]
        return x, self.poses[index], (lab.flip(-1) if flip else lab)


def _load_cache(path, name: str, shape: tuple):
    """The cached dict at ``path`` if its tensor ``name`` has ``shape``; None if absent or stale, and
    None with a warning if unreadable (a damaged cache is regenerated, never trusted)."""
    if path is None or not path.exists():
        return None
    try:
        data = torch.load(path, weights_only=True)
        return data if tuple(data[name].shape) == shape else None
    except Exception as exc:
        warnings.warn(f"ignoring unreadable dataset cache {str(path)!r}: {exc}", RuntimeWarning)
        return None


def _store_cache(data: dict, path):
    if path is None:
        return
    try:
        atomic_save(data, path)
    except (OSError, RuntimeError) as exc:     # torch.save's zip writer raises RuntimeError
        warnings.warn(f"could not write dataset cache {str(path)!r}: {exc}", RuntimeWarning)
