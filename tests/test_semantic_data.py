"""Semantic data: part labels of the embedded faces, image folders with label maps, label helpers."""
import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pigan.data import (CELEBAMASK_CLASSES, FACE_CLASSES, ImageFolder, ImageMaskFolder, ProceduralShapes,
                        build_dataset, colorize_labels, default_camera, generate_procedural, labels_from_one_hot,
                        mean_iou, one_hot_labels, palette, read_label_png, render_face_labels, render_shapes,
                        resize_labels, write_label_png)
from pigan.data.procedural import _draw_faces


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PIGAN_CACHE", str(folder))
    return folder


# SHA-256 prefixes of generate_procedural's images before part labels existed, recorded on x86-64 under
# torch's DEFAULT and AVX2 CPU kernels (identical for these cases); other kernels may round differently.
# (seed, render_size, num_images, variant, supersample) -> digest
BEFORE_LABELS = {
    (0, 16, 4, "faces", 2): "65f1ac6be2b6905eccb2080f",
    (5, 12, 3, "faces", 3): "6948a57465c88b2a3ea60438",
    (2, 20, 3, "faces", 1): "065576075ec5a7e0cb4d72ce",
    (1, 16, 4, "shapes", 2): "1da6440c0abcd68c51c1ab3b",
}


@pytest.mark.parametrize("case", list(BEFORE_LABELS))
def test_images_unchanged_bit_for_bit(case):
    seed, size, n, variant, ss = case
    plain = generate_procedural(n, size, seed, default_camera(), 1.0, supersample=ss, variant=variant)
    if variant == "faces":       # asking for labels changes no pixel
        both = generate_procedural(n, size, seed, default_camera(), 1.0, supersample=ss, variant=variant,
                                   labels=True)
        assert torch.equal(both["images"], plain["images"]) and torch.equal(both["poses"], plain["poses"])
        assert both["labels"].shape == (n, size, size) and both["labels"].dtype == torch.uint8
        alone = generate_procedural(n, size, seed, default_camera(), 1.0, supersample=ss, variant=variant,
                                    labels=True, images=False)
        assert "images" not in alone and torch.equal(alone["labels"], both["labels"])
    else:
        with pytest.raises(ValueError, match="only for the 'faces' variant"):
            generate_procedural(n, size, seed, default_camera(), 1.0, variant=variant, labels=True)
    if torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2"):
        pytest.skip("digests recorded under torch's DEFAULT/AVX2 CPU kernels")
    assert hashlib.sha256(plain["images"].numpy().tobytes()).hexdigest()[:24] == BEFORE_LABELS[case]


def _heads(n=3, yaw_offset=0.0, size=48):
    params = _draw_faces(np.random.default_rng(1), n, radius=0.09)
    pitch = torch.full((n, 1), math.pi / 2)
    yaw = torch.full((n, 1), math.pi / 2 + yaw_offset)
    # ambient 1: the unshaded albedo, so a pixel's colour is its parts' colour mix
    img = render_shapes(params, pitch, yaw, size, fov=12, background=0.25, ambient=1.0)   # [n, 3, S, S]
    return params, img, render_face_labels(params, pitch, yaw, size, fov=12)             # [n, S, S]


def test_labels_agree_with_the_colours_at_full_resolution():
    params, img, lab = _heads()
    assert lab.dtype == torch.long and lab.min() >= 0 and lab.max() < len(FACE_CLASSES)
    # a ray that misses shows the background colour, and only those rays
    assert torch.equal(lab == 0, (img == 0.25).all(1))
    colour = {1: params["color1"], 2: params["color2"], 3: params["color3"], 4: params["color3"]}
    for c in (1, 2, 3, 4):
        for i in range(img.shape[0]):
            px = img[i].permute(1, 2, 0)[lab[i] == c].double()                               # [P, 3]
            assert px.shape[0] > 0, (FACE_CLASSES[c], i)
            dist = (px - torch.as_tensor(colour[c][i])).norm(dim=-1)
            # edge pixels mix two parts; the bulk shows the part's own colour
            assert dist.median() < 0.01 and (dist < 0.25).float().mean() > 0.9, (FACE_CLASSES[c], i)


def test_eyes_and_mouth_only_from_the_front():
    _, _, front = _heads()
    _, _, back = _heads(yaw_offset=math.pi)
    for i in range(front.shape[0]):
        assert {3, 4} <= set(front[i].unique().tolist())
        found = set(back[i].unique().tolist())
        assert 3 not in found and 4 not in found and 2 in found      # the back of the head is hair


def test_supersampled_labels_are_the_majority_of_their_rays():
    d = generate_procedural(3, 12, 4, default_camera(), 1.0, supersample=3, variant="faces", labels=True)
    hi = generate_procedural(3, 36, 4, default_camera(), 1.0, supersample=1, variant="faces", labels=True)
    blocks = hi["labels"].long().reshape(3, 12, 3, 12, 3).permute(0, 1, 3, 2, 4).reshape(3, 12, 12, 9)
    counts = torch.nn.functional.one_hot(blocks, 5).sum(-2)                               # [3, 12, 12, 5]
    assert torch.equal(d["labels"].long(), counts.argmax(-1))       # 9 rays: never a tie
    white = (d["images"] == 255).all(1)                              # every ray of the pixel missed
    assert (d["labels"][white] == 0).all()
    assert (d["images"].permute(0, 2, 3, 1)[d["labels"] > 0] < 255).any(-1).all()    # the head shows


def test_dataset_labels_cached_and_resized(cache):
    plain = ProceduralShapes(img_size=8, num_images=6, seed=2, render_size=16, variant="faces")
    assert len(plain[0]) == 2 and plain.labels is None and plain.label_cache_path is None
    assert list(cache.glob("*labels*")) == []                        # no labels asked: none made
    first = ProceduralShapes(img_size=8, num_images=6, seed=2, render_size=16, variant="faces", labels=True)
    assert first.from_cache and not first.labels_from_cache and first.label_cache_path.exists()
    assert torch.equal(first.raw, plain.raw) and first.classes == FACE_CLASSES
    second = ProceduralShapes(img_size=8, num_images=6, seed=2, render_size=16, variant="faces", labels=True)
    assert second.from_cache and second.labels_from_cache and torch.equal(second.labels, first.labels)
    fresh = ProceduralShapes(img_size=8, num_images=6, seed=2, render_size=16, variant="faces", labels=True,
                             cache=False)
    assert torch.equal(fresh.raw_labels, first.raw_labels)
    x, pose, lab = first[3]
    assert x.shape == (3, 8, 8) and lab.shape == (8, 8) and lab.dtype == torch.long
    assert torch.equal(lab, resize_labels(first.raw_labels[3:4], 8, 5)[0])
    first.set_img_size(16)
    assert torch.equal(first.labels, first.raw_labels.long()) and first[0][2].shape == (16, 16)
    first.label_cache_path.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable dataset cache"):
        again = ProceduralShapes(img_size=8, num_images=6, seed=2, render_size=16, variant="faces", labels=True)
    assert torch.equal(again.raw_labels, fresh.raw_labels)
    with pytest.raises(ValueError, match="labels=True needs variant 'faces'"):
        ProceduralShapes(img_size=8, num_images=4, cache=False, labels=True)


def test_dataset_flip_moves_labels_with_the_image(cache):
    ds = ProceduralShapes(img_size=16, num_images=4, render_size=16, variant="faces", labels=True, flip=True,
                          cache=False, camera={"h_stddev": 0.0, "h_mean": math.pi / 2 + 0.3})
    seen = set()
    torch.manual_seed(0)
    for _ in range(12):
        x, _, lab = ds[1]
        flipped = torch.equal(x, ds.images[1].flip(-1))
        assert flipped != torch.equal(x, ds.images[1])             # turned heads: a flip shows
        assert torch.equal(lab, ds.labels[1].flip(-1) if flipped else ds.labels[1])
        seen.add(flipped)
    assert seen == {True, False}


def test_build_dataset_labels(cache, tmp_path):
    faces = build_dataset("faces", 8, num_images=4, render_size=8, labels=True)
    assert isinstance(faces, ProceduralShapes) and len(faces[0]) == 3
    with pytest.raises(ValueError, match="labels=True needs variant 'faces'"):
        build_dataset("procedural", 8, num_images=4, render_size=8, labels=True)
    dark = build_dataset("faces", 8, num_images=4, render_size=8, labels=True, background_mask=True)
    assert (dark.images[:, :, 0, 0] == -1).all() and (faces.images[:, :, 0, 0] == 1).all()
    root = tmp_path / "celeb"
    _pair(root / "images", root / "masks", "a", _mask_blocks())
    _pair(root / "images", root / "masks", "b", _mask_blocks())
    paired = build_dataset(root, 4, labels=True)
    assert isinstance(paired, ImageMaskFolder) and len(paired) == 2 and len(paired[0]) == 3
    plain = build_dataset(root, 4)           # the masks are not taken for images
    assert isinstance(plain, ImageFolder) and len(plain) == 2 and plain.root == root / "images"
    explicit = build_dataset(root / "images", 4, labels=True, masks=root / "masks", background_mask=True)
    assert explicit.background_mask and explicit.masks_root == root / "masks"
    with pytest.raises(ValueError, match="masks.* labels is False"):
        build_dataset(root / "images", 4, masks=root / "masks")
    with pytest.raises(ValueError, match="needs label maps .* images/ and masks/"):
        build_dataset(root / "images", 4, labels=True)
    with pytest.raises(ValueError, match="background_mask needs the label maps"):
        build_dataset(root, 4, background_mask=True)


# ---------------------------------------------------------------------------- image + mask folders
def _mask_blocks(w=12, h=8, block=2, seed=0):
    """A label map [h, w] of constant block x block squares, values in 0..18."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 19, size=(h // block, w // block))
    small[0, 0] = 0
    return np.kron(small, np.ones((block, block), dtype=np.int64))


def _pair(images, masks, name, mask, image=None, mask_scale=1, ext=".png"):
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    h, w = mask.shape
    if image is None:
        image = np.random.default_rng(len(name)).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(image).save(images / f"{name}{ext}")
    write_label_png(masks / f"{name}.png", torch.from_numpy(mask[::mask_scale, ::mask_scale].copy()))
    return image


def test_label_png_round_trip(tmp_path):
    lab = torch.from_numpy(_mask_blocks(7, 5, 1))
    write_label_png(tmp_path / "m.png", lab)
    back = read_label_png(tmp_path / "m.png")
    assert back.dtype == torch.long and torch.equal(back, lab)
    grey = np.stack([lab.numpy().astype(np.uint8)] * 3, -1)
    Image.fromarray(grey).save(tmp_path / "rgb.png")                # equal channels: accepted
    assert torch.equal(read_label_png(tmp_path / "rgb.png"), lab)
    grey[0, 0] = (1, 2, 3)
    Image.fromarray(grey).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match="colour image .* unequal channels"):
        read_label_png(tmp_path / "colour.png")
    with pytest.raises(ValueError, match=r"class indices in \[0, 255\]"):
        write_label_png(tmp_path / "x.png", torch.full((2, 2), 300))
    with pytest.raises(ValueError, match=r"shape \[H, W\]"):
        write_label_png(tmp_path / "x.png", torch.zeros(1, 2, 2, dtype=torch.long))


def test_image_mask_folder_crop_resize_and_scaled_masks(tmp_path):
    mask = _mask_blocks(12, 8, 2)
    img = _pair(tmp_path / "i", tmp_path / "m", "a", mask)
    ds = ImageMaskFolder(tmp_path / "i", tmp_path / "m", img_size=8)
    x, pose, lab = ds[0]
    assert torch.isnan(pose).all() and lab.dtype == torch.long and lab.shape == (8, 8)
    assert torch.equal(lab, torch.from_numpy(mask[:, 2:10]))        # the centred 8x8 square, unresized
    assert torch.equal(x, torch.from_numpy(img[:, 2:10]).permute(2, 0, 1).float() / 127.5 - 1)
    ds.img_size = 4                                                 # halving: one label per 2x2 block
    assert torch.equal(ds[0][2], torch.from_numpy(mask[::2, 2:10:2])) and ds[0][0].shape == (3, 4, 4)
    # a half-size mask (CelebAMask-HQ: 512px masks for 1024px images) is scaled up first
    _pair(tmp_path / "i2", tmp_path / "m2", "a", mask, image=img, mask_scale=2)
    half = ImageMaskFolder(tmp_path / "i2", tmp_path / "m2", img_size=8)
    assert torch.equal(half[0][2], lab) and torch.equal(half[0][0], x)
    cropped = ImageMaskFolder(tmp_path / "i", tmp_path / "m", img_size=4, crop_fraction=0.5)
    assert torch.equal(cropped[0][2], torch.from_numpy(mask[2:6, 4:8]))


def test_image_mask_folder_flip_and_background_mask(tmp_path):
    mask = _mask_blocks(8, 8, 2, seed=3)
    img = _pair(tmp_path / "i", tmp_path / "m", "a", mask)
    ds = ImageMaskFolder(tmp_path / "i", tmp_path / "m", img_size=8, flip=True)
    straight = torch.from_numpy(mask)
    seen = set()
    torch.manual_seed(1)
    for _ in range(12):
        x, _, lab = ds[0]
        flipped = torch.equal(lab, straight.flip(-1))
        assert flipped or torch.equal(lab, straight)
        want = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1
        assert torch.equal(x, want.flip(-1) if flipped else want)
        seen.add(flipped)
    assert seen == {True, False}
    masked = ImageMaskFolder(tmp_path / "i", tmp_path / "m", img_size=8, background_mask=True)
    x, _, lab = masked[0]
    bg = lab == 0
    assert bg.any() and (~bg).any()
    assert (x[:, bg] == -1).all()                                   # background painted black
    assert torch.equal(x[:, ~bg], (torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1)[:, ~bg])


def test_image_mask_folder_errors(tmp_path):
    mask = _mask_blocks(8, 8, 2)
    i, m = tmp_path / "i", tmp_path / "m"
    for name in ("a", "b", "c"):
        _pair(i, m, name, mask)
    (m / "c.png").unlink()
    (i / "d.png").write_bytes((i / "a.png").read_bytes())
    (i / "e.png").write_bytes((i / "a.png").read_bytes())
    with pytest.raises(ValueError, match=r"3 image\(s\) under .* have no mask under .*'.*c\.png', '.*d\.png', '.*e"):
        ImageMaskFolder(i, m, 8)
    for name in ("d", "e"):
        (i / f"{name}.png").unlink()
    (m / "x.png").write_bytes((m / "a.png").read_bytes())             # now a mask without its image too
    with pytest.raises(ValueError, match=r"1 image\(s\) .*c\.png.*; 1 mask\(s\) under .* have no image .*x\.png"):
        ImageMaskFolder(i, m, 8)
    (m / "x.png").unlink()
    (i / "c.png").unlink()
    assert len(ImageMaskFolder(i, m, 8)) == 2
    ImageMaskFolder(i, m, 8).check_labels()                         # all labels in range: no error
    (i / "sub").mkdir()
    (i / "sub" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="1 image file name.* used twice"):
        ImageMaskFolder(i, m, 8)
    (i / "sub" / "a.jpg").unlink()
    good_mask = (m / "b.png").read_bytes()
    (m / "b.png").write_bytes(b"not a png")
    with pytest.warns(RuntimeWarning, match=r"skipped 1 image/mask pair\(s\) of 2 .*m/b\.png"):
        assert len(ImageMaskFolder(i, m, 8)) == 1
    (m / "b.png").write_bytes(good_mask)
    write_label_png(m / "b.png", torch.zeros(8, 6, dtype=torch.long))           # 6 wide for an 8x8 image
    with pytest.raises(ValueError, match=r"1 mask\(s\) do not have their image's size or aspect ratio: .*8x8 vs .*6x8"):
        ImageMaskFolder(i, m, 8)
    bad = mask.copy()
    bad[3, 3] = 19
    write_label_png(m / "b.png", torch.from_numpy(bad))
    ds = ImageMaskFolder(i, m, 8)
    ds[0]
    with pytest.raises(ValueError, match=r"b\.png' holds label 19, but there are 19 classes"):
        ds[1]
    with pytest.raises(ValueError, match=r"1 mask\(s\) hold labels beyond the 19 classes .*b\.png' \(label 19\)"):
        ds.check_labels()
    assert ImageMaskFolder(i, m, 8, classes=CELEBAMASK_CLASSES + ("extra",))[1][2].max() == 19
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="image folder .* contains no images"):
        ImageMaskFolder(tmp_path / "none", m, 8)
    with pytest.raises(ValueError, match="mask folder .* contains no label maps"):
        ImageMaskFolder(i, tmp_path / "none", 8)
    with pytest.raises(FileNotFoundError, match="mask folder .* does not exist"):
        ImageMaskFolder(i, tmp_path / "missing", 8)
    with pytest.raises(ValueError, match="img_size"):
        ImageMaskFolder(i, m, 0)


# ---------------------------------------------------------------------------- label helpers
def test_one_hot_labels_encoding():
    lab = torch.tensor([[[0, 1], [2, 0]]])
    enc = one_hot_labels(lab, 2)                                    # [1, 2, 2, 2]
    assert enc.dtype == torch.float32 and enc.shape == (1, 2, 2, 2)
    assert torch.equal(enc[0, 0], torch.tensor([[-1.0, 1.0], [-1.0, -1.0]]))
    assert torch.equal(enc[0, 1], torch.tensor([[-1.0, -1.0], [1.0, -1.0]]))
    assert torch.equal(labels_from_one_hot(enc), lab)
    many = torch.randint(0, 19, (2, 5, 7))
    assert one_hot_labels(many, 18).shape == (2, 18, 5, 7) and torch.equal(labels_from_one_hot(one_hot_labels(
        many, 18)), many)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\], got values in \[0, 3\]"):
        one_hot_labels(torch.tensor([[[0, 3]]]), 2)
    with pytest.raises(TypeError, match="integer class indices"):
        one_hot_labels(torch.zeros(1, 2, 2), 2)
    with pytest.raises(ValueError, match=r"shape \[B, H, W\]"):
        one_hot_labels(torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="float tensor"):
        labels_from_one_hot(torch.zeros(1, 2, 2, dtype=torch.long))


def test_palette_and_colorize():
    celeb = palette(19)
    assert celeb.dtype == torch.uint8 and celeb.shape == (19, 3)
    assert celeb[0].tolist() == [0, 0, 0] and celeb[1].tolist() == [204, 0, 0]           # skin
    assert celeb[CELEBAMASK_CLASSES.index("hair")].tolist() == [0, 0, 204]
    for n in (5, 7, 19, 40):
        p = palette(n)
        assert p[0].tolist() == [0, 0, 0] and len({tuple(r) for r in p.tolist()}) == n, n
    lab = torch.tensor([[[0, 4], [2, 1]]])
    img = colorize_labels(lab, 5)
    assert img.shape == (1, 3, 2, 2) and img.min() >= -1 and img.max() <= 1
    assert torch.equal(img[0, :, 0, 1], palette(5)[4].float() / 127.5 - 1)
    assert torch.equal(img[0, :, 0, 0], torch.full((3,), -1.0))
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\]"):
        colorize_labels(torch.tensor([[[5]]]), 5)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        palette(0)


def test_mean_iou_known_answers():
    pred = torch.tensor([[[0, 1], [1, 1]]])
    target = torch.tensor([[[0, 1], [0, 1]]])
    miou, per = mean_iou(pred, target, 4)
    assert per[0] == 0.5 and per[1] == pytest.approx(2 / 3) and per[2:].isnan().all()   # 2, 3: nowhere
    assert miou == pytest.approx((0.5 + 2 / 3) / 2)
    assert mean_iou(pred, target, 4, include_background=False)[0] == pytest.approx(2 / 3)
    # a class only predicted counts, with IoU 0
    miou, per = mean_iou(torch.tensor([[[2, 1]]]), torch.tensor([[[1, 1]]]), 3)
    assert per.tolist()[1:] == [0.5, 0.0] and math.isnan(per[0]) and miou == pytest.approx(0.25)
    assert mean_iou(target, target, 2)[0] == 1.0
    with pytest.raises(ValueError, match="same shape"):
        mean_iou(pred, target[:, :1], 4)
    with pytest.raises(ValueError, match=r"target must hold class indices in \[0, 1\]"):
        mean_iou(pred.clamp(max=1), target + 1, 2)


def test_resize_labels_majority():
    lab = torch.tensor([[[1, 1, 3, 2],
                         [1, 2, 2, 3],
                         [0, 0, 4, 4],
                         [0, 4, 4, 4]]])
    assert resize_labels(lab, 2, 5).tolist() == [[[1, 2], [0, 4]]]   # 2-2 tie -> the lower class
    assert resize_labels(lab, 4, 5).dtype == torch.long and torch.equal(resize_labels(lab, 4, 5), lab)
    up = resize_labels(torch.tensor([[[1, 2]]]), (2, 4), 3)
    assert up.tolist() == [[[1, 1, 2, 2], [1, 1, 2, 2]]]
    big = torch.randint(0, 5, (300, 6, 6))                          # more images than one chunk
    assert torch.equal(resize_labels(big, 3, 5, chunk=128), resize_labels(big, 3, 5))
