"""pigan.checkpoints: our format (round trip, atomic, weights_only, clear errors naming the file) and
loading pi-GAN's pickled checkpoints without pi-GAN installed."""
import os
import pickle
import sys
import types
import warnings

import pytest
import torch
import torch.nn as nn

from pigan import checkpoints as C
from pigan.cli import convert as convert_cli
from pigan.discriminators import CCSEncoderDiscriminator
from pigan.generators import ImplicitGenerator3d
from pigan.siren import SPATIALSIRENBASELINE, TALLSIREN


def small_gen(cls=SPATIALSIRENBASELINE, hidden=8, seed=0, **kw):
    torch.manual_seed(seed)
    return ImplicitGenerator3d(cls, 8, hidden_dim=hidden, **kw)


# ----------------------------------------------------------------------------- our format
def test_round_trip_with_ema_extra_and_config(tmp_path):
    g = small_gen(mapping_hidden_layers=4)
    d = CCSEncoderDiscriminator(max_channels=8)
    ema = torch.optim.swa_utils.AveragedModel(g)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(1.0)                                    # EMA weights differ from the raw ones
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    g(torch.randn(1, 8), img_size=4, fov=12, ray_start=0.88, ray_end=1.12, num_steps=3, h_stddev=0,
      v_stddev=0, h_mean=1.5, v_mean=1.5, hierarchical_sample=True)[0].sum().backward()
    opt.step()
    path = C.save_checkpoint(tmp_path / "sub" / "ckpt.pt", generator=g, discriminator=d, ema=ema,
                             extra={"step": 7, "optimizer_G": opt.state_dict(),
                                    "rng": torch.get_rng_state()},
                             config={"curriculum": "demo", "betas": (0, 0.9)})
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]      # no temp file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask                # not mkstemp's 0600
    raw = torch.load(path, weights_only=True)                          # loadable without code
    assert raw["step"] == 7 and raw["config"]["betas"] == (0, 0.9)
    assert raw["generator_config"] == {"class": "ImplicitGenerator3d", "siren": "SPATIALSIRENBASELINE",
                                       "z_dim": 8, "hidden_dim": 8, "mapping_hidden_layers": 4}
    assert raw["discriminator_config"] == {"class": "CCSEncoderDiscriminator", "max_channels": 8}
    assert C.load_checkpoint(path)["optimizer_G"]["state"]

    g_raw = C.load_generator(path, use_ema=False)
    g_ema = C.load_generator(path, use_ema=True)
    for (k, p), (_, q), (_, e) in zip(g.named_parameters(), g_raw.named_parameters(),
                                      ema.module.named_parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
        torch.testing.assert_close(g_ema.get_parameter(k), e, rtol=0, atol=0)
    assert not g_ema.training
    d2 = C.load_discriminator(path)
    for k, v in d.state_dict().items():
        torch.testing.assert_close(d2.state_dict()[k], v, rtol=0, atol=0)


def test_save_rejects_unloadable_and_reserved(tmp_path):
    g = small_gen()
    with pytest.raises(TypeError, match=r"extra\]|checkpoint\['obj'\]|object"):
        C.save_checkpoint(tmp_path / "a.pt", generator=g, extra={"obj": object()})
    with pytest.raises(ValueError, match="reserved"):
        C.save_checkpoint(tmp_path / "a.pt", generator=g, extra={"generator": {}})
    assert not (tmp_path / "a.pt").exists()


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = C.save_checkpoint(tmp_path / "c.pt", generator=small_gen(), extra={"step": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(C.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        C.save_checkpoint(path, generator=small_gen(), extra={"step": 2})
    monkeypatch.undo()
    assert C.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_errors_name_the_file(tmp_path):
    g = small_gen()
    good = C.save_checkpoint(tmp_path / "good.pt", generator=g)
    missing = tmp_path / "missing.pt"
    with pytest.raises(C.CheckpointError, match="missing.pt"):
        C.load_generator(missing)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(C.CheckpointError, match="truncated.pt"):
        C.load_generator(truncated)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(C.CheckpointError, match="corrupt.pt"):
        C.load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(C.CheckpointError, match="foreign.pt.*not a pigan-kernels checkpoint"):
        C.load_generator(foreign)
    # Another architecture: the recorded config says hidden 8, the weights are hidden 16.
    other = small_gen(hidden=16)
    ckpt = torch.load(good, weights_only=True)
    ckpt["generator"] = other.state_dict()
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(C.CheckpointError, match="other.pt.*another architecture"):
        C.load_generator(tmp_path / "other.pt", use_ema=False)
    # A whole pickled module (pi-GAN style) is refused by the safe loader with a pointer.
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(C.CheckpointError, match="module.pt.*load_pigan_checkpoint"):
        C.load_checkpoint(tmp_path / "module.pt")


# ----------------------------------------------------------------------------- pi-GAN's pickles
def _pigan_modules():
    """Classes with pi-GAN's attribute layout, defined under pi-GAN's module paths: siren.siren,
    generators.generators, discriminators.discriminators (which star-imports its blocks from
    discriminators.sgdiscriminators, so those pickle under that path) and torch_ema.ema."""
    siren = types.ModuleType("siren.siren")
    gens = types.ModuleType("generators.generators")
    discs = types.ModuleType("discriminators.discriminators")
    sgdiscs = types.ModuleType("discriminators.sgdiscriminators")
    ema_mod = types.ModuleType("torch_ema.ema")

    class FiLMLayer(nn.Module):
        def __init__(self, i, h):
            super().__init__()
            self.layer = nn.Linear(i, h)

    class CustomMappingNetwork(nn.Module):
        def __init__(self, z, h, out):
            super().__init__()
            self.network = nn.Sequential(nn.Linear(z, h), nn.LeakyReLU(0.2, inplace=True),
                                         nn.Linear(h, h), nn.LeakyReLU(0.2, inplace=True),
                                         nn.Linear(h, h), nn.LeakyReLU(0.2, inplace=True),
                                         nn.Linear(h, out))

    class UniformBoxWarp(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.scale_factor = 2 / s

    class TALLSIREN(nn.Module):
        def __init__(self, input_dim=2, z_dim=100, hidden_dim=256, output_dim=1, device=None):
            super().__init__()
            self.device, self.input_dim, self.z_dim = device, input_dim, z_dim
            self.hidden_dim, self.output_dim = hidden_dim, output_dim
            self.network = nn.ModuleList([FiLMLayer(input_dim, hidden_dim)] +
                                         [FiLMLayer(hidden_dim, hidden_dim) for _ in range(7)])
            self.final_layer = nn.Linear(hidden_dim, 1)
            self.color_layer_sine = FiLMLayer(hidden_dim + 3, hidden_dim)
            self.color_layer_linear = nn.Sequential(nn.Linear(hidden_dim, 3), nn.Sigmoid())
            self.mapping_network = CustomMappingNetwork(z_dim, 256, 9 * hidden_dim * 2)

    class SPATIALSIRENBASELINE(TALLSIREN):
        def __init__(self, input_dim=2, z_dim=100, hidden_dim=256, output_dim=1, device=None):
            super().__init__(input_dim, z_dim, hidden_dim, output_dim, device)
            self.color_layer_linear = nn.Sequential(nn.Linear(hidden_dim, 3))
            self.gridwarper = UniformBoxWarp(0.24)

    class ImplicitGenerator3d(nn.Module):
        def __init__(self, siren, z_dim, **kwargs):
            super().__init__()
            self.z_dim = z_dim
            self.siren = siren(output_dim=4, z_dim=self.z_dim, input_dim=3, device=None)
            self.epoch, self.step = 3, 1234

        def set_device(self, device):
            self.device = device
            self.siren.device = device

    class AdapterBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.model = nn.Sequential(nn.Conv2d(3, c, 1, padding=0), nn.LeakyReLU(0.2))

    class AddCoords(nn.Module):
        def __init__(self, with_r=False):
            super().__init__()
            self.with_r = with_r

    class CoordConv(nn.Module):
        def __init__(self, i, o, **kw):
            super().__init__()
            self.addcoords = AddCoords()
            self.conv = nn.Conv2d(i + 2, o, **kw)

    class ResidualCCBlock(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.network = nn.Sequential(CoordConv(i, o, kernel_size=3, padding=1), nn.LeakyReLU(0.2),
                                         CoordConv(o, o, kernel_size=3, stride=2, padding=1),
                                         nn.LeakyReLU(0.2))
            self.proj = nn.Conv2d(i, o, 1, stride=2)

    class ResidualCoordConvBlock(nn.Module):
        def __init__(self, i, o, downsample=False):
            super().__init__()
            self.network = nn.Sequential(CoordConv(i, o, kernel_size=3, padding=1), nn.LeakyReLU(0.2),
                                         CoordConv(o, o, kernel_size=3, padding=1), nn.LeakyReLU(0.2))
            self.proj = nn.Conv2d(i, o, 1) if i != o else None
            self.downsample = downsample

    def progressive_stack(d, blocks, ch, final_out, img_size_to_layer):
        # The attributes pi-GAN's progressive discriminators share, set in pi-GAN's order (which
        # fixes the state_dict's key order).
        d.epoch, d.step = 0, 0
        d.layers = nn.ModuleList(blocks)
        d.fromRGB = nn.ModuleList([AdapterBlock(c) for c in ch])
        d.final_layer = nn.Conv2d(400, final_out, 2)
        d.img_size_to_layer = img_size_to_layer

    class CCSEncoderDiscriminator(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [32, 64, 128, 256, 400, 400, 400, 400]
            progressive_stack(self, [ResidualCCBlock(ch[i], ch[i + 1]) for i in range(7)], ch, 259,
                              {2: 7, 4: 6, 8: 5, 16: 4, 32: 3, 64: 2, 128: 1, 256: 0})

    class ProgressiveEncoderDiscriminator(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [16, 32, 64, 128, 256, 400, 400, 400, 400]
            progressive_stack(self, [ResidualCoordConvBlock(ch[i], ch[i + 1], downsample=True)
                                     for i in range(8)], ch, 259,
                              {2: 8, 4: 7, 8: 6, 16: 5, 32: 4, 64: 3, 128: 2, 256: 1, 512: 0})

    class StridedResidualConvBlock(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.network = nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.LeakyReLU(0.2),
                                         nn.Conv2d(o, o, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
            self.proj = nn.Conv2d(i, o, 1, stride=2)

    class StridedDiscriminator(nn.Module):                  # pi-GAN's: 400 -> 1 head, pose_layer
        def __init__(self):
            super().__init__()
            ch = [32, 64, 128, 256, 400, 400, 400, 400]
            progressive_stack(self, [StridedResidualConvBlock(ch[i], ch[i + 1]) for i in range(7)], ch, 1,
                              {2: 7, 4: 6, 8: 5, 16: 4, 32: 3, 64: 2, 128: 1, 256: 0})
            self.pose_layer = nn.Linear(2, 400)

    class ExponentialMovingAverage:                         # torch_ema 0.2's attributes
        def __init__(self, parameters, decay):
            self.decay, self.num_updates = decay, 0
            self.shadow_params = [p.clone().detach() for p in parameters if p.requires_grad]
            self.collected_params = []

    for mod, classes in ((siren, [FiLMLayer, CustomMappingNetwork, UniformBoxWarp, TALLSIREN,
                                  SPATIALSIRENBASELINE]),
                         (gens, [ImplicitGenerator3d]),
                         (sgdiscs, [AdapterBlock, ResidualCCBlock, StridedResidualConvBlock,
                                    StridedDiscriminator]),
                         (discs, [AddCoords, CoordConv, ResidualCoordConvBlock, CCSEncoderDiscriminator,
                                  ProgressiveEncoderDiscriminator]),
                         (ema_mod, [ExponentialMovingAverage])):
        for cls in classes:
            cls.__module__ = mod.__name__
            cls.__qualname__ = cls.__name__
            setattr(mod, cls.__name__, cls)
    mods = {m.__name__: m for m in (siren, gens, discs, sgdiscs, ema_mod)}
    for name in list(mods):                                 # parent packages, for pickle's import
        top, child = name.split(".")
        parent = mods.setdefault(top, types.ModuleType(top))
        parent.__path__ = []
        setattr(parent, child, mods[name])
    return mods


def _saved_pigan_run(out, siren="SPATIALSIRENBASELINE", disc="CCSEncoderDiscriminator", hidden=256,
                     legacy=False):
    """Write generator.pth, ema.pth, discriminator.pth as pi-GAN's train.py does (torch.save of the
    modules and of the torch_ema object) with pi-GAN's classes importable only while saving.
    Returns the folder; the expected tensors are in out / "expected.pt"."""
    mods = _pigan_modules()
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    kw = {"_use_new_zipfile_serialization": not legacy}   # legacy: torch < 1.6's format
    try:
        torch.manual_seed(0)
        gen = mods["generators.generators"].ImplicitGenerator3d(getattr(mods["siren.siren"], siren), 256)
        if hidden != 256:
            gen.siren = getattr(mods["siren.siren"], siren)(input_dim=3, z_dim=256, hidden_dim=hidden)
        gen.set_device(torch.device("cuda", 0))             # pi-GAN trains on GPU: a device attribute
        gen.avg_frequencies = torch.full((1, 9 * hidden), 0.5)
        ema = mods["torch_ema.ema"].ExponentialMovingAverage(gen.parameters(), decay=0.999)
        ema.shadow_params = [s + 0.01 * torch.randn_like(s) for s in ema.shadow_params]
        ema.num_updates = 17
        d = (getattr(mods["discriminators.sgdiscriminators"], disc, None)
             or getattr(mods["discriminators.discriminators"], disc))()
        with warnings.catch_warnings():                     # legacy saving looks for class sources
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
            torch.save(gen, out / "generator.pth", **kw)
            torch.save(ema, out / "ema.pth", **kw)
            torch.save(d, out / "discriminator.pth", **kw)
        torch.save({"generator": gen.state_dict(), "discriminator": d.state_dict(),
                    "ema": dict(zip([n for n, _ in gen.named_parameters()], ema.shadow_params))},
                   out / "expected.pt")
    finally:
        for name, old in saved.items():                     # pi-GAN is not installed when loading
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return out


@pytest.fixture(scope="module")
def pigan_dir(tmp_path_factory):
    """A folder like pi-GAN's CelebA output, and a legacy-format copy of its generator."""
    out = _saved_pigan_run(tmp_path_factory.mktemp("pigan_run"))
    (out / "legacy").mkdir()
    _saved_pigan_run(out / "legacy", legacy=True)
    return out, torch.load(out / "expected.pt", weights_only=True)


def _assert_state(module, want, what):
    assert set(module.state_dict()) >= set(want), what
    for k, v in want.items():
        torch.testing.assert_close(module.state_dict()[k], v, rtol=0, atol=0, msg=f"{what}: {k}")


def test_load_pigan_checkpoint_with_and_without_ema(pigan_dir):
    folder, want = pigan_dir
    assert "siren.siren" not in sys.modules
    raw = C.load_pigan_checkpoint(folder, use_ema=False)
    g = raw["generator"]
    assert isinstance(g, ImplicitGenerator3d) and isinstance(g.siren, SPATIALSIRENBASELINE)
    assert g.step == 1234 and raw["step"] == 1234 and not raw["ema_applied"]
    assert set(g.state_dict()) == set(want["generator"])
    _assert_state(g, want["generator"], "generator")
    torch.testing.assert_close(g.avg_frequencies, torch.full((1, 9 * 256), 0.5))
    d = raw["discriminator"]
    assert isinstance(d, CCSEncoderDiscriminator)
    _assert_state(d, want["discriminator"], "discriminator")

    emad = C.load_pigan_checkpoint(folder / "generator.pth", use_ema=True, load_discriminator=False)
    assert emad["ema_applied"] and emad["discriminator"] is None
    for k, v in want["ema"].items():
        torch.testing.assert_close(emad["generator"].get_parameter(k), v, rtol=0, atol=0, msg=k)
    # The loaded generator renders.
    out = emad["generator"].render(torch.randn(1, 256), pitch=1.57, yaw=1.57, img_size=4, num_steps=3)
    assert out["pixels"].shape == (1, 3, 4, 4) and torch.isfinite(out["pixels"]).all()


def test_legacy_format_loads_without_warnings(pigan_dir):
    folder, want = pigan_dir
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # no per-container source warnings
        legacy = C.load_pigan_checkpoint(folder / "legacy", use_ema=True)
    assert legacy["ema_applied"]
    _assert_state(legacy["discriminator"], want["discriminator"], "legacy discriminator")
    for k, v in want["ema"].items():
        torch.testing.assert_close(legacy["generator"].get_parameter(k), v, rtol=0, atol=0, msg=k)


def test_carla_layout_loads(tmp_path):
    """TALLSIREN (Sigmoid inside color_layer_linear) and ProgressiveEncoderDiscriminator
    (ResidualCoordConvBlock, no projection between equal widths)."""
    folder = _saved_pigan_run(tmp_path, siren="TALLSIREN", disc="ProgressiveEncoderDiscriminator", hidden=16)
    want = torch.load(folder / "expected.pt", weights_only=True)
    loaded = C.load_pigan_checkpoint(folder, use_ema=False)
    assert isinstance(loaded["generator"].siren, TALLSIREN)
    _assert_state(loaded["generator"], want["generator"], "generator")
    assert type(loaded["discriminator"]).__name__ == "ProgressiveEncoderDiscriminator"
    _assert_state(loaded["discriminator"], want["discriminator"], "discriminator")


def test_cats_layout_loads_without_its_discriminator(tmp_path):
    """pi-GAN's StridedDiscriminator (400 -> 1 head, pose_layer) has no counterpart here: the
    generator and EMA still load; the discriminator is left out with a warning saying why."""
    folder = _saved_pigan_run(tmp_path, disc="StridedDiscriminator", hidden=16)
    want = torch.load(folder / "expected.pt", weights_only=True)
    with pytest.warns(RuntimeWarning, match="discriminator left out.*discriminator.pth.*another architecture"):
        loaded = C.load_pigan_checkpoint(folder, use_ema=False)
    assert loaded["discriminator"] is None and loaded["files"]["discriminator"] is None
    _assert_state(loaded["generator"], want["generator"], "generator")


def test_convert_cli_writes_safe_checkpoint(pigan_dir, tmp_path, capsys):
    folder, want = pigan_dir
    dst = tmp_path / "converted.pt"
    assert convert_cli.main([str(folder), str(dst)]) == 0
    assert "wrote" in capsys.readouterr().out
    raw = torch.load(dst, weights_only=True)
    assert raw["step"] == 1234 and raw["generator_config"]["siren"] == "SPATIALSIRENBASELINE"
    g = C.load_generator(dst, use_ema=True)
    for k, v in want["ema"].items():
        torch.testing.assert_close(g.get_parameter(k), v, rtol=0, atol=0, msg=k)
    g_raw = C.load_generator(dst, use_ema=False)
    _assert_state(g_raw, want["generator"], "generator")
    assert C.load_discriminator(dst).final_layer.out_channels == 259
    assert convert_cli.main([str(tmp_path / "nowhere"), str(tmp_path / "x.pt")]) == 2
    assert "nowhere" in capsys.readouterr().err


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pigan_loader_refuses_foreign_globals_and_bad_files(tmp_path):
    evil = tmp_path / "generator.pth"
    torch.save(_Evil(), evil)
    with pytest.raises(C.CheckpointError, match="generator.pth.*refusing to load global posix.system"):
        C.load_pigan_checkpoint(evil)
    # A plain torch module is not pi-GAN's generator: its class is not on the list.
    torch.save(nn.Linear(2, 2), tmp_path / "lingenerator.pth")
    with pytest.raises(C.CheckpointError, match="lingenerator.pth.*ImplicitGenerator3d"):
        C.load_pigan_checkpoint(tmp_path / "lingenerator.pth", use_ema=False)
    with pytest.raises(C.CheckpointError, match="not found.*nothing"):
        C.load_pigan_checkpoint(tmp_path / "nothing")
