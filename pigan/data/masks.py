"""Image folders with a label map per image (CelebAMask-HQ's preprocessed layout: one PNG per image
whose pixel values are class indices), for generators that also render semantic maps (FENeRF).

Items are ``(image [3, H, W] in [-1, 1], pose [2] = NaN, labels int64 [H, W])``.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from .folders import IMAGE_EXTENSIONS, list_files, load_rgb, square_crop_resize, to_tensor
from .labels import CELEBAMASK_CLASSES, label_map_from_image, read_label_png

MASK_EXTENSIONS = (".png",)


def _names(paths, limit: int = 5) -> str:
    shown = ", ".join(repr(str(p)) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _by_stem(paths, root, what: str) -> dict:
    """{file name without extension: path}; a ValueError if two files under ``root`` share one."""
    found, clashes = {}, []
    for p in paths:
        if p.stem in found:
            clashes.append((found[p.stem], p))
        found.setdefault(p.stem, p)
    if clashes:
        pairs = "; ".join(f"{str(a)!r} and {str(b)!r}" for a, b in clashes[:3])
        raise ValueError(f"{len(clashes)} {what} file name(s) under {str(root)!r} are used twice (images and "
                         f"masks are paired by file name without extension): {pairs}")
    return found


def _pair_up(images: dict, masks: dict, images_root, masks_root):
    """[(image path, mask path)] sorted by image path; a ValueError naming the unpaired files."""
    lonely_images = sorted(images[k] for k in images.keys() - masks.keys())
    lonely_masks = sorted(masks[k] for k in masks.keys() - images.keys())
    problems = []
    if lonely_images:
        problems.append(f"{len(lonely_images)} image(s) under {str(images_root)!r} have no mask under "
                        f"{str(masks_root)!r}: {_names(lonely_images)}")
    if lonely_masks:
        problems.append(f"{len(lonely_masks)} mask(s) under {str(masks_root)!r} have no image under "
                        f"{str(images_root)!r}: {_names(lonely_masks)}")
    if problems:
        raise ValueError("; ".join(problems) + " (images and masks are paired by file name without extension)")
    return sorted(((images[k], masks[k]) for k in images), key=lambda pair: pair[0])


def _size(path):
    """(width, height) from the header, after checking the file's structure (cheap: no decoding)."""
    from PIL import Image

    with Image.open(path) as im:
        size = im.size
        im.verify()
    return size


class ImageMaskFolder(Dataset):
    """Images (every .jpg/.jpeg/.png under ``images_root``) paired by file name without extension with
    label maps (every .png under ``masks_root``: one PNG of class indices per image, as
    ``read_label_png`` reads them), both searched recursively.

    Image and mask get ImageFolder's centred square crop (``crop_fraction``) and resize to
    ``img_size``: Lanczos for the image, nearest for the labels. A mask may be a scaled copy of its
    image (CelebAMask-HQ: 512px masks for 1024px images): it is first brought to the image's size
    (nearest), so it must have the image's aspect ratio. ``background_mask`` paints the image black
    where the label is 0 before resizing (FENeRF's training images). ``flip`` mirrors image and labels
    together (left/right classes keep their index, as in FENeRF). ``classes`` names the label values.

    Construction reads headers only: it refuses a folder without images or masks, an image without a
    mask or a mask without an image (naming them and how many), two files with the same name, and a
    mask whose aspect ratio is not its image's; pairs with an unreadable header are skipped
    (``num_skipped``, one warning). A label value outside ``classes`` is found when the pair is loaded
    (ValueError naming the file), or for all pairs at once by ``check_labels``. A pair that fails to
    decode when loaded is replaced by the next one (``num_failed_loads``), as in ImageFolder.
    """

    def __init__(self, images_root, masks_root, img_size: int, flip: bool = False, crop_fraction: float = 1.0,
                 background_mask: bool = False, classes=CELEBAMASK_CLASSES, extensions=IMAGE_EXTENSIONS):
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f"img_size must be a positive int, got {img_size!r}")
        if not 0 < crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
        classes = tuple(classes)
        if not 2 <= len(classes) <= 256 or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"classes must be 2 to 256 class names (index 0 the background), got {classes!r}")
        images_root, image_files = list_files(images_root, extensions, "image folder", "images")
        masks_root, mask_files = list_files(masks_root, MASK_EXTENSIONS, "mask folder", "label maps")
        pairs = _pair_up(_by_stem(image_files, images_root, "image"), _by_stem(mask_files, masks_root, "mask"),
                         images_root, masks_root)
        good, bad, mismatched = [], [], []
        for img, mask in pairs:
            sizes = []
            for path in (img, mask):
                try:
                    sizes.append(_size(path))
                except Exception:
                    bad.append(path)
                    break
            if len(sizes) < 2:
                continue
            (w, h), (mw, mh) = sizes
            if w * mh != h * mw:
                mismatched.append(f"{str(img)!r} {w}x{h} vs {str(mask)!r} {mw}x{mh}")
                continue
            good.append((img, mask))
        if mismatched:
            raise ValueError(f"{len(mismatched)} mask(s) do not have their image's size or aspect ratio: "
                             f"{'; '.join(mismatched[:3])}{' ...' if len(mismatched) > 3 else ''}")
        if not good:
            raise ValueError(f"none of the {len(pairs)} image/mask pairs under {str(images_root)!r} and "
                             f"{str(masks_root)!r} could be read (first: {str(bad[0])!r})")
        if bad:
            warnings.warn(f"skipped {len(bad)} image/mask pair(s) of {len(pairs)} with an unreadable file "
                          f"(first: {str(bad[0])!r})", RuntimeWarning, stacklevel=2)
        self.images_root, self.masks_root, self.skipped = images_root, masks_root, bad
        self.files, self.mask_files = [p for p, _ in good], [m for _, m in good]
        self.img_size, self.flip, self.crop_fraction = img_size, flip, crop_fraction
        self.background_mask, self.classes = background_mask, classes
        self.num_failed_loads = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self):
        return len(self.files)

    def check_labels(self, progress: bool = False):
        """Read every mask now (construction reads headers only) and raise one ValueError naming the
        masks whose labels fall outside ``classes``, with how many; ``progress`` shows a bar."""
        from ..common import progress as bar

        bad = []
        for path in bar(self.mask_files, enabled=progress, desc="checking label maps"):
            top = int(read_label_png(path).max())
            if top >= self.num_classes:
                bad.append(f"{str(path)!r} (label {top})")
        if bad:
            raise ValueError(f"{len(bad)} mask(s) hold labels beyond the {self.num_classes} classes (labels "
                             f"0..{self.num_classes - 1}): {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")

    def _decode(self, index):
        """(RGB image, mask image, mask path) of the pair at ``index``, or of the next decodable one."""
        from PIL import Image

        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            try:
                im = load_rgb(self.files[i])
                with Image.open(self.mask_files[i]) as mask:
                    mask.load()
                return im, mask, self.mask_files[i]
            except Exception as exc:
                self.num_failed_loads += 1
                warnings.warn(f"could not decode {str(self.files[i])!r} or its mask ({type(exc).__name__}: "
                              f"{exc}); using the next pair ({self.num_failed_loads} failed so far)",
                              RuntimeWarning)
        raise RuntimeError(f"no image/mask pair under {str(self.images_root)!r} could be decoded")

    def __getitem__(self, index):
        from PIL import Image

        im, mask, mask_path = self._decode(index)
        labels = label_map_from_image(mask, mask_path)                        # [h, w] int64
        top = int(labels.max())
        if top >= self.num_classes:
            raise ValueError(f"mask {str(mask_path)!r} holds label {top}, but there are {self.num_classes} "
                             f"classes (labels 0..{self.num_classes - 1})")
        mask = Image.fromarray(labels.numpy().astype(np.uint8), mode="L")
        if mask.size != im.size:
            mask = mask.resize(im.size, Image.Resampling.NEAREST)
        if self.background_mask:
            rgb = np.array(im)                                                # [H, W, 3]
            rgb[np.asarray(mask) == 0] = 0
            im = Image.fromarray(rgb)
        x = to_tensor(square_crop_resize(im, self.img_size, self.crop_fraction))
        lab = square_crop_resize(mask, self.img_size, self.crop_fraction, Image.Resampling.NEAREST)
        lab = torch.from_numpy(np.asarray(lab).astype(np.int64))              # [H, W]
        if self.flip and torch.rand(()) < 0.5:
            x, lab = x.flip(-1), lab.flip(-1)
        return x, torch.full((2,), float("nan")), lab
