"""A ground-truth test bed for FENeRF: a semantic generator (SemanticGenerator3d) fitted, point by point,
to the analytic 3-D field of the embedded faces dataset's heads with their part labels.

Every latent z = cat(z_geo, z_app) is a known head. The geometry code z_geo sets the shape: the three
axes (sigmoid of z_geo[:, 0:3], the dataset's ranges) and two extensions of the dataset's head,
``mouth_scale`` (z_geo[:, 3]: the mouth scaled about its centre, 1 = the dataset's mouth) and
``hairline`` (z_geo[:, 4]: the hair's lower edge on the crown moved up by this much in the unit
sphere's y, 0 = the dataset's). The appearance code z_app sets the nine colour numbers of
``faces_from_unit`` (sigmoid of z_app[:, 0:9]). Density and part labels therefore depend on z_geo
only and the colour on both (parts and shading on z_geo, the colours on z_app), the split FENeRF's
architecture makes. With mouth_scale 1 and hairline 0 the head, its colours and its labels are the
dataset's (``faces_from_unit``, ``surface_colour``, ``face_part_labels``, ``render_face_labels``).

Targets at a point x: density and colour as in distill_faces.py; the semantic logits regress the
part weights (skin, hair, eyes, mouth; the mix whose argmax is the part label, one-hot away from the
parts' edges) of the surface point in x's radial direction inside and near the head, and 0 (no class)
elsewhere, so that the composited logits mapped by x * 2 - 1 are FENeRF's one-hot planes in {-1, 1}.

    python scripts/distill_fenerf.py --out runs/fenerf_distilled.pt --steps 3000 --check --json report.json
    python scripts/distill_fenerf.py --out runs/fenerf_distilled.pt --steps 0 --check    # check only

``--check`` renders heads at the mean pitch and yaws -30..+30 degrees and prints the PSNR of the
renders against the analytic ones and the per-class IoU of ``semantic_labels`` against the analytic
label maps (``render_heads``), per yaw and pooled.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pigan import curriculums as C
from pigan.checkpoints import load_checkpoint, load_generator, save_checkpoint
from pigan.common import progress
from pigan.data import FACE_CLASSES, default_camera, faces_from_unit, mean_iou, surface_colour
from pigan.data.procedural import _colour2_mask, _face_parts
from pigan.model.fenerf import SemanticGenerator3d, semantic_labels
from pigan.model.render_options import RenderOptions
from pigan.ops.rays import create_cam2world_matrix, get_initial_rays_trig, normalize_vecs


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


distill_faces = _sibling("distill_faces")

GEO_UNITS, APP_UNITS = 5, 9          # z_geo[:, :5] and z_app[:, :9] set the head; the rest is ignored
MOUTH_SCALE_RANGE = (0.75, 1.5)      # sigmoid(z_geo[:, 3]) spans it; 1 is the dataset's mouth
HAIRLINE_RANGE = (-0.1, 0.2)         # sigmoid(z_geo[:, 4]) spans it; 0 is the dataset's hairline
MOUTH_CENTRE_LAT = -0.42             # latitude (rad) of the dataset's mouth centre, the scaling's fixed point
NUM_CLASSES = len(FACE_CLASSES) - 1  # K: the labelled classes, background excluded
YAWS_DEG = (-30, -20, -10, 0, 10, 20, 30)


# ---------------------------------------------------------------------------- the analytic heads
def _span(u, lo_hi):
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * u


def head_params(z: torch.Tensor, z_geo_dim: int, radius: float) -> dict:
    """The head of each joined latent z [B, z_geo_dim + z_app_dim]: faces_from_unit's parameters plus
    'mouth_scale' and 'hairline' (float64 [B])."""
    if z.dim() != 2 or z_geo_dim < GEO_UNITS or z.shape[1] - z_geo_dim < APP_UNITS:
        raise ValueError(f"z must be [B, z_geo_dim + z_app_dim] with z_geo_dim >= {GEO_UNITS} and z_app_dim >= "
                         f"{APP_UNITS}, got shape {tuple(z.shape)} with z_geo_dim {z_geo_dim}")
    geo = torch.sigmoid(z[:, :GEO_UNITS].double()).numpy()
    app = torch.sigmoid(z[:, z_geo_dim:z_geo_dim + APP_UNITS].double()).numpy()
    params = faces_from_unit(np.concatenate([geo[:, :3], app], 1), radius)
    params["mouth_scale"] = _span(geo[:, 3], MOUTH_SCALE_RANGE)
    params["hairline"] = _span(geo[:, 4], HAIRLINE_RANGE)
    return params


def latent_for(z: torch.Tensor, mouth_scale=None, hairline=None) -> torch.Tensor:
    """A copy of z [B, z_dim] whose heads have the given mouth_scale / hairline (numbers or [B]; None
    keeps z's), everything else unchanged: the latent of the ground-truth edit."""
    z = z.clone()
    for col, value, lo_hi, name in ((3, mouth_scale, MOUTH_SCALE_RANGE, "mouth_scale"),
                                    (4, hairline, HAIRLINE_RANGE, "hairline")):
        if value is None:
            continue
        u = (torch.as_tensor(value, dtype=torch.float64) - lo_hi[0]) / (lo_hi[1] - lo_hi[0])
        if not bool(((u > 0) & (u < 1)).all()):
            raise ValueError(f"{name} must lie strictly inside {lo_hi} (the range the latent spans), got {value}")
        z[:, col] = torch.logit(u).to(z.dtype).expand(z.shape[0])
    return z


def edit_head(params: dict, mouth_scale=None, hairline=None) -> dict:
    """A copy of head parameters with mouth_scale / hairline replaced (numbers or [B]; any value, the
    analytic field is defined beyond the latent's ranges)."""
    out = dict(params)
    n = len(params["axes"])
    for key, value in (("mouth_scale", mouth_scale), ("hairline", hairline)):
        if value is not None:
            out[key] = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    return out


def _per_head(params, key, default, like):
    return torch.as_tensor(params.get(key, np.full(len(params["axes"]), default)), dtype=like.dtype)[:, None]


def part_weights(params: dict, u: torch.Tensor) -> torch.Tensor:
    """[n, R, 4] weights of skin, hair, eyes and mouth in the albedo at unit-sphere points u [n, R, 3]
    (sum 1; argmax + 1 is the label, as in face_part_labels). The dataset's masks, the mouth's read at
    points scaled about the mouth centre by 1 / mouth_scale, the hair's at points moved down by hairline."""
    m = _per_head(params, "mouth_scale", 1.0, u)                                 # [n, 1]
    lift = _per_head(params, "hairline", 0.0, u)
    eyes, _ = _face_parts(u)
    lat = torch.asin(u[..., 1].clamp(-1, 1))
    lon = torch.atan2(u[..., 0], u[..., 2])
    lat = (MOUTH_CENTRE_LAT + (lat - MOUTH_CENTRE_LAT) / m).clamp(-math.pi / 2, math.pi / 2)
    lon = lon / m
    _, mouth = _face_parts(torch.stack([lat.cos() * lon.sin(), lat.sin(), lat.cos() * lon.cos()], -1))
    hair = _colour2_mask(params, u - torch.stack([torch.zeros_like(lift), lift, torch.zeros_like(lift)], -1))
    feat = torch.maximum(eyes, mouth)
    zero = torch.zeros_like(feat)
    return torch.stack([(1 - hair) * (1 - feat), hair * (1 - feat), torch.where(eyes >= mouth, feat, zero),
                        torch.where(eyes >= mouth, zero, feat)], -1)            # [n, R, 4]


def part_labels(params: dict, u: torch.Tensor) -> torch.Tensor:
    """Labels int64 [n, R] (FACE_CLASSES indices 1..4) at unit-sphere points u [n, R, 3]."""
    return part_weights(params, u).argmax(-1) + 1


def head_colour(params: dict, u: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Lit colour [n, R, 3] at unit-sphere points u [n, R, 3]: the parts' colours mixed by part_weights,
    times the dataset's shading (that of a white head)."""
    w = part_weights(params, u) if weights is None else weights
    white = {**params, **{k: np.ones_like(params[k]) for k in ("color1", "color2", "color3")}}
    shade = surface_colour(white, u)[..., :1]                                    # [n, R, 1]
    colours = torch.as_tensor(np.stack([params["color1"], params["color2"], params["color3"],
                                        params["color3"]], 1), dtype=u.dtype)   # [n, 4, 3]
    return (w @ colours) * shade


def semantic_field(params: dict, x: torch.Tensor):
    """Targets at points x [B, N, 3]: density [B, N] in units of SIGMA_SCALE (distill_faces'), colour
    [B, N, 3] and part weights [B, N, 4] (of the surface point in x's radial direction)."""
    sigma, u = distill_faces.head_density(params, x)
    w = part_weights(params, u)
    return sigma, head_colour(params, u, w).clamp(0, 1), w


def cast_rays(params: dict, pitch: torch.Tensor, yaw: torch.Tensor, img_size: int, fov: float):
    """(hit bool [n, R], u [n, R, 3]): pixel rays of pi-GAN cameras at (pitch, yaw) [n, 1] against each
    head's ellipsoid, and the first hit's point of the unit sphere in the head's frame (as the dataset's
    renderer casts them)."""
    dt = torch.float32
    origins = torch.cat([torch.sin(pitch) * torch.cos(yaw), torch.cos(pitch),
                         torch.sin(pitch) * torch.sin(yaw)], -1).to(dt)          # [n, 3]
    cam2world = create_cam2world_matrix(normalize_vecs(-origins), origins)
    _, _, dirs_cam = get_initial_rays_trig(1, 2, "cpu", fov, (img_size, img_size), 0.5, 1.5)
    dirs = dirs_cam[0].to(dt) @ cam2world[:, :3, :3].transpose(1, 2)              # [n, R, 3]
    rot = torch.as_tensor(params["rotation"], dtype=dt)
    axes = torch.as_tensor(params["axes"], dtype=dt)
    o = (origins[:, None, :] @ rot)[:, 0] / axes                                 # [n, 3] in the unit frame
    d = (dirs @ rot) / axes[:, None]                                             # [n, R, 3]
    a, b = (d * d).sum(-1), 2 * (d * o[:, None]).sum(-1)
    disc = b * b - 4 * a * ((o * o).sum(-1, keepdim=True) - 1)
    t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
    return disc > 0, F.normalize(o[:, None] + t[..., None] * d, dim=-1)


def render_heads(params: dict, pitch, yaw, img_size: int, fov: float, background: float = 1.0):
    """Analytic renders of the heads: (rgb [n, 3, S, S] in [0, 1], labels int64 [n, S, S], 0 where a ray
    misses), one ray per pixel centre; render_shapes / render_face_labels for the dataset's heads."""
    n = len(params["axes"])
    pitch = torch.as_tensor(pitch, dtype=torch.float32).reshape(-1, 1).expand(n, 1)
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1, 1).expand(n, 1)
    hit, u = cast_rays(params, pitch, yaw, img_size, fov)
    w = part_weights(params, u)
    rgb = torch.where(hit[..., None], head_colour(params, u, w), torch.full_like(u, background)).clamp(0, 1)
    labels = torch.where(hit, w.argmax(-1) + 1, torch.zeros_like(hit, dtype=torch.long))
    return (rgb.reshape(n, img_size, img_size, 3).permute(0, 3, 1, 2).contiguous(),
            labels.reshape(n, img_size, img_size))


# ---------------------------------------------------------------------------- the generator
def sample_points(axes: np.ndarray, n: int, extent: float, front: float) -> torch.Tensor:
    """[B, n, 3]: distill_faces' shell and box points, and a share ``front`` of them on the shell of
    the face (eyes and mouth are small: a few per cent of the surface)."""
    k = int(n * front)
    d = F.normalize(torch.randn(len(axes), k, 3) * 0.45 + torch.tensor([0.0, -0.05, 1.0]), dim=-1)
    face = d * (1 + 0.08 * torch.randn(len(axes), k, 1)) * torch.as_tensor(axes, dtype=torch.float32)[:, None]
    return torch.cat([distill_faces.sample_points(axes, n - k, extent), face], 1)


def build(width: int, z_geo_dim: int, z_app_dim: int, grid_channels: int, seed: int):
    """(SemanticGenerator3d, its curriculum: the faces curriculum's camera and marcher)."""
    cur = C.get_curriculum("faces")
    cur.update(model="SemanticSiren", generator="SemanticGenerator3d", hidden_dim=width, map_hidden_dim=width,
               latent_dim=z_geo_dim + z_app_dim, z_geo_dim=z_geo_dim, z_app_dim=z_app_dim,
               num_classes=NUM_CLASSES, dataset="faces", pos_lambda=0)
    torch.manual_seed(seed)
    g = SemanticGenerator3d("SemanticSiren", z_geo_dim=z_geo_dim, z_app_dim=z_app_dim, num_classes=NUM_CLASSES,
                            hidden_dim=width, map_hidden_dim=width, feature_grid_channels=grid_channels,
                            feature_grid_size=32)
    return g, cur


def step_loss(g, z, radius, extent, args, dev):
    """One step's loss (density + colour + semantics) and its three parts."""
    params = head_params(z, g.z_geo_dim, radius)
    x = sample_points(params["axes"], args.points, extent, args.front)
    sigma_t, rgb_t, sem_t = semantic_field(params, x)
    near = (sigma_t > -1).float()[..., None].to(dev)          # on and inside the surface
    x, sigma_t, rgb_t, sem_t = x.to(dev), sigma_t.to(dev), rgb_t.to(dev), sem_t.to(dev)
    f, p = g.siren.mapping_network(z.to(dev))
    dirs = F.normalize(torch.randn_like(x), dim=-1)
    out = g.siren.forward_with_frequencies_phase_shifts(x, f, p, ray_directions=dirs)   # [B, N, 3 + K + 1]
    l_sigma = F.mse_loss(out[..., -1], sigma_t)
    l_rgb = ((out[..., :3] - rgb_t) ** 2 * near).sum() / (3 * near.sum().clamp_min(1))
    # outside: logits to 0 (no class), lightly; the small parts (eyes, mouth) weigh more
    w = near * (1 + args.part_boost * sem_t[..., 2:].sum(-1, keepdim=True)) + args.outside_weight * (1 - near)
    l_sem = ((out[..., 3:3 + NUM_CLASSES] - sem_t * near) ** 2 * w).sum() / (NUM_CLASSES * w.sum())
    return l_sigma + l_rgb + args.semantic_weight * l_sem, (l_sigma.item(), l_rgb.item(), l_sem.item())


def train(g, args, radius, extent, dev):
    """Adam with a cosine schedule; stops early (keeping what it learned) on Ctrl-C. Returns steps done."""
    opt = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    bar = progress(range(1, args.steps + 1), desc="distil", leave=True, mininterval=5)
    t0, done = time.time(), 0
    try:
        for step in bar:
            loss, parts = step_loss(g, torch.randn(args.batch, g.z_dim), radius, extent, args, dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done = step
            if step % 100 == 0 or step == args.steps:
                bar.set_postfix(loss=f"{loss.item():.4f}")
                print(f"step {step}/{args.steps} loss {loss.item():.5f} (sigma {parts[0]:.4f} rgb {parts[1]:.4f} "
                      f"semantic {parts[2]:.4f}) ({time.time() - t0:.0f} s)", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after step {done}: saving what was learned", flush=True)
    return done


# ---------------------------------------------------------------------------- the check
def check(g, cur, radius, heads: int = 8, size: int = 64, yaws_deg=YAWS_DEG, seed: int = 123) -> dict:
    """Renders of ``heads`` random heads at the mean pitch and each yaw (degrees from the mean) against
    the analytic ones: PSNR (dB, images in [-1, 1]) per head, and the IoU per class of
    ``semantic_labels(semantic, opacity)`` against ``render_heads``' labels (pixels of all heads pooled),
    per yaw and over every yaw."""
    z = torch.randn(heads, g.z_dim, generator=torch.Generator().manual_seed(seed))
    params = head_params(z, g.z_geo_dim, radius)
    opts = RenderOptions.from_curriculum(cur, img_size=size, nerf_noise=0.0)
    report = {"heads": heads, "size": size, "seed": seed, "classes": list(FACE_CLASSES), "per_yaw": {}}
    preds, truths, psnrs = [], [], []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)                         # the fine samples' uniforms: a reproducible report
        f, p = g.siren.mapping_network(z)
        for deg in yaws_deg:
            yaw = opts.h_mean + math.radians(deg)
            rgb_t, lab_t = render_heads(params, opts.v_mean, yaw, size, opts.fov)
            out = g.render(frequencies=f, phase_shifts=p, pitch=opts.v_mean, yaw=yaw, jitter=False, options=opts)
            mse = ((out["pixels"] - (rgb_t * 2 - 1)) ** 2).mean((1, 2, 3))
            psnr = (10 * torch.log10(4 / mse)).tolist()
            lab = semantic_labels(out["semantic"], out["opacity"])
            miou, per = mean_iou(lab, lab_t, len(FACE_CLASSES))
            report["per_yaw"][str(deg)] = {"psnr": psnr, "miou": miou, "iou": _named(per)}
            preds.append(lab)
            truths.append(lab_t)
            psnrs += psnr
    miou, per = mean_iou(torch.cat(preds), torch.cat(truths), len(FACE_CLASSES))
    per_yaw = report["per_yaw"].values()
    report["all"] = {"psnr_mean": float(np.mean(psnrs)), "psnr_min": float(np.min(psnrs)), "miou": miou,
                     "iou": _named(per),
                     "iou_range_over_yaws": {c: [min(v["iou"][c] for v in per_yaw), max(v["iou"][c] for v in per_yaw)]
                                             for c in FACE_CLASSES}}
    return report


def _named(per_class) -> dict:
    return {c: float(v) for c, v in zip(FACE_CLASSES, per_class.tolist())}


def print_report(report: dict):
    cols = "  ".join(f"{c:>10}" for c in FACE_CLASSES)
    print(f"{report['heads']} heads, {report['size']}x{report['size']}, mean pitch; PSNR vs the analytic "
          f"renders, IoU of the semantic maps vs the analytic labels", flush=True)
    print(f"{'yaw':>6}  {'PSNR':>6}  {'mIoU':>6}  {cols}")
    for deg, r in report["per_yaw"].items():
        iou = "  ".join(f"{r['iou'][c]:10.3f}" for c in FACE_CLASSES)
        print(f"{deg:>6}  {np.mean(r['psnr']):6.2f}  {r['miou']:6.3f}  {iou}")
    a = report["all"]
    iou = "  ".join(f"{a['iou'][c]:10.3f}" for c in FACE_CLASSES)
    print(f"{'all':>6}  {a['psnr_mean']:6.2f}  {a['miou']:6.3f}  {iou}   (PSNR min {a['psnr_min']:.2f})", flush=True)


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="checkpoint to write (with --steps 0: to check)")
    ap.add_argument("--steps", type=int, default=3000, help="training steps (0: check the --out checkpoint)")
    ap.add_argument("--batch", type=int, default=8, help="heads per step")
    ap.add_argument("--points", type=int, default=4096, help="points per head per step")
    ap.add_argument("--width", "--hidden-dim", dest="width", type=int, default=64,
                    help="hidden width of the siren and of the mapping networks")
    ap.add_argument("--z-geo-dim", type=int, default=32)
    ap.add_argument("--z-app-dim", type=int, default=32)
    ap.add_argument("--grid-channels", type=int, default=0, help="channels of the feature grid (0: none)")
    ap.add_argument("--front", type=float, default=0.25, help="share of the points on the face's shell")
    ap.add_argument("--extent", type=float, default=0.21,
                    help="half side of the box of uniform points; 0.21 holds every ray sample of the camera "
                         "(rays 0.88..1.12 from a camera at distance 1, fov 12 degrees) at any yaw")
    ap.add_argument("--semantic-weight", type=float, default=1.0)
    ap.add_argument("--outside-weight", type=float, default=0.1,
                    help="weight of the 'no class' target outside the head, relative to inside")
    ap.add_argument("--part-boost", type=float, default=3.0,
                    help="extra semantic weight of eye and mouth points (they cover a few per cent of the head)")
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="where the generator trains (targets are drawn on the CPU)")
    ap.add_argument("--check", action="store_true", help="then report PSNR and per-class IoU across yaws")
    ap.add_argument("--check-heads", type=int, default=8)
    ap.add_argument("--check-size", type=int, default=64)
    ap.add_argument("--json", default=None, help="write the check's report here")
    args = ap.parse_args(argv)
    if args.steps < 0 or (args.steps == 0 and not args.check):
        ap.error("--steps must be > 0, or 0 with --check (check an existing checkpoint)")
    if args.z_geo_dim < GEO_UNITS or args.z_app_dim < APP_UNITS:
        ap.error(f"--z-geo-dim must be >= {GEO_UNITS} and --z-app-dim >= {APP_UNITS} (the head's numbers)")
    if not 0 <= args.front < 1:
        ap.error(f"--front must lie in [0, 1), got {args.front}")
    return args


def _load(path):
    ckpt = load_checkpoint(path)
    if ckpt.get("distilled", {}).get("field") != "semantic-heads":
        raise SystemExit(f"{path} is not a checkpoint of this script (no distilled.field 'semantic-heads')")
    return load_generator(path), C.int_keys(ckpt["config"])


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cam = default_camera()
    radius = distill_faces.head_radius(cam)
    if args.steps:
        dev = torch.device(args.device)
        g, cur = build(args.width, args.z_geo_dim, args.z_app_dim, args.grid_channels, args.seed)
        g.to(dev).train()
        done = train(g, args, radius, args.extent, dev)
        distill_faces.fold_sigma_scale(g.siren.final_layer)
        g.cpu().eval()
        g.generate_avg_frequencies()
        field = {"field": "semantic-heads", "sigma_scale": distill_faces.SIGMA_SCALE, "steps": done,
                 "geo_units": GEO_UNITS, "app_units": APP_UNITS, "mouth_scale_range": list(MOUTH_SCALE_RANGE),
                 "hairline_range": list(HAIRLINE_RANGE), "radius": radius}
        # no average to keep: the final weights serve as the EMA ones too (loaders prefer those)
        save_checkpoint(args.out, generator=g, ema=g.state_dict(), config=json.loads(C.to_json(cur)),
                        extra={"step": done, "distilled": field})
        print(f"wrote {args.out}", flush=True)
    else:
        g, cur = _load(args.out)
    if args.check:
        t0 = time.time()
        report = check(g, cur, radius, heads=args.check_heads, size=args.check_size)
        report["seconds"] = round(time.time() - t0, 1)
        print_report(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
            print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
