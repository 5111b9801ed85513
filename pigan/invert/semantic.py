"""Label maps for the semantic (FENeRF) inversion and editing: reading a mask PNG at the fit resolution,
and the images and files that show a fitted semantic map."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import imaging
from ..common import UsageError, writing
from ..data import read_label_png, resize_labels, write_label_png
from ..data.folders import square_crop_box
from .objectives import check_mask

__all__ = ["load_mask", "mask_background", "label_images", "write_semantic_outputs", "MASK_ASPECT_TOLERANCE"]

# A mask may be a scaled copy of its image (CelebAMask-HQ's masks are 512 px for 1024 px photos); its
# width / height ratio must equal the image's to this relative tolerance (rounding of scaled sizes).
MASK_ASPECT_TOLERANCE = 0.01


def _image_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def load_mask(path, img_size: int, generator, crop_fraction: float = 1.0, image=None,
              name: str = "mask") -> torch.Tensor:
    """The label PNG ``path`` (``pigan.data.read_label_png``: pixel values are class indices, 0 the
    background) as int64 [1, img_size, img_size], cropped and resized as ``pigan.invert.load_image``
    crops and resizes its image (the centred square of side ``crop_fraction`` x the short side), by
    per-pixel majority (``pigan.data.resize_labels``: labels cannot be averaged; enlarging repeats
    pixels). ``image``: the image file the mask belongs to; the mask must have its proportions (its
    size, or a scaled copy). UsageErrors name the file: unreadable, not a label image, other
    proportions than the image's, classes beyond the generator's K (``check_mask``)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{name} {str(path)!r} does not exist")
    try:
        labels = read_label_png(path)                                                 # [H, W]
    except (OSError, ValueError) as exc:
        raise UsageError(f"{name} {str(path)!r} is not a label image: {exc}") from exc
    h, w = labels.shape
    try:
        iw, ih = _image_size(image) if image is not None else (w, h)
    except OSError:                 # an unreadable image is reported where it is read
        iw, ih = w, h
    if image is not None:
        if abs((w / h) / (iw / ih) - 1) > MASK_ASPECT_TOLERANCE:
            raise UsageError(f"{name} {str(path)!r} is {w}x{h} pixels but the image {str(image)!r} is {iw}x{ih}: "
                             "a mask must have its image's size (or be a scaled copy of it)")
    k = getattr(generator, "num_classes", None)
    if k and labels.numel() and int(labels.max()) > k:
        raise UsageError(f"{name} {str(path)!r} holds class indices up to {int(labels.max())}, but the generator "
                         f"has {k} classes besides the background: expected values in 0..{k}")
    left, top, right, bottom = square_crop_box(w, h, crop_fraction)
    square = labels[top:bottom, left:right].unsqueeze(0)
    n = max(int(labels.max()) + 1 if labels.numel() else 1, 1)
    return check_mask(resize_labels(square, img_size, n), generator, img_size, f"{name} {str(path)!r}")


def mask_background(image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``image`` ([3, H, W] or [1, 3, H, W] in [-1, 1]) with black (-1) wherever ``labels`` ([H, W] or
    [1, H, W], the same size) is 0, the background: FENeRF's --background_mask, for generators trained on
    images whose background was blackened with their masks (``build_dataset(..., background_mask=True)``)."""
    if tuple(labels.shape[-2:]) != tuple(image.shape[-2:]):
        raise UsageError(f"the mask ({tuple(labels.shape[-2:])}) and the image ({tuple(image.shape[-2:])}) must "
                         "have the same size")
    keep = labels.reshape(labels.shape[-2:]).to(image.device) != 0                      # [H, W]
    return torch.where(keep, image, torch.full_like(image, -1.0))


def label_images(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label maps [N, H, W] (0..K) as colour images [N, 3, H, W] in [-1, 1] (``pigan.data.palette(K + 1)``)."""
    from ..data import colorize_labels

    return colorize_labels(labels.cpu(), num_classes + 1)


def write_semantic_outputs(result: dict, out: Path, name: str, view_maps=None) -> dict:
    """The semantic files of a semantic generator's fit ``result`` (``invert``'s): <name>_semantic.png
    (the target mask, when there was one, then the fitted map, coloured), <name>_labels.png (the fitted
    label map as a label PNG, class indices as pixel values) and, given ``view_maps`` (colour images
    [V, 3, H, W] of the novel views' semantic maps), <name>_views_semantic.png. Returns {key: path}."""
    out = Path(out)
    k = result["semantic"].shape[1]
    paths = {}

    def save(key, filename, fn, *args, **kwargs):
        with writing(out / filename):
            paths[key] = fn(*args, out / filename, **kwargs)

    maps = [label_images(result["mask"], k)] if result.get("mask") is not None else []
    maps.append(label_images(result["labels"], k))
    save("semantic", f"{name}_semantic.png", imaging.save_grid, torch.cat(maps), nrow=len(maps))
    save("labels", f"{name}_labels.png", lambda labels, path: write_label_png(path, labels), result["labels"][0].cpu())
    if view_maps is not None:
        save("views_semantic", f"{name}_views_semantic.png", imaging.save_grid, view_maps, nrow=len(view_maps))
    return paths
