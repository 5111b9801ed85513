"""A ground-truth generator for inversion experiments: a pi-GAN generator fitted, point by point, to
the analytic 3-D field of the embedded faces dataset.

A briefly trained GAN is a poor test bed for pose fitting: its renders change little with the pose,
so its latent offsets can imitate a pose change. Here every latent z is a known head (shape and
colours are smooth functions of z's first 12 entries, in the ranges the dataset draws from) and the
generator's density and colour are regressed on that head's at random points around it, so its
renders are those of a real 3-D object whose pose shows. The result is a normal checkpoint
(`pigan invert`, `pigan render`, `pigan shapes` take it); `--check` prints the PSNR of its renders
against the analytic renders of the same heads at random poses.

    python scripts/distill_faces.py --out runs/faces_distilled.pt --steps 3000
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from pigan import curriculums as C
from pigan.checkpoints import save_checkpoint
from pigan.data import default_camera, faces_from_unit, render_shapes, surface_colour
from pigan.generators import ImplicitGenerator3d
from pigan.model.render_options import RenderOptions

SIGMA_SCALE = 400.0       # density inside the head; 1/e of a ray's light is left after 0.0025 units


def head_params(z: torch.Tensor, radius: float) -> dict:
    """The head of each latent z [B, >=12]: render_shapes parameters, the dataset's ranges spanned by
    sigmoid(z[:, :12])."""
    return faces_from_unit(torch.sigmoid(z[:, :12].double()).numpy(), radius)


def head_density(params: dict, x: torch.Tensor):
    """Density target [B, N] (in units of SIGMA_SCALE) at points x [B, N, 3], and the surface direction
    [B, N, 3] (a point of the unit sphere, in the head's frame) whose colour each point takes."""
    ul = x / torch.as_tensor(params["axes"], dtype=x.dtype)[:, None]            # the unit-sphere frame
    r = ul.norm(dim=-1)
    sigma = ((1 - r) / 0.03).clamp(-1, 1)                                       # ramps over 3 % of the radius
    return sigma, F.normalize(ul, dim=-1)


def head_field(params: dict, x: torch.Tensor):
    """Density target [B, N] (in units of SIGMA_SCALE) and lit colour [B, N, 3] at points x [B, N, 3]."""
    sigma, u = head_density(params, x)
    return sigma, surface_colour(params, u).clamp(0, 1)


def head_radius(cam: dict) -> float:
    """The heads' radius scale for a camera: the dataset's (largest head inside the view frustum and
    inside [ray_start, ray_end])."""
    return min(0.92 * math.tan(math.radians(cam["fov"]) / 2), 0.9 * (cam["ray_end"] - cam["ray_start"]) / 2)


def fold_sigma_scale(layer: torch.nn.Linear):
    """The density layer regresses density in units of SIGMA_SCALE: fold the scale into its weights."""
    with torch.no_grad():
        layer.weight.mul_(SIGMA_SCALE)
        layer.bias.mul_(SIGMA_SCALE)


def sample_points(axes: np.ndarray, n: int, extent: float) -> torch.Tensor:
    """[B, n, 3]: half on a shell around each head's surface, half uniform in the render volume."""
    B = axes.shape[0]
    k = n // 2
    d = F.normalize(torch.randn(B, k, 3), dim=-1) * (1 + 0.08 * torch.randn(B, k, 1))
    shell = d * torch.as_tensor(axes, dtype=torch.float32)[:, None]
    box = (torch.rand(B, n - k, 3) * 2 - 1) * extent
    return torch.cat([shell, box], 1)


def build(args):
    cur = C.get_curriculum("faces")
    cur.update(model="SPATIALSIRENBASELINE", hidden_dim=args.hidden_dim, map_hidden_dim=args.hidden_dim,
               dataset="faces", pos_lambda=0)
    meta = C.stage_metadata(cur, 0)
    torch.manual_seed(args.seed)
    return ImplicitGenerator3d(cur["model"], cur["latent_dim"], **meta), cur


def check(g, cur, radius, n=8, size=32, seed=123):
    """PSNR (dB) of the generator's renders vs the analytic renders of the same heads, random poses."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, g.z_dim, generator=gen)
    cam = default_camera()
    pitch = math.pi / 2 + cam["v_stddev"] * torch.randn(n, 1, generator=gen)
    yaw = math.pi / 2 + cam["h_stddev"] * torch.randn(n, 1, generator=gen)
    truth = render_shapes(head_params(z, radius), pitch, yaw, size, cam["fov"]) * 2 - 1
    opts = RenderOptions.from_curriculum(cur, img_size=size)
    out = []
    with torch.no_grad():
        f, p = g.siren.mapping_network(z)
        for i in range(n):
            img = g.render(frequencies=f[i:i + 1], phase_shifts=p[i:i + 1], pitch=pitch[i], yaw=yaw[i],
                           jitter=False, options=opts.replace(nerf_noise=0.0))["pixels"][0]
            out.append(10 * math.log10(4 / F.mse_loss(img, truth[i]).item()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="checkpoint to write")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8, help="heads per step")
    ap.add_argument("--points", type=int, default=4096, help="points per head per step")
    ap.add_argument("--hidden-dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="where the generator trains (the targets are drawn on the CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    g, cur = build(args)
    g.to(dev)
    cam = default_camera()
    radius = head_radius(cam)
    opt = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        z = torch.randn(args.batch, g.z_dim)
        params = head_params(z, radius)
        x = sample_points(params["axes"], args.points, extent=cam["ray_end"] - 1)
        sigma_t, rgb_t = head_field(params, x)
        x, sigma_t, rgb_t = x.to(dev), sigma_t.to(dev), rgb_t.to(dev)
        f, p = g.siren.mapping_network(z.to(dev))
        dirs = F.normalize(torch.randn_like(x), dim=-1)
        out = g.siren.forward_with_frequencies_phase_shifts(x, f, p, ray_directions=dirs)
        near = (sigma_t > -1).float()[..., None]        # colour matters on and inside the surface
        loss = F.mse_loss(out[..., 3], sigma_t) + \
            ((out[..., :3] - rgb_t) ** 2 * near).sum() / (3 * near.sum().clamp_min(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step}/{args.steps} loss {loss.item():.5f} ({time.time() - t0:.0f} s)", flush=True)
    fold_sigma_scale(g.siren.final_layer)
    g.cpu()
    psnrs = check(g, cur, radius)
    print("PSNR of renders vs the analytic heads (8 random z and poses, 32x32): "
          + " ".join(f"{v:.1f}" for v in psnrs), flush=True)
    g.generate_avg_frequencies()
    save_checkpoint(args.out, generator=g, config=json.loads(C.to_json(cur)),
                    extra={"step": args.steps, "distilled": {"sigma_scale": SIGMA_SCALE, "steps": args.steps}})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
