"""pigan.discriminators: pi-GAN's key layout, shapes at every resolution, fade-in, AddCoords."""
import math

import pytest
import torch
import torch.nn.functional as F

from pigan.discriminators import (AddCoords, CCSEncoderDiscriminator, CoordConv,
                                  ProgressiveDiscriminator, ProgressiveEncoderDiscriminator,
                                  StridedDiscriminator)

PROG = (16, 32, 64, 128, 256, 400, 400, 400, 400)
CCS = (32, 64, 128, 256, 400, 400, 400, 400)


def expected_layout(channels, kind, head):
    """Keys and shapes of pi-GAN's discriminators (docs/MODEL.md section 7)."""
    lay = {}
    for i in range(len(channels) - 1):
        cin, cout = channels[i], channels[i + 1]
        coord = 2 if kind != "strided" else 0
        sub = ".conv" if coord else ""
        lay[f"layers.{i}.network.0{sub}.weight"] = (cout, cin + coord, 3, 3)
        lay[f"layers.{i}.network.0{sub}.bias"] = (cout,)
        lay[f"layers.{i}.network.2{sub}.weight"] = (cout, cout + coord, 3, 3)
        lay[f"layers.{i}.network.2{sub}.bias"] = (cout,)
        if kind != "progressive" or cin != cout:
            lay[f"layers.{i}.proj.weight"] = (cout, cin, 1, 1)
            lay[f"layers.{i}.proj.bias"] = (cout,)
    for i, c in enumerate(channels):
        lay[f"fromRGB.{i}.model.0.weight"] = (c, 3, 1, 1)
        lay[f"fromRGB.{i}.model.0.bias"] = (c,)
    lay["final_layer.weight"] = (head, 400, 2, 2)
    lay["final_layer.bias"] = (head,)
    return lay


@pytest.mark.parametrize("cls,channels,kind,head", [
    (ProgressiveDiscriminator, PROG, "progressive", 1),
    (ProgressiveEncoderDiscriminator, PROG, "progressive", 259),
    (CCSEncoderDiscriminator, CCS, "ccs", 259),
    (StridedDiscriminator, CCS, "strided", 259),
])
def test_state_dict_layout_matches_pigan(cls, channels, kind, head):
    d = cls()
    got = {k: tuple(v.shape) for k, v in d.state_dict().items()}
    assert got == expected_layout(channels, kind, head)
    if kind == "progressive":
        assert got["layers.0.network.0.conv.weight"] == (32, 18, 3, 3)     # as printed by pi-GAN's model
        assert got["layers.4.network.2.conv.weight"] == (400, 402, 3, 3)   # as printed by pi-GAN's model


@pytest.fixture(scope="module")
def small_discs():
    torch.manual_seed(0)
    return {c: c(max_channels=8) for c in (ProgressiveDiscriminator, ProgressiveEncoderDiscriminator,
                                           CCSEncoderDiscriminator, StridedDiscriminator)}


@pytest.mark.parametrize("size", [4, 8, 16, 32, 64, 128])
@pytest.mark.parametrize("alpha", [0, 0.5, 1])
def test_shapes_at_every_resolution(small_discs, size, alpha):
    img = torch.randn(2, 3, size, size)
    for cls, d in small_discs.items():
        out = d(img, alpha)
        if cls is ProgressiveDiscriminator:
            assert out.shape == (2, 1)
        else:
            pred, latent, pos = out
            assert pred.shape == (2, 1) and latent.shape == (2, 256) and pos.shape == (2, 2)
            out = torch.cat([pred, latent, pos], -1)
        assert torch.isfinite(out).all()


def test_full_width_at_64_and_gradient():
    torch.manual_seed(1)
    d = CCSEncoderDiscriminator()
    img = torch.randn(2, 3, 64, 64, requires_grad=True)
    pred, latent, pos = d(img, 0.5)
    assert pred.shape == (2, 1) and latent.shape == (2, 256) and pos.shape == (2, 2)
    pred.sum().backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


def test_fade_in_mixes_the_coarser_path():
    torch.manual_seed(2)
    d = CCSEncoderDiscriminator(max_channels=8)
    img = torch.randn(2, 3, 16, 16)
    start = d.img_size_to_layer[16]

    def manual(alpha):
        x = d.fromRGB[start](img)
        x = d.layers[start](x)
        skip = d.fromRGB[start + 1](F.interpolate(img, scale_factor=0.5, mode="nearest"))
        x = alpha * x + (1 - alpha) * skip
        for layer in d.layers[start + 1:]:
            x = layer(x)
        return d.final_layer(x).reshape(2, -1)

    for alpha in (0.0, 0.3, 1.0):
        got = torch.cat(d(img, alpha), -1)
        torch.testing.assert_close(got, manual(alpha), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(torch.cat(d(img, 0.0), -1), torch.cat(d(img, 1.0), -1))


def test_instance_noise_and_bad_input():
    d = StridedDiscriminator(max_channels=8)
    img = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(d(img, 1)[0], d(img, 1)[0])
    assert not torch.allclose(d(img, 1, instance_noise=1.0)[0], d(img, 1)[0])
    with pytest.raises(ValueError, match="size"):
        d(torch.randn(1, 3, 12, 12), 1)
    with pytest.raises(ValueError, match="input"):
        d(torch.randn(1, 1, 8, 8), 1)
    with pytest.raises(ValueError, match="max_channels"):
        CCSEncoderDiscriminator(max_channels=0)


def test_addcoords_matches_pigan_orientation():
    x = torch.zeros(2, 1, 3, 5)
    out = AddCoords()(x)
    assert out.shape == (2, 3, 3, 5)
    # pi-GAN: xx varies along the height axis, yy along the width axis, both spanning [-1, 1].
    torch.testing.assert_close(out[0, 1, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(out[0, 1, 0, :], torch.full((5,), -1.0))
    torch.testing.assert_close(out[1, 2, 0, :], torch.linspace(-1, 1, 5))
    torch.testing.assert_close(out[1, 2, :, 2], torch.zeros(3))
    cc = CoordConv(4, 6, kernel_size=3, padding=1)
    assert cc.conv.in_channels == 6 and cc(torch.randn(1, 4, 5, 5)).shape == (1, 6, 5, 5)
    assert math.isclose(AddCoords(with_r=True)(x)[0, 3, 0, 0].item(), math.sqrt(2), rel_tol=1e-6)
