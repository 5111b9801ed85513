"""Training data: image folders (CelebA-style), image folders with label maps (CelebAMask-HQ-style)
and the embedded procedural 3-D datasets.

Every dataset returns ``(image [3, H, W] in [-1, 1], pose [2] = (pitch, yaw))``; an image folder has
no poses, so its pose is NaN. Datasets built with part labels add a third item, ``labels`` int64
[H, W] of class indices (``dataset.classes`` names them; pigan.data.labels has the helpers). Random
horizontal flips are left to the caller by default (``flip=False``): the trainer flips with a
step-seeded generator so that a resumed run sees exactly the images an uninterrupted one would.
"""
from __future__ import annotations

import os
from pathlib import Path

from .folders import IMAGE_EXTENSIONS, ImageFolder, load_rgb, square_crop_resize, to_tensor
from .labels import (CELEBAMASK_CLASSES, FACE_CLASSES, colorize_labels, labels_from_one_hot, mean_iou,
                     one_hot_labels, palette, read_label_png, resize_labels, write_label_png)
from .masks import ImageMaskFolder
from .procedural import (AMBIENT, LIGHT, PROCEDURAL_NAMES, PROCEDURAL_VARIANTS, ProceduralShapes, cache_dir,
                         default_camera, face_part_labels, faces_from_unit, generate_procedural, render_face_labels,
                         render_shapes, surface_colour)

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_rgb", "square_crop_resize", "to_tensor", "AMBIENT", "LIGHT",
           "PROCEDURAL_NAMES", "PROCEDURAL_VARIANTS", "ProceduralShapes", "cache_dir", "default_camera",
           "faces_from_unit", "generate_procedural", "render_shapes", "surface_colour", "build_dataset",
           "face_part_labels", "render_face_labels", "ImageMaskFolder", "CELEBAMASK_CLASSES", "FACE_CLASSES",
           "colorize_labels", "labels_from_one_hot", "mean_iou", "one_hot_labels", "palette", "read_label_png",
           "resize_labels", "write_label_png"]


def _paired_layout(root: Path):
    """(root/images, root/masks) if ``root`` holds both folders, else None."""
    images, masks = root / "images", root / "masks"
    return (images, masks) if images.is_dir() and masks.is_dir() else None


def build_dataset(data: str | os.PathLike | None, img_size: int, camera: dict | None = None, seed: int = 0,
                  num_images: int = 2048, render_size: int | None = None, flip: bool = False,
                  crop_fraction: float = 1.0, verbose: bool = False, labels: bool = False,
                  masks: str | os.PathLike | None = None, background_mask: bool = False):
    """``data`` names an embedded dataset ("procedural" (or None) for the shapes, "faces" for the heads;
    see PROCEDURAL_VARIANTS), else it is an image folder.

    A folder holding ``images/`` and ``masks/`` subfolders is a paired dataset: its images are those
    under ``images/`` (the masks are never read as images). ``labels=True`` asks for part labels (a
    third item per sample): with "faces", ProceduralShapes' FACE_CLASSES; with a folder, an
    ImageMaskFolder (CELEBAMASK_CLASSES) of ``data`` and ``masks``, or of the paired subfolders when
    ``masks`` is None. ``background_mask`` blackens the background: an ImageMaskFolder masks it with the
    labels; the embedded datasets are rendered on black instead of white."""
    if not isinstance(labels, bool):
        raise ValueError(f"labels must be True or False, got {labels!r}")
    if masks is not None and not labels:
        raise ValueError("a mask folder (masks) was given but labels is False: pass labels=True to use it")
    if data is None or str(data).lower() in PROCEDURAL_NAMES:
        if masks is not None:
            raise ValueError(f"masks applies to image folders, not to the embedded dataset {str(data)!r}")
        variant = PROCEDURAL_VARIANTS[str(data or "procedural").lower()]
        return ProceduralShapes(img_size=img_size, num_images=num_images, seed=seed, camera=camera,
                                render_size=render_size, flip=flip, verbose=verbose, variant=variant,
                                labels=labels, background=0.0 if background_mask else 1.0)
    root = Path(data).expanduser()
    paired = _paired_layout(root) if root.is_dir() else None
    if not labels:
        if background_mask:
            raise ValueError("background_mask needs the label maps of an image folder: pass labels=True")
        return ImageFolder(paired[0] if paired else root, img_size=img_size, flip=flip,
                           crop_fraction=crop_fraction)
    if masks is None and paired is None:
        raise ValueError(f"labels=True needs label maps for the images of {str(root)!r}: pass a mask folder "
                         "(masks=...) or give a folder holding images/ and masks/ subfolders")
    images_root, masks_root = (root, masks) if masks is not None else paired
    return ImageMaskFolder(images_root, masks_root, img_size, flip=flip, crop_fraction=crop_fraction,
                           background_mask=background_mask)
