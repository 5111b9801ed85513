"""Density volumes and coloured meshes from a generator (``pigan shapes``).

The density is sampled on an N^3 grid covering the cube of side ``cube_size`` centred at the origin:
points at ``linspace(-s/2, s/2, N)`` per axis, ``sigma[i, j, k]`` at ``(x_i, y_j, z_k)`` (pi-GAN's
extract_shapes.py grid). The siren runs in chunks of points under no_grad through the fast FiLM-SIREN
path, so memory is bounded by the chunk whatever N is.

Outputs: the volume as ``.mrc`` (mrcfile; stored z, y, x as MRC viewers expect, voxel size and
origin in world units), a mesh from marching cubes (scikit-image) as ``.ply`` (plyfile; per-vertex
colours from the radiance field seen from the frontal camera's direction, as pi-GAN's renders with a
locked view direction) and, on request, ``.obj`` (``v x y z r g b`` lines) and a shaded PNG preview.

Iso-level (raw sigma units): the ``shape_level`` key of the checkpoint's curriculum when present,
else ``DEMO_LEVEL`` (0.2) for the demo's procedural dataset, else ``DEFAULT_LEVEL`` (10, pi-GAN's
extract_shapes.py default); ``--level`` overrides.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pigan.common import UsageError
from pigan.common import progress as progress_bar

__all__ = ["DEFAULT_LEVEL", "DEMO_LEVEL", "default_level", "require_writers", "grid_points", "latent_codes",
           "density_grid", "field_colors", "extract_mesh", "mesh_volume", "write_mrc", "write_ply", "write_obj",
           "render_mesh_png"]

DEFAULT_LEVEL = 10.0
FRONT_DIRECTION = (0.0, 0.0, -1.0)      # the direction the frontal camera (pitch = yaw = pi/2) looks


def grid_points(resolution: int, cube_size: float, start: int = 0, stop: int | None = None,
                device="cpu", dtype=torch.float32) -> torch.Tensor:
    """World coordinates [n, 3] of flat grid indices start..stop (i slowest, k fastest)."""
    n = resolution
    stop = n ** 3 if stop is None else stop
    flat = torch.arange(start, stop, device=device)
    ijk = torch.stack([flat // (n * n), (flat // n) % n, flat % n], -1).to(dtype)
    step = cube_size / (n - 1)
    return ijk * step - cube_size / 2


@torch.no_grad()
def latent_codes(generator, z: torch.Tensor, psi: float = 1.0, avg_seed: int = 0):
    """(frequencies, phase_shifts) [B, 9H] of z, truncated by psi toward the average mapping output
    (computed once from ``avg_seed``, so the same z and psi always give the same shape)."""
    if psi == 1:
        return generator.siren.mapping_network(z)
    dev = z.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(avg_seed)
        generator.generate_avg_frequencies()
    return generator.truncate(z, psi)


def _field(generator, points, freqs, phases, direction=FRONT_DIRECTION):
    dirs = torch.tensor(direction, dtype=points.dtype, device=points.device).expand(1, points.shape[0], 3)
    return generator.siren.forward_with_frequencies_phase_shifts(points.unsqueeze(0), freqs, phases,
                                                                 ray_directions=dirs)[0]   # [n, 4]


@torch.no_grad()
def density_grid(generator, z: torch.Tensor, resolution: int = 256, cube_size: float = 0.3,
                 psi: float = 1.0, chunk_size: int = 65536, progress: bool = False) -> np.ndarray:
    """Raw density sigma [N, N, N] (float32) of the shape of latent z [1, z_dim] (or [z_dim])."""
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    if not cube_size > 0:
        raise ValueError(f"cube_size must be positive, got {cube_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")
    dev = next(generator.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32, device=dev).reshape(1, -1)
    if z.shape[1] != generator.z_dim:
        raise ValueError(f"z must hold {generator.z_dim} values (the generator's z_dim), got {z.shape[1]}")
    was_training = generator.training
    generator.eval()
    try:
        freqs, phases = latent_codes(generator, z, psi)
        total = resolution ** 3
        sigma = np.empty(total, dtype=np.float32)
        heads = range(0, total, chunk_size)
        for head in progress_bar(heads, progress, "density", len(heads)):
            tail = min(head + chunk_size, total)
            pts = grid_points(resolution, cube_size, head, tail, dev)
            sigma[head:tail] = _field(generator, pts, freqs, phases)[:, 3].float().cpu().numpy()
    finally:
        generator.train(was_training)
    return sigma.reshape(resolution, resolution, resolution)


@torch.no_grad()
def field_colors(generator, z: torch.Tensor, vertices: np.ndarray, psi: float = 1.0,
                 chunk_size: int = 65536, direction=FRONT_DIRECTION) -> np.ndarray:
    """uint8 RGB [V, 3] of the radiance field at ``vertices`` [V, 3], seen along ``direction``."""
    dev = next(generator.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32, device=dev).reshape(1, -1)
    freqs, phases = latent_codes(generator, z, psi)
    verts = torch.as_tensor(np.asarray(vertices, dtype=np.float32), device=dev)
    out = np.empty((verts.shape[0], 3), dtype=np.uint8)
    for head in range(0, verts.shape[0], chunk_size):
        rgb = _field(generator, verts[head:head + chunk_size], freqs, phases, direction)[:, :3]
        out[head:head + chunk_size] = (rgb.float().clamp(0, 1) * 255).round().byte().cpu().numpy()
    return out


def extract_mesh(sigma: np.ndarray, level: float, cube_size: float):
    """Marching cubes at ``level`` on sigma [N, N, N] sampled as ``density_grid`` samples it.

    Returns (vertices [V, 3] float32 in world units, faces [F, 3] int64), faces wound so that
    normals point out of the region where sigma > level. Raises ValueError when the level does not
    cross the volume (the message gives the range of sigma).
    """
    from skimage import measure

    sigma = np.asarray(sigma, dtype=np.float32)
    if sigma.ndim != 3 or len(set(sigma.shape)) != 1 or sigma.shape[0] < 2:
        raise ValueError(f"sigma must be a cubic volume [N, N, N] with N >= 2, got shape {sigma.shape}")
    lo, hi = float(sigma.min()), float(sigma.max())
    if not lo < level < hi:
        raise ValueError(f"level {level:g} does not cross the density (min {lo:.4g}, max {hi:.4g}); "
                         f"pick a level in between")
    step = cube_size / (sigma.shape[0] - 1)
    verts, faces, _, _ = measure.marching_cubes(sigma, level=level, spacing=(step, step, step),
                                                gradient_direction="descent")
    # skimage winds these faces clockwise seen from outside the dense region; mesh viewers and
    # mesh_volume take counter-clockwise (right-hand normal pointing out).
    faces = np.ascontiguousarray(faces[:, ::-1])
    return (verts - cube_size / 2).astype(np.float32), faces.astype(np.int64)


def mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume enclosed by a closed, outward-wound triangle mesh (divergence theorem)."""
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


# ------------------------------------------------------------------------------------ writers
def write_mrc(sigma: np.ndarray, path, cube_size: float) -> Path:
    """sigma [N, N, N] (x, y, z) as an MRC volume (stored z, y, x) with world voxel size and origin."""
    import mrcfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = cube_size / (sigma.shape[0] - 1)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(np.asarray(sigma, dtype=np.float32).transpose(2, 1, 0)))
        mrc.voxel_size = step
        mrc.header.origin.x = mrc.header.origin.y = mrc.header.origin.z = -cube_size / 2
    return path


def write_ply(vertices: np.ndarray, faces: np.ndarray, path, colors: np.ndarray | None = None) -> Path:
    """Binary PLY: float32 x, y, z (+ uint8 red, green, blue) per vertex, int32 triangles."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    v = np.empty(len(vertices), dtype=fields)
    for i, name in enumerate("xyz"):
        v[name] = vertices[:, i]
    if colors is not None:
        for i, name in enumerate(("red", "green", "blue")):
            v[name] = colors[:, i]
    f = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = faces
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")]).write(str(path))
    return path


def write_obj(vertices: np.ndarray, faces: np.ndarray, path, colors: np.ndarray | None = None) -> Path:
    """Wavefront OBJ; colours as the common ``v x y z r g b`` extension (r, g, b in [0, 1])."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        if colors is None:
            np.savetxt(fh, vertices, fmt="v %.6f %.6f %.6f")
        else:
            np.savetxt(fh, np.hstack([vertices, colors / 255.0]), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
        np.savetxt(fh, faces + 1, fmt="f %d %d %d")
    return path


def render_mesh_png(vertices: np.ndarray, faces: np.ndarray, path, colors: np.ndarray | None = None,
                    size: int = 512, yaw: float = 0.5, pitch: float = 0.3) -> Path:
    """A flat-shaded orthographic view of the mesh (painter's algorithm with Pillow)."""
    from PIL import Image, ImageDraw

    v = np.asarray(vertices, dtype=np.float64)
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    v = (v - v.mean(0)) @ (rot_x @ rot_y).T                         # camera looks along -z
    tri = v[faces]                                                   # [F, 3, 3]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])       # area-weighted
    # Shade with vertex normals averaged over the neighbouring faces: flat face normals show the
    # voxel grid's terraces as bands.
    vn = np.zeros_like(v)
    for i in range(3):
        np.add.at(vn, faces[:, i], normals)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    shade = 0.25 + 0.75 * np.clip(vn[faces].mean(1) @ light, 0, 1)
    base = (colors[faces].mean(1) if colors is not None else np.full((len(faces), 3), 200.0))
    rgb = np.clip(base * shade[:, None], 0, 255).astype(np.uint8)
    scale = 0.9 * size / max(np.ptp(v[:, :2], axis=0).max(), 1e-9)
    xy = tri[..., :2] * scale * np.array([1, -1]) + size / 2
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for f in np.argsort(tri[..., 2].mean(1)):                         # far to near
        if normals[f, 2] > 0:                                        # back faces are hidden anyway
            draw.polygon([tuple(p) for p in xy[f]], fill=tuple(int(c) for c in rgb[f]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


# ------------------------------------------------------------------------------------ levels, writers
# The demo model (procedural dataset, narrow siren, a few hundred steps) learns densities of about
# -0.1 outside and +0.5 inside its shapes, far below pi-GAN's 10: its level sits between the two.
DEMO_LEVEL = 0.2


def default_level(config: dict | None) -> float:
    """The curriculum's ``shape_level``, else DEMO_LEVEL for the procedural dataset, else pi-GAN's 10."""
    config = config or {}
    if config.get("shape_level") is not None:
        return float(config["shape_level"])
    from pigan.data import PROCEDURAL_NAMES
    if str(config.get("dataset", "")).lower() in PROCEDURAL_NAMES:
        return DEMO_LEVEL
    return DEFAULT_LEVEL


def require_writers(mesh: bool = True) -> None:
    """UsageError naming the missing package unless the .mrc writer (and, with ``mesh``, marching
    cubes and the .ply writer) can be imported."""
    if mesh:
        try:
            import plyfile  # noqa: F401
            import skimage  # noqa: F401
        except ImportError as exc:
            raise UsageError(f"meshes need scikit-image and plyfile ({exc.name} is missing; pip install "
                             f"'pigan-kernels[research]', or pass --no-mesh)") from exc
    try:
        import mrcfile  # noqa: F401
    except ImportError:
        raise UsageError("the .mrc writer needs mrcfile (pip install mrcfile)") from None
