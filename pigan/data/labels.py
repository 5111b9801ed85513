"""Semantic part labels: class-name sets, FENeRF's encoding of real label maps, colour palettes for
image grids, label PNGs, label resizing and mean IoU.

A label map is an integer tensor [B, H, W] (or [H, W] for one image) of class indices, 0 being the
background in every class set.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# The embedded "faces" dataset's parts (pigan.data.procedural renders them).
FACE_CLASSES = ("background", "skin", "hair", "eyes", "mouth")

# CelebAMask-HQ's 19 classes in the order of its preprocessed label maps (pixel value = index); the
# "l_"/"r_" classes are the person's left and right.
CELEBAMASK_CLASSES = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
                      "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")

# CelebAMask-HQ's customary visualisation colours, one row per class of CELEBAMASK_CLASSES.
_CELEBAMASK_COLOURS = ((0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
                       (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0),
                       (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51),
                       (0, 204, 0))
# The face parts borrow CelebAMask-HQ's skin, hair and mouth colours; eyes get cyan, far from hair blue.
_FACE_COLOURS = ((0, 0, 0), (204, 0, 0), (0, 0, 204), (0, 255, 255), (102, 204, 0))


def _check_label_map(labels, name: str, ndim: int = 3) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if labels.dim() != ndim:
        shape = "[B, H, W]" if ndim == 3 else "[H, W]"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(labels.shape)}")
    return labels


def _check_range(labels: torch.Tensor, name: str, num_classes: int):
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name} must hold class indices in [0, {num_classes - 1}], got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")


def _check_count(num_classes, name: str = "num_classes", least: int = 1) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < least:
        raise ValueError(f"{name} must be an int >= {least}, got {num_classes!r}")
    return int(num_classes)


def one_hot_labels(labels: torch.Tensor, num_classes_without_background: int) -> torch.Tensor:
    """FENeRF's encoding of a real label map [B, H, W]: [B, K, H, W] float32 in {-1, 1}, channel k
    being +1 where the label is k + 1 (K = num_classes_without_background); the background has no
    channel, so a background pixel is -1 in every channel."""
    k = _check_count(num_classes_without_background, "num_classes_without_background")
    labels = _check_label_map(labels, "labels")
    _check_range(labels, "labels", k + 1)
    hot = F.one_hot(labels.long(), k + 1)[..., 1:]                       # [B, H, W, K]
    return hot.permute(0, 3, 1, 2).float().mul_(2).sub_(1).contiguous()


def labels_from_one_hot(encoded: torch.Tensor) -> torch.Tensor:
    """The label map [B, H, W] int64 of an encoding [B, K, H, W] like ``one_hot_labels``' (or a soft
    one, e.g. a rendered semantic map): the strongest channel's class (index + 1) where that channel is
    positive, the background (0) where every channel is <= 0."""
    if not torch.is_tensor(encoded) or not encoded.dtype.is_floating_point or encoded.dim() != 4:
        got = f"{tuple(encoded.shape)} {encoded.dtype}" if torch.is_tensor(encoded) else type(encoded).__name__
        raise ValueError(f"encoded must be a float tensor [B, K, H, W], got {got}")
    best, idx = encoded.max(1)
    return torch.where(best > 0, idx + 1, torch.zeros_like(idx))


def palette(num_classes: int) -> torch.Tensor:
    """A fixed colour per class, uint8 [num_classes, 3], the background black: CelebAMask-HQ's usual
    colours for its 19 classes, distinct colours for FACE_CLASSES (5), and for any other count evenly
    spaced hues (golden-ratio steps) at alternating brightness."""
    n = _check_count(num_classes)
    if n == len(CELEBAMASK_CLASSES):
        return torch.tensor(_CELEBAMASK_COLOURS, dtype=torch.uint8)
    if n == len(FACE_CLASSES):
        return torch.tensor(_FACE_COLOURS, dtype=torch.uint8)
    rows = [(0, 0, 0)]
    for i in range(1, n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0 if i % 2 else 0.7)
        rows.append((round(r * 255), round(g * 255), round(b * 255)))
    return torch.tensor(rows, dtype=torch.uint8)


def colorize_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label maps [B, H, W] as images [B, 3, H, W] float32 in [-1, 1] coloured with ``palette``
    (for image grids next to the RGB images)."""
    n = _check_count(num_classes)
    labels = _check_label_map(labels, "labels")
    _check_range(labels, "labels", n)
    colours = palette(n).to(labels.device).float().div_(127.5).sub_(1.0)       # [N, 3]
    return colours[labels.long()].permute(0, 3, 1, 2).contiguous()


def resize_labels(labels: torch.Tensor, size, num_classes: int, chunk: int = 256) -> torch.Tensor:
    """Label maps [N, H, W] resized to ``size`` (int or (h, w)) as int64 [N, h, w]: each output pixel
    takes the class with the largest share of its footprint, shares measured like
    ``F.interpolate(mode="area")`` measures colours (so a 2x2 block's majority when halving); ties go
    to the lowest class index. Enlarging repeats pixels (nearest)."""
    n = _check_count(num_classes)
    labels = _check_label_map(labels, "labels")
    _check_range(labels, "labels", n)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if labels.shape[-2:] == (h, w):
        return labels.long().clone()
    out = torch.empty(labels.shape[0], h, w, dtype=torch.long, device=labels.device)
    for s in range(0, labels.shape[0], chunk):
        part = labels[s:s + chunk, None]                                        # [c, 1, H, W]
        best = torch.full((part.shape[0], 1, h, w), -1.0, device=labels.device)
        arg = torch.zeros(part.shape[0], 1, h, w, dtype=torch.long, device=labels.device)
        for c in range(n):                  # one class at a time: a full one-hot would need N x C maps
            share = F.interpolate((part == c).float(), size=(h, w), mode="area")
            better = share > best           # strict: an equal share keeps the lower class
            best = torch.where(better, share, best)
            arg.masked_fill_(better, c)
        out[s:s + chunk] = arg[:, 0]
    return out


def read_label_png(path) -> torch.Tensor:
    """The label map [H, W] int64 in a PNG of class indices: a greyscale (8- or 16-bit) or palette PNG
    whose pixel values are the indices, or an RGB(A) PNG whose three channels are equal everywhere."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return label_map_from_image(im, path)


def label_map_from_image(im, path="label image") -> torch.Tensor:
    """``read_label_png`` of a decoded Pillow image; ``path`` names it in errors."""
    mode = im.mode
    if mode in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(im).astype(np.int64)
    elif mode in ("RGB", "RGBA", "LA"):
        rgb = np.asarray(im)[..., :1 if mode == "LA" else 3]
        if (rgb != rgb[..., :1]).any():
            raise ValueError(f"label image {str(path)!r} is a colour image (mode {mode}) with unequal channels: "
                             "expected a single-channel PNG whose pixel values are class indices")
        arr = rgb[..., 0].astype(np.int64)
    else:
        raise ValueError(f"label image {str(path)!r} has mode {mode}: expected a single-channel PNG whose "
                         "pixel values are class indices")
    return torch.from_numpy(arr)


def write_label_png(path, labels) -> Path:
    """Write a label map [H, W] of class indices in 0..255 as an 8-bit greyscale PNG."""
    from PIL import Image

    labels = _check_label_map(labels, "labels", ndim=2)
    _check_range(labels, "labels", 256)
    path = Path(path)
    Image.fromarray(labels.cpu().numpy().astype(np.uint8), mode="L").save(path, format="PNG")
    return path


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int, include_background: bool = True):
    """Mean intersection-over-union of predicted label maps against target ones (both [B, H, W] of
    indices in [0, num_classes)), pixels of the whole batch pooled per class.

    Returns ``(miou, per_class)``: ``per_class`` float64 [num_classes], NaN for a class present in
    neither map (its IoU is undefined) and excluded from the mean; ``miou`` the mean over the remaining
    classes (a Python float; NaN if none remain). ``include_background=False`` leaves class 0 out of
    the mean (it stays in ``per_class``)."""
    n = _check_count(num_classes)
    pred, target = _check_label_map(pred, "pred"), _check_label_map(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    _check_range(pred, "pred", n)
    _check_range(target, "target", n)
    pair = target.reshape(-1).long() * n + pred.reshape(-1).long()
    confusion = torch.bincount(pair, minlength=n * n).reshape(n, n).double()   # [target, pred]
    inter = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - inter
    per_class = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))
    kept = per_class[0 if include_background else 1:]
    kept = kept[~kept.isnan()]
    miou = float(kept.mean()) if kept.numel() else float("nan")
    return miou, per_class.cpu()
