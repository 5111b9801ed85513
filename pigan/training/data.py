"""Batches for training in a deterministic order (so a resumed run sees exactly the images an
uninterrupted one would), rebuilt at each stage whose image size or batch size differs."""
from __future__ import annotations

import os

import torch

from ..common import UsageError
from ..data import ProceduralShapes, build_dataset
from ..model import curriculums as C
from .distributed import barrier


class BatchStream:
    """Per-process batches in a DistributedSampler order fixed by (seed, epoch); ``position`` counts
    batches taken in the current epoch. Flips come from a generator seeded by (seed, step, rank)."""

    def __init__(self, dataset, batch_size: int, seed: int, rank: int, world: int, num_workers: int,
                 device: torch.device):
        from torch.utils.data.distributed import DistributedSampler

        per_epoch = len(dataset) // world
        if per_epoch < batch_size:
            raise UsageError(f"the dataset has {len(dataset)} images: too few for batch_size {batch_size} "
                             f"on {world} process(es)")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world, self.device = rank, world, device
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.num_workers = num_workers
        self.in_memory = isinstance(dataset, ProceduralShapes)
        self.batches_per_epoch = len(self.sampler) // batch_size
        self._iter = None

    def _epoch_batches(self, epoch: int, start: int):
        self.sampler.set_epoch(epoch)
        idx = list(self.sampler)
        return [idx[i * self.batch_size:(i + 1) * self.batch_size]
                for i in range(start, self.batches_per_epoch)]

    def _open(self, epoch, position):
        batches = self._epoch_batches(epoch, position)
        if self.in_memory:
            self._iter = (self.dataset.images[torch.tensor(b)] for b in batches)
        else:
            from torch.utils.data import DataLoader
            loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                                pin_memory=self.device.type == "cuda", persistent_workers=False)
            self._iter = (x for x, _ in loader)
        self._key = (epoch, position)

    def next(self, epoch: int, position: int, step: int):
        """The batch at (epoch, position); returns (images on device, new epoch, new position)."""
        if position >= self.batches_per_epoch:
            epoch, position = epoch + 1, 0
        if self._iter is None or self._key != (epoch, position):
            self._open(epoch, position)
        imgs = next(self._iter)
        self._key = (epoch, position + 1)
        g = torch.Generator().manual_seed(hash((self.seed, step, self.rank)) & 0x7FFFFFFF)
        flip = torch.rand(imgs.shape[0], generator=g) < 0.5
        imgs = torch.where(flip[:, None, None, None], imgs.flip(-1), imgs)
        return imgs.to(self.device, non_blocking=True), epoch, position + 1


class StageData:
    """The dataset (built once, at the largest image size of the curriculum) and the BatchStream of
    the stage in force; ``ensure(meta)`` rebuilds the stream when the stage's (img_size, batch_size)
    changes and says whether it did (a new stage restarts the epoch order, as pi-GAN's new loader)."""

    def __init__(self, cur: dict, data: str, seed: int, num_images: int | None, num_workers: int | None,
                 rank: int, world: int, device: torch.device):
        self.cur, self.data, self.seed = cur, data, seed
        self.num_images, self.num_workers = num_images, num_workers
        self.rank, self.world, self.device = rank, world, device
        self.dataset = None
        self.stream = None
        self.key = None

    def _build(self, meta: dict):
        camera = {k: meta[k] for k in ("fov", "ray_start", "ray_end", "h_stddev", "v_stddev",
                                       "h_mean", "v_mean", "sample_dist") if k in meta}
        sizes = [C.extract_metadata(self.cur, s)["img_size"] for s in C.training_stages(self.cur)]
        num_images = self.num_images or int(self.cur.get("num_images", 2048))
        distributed, is_main = self.world > 1, self.rank == 0
        if distributed and not is_main:
            barrier(True)              # rank 0 generates (and caches) the procedural dataset first
        try:
            return build_dataset(self.data, meta["img_size"], camera=camera, seed=self.seed,
                                 num_images=num_images, render_size=max(sizes),
                                 crop_fraction=self.cur.get("crop_fraction", 1.0), verbose=is_main)
        except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
            raise UsageError(str(exc))
        finally:
            if distributed and is_main:
                barrier(True)          # the others now load it from the cache (or fail alike)

    def ensure(self, meta: dict) -> bool:
        key = (meta["img_size"], meta["batch_size"])
        if key == self.key:
            return False
        if self.dataset is None:
            self.dataset = self._build(meta)
        elif isinstance(self.dataset, ProceduralShapes):
            self.dataset.set_img_size(meta["img_size"])
        else:
            self.dataset.img_size = meta["img_size"]
        workers = self.num_workers
        if workers is None:
            workers = 0 if isinstance(self.dataset, ProceduralShapes) else min(4, os.cpu_count() or 1)
        restarted = self.key is not None
        self.stream = BatchStream(self.dataset, meta["batch_size"], self.seed, self.rank, self.world,
                                  workers, self.device)
        self.key = key
        return restarted
