"""FENeRF's mask editing measured against ground truth: README's edit table.

On the semantic generator of scripts/distill_fenerf.py every latent is a known analytic head whose
shape code also sets the mouth's size and the hairline, so an edited mask has an exact target. For
each of ``--heads`` heads (their known latents, mean pose) and each edit (a larger mouth, a higher
hairline): the target mask is the analytic label map of the edited head; ``pigan.invert.refit_shape``
refits the geometry columns of the head's modulations to it (appearance held fixed, ``--iterations``);
the script reports the edited region's IoU with the target (the region: where the analytic masks
before and after the edit differ) before and after the refit, the whole-image mIoU, and the PSNR of
the unedited region against the render before the edit. "ceiling": the generator's own render of the
ground-truth edited latent (``latent_for``) scored the same way, i.e. how well the distilled generator
itself draws that edit.

    python scripts/edit_table.py runs/fenerf_distilled.pt --heads 4 --iterations 300 --json runs/edit.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import torch

from pigan.checkpoints import load_checkpoint, load_generator
from pigan.data import default_camera
from pigan.invert import InvertOptions
from pigan.invert.edit import edit_scores, refit_shape
from pigan.model import curriculums as C
from pigan.model.fenerf import semantic_labels
from pigan.model.render_options import RenderOptions

EDITS = {"mouth x1.35": {"mouth_scale": 1.35}, "hairline +0.12": {"hairline": 0.12}}


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(g, f, p, opts, seed):
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = g.render(frequencies=f, phase_shifts=p, pitch=opts.v_mean, yaw=opts.h_mean, jitter=False, options=opts)
    return {"fit": out["pixels"], "labels": semantic_labels(out["semantic"], out["opacity"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    fen, faces = _sibling("distill_fenerf"), _sibling("distill_faces")
    g = load_generator(args.checkpoint).eval()
    cur = C.int_keys(load_checkpoint(args.checkpoint)["config"])
    opts = RenderOptions.from_curriculum(cur, img_size=args.size, nerf_noise=0.0)
    radius = faces.head_radius(default_camera())
    z = torch.randn(args.heads, g.z_dim, generator=torch.Generator().manual_seed(args.seed))
    params = fen.head_params(z, g.z_geo_dim, radius)
    _, reference = fen.render_heads(params, opts.v_mean, opts.h_mean, args.size, opts.fov)   # [n, S, S]
    rows = []
    for name, edit in EDITS.items():
        _, targets = fen.render_heads(fen.edit_head(params, **edit), opts.v_mean, opts.h_mean, args.size, opts.fov)
        truth = fen.latent_for(z, **edit)
        for i in range(args.heads):
            with torch.no_grad():
                f, p = g.siren.mapping_network(z[i:i + 1])
                tf, tp = g.siren.mapping_network(truth[i:i + 1])
            before = _render(g, f, p, opts, args.seed)
            t0 = time.perf_counter()
            fit = refit_shape(g, f, p, targets[i], InvertOptions(iterations=args.iterations, render=opts),
                              pitch=opts.v_mean, yaw=opts.h_mean)
            seconds = time.perf_counter() - t0
            after = _render(g, fit["frequencies"], fit["phase_shifts"], opts, args.seed)
            ceiling = _render(g, tf, tp, opts, args.seed)
            k = g.num_classes
            scores = edit_scores(before, after, targets[i:i + 1], k, reference=reference[i:i + 1])
            best = edit_scores(before, ceiling, targets[i:i + 1], k, reference=reference[i:i + 1])
            rows.append({"edit": name, "head": i, "seconds": seconds, **scores,
                         "ceiling_region_miou": best["region_miou_after"],
                         "ceiling_unedited_psnr": best["unedited_psnr"]})
            r = rows[-1]
            print(f"{name:>15} head {i}: region IoU {r['region_miou_before']:.3f} -> {r['region_miou_after']:.3f} "
                  f"(ceiling {r['ceiling_region_miou']:.3f}), mIoU {r['miou_before']:.3f} -> {r['miou_after']:.3f}, "
                  f"unedited PSNR {r['unedited_psnr']:.1f} dB (ceiling {r['ceiling_unedited_psnr']:.1f}), "
                  f"{seconds:.0f} s", flush=True)
    for name in EDITS:
        sel = [r for r in rows if r["edit"] == name]

        def mean(key):
            finite = [r[key] for r in sel if math.isfinite(r[key])]
            return sum(finite) / max(1, len(finite))
        print(f"{name:>15} mean: region IoU {mean('region_miou_before'):.3f} -> {mean('region_miou_after'):.3f} "
              f"(ceiling {mean('ceiling_region_miou'):.3f}), unedited PSNR {mean('unedited_psnr'):.1f} dB "
              f"(ceiling {mean('ceiling_unedited_psnr'):.1f}), {mean('seconds'):.0f} s per edit")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "size": args.size,
                                               "iterations": args.iterations, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
