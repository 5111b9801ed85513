"""The encoder's table in README's invert section: `pigan invert` from an encoder's prediction against
today's starts (the mean latent at the mean pose, and `--fit-pose` with its 3x1 grid and z stage), on
held-out renders of the generator at random poses and on images of the embedded faces dataset, whose
cameras are known.

Each (image, start) pair is one inversion of ``--iterations`` offset iterations; the schedule does
not depend on the run's length (no annealed noise, the step decays every 100 iterations), so the
best clean check at or before iteration N of one long run is what a run of N iterations returns,
and the trace's clock gives the time it took (the start's search, z stage and encoder included).

    python scripts/encoder_table.py runs/faces_distilled.pt runs/enc_distilled/encoder.pt \\
        --out runs/encoder_table_distilled --renders 4 --dataset 4

writes OUT/rows.csv (one row per image, start and N) and OUT/table.md (the means per start and N).
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch

from pigan.checkpoints import load_checkpoint, load_generator
from pigan.data import ProceduralShapes
from pigan.encoder import load_encoder, predict_start
from pigan.invert import InvertOptions, invert, pose_grid
from pigan.model.curriculum_loading import load_curriculum
from pigan.model.render_options import RenderOptions

# the encoder's prediction with its pose kept (`--encoder`) or refined (`--encoder --fit-pose`), the
# mean latent at the mean pose (the default), and `--fit-pose` (3x1 grid, z stage)
STARTS = ("encoder", "encoder+pose", "mean pose", "--fit-pose")


def targets(generator, render: RenderOptions, renders: int, dataset: int, seed: int):
    """[(name, image [1, 3, S, S], pitch, yaw)]: renders of held-out latents (psi 0.7, as the encoder's
    training draws them, from another seed) at poses drawn from the curriculum, then dataset images."""
    out = []
    gen = torch.Generator().manual_seed(seed)
    if renders:
        z = torch.randn(renders, generator.z_dim, generator=gen)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pitch = render.v_mean + render.v_stddev * torch.randn(renders, 1)
            yaw = render.h_mean + render.h_stddev * torch.randn(renders, 1)
            with torch.no_grad():
                images = generator.render(z, psi=0.7, pitch=pitch, yaw=yaw, options=render, jitter=False)["pixels"]
        out += [(f"render{i}", images[i:i + 1], pitch[i].item(), yaw[i].item()) for i in range(renders)]
    if dataset:
        data = ProceduralShapes(img_size=render.img_size, num_images=max(64, dataset), seed=seed, variant="faces")
        out += [(f"faces{i}", data.images[i:i + 1], data.poses[i, 0].item(), data.poses[i, 1].item())
                for i in range(dataset)]
    return out


def best_until(trace: list, n: int) -> dict:
    return min((c for c in trace if c["iteration"] <= n), key=lambda c: c["mse"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("encoder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--renders", type=int, default=4)
    ap.add_argument("--dataset", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=700)
    ap.add_argument("--checkpoints", default="0,50,100,300,700", help="N of the table")
    ap.add_argument("--starts", default=",".join(STARTS))
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--num-steps", type=int, default=None)
    ap.add_argument("--encoder-lr", type=float, default=None, help="offsets step from the encoder's start "
                    "(default: invert's, 5e-3)")
    ap.add_argument("--seed", type=int, default=1000, help="held-out latents, poses and dataset images")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator = load_generator(args.checkpoint, map_location="cpu", use_ema=True).eval()
    encoder = load_encoder(args.encoder, generator)
    config = load_checkpoint(args.checkpoint).get("config") or load_curriculum("faces")
    render = RenderOptions.from_curriculum(config, img_size=args.img_size, num_steps=args.num_steps)
    o = InvertOptions(iterations=args.iterations, render=render, seed=0)
    ns = [int(n) for n in args.checkpoints.split(",")]
    starts = [s for s in args.starts.split(",") if s]
    rows = []
    with open(out / "rows.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image", "start", "N", "psnr", "pitch_err_deg", "yaw_err_deg", "seconds"])
        writer.writeheader()
        for name, image, pitch, yaw in targets(generator, render, args.renders, args.dataset, args.seed):
            for start in starts:
                t0 = time.perf_counter()
                if start.startswith("encoder"):
                    init, pose = predict_start(encoder, image)
                    lead = time.perf_counter() - t0
                    res = invert(generator, image, o.replace(encoder_start=True, fit_pose=start == "encoder+pose",
                                                             start_poses=[pose], lr=args.encoder_lr), init=init)
                elif start == "mean pose":
                    lead, res = 0.0, invert(generator, image, o)
                else:
                    lead, res = 0.0, invert(generator, image, o.replace(fit_pose=True, z_iterations=100,
                                                                        start_poses=pose_grid(render)))
                for n in ns:
                    c = best_until(res["trace"], n)
                    # the time to run n iterations (the last check at or before n), whichever iterate was best
                    spent = max(t["seconds"] for t in res["trace"] if t["iteration"] <= n)
                    row = {"image": name, "start": start, "N": n, "psnr": round(10 * math.log10(4 / c["mse"]), 3),
                           "pitch_err_deg": round(math.degrees(c["pitch"] - pitch), 2),
                           "yaw_err_deg": round(math.degrees(c["yaw"] - yaw), 2),
                           "seconds": round(lead + spent, 2)}
                    rows.append(row)
                    writer.writerow(row)
                fh.flush()
                done = " ".join(f"N={r['N']}:{r['psnr']:.2f}dB/{r['seconds']:.0f}s" for r in rows[-len(ns):])
                print(name, start, done, flush=True)
    write_table(rows, ns, starts, out / "table.md")


def write_table(rows, ns, starts, path):
    lines = ["| start | N | PSNR (dB, mean over images) | pose error (deg, mean abs pitch / yaw) | time (s, mean) |",
             "|---|---|---|---|---|"]
    for group in ("render", "faces"):
        for start in starts:
            for n in ns:
                sel = [r for r in rows if r["start"] == start and r["N"] == n and r["image"].startswith(group)]
                if not sel:
                    continue
                mean = lambda k: sum(abs(r[k]) if k.endswith("deg") else r[k] for r in sel) / len(sel)  # noqa: E731
                lines.append(f"| {group}: {start} | {n} | {mean('psnr'):.2f} | {mean('pitch_err_deg'):.1f} / "
                             f"{mean('yaw_err_deg'):.1f} | {mean('seconds'):.0f} |")
    Path(path).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
