"""Rendering one image to look at, exact vs skipping empty space, side by side per group.

``test_render_image``: `pigan render`'s path (``pigan.render.render_images``: one latent, the mean
pose offset by 0.3 rad of yaw, no jitter) at 128x128 and 256x256 with 24 coarse + 24 fine samples
(pi-GAN's render setting for CelebA-style models), "exact" (every sample) vs "skip" (the default of
`pigan render`: a per-latent proposal, empty space skipped, rays stopped once opaque). The
checkpoint comes from ``PIGAN_BENCH_RENDER_CHECKPOINT`` (e.g. scripts/distill_faces.py's heads);
without it the cases skip. extra_info: samples evaluated per ray and the proposal's seconds.

``test_render_batch`` (gpu_check): B=8 latents at 256x256 in one ``generator.render`` call.

    PIGAN_BENCH_RENDER_CHECKPOINT=runs/faces_distilled.pt pytest benchmarks -k render --benchmark-only
"""
import os

import pytest
import torch

from conftest import TINY, check_devices, run_case, size
from pigan import render
from pigan.checkpoints import load_for_render
from pigan.model.render_options import RenderOptions
from pigan.model.skipping import SkipTally

CHECKPOINT = os.environ.get("PIGAN_BENCH_RENDER_CHECKPOINT")


@pytest.mark.parametrize("px", [128, 256])
@pytest.mark.parametrize("kind", ["exact", "skip"])
def test_render_image(benchmark, kind, px):
    if not CHECKPOINT:
        pytest.skip("set PIGAN_BENCH_RENDER_CHECKPOINT to a checkpoint (e.g. scripts/distill_faces.py's)")
    if TINY:
        pytest.skip("CPU table only (a tiny rehearsal runs test_render_batch)")
    benchmark.group = f"render one image cpu {px}x{px} S=24+24 {os.path.basename(CHECKPOINT)}"
    generator, config = load_for_render(CHECKPOINT)
    o = RenderOptions.from_curriculum(config, img_size=px, num_steps=24).replace(skip_empty=kind == "skip")
    f, p = render.latents(generator, 1, seed=3)
    tallies = []

    def one():
        tally = SkipTally()
        out = render.render_images(generator, f, p, o.pitch, o.yaw + 0.3, o, tally=tally)
        tallies.append(tally)
        return out

    run_case(benchmark, one, "cpu", kind=kind, ours=kind == "skip", rounds=3, size=px,
             checkpoint=os.path.basename(CHECKPOINT))
    t = tallies[-1]
    if t.rays:
        benchmark.extra_info.update(samples_per_ray=round(t.evaluations / t.rays, 2),
                                    exact_samples_per_ray=t.exact / t.rays,
                                    proposal_s=round(t.proposal_seconds, 4), fallback=t.fallback)
    else:
        benchmark.extra_info.update(samples_per_ray=48, exact_samples_per_ray=48)
    assert torch.isfinite(one()[0]).all()


@pytest.mark.parametrize("device", check_devices())
@pytest.mark.parametrize("kind", ["exact", "skip"])
def test_render_batch(benchmark, kind, device):
    """gpu_check's rows: B=8 latents at 256x256, 24+24 samples, one ``generator.render`` call, exact vs
    skipping, on the checkpoint of PIGAN_BENCH_RENDER_CHECKPOINT (gpu_check distils one first)."""
    if not CHECKPOINT:
        pytest.skip("set PIGAN_BENCH_RENDER_CHECKPOINT to a checkpoint (e.g. scripts/distill_faces.py's)")
    size_px = size(device, cpu=256, cuda=256, tiny=16)
    batch = 2 if TINY else 8
    benchmark.group = f"render B={batch} {device} {size_px}x{size_px} S=24+24 {os.path.basename(CHECKPOINT)}"
    generator, config = load_for_render(CHECKPOINT, device)
    o = RenderOptions.from_curriculum(config, img_size=size_px, num_steps=24).replace(skip_empty=kind == "skip")
    f, p = render.latents(generator, batch, seed=3)

    def one():
        with torch.no_grad():
            return generator.render(frequencies=f, phase_shifts=p, pitch=o.pitch, yaw=o.yaw + 0.3, options=o,
                                    jitter=False)

    run_case(benchmark, one, device, kind=kind, ours=kind == "skip", rounds=3, size=size_px, B=batch,
             checkpoint=os.path.basename(CHECKPOINT))
    stats = one().get("skipping")
    if stats is not None:
        benchmark.extra_info.update(samples_per_ray=round(stats["samples_per_ray"], 2),
                                    exact_samples_per_ray=stats["exact_samples_per_ray"],
                                    fallback=stats["fallback"])
