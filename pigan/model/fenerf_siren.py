"""FENeRF's semantic radiance field (Sun et al., CVPR 2022; docs/MODEL.md section 10): pi-GAN's FiLM-SIREN
split into a geometry half and an appearance half, with semantic logits read off the geometry.

    p      = warp(x)                                               # [B, N, 3], box of side `warp`
    h      = FiLM stack of 8 layers on p, modulated by map_geo(z_geo)  # [B, N, H]
    sigma  = Linear(H, 1)(h)
    logits = semantic_head(h)                                      # K class logits, Linear layers only
    c      = FiLM stack of `color_layers` layers on cat(dirs, grid(p), h), modulated by map_app(z_app)
    rgb    = sigmoid(Linear(H, 3)(c))
    out    = cat(rgb, logits, sigma)                               # [B, N, 3 + K + 1]

K (``num_classes``) counts the labelled classes without the background (FENeRF's convention: 18 on
CelebAMask-HQ). ``grid(p)`` is an optional learnable feature volume sampled trilinearly at the warped
point (FENeRF: 32 channels on a 96^3 grid).

The two mapping networks are held by one module, ``mapping_network``, that takes the joined latent
z = cat(z_geo, z_app) and returns the joined modulations: frequencies and phase shifts [B, (8 + C) H],
the trunk's 8 blocks of H columns first, then the C colour layers' (``geometry_columns`` /
``appearance_columns``). Code written for pi-GAN's one-latent siren (the marcher, truncation toward the
mean modulations, inversion of frequencies and phases, training that draws z of ``z_dim``) therefore
runs on it unchanged. Every FiLM layer goes through ``pigan.ops.film_siren`` / ``film_siren_stack``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from pigan.ops import film_siren_stack

from .siren import (TALLSIREN, CustomMappingNetwork, FiLMLayer, UniformBoxWarp, _needs_layer_calls,
                    first_layer_film_sine_init, frequency_init)

__all__ = ["SemanticMappingNetwork", "SemanticSiren", "SEMANTIC_SIRENS", "run_film_layers"]


def run_film_layers(layers, x, freqs, phases):
    """FiLMLayers applied in turn to x [B, N, K]: one film_siren_stack, or layer by layer when a layer
    has hooks or is a subclass (as TALLSIREN's trunk decides). freqs / phases: one [B, H] per layer."""
    if _needs_layer_calls(layers):
        for layer, f, p in zip(layers, freqs, phases):
            x = layer(x, f, p)
        return x
    return film_siren_stack(x, [m.layer.weight for m in layers], [m.layer.bias for m in layers],
                            list(freqs), list(phases))


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


class SemanticMappingNetwork(nn.Module):
    """z = cat(z_geo, z_app) [B, z_geo_dim + z_app_dim] -> (frequencies, phase shifts), each
    cat(geometry part, appearance part) along the last dim. ``geometry`` and ``appearance`` are
    pi-GAN mapping networks (CustomMappingNetwork) of the two halves of z."""

    def __init__(self, z_geo_dim, z_app_dim, map_hidden_dim, geometry_output_dim, appearance_output_dim,
                 n_hidden_layers=4):
        super().__init__()
        self.z_geo_dim, self.z_app_dim = z_geo_dim, z_app_dim
        self.geometry = CustomMappingNetwork(z_geo_dim, map_hidden_dim, geometry_output_dim, n_hidden_layers)
        self.appearance = CustomMappingNetwork(z_app_dim, map_hidden_dim, appearance_output_dim, n_hidden_layers)

    def forward(self, z):
        width = self.z_geo_dim + self.z_app_dim
        if not isinstance(z, torch.Tensor) or z.dim() < 1 or z.shape[-1] != width:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape [B, z_geo_dim + z_app_dim] = [B, {width}] "
                             f"(geometry part first), got {got}")
        # contiguous halves: each network then computes exactly what it computes on z_geo (z_app) alone
        f_geo, p_geo = self.geometry(z[..., :self.z_geo_dim].contiguous())    # [B, 8H] each
        f_app, p_app = self.appearance(z[..., self.z_geo_dim:].contiguous())  # [B, C H] each
        return torch.cat([f_geo, f_app], -1), torch.cat([p_geo, p_app], -1)


class SemanticSiren(TALLSIREN):
    """FENeRF's texture-embedding semantic siren (see the module docstring). Keyword-only options:

    z_geo_dim, z_app_dim: the two latents' widths (z_dim is their sum); num_classes: K, the labelled
    classes without the background; hidden_dim: H (256); color_layers: FiLM layers of the colour
    branch (3); semantic_layers: Linear layers of the semantic head (3, no activation between them, as
    FENeRF); feature_grid_channels (32; 0 = no grid), feature_grid_size (96), feature_grid_init_std
    (0.1); map_hidden_dim (256) and mapping_hidden_layers (4: FENeRF's mapping networks have one more
    hidden layer than pi-GAN's); warp: the side of the box that maps to [-1, 1]^3 (0.24, pi-GAN's
    CelebA box) or None (points used as they are).

    Trunk, density layer and initialisation are TALLSIREN's (its ``_trunk`` and ``_sample_features``
    are reused); ``forward(input, z, ray_directions)`` maps z then calls
    ``forward_with_frequencies_phase_shifts``.
    """

    def __init__(self, *, z_geo_dim, z_app_dim, num_classes, hidden_dim=256, color_layers=3, semantic_layers=3,
                 feature_grid_channels=32, feature_grid_size=96, feature_grid_init_std=0.1, map_hidden_dim=256,
                 mapping_hidden_layers=4, warp=0.24, device=None):
        nn.Module.__init__(self)
        for name, v in (("z_geo_dim", z_geo_dim), ("z_app_dim", z_app_dim), ("num_classes", num_classes),
                        ("hidden_dim", hidden_dim), ("color_layers", color_layers),
                        ("semantic_layers", semantic_layers), ("feature_grid_size", feature_grid_size),
                        ("map_hidden_dim", map_hidden_dim)):
            _positive_int(name, v)
        if isinstance(feature_grid_channels, bool) or not isinstance(feature_grid_channels, int) \
                or feature_grid_channels < 0:
            raise ValueError(f"feature_grid_channels must be an int >= 0, got {feature_grid_channels!r}")
        if mapping_hidden_layers not in (3, 4) or isinstance(mapping_hidden_layers, bool):
            raise ValueError(f"mapping_hidden_layers must be 3 (pi-GAN's) or 4 (FENeRF's), "
                             f"got {mapping_hidden_layers!r}")
        if warp is not None and (isinstance(warp, bool) or not isinstance(warp, (int, float))
                                 or not math.isfinite(warp) or warp <= 0):
            raise ValueError(f"warp must be a positive box side (e.g. 0.24) or None, got {warp!r}")
        if isinstance(feature_grid_init_std, bool) or not isinstance(feature_grid_init_std, (int, float)) \
                or not feature_grid_init_std >= 0:
            raise ValueError(f"feature_grid_init_std must be a number >= 0, got {feature_grid_init_std!r}")
        H, L, c = hidden_dim, self.num_film_layers, feature_grid_channels
        self.device = device
        self.input_dim = 3
        self.z_geo_dim, self.z_app_dim, self.z_dim = z_geo_dim, z_app_dim, z_geo_dim + z_app_dim
        self.num_classes = num_classes
        self.hidden_dim = H
        self.output_dim = 3 + num_classes + 1
        self.feature_grid_channels = c
        self.warp = warp

        self.network = nn.ModuleList([FiLMLayer(3, H)] + [FiLMLayer(H, H) for _ in range(L - 1)])
        self.final_layer = nn.Linear(H, 1)
        self.semantic_head = nn.Sequential(*[nn.Linear(H, H) for _ in range(semantic_layers - 1)],
                                           nn.Linear(H, num_classes))
        self.color_network = nn.ModuleList([FiLMLayer(3 + c + H, H)]
                                           + [FiLMLayer(H, H) for _ in range(color_layers - 1)])
        self.color_layer_linear = nn.Linear(H, 3)
        if c:
            g = feature_grid_size
            self.feature_grid = nn.Parameter(torch.randn(1, c, g, g, g) * feature_grid_init_std)
        if warp is not None:
            self.gridwarper = UniformBoxWarp(warp)
        self.mapping_network = SemanticMappingNetwork(z_geo_dim, z_app_dim, map_hidden_dim, L * H * 2,
                                                      color_layers * H * 2, mapping_hidden_layers)

        for m in (self.network, self.final_layer, self.semantic_head, self.color_network, self.color_layer_linear):
            m.apply(frequency_init(25))
        self.network[0].apply(first_layer_film_sine_init)

    # ------------------------------------------------------------------ the joined latent's layout
    @property
    def geometry_columns(self) -> slice:
        """Columns of the joined frequencies / phase shifts that modulate the geometry trunk."""
        return slice(0, self.num_film_layers * self.hidden_dim)

    @property
    def appearance_columns(self) -> slice:
        """Columns of the joined frequencies / phase shifts that modulate the colour branch."""
        return slice(self.num_film_layers * self.hidden_dim,
                     (self.num_film_layers + len(self.color_network)) * self.hidden_dim)

    @property
    def modulation_dim(self) -> int:
        """Width of the joined frequencies (and of the phase shifts): (8 + color_layers) * H."""
        return self.appearance_columns.stop

    def split_latent(self, z):
        """z [..., z_dim] -> (z_geo [..., z_geo_dim], z_app [..., z_app_dim])."""
        _check_width("z", z, self.z_dim)
        return z[..., :self.z_geo_dim], z[..., self.z_geo_dim:]

    def join_latent(self, z_geo, z_app):
        """(z_geo [B, z_geo_dim], z_app [B, z_app_dim]) -> z [B, z_dim], the latent this siren maps."""
        _check_width("z_geo", z_geo, self.z_geo_dim)
        _check_width("z_app", z_app, self.z_app_dim)
        if z_geo.shape[:-1] != z_app.shape[:-1]:
            raise ValueError(f"z_geo and z_app must share their leading dims, got {tuple(z_geo.shape)} "
                             f"and {tuple(z_app.shape)}")
        return torch.cat([z_geo, z_app], -1)

    def split_modulations(self, t):
        """Joined frequencies or phase shifts [..., (8 + C) H] -> (geometry part, appearance part)."""
        _check_width("modulations", t, self.modulation_dim)
        return t[..., self.geometry_columns], t[..., self.appearance_columns]

    def join_modulations(self, geometry, appearance):
        """Inverse of split_modulations."""
        _check_width("geometry modulations", geometry, self.geometry_columns.stop)
        _check_width("appearance modulations", appearance, self.modulation_dim - self.geometry_columns.stop)
        return torch.cat([geometry, appearance], -1)

    # ------------------------------------------------------------------ the field
    def _warp(self, input):
        return self.gridwarper(input) if self.warp is not None else input

    def forward_with_frequencies_phase_shifts(self, input, frequencies, phase_shifts, ray_directions, **kwargs):
        """input [B, N, 3], joined raw mapping outputs [B, (8 + C) H] each, ray_directions [B, N, 3]
        -> [B, N, 3 + K + 1] = (rgb in [0, 1], K semantic logits, sigma)."""
        for name, t in (("frequencies", frequencies), ("phase_shifts", phase_shifts)):
            if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[-1] != self.modulation_dim:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name} must have shape [B, (8 + color_layers) * hidden_dim] = "
                                 f"[B, {self.modulation_dim}] (geometry columns first), got {got}")
        H, L = self.hidden_dim, self.num_film_layers
        frequencies = frequencies * 15 + 30
        points = self._warp(input)                                   # [B, N, 3]
        x = self._trunk(points, frequencies, phase_shifts)           # [B, N, H], reads columns < L*H
        sigma = self.final_layer(x)                                  # [B, N, 1]
        logits = self.semantic_head(x)                               # [B, N, K]
        parts = (ray_directions,)
        if self.feature_grid_channels:
            parts = parts + (self._sample_features(points),)         # [B, N, c]
        parts = parts + (x,)
        f_app, p_app = frequencies[..., L * H:], phase_shifts[..., L * H:]   # [B, C H]
        n = len(self.color_network)
        fs = [f_app[..., j * H:(j + 1) * H] for j in range(n)]
        ps = [p_app[..., j * H:(j + 1) * H] for j in range(n)]
        h = self.color_network[0](parts, fs[0], ps[0])               # [B, N, H]
        if n > 1:
            h = run_film_layers(self.color_network[1:], h, fs[1:], ps[1:])
        rgb = torch.sigmoid(self.color_layer_linear(h))              # [B, N, 3]
        return torch.cat([rgb, logits, sigma], dim=-1)


def _check_width(name, t, width):
    if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[-1] != width:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must have last dimension {width}, got {got}")


SEMANTIC_SIRENS = {"SemanticSiren": SemanticSiren}
