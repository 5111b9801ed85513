"""pi-GAN's progressive discriminators (docs/MODEL.md section 7), drop-in for
``discriminators.discriminators``: same class names and state-dict keys.

Every discriminator picks its first block from the input's size (``img_size_to_layer``) and, after
that first block, fades in the next-coarser fromRGB path on a half-size copy of the image while
``alpha < 1``: ``x = alpha * x + (1 - alpha) * fromRGB[s+1](downsample(img, 0.5, nearest))``.

``StridedDiscriminator`` (the Cats model) is ``CCSEncoderDiscriminator`` without coordinate
channels: its residual blocks use plain 3x3 convolutions (the second one strided) and a strided 1x1
skip; its keys are ``layers.i.network.{0,2}.weight`` (no ``.conv``), ``layers.i.proj``, ``fromRGB.i``
and the 400 -> 1 + 256 + 2 head, and it returns (prediction, latent, position) like the encoders.
pi-GAN's own StridedDiscriminator differs: a 400 -> 1 head, an unused ``pose_layer`` Linear(2, 400),
and (prediction, None, None) as outputs; its released weights do not load into this class.

Option beyond pi-GAN (off by default): ``max_channels`` caps every block's width (the key layout
stays, the shapes shrink), for small CPU runs such as the demo curriculum.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "AdapterBlock", "AddCoords", "CoordConv", "ResidualCoordConvBlock", "ResidualCCBlock",
    "StridedResidualConvBlock", "ProgressiveDiscriminator", "ProgressiveEncoderDiscriminator",
    "CCSEncoderDiscriminator", "StridedDiscriminator", "CCSDoubleEncoderDiscriminator", "kaiming_leaky_init",
    "DISCRIMINATORS",
]

LATENT_DIM = 256


def kaiming_leaky_init(m):
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")


class AdapterBlock(nn.Module):
    """fromRGB: 1x1 conv input_channels (3) -> C, LeakyReLU(0.2)."""

    def __init__(self, output_channels, input_channels=3):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(input_channels, output_channels, 1, padding=0), nn.LeakyReLU(0.2))

    def forward(self, input):
        return self.model(input)


class AddCoords(nn.Module):
    """Appends two channels: xx in [-1, 1] along the height axis, yy in [-1, 1] along the width axis
    (pi-GAN's orientation; no radius channel unless with_r)."""

    def __init__(self, with_r=False):
        super().__init__()
        self.with_r = with_r

    def forward(self, input_tensor):
        B, _, H, W = input_tensor.shape
        dev = input_tensor.device
        # Computed in float32 then cast, as pi-GAN does. pi-GAN divides by (dim - 1); a 1-pixel axis
        # would be 0/0, so it gets the coordinate -1 instead.
        xx = (torch.arange(H, device=dev) / max(H - 1, 1) * 2 - 1).to(input_tensor.dtype)   # [H]
        yy = (torch.arange(W, device=dev) / max(W - 1, 1) * 2 - 1).to(input_tensor.dtype)   # [W]
        xx = xx.view(1, 1, H, 1).expand(B, 1, H, W)
        yy = yy.view(1, 1, 1, W).expand(B, 1, H, W)
        parts = [input_tensor, xx, yy]
        if self.with_r:
            parts.append(torch.sqrt(xx ** 2 + yy ** 2))
        return torch.cat(parts, dim=1)


class CoordConv(nn.Module):
    def __init__(self, in_channels, out_channels, with_r=False, **kwargs):
        super().__init__()
        self.addcoords = AddCoords(with_r=with_r)
        self.conv = nn.Conv2d(in_channels + 2 + int(with_r), out_channels, **kwargs)

    def forward(self, x):
        return self.conv(self.addcoords(x))


class ResidualCoordConvBlock(nn.Module):
    """Two CoordConv 3x3 + LReLU; avg-pool /2 on both paths when downsample; 1x1 projection of the
    identity when channels change; (y + identity) / sqrt(2)."""

    def __init__(self, inplanes, planes, kernel_size=3, stride=1, downsample=False, groups=1):
        super().__init__()
        p = kernel_size // 2
        self.network = nn.Sequential(
            CoordConv(inplanes, planes, kernel_size=kernel_size, stride=stride, padding=p),
            nn.LeakyReLU(0.2, inplace=True),
            CoordConv(planes, planes, kernel_size=kernel_size, padding=p),
            nn.LeakyReLU(0.2, inplace=True))
        self.network.apply(kaiming_leaky_init)
        self.proj = nn.Conv2d(inplanes, planes, 1) if inplanes != planes else None
        self.downsample = downsample

    def forward(self, identity):
        y = self.network(identity)
        if self.downsample:
            y = F.avg_pool2d(y, 2)
            identity = F.avg_pool2d(identity, 2)
        if self.proj is not None:
            identity = self.proj(identity)
        return (y + identity) / math.sqrt(2)


class ResidualCCBlock(nn.Module):
    """CoordConv 3x3 + LReLU, CoordConv 3x3 stride 2 + LReLU; skip 1x1 stride 2; (y + skip)/sqrt(2)."""

    def __init__(self, inplanes, planes, kernel_size=3):
        super().__init__()
        p = kernel_size // 2
        self.network = nn.Sequential(
            CoordConv(inplanes, planes, kernel_size=kernel_size, padding=p),
            nn.LeakyReLU(0.2, inplace=True),
            CoordConv(planes, planes, kernel_size=kernel_size, stride=2, padding=p),
            nn.LeakyReLU(0.2, inplace=True))
        self.network.apply(kaiming_leaky_init)
        self.proj = nn.Conv2d(inplanes, planes, 1, stride=2)

    def forward(self, input):
        return (self.network(input) + self.proj(input)) / math.sqrt(2)


class StridedResidualConvBlock(ResidualCCBlock):
    """ResidualCCBlock with plain convolutions (no coordinate channels)."""

    def __init__(self, inplanes, planes, kernel_size=3):
        nn.Module.__init__(self)
        p = kernel_size // 2
        self.network = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=kernel_size, padding=p),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(planes, planes, kernel_size=kernel_size, stride=2, padding=p),
            nn.LeakyReLU(0.2, inplace=True))
        self.network.apply(kaiming_leaky_init)
        self.proj = nn.Conv2d(inplanes, planes, 1, stride=2)


def _capped(channels, max_channels, kwargs):
    """Channel widths, each capped at max_channels (also read from kwargs['disc_max_channels'])."""
    if max_channels is None:
        max_channels = kwargs.get("disc_max_channels")
    if max_channels is None:
        return tuple(channels)
    if isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1:
        raise ValueError(f"max_channels must be a positive int or None, got {max_channels!r}")
    return tuple(min(c, max_channels) for c in channels)


class _Progressive(nn.Module):
    """Shared forward: size-selected start, fade-in after the first block, head."""

    _channels: tuple                 # fromRGB / block widths, pi-GAN's
    _size_to_layer: dict             # image size -> first block
    head_channels = 1
    input_channels = 3

    def __init__(self, max_channels=None, **kwargs):
        super().__init__()
        self.epoch = 0
        self.step = 0
        c = _capped(self._channels, max_channels, kwargs)
        self.config = {"max_channels": min(max(c), 400)} if c != tuple(self._channels) else {}
        self.layers = nn.ModuleList([self._make_block(c[i], c[i + 1]) for i in range(len(c) - 1)])
        self.fromRGB = nn.ModuleList([AdapterBlock(ch, self.input_channels) for ch in c])
        self.final_layer = nn.Conv2d(c[-1], self.head_channels, 2)
        self.img_size_to_layer = dict(self._size_to_layer)

    def _make_block(self, inplanes, planes):
        raise NotImplementedError

    def _check_input(self, input):
        if not isinstance(input, torch.Tensor) or input.dim() != 4 or input.shape[1] != self.input_channels:
            raise ValueError(f"input must be an image batch [B, {self.input_channels}, S, S], got "
                             f"{tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__}")
        size = input.shape[-1]
        if input.shape[-2] != size or size not in self.img_size_to_layer:
            raise ValueError(f"{type(self).__name__} takes square images of size "
                             f"{sorted(self.img_size_to_layer)}, got {tuple(input.shape[-2:])}")
        return self.img_size_to_layer[size]

    def _trunk(self, input, alpha, instance_noise=0):
        start = self._check_input(input)
        if instance_noise > 0:
            input = input + torch.randn_like(input) * instance_noise
        x = self.fromRGB[start](input)
        for i, layer in enumerate(self.layers[start:]):
            if i == 1 and alpha < 1:
                x = alpha * x + (1 - alpha) * self.fromRGB[start + 1](
                    F.interpolate(input, scale_factor=0.5, mode="nearest"))
            x = layer(x)
        return self.final_layer(x).reshape(x.shape[0], -1)

    def forward(self, input, alpha, instance_noise=0, **kwargs):
        x = self._trunk(input, alpha, instance_noise)
        return x[..., 0:1], x[..., 1:1 + LATENT_DIM], x[..., 1 + LATENT_DIM:3 + LATENT_DIM]


class ProgressiveDiscriminator(_Progressive):
    """8 ResidualCoordConvBlocks (16 -> ... -> 400), head Conv2d(400, 1, 2): returns prediction [B, 1]."""

    _channels = (16, 32, 64, 128, 256, 400, 400, 400, 400)
    head_channels = 1

    _size_to_layer = {2: 8, 4: 7, 8: 6, 16: 5, 32: 4, 64: 3, 128: 2, 256: 1, 512: 0}

    def _make_block(self, inplanes, planes):
        return ResidualCoordConvBlock(inplanes, planes, downsample=True)

    def forward(self, input, alpha, instance_noise=0, **kwargs):
        return self._trunk(input, alpha, instance_noise)


class ProgressiveEncoderDiscriminator(ProgressiveDiscriminator):
    """ProgressiveDiscriminator with head 400 -> 1 + 256 + 2: (prediction, latent, position)."""

    head_channels = 1 + LATENT_DIM + 2

    def forward(self, input, alpha, instance_noise=0, **kwargs):
        return _Progressive.forward(self, input, alpha, instance_noise, **kwargs)


class CCSEncoderDiscriminator(_Progressive):
    """7 ResidualCCBlocks 32 -> 64 -> 128 -> 256 -> 400 x4, head 400 -> 259."""

    _block = ResidualCCBlock
    _channels = (32, 64, 128, 256, 400, 400, 400, 400)

    head_channels = 1 + LATENT_DIM + 2
    _size_to_layer = {2: 7, 4: 6, 8: 5, 16: 4, 32: 3, 64: 2, 128: 1, 256: 0}

    def _make_block(self, inplanes, planes):
        return self._block(inplanes, planes)


class StridedDiscriminator(CCSEncoderDiscriminator):
    """CCSEncoderDiscriminator with plain (coordinate-free) convolutions; see the module docstring."""

    _block = StridedResidualConvBlock


class CCSDoubleEncoderDiscriminator(CCSEncoderDiscriminator):
    """FENeRF's discriminator: CCSEncoderDiscriminator reading ``input_channels`` channels (3 for the image
    discriminator; 3 + K for the semantic one: the image, then K label planes in [-1, 1]) whose head
    400 -> 1 + latent_geo_dim + latent_app_dim + 2 predicts (prediction [B, 1], z_geo [B, latent_geo_dim],
    z_app [B, latent_app_dim], position [B, 2] = pitch, yaw). ``instance_noise`` is added to the input,
    as in this project's other discriminators (FENeRF adds it after fromRGB)."""

    def __init__(self, latent_geo_dim=256, latent_app_dim=256, input_channels=3, max_channels=None, **kwargs):
        for name, v in (("latent_geo_dim", latent_geo_dim), ("latent_app_dim", latent_app_dim),
                        ("input_channels", input_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.latent_geo_dim, self.latent_app_dim = latent_geo_dim, latent_app_dim
        self.input_channels = input_channels
        self.head_channels = 1 + latent_geo_dim + latent_app_dim + 2
        super().__init__(max_channels, **kwargs)
        self.config.update(latent_geo_dim=latent_geo_dim, latent_app_dim=latent_app_dim,
                           input_channels=input_channels)

    def forward(self, input, alpha, instance_noise=0, **kwargs):
        x = self._trunk(input, alpha, instance_noise)                 # [B, 1 + Lg + La + 2]
        g, a = self.latent_geo_dim, self.latent_app_dim
        return x[..., :1], x[..., 1:1 + g], x[..., 1 + g:1 + g + a], x[..., 1 + g + a:]


DISCRIMINATORS = {c.__name__: c for c in (ProgressiveDiscriminator, ProgressiveEncoderDiscriminator,
                                          CCSEncoderDiscriminator, StridedDiscriminator,
                                          CCSDoubleEncoderDiscriminator)}
