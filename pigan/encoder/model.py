"""The encoder network: a small convolutional backbone, a Feature Pyramid Network (Lin et al. 2017)
and heads from the pyramid levels to the generator's per-layer FiLM offsets and to the camera."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import UsageError, check_number, check_positive
from ..model.render_options import RenderOptions

__all__ = ["EncoderConfig", "LatentEncoder", "encoder_config_for", "film_layer_count", "level_of_layer"]


@dataclass(frozen=True)
class EncoderConfig:
    """The architecture of one encoder, fixed by the generator it serves and the training images.

    Generator side: ``hidden_dim`` (FiLM width H) and ``num_film_layers`` (the trunk's layers plus
    the colour layer), so the heads emit ``num_film_layers`` x H frequencies and as many phases.
    Image side: ``img_size`` (inputs are resized to it). Network: ``channels`` of the first backbone
    stage (doubled per stage, capped at 8x), ``levels`` pyramid levels, ``fpn_dim`` channels of every
    pyramid level, ``head_dim`` hidden units of each head, ``pool`` (each head reads the level pooled
    to pool x pool cells, so where features are still counts). Camera: the curriculum's mean pose and
    spread; a predicted angle is mean + ``pose_range`` x stddev x tanh(raw).
    """
    hidden_dim: int
    num_film_layers: int
    img_size: int = 32
    channels: int = 32
    h_mean: float = math.pi / 2
    levels: int = 4
    v_mean: float = math.pi / 2
    fpn_dim: int = 64
    h_stddev: float = 0.3
    head_dim: int = 128
    v_stddev: float = 0.155
    pool: int = 2
    pose_range: float = 3.0

    def __post_init__(self):
        for name in ("hidden_dim", "num_film_layers", "img_size", "channels", "levels", "fpn_dim", "head_dim",
                     "pool"):
            check_positive(name, getattr(self, name))
        for name in ("h_mean", "v_mean"):
            check_number(name, getattr(self, name))
        for name in ("h_stddev", "v_stddev"):
            check_number(name, getattr(self, name), lo=0)
        check_number("pose_range", self.pose_range, lo=0, lo_open=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "EncoderConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(f"unknown encoder config keys {unknown} (a newer encoder file?)")
        return cls(**values)


def film_layer_count(generator) -> int:
    """FiLM layers whose frequencies and phases the mapping network emits: the trunk and the colour layer."""
    return len(generator.siren.network) + 1


def encoder_config_for(generator, render: RenderOptions, img_size: int, **overrides) -> EncoderConfig:
    """The encoder architecture for ``generator`` (its FiLM width and layer count) and the camera of
    ``render``. Channel widths follow the generator's: a width-256 siren gets a 64-channel backbone,
    narrow test generators a 16-channel one."""
    H = generator.siren.hidden_dim
    channels = max(16, min(64, H // 4))
    values = dict(hidden_dim=H, num_film_layers=film_layer_count(generator), img_size=img_size,
                  channels=channels, fpn_dim=2 * channels, head_dim=max(64, min(256, H // 2)),
                  h_mean=float(render.h_mean), v_mean=float(render.v_mean), h_stddev=float(render.h_stddev),
                  v_stddev=float(render.v_stddev))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EncoderConfig(**values)


def level_of_layer(layer: int, num_layers: int, levels: int) -> int:
    """The pyramid level (0 the coarsest, deepest) that predicts FiLM layer ``layer``: early SIREN
    layers set the coarse shape, so they read the coarse levels; late layers and the colour layer
    set fine detail and read the fine ones. Layers are spread evenly over the levels."""
    return min(levels - 1, layer * levels // num_layers)


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class _Backbone(nn.Module):
    """A stem and ``levels`` stages, each halving the resolution; returns every stage's features,
    finest first (C2..C5 in the FPN paper's names)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.stem = _conv(3, c.channels)
        widths = [c.channels * min(8, 2 ** i) for i in range(c.levels)]
        self.stages = nn.ModuleList()
        cin = c.channels
        for w in widths:
            self.stages.append(nn.Sequential(_conv(cin, w, stride=2), _conv(w, w)))
            cin = w
        self.widths = widths

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class _FPN(nn.Module):
    """Lateral 1x1 convolutions to a common width, a top-down pathway adding each upsampled coarser
    level to the next finer one, and a 3x3 convolution per level against upsampling aliasing."""

    def __init__(self, widths, dim):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(w, dim, 1) for w in widths)
        self.smooth = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in widths)

    def forward(self, feats):
        """``feats`` finest first -> pyramid levels coarsest first (P5, P4, ...)."""
        top = None
        out = []
        for lat, smooth, f in zip(reversed(self.lateral), reversed(self.smooth), reversed(feats)):
            x = lat(f)
            if top is not None:
                x = x + F.interpolate(top, size=x.shape[-2:], mode="nearest")
            top = x
            out.append(smooth(x))
        return out


def _head(cin, hidden, cout):
    head = nn.Sequential(nn.Linear(cin, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, cout))
    # A zero last layer predicts zero offsets and the mean pose: the untrained encoder starts an
    # inversion exactly where the encoder-free one does.
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


class LatentEncoder(nn.Module):
    """Images [B, 3, h, w] in [-1, 1] -> standardised FiLM offsets and the camera. The backbone uses
    batch norm (per-image normalisation would erase the brightness and colour that tell latents
    apart): train on batches of 2 or more, predict in eval mode.

    ``forward`` returns {"offsets": [B, 2, L, H] (frequency, phase) offsets from the generator's
    average in units of the mapping output's spread, "pitch", "yaw": [B] radians inside the
    curriculum's mean +- pose_range x stddev}. Buffers ``avg_*`` / ``std_*`` ([1, L*H]) turn
    standardised offsets into raw mapping-space values (``latent``); ``pixel_mean`` /
    ``pixel_std`` standardise the input images by the statistics of the generator's renders.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = self.config = config
        self.backbone = _Backbone(c)
        self.fpn = _FPN(self.backbone.widths, c.fpn_dim)
        feat = c.fpn_dim * c.pool * c.pool
        L, H = c.num_film_layers, c.hidden_dim
        self.latent_heads = nn.ModuleList(_head(feat, c.head_dim, 2 * H) for _ in range(L))
        self.pose_head = _head(feat, c.head_dim, 2)
        D = L * H
        for name in ("avg_frequencies", "avg_phase_shifts"):
            self.register_buffer(name, torch.zeros(1, D))
        for name in ("std_frequencies", "std_phase_shifts"):
            self.register_buffer(name, torch.ones(1, D))
        # the renders' mean image and spread across images: a generator whose images differ by a
        # few grey levels would otherwise give the backbone almost nothing to tell them apart by
        self.register_buffer("pixel_mean", torch.zeros(1, 3, c.img_size, c.img_size))
        self.register_buffer("pixel_std", torch.ones(()))

    def _pooled(self, level):
        return F.adaptive_avg_pool2d(level, self.config.pool).flatten(1)

    def forward(self, images: torch.Tensor) -> dict:
        c = self.config
        if images.shape[-1] != c.img_size or images.shape[-2] != c.img_size:
            mode = "area" if images.shape[-1] > c.img_size else "bilinear"
            images = F.interpolate(images, size=(c.img_size, c.img_size), mode=mode)
        images = (images - self.pixel_mean) / self.pixel_std
        pyramid = [self._pooled(p) for p in self.fpn(self.backbone(images))]   # coarsest first
        L, H = c.num_film_layers, c.hidden_dim
        outs = [head(pyramid[level_of_layer(i, L, len(pyramid))]) for i, head in enumerate(self.latent_heads)]
        offsets = torch.stack(outs, 1).reshape(-1, L, 2, H).transpose(1, 2)     # [B, 2, L, H]
        raw = self.pose_head(pyramid[0])                       # the pose is global: the coarsest level
        pitch = c.v_mean + c.pose_range * c.v_stddev * torch.tanh(raw[:, 0])
        yaw = c.h_mean + c.pose_range * c.h_stddev * torch.tanh(raw[:, 1])
        return {"offsets": offsets, "pitch": pitch, "yaw": yaw}

    @torch.no_grad()
    def set_pixel_statistics(self, images: torch.Tensor):
        """``pixel_mean`` and ``pixel_std`` from a batch of renders [B, 3, img_size, img_size]."""
        self.pixel_mean.copy_(images.mean(0, keepdim=True))
        self.pixel_std.copy_(images.std(0).mean().clamp_min(1e-4))

    def latent(self, offsets: torch.Tensor):
        """Standardised offsets [B, 2, L, H] -> raw (frequencies, phase_shifts) [B, L*H] each."""
        B = offsets.shape[0]
        f = self.avg_frequencies + offsets[:, 0].reshape(B, -1) * self.std_frequencies
        p = self.avg_phase_shifts + offsets[:, 1].reshape(B, -1) * self.std_phase_shifts
        return f, p

    def standardise(self, frequencies, phase_shifts) -> torch.Tensor:
        """Raw (frequencies, phase_shifts) [B, L*H] -> standardised offsets [B, 2, L, H]; inverse of ``latent``."""
        c = self.config
        f = (frequencies - self.avg_frequencies) / self.std_frequencies
        p = (phase_shifts - self.avg_phase_shifts) / self.std_phase_shifts
        return torch.stack([f, p], 1).reshape(-1, 2, c.num_film_layers, c.hidden_dim)
