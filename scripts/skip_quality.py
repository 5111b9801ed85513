"""Empty-space skipping against the exact marcher on one checkpoint: README's render table.

Renders a grid of ``--num`` latents at the mean pose and ``--frames`` frames of an orbit video
(`pigan render`'s poses) three times, one image at a time as `pigan render` does: exact, exact with
other importance-sampling uniforms (the exact path's own noise), and skipping empty space with the
first render's uniforms. Prints the PSNR of every image and depth map against the first exact one
(pixels in [-1, 1], peak-to-peak 2; depth over ray_start..ray_end), the time of each render, the
samples evaluated per ray and the proposal's cost.

    python scripts/skip_quality.py runs/faces_distilled.pt --size 256 --steps 24 --num 16 --frames 48
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

from pigan import render
from pigan.checkpoints import load_for_render
from pigan.model.render_options import RenderOptions
from pigan.model.skipping import SkipTally


def psnr(a, b, peak):
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def timed_render(generator, f, p, pitch, yaw, o, seed, tally=None):
    t0 = time.perf_counter()
    px, depth, _ = render.render_images(generator, f, p, pitch, yaw, o, seed=seed, with_opacity=True, tally=tally)
    return px, depth, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=24, help="coarse samples per ray (as many fine)")
    ap.add_argument("--num", type=int, default=16, help="grid latents")
    ap.add_argument("--frames", type=int, default=48, help="orbit frames (identity 0)")
    ap.add_argument("--noise-images", type=int, default=None, help="images that also get the second exact "
                    "render (default: all)")
    ap.add_argument("--psi", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write every number here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator, config = load_for_render(args.checkpoint)
    o = RenderOptions.from_curriculum(config, img_size=args.size, num_steps=args.steps)
    f, p = render.latents(generator, args.num, args.seed, args.psi)
    pitches, yaws = render.video_poses(o, args.frames, "auto")
    jobs = [("grid", i, f[i:i + 1], p[i:i + 1], o.pitch, o.yaw) for i in range(args.num)]
    jobs += [("video", t, f[:1], p[:1], pitches[t], yaws[t]) for t in range(args.frames)]
    span = o.ray_end - o.ray_start
    rows, tally = [], SkipTally()
    times = {"exact": 0.0, "skip": 0.0}
    for k, (kind, i, fi, pi, pitch, yaw) in enumerate(jobs):
        seed = args.seed * 1000 + k
        px, d, te = timed_render(generator, fi, pi, pitch, yaw, o, seed)
        sx, sd, ts = timed_render(generator, fi, pi, pitch, yaw, o.replace(skip_empty=True), seed, tally)
        row = {"kind": kind, "index": i, "exact_s": round(te, 3), "skip_s": round(ts, 3),
               "psnr": round(psnr(sx, px, 2.0), 2), "depth_psnr": round(psnr(sd, d, span), 2)}
        if args.noise_images is None or k < args.noise_images:
            nx, nd, _ = timed_render(generator, fi, pi, pitch, yaw, o, seed + 10 ** 6)
            row.update(noise_psnr=round(psnr(nx, px, 2.0), 2), noise_depth_psnr=round(psnr(nd, d, span), 2))
        times["exact"] += te
        times["skip"] += ts
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"checkpoint": args.checkpoint, "size": args.size, "steps": f"{args.steps}+{args.steps}",
               "threads": torch.get_num_threads(), "images": len(rows),
               "exact_images_per_s": round(len(rows) / times["exact"], 4),
               "skip_images_per_s": round(len(rows) / times["skip"], 4),
               "speedup": round(times["exact"] / times["skip"], 3),
               "min_psnr": min(r["psnr"] for r in rows), "min_depth_psnr": min(r["depth_psnr"] for r in rows),
               "samples_per_ray": round(tally.evaluations / tally.rays, 2),
               "exact_samples_per_ray": tally.exact / tally.rays,
               "proposal_seconds": round(tally.proposal_seconds, 2), "fallback": tally.fallback}
    noise = [r["noise_psnr"] for r in rows if "noise_psnr" in r]
    if noise:
        summary.update(min_noise_psnr=min(noise), min_noise_depth_psnr=min(r["noise_depth_psnr"] for r in rows
                                                                          if "noise_depth_psnr" in r))
    print(json.dumps(summary), flush=True)
    print(tally.summary())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
