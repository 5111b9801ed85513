"""Small image helpers on Pillow (no matplotlib): grids, PNG, depth colouring, GIF and MP4."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["to_unit", "make_grid", "to_uint8", "save_png", "save_grid", "depth_to_rgb", "save_gif",
           "save_mp4", "mp4_available"]


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


def depth_to_rgb(depth: torch.Tensor, near: float | None = None, far: float | None = None) -> torch.Tensor:
    """depth [N, H, W] -> [N, 3, H, W] in [0, 1]: near is bright, far is dark (grey ramp)."""
    d = depth.detach().float().cpu()
    lo = d.min().item() if near is None else near
    hi = d.max().item() if far is None else far
    t = ((d - lo) / max(hi - lo, 1e-8)).clamp(0, 1)
    return (1 - t).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


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
