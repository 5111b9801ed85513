"""Rendering one image to look at, exact vs skipping empty space, side by side per group.

``test_render_image``: `pigan render`'s path (``pigan.render.render_images``: one latent, the mean
pose offset by 0.3 rad of yaw, no jitter) at 128x128 and 256x256 with 24 coarse + 24 fine samples
(pi-GAN's render setting for CelebA-style models), "exact" (every sample) vs "skip" (the default of
`pigan render`: a per-latent proposal, empty space skipped, rays stopped once opaque). The
checkpoint comes from ``PIGAN_BENCH_RENDER_CHECKPOINT`` (e.g. scripts/distill_faces.py's heads);
without it the cases skip. extra_info: samples evaluated per ray and the proposal's seconds.

    PIGAN_BENCH_RENDER_CHECKPOINT=runs/faces_distilled.pt pytest benchmarks -k render --benchmark-only
"""
import os

import pytest
import torch

from conftest import TINY, run_case
from pigan import render
from pigan.checkpoints import load_for_render
from pigan.model.render_options import RenderOptions
from pigan.model.skipping import SkipTally

CHECKPOINT = os.environ.get("PIGAN_BENCH_RENDER_CHECKPOINT")


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("kind", ["exact", "skip"])
def test_render_image(benchmark, kind, size):
    if not CHECKPOINT:
        pytest.skip("set PIGAN_BENCH_RENDER_CHECKPOINT to a checkpoint (e.g. scripts/distill_faces.py's)")
    if TINY:
        size = 16
    benchmark.group = f"render one image cpu {size}x{size} S=24+24 {os.path.basename(CHECKPOINT)}"
    generator, config = load_for_render(CHECKPOINT)
    o = RenderOptions.from_curriculum(config, img_size=size, num_steps=24).replace(skip_empty=kind == "skip")
    f, p = render.latents(generator, 1, seed=3)
    tallies = []

    def one():
        tally = SkipTally()
        out = render.render_images(generator, f, p, o.pitch, o.yaw + 0.3, o, tally=tally)
        tallies.append(tally)
        return out

    run_case(benchmark, one, "cpu", kind=kind, ours=kind == "skip", rounds=3, size=size,
             checkpoint=os.path.basename(CHECKPOINT))
    t = tallies[-1]
    if t.rays:
        benchmark.extra_info.update(samples_per_ray=round(t.evaluations / t.rays, 2),
                                    exact_samples_per_ray=t.exact / t.rays,
                                    proposal_s=round(t.proposal_seconds, 4), fallback=t.fallback)
    else:
        benchmark.extra_info.update(samples_per_ray=48, exact_samples_per_ray=48)
    assert torch.isfinite(one()[0]).all()
