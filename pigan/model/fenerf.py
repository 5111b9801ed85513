"""FENeRF's generator (Sun et al., CVPR 2022; docs/MODEL.md section 10) on pi-GAN's marcher.

``SemanticGenerator3d`` is ``ImplicitGenerator3d`` with a ``SemanticSiren``: its latent is the joined
z = cat(z_geo, z_app) [B, z_geo_dim + z_app_dim] and its frequencies / phase shifts are the joined
modulations (geometry columns first), so the marcher, truncation, mean modulations, inversion, the
skip-empty marcher and training work on it unchanged. The siren gives 3 + K + 1 channels
(rgb, K semantic logits, sigma); the marcher composites all 3 + K with the same weights.

Besides the generator: ``semantic_labels`` (composited logits and opacity -> a label map, 0 the
background), ``label_planes`` (a label map -> the K one-hot planes in {-1, 1} that the semantic
discriminator reads for real images) and ``SEMANTIC_OPTIONS`` (the generator's constructor options).

The semantic discriminator's input is ``cat([image, planes], 1)`` [B, 3 + K, H, W]: for a fake, the
generator's ``forward`` output as it is; for a real, ``cat([image, label_planes(labels, K)], 1)``.
FENeRF concatenates the other way round (labels first), which only permutes the input channels of the
discriminator's first convolutions.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .fenerf_siren import SEMANTIC_SIRENS, SemanticSiren
from .generators import GENERATORS, ImplicitGenerator3d

__all__ = ["SemanticGenerator3d", "semantic_labels", "label_planes", "SEMANTIC_OPTIONS"]

SEMANTIC_OPTIONS = ("hidden_dim", "color_layers", "semantic_layers", "feature_grid_channels", "feature_grid_size",
                    "feature_grid_init_std", "map_hidden_dim", "mapping_hidden_layers", "warp")
"""Constructor options of SemanticGenerator3d beyond siren, z_dim, z_geo_dim, z_app_dim and num_classes
(passed on to the SemanticSiren; see its docstring for their meaning and defaults)."""


def _resolve_semantic_siren(siren):
    if isinstance(siren, str):
        if siren not in SEMANTIC_SIRENS:
            raise ValueError(f"siren must be one of {sorted(SEMANTIC_SIRENS)} or a SemanticSiren subclass, "
                             f"got {siren!r}")
        return SEMANTIC_SIRENS[siren]
    if not isinstance(siren, type) or not issubclass(siren, SemanticSiren):
        raise ValueError(f"siren must be a SemanticSiren subclass or its name, got {siren!r}")
    return siren


class SemanticGenerator3d(ImplicitGenerator3d):
    """FENeRF's generator: ``SemanticGenerator3d(siren="SemanticSiren", z_dim=None, *, z_geo_dim, z_app_dim,
    num_classes, **options)``; ``options`` are SEMANTIC_OPTIONS (any other keyword is a ValueError);
    ``z_dim``, when given, must be z_geo_dim + z_app_dim.

    Outputs (K = num_classes):
    - ``render(...)``: ImplicitGenerator3d.render's dict (pixels [B, 3, H, W], depth, weights) plus
      ``semantic`` [B, K, H, W], the composited logits mapped like the rgb by x * 2 - 1 (as FENeRF
      scales its output; a white background fills only the rgb), and ``opacity`` [B, H, W], the sum of
      the weights (1 everywhere under last_back, whose leftover light goes to the last sample).
      ``z_geo`` / ``z_app`` may be given instead of ``z``.
    - ``forward(z, img_size, fov, ...)`` (pi-GAN's training pass) returns (images [B, 3 + K, H, W] =
      cat(rgb, semantic logits), both mapped by x * 2 - 1, pose [B, 2] = (pitch, yaw)); FENeRF's call
      ``forward(z_geo, z_app, img_size, ...)`` is accepted too. ``staged_forward`` likewise returns
      [B, 3 + K, H, W] images. FENeRF puts the logits before the rgb; here the rgb comes first.
    """

    def __init__(self, siren="SemanticSiren", z_dim=None, *, z_geo_dim=None, z_app_dim=None, num_classes=None,
                 **options):
        nn.Module.__init__(self)
        siren_cls = _resolve_semantic_siren(siren)
        for name, v in (("z_geo_dim", z_geo_dim), ("z_app_dim", z_app_dim), ("num_classes", num_classes)):
            if v is None:
                raise ValueError(f"SemanticGenerator3d needs {name}")
        unknown = sorted(set(options) - set(SEMANTIC_OPTIONS))
        if unknown:
            raise ValueError(f"unknown SemanticGenerator3d option(s) {unknown}; known: {list(SEMANTIC_OPTIONS)}")
        self.siren = siren_cls(z_geo_dim=z_geo_dim, z_app_dim=z_app_dim, num_classes=num_classes, device=None,
                               **options)
        if z_dim is not None and z_dim != self.siren.z_dim:
            raise ValueError(f"z_dim must be z_geo_dim + z_app_dim = {self.siren.z_dim} (or None), got {z_dim!r}")
        self.z_dim = self.siren.z_dim
        self.z_geo_dim, self.z_app_dim, self.num_classes = z_geo_dim, z_app_dim, num_classes
        self.epoch = 0
        self.step = 0
        self.device = None
        self.skip_stats = None
        self.config = {"siren": siren_cls.__name__, "z_dim": self.z_dim, "z_geo_dim": z_geo_dim,
                       "z_app_dim": z_app_dim, "num_classes": num_classes, **options}

    # ------------------------------------------------------------------ the two halves of latents
    @property
    def geometry_columns(self) -> slice:
        """Columns of frequencies / phase shifts [B, (8 + C) H] that modulate the geometry (density and
        semantics); the rest (``appearance_columns``) modulate only the colour."""
        return self.siren.geometry_columns

    @property
    def appearance_columns(self) -> slice:
        return self.siren.appearance_columns

    def split_latent(self, z):
        """z [B, z_dim] -> (z_geo [B, z_geo_dim], z_app [B, z_app_dim])."""
        return self.siren.split_latent(z)

    def join_latent(self, z_geo, z_app):
        """(z_geo, z_app) -> z = cat(z_geo, z_app) [B, z_dim], the latent every method here takes."""
        return self.siren.join_latent(z_geo, z_app)

    def split_modulations(self, t):
        """Frequencies or phase shifts [B, (8 + C) H] -> (geometry part [B, 8H], appearance part [B, C H])."""
        return self.siren.split_modulations(t)

    def join_modulations(self, geometry, appearance):
        return self.siren.join_modulations(geometry, appearance)

    # ------------------------------------------------------------------ outputs
    def march(self, frequencies, phase_shifts, points_cam, z_vals, dirs_cam, cam2world, options, proposals=None):
        """ImplicitGenerator3d.march, except that a white background (``white_back``) fills the rgb only: the
        semantic channels keep their plain composite, so empty pixels have no class (planes at -1 after
        x * 2 - 1, as a real background's label planes) instead of every class at once. (Under last_back the
        weights sum to 1 and the fill is 0 wherever pi-GAN's composite adds it.)"""
        rgb, depth, weights = super().march(frequencies, phase_shifts, points_cam, z_vals, dirs_cam, cam2world,
                                            options, proposals=proposals)
        if options.white_back:
            fill = 1 - weights.sum(-2)                                              # [B, R, 1]
            rgb = torch.cat([rgb[..., :3], rgb[..., 3:] - fill], -1)
        return rgb, depth, weights

    def _extra_outputs(self, image, weights) -> dict:
        B, _, H, W = image.shape
        return {"semantic": image[:, 3:].contiguous(),                              # [B, K, H, W]
                "opacity": weights.sum((-2, -1)).reshape(B, H, W)}

    def render(self, z=None, *, z_geo=None, z_app=None, **kwargs):
        """ImplicitGenerator3d.render (same keywords), with ``z_geo`` and ``z_app`` as an alternative to
        ``z``; the dict holds ``semantic`` and ``opacity`` too (see the class docstring)."""
        if z_geo is not None or z_app is not None:
            if z is not None:
                raise ValueError("render takes z or (z_geo, z_app), not both")
            if z_geo is None or z_app is None:
                raise ValueError("render needs both z_geo and z_app")
            z = self.join_latent(z_geo, z_app)
        return super().render(z, **kwargs)

    def forward(self, z, *args, **kwargs):
        if args and isinstance(args[0], torch.Tensor):          # FENeRF's forward(z_geo, z_app, img_size, ...)
            z, args = self.join_latent(z, args[0]), args[1:]
        return super().forward(z, *args, **kwargs)

    def staged_forward(self, z, *args, **kwargs):
        if args and isinstance(args[0], torch.Tensor):
            z, args = self.join_latent(z, args[0]), args[1:]
        return super().staged_forward(z, *args, **kwargs)


def semantic_labels(semantic, opacity, threshold=0.9):
    """Label map int64 [B, H, W] from composited logits ``semantic`` [B, K, H, W] (any monotone scaling,
    e.g. render's x * 2 - 1) and ``opacity`` [B, H, W]: 0 (background) where opacity < threshold, else
    1 + the argmax over the K classes (FENeRF's evaluation pads a background channel the same way)."""
    if not isinstance(semantic, torch.Tensor) or semantic.dim() != 4 or semantic.shape[1] < 1:
        got = tuple(semantic.shape) if isinstance(semantic, torch.Tensor) else type(semantic).__name__
        raise ValueError(f"semantic must have shape [B, K, H, W] with K >= 1, got {got}")
    B, _, H, W = semantic.shape
    if not isinstance(opacity, torch.Tensor) or tuple(opacity.shape) != (B, H, W):
        got = tuple(opacity.shape) if isinstance(opacity, torch.Tensor) else type(opacity).__name__
        raise ValueError(f"opacity must have shape [B, H, W] = [{B}, {H}, {W}], got {got}")
    if opacity.device != semantic.device:
        raise ValueError(f"opacity is on {opacity.device}, semantic on {semantic.device}: one device expected")
    labels = semantic.argmax(1) + 1                                                 # [B, H, W]
    return torch.where(opacity < threshold, torch.zeros_like(labels), labels)


def label_planes(labels, num_classes, dtype=torch.float32):
    """Label map ``labels`` int [B, H, W] (0 = background, 1..K the classes) -> [B, K, H, W] one-hot planes
    of the K classes (background dropped) mapped to {-1, 1}: the semantic discriminator's view of a real
    image's labels (FENeRF's)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 3 or labels.dtype.is_floating_point \
            or labels.dtype.is_complex or labels.dtype == torch.bool:
        got = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer label map [B, H, W], got {got}")
    if labels.numel() and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}] (0 = background), got values in "
                         f"[{labels.min().item()}, {labels.max().item()}]")
    classes = torch.arange(1, num_classes + 1, device=labels.device).view(1, -1, 1, 1)
    return (labels[:, None] == classes).to(dtype) * 2 - 1                            # [B, K, H, W]


GENERATORS["SemanticGenerator3d"] = SemanticGenerator3d
