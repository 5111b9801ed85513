"""FID, KID and IS of a generator against a folder of real images (``pigan eval``).

pi-GAN's protocol by default: 8000 real images, 2048 generated, both at 128x128, no truncation
(psi 1), cameras drawn from the curriculum's evaluation spread (``h_stddev_eval``, ``v_stddev_eval``,
``sample_dist_eval`` when present, else the training spread), no ray jitter or density noise.

Real-image features are cached on disk (``$PIGAN_CACHE/eval``, see ``pigan.data.cache_dir``) under a
key made of the dataset (folder path and its files' names, sizes and modification times, or the
procedural dataset's key), the image size, the count, the crop and the extractor's name.

Generated images are drawn in global batches; batch ``k`` uses latents and poses drawn up front from
``seed`` and its own RNG seed for importance sampling, so the image set does not depend on how many
processes share the work: in DDP rank ``r`` renders batches ``k = r mod world_size`` and every rank
receives all features.

A semantic generator (FENeRF's) is scored on its images as any other (only the 3 image channels reach
Inception); given a segmenter (``pigan.metrics.TorchScriptSegmenter``) its rendered label maps are
also compared with the segmenter's labels of the same images: mIoU and per-class IoU (``mean_iou``,
pixels of all generated images pooled, background included).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from pigan import metrics
from pigan.common import atomic_save
from pigan.common import progress as progress_bar
from pigan.model.render_options import RenderOptions

__all__ = ["PIGAN_PROTOCOL", "eval_options", "camera", "to_uint8", "real_features", "generated_features",
           "evaluate", "metrics_from_features", "semantic_agreement", "class_names", "format_table"]

PIGAN_PROTOCOL = {"real_count": 8000, "fake_count": 2048, "size": 128, "psi": 1.0}
_CACHE_VERSION = 1


def eval_options(config: dict | None) -> RenderOptions:
    """Render options of a curriculum's final stage, with its evaluation camera spread substituted
    (``h_stddev_eval``, ``v_stddev_eval``, ``sample_dist_eval`` when present)."""
    cfg = config or {}
    return RenderOptions.from_curriculum(config, **{key: cfg.get(f"{key}_eval")
                                                     for key in ("h_stddev", "v_stddev", "sample_dist")})


def camera(o: RenderOptions) -> dict:
    """The camera settings of ``o`` as the ``camera`` of ``pigan.data.build_dataset`` (the embedded
    datasets render their real images from it)."""
    return {k: getattr(o, k) for k in ("fov", "ray_start", "ray_end", "h_stddev", "v_stddev", "h_mean",
                                       "v_mean", "sample_dist")}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255], rounded as PNG writers round."""
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def _extract(extractor, images_u8: torch.Tensor):
    feats, logits = extractor(images_u8)
    feats = torch.as_tensor(feats).double().cpu()
    logits = None if logits is None else torch.as_tensor(logits).double().cpu()
    if feats.dim() != 2 or feats.shape[0] != images_u8.shape[0]:
        raise ValueError(f"extractor {extractor.name!r} returned features of shape {tuple(feats.shape)} "
                         f"for {images_u8.shape[0]} images; expected [N, D]")
    return feats, logits


# ------------------------------------------------------------------------------------ real images
def _dataset_identity(dataset) -> str:
    from pigan.data import ImageFolder

    if isinstance(dataset, ImageFolder):
        h = hashlib.sha1(str(dataset.root.resolve()).encode())
        for p in dataset.files:
            st = p.stat()
            h.update(f"{p.relative_to(dataset.root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return f"folder:{dataset.root.resolve()}:{h.hexdigest()[:16]}"
    return f"procedural:{dataset.key}"


def _cache_path(identity: str, size: int, count: int, crop: float, extractor_name: str) -> Path:
    from pigan.data import cache_dir

    key = json.dumps({"v": _CACHE_VERSION, "data": identity, "size": size, "count": count,
                      "crop": crop, "extractor": extractor_name}, sort_keys=True)
    return cache_dir() / "eval" / f"real-{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"


def real_features(data, extractor, size: int = 128, count: int = 8000, batch_size: int = 64,
                  crop_fraction: float = 1.0, camera: dict | None = None, cache: bool = True,
                  progress: bool = False) -> tuple[torch.Tensor, dict]:
    """Features [n, D] of n = min(count, len(dataset)) real images, and info (dataset, count, cache).

    ``data`` is an image folder or "procedural" (the embedded dataset, ``count`` images from
    ``camera``). A folder larger than ``count`` contributes a fixed pseudo-random subset (seed 0).
    """
    from pigan.data import build_dataset

    ds = build_dataset(data, img_size=size, camera=camera, num_images=count, crop_fraction=crop_fraction,
                       verbose=progress)
    n = min(count, len(ds))
    identity = _dataset_identity(ds)
    path = _cache_path(identity, size, n, crop_fraction, extractor.name)
    info = {"dataset": identity, "count": n, "cache": str(path) if cache else None, "cached": False}
    if cache and path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            if stored["extractor"] == extractor.name and stored["features"].shape[0] == n:
                info["cached"] = True
                return stored["features"].double(), info
        except Exception:       # unreadable or foreign file: recomputed and overwritten below
            pass
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].sort().values
    chunks = []
    for head in progress_bar(range(0, n, batch_size), progress, "real features", math.ceil(n / batch_size)):
        batch = torch.stack([ds[int(i)][0] for i in order[head:head + batch_size]])
        chunks.append(_extract(extractor, to_uint8(batch))[0])
    # stored and returned in float32 (InceptionV3's precision), so a run that computes the features
    # and a later one that reads them back give the same numbers
    feats = torch.cat(chunks).float()
    if cache:
        # concurrent runs sharing the cache never read each other's half-written file (the last
        # complete one wins)
        atomic_save({"features": feats, "extractor": extractor.name, "dataset": identity,
                     "size": size, "count": n}, path)
    return feats.double(), info


# ------------------------------------------------------------------------------------ generated
@torch.no_grad()
def generated_features(generator, extractor, options: RenderOptions, count: int = 2048, size: int = 128,
                       batch_size: int = 16, psi: float = 1.0, seed: int = 0, rank: int = 0,
                       world_size: int = 1, progress: bool = False, keep_images: int = 0, segmenter=None):
    """(features [count, D], logits [count, C] or None, first ``keep_images`` images in [-1, 1]).

    Every rank calls this with the same arguments; with ``world_size`` > 1 (an initialised
    torch.distributed group of that size) each renders its share and all receive every row and the
    kept images, in batch order. With a ``segmenter`` (a semantic generator only: images [B, 3, H, W] in
    [-1, 1] -> label maps [B, H, W]) a fourth item: (the rendered label maps, the segmenter's), both
    uint8 [count, size, size].
    """
    from pigan.model.fenerf import semantic_labels

    from pigan import ops

    if world_size > 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() != world_size:
            raise ValueError(f"world_size={world_size} needs an initialised torch.distributed group of that "
                             "size (torchrun); use world_size=1 in a single process")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    dev = next(generator.parameters()).device
    fork = [dev] if dev.type == "cuda" else []
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(count, generator.z_dim, generator=gen)
    with torch.random.fork_rng(devices=fork):      # manual_seed reseeds CUDA too: restore it
        torch.manual_seed(seed)
        _, pitch, yaw = ops.sample_camera_positions(
            n=count, r=1, horizontal_stddev=options.h_stddev, vertical_stddev=options.v_stddev,
            horizontal_mean=options.h_mean, vertical_mean=options.v_mean, device="cpu",
            mode=options.sample_dist)
    options = options.replace(img_size=size, nerf_noise=0.0)
    if psi != 1:                        # the same average on every rank, training RNG untouched
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(seed)
            generator.generate_avg_frequencies()
    was_training = generator.training
    generator.eval()
    n_batches = math.ceil(count / batch_size)
    mine = list(range(rank, n_batches, world_size))
    if segmenter is not None and not getattr(generator, "num_classes", 0):
        raise ValueError(f"a segmenter scores rendered label maps: {type(generator).__name__} renders none "
                         "(a semantic generator is needed)")
    feats, logits, images, labels = {}, {}, {}, {}             # by global batch index
    try:
        for k in progress_bar(mine, progress and rank == 0, "generated features"):
            sl = slice(k * batch_size, min((k + 1) * batch_size, count))
            with torch.random.fork_rng(devices=fork):
                torch.manual_seed(seed * 1_000_003 + k)
                zk = z[sl].to(dev)
                if psi == 1:
                    f, p = generator.siren.mapping_network(zk)
                else:
                    f, p = generator.truncate(zk, psi)
                out = generator.render(frequencies=f, phase_shifts=p, pitch=pitch[sl].to(dev),
                                       yaw=yaw[sl].to(dev), options=options, jitter=False)
            px = out["pixels"].float().cpu()
            if k * batch_size < keep_images:
                images[k] = px
            feats[k], logits[k] = _extract(extractor, to_uint8(px))
            if segmenter is not None:
                labels[k] = (semantic_labels(out["semantic"], out["opacity"]).to(torch.uint8).cpu(),
                             segmenter(out["pixels"]).to(torch.uint8))
    finally:
        generator.train(was_training)
    if world_size > 1:
        import torch.distributed as dist

        gathered = [None] * world_size
        dist.all_gather_object(gathered, (feats, logits, images, labels))
        feats, logits, images, labels = {}, {}, {}, {}
        for fk, lk, ik, sk in gathered:
            feats.update(fk)
            logits.update(lk)
            images.update(ik)
            labels.update(sk)
    order = sorted(feats)
    all_feats = torch.cat([feats[k] for k in order])
    all_logits = None if any(logits[k] is None for k in order) else torch.cat([logits[k] for k in order])
    kept = torch.cat([images[k] for k in sorted(images)])[:keep_images] if images else None
    if segmenter is None:
        return all_feats, all_logits, kept
    return all_feats, all_logits, kept, tuple(torch.cat([labels[k][i] for k in order]) for i in (0, 1))


# ------------------------------------------------------------------------------------ metrics
def evaluate(generator, real, extractor, options: RenderOptions, *, real_count: int = 8000, fake_count: int = 2048,
             size: int = 128, batch_size: int = 16, psi: float = 1.0, seed: int = 0,
             kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int = 10,
             crop_fraction: float = 1.0, cache: bool = True, progress: bool = False, rank: int = 0,
             world_size: int = 1, segmenter=None) -> dict:
    """FID, KID (x100 in ``kid_x100``, raw in ``kid``) and IS of ``generator`` against ``real``
    (an image folder, "procedural", or a precomputed feature tensor [N, D]). Returns a dict with
    the numbers, their settings and the extractor's name; with a ``segmenter`` (a semantic generator)
    also ``semantic_agreement``'s keys ("miou", "per_class_iou", "segmenter", ...)."""
    if isinstance(real, torch.Tensor):
        real_feats, real_info = real.double(), {"dataset": "features", "count": real.shape[0], "cached": False}
    else:
        real_feats, real_info = real_features(real, extractor, size, real_count, batch_size * 4,
                                              crop_fraction, camera(options), cache, progress)
    fake_feats, fake_logits, _, *labels = generated_features(generator, extractor, options, fake_count, size,
                                                             batch_size, psi, seed, rank, world_size, progress,
                                                             segmenter=segmenter)
    result = metrics_from_features(real_feats, fake_feats, fake_logits, kid_subsets, kid_subset_size,
                                   is_splits, seed)
    if segmenter is not None:
        result.update(semantic_agreement(*labels[0], generator.num_classes, getattr(segmenter, "name", "segmenter")))
    result.update({
        "extractor": extractor.name, "real": real_info, "size": size, "psi": psi, "seed": seed,
        "skip_empty": options.skip_empty,
        "camera": {k: getattr(options, k) for k in ("h_stddev", "v_stddev", "h_mean", "v_mean", "sample_dist")},
    })
    return result


def metrics_from_features(real_feats, fake_feats, fake_logits=None, kid_subsets: int = 100,
                          kid_subset_size: int = 1000, is_splits: int = 10, seed: int = 0) -> dict:
    """FID, KID (raw and x100, with stds) and, given logits, IS of feature sets [N, D] / [M, D]."""
    kid_mean, kid_std = metrics.kid_from_features(real_feats, fake_feats, kid_subsets, kid_subset_size, seed)
    result = {
        "fid": metrics.fid_from_features(real_feats, fake_feats),
        "kid": kid_mean, "kid_std": kid_std, "kid_x100": 100 * kid_mean, "kid_x100_std": 100 * kid_std,
        "fake_count": int(fake_feats.shape[0]), "kid_subsets": kid_subsets,
        "kid_subset_size": min(kid_subset_size, real_feats.shape[0], fake_feats.shape[0]),
    }
    if fake_logits is not None:
        splits = min(is_splits, fake_logits.shape[0])
        result["is"], result["is_std"] = metrics.inception_score(fake_logits, splits)
        result["is_splits"] = splits
    return result


def class_names(num_classes: int) -> tuple[str, ...]:
    """The K + 1 class names (background first) of a generator of ``num_classes`` = K classes: the faces
    dataset's (K = 4), CelebAMask-HQ's (K = 18), else "class_<k>"."""
    from pigan.data import CELEBAMASK_CLASSES, FACE_CLASSES

    for names in (FACE_CLASSES, CELEBAMASK_CLASSES):
        if len(names) == num_classes + 1:
            return names
    return ("background",) + tuple(f"class_{k}" for k in range(1, num_classes + 1))


def semantic_agreement(rendered: torch.Tensor, segmented: torch.Tensor, num_classes: int,
                       segmenter_name: str = "segmenter") -> dict:
    """mIoU of rendered label maps against a segmenter's labels of the same images (both [N, H, W],
    0..K): {"miou", "per_class_iou" ({class name: IoU, None for a class in neither}), "miou_classes"
    (the count of classes in the mean), "segmenter", "semantic_images"}. Pixels of every image are pooled
    per class; the background counts as a class (``pigan.data.mean_iou``)."""
    from pigan.data import mean_iou

    miou, per_class = mean_iou(rendered, segmented, num_classes + 1)
    names = class_names(num_classes)
    per_class_iou = {n: (None if math.isnan(v) else v) for n, v in zip(names, per_class.tolist())}
    return {"miou": miou, "per_class_iou": per_class_iou,
            "miou_classes": int((~per_class.isnan()).sum()), "segmenter": segmenter_name,
            "semantic_images": int(rendered.shape[0])}


def format_table(result: dict) -> str:
    rows = [("FID", f"{result['fid']:.3f}", ""),
            ("KID x100", f"{result['kid_x100']:.3f}", f"+- {result['kid_x100_std']:.3f}")]
    if "is" in result:
        rows.append(("IS", f"{result['is']:.3f}", f"+- {result['is_std']:.3f}"))
    else:
        rows.append(("IS", "n/a", "(the extractor gives no class logits)"))
    if "miou" in result:
        rows.append(("mIoU", f"{result['miou']:.3f}", f"(rendered label maps vs {result['segmenter']}, "
                                                      f"{result['miou_classes']} classes)"))
    lines = [f"{name:9s} {value:>10s} {extra}".rstrip() for name, value, extra in rows]
    lines.append(f"real: {result['real']['count']} images ({result['real']['dataset']}), generated: "
                 f"{result['fake_count']}, {result['size']}x{result['size']}, psi {result['psi']}, "
                 f"seed {result['seed']}")
    lines.append(f"KID is MMD^2 x100 (pi-GAN's convention), {result['kid_subsets']} subsets of "
                 f"{result['kid_subset_size']}; extractor: {result['extractor']}")
    return "\n".join(lines)
