"""``RenderOptions``: the camera and ray-marching settings of one render, built once from a curriculum
and handed to the generator's marcher, ``pigan.render``, ``pigan.invert`` and training's samples."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

__all__ = ["RenderOptions"]


@dataclass(frozen=True)
class RenderOptions:
    """Defaults are pi-GAN's CelebA camera and marcher.

    Image: ``img_size`` (pixels per side), ``num_steps`` (coarse samples per ray; as many fine ones
    when ``hierarchical_sample``). Camera: ``fov`` (degrees), rays from ``ray_start`` to ``ray_end``;
    the mean pose (``v_mean`` pitch, ``h_mean`` yaw, radians) and the training pose distribution
    (``h_stddev``, ``v_stddev``, ``sample_dist``). Compositing: ``clamp_mode``, ``white_back``,
    ``last_back``, ``fill_mode``, ``nerf_noise`` (density noise std). ``lock_view_dependence`` feeds
    the siren a constant view direction; ``max_batch_size`` chunks the siren's points (None: one call).
    ``skip_empty``: renders without gradients skip empty space (``pigan.model.skipping``: the same
    pixels to about 1e-3 from fewer network evaluations); a marcher under grad refuses it.
    """
    img_size: int = 64
    num_steps: int = 12
    fov: float = 12.0
    ray_start: float = 0.88
    ray_end: float = 1.12
    h_mean: float = math.pi / 2
    v_mean: float = math.pi / 2
    h_stddev: float = 0.3
    v_stddev: float = 0.155
    sample_dist: str | None = "gaussian"
    hierarchical_sample: bool = True
    clamp_mode: str = "relu"
    white_back: bool = False
    last_back: bool = False
    fill_mode: str | None = None
    nerf_noise: float = 0.0
    lock_view_dependence: bool = False
    max_batch_size: int | None = None
    skip_empty: bool = False

    @property
    def pitch(self) -> float:
        """The mean pitch (v_mean)."""
        return self.v_mean

    @property
    def yaw(self) -> float:
        """The mean yaw (h_mean)."""
        return self.h_mean

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_metadata(cls, meta: dict | None = None, base: "RenderOptions | None" = None, **overrides):
        """From a flat dict of settings (a curriculum's ``extract_metadata``, or pi-GAN's keyword
        arguments); keys that are not options are ignored; None values keep ``base``'s."""
        names = cls.names()
        values = {k: v for k, v in {**(meta or {}), **overrides}.items()
                  if k in names and (v is not None or k in ("fill_mode", "sample_dist", "max_batch_size"))}
        return dataclasses.replace(base or cls(), **values)

    @classmethod
    def from_curriculum(cls, curriculum: dict | None, step: int | None = None, *, evaluation: bool = True,
                        **overrides):
        """The options of a curriculum (stage keys ints, or digit strings after a JSON round trip).

        ``step``: the stage in force at that step (past the end, the last training stage); None: the
        last training stage, i.e. the final resolution. ``evaluation``: images to look at, as pi-GAN
        renders them: no density noise, and ``eval_last_back`` (when set) for ``last_back``.
        ``overrides`` (None values ignored) win over everything.
        """
        from . import curriculums as C

        cur = C.int_keys(dict(curriculum or {}))
        stages = C.training_stages(cur)
        if not stages:
            meta = C.extract_metadata(cur, 0)
        elif step is None:
            meta = C.extract_metadata(cur, stages[-1])
        else:
            meta = C.stage_metadata(cur, step)
        meta = dict(meta)
        if evaluation:
            meta["nerf_noise"] = 0.0
            if meta.get("eval_last_back") is not None:
                meta["last_back"] = meta["eval_last_back"]
        return cls.from_metadata(meta, **{k: v for k, v in overrides.items() if v is not None})

    def replace(self, **changes) -> "RenderOptions":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
