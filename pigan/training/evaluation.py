"""Sample-quality metrics during training (``pigan train --eval-every K``).

Every K steps all ranks render their share of the generated images with the EMA generator
(``pigan.evaluate.generated_features``: the image set does not depend on the number of ranks), rank 0
computes FID, KID x100 and IS against the real-image features (computed once, cached on disk), logs
them to log.csv / TensorBoard and plots them to ``metrics.png``. Image generation draws from its own
seeded generators, so the training random streams (and a resumed run) are unchanged by evaluation.

Settings: ``--eval-real`` (default: the training data), ``--eval-real-count`` / ``--eval-fake-count``
/ ``--eval-size`` (default: the curriculum's ``eval_real_count``, ``eval_fake_count``,
``eval_img_size``, else pi-GAN's 8000 / 2048 / 128), ``--inception`` (as ``pigan eval``).
"""
from __future__ import annotations

from pathlib import Path

from ..common import UsageError, check_number, check_positive

METRIC_KEYS = ("fid", "kid_x100", "is")


def resolve(config, cur: dict):
    """Fill the eval settings of ``config`` (a TrainConfig) from the curriculum and check them (and
    the weights) before any work."""
    from ..evaluate import PIGAN_PROTOCOL

    if config.eval_every is None:
        config.eval_every = int(cur.get("eval_every", 0) or 0)
    for name, key, default in (("eval_real_count", "eval_real_count", PIGAN_PROTOCOL["real_count"]),
                               ("eval_fake_count", "eval_fake_count", PIGAN_PROTOCOL["fake_count"]),
                               ("eval_size", "eval_img_size", PIGAN_PROTOCOL["size"])):
        if getattr(config, name) is None:
            setattr(config, name, int(cur.get(key, default)))
    check_positive("--eval-every", config.eval_every, allow_zero=True)
    for name in ("eval_real_count", "eval_fake_count"):
        flag = "--" + name.replace("_", "-")
        check_number(flag, check_positive(flag, getattr(config, name)), 2)     # FID needs two images
    check_positive("--eval-size", config.eval_size)
    if config.eval_every:
        from .. import metrics
        try:
            metrics.find_inception_weights(config.inception)
            import torch_fidelity  # noqa: F401
        except (metrics.InceptionWeightsNotFound, ImportError) as exc:
            raise UsageError(f"--eval-every: {exc}") from exc


class TrainingEvaluator:
    """Computes the metrics of a trainer's EMA generator; ``extractor`` may be injected (tests)."""

    def __init__(self, config, cur: dict, device, rank: int, world: int, extractor=None):
        from .. import metrics
        self.config, self.cur, self.rank, self.world = config, cur, rank, world
        self.extractor = extractor or metrics.InceptionExtractor(config.inception, device)
        self.real = None
        self.history: dict[str, list] = {k: [] for k in ("step",) + METRIC_KEYS}

    def _real_features(self, options):
        from ..evaluate import camera, real_features
        if self.real is None:
            c = self.config
            data = c.eval_real or c.data
            self.real, _ = real_features(data, self.extractor, c.eval_size, c.eval_real_count,
                                         camera=camera(options),
                                         crop_fraction=float(self.cur.get("crop_fraction", 1.0)))
        return self.real

    def __call__(self, generator, step: int, seed: int = 0) -> dict | None:
        """All ranks call this; rank 0 gets {"fid", "kid_x100", "is", ...}, the others None."""
        from ..evaluate import eval_options, generated_features, metrics_from_features
        options = eval_options(self.cur)
        fake, logits, _ = generated_features(generator, self.extractor, options, self.config.eval_fake_count,
                                             self.config.eval_size, psi=1.0, seed=seed, rank=self.rank,
                                             world_size=self.world)
        if self.rank != 0:
            return None
        result = metrics_from_features(self._real_features(options), fake, logits, seed=seed)
        self.history["step"].append(step)
        for k in METRIC_KEYS:
            self.history[k].append(result.get(k, float("nan")))
        return result

    def plot(self, path: Path):
        from ..logging_utils import plot_curves
        series = {k: (self.history["step"], self.history[k]) for k in METRIC_KEYS if self.history[k]}
        return plot_curves(series, path, title=f"FID / KID x100 / IS ({self.extractor.name})", smooth=1)


def scalars(result: dict) -> dict:
    """The logged subset of a metrics result."""
    return {k: float(result[k]) for k in METRIC_KEYS if k in result}


__all__ = ["resolve", "TrainingEvaluator", "scalars", "METRIC_KEYS"]
