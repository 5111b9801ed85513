"""FiLM-conditioned SIREN radiance fields (docs/MODEL.md section 2), drop-in for pi-GAN's ``siren.siren``.

Class names, constructor arguments and state-dict keys equal pi-GAN's, so released weights load as
they are. Every FiLM layer runs through ``pigan.ops.film_siren`` (the fastest backend for the
device; exactly pi-GAN's formula under ``use_backend("reference")``).

Options beyond pi-GAN (all off by default, so the default key layout is pi-GAN's):
``map_hidden_dim`` (pi-GAN hard-codes 256), ``mapping_hidden_layers`` (3, or 4: one more hidden
Linear, so the output Linear becomes ``network.8``), and ``feature_grid_channels`` / ``feature_grid_size``:
a learnable 3-D feature grid (key ``feature_grid``) sampled trilinearly at every point and
appended to the colour layer's input (whose ``in_features`` grows by the channel count).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pigan.ops import film_siren, film_siren_stack

__all__ = [
    "FiLMLayer", "CustomMappingNetwork", "UniformBoxWarp", "TALLSIREN", "SPATIALSIRENBASELINE",
    "frequency_init", "first_layer_film_sine_init", "kaiming_leaky_init", "SIRENS",
]


def kaiming_leaky_init(m):
    """Init for the mapping network's Linear layers: Kaiming normal for LeakyReLU(0.2), fan-in."""
    if isinstance(m, nn.Linear):
        nn.init.kaiming_normal_(m.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")


def frequency_init(freq):
    """Init for Linear layers feeding sin(freq * .): W ~ U(+-sqrt(6/fan_in)/freq)."""
    def init(m):
        if isinstance(m, nn.Linear):
            with torch.no_grad():
                bound = math.sqrt(6 / m.weight.size(-1)) / freq
                m.weight.uniform_(-bound, bound)
    return init


def first_layer_film_sine_init(m):
    """Init for the first FiLM layer's Linear: W ~ U(+-1/fan_in)."""
    if isinstance(m, nn.Linear):
        with torch.no_grad():
            bound = 1 / m.weight.size(-1)
            m.weight.uniform_(-bound, bound)


class FiLMLayer(nn.Module):
    """y = sin(freq * (x W^T + b) + phase_shift); x [B, N, in], freq/phase [B, hidden].

    ``x`` may also be a tuple of parts [B, N, in_i] standing for their concatenation along the last
    dim: the fast backends then never store the concatenated copy for backward.
    """

    def __init__(self, input_dim, hidden_dim):
        super().__init__()
        self.layer = nn.Linear(input_dim, hidden_dim)

    def forward(self, x, freq, phase_shift):
        return film_siren(x, self.layer.weight, self.layer.bias, freq, phase_shift)


def _needs_layer_calls(layers) -> bool:
    """Whether the trunk must call these FiLMLayers one by one instead of running them as one
    film_siren_stack: some module hook (forward or backward, on a layer, its Linear, or global) would
    otherwise not run, or a layer (or its Linear) is a subclass whose forward may differ."""
    from torch.nn.modules import module as _m
    if (_m._global_forward_hooks or _m._global_forward_pre_hooks or _m._global_backward_hooks
            or _m._global_backward_pre_hooks):
        return True
    for layer in layers:
        if type(layer) is not FiLMLayer or type(layer.layer) is not nn.Linear:
            return True
        for m in (layer, layer.layer):
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
                return True
    return False


class CustomMappingNetwork(nn.Module):
    """z -> (frequencies, phase_shifts): an MLP with LeakyReLU(0.2), output split in halves."""

    def __init__(self, z_dim, map_hidden_dim, map_output_dim, n_hidden_layers=3):
        super().__init__()
        if n_hidden_layers not in (3, 4):
            raise ValueError(f"n_hidden_layers must be 3 (pi-GAN's) or 4 (one more hidden layer), got {n_hidden_layers!r}")
        if map_output_dim % 2:
            raise ValueError(f"map_output_dim must be even (frequencies and phases), got {map_output_dim}")
        layers = [nn.Linear(z_dim, map_hidden_dim), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(n_hidden_layers - 1):
            layers += [nn.Linear(map_hidden_dim, map_hidden_dim), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Linear(map_hidden_dim, map_output_dim))
        self.network = nn.Sequential(*layers)
        self.network.apply(kaiming_leaky_init)
        with torch.no_grad():
            self.network[-1].weight *= 0.25

    def forward(self, z):
        out = self.network(z)                                        # [B, 2 * L * H]
        half = out.shape[-1] // 2
        return out[..., :half], out[..., half:]


class UniformBoxWarp(nn.Module):
    """Scales coordinates so that a cube of side ``sidelength`` maps to [-1, 1]^3."""

    def __init__(self, sidelength):
        super().__init__()
        self.scale_factor = 2 / sidelength

    def forward(self, coordinates):
        return coordinates * self.scale_factor


class TALLSIREN(nn.Module):
    """pi-GAN's 8-layer FiLM-SIREN with a view-dependent colour branch (the CARLA model)."""

    num_film_layers = 8
    _sigmoid_in_sequential = True

    def __init__(self, input_dim=2, z_dim=100, hidden_dim=256, output_dim=1, device=None, *,
                 map_hidden_dim=256, mapping_hidden_layers=3, feature_grid_channels=0,
                 feature_grid_size=96, feature_grid_init_std=1e-2):
        super().__init__()
        for name, v in (("input_dim", input_dim), ("z_dim", z_dim), ("hidden_dim", hidden_dim),
                        ("map_hidden_dim", map_hidden_dim), ("feature_grid_size", feature_grid_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(feature_grid_channels, bool) or not isinstance(feature_grid_channels, int) \
                or feature_grid_channels < 0:
            raise ValueError(f"feature_grid_channels must be an int >= 0, got {feature_grid_channels!r}")
        self.device = device
        self.input_dim = input_dim
        self.z_dim = z_dim
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.feature_grid_channels = feature_grid_channels

        self.network = nn.ModuleList(
            [FiLMLayer(input_dim, hidden_dim)]
            + [FiLMLayer(hidden_dim, hidden_dim) for _ in range(self.num_film_layers - 1)])
        self.final_layer = nn.Linear(hidden_dim, 1)
        self.color_layer_sine = FiLMLayer(hidden_dim + 3 + feature_grid_channels, hidden_dim)
        if self._sigmoid_in_sequential:
            self.color_layer_linear = nn.Sequential(nn.Linear(hidden_dim, 3), nn.Sigmoid())
        else:
            self.color_layer_linear = nn.Sequential(nn.Linear(hidden_dim, 3))
        if feature_grid_channels:
            g = feature_grid_size
            self.feature_grid = nn.Parameter(
                torch.randn(1, feature_grid_channels, g, g, g) * feature_grid_init_std)
        self.mapping_network = CustomMappingNetwork(
            z_dim, map_hidden_dim, (len(self.network) + 1) * hidden_dim * 2,
            n_hidden_layers=mapping_hidden_layers)

        self.network.apply(frequency_init(25))
        self.final_layer.apply(frequency_init(25))
        self.color_layer_sine.apply(frequency_init(25))
        self.color_layer_linear.apply(frequency_init(25))
        self.network[0].apply(first_layer_film_sine_init)

    def forward(self, input, z, ray_directions, **kwargs):
        frequencies, phase_shifts = self.mapping_network(z)
        return self.forward_with_frequencies_phase_shifts(input, frequencies, phase_shifts,
                                                          ray_directions, **kwargs)

    def _warp(self, input):
        return input

    def _sample_features(self, points):
        """Trilinear samples of the feature grid at points [B, N, 3] in [-1, 1]^3 -> [B, N, C]."""
        B, N, _ = points.shape
        grid = points.reshape(1, B * N, 1, 1, 3).to(self.feature_grid.dtype)
        feats = F.grid_sample(self.feature_grid, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=True)                    # [1, C, B*N, 1, 1]
        return feats.reshape(self.feature_grid_channels, B, N).permute(1, 2, 0).to(points.dtype)

    def _trunk(self, x, frequencies, phase_shifts):
        """The FiLM layers of ``network`` in turn, as one film_siren_stack (whose native CPU backward
        recomputes one GEMM instead of one per layer), or layer by layer when some layer has hooks or
        is a subclass (see _needs_layer_calls)."""
        H = self.hidden_dim
        freqs = [frequencies[..., i * H:(i + 1) * H] for i in range(len(self.network))]
        phases = [phase_shifts[..., i * H:(i + 1) * H] for i in range(len(self.network))]
        if _needs_layer_calls(self.network):
            for layer, f, p in zip(self.network, freqs, phases):
                x = layer(x, f, p)
            return x
        return film_siren_stack(x, [m.layer.weight for m in self.network], [m.layer.bias for m in self.network],
                                freqs, phases)

    def forward_with_frequencies_phase_shifts(self, input, frequencies, phase_shifts, ray_directions,
                                              **kwargs):
        """input [B, N, input_dim], raw mapping outputs [B, 9H] each, ray_directions [B, N, 3]
        -> [B, N, 4] = (rgb, sigma)."""
        H = self.hidden_dim
        frequencies = frequencies * 15 + 30
        x = self._warp(input)
        points = x
        x = self._trunk(x, frequencies, phase_shifts)
        sigma = self.final_layer(x)                                  # [B, N, 1]
        parts = (ray_directions, x)
        if self.feature_grid_channels:
            parts = parts + (self._sample_features(points),)
        rgb = self.color_layer_sine(parts, frequencies[..., -H:], phase_shifts[..., -H:])
        rgb = self.color_layer_linear(rgb)
        if not self._sigmoid_in_sequential:
            rgb = torch.sigmoid(rgb)
        return torch.cat([rgb, sigma], dim=-1)


class SPATIALSIRENBASELINE(TALLSIREN):
    """The CelebA / Cats model: points pre-scaled by UniformBoxWarp(0.24), sigmoid outside the
    Sequential (so ``color_layer_linear`` holds only the Linear, as in pi-GAN's checkpoints)."""

    _sigmoid_in_sequential = False

    def __init__(self, input_dim=2, z_dim=100, hidden_dim=256, output_dim=1, device=None, **options):
        super().__init__(input_dim, z_dim, hidden_dim, output_dim, device, **options)
        self.gridwarper = UniformBoxWarp(0.24)

    def _warp(self, input):
        return self.gridwarper(input)


SIRENS = {"TALLSIREN": TALLSIREN, "SPATIALSIRENBASELINE": SPATIALSIRENBASELINE}
