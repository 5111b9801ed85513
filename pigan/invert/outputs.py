"""Reading a target image and writing what an inversion produced: the fit next to its target, the
loss curve, a novel-view grid, an orbit GIF and the latent (and a semantic generator's fitted semantic
maps); and the one-line summary of a fit."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import imaging
from ..common import writing
from ..data import load_rgb, square_crop_resize, to_tensor
from ..logging_utils import plot_curves
from ..model.render_options import RenderOptions
from .fit import render_latent, render_outputs

__all__ = ["load_image", "psnr", "novel_views", "orbit_poses", "write_outputs", "save_latent", "summary"]


def load_image(path, img_size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """An image file as [3, img_size, img_size] in [-1, 1] (centre square crop, resize)."""
    return to_tensor(square_crop_resize(load_rgb(Path(path)), img_size, crop_fraction))


def psnr(a: torch.Tensor, b: torch.Tensor, value_range: float = 2.0) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak ``value_range``)."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10 * math.log10(value_range ** 2 / mse)


@torch.no_grad()
def novel_views(generator, freqs, phases, options: RenderOptions, yaws, pitches=None, semantic: bool = False):
    """Renders [len(yaws), 3, H, W] of the fitted latent at (pitch, yaw) pairs (no jitter); with
    ``semantic`` (a semantic generator), (renders, their semantic maps as colour images [V, 3, H, W])."""
    pitches = pitches if pitches is not None else [options.pitch] * len(yaws)
    if not semantic:
        return torch.cat([render_latent(generator, freqs, phases, options, pitch=p, yaw=y, jitter=False).cpu()
                          for p, y in zip(pitches, yaws)])
    outs = [render_outputs(generator, freqs, phases, options, pitch=p, yaw=y, jitter=False)
            for p, y in zip(pitches, yaws)]
    return (torch.cat([o["pixels"].cpu() for o in outs]),
            torch.cat([imaging.semantic_images(o["semantic"], o["opacity"]) for o in outs]))


def orbit_poses(options: RenderOptions, frames: int, yaw_range: float, pitch_range: float):
    """An elliptical orbit around the mean pose: (pitches, yaws) lists of length ``frames``."""
    ts = [2 * math.pi * i / frames for i in range(frames)]
    yaws = [options.yaw + yaw_range * math.sin(t) for t in ts]
    pitches = [options.pitch + pitch_range * math.cos(t) for t in ts]
    return pitches, yaws


def write_outputs(generator, result: dict, target: torch.Tensor, out: Path, name: str, views: int = 7,
                  frames: int = 36, yaw_range: float = 0.5, pitch_range: float = 0.15,
                  skip_empty: bool = True) -> dict:
    """Fit vs target PNG, loss curve PNG, novel-view grid PNG, orbit GIF, latent .pt in ``out``, named
    after ``name``; returns {"fit", "loss", "views", "video", "latent"} -> path. ``skip_empty``: the
    novel views and the orbit skip empty space (the fit shown is the loss's exact render). A semantic
    generator's fit adds ``write_semantic_outputs``' files ("semantic", "labels", "views_semantic")."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opts = result["options"]
    view_opts = opts.replace(skip_empty=skip_empty)
    paths = {}

    def save(key, filename, fn, *args, **kwargs):
        with writing(out / filename):
            paths[key] = fn(*args, out / filename, **kwargs)

    save("fit", f"{name}_fit.png", imaging.save_grid,
         torch.cat([target.reshape(1, *target.shape[-3:]).cpu(), result["fit"].cpu()]), nrow=2)
    losses = result["losses"]
    semantic = "semantic" in result
    label = "loss" if result.get("mask") is not None else "mse"
    save("loss", f"{name}_loss.png", plot_curves, {label: (list(range(1, len(losses) + 1)), losses)},
         title=f"inversion of {name}", xlabel="iteration", logy=True)
    yaws = [opts.yaw + yaw_range * (2 * i / max(views - 1, 1) - 1) for i in range(views)]
    grid = novel_views(generator, result["frequencies"], result["phase_shifts"], view_opts, yaws, semantic=semantic)
    if semantic:
        from .semantic import write_semantic_outputs

        grid, maps = grid
        paths.update(write_semantic_outputs(result, out, name, view_maps=maps))
    save("views", f"{name}_views.png", imaging.save_grid, grid, nrow=views)
    pitches, oy = orbit_poses(opts, frames, yaw_range, pitch_range)
    video = novel_views(generator, result["frequencies"], result["phase_shifts"], view_opts, oy, pitches)
    save("video", f"{name}_orbit.gif", imaging.save_gif, [imaging.to_unit(f) for f in video], fps=12)
    save("latent", f"{name}_latent.pt", save_latent, result)
    return paths


def save_latent(result: dict, path) -> Path:
    """The fitted latent, pose, scores, loss curve and render options of ``invert``'s result as a
    .pt file of plain tensors, numbers and dicts (loadable with weights_only=True)."""
    extra = {k: result[k] for k in ("loss", "semantic_mse", "miou", "per_class_iou") if k in result}
    if "labels" in result:
        extra["labels"] = result["labels"].cpu()
    torch.save({"frequencies": result["frequencies"].cpu(), "phase_shifts": result["phase_shifts"].cpu(),
                "pitch": result["pitch"], "yaw": result["yaw"], "mse": result["mse"],
                "best_iteration": result["best_iteration"], "final": result["final"],
                "losses": torch.tensor(result["losses"]), "options": result["options"].to_dict(), **extra}, path)
    return path


def summary(res: dict) -> str:
    """Best and final fit in one line (MSE and PSNR of clean renders; poses in degrees)."""
    def db(mse):
        return float("inf") if mse == 0 else 10 * math.log10(4 / mse)
    fin = res["final"]
    text = (f"best mse {res['mse']:.5f} (PSNR {db(res['mse']):.2f} dB) at iteration {res['best_iteration']}, "
            f"final mse {fin['mse']:.5f} (PSNR {db(fin['mse']):.2f} dB)")
    if res.get("mask") is not None:
        text += (f"; semantic mse {res['semantic_mse']:.5f}, mIoU {res['miou']:.3f} against the mask "
                 f"(loss {res['loss']:.5f})")
    if res.get("backtracks"):
        text += f"; restarted from the best iterate at iteration(s) {', '.join(map(str, res['backtracks']))}"
    o = res["options"]
    if o is not None and max(abs(res["pitch"] - o.pitch), abs(res["yaw"] - o.yaw)) > 1e-6:
        text += (f"; pose pitch {math.degrees(res['pitch']):.1f} deg, yaw {math.degrees(res['yaw']):.1f} deg "
                 f"(mean pose {math.degrees(o.pitch):.1f}, {math.degrees(o.yaw):.1f})")
    return text
