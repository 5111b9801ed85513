"""The encoder file (``encoder.pt``): which generator it serves, writing and reading it, and the start
of an inversion predicted from one image."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..common import UsageError, atomic_save, writing
from .model import EncoderConfig, LatentEncoder

__all__ = ["FORMAT", "generator_hash", "latent_statistics", "save_encoder", "read_encoder_file", "load_encoder",
           "predict_start"]

FORMAT = "pigan-kernels/encoder-1"


def generator_hash(generator) -> str:
    """sha256 over the generator's state dict in key order: each entry's name, dtype, shape and raw
    bytes. Two generators hash alike only when every weight is bit-identical, so an encoder is never
    used with the other weights of the same checkpoint (EMA vs raw) or a later one."""
    h = hashlib.sha256()
    for key, t in generator.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def latent_statistics(generator, num: int = 10000, seed: int = 0):
    """Mean and spread (std) of the mapping network's (frequencies, phase_shifts) over ``num`` z drawn
    on the CPU from ``seed`` (the same values on every device): (avg_f, avg_p, std_f, std_p), [1, D] each."""
    device = next(generator.parameters()).device
    z = torch.randn(num, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    f, p = generator.siren.mapping_network(z)
    # a dimension the mapping network never moves would divide by zero when standardising
    return (f.mean(0, keepdim=True), p.mean(0, keepdim=True), f.std(0, keepdim=True).clamp_min(1e-6),
            p.std(0, keepdim=True).clamp_min(1e-6))


def save_encoder(path, encoder: LatentEncoder, generator_sha256: str, generator_weights: str, extra=None) -> Path:
    """Write ``path`` atomically: plain tensors and values only (torch.load(weights_only=True) reads it).
    ``extra``: further keys (the training state: step, optimizer, rng, options)."""
    state = {"format": FORMAT, "config": encoder.config.to_dict(),
             "encoder": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
             "generator_sha256": generator_sha256, "generator_weights": generator_weights, **(extra or {})}
    with writing(path, remove_partial=False):
        atomic_save(state, path)
    return Path(path)


def read_encoder_file(path, map_location="cpu") -> dict:
    """The raw dict of an encoder file; UsageError naming the file when it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"encoder file not found: {str(path)!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UsageError(f"{str(path)!r} is not a readable encoder file: {type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0]}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{str(path)!r} is not an encoder file of `pigan train-encoder` (format {FORMAT})")
    return state


def load_encoder(path, generator=None, map_location="cpu", state: dict | None = None) -> LatentEncoder:
    """The encoder of ``path`` in eval mode. With ``generator``, refuse (UsageError) a file trained
    for other generator weights. ``state``: the file's dict when already read."""
    state = state if state is not None else read_encoder_file(path, map_location)
    if generator is not None:
        mine = generator_hash(generator)
        if state["generator_sha256"] != mine:
            raise UsageError(
                f"{str(path)!r} was trained for another generator (sha256 {state['generator_sha256'][:12]}..., "
                f"its {state['generator_weights']} weights); this generator's weights hash to {mine[:12]}... "
                "Train an encoder for this checkpoint with `pigan train-encoder` (with --no-ema when the "
                "generator is used with --no-ema)")
    encoder = LatentEncoder(EncoderConfig.from_dict(state["config"]))
    try:
        encoder.load_state_dict(state["encoder"])
    except RuntimeError as exc:
        raise UsageError(f"{str(path)!r}: the weights do not fit its recorded config: {exc}") from exc
    return encoder.to(map_location).eval()


@torch.no_grad()
def predict_start(encoder: LatentEncoder, image: torch.Tensor):
    """((frequencies, phase_shifts) [1, D] each, (pitch, yaw) floats) predicted for ``image``
    ([3, H, W] or [1, 3, H, W] in [-1, 1]): the start ``pigan.invert.invert`` takes as ``init`` and
    ``start_poses``."""
    param = next(encoder.parameters())
    image = image.reshape(1, *image.shape[-3:]).to(device=param.device, dtype=param.dtype)
    out = encoder(image)
    f, p = encoder.latent(out["offsets"])
    return (f, p), (out["pitch"][0].item(), out["yaw"][0].item())
