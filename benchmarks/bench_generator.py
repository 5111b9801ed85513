"""Generator benchmarks at pi-GAN's CelebA sizes, side by side per group.

``test_generator_forward_backward`` (CPU table): ImplicitGenerator3d(SPATIALSIRENBASELINE, z_dim=256,
hidden 256), B=4 images of 64x64 rays, 12 coarse + 12 fine samples, density noise 1.0: one forward and
a backward of a fixed random cotangent on the pixels; "reference" (pi-GAN's formulas, eager PyTorch)
vs "native" (pigan.ops' fast paths). extra_info: bytes autograd saves for backward in one pass.

``test_train_step`` (GPU check): one full generator step of CelebA's curriculum at step 0, as the
trainer takes it on a GPU: B=28 (56 split in 2), 64x64, 12+12 samples, bf16 autocast; generator forward,
CCSEncoderDiscriminator forward (frozen), non-saturating loss + position loss, backward, gradient
clipping, Adam step. "auto" (pigan-kernels' fastest backends) vs "reference" (the same model on the
reference backend: eager pi-GAN) vs "compile" (torch.compile of the generator on the reference
backend, the peer a user would pick). extra_info: warm-up (compile, autotune) and peak memory.

    pytest benchmarks -k generator --benchmark-only
PIGAN_BENCH_B overrides the CPU table's batch (default 4).
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import COMPILE_BACKEND, TINY, check_devices, machine_info, run_case, saved_bytes, sync
from pigan import curriculums, ops
from pigan.discriminators import CCSEncoderDiscriminator
from pigan.generators import ImplicitGenerator3d

B = int(os.environ.get("PIGAN_BENCH_B", "4"))
META = dict(img_size=64, fov=12, ray_start=0.88, ray_end=1.12, num_steps=12, h_stddev=0.3,
            v_stddev=0.155, h_mean=math.pi / 2, v_mean=math.pi / 2, hierarchical_sample=True,
            sample_dist="gaussian", clamp_mode="relu", nerf_noise=1.0)


def cpu_backends():
    return ["reference"] + (["native"] if ops.available_backends()["native"]["cpu"] else [])


@pytest.mark.parametrize("backend", cpu_backends())
def test_generator_forward_backward(benchmark, backend):
    if TINY:
        pytest.skip("CPU table only (a tiny rehearsal runs test_train_step)")
    benchmark.group = f"generator fwd+bwd cpu B={B} 64x64 S=12+12 hidden=256"
    torch.manual_seed(0)
    g = ImplicitGenerator3d("SPATIALSIRENBASELINE", 256)
    z = torch.randn(B, 256)
    cot = torch.randn(B, 3, 64, 64)
    saved = []

    def step():
        g.zero_grad(set_to_none=True)
        with ops.use_backend(backend):
            nbytes, (pixels, _) = saved_bytes(lambda: g(z, **META))
            (pixels * cot).sum().backward()
        saved.append(nbytes)

    benchmark.extra_info.update(device="cpu", B=B, backend=backend, kind=backend, ours=backend != "reference",
                                **machine_info())
    # One step of the reference takes about a minute at B=4 on 2 cores: 2 rounds, no warm-up.
    benchmark.pedantic(step, rounds=2, iterations=1, warmup_rounds=0)
    benchmark.extra_info["saved_bytes"] = saved[-1]


def celeba_step_meta():
    meta = curriculums.extract_metadata(curriculums.get_curriculum("celeba"), 0)
    meta["nerf_noise"] = 1.0                       # pi-GAN's density noise at step 0
    if TINY:
        meta.update(img_size=16, num_steps=4, batch_size=2, batch_split=2)
    return meta


def make_train_step(device, kind):
    meta = celeba_step_meta()
    torch.manual_seed(0)
    generator = ImplicitGenerator3d(meta["model"], meta["latent_dim"]).to(device)
    disc = CCSEncoderDiscriminator().to(device).requires_grad_(False)
    opt = torch.optim.Adam(generator.parameters(), lr=meta["gen_lr"],
                           betas=tuple(float(b) for b in meta["betas"]))
    n = meta["batch_size"] // meta["batch_split"]
    z = torch.randn(n, meta["latent_dim"], device=device)
    forward = torch.compile(generator, backend=COMPILE_BACKEND) if kind == "compile" else generator
    backend = "auto" if kind == "auto" else "reference"

    def step():
        opt.zero_grad(set_to_none=True)
        # bf16 matmuls and convolutions take slow generic paths on the CPU: a CPU rehearsal runs fp32.
        with ops.use_backend(backend), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            fake, pose = forward(z, **meta)
            preds, _, pred_pose = disc(fake, 1.0, **meta)
        loss = F.softplus(-preds.float()).mean() + meta["pos_lambda"] * F.mse_loss(pred_pose.float(), pose.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), meta["grad_clip"])
        opt.step()
        return loss.detach()

    return step, n, meta


@pytest.mark.parametrize("kind", ["auto", "reference", "compile"])
@pytest.mark.parametrize("device", check_devices())
def test_train_step(benchmark, device, kind):
    step, n, meta = make_train_step(device, kind)
    benchmark.group = (f"CelebA generator train step {device} B={n} {meta['img_size']}x{meta['img_size']} "
                       f"S={meta['num_steps']}+{meta['num_steps']} {'bf16 autocast' if device == 'cuda' else 'fp32'}")
    run_case(benchmark, step, device, kind=kind, ours=kind == "auto", rounds=5 if device == "cuda" else 1,
             skip_on_error=kind == "compile", B=n)
    sync(device)
