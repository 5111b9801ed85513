"""Small image helpers on Pillow (no matplotlib): grids, PNG, depth colouring, semantic-map colouring, GIF
and MP4."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["to_unit", "make_grid", "to_uint8", "save_png", "save_grid", "depth_to_rgb", "surface_depth",
           "depth_range", "DEPTH_BACKGROUND", "semantic_images", "save_gif", "save_mp4", "mp4_available"]


def to_unit(images: torch.Tensor, value_range=(-1.0, 1.0)) -> torch.Tensor:
    """Map images from ``value_range`` to [0, 1] (clamped), float32 on the CPU."""
    lo, hi = value_range
    return ((images.detach().float().cpu() - lo) / (hi - lo)).clamp_(0, 1)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2,
              pad_value: float = 1.0) -> torch.Tensor:
    """images [N, C, H, W] in [0, 1] (C = 1 or 3) -> one image [3, H', W'], ``nrow`` per row."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be a tensor [N, 1 or 3, H, W], got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("images must hold at least one image")
    images = images.expand(n, 3, h, w) if c == 1 else images
    nrow = max(1, min(nrow or int(math.ceil(math.sqrt(n))), n))
    rows = int(math.ceil(n / nrow))
    grid = images.new_full((3, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y:y + h, x:x + w] = images[i]
    return grid


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [0, 1] -> uint8 [H, W, 3]."""
    return (image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(image: torch.Tensor, path) -> Path:
    from PIL import Image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def save_grid(images: torch.Tensor, path, nrow: int | None = None, value_range=(-1.0, 1.0),
              padding: int = 2) -> Path:
    """Write images [N, 3, H, W] (values in ``value_range``) as one PNG grid."""
    return save_png(make_grid(to_unit(images, value_range), nrow=nrow, padding=padding), path)


# Depth images: background pixels (accumulated opacity under the threshold) get this colour, which
# no depth takes (depths are grey).
DEPTH_BACKGROUND = (0.28, 0.42, 0.68)


def surface_depth(depth: torch.Tensor, opacity: torch.Tensor, threshold: float = 0.5):
    """(depth of the visible surface, foreground mask), both [N, H, W].

    The composited depth is sum_i w_i z_i; dividing by the opacity sum_i w_i gives the depth of what
    the pixel shows rather than one pulled toward 0 by its transparency. Pixels less opaque than
    ``threshold`` are background."""
    if depth.shape != opacity.shape:
        raise ValueError(f"depth {tuple(depth.shape)} and opacity {tuple(opacity.shape)} must have the same shape")
    d, a = depth.detach().float().cpu(), opacity.detach().float().cpu()
    fg = a >= threshold
    return torch.where(fg, d / a.clamp_min(1e-8), d), fg


def depth_range(depths, opacities, threshold: float = 0.5, percentiles=(1.0, 99.0)):
    """(near, far): the ``percentiles`` of the surface depth of the foreground pixels of all the
    depth maps together (lists of [N, H, W] tensors), or None when no pixel is foreground."""
    lo, hi = percentiles
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    values = []
    for d, a in zip(depths, opacities, strict=True):
        s, fg = surface_depth(d, a, threshold)
        values.append(s[fg].numpy())
    values = np.concatenate(values) if values else np.zeros(0)
    if values.size == 0:
        return None
    near, far = np.percentile(values.astype(np.float64), [lo, hi])
    return float(near), float(far)


def depth_to_rgb(depth: torch.Tensor, near: float | None = None, far: float | None = None,
                 opacity: torch.Tensor | None = None, threshold: float = 0.5,
                 background=DEPTH_BACKGROUND) -> torch.Tensor:
    """depth [N, H, W] -> [N, 3, H, W] in [0, 1]: grey 1 - (d - near) / (far - near), clamped (near
    is white, far black). Without ``near`` / ``far`` the range is the map's min and max. With
    ``opacity`` [N, H, W], d is the surface depth (``surface_depth``) and pixels less opaque than
    ``threshold`` are drawn in ``background``."""
    d = depth.detach().float().cpu()
    fg = None
    if opacity is not None:
        d, fg = surface_depth(d, opacity, threshold)
    shown = d[fg] if fg is not None and fg.any() else d
    lo = shown.min().item() if near is None else near
    hi = shown.max().item() if far is None else far
    t = ((d - lo) / max(hi - lo, 1e-8)).clamp(0, 1)
    rgb = (1 - t).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    if fg is not None:
        bg = torch.tensor(background, dtype=rgb.dtype).reshape(1, 3, 1, 1)
        rgb = torch.where(fg.unsqueeze(1), rgb, bg)
    return rgb


def semantic_images(semantic: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """A semantic generator's composited planes [N, K, H, W] and opacity [N, H, W] as colour images
    [N, 3, H, W] in [-1, 1] (as ``save_grid`` takes them): the label map of
    ``pigan.model.fenerf.semantic_labels`` (0, the background, where the opacity is under its threshold)
    in ``pigan.data.palette(K + 1)``'s colours."""
    from pigan.data import colorize_labels
    from pigan.model.fenerf import semantic_labels

    labels = semantic_labels(semantic.detach().float().cpu(), opacity.detach().float().cpu())   # [N, H, W]
    return colorize_labels(labels, semantic.shape[1] + 1)


def save_gif(frames, path, fps: int = 24) -> Path:
    """frames: list of [3, H, W] tensors in [0, 1] (or uint8 HWC arrays) -> looping GIF."""
    from PIL import Image
    if not frames:
        raise ValueError("frames must not be empty")
    imgs = [Image.fromarray(f if isinstance(f, np.ndarray) else to_uint8(f)) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=max(1, round(1000 / fps)), loop=0)
    return path


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
        import imageio  # noqa: F401
    except Exception:
        return False
    return True


def save_mp4(frames, path, fps: int = 24) -> Path | None:
    """Write an MP4 with imageio + ffmpeg; None (nothing written) when they are not installed."""
    if not mp4_available():
        return None
    import imageio
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [f if isinstance(f, np.ndarray) else to_uint8(f) for f in frames]
    # ffmpeg's yuv420p needs even sizes; pad by one pixel where needed.
    h, w = arrays[0].shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        arrays = [np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge") for a in arrays]
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
        for a in arrays:
            writer.append_data(a)
    return path
