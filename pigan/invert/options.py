"""``InvertOptions``: every setting of one inversion (``pigan.invert.invert``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..common import UsageError, check_number, check_positive
from ..model.render_options import RenderOptions
from .objectives import FENERF_IMAGE_WEIGHT, FENERF_OFFSET_NORM, FENERF_SEMANTIC_WEIGHT

__all__ = ["InvertOptions"]


@dataclass(frozen=True)
class InvertOptions:
    """Defaults are this project's (pi-GAN's schedule without its latent noise and depth jitter).

    Offsets stage: ``iterations`` of Adam at ``lr`` (None: 1e-2, pi-GAN's, from the mean latent;
    5e-3 after a z stage, whose latent is already close) with ``weight_decay``, the learning rate
    x ``lr_gamma`` every ``lr_step`` iterations; ``noise_std`` x (1 - i/n) Gaussian noise on the
    averages (pi-GAN: 0.03); ``jitter`` the sample depths of the loss's renders (pi-GAN: True).
    ``num_avg`` z samples give the mean latent; ``seed`` (None: random) draws them and the noise.
    ``render``: the camera and marcher (default ``RenderOptions()``; img_size comes from the image).
    ``fit_pose``: optimise pitch and yaw too (radians, Adam at ``pose_lr``). ``start_poses``
    ((pitch, yaw), ...; default: the mean pose): with several, each gets ``search_iterations``
    first and the fit starts from the best. ``z_iterations`` > 0: first fit the mapping network's z
    (from z = 0, Adam at ``z_lr``); the start-pose search then runs in this stage. A clean render
    is checked every ``check_every`` iterations; one worse than ``backtrack`` x the best (0: never)
    restarts from the best iterate at half the learning rate. ``encoder_start``: the start
    (``invert``'s ``init`` and ``start_poses``) is an encoder's prediction (``pigan.encoder``):
    ``iterations`` may then be 0 (the start is the result), and the offsets' default step is the
    smaller one, as after a z stage.

    With a target mask (a semantic generator's inversion, ``invert(..., mask=...)``) the loss is
    ``image_weight`` x pixel MSE + ``semantic_weight`` x semantic-plane MSE, plus ``offset_norm`` x the
    offsets' norm in the offsets stage (``weights``); None takes FENeRF's values with a mask (0.2 and 1)
    and pi-GAN's without one (the pixel MSE alone: 1 and 0).
    """
    iterations: int = 700
    lr: float | None = None
    weight_decay: float = 1e-4
    lr_step: int = 100
    lr_gamma: float = 0.75
    noise_std: float = 0.0
    jitter: bool = False
    num_avg: int = 10000
    render: RenderOptions | None = None
    seed: int | None = 0
    fit_pose: bool = False
    pose_lr: float = 5e-3
    start_poses: tuple[tuple[float, float], ...] | None = None
    search_iterations: int = 30
    check_every: int = 10
    backtrack: float = 1.5
    z_iterations: int = 0
    z_lr: float = 3e-2
    encoder_start: bool = False
    image_weight: float | None = None
    semantic_weight: float = FENERF_SEMANTIC_WEIGHT
    offset_norm: float | None = None

    def __post_init__(self):
        check_positive("iterations", self.iterations, allow_zero=self.encoder_start)
        if self.encoder_start and self.z_iterations:
            raise UsageError("encoder_start and z_iterations exclude each other (both choose the starting latent)")
        for name in ("lr_step", "num_avg", "check_every", "search_iterations"):
            check_positive(name, getattr(self, name))
        check_positive("z_iterations", self.z_iterations, allow_zero=True)
        for name in ("lr", "pose_lr", "z_lr", "lr_gamma"):
            if name != "lr" or self.lr is not None:
                check_number(name, getattr(self, name), lo=0, lo_open=True)
        check_number("weight_decay", self.weight_decay, lo=0)
        check_number("noise_std", self.noise_std, lo=0)
        for name in ("image_weight", "semantic_weight", "offset_norm"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), lo=0)
        if self.backtrack != 0:
            check_number("backtrack", self.backtrack, lo=1, lo_open=True)
        if self.start_poses is not None:
            poses = tuple(tuple(p) for p in self.start_poses)
            if any(len(p) != 2 for p in poses):
                raise UsageError(f"start_poses must be (pitch, yaw) pairs, got {self.start_poses!r}")
            # a tuple keeps the options hashable; no poses means the mean pose
            object.__setattr__(self, "start_poses", poses or None)

    @property
    def offsets_lr(self) -> float:
        """The offsets' Adam step: ``lr``, or its default (smaller after a z stage or from an
        encoder's start: at 1e-2 the first steps from a latent already close can overshoot)."""
        if self.lr is not None:
            return self.lr
        return 5e-3 if self.z_iterations or self.encoder_start else 1e-2

    def weights(self, masked: bool) -> tuple[float, float, float]:
        """(image weight, semantic weight, offset-norm weight) of a fit with a target mask (``masked``),
        or without one: then the loss is pi-GAN's plain pixel MSE, (1, 0, offset_norm or 0)."""
        if not masked:
            return 1.0, 0.0, 0.0 if self.offset_norm is None else float(self.offset_norm)
        image = FENERF_IMAGE_WEIGHT if self.image_weight is None else float(self.image_weight)
        if image == 0 and self.semantic_weight == 0:
            raise UsageError("image_weight and semantic_weight are both 0: the fit would have nothing to match")
        return image, float(self.semantic_weight), FENERF_OFFSET_NORM if self.offset_norm is None else \
            float(self.offset_norm)

    def replace(self, **changes) -> "InvertOptions":
        return dataclasses.replace(self, **changes)
