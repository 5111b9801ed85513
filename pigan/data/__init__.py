"""Training data: image folders (CelebA-style) and the embedded procedural 3-D datasets.

Every dataset returns ``(image [3, H, W] in [-1, 1], pose [2] = (pitch, yaw))``; an image folder has
no poses, so its pose is NaN. Random horizontal flips are left to the caller by default
(``flip=False``): the trainer flips with a step-seeded generator so that a resumed run sees exactly
the images an uninterrupted one would.
"""
from __future__ import annotations

import os

from .folders import IMAGE_EXTENSIONS, ImageFolder, load_rgb, square_crop_resize, to_tensor
from .procedural import (AMBIENT, LIGHT, PROCEDURAL_NAMES, PROCEDURAL_VARIANTS, ProceduralShapes, cache_dir,
                         default_camera, faces_from_unit, generate_procedural, render_shapes, surface_colour)

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_rgb", "square_crop_resize", "to_tensor", "AMBIENT", "LIGHT",
           "PROCEDURAL_NAMES", "PROCEDURAL_VARIANTS", "ProceduralShapes", "cache_dir", "default_camera",
           "faces_from_unit", "generate_procedural", "render_shapes", "surface_colour", "build_dataset"]


def build_dataset(data: str | os.PathLike | None, img_size: int, camera: dict | None = None, seed: int = 0,
                  num_images: int = 2048, render_size: int | None = None, flip: bool = False,
                  crop_fraction: float = 1.0, verbose: bool = False):
    """``data`` names an embedded dataset ("procedural" (or None) for the shapes, "faces" for the heads;
    see PROCEDURAL_VARIANTS), else it is an image folder."""
    if data is None or str(data).lower() in PROCEDURAL_NAMES:
        variant = PROCEDURAL_VARIANTS[str(data or "procedural").lower()]
        return ProceduralShapes(img_size=img_size, num_images=num_images, seed=seed, camera=camera,
                                render_size=render_size, flip=flip, verbose=verbose, variant=variant)
    return ImageFolder(data, img_size=img_size, flip=flip, crop_fraction=crop_fraction)
