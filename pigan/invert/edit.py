"""FENeRF's mask editing (what `pigan edit` runs): refit only the geometry columns of an inverted latent's
modulations to an edited label map, the appearance columns held fixed, then score and show the edit.

FENeRF edits a portrait by inverting it, painting its mask, and inverting again from the first result
with the semantic loss alone (its README: lambda_seg 1, lambda_img 0, lambda_percept 0, and its
--latent_normalize offset norm x1): with no pixel term only the geometry offsets are optimised, so the
texture code stays the portrait's and the new shape is coloured by it. Adam at 1e-2 with weight decay
1e-4, the step x0.75 every 100 iterations, 1000 iterations (its defaults).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from .. import imaging
from ..common import UsageError, writing
from ..common import progress as progress_bar
from ..data import mean_iou, write_label_png
from ..logging_utils import plot_curves
from ..model.generators import frozen
from ..model.render_options import RenderOptions
from .fit import _forks, fit_stage, semantic_fit
from .objectives import FENERF_OFFSET_NORM, SemanticObjective, check_mask
from .options import InvertOptions
from .outputs import novel_views
from .semantic import label_images

__all__ = ["refit_shape", "edit_scores", "describe_edit", "write_edit_outputs", "EDIT_ITERATIONS"]

EDIT_ITERATIONS = 1000


def refit_shape(generator, frequencies, phase_shifts, target_mask, options: InvertOptions | None = None, *,
                pitch: float | None = None, yaw: float | None = None, render: RenderOptions | None = None,
                progress: bool = False) -> dict:
    """Fit the geometry columns (``generator.geometry_columns``) of the modulations (``frequencies``,
    ``phase_shifts`` [1, D], e.g. ``invert``'s) to ``target_mask`` (a label map [H, W] or [1, H, W],
    square, 0..K) at the pose (``pitch``, ``yaw``; default ``render``'s mean pose), the appearance columns
    held fixed: the returned appearance columns are the given ones bit for bit.

    The loss is ``options.semantic_weight`` x the MSE between the rendered semantic planes and the mask's
    (``SemanticObjective``) plus ``options.offset_norm`` (None: FENeRF's 1) x the offsets' mean square;
    ``options`` (default: ``InvertOptions(iterations=EDIT_ITERATIONS)``) gives the schedule (iterations,
    lr, weight_decay, lr_step, lr_gamma), noise_std, jitter, seed, check_every and backtrack; its
    image_weight, pose and z settings do not apply. ``render``: camera and marcher (default
    ``options.render``; img_size comes from the mask). As ``invert``, the result is the best clean check
    (the start included, so the fit never ends worse than it began).

    Returns {"frequencies", "phase_shifts" [1, D], "fit" [1, 3, H, W], "semantic", "opacity", "labels",
    "mask", "miou", "per_class_iou", "loss", "semantic_mse", "best_iteration", "final", "losses",
    "checks", "backtracks", "trace" (per check: iteration, loss, semantic_mse, seconds, pose),
    "start" (the start's loss and semantic_mse), "options" (RenderOptions), "pitch", "yaw"}."""
    o = options if options is not None else InvertOptions(iterations=EDIT_ITERATIONS)
    mask = check_mask(target_mask, generator, name="target_mask")
    if mask.shape[-1] != mask.shape[-2]:
        raise UsageError(f"target_mask must be square, got {tuple(mask.shape[-2:])}")
    if o.semantic_weight <= 0:
        raise UsageError("refit_shape needs semantic_weight > 0: the edited mask is all it fits")
    device = next(generator.parameters()).device
    base = []
    for name, t in (("frequencies", frequencies), ("phase_shifts", phase_shifts)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[0] != 1:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise UsageError(f"{name} must be one latent's modulations [1, D], got {got}")
        base.append(t.detach().to(device=device, dtype=torch.float32))
    width = generator.appearance_columns.stop
    if base[0].shape[1] != width or base[1].shape[1] != width:
        raise UsageError(f"frequencies and phase_shifts must have the generator's {width} columns, got "
                         f"{base[0].shape[1]} and {base[1].shape[1]}")
    render = (render or o.render or RenderOptions()).replace(img_size=mask.shape[-1])
    pose = (render.pitch if pitch is None else float(pitch), render.yaw if yaw is None else float(yaw))
    mask = mask.to(device)
    objective = SemanticObjective(None, mask, generator.num_classes, 0.0, o.semantic_weight)
    norm = FENERF_OFFSET_NORM if o.offset_norm is None else float(o.offset_norm)
    with frozen(generator):
        gen = torch.Generator(device=device)
        gen.manual_seed(o.seed if o.seed is not None else torch.seed())
        bar = progress_bar(None, enabled=progress, desc="edit", total=o.iterations, file=sys.stderr,
                           mininterval=0.5, leave=True)
        with torch.random.fork_rng(devices=_forks(device)):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=device)))
            run = fit_stage(generator, None, tuple(base), render, pose, o.replace(fit_pose=False), gen, bar,
                            iterations=o.iterations, lr=o.offsets_lr, weight_decay=o.weight_decay, space="offsets",
                            objective=objective, columns=generator.geometry_columns, offset_norm=norm)
        if bar is not None:
            bar.close()
    best, first = run["best"], run["trace"][0]
    result = {"frequencies": best["frequencies"], "phase_shifts": best["phase_shifts"], "fit": best["fit"],
              "loss": best["loss"], "semantic_mse": best["semantic_mse"], "best_iteration": best["iteration"],
              "final": run["final"], "losses": run["losses"], "checks": run["checks"],
              "backtracks": run["backtracks"], "trace": run["trace"], "options": render, "pitch": pose[0],
              "yaw": pose[1], **semantic_fit(best["semantic"], best["opacity"], mask)}
    result["start"] = {"loss": first["loss"], "semantic_mse": first["semantic_mse"]}
    return result


def _psnr(a, b) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item() if a.numel() else float("nan")
    return float("inf") if mse == 0 else 10 * math.log10(4 / mse)


def edit_scores(before: dict, after: dict, target_mask: torch.Tensor, num_classes: int,
                reference: torch.Tensor | None = None) -> dict:
    """How an edit went. ``before`` / ``after``: {"fit" [1, 3, H, W], "labels" [1, H, W]} (the render and
    label map before and after ``refit_shape``); ``target_mask`` [1, H, W] the edited mask; ``reference``
    the mask it was edited from (default: the label map before the edit). The edited region is where the
    target differs from the reference. Returns {"region_pixels", "region_fraction", "region_miou_before",
    "region_miou_after" (``mean_iou`` of the label map against the target over the edited region's pixels,
    background included; NaN for an empty region), "miou_before", "miou_after" (over the whole image),
    "unedited_psnr" (dB, the render after the edit against the one before, outside the edited region;
    inf when identical, NaN when the whole image was edited)}."""
    target = target_mask.reshape(1, *target_mask.shape[-2:]).cpu().long()
    reference = before["labels"] if reference is None else reference
    region = target != reference.reshape(target.shape).cpu()                         # [1, H, W]
    n = num_classes + 1

    def miou(labels, where=None):
        labels = labels.cpu().reshape(target.shape)
        if where is None:
            return mean_iou(labels, target, n)[0]
        if not where.any():
            return float("nan")
        return mean_iou(labels[where].reshape(1, 1, -1), target[where].reshape(1, 1, -1), n)[0]

    keep = (~region).unsqueeze(1).expand(-1, 3, -1, -1)                              # [1, 3, H, W]
    return {"region_pixels": int(region.sum()), "region_fraction": region.float().mean().item(),
            "region_miou_before": miou(before["labels"], region), "region_miou_after": miou(after["labels"], region),
            "miou_before": miou(before["labels"]), "miou_after": miou(after["labels"]),
            "unedited_psnr": _psnr(after["fit"].cpu()[keep], before["fit"].cpu()[keep])}


def describe_edit(scores: dict) -> str:
    """One line: the edit's scores."""
    return (f"edited region {scores['region_pixels']} px ({100 * scores['region_fraction']:.1f}%): mIoU with the "
            f"target mask {scores['region_miou_before']:.3f} -> {scores['region_miou_after']:.3f}; whole image "
            f"{scores['miou_before']:.3f} -> {scores['miou_after']:.3f}; unedited region {scores['unedited_psnr']:.2f} "
            f"dB PSNR against the render before the edit")


def write_edit_outputs(generator, before: dict, after: dict, image: torch.Tensor, target_mask: torch.Tensor,
                       scores: dict, out, name: str, views: int = 7, yaw_range: float = 0.5,
                       skip_empty: bool = True, settings: dict | None = None) -> dict:
    """Write in ``out``, named after ``name``: <name>_edit.png (top: the image, the render before the
    edit, after it; bottom: the label map before, the target mask, the label map after),
    <name>_edit_views.png (a yaw sweep of ``views`` views over +-``yaw_range`` at the edit's pitch: before,
    after, and the semantic maps after), <name>_edit_labels.png (the label map after, as a label PNG),
    <name>_edit_loss.png, <name>_edit_latent.pt (modulations before and after, pose, scores) and
    <name>_edit.json (scores, settings, the refit's checks; null for an undefined or infinite score, e.g.
    the PSNR of an unchanged region). ``before``: {"frequencies", "phase_shifts",
    "fit", "labels"}; ``after``: ``refit_shape``'s result. Returns {key: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    k = generator.num_classes
    paths = {}

    def save(key, filename, fn, *args, **kwargs):
        with writing(out / filename):
            paths[key] = fn(*args, out / filename, **kwargs)

    top = torch.cat([image.reshape(1, *image.shape[-3:]).cpu(), before["fit"].cpu(), after["fit"].cpu()])
    bottom = label_images(torch.cat([before["labels"].cpu(), target_mask.reshape(before["labels"].shape).cpu(),
                                     after["labels"].cpu()]), k)
    save("edit", f"{name}_edit.png", imaging.save_grid, torch.cat([top, bottom]), nrow=3)
    opts = after["options"].replace(skip_empty=skip_empty)
    yaws = [after["yaw"] + yaw_range * (2 * i / max(views - 1, 1) - 1) for i in range(views)]
    pitches = [after["pitch"]] * views
    was = novel_views(generator, before["frequencies"], before["phase_shifts"], opts, yaws, pitches)
    now, maps = novel_views(generator, after["frequencies"], after["phase_shifts"], opts, yaws, pitches, semantic=True)
    save("views", f"{name}_edit_views.png", imaging.save_grid, torch.cat([was, now, maps]), nrow=views)
    save("labels", f"{name}_edit_labels.png", lambda labels, path: write_label_png(path, labels),
         after["labels"][0].cpu())
    losses = after["losses"]
    if losses:
        save("loss", f"{name}_edit_loss.png", plot_curves, {"loss": (list(range(1, len(losses) + 1)), losses)},
             title=f"shape refit of {name}", xlabel="iteration", logy=True)
    save("latent", f"{name}_edit_latent.pt", _save_pt, {
        "frequencies": after["frequencies"].cpu(), "phase_shifts": after["phase_shifts"].cpu(),
        "before_frequencies": before["frequencies"].cpu(), "before_phase_shifts": before["phase_shifts"].cpu(),
        "pitch": after["pitch"], "yaw": after["yaw"], "scores": scores, "options": after["options"].to_dict()})
    record = {"scores": scores, "settings": settings or {}, "best_iteration": after["best_iteration"],
              "start": after["start"], "loss": after["loss"], "semantic_mse": after["semantic_mse"],
              "per_class_iou": after["per_class_iou"], "checks": after["trace"], "backtracks": after["backtracks"]}
    save("json", f"{name}_edit.json", _write_json, record)
    return paths


def _save_pt(obj, path) -> Path:
    torch.save(obj, path)
    return path


def _finite(obj):
    """``obj`` with every non-finite float as None (JSON has no NaN or infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _write_json(obj, path) -> Path:
    path.write_text(json.dumps(_finite(obj), indent=2) + "\n")
    return path
