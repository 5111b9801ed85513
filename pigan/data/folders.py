"""Image folders (CelebA-style photos): every image under a folder, square-cropped and resized.

Items are ``(image [3, H, W] in [-1, 1], pose [2])``; an image folder has no poses, so its pose is NaN.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def load_rgb(path: Path):
    """The image at ``path`` as an RGB Pillow image, fully decoded."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def square_crop_box(width: int, height: int, crop_fraction: float):
    """(left, top, right, bottom) of the centred square of side ``crop_fraction`` x the short side."""
    side = min(width, height) * crop_fraction
    left, top = (width - side) / 2, (height - side) / 2
    return round(left), round(top), round(left + side), round(top + side)


def square_crop_resize(im, img_size: int, crop_fraction: float, resample=None):
    """The centred square of side ``crop_fraction`` x the short side, resized to ``img_size``
    (Lanczos unless ``resample`` names another Pillow filter, e.g. NEAREST for label maps)."""
    from PIL import Image

    im = im.crop(square_crop_box(*im.size, crop_fraction))
    return im.resize((img_size, img_size), Image.Resampling.LANCZOS if resample is None else resample)


def list_files(root, extensions, what: str = "data folder", kind: str = "images"):
    """Every file under ``root`` (recursive, sorted) whose suffix is one of ``extensions`` (any case);
    FileNotFoundError / NotADirectoryError / ValueError naming ``root`` if it is missing, not a
    folder or holds none."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{what} {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{what} {str(root)!r} is not a directory")
    exts = tuple(e.lower() for e in extensions)
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if not found:
        raise ValueError(f"{what} {str(root)!r} contains no {kind} ({', '.join(exts)}), searched recursively")
    return root, found


def to_tensor(im) -> torch.Tensor:
    """A Pillow RGB image as a float tensor [3, H, W] in [-1, 1]."""
    arr = np.asarray(im, dtype=np.uint8)                                  # [H, W, 3]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


class ImageFolder(Dataset):
    """Every .jpg/.jpeg/.png under ``root`` (recursive), centre-cropped to a square, resized to
    ``img_size``, optionally flipped at random, normalised to [-1, 1].

    ``crop_fraction`` < 1 keeps only the central part of the square (CelebA in pi-GAN: 0.8).
    Files whose header cannot be read are skipped at construction and counted
    (``num_skipped``, with one warning); a file that fails later while decoding is replaced by the
    next readable one and counted in ``num_failed_loads``.
    """

    def __init__(self, root, img_size: int, flip: bool = False, crop_fraction: float = 1.0,
                 extensions=IMAGE_EXTENSIONS):
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f"img_size must be a positive int, got {img_size!r}")
        if not 0 < crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
        root, candidates = list_files(root, extensions)
        from PIL import Image

        good, bad = [], []
        for p in candidates:
            try:
                with Image.open(p) as im:
                    im.verify()        # header and structure only: cheap even for 200k files
                good.append(p)
            except Exception:
                bad.append(p)
        if not good:
            raise ValueError(f"none of the {len(candidates)} image files under {str(root)!r} could be "
                             f"read (first: {str(bad[0])!r})")
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable image file(s) of {len(candidates)} under "
                          f"{str(root)!r} (first: {str(bad[0])!r})", RuntimeWarning, stacklevel=2)
        self.root, self.files, self.skipped = root, good, bad
        self.img_size, self.flip, self.crop_fraction = img_size, flip, crop_fraction
        self.num_failed_loads = 0

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        for attempt in range(len(self.files)):
            path = self.files[(index + attempt) % len(self.files)]
            try:
                im = load_rgb(path)
                break
            except Exception as exc:
                self.num_failed_loads += 1
                warnings.warn(f"could not decode {str(path)!r} ({type(exc).__name__}: {exc}); using the "
                              f"next image ({self.num_failed_loads} failed so far)", RuntimeWarning)
        else:
            raise RuntimeError(f"no image under {str(self.root)!r} could be decoded")
        x = to_tensor(square_crop_resize(im, self.img_size, self.crop_fraction))
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, torch.full((2,), float("nan"))
