"""Rendering from a trained generator: sample grids, multi-view grids, depth maps, videos.

Library functions (used by training for its sample grids, and by ``pigan render``) take a generator
and a ``RenderOptions`` (``RenderOptions.from_curriculum(cur)``): ``render_images``, ``render_grid``,
``render_multiview``, ``yaw_sweep``, ``render_video``, ``render_interpolation``, ``write_samples``; for a
semantic generator (one with ``num_classes``, FENeRF's) the grids and videos come with their semantic
maps (``semantic=True``) and ``render_swap`` crosses shape codes with texture codes.
Large images (or many samples per ray) are marched in chunks of rays, so memory stays bounded by
``RENDER_SAMPLES`` samples whatever the resolution. Latents are truncated toward
the average mapping output (psi), computed once per call under a fixed seed, so the same seed renders
the same identities at every pose.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from pigan import imaging, ops
from pigan.common import check_output_dir, writing
from pigan.common import progress as progress_bar
from pigan.model import skipping
from pigan.model.render_options import RenderOptions

__all__ = ["RenderOptions", "latents", "render_images", "render_grid", "render_multiview", "yaw_sweep",
           "render_video", "render_interpolation", "render_swap", "video_poses", "depth_images", "describe_depth",
           "is_semantic", "write_samples"]

# Points per siren call when rendering images to look at (bounds memory at large resolutions).
RENDER_CHUNK = 65536
# Coarse samples (rays x samples per ray) marched at once; an image with more is marched in chunks of
# rays. Each chunk holds a few tensors of this many samples x 4 channels (x2 with fine samples).
RENDER_SAMPLES = 1 << 20
# Depth images: pixels less opaque than this are background; the automatic range spans these
# percentiles of the foreground's surface depth (a few stray pixels do not stretch it).
DEPTH_OPACITY = 0.5
DEPTH_PERCENTILES = (1.0, 99.0)


def is_semantic(generator) -> bool:
    """Whether ``generator`` renders semantic maps beside its images (FENeRF's ``SemanticGenerator3d``)."""
    return bool(getattr(generator, "num_classes", 0))


@torch.no_grad()
def latents(generator, num: int, seed: int = 0, psi: float = 0.7, z: torch.Tensor | None = None):
    """(frequencies, phase_shifts) [num, 9H] of z ~ N(0, I) drawn from ``seed`` (or given z), pulled
    toward the average over 10 000 z by psi. Uses a private generator: the global RNG is untouched."""
    dev = next(generator.parameters()).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        if z is None:
            z = torch.randn(num, generator.z_dim, device=dev)
        generator.generate_avg_frequencies()
        return generator.truncate(z.to(dev), psi)


@torch.no_grad()
def render_images(generator, frequencies, phase_shifts, pitch, yaw, options=None, img_size=None,
                  num_steps=None, seed=0, progress=False, desc="render", with_opacity=False, tally=None,
                  with_semantic=False):
    """One image per latent at the given pose(s): pitch / yaw floats or [N] tensors.

    Returns (pixels [N, 3, H, W] in [-1, 1], depth [N, H, W]) on the CPU, and with ``with_opacity``
    the accumulated opacity [N, H, W] (sum of the compositing weights) third, and with ``with_semantic``
    (a generator with a semantic field, e.g. ``SemanticGenerator3d``) its composited semantic planes
    [N, K, H, W] (x2-1, as ``render``'s ``semantic``) last. Renders one image at a
    time (siren in chunks of ``max_batch_size`` points), without jitter or density noise. With
    ``options.skip_empty`` empty space is skipped (one proposal per image) and ``tally`` (a
    ``pigan.model.skipping.SkipTally``), when given, adds up what that saved.
    """
    o = (options or RenderOptions()).replace(nerf_noise=0.0)
    o = RenderOptions.from_metadata(base=o, img_size=img_size, num_steps=num_steps,
                                    max_batch_size=o.max_batch_size or RENDER_CHUNK)
    n = frequencies.shape[0]
    pitch = torch.as_tensor(pitch, dtype=torch.float32).reshape(-1).expand(n)
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1).expand(n)
    was_training = generator.training
    generator.eval()
    if with_semantic and not getattr(generator, "num_classes", 0):
        raise ValueError(f"with_semantic needs a generator with a semantic field, got {type(generator).__name__}")
    pixels, depths, opacities, semantics = [], [], [], []
    dev = frequencies.device
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)                   # importance-sampling uniforms: reproducible
            for i in progress_bar(range(n), progress, desc):
                t0 = time.perf_counter()
                if o.img_size ** 2 * o.num_steps > RENDER_SAMPLES:
                    image, d, a, stats = _render_in_ray_chunks(generator, frequencies[i:i + 1], phase_shifts[i:i + 1],
                                                               pitch[i:i + 1].to(dev), yaw[i:i + 1].to(dev), o,
                                                               with_opacity=True)
                    px, sem = image[:, :3], image[:, 3:]
                else:
                    out = generator.render(
                        frequencies=frequencies[i:i + 1], phase_shifts=phase_shifts[i:i + 1],
                        pitch=pitch[i:i + 1].to(dev), yaw=yaw[i:i + 1].to(dev), options=o, jitter=False)
                    px, d, stats, sem = out["pixels"], out["depth"], out.get("skipping"), out.get("semantic")
                    a = out["weights"].sum((-2, -1)).reshape(d.shape)             # [1, H, W]
                if tally is not None and stats is not None:
                    tally.add(stats, o.img_size ** 2, seconds=time.perf_counter() - t0)
                pixels.append(px.float().cpu())
                depths.append(d.float().cpu())
                opacities.append(a.float().cpu())
                if with_semantic:
                    semantics.append(sem.float().cpu())
    finally:
        generator.train(was_training)
    result = (torch.cat(pixels), torch.cat(depths)) + ((torch.cat(opacities),) if with_opacity else ())
    return result + ((torch.cat(semantics),) if with_semantic else ())


def _render_in_ray_chunks(generator, frequencies, phase_shifts, pitch, yaw, o: RenderOptions,
                          max_samples: int | None = None, with_opacity: bool = False):
    """One image [1, C, H, W] (every composited channel: rgb, then a semantic field's planes; x2-1) and
    depth [1, H, W] (and opacity [1, H, W]), then the skipping statistics
    (None unless ``o.skip_empty``), marched ``max_samples // num_steps`` rays at a time; the rays are
    those of ``ops.get_initial_rays_trig`` (unjittered), built per chunk. With ``o.skip_empty`` one
    proposal over the whole view frustum serves every chunk."""
    from pigan.model.generators import cam2world_from_angles

    dev = frequencies.device
    size, steps = o.img_size, o.num_steps
    _, _, dirs = ops.get_initial_rays_trig(1, 1, dev, o.fov, (size, size), o.ray_start, o.ray_end)  # [1, R, 3]
    z_axis = torch.linspace(o.ray_start, o.ray_end, steps, device=dev).reshape(1, 1, steps, 1)
    cam2world = cam2world_from_angles(pitch.reshape(1, 1), yaw.reshape(1, 1))
    rays = dirs.shape[1]
    chunk = max(1, (max_samples or RENDER_SAMPLES) // steps)
    image = None                                                              # [R, C], C known after a chunk
    depth = torch.empty(rays, device=dev)
    opacity = torch.empty(rays, device=dev)
    proposals, stats = None, None
    if o.skip_empty:
        ends = torch.cat([dirs * o.ray_start, dirs * o.ray_end], 1)           # [1, 2R, 3]: the frustum's extent
        lo, hi = skipping.frustum_box(ends, torch.cat([dirs, dirs], 1), cam2world)
        cells = skipping.grid_size_for(rays * steps * (2 if o.hierarchical_sample else 1))
        proposals = [skipping.build_proposal(generator, frequencies, phase_shifts, lo, hi, o, cells)]
        stats = {"samples_per_ray": 0.0, "exact_samples_per_ray": 0, "proposal_queries": proposals[0].queries,
                 "proposal_seconds": proposals[0].seconds, "fallback": 0}
    for head in range(0, rays, chunk):
        d = dirs[:, head:head + chunk]                                        # [1, r, 3]
        z = z_axis.expand(1, d.shape[1], steps, 1)                             # [1, r, S, 1]
        c_rgb, c_depth, c_weights = generator.march(frequencies, phase_shifts, d.unsqueeze(2) * z, z, d, cam2world, o,
                                                    proposals=proposals)
        if stats is not None:
            part = generator.skip_stats
            stats["samples_per_ray"] += part["samples_per_ray"] * d.shape[1] / rays
            stats["exact_samples_per_ray"] = part["exact_samples_per_ray"]
            stats["fallback"] = max(stats["fallback"], part["fallback"])      # this image, in any chunk
        if image is None:
            image = torch.empty(rays, c_rgb.shape[-1], device=dev)
        image[head:head + chunk] = c_rgb[0].float()
        depth[head:head + chunk] = c_depth[0, :, 0].float()
        opacity[head:head + chunk] = c_weights[0].sum((-2, -1)).float()
    pixels = image.reshape(1, size, size, -1).permute(0, 3, 1, 2) * 2 - 1
    if with_opacity:
        return pixels, depth.reshape(1, size, size), opacity.reshape(1, size, size), stats
    return pixels, depth.reshape(1, size, size), stats


def render_grid(generator, num=16, seed=0, psi=0.7, options=None, **kw):
    """Samples at the mean pose: (pixels [num, 3, H, W], depth [num, H, W]) (and the opacity
    [num, H, W] with ``with_opacity=True``, as ``render_images``)."""
    o = options or RenderOptions()
    f, p = latents(generator, num, seed, psi)
    return render_images(generator, f, p, o.pitch, o.yaw, o, seed=seed, **kw)


def _spreads(o: RenderOptions):
    """Yaw and pitch half-ranges for sweeps: the training distribution's spread, capped."""
    h, v = float(o.h_stddev), float(o.v_stddev)
    if o.sample_dist in ("uniform", "spherical_uniform"):
        return min(h, 1.2), min(v, 0.6)
    return min(2 * h, 1.2), min(2 * v, 0.6)


def _sweep(mean, half, n):
    return [mean + half * (2 * i / max(n - 1, 1) - 1) for i in range(n)] if n > 1 else [mean]


def yaw_sweep(generator, frequencies, phase_shifts, options=None, views=7, **kw):
    """Each latent at ``views`` yaws across the training spread, mean pitch: pixels
    [N * views, 3, H, W], latent-major (one row per latent in a grid of ``views`` columns)."""
    o = options or RenderOptions()
    hs, _ = _spreads(o)
    rows = [render_images(generator, frequencies, phase_shifts, o.pitch, y, o, **kw)[0]
            for y in _sweep(o.yaw, hs, views)]                                    # views x [N, 3, H, W]
    return torch.stack(rows, 1).flatten(0, 1)


def render_multiview(generator, num=4, views=5, pitches=3, seed=0, psi=0.7, options=None, semantic=False, **kw):
    """Each identity under a yaw x pitch sweep: pixels [num, pitches * views, 3, H, W] (pitch-major);
    with ``semantic`` (a semantic generator), (pixels, their semantic maps as colour images, same shape)."""
    o = options or RenderOptions()
    hs, vs = _spreads(o)
    f, p = latents(generator, num, seed, psi)
    out, maps = [], []
    for pi in _sweep(o.pitch, vs, pitches):
        for ya in _sweep(o.yaw, hs, views):
            px, *rest = render_images(generator, f, p, pi, ya, o, seed=seed, with_opacity=semantic,
                                      with_semantic=semantic, **kw)
            out.append(px)
            if semantic:
                maps.append(imaging.semantic_images(rest[2], rest[1]))
    return (torch.stack(out, 1), torch.stack(maps, 1)) if semantic else torch.stack(out, 1)


def video_poses(options=None, frames=48, mode="auto"):
    """(pitches, yaws) lists along a trajectory: 'orbit' (full yaw circle, for CARLA-like ranges) or
    'front' (an ellipse around the mean pose within the training spread)."""
    o = options or RenderOptions()
    if mode == "auto":
        mode = "orbit" if float(o.h_stddev) >= 1.0 else "front"
    if mode not in ("orbit", "front"):
        raise ValueError(f"mode must be 'orbit', 'front' or 'auto', got {mode!r}")
    hs, vs = _spreads(o)
    ts = [i / frames for i in range(frames)]
    if mode == "orbit":
        return [o.pitch] * frames, [o.yaw + 2 * math.pi * t for t in ts]
    return ([o.pitch + 0.5 * vs * math.cos(2 * math.pi * t) for t in ts],
            [o.yaw + 0.5 * hs * math.sin(2 * math.pi * t) for t in ts])


def depth_images(depths, opacities, options=None, depth_range="auto"):
    """Colour depth maps (lists of [N, H, W] depths and opacities) with ONE range for all of them, so
    a video does not flicker: near white, far black, background (opacity under ``DEPTH_OPACITY``) in
    ``imaging.DEPTH_BACKGROUND``. ``depth_range``: "auto" (the ``DEPTH_PERCENTILES`` of the surface
    depth of every foreground pixel; [ray_start, ray_end] when none is foreground), "rays"
    ([ray_start, ray_end]) or (near, far). Returns ([N, 3, H, W] per map, info: near, far, how the
    range was chosen, opacity threshold, foreground fraction)."""
    o = options or RenderOptions()
    if isinstance(depth_range, str):
        if depth_range not in ("auto", "rays"):
            raise ValueError(f"depth_range must be 'auto', 'rays' or (near, far), got {depth_range!r}")
        found = None
        if depth_range == "auto":
            found = imaging.depth_range(depths, opacities, DEPTH_OPACITY, DEPTH_PERCENTILES)
        if found is None:
            (near, far), how = (o.ray_start, o.ray_end), "ray_start to ray_end"
            if depth_range == "auto":
                how += " (no foreground pixel)"
        else:
            (near, far), how = found, "foreground depth, percentiles {:g}-{:g}".format(*DEPTH_PERCENTILES)
    else:
        near, far = (float(v) for v in depth_range)
        if not near < far:
            raise ValueError(f"depth_range (near, far) needs near < far, got {depth_range}")
        how = "given"
    foreground = sum(int((a >= DEPTH_OPACITY).sum()) for a in opacities)
    total = sum(a.numel() for a in opacities)
    info = {"near": float(near), "far": float(far), "range": how, "opacity_threshold": DEPTH_OPACITY,
            "foreground_fraction": foreground / max(total, 1)}
    return [imaging.depth_to_rgb(d, near, far, a, DEPTH_OPACITY) for d, a in zip(depths, opacities)], info


def describe_depth(info: dict) -> str:
    """One line: the range of a depth image or video."""
    return (f"{info['near']:.4f} (white) to {info['far']:.4f} (black), {info['range']}; "
            f"{100 * info['foreground_fraction']:.0f}% of pixels foreground (opacity >= "
            f"{info['opacity_threshold']:g}), the rest in the background colour")


def render_video(generator, num=4, frames=48, mode="auto", seed=0, psi=0.7, options=None,
                 progress=False, depth=False, depth_range="auto", semantic=False, **kw):
    """Frames (list of [3, H', W'] grids in [0, 1], one tile per identity) along the trajectory;
    with ``depth``, (frames, depth frames, depth info): depth coloured by ``depth_images`` with one
    range for the whole video. With ``semantic`` (a semantic generator) the semantic maps' frames (as
    the frames, coloured) come last: (frames, semantic frames) or (frames, depth frames, info, semantic
    frames)."""
    o = options or RenderOptions()
    pitches, yaws = video_poses(o, frames, mode)
    f, p = latents(generator, num, seed, psi)
    out, depths, opacities, maps = [], [], [], []
    nrow = int(math.ceil(math.sqrt(num)))
    for pi, ya in progress_bar(list(zip(pitches, yaws)), progress, "video"):
        px, d, a, *sem = render_images(generator, f, p, pi, ya, o, seed=seed, with_opacity=True,
                                       with_semantic=semantic, **kw)
        out.append(imaging.make_grid(imaging.to_unit(px), nrow=nrow))
        depths.append(d)
        opacities.append(a)
        if semantic:
            maps.append(imaging.make_grid(imaging.to_unit(imaging.semantic_images(sem[0], a)), nrow=nrow))
    extra = (maps,) if semantic else ()
    if not depth:
        return (out, *extra) if semantic else out
    coloured, info = depth_images(depths, opacities, o, depth_range)
    return (out, [imaging.make_grid(c, nrow=nrow) for c in coloured], info, *extra)


def render_interpolation(generator, seeds, frames_per_seed=24, psi=0.7, options=None, mode="auto",
                         progress=False, depth_range="auto", semantic=False, **kw):
    """Latent-interpolation video: the truncated frequencies and phase shifts blend linearly from each
    seed's to the next one's (the last back to the first, so the video loops) while the camera moves
    along ``video_poses``. Returns (frames [3, H, W] in [0, 1], depth frames, depth info), the depth
    coloured by ``depth_images`` with one range for the whole video; with ``semantic`` (a semantic
    generator) the semantic maps' frames fourth."""
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise ValueError(f"interpolation needs at least 2 seeds, got {seeds}")
    if frames_per_seed < 1:
        raise ValueError(f"frames_per_seed must be positive, got {frames_per_seed}")
    o = options or RenderOptions()
    dev = next(generator.parameters()).device
    z = torch.cat([torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    f, p = latents(generator, len(seeds), seeds[0], psi, z=z.to(dev))
    total = frames_per_seed * len(seeds)
    pitches, yaws = video_poses(o, total, mode)
    frames, depths, opacities, maps = [], [], [], []
    for t in progress_bar(range(total), progress, "interpolation"):
        k, a = divmod(t, frames_per_seed)
        a /= frames_per_seed
        j = (k + 1) % len(seeds)
        fi, pi_ = torch.lerp(f[k:k + 1], f[j:j + 1], a), torch.lerp(p[k:k + 1], p[j:j + 1], a)
        px, d, a, *sem = render_images(generator, fi, pi_, pitches[t], yaws[t], o, seed=seeds[0],
                                       with_opacity=True, with_semantic=semantic, **kw)
        frames.append(imaging.to_unit(px[0]))
        depths.append(d)
        opacities.append(a)
        if semantic:
            maps.append(imaging.to_unit(imaging.semantic_images(sem[0], a)[0]))
    coloured, info = depth_images(depths, opacities, o, depth_range)
    return (frames, [c[0] for c in coloured], info) + ((maps,) if semantic else ())


def render_swap(generator, num=4, seed=0, psi=0.7, options=None, **kw) -> dict:
    """Shape x texture grid of a semantic generator at the mean pose: cell (i, j) (index i * num + j, row
    major) joins the geometry columns of identity i's truncated modulations with the appearance columns
    of identity j's (the identities of ``latents(generator, num, seed, psi)``, so the diagonal is the
    sample grid's). Rows share a shape code (z_geo), columns a texture code (z_app). Every column is
    rendered with the same importance-sampling draws, so a row's depth, opacity and semantic planes are
    identical. Returns {"pixels" [num^2, 3, H, W], "depth", "opacity" [num^2, H, W], "semantic"
    [num^2, K, H, W], "frequencies", "phase_shifts" [num^2, D]}."""
    if not is_semantic(generator):
        raise ValueError(f"a shape x texture grid needs a semantic generator (with geometry and appearance codes), "
                         f"got {type(generator).__name__}")
    o = options or RenderOptions()
    f, p = latents(generator, num, seed, psi)
    (f_geo, f_app), (p_geo, p_app) = generator.split_modulations(f), generator.split_modulations(p)
    columns = []
    for j in range(num):
        fj = generator.join_modulations(f_geo, f_app[j:j + 1].expand(num, -1))       # [num, D]: rows i, texture j
        pj = generator.join_modulations(p_geo, p_app[j:j + 1].expand(num, -1))
        out = render_images(generator, fj, pj, o.pitch, o.yaw, o, seed=seed, with_opacity=True, with_semantic=True,
                            **kw)
        columns.append(out + (fj.cpu(), pj.cpu()))
    names = ("pixels", "depth", "opacity", "semantic", "frequencies", "phase_shifts")
    return {name: torch.stack([c[k] for c in columns], 1).flatten(0, 1) for k, name in enumerate(names)}


def _write_json(obj, path) -> Path:
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path


def _save_video(out_dir, stem, frames, paths, key):
    with writing(out_dir / f"{stem}.gif"):
        paths[key] = imaging.save_gif(frames, out_dir / f"{stem}.gif")
    with writing(out_dir / f"{stem}.mp4"):
        mp4 = imaging.save_mp4(frames, out_dir / f"{stem}.mp4")
    if mp4 is not None:
        paths[f"{key}_mp4"] = mp4


def write_samples(generator, out_dir, num=16, seed=0, psi=0.7, options=None, identities=4, views=5,
                  pitches=3, video_frames=0, video_mode="auto", progress=False, depth_video=False,
                  interpolate=None, frames_per_seed=24, depth_range="auto", report=None, swap=0, **kw):
    """Write samples.png, depth.png, multiview.png (identities x yaw sweep at the mean pitch),
    multiview_id<k>.png (pitch x yaw grid per identity); when video_frames > 0, video.gif (and
    video.mp4 when imageio-ffmpeg is installed), with ``depth_video`` also video_depth.gif; with
    ``interpolate`` (a list of seeds) interpolation.gif and interpolation_depth.gif (and .mp4).
    Each depth image or video is coloured with one range (``depth_images``, ``depth_range``) written
    next to it as <name>.json and passed to ``report`` (e.g. print) as one line.

    A semantic generator's images and videos get their semantic maps beside them, named
    <name>_semantic.png / .gif / .mp4 (samples, multiview, multiview_id<k>, video, interpolation), and
    ``swap`` > 0 writes swap.png and swap_semantic.png, the ``render_swap`` grid of ``swap`` x ``swap``
    (rows share a shape code, columns a texture code; a ValueError for any other generator).
    Returns {name: path}."""
    semantic = is_semantic(generator)
    if swap and not semantic:
        raise ValueError(f"swap needs a semantic generator (geometry and appearance codes), got "
                         f"{type(generator).__name__}")
    out_dir = check_output_dir(out_dir)
    o = options or RenderOptions()
    paths = {}

    def save(name, fn, *args, **kwargs):
        with writing(out_dir / name):
            return fn(*args, out_dir / name, **kwargs)

    def save_range(stem, info):
        paths[f"{stem}_range"] = save(f"{stem}.json", _write_json, info)
        if report is not None:
            report(f"{stem} range: {describe_depth(info)}")

    def grid(stem, images, nrow):
        paths[stem] = save(f"{stem}.png", imaging.save_grid, images, nrow=nrow)

    px, depth, opacity, *sem = render_grid(generator, num, seed, psi, o, progress=progress, desc="samples",
                                           with_opacity=True, with_semantic=semantic, **kw)
    nrow = int(math.ceil(math.sqrt(num)))
    grid("samples", px, nrow)
    if semantic:
        grid("samples_semantic", imaging.semantic_images(sem[0], opacity), nrow)
    (coloured,), info = depth_images([depth], [opacity], o, depth_range)
    paths["depth"] = save("depth.png", imaging.save_png, imaging.make_grid(coloured, nrow=nrow))
    save_range("depth", info)
    if identities > 0 and views > 0:
        mv = render_multiview(generator, identities, views, pitches, seed, psi, o, progress=progress,
                              desc="multiview", semantic=semantic, **kw)       # [I, P*V, 3, H, W] (x2)
        for suffix, m in zip(("", "_semantic"), mv if semantic else (mv,)):
            mid = (m.shape[1] // views) // 2                             # the mean-pitch row
            grid(f"multiview{suffix}", m[:, mid * views:(mid + 1) * views].flatten(0, 1), views)
            for k in range(identities):
                grid(f"multiview_id{k}{suffix}", m[k], views)
    if video_frames > 0:
        frames = render_video(generator, min(identities or 1, num), video_frames, video_mode, seed, psi,
                              o, progress=progress, depth=depth_video, depth_range=depth_range,
                              semantic=semantic, **kw)
        if semantic:
            *frames, semantic_frames = frames
            frames = frames[0] if len(frames) == 1 else tuple(frames)
            _save_video(out_dir, "video_semantic", semantic_frames, paths, "semantic_gif")
        if depth_video:
            frames, depth_frames, info = frames
            _save_video(out_dir, "video_depth", depth_frames, paths, "depth_gif")
            save_range("video_depth", info)
        paths["gif"] = save("video.gif", imaging.save_gif, frames)
        with writing(out_dir / "video.mp4"):
            mp4 = imaging.save_mp4(frames, out_dir / "video.mp4")
        if mp4 is not None:
            paths["mp4"] = mp4
    if interpolate:
        frames, depth_frames, info, *semantic_frames = render_interpolation(
            generator, interpolate, frames_per_seed, psi, o, video_mode, progress=progress,
            depth_range=depth_range, semantic=semantic, **kw)
        _save_video(out_dir, "interpolation", frames, paths, "interpolation")
        _save_video(out_dir, "interpolation_depth", depth_frames, paths, "interpolation_depth")
        save_range("interpolation_depth", info)
        if semantic:
            _save_video(out_dir, "interpolation_semantic", semantic_frames[0], paths, "interpolation_semantic")
    if swap:
        cells = render_swap(generator, swap, seed, psi, o, progress=progress, desc="swap", **kw)
        grid("swap", cells["pixels"], swap)
        grid("swap_semantic", imaging.semantic_images(cells["semantic"], cells["opacity"]), swap)
    return paths
