"""pigan.siren: pi-GAN's key layout and shapes, init, fast backends vs reference, gradients."""
import copy
import math

import pytest
import torch

from conftest import assert_fast_as_accurate, fast_cpu_backends
from pigan import ops
from pigan.siren import (SPATIALSIRENBASELINE, TALLSIREN, CustomMappingNetwork, FiLMLayer,
                         UniformBoxWarp)


def expected_siren_layout(hidden=256, z_dim=256, map_hidden=256, input_dim=3, color_extra=0,
                          map_layers=3):
    """pi-GAN's siren keys and shapes (docs/MODEL.md section 2)."""
    lay = {}
    for i in range(8):
        lay[f"network.{i}.layer.weight"] = (hidden, input_dim if i == 0 else hidden)
        lay[f"network.{i}.layer.bias"] = (hidden,)
    lay["final_layer.weight"] = (1, hidden)
    lay["final_layer.bias"] = (1,)
    lay["color_layer_sine.layer.weight"] = (hidden, hidden + 3 + color_extra)
    lay["color_layer_sine.layer.bias"] = (hidden,)
    lay["color_layer_linear.0.weight"] = (3, hidden)
    lay["color_layer_linear.0.bias"] = (3,)
    dims = [z_dim] + [map_hidden] * map_layers + [9 * hidden * 2]
    for j in range(map_layers + 1):
        lay[f"mapping_network.network.{2 * j}.weight"] = (dims[j + 1], dims[j])
        lay[f"mapping_network.network.{2 * j}.bias"] = (dims[j + 1],)
    return lay


def layout(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("cls", [TALLSIREN, SPATIALSIRENBASELINE])
def test_state_dict_layout_matches_pigan(cls):
    m = cls(input_dim=3, z_dim=256, hidden_dim=256, output_dim=4)
    assert layout(m) == expected_siren_layout()
    # The widths pi-GAN's model prints, spelled out.
    assert m.mapping_network.network[6].out_features == 4608
    assert m.color_layer_sine.layer.in_features == 259 and m.color_layer_sine.layer.out_features == 256
    assert isinstance(m.color_layer_linear[-1], torch.nn.Sigmoid) == (cls is TALLSIREN)


def test_variant_layouts():
    m = SPATIALSIRENBASELINE(input_dim=3, z_dim=32, hidden_dim=16, map_hidden_dim=24,
                             mapping_hidden_layers=4, feature_grid_channels=5, feature_grid_size=6)
    lay = expected_siren_layout(hidden=16, z_dim=32, map_hidden=24, color_extra=5, map_layers=4)
    lay["feature_grid"] = (1, 5, 6, 6, 6)
    assert layout(m) == lay
    with pytest.raises(ValueError, match="n_hidden_layers"):
        CustomMappingNetwork(8, 8, 8, n_hidden_layers=5)
    with pytest.raises(ValueError, match="hidden_dim"):
        TALLSIREN(hidden_dim=0)


def test_init_ranges():
    torch.manual_seed(0)
    m = SPATIALSIRENBASELINE(input_dim=3, z_dim=256, hidden_dim=256)
    w0 = m.network[0].layer.weight
    assert w0.abs().max() <= 1 / 3 and w0.abs().max() > 0.9 / 3      # U(+-1/fan_in), fan_in 3
    for lin in [m.network[3].layer, m.final_layer, m.color_layer_sine.layer, m.color_layer_linear[0]]:
        bound = math.sqrt(6 / lin.in_features) / 25
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.9 * bound
    # Mapping: Kaiming normal (a=0.2, fan_in) std = sqrt(2 / (1 + 0.04)) / sqrt(fan_in); last * 0.25.
    std = math.sqrt(2 / 1.04) / math.sqrt(256)
    assert abs(m.mapping_network.network[2].weight.std().item() / std - 1) < 0.02
    assert abs(m.mapping_network.network[6].weight.std().item() / (0.25 * std) - 1) < 0.02
    assert UniformBoxWarp(0.24)(torch.ones(1)).item() == pytest.approx(2 / 0.24)


def pigan_siren_forward(m, x, freqs, phases, dirs, spatial):
    """pi-GAN's forward written out in plain torch (independent of pigan.ops)."""
    H = m.hidden_dim
    freqs = freqs * 15 + 30
    if spatial:
        x = x * (2 / 0.24)
    for i, film in enumerate(m.network):
        y = film.layer(x)
        x = torch.sin(freqs[:, None, i * H:(i + 1) * H] * y + phases[:, None, i * H:(i + 1) * H])
    sigma = m.final_layer(x)
    c = m.color_layer_sine.layer(torch.cat([dirs, x], -1))
    c = torch.sin(freqs[:, None, -H:] * c + phases[:, None, -H:])
    c = m.color_layer_linear(c)
    if spatial:
        c = torch.sigmoid(c)
    return torch.cat([c, sigma], -1)


@pytest.mark.parametrize("cls", [TALLSIREN, SPATIALSIRENBASELINE])
def test_reference_backend_is_pigan(cls):
    torch.manual_seed(1)
    m = cls(input_dim=3, z_dim=8, hidden_dim=16)
    x, dirs = torch.randn(2, 7, 3) * 0.2, torch.randn(2, 7, 3)
    z = torch.randn(2, 8)
    with ops.use_backend("reference"):
        out = m(x, z, dirs)
    f, p = m.mapping_network(z)
    want = pigan_siren_forward(m, x, f, p, dirs, cls is SPATIALSIRENBASELINE)
    assert out.shape == (2, 7, 4)
    torch.testing.assert_close(out, want, rtol=0, atol=0)


@pytest.mark.parametrize("backend", fast_cpu_backends())
@pytest.mark.parametrize("grid", [0, 3])
def test_fast_backend_matches_reference_forward_and_backward(backend, grid):
    torch.manual_seed(2)
    m = SPATIALSIRENBASELINE(input_dim=3, z_dim=8, hidden_dim=16, feature_grid_channels=grid,
                             feature_grid_size=5, feature_grid_init_std=0.5)
    x, dirs, z = torch.randn(3, 97, 3) * 0.1, torch.randn(3, 97, 3), torch.randn(3, 8)
    cot = torch.randn(3, 97, 4)

    def run(module, name, dtype):
        module.zero_grad()
        xx = x.to(dtype).clone().requires_grad_()
        zz = z.to(dtype).clone().requires_grad_()
        with ops.use_backend(name):
            out = module(xx, zz, dirs.to(dtype))
        (out * cot.to(dtype)).sum().backward()
        return {"out": out.detach(), "x.grad": xx.grad, "z.grad": zz.grad,
                **{k: p.grad.clone() for k, p in module.named_parameters()}}

    exact = run(copy.deepcopy(m).double(), "reference", torch.float64)   # the float64 oracle
    ref, fast = run(m, "reference", torch.float32), run(m, backend, torch.float32)
    assert_fast_as_accurate(exact, ref, fast, backend, ref_tol=1e-4)


def test_film_layer_takes_parts_and_gradcheck():
    torch.manual_seed(3)
    film = FiLMLayer(5, 4).double()
    a = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    f = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    whole = film(torch.cat([a, b], -1), f, p)
    torch.testing.assert_close(film((a, b), f, p), whole)
    torch.autograd.gradcheck(lambda a, b, f, p: film((a, b), f, p), (a, b, f, p))


def test_feature_grid_gradients_and_locality():
    torch.manual_seed(4)
    m = TALLSIREN(input_dim=3, z_dim=8, hidden_dim=8, feature_grid_channels=2, feature_grid_size=4)
    x = torch.rand(1, 5, 3) * 0.5 - 0.25
    out = m(x, torch.randn(1, 8), torch.randn(1, 5, 3))
    out[..., :3].sum().backward()
    g = m.feature_grid.grad
    assert g is not None and g.abs().sum() > 0
    # Trilinear: a point only touches the 8 grid cells around it; most of the 4^3 grid gets no grad.
    assert (g[0, 0] != 0).sum() <= 8 * 5
    assert torch.isfinite(out).all()
