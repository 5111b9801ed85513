"""Checkpoints: our own safe format, and loading pi-GAN's released (pickled) checkpoints.

Our format is one file, a dict that ``torch.load(path, weights_only=True)`` reads (no code runs):

    format                  "pigan-kernels/1"
    generator, discriminator, ema    state dicts (ema: the generator's EMA weights; an
                            AveragedModel's state dict, with "module." keys and n_averaged, is accepted)
    generator_config, discriminator_config   {"class": name, **constructor kwargs} (plain values)
    config                  any plain user config (e.g. the curriculum)
    <other keys>            training state (optimisers, step, RNG states...): kept, ignored here

It is written atomically (temporary file in the same folder, fsync, ``os.replace``), so a crash
mid-write leaves the previous file intact.

pi-GAN saves whole pickled modules (``generator.pth``, ``discriminator.pth``) that name pi-GAN's
module paths (``siren.siren``, ``generators.generators``, ``discriminators.*``) and a pickled
``torch_ema.ExponentialMovingAverage`` (``ema.pth``). ``load_pigan_checkpoint`` reads them without
pi-GAN or torch_ema installed and without running code from the file: ``pigan.released_pickle``
admits an exact list of globals (pi-GAN's classes mapped to inert stand-ins, the torch layers and
tensor rebuild functions they need, two containers) and refuses any other with an error naming it;
the state is then copied into freshly built modules of ours.
"""
from __future__ import annotations

import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from pigan import released_pickle
from pigan.common import UsageError, atomic_save, check_output_file, writing

FORMAT = "pigan-kernels/1"
RESERVED = ("format", "generator", "discriminator", "ema", "generator_config",
            "discriminator_config", "config")

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "build_generator",
           "build_discriminator", "load_generator", "load_discriminator", "generator_config",
           "discriminator_config", "load_pigan_checkpoint", "load_for_render", "convert"]


class CheckpointError(UsageError):
    """A checkpoint file is missing, unreadable, or not what was asked for (the message names it).
    A command reports it as bad input (exit code 2); it is also a ValueError."""


# ---------------------------------------------------------------------------- configs and builders
def generator_config(generator) -> dict:
    return {"class": type(generator).__name__, **getattr(generator, "config", {})}


def discriminator_config(discriminator) -> dict:
    return {"class": type(discriminator).__name__, **getattr(discriminator, "config", {})}


def build_generator(config: dict):
    """A fresh generator from ``{"class": "ImplicitGenerator3d", "siren": ..., "z_dim": ..., ...}`` (or
    ``"SemanticGenerator3d"`` with its z_geo_dim, z_app_dim, num_classes and options)."""
    from pigan.model import fenerf  # noqa: F401  (registers SemanticGenerator3d in GENERATORS)
    from pigan.model.generators import GENERATORS
    cfg = dict(config)
    name = cfg.pop("class", "ImplicitGenerator3d")
    if name not in GENERATORS:
        raise ValueError(f"generator class must be one of {sorted(GENERATORS)}, got {name!r}")
    for key in ("siren", "z_dim"):
        if key not in cfg:
            raise ValueError(f"generator config needs {key!r}, got keys {sorted(config)}")
    return GENERATORS[name](cfg.pop("siren"), cfg.pop("z_dim"), **cfg)


def build_discriminator(config: dict):
    """A fresh discriminator from ``{"class": "CCSEncoderDiscriminator", **kwargs}``."""
    from pigan.model.discriminators import DISCRIMINATORS
    cfg = dict(config)
    name = cfg.pop("class", None)
    if name not in DISCRIMINATORS:
        raise ValueError(f"discriminator class must be one of {sorted(DISCRIMINATORS)}, got {name!r}")
    return DISCRIMINATORS[name](**cfg)


# ---------------------------------------------------------------------------- our format
_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def _check_loadable(obj, where):
    """Raise TypeError unless ``obj`` is something torch.load(weights_only=True) can read back."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} is not a plain value")
            _check_loadable(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_loadable(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} has type {type(obj).__name__}; checkpoints hold only tensors, state "
                    "dicts and plain values (str, int, float, bool, None, lists, tuples, dicts)")


def _state(obj):
    if obj is None:
        return None
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"expected an nn.Module or a state dict, got {type(obj).__name__}")


def save_checkpoint(path, generator=None, discriminator=None, ema=None, extra=None, config=None):
    """Write a checkpoint atomically. ``generator`` / ``discriminator`` are modules (their class and
    constructor config are recorded) or state dicts; ``ema`` a module (e.g. an AveragedModel) or a
    state dict; ``extra`` a dict of further top-level keys (training state); ``config`` plain values.
    Returns the path."""
    path = Path(path)
    ckpt = {"format": FORMAT}
    if generator is not None:
        ckpt["generator"] = _state(generator)
        if isinstance(generator, nn.Module):
            ckpt["generator_config"] = generator_config(generator)
    if discriminator is not None:
        ckpt["discriminator"] = _state(discriminator)
        if isinstance(discriminator, nn.Module):
            ckpt["discriminator_config"] = discriminator_config(discriminator)
    if ema is not None:
        ckpt["ema"] = _state(ema)
    if config is not None:
        ckpt["config"] = config
    for key, value in (extra or {}).items():
        if key in RESERVED:
            raise ValueError(f"extra key {key!r} is reserved; reserved keys are {RESERVED}")
        ckpt[key] = value
    _check_loadable(ckpt, "checkpoint")
    atomic_save(ckpt, path)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """The raw checkpoint dict, read with weights_only=True; CheckpointError naming the file when it
    is missing, truncated, corrupt, not ours, or a pickle that needs code to load."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {str(path)!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{str(path)!r} cannot be loaded safely (weights_only=True): {str(exc).splitlines()[0]}. "
            "A released pi-GAN checkpoint (a pickled module) loads with "
            "pigan.checkpoints.load_pigan_checkpoint or `pigan convert`.") from exc
    except Exception as exc:  # zip reader errors (truncated/corrupt), EOFError, ...
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith("pigan-kernels/"):
        raise CheckpointError(f"{str(path)!r} is not a pigan-kernels checkpoint (no 'format' key); "
                              "for pi-GAN's files use load_pigan_checkpoint or `pigan convert`")
    return ckpt


def _ema_state(ema):
    """Generator state dict from an EMA entry: strips AveragedModel's "module." prefix."""
    out = OrderedDict()
    for k, v in ema.items():
        if k == "n_averaged":
            continue
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def _load_into(module, state, path, what):
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{str(path)!r} holds a {what} of another architecture than "
                              f"{type(module).__name__} with its recorded config: {exc}") from exc


def load_generator(path, map_location="cpu", use_ema=True):
    """The generator of a checkpoint of ours (EMA weights when ``use_ema`` and present), in eval mode."""
    ckpt = load_checkpoint(path, map_location)
    if "generator_config" not in ckpt:
        raise CheckpointError(f"{str(path)!r} has no generator_config: cannot rebuild the generator")
    try:
        g = build_generator(ckpt["generator_config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{str(path)!r}: bad generator_config: {exc}") from exc
    if use_ema and ckpt.get("ema") is not None:
        state = _ema_state(ckpt["ema"])
    elif "generator" in ckpt:
        if use_ema:
            warnings.warn(f"{str(path)!r} has no EMA weights; using the raw generator weights",
                          RuntimeWarning, stacklevel=2)
        state = ckpt["generator"]
    else:
        raise CheckpointError(f"{str(path)!r} holds no generator weights")
    _load_into(g, state, path, "generator")
    g.to(map_location if map_location is not None else "cpu")
    return g.eval()


def load_discriminator(path, map_location="cpu"):
    ckpt = load_checkpoint(path, map_location)
    if "discriminator_config" not in ckpt or "discriminator" not in ckpt:
        raise CheckpointError(f"{str(path)!r} holds no discriminator (weights and config)")
    try:
        d = build_discriminator(ckpt["discriminator_config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{str(path)!r}: bad discriminator_config: {exc}") from exc
    _load_into(d, ckpt["discriminator"], path, "discriminator")
    return d.to(map_location if map_location is not None else "cpu")


# ---------------------------------------------------------------------------- pi-GAN's pickles
PiganStandIn = released_pickle.PiganStandIn
EMAStandIn = released_pickle.EMAStandIn


def _unpickle(path: Path, map_location):
    if not path.is_file():
        raise CheckpointError(f"pi-GAN checkpoint file not found: {str(path)!r}")
    try:
        return released_pickle.load(path, map_location=map_location)
    except Exception as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable pi-GAN checkpoint: "
                              f"{type(exc).__name__}: {exc}") from exc


def _pigan_files(path_or_dir):
    p = Path(path_or_dir)
    if p.is_dir():
        gen = p / "generator.pth"
        prefix = p
        stem = ""
    else:
        gen = p
        prefix = p.parent
        # pi-GAN's convention: <prefix>generator.pth next to <prefix>ema.pth, <prefix>discriminator.pth
        stem = p.name.split("generator")[0] if "generator" in p.name else ""
    return gen, prefix / f"{stem}ema.pth", prefix / f"{stem}discriminator.pth"


def _convert_generator(obj, path):
    from pigan.model.generators import ImplicitGenerator3d
    from pigan.model.siren import SIRENS
    if not isinstance(obj, PiganStandIn) or obj.pigan_class.split(".")[-1] != "ImplicitGenerator3d":
        got = getattr(obj, "pigan_class", type(obj).__name__)
        raise CheckpointError(f"{str(path)!r} does not hold a pi-GAN ImplicitGenerator3d (got {got})")
    siren = obj._modules.get("siren")
    siren_name = getattr(siren, "pigan_class", "?").split(".")[-1]
    if siren_name not in SIRENS:
        raise CheckpointError(f"{str(path)!r}: unsupported siren class {siren_name!r} "
                              f"(supported: {sorted(SIRENS)})")
    state = obj.state_dict()
    try:
        hidden = state["siren.network.0.layer.weight"].shape[0]
        map_w = [k for k in state if k.startswith("siren.mapping_network.network.") and k.endswith(".weight")]
        map_hidden = state["siren.mapping_network.network.0.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"{str(path)!r}: generator lacks pi-GAN's siren keys ({exc})") from exc
    kwargs = {}
    if hidden != 256:
        kwargs["hidden_dim"] = hidden
    if map_hidden != 256:
        kwargs["map_hidden_dim"] = map_hidden
    if len(map_w) != 4:
        kwargs["mapping_hidden_layers"] = len(map_w) - 1
    grid = state.get("siren.feature_grid")
    if grid is not None:
        kwargs["feature_grid_channels"] = grid.shape[1]
        kwargs["feature_grid_size"] = grid.shape[-1]
    try:
        g = ImplicitGenerator3d(SIRENS[siren_name], getattr(obj, "z_dim"), **kwargs)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{str(path)!r}: cannot rebuild the generator: {exc}") from exc
    _load_into(g, state, path, "generator")
    g.epoch, g.step = getattr(obj, "epoch", 0), getattr(obj, "step", 0)
    for attr in ("avg_frequencies", "avg_phase_shifts"):
        if isinstance(obj.__dict__.get(attr), torch.Tensor):
            setattr(g, attr, obj.__dict__[attr].detach().clone())
    return g


def _convert_discriminator(obj, path):
    from pigan.model.discriminators import DISCRIMINATORS
    name = getattr(obj, "pigan_class", "?").split(".")[-1]
    if name not in DISCRIMINATORS:
        raise CheckpointError(f"{str(path)!r}: unsupported discriminator class {name!r} "
                              f"(supported: {sorted(DISCRIMINATORS)})")
    d = DISCRIMINATORS[name]()
    _load_into(d, obj.state_dict(), path, "discriminator")
    d.epoch, d.step = getattr(obj, "epoch", 0), getattr(obj, "step", 0)
    return d


def _ema_weights(ema, pigan_generator, path):
    """{name: tensor} of EMA weights, matched to pi-GAN's parameters() order of the pickled module."""
    shadow = getattr(ema, "shadow_params", None)
    if not isinstance(shadow, (list, tuple)):
        raise CheckpointError(f"{str(path)!r} is not a torch_ema ExponentialMovingAverage (no shadow_params)")
    named = [(n, p) for n, p in pigan_generator.named_parameters() if p.requires_grad]
    if len(shadow) != len(named) or any(s.shape != p.shape for s, (_, p) in zip(shadow, named)):
        raise CheckpointError(f"{str(path)!r}: its {len(shadow)} EMA shadow parameters do not match "
                              f"the generator's {len(named)} parameters")
    return OrderedDict((n, s.detach().clone()) for s, (n, _) in zip(shadow, named))


def load_pigan_checkpoint(path_or_dir, map_location="cpu", use_ema=True, load_discriminator=True):
    """Load pi-GAN's released checkpoint: a folder with generator.pth (and ema.pth, discriminator.pth)
    or a path to ``<prefix>generator.pth``.

    Returns {"generator": ImplicitGenerator3d (EMA weights applied when use_ema and ema.pth exists),
    "discriminator": our module or None, "ema": {name: tensor} or None, "ema_applied": bool,
    "step": int, "files": {...}}.
    """
    gen_path, ema_path, disc_path = _pigan_files(path_or_dir)
    pg = _unpickle(gen_path, map_location)
    generator = _convert_generator(pg, gen_path)
    ema = None
    if ema_path.is_file():
        ema = _ema_weights(_unpickle(ema_path, map_location), pg, ema_path)
    elif use_ema:
        warnings.warn(f"no EMA file {str(ema_path)!r}: using the raw generator weights", RuntimeWarning,
                      stacklevel=2)
    applied = False
    if use_ema and ema is not None:
        _load_into(generator, ema, ema_path, "generator EMA")
        applied = True
    discriminator = None
    if load_discriminator and disc_path.is_file():
        pd = _unpickle(disc_path, map_location)        # a refused pickle fails the load, as above
        try:
            discriminator = _convert_discriminator(pd, disc_path)
        except CheckpointError as exc:
            # The generator is what rendering and conversion need; a discriminator whose layout has
            # no counterpart here (pi-GAN's StridedDiscriminator) is left out, saying why.
            warnings.warn(f"discriminator left out: {exc}", RuntimeWarning, stacklevel=2)
    return {"generator": generator, "discriminator": discriminator, "ema": ema, "ema_applied": applied,
            "step": int(getattr(pg, "step", 0) or 0),
            "files": {"generator": str(gen_path), "ema": str(ema_path) if ema is not None else None,
                      "discriminator": str(disc_path) if discriminator is not None else None}}


def load_for_render(checkpoint, device="cpu", use_ema=True):
    """(generator in eval mode on ``device``, config or None) from a checkpoint of ours, or from
    pi-GAN's folder / generator.pth (which carry no config)."""
    path = Path(checkpoint)
    if path.is_dir() or (path.name.endswith("generator.pth") and path.is_file()):
        loaded = load_pigan_checkpoint(path, map_location="cpu", use_ema=use_ema, load_discriminator=False)
        return loaded["generator"].to(device).eval(), None
    g = load_generator(path, map_location="cpu", use_ema=use_ema)
    config = load_checkpoint(path).get("config")
    return g.to(device).eval(), config


def convert(src, dst, map_location="cpu") -> Path:
    """pi-GAN checkpoint (folder or generator.pth) -> one checkpoint file of ours. Returns dst.

    ``dst`` is checked before anything is read (OutputError when it is a folder or cannot be
    written); a failed write is an OutputError naming it and leaves any previous file in place."""
    dst = check_output_file(dst, "output checkpoint")
    loaded = load_pigan_checkpoint(src, map_location=map_location, use_ema=False)
    g = loaded["generator"]
    ema = None
    if loaded["ema"] is not None:
        ema = OrderedDict(g.state_dict())
        ema.update(loaded["ema"])
    with writing(dst, remove_partial=False):
        return save_checkpoint(dst, generator=g, discriminator=loaded["discriminator"], ema=ema,
                               extra={"step": loaded["step"], "converted_from": loaded["files"]})
