"""Training an encoder on its generator's own renders: no external data.

Each step draws latents (z through the mapping network, truncated toward the average by ``psi``, as
``pigan render`` does) and cameras from the curriculum's pose distribution, renders them without
gradients, and regresses the encoder's outputs on what made them: an MSE on the standardised
frequency/phase offsets and on the pose (in units of the curriculum's stddev), plus, with
``recon_weight`` > 0, an MSE between the images and renders of the predicted latent and pose through
the frozen generator. No perceptual loss is used: no library kept here supplies one offline.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import ops
from ..common import DivergedError, UsageError, check_number, check_output_dir, check_positive, progress, writing
from ..logging_utils import ScalarLogger, plot_loss_csv
from ..model.generators import frozen
from ..model.render_options import RenderOptions
from .io import generator_hash, latent_statistics, load_encoder, read_encoder_file, save_encoder
from .model import LatentEncoder, encoder_config_for

__all__ = ["EncoderTrainOptions", "train_encoder", "ENCODER_NAME"]

ENCODER_NAME = "encoder.pt"
LOSS_KEYS = ("loss", "latent_loss", "pose_loss", "recon_loss")
# renders that set the encoder's input standardisation before the first step
PIXEL_STATISTICS_IMAGES = 64


@dataclass(frozen=True)
class EncoderTrainOptions:
    """``max_steps`` total steps (a resumed run continues to it), ``max_time`` seconds (None: no
    limit); ``batch_size`` renders per step at ``img_size`` pixels with ``num_steps`` samples per ray
    (None: the render options'); Adam at ``lr``; latents truncated by ``psi``; ``recon_weight`` x the
    reconstruction MSE (0: off) rendered at ``recon_size`` pixels; ``seed`` draws the initial weights
    and every latent and camera; log.csv every ``log_every`` steps, encoder.pt every ``ckpt_every``
    (0: only at the end); ``num_avg`` z for the average latent the offsets are relative to. ``channels`` (None: follows
    the generator's width) sets the backbone's first width."""
    max_steps: int = 2000
    log_every: int = 10
    max_time: float | None = None
    batch_size: int = 16
    img_size: int = 32
    num_steps: int | None = None
    lr: float = 1e-3
    psi: float = 0.7
    recon_weight: float = 0.0
    channels: int | None = None
    recon_size: int = 16
    seed: int = 0
    ckpt_every: int = 500
    num_avg: int = 10000

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "img_size", "recon_size", "log_every", "num_avg"):
            check_positive(name, getattr(self, name))
        if self.batch_size < 2:
            raise UsageError(f"batch_size must be at least 2 (the backbone's batch norm), got {self.batch_size}")
        check_positive("ckpt_every", self.ckpt_every, allow_zero=True)
        if self.num_steps is not None:
            check_number("num_steps", self.num_steps, lo=2)       # a ray needs two samples
        if self.channels is not None:
            check_positive("channels", self.channels)
        if self.max_time is not None:
            check_number("max_time", self.max_time, lo=0, lo_open=True)
        check_number("lr", self.lr, lo=0, lo_open=True)
        check_number("psi", self.psi, lo=0, hi=1)
        check_number("recon_weight", self.recon_weight, lo=0)

    def replace(self, **changes) -> "EncoderTrainOptions":
        return dataclasses.replace(self, **changes)


@contextmanager
def _seeded(gen: torch.Generator, device):
    """The global RNG (cameras, importance sampling) seeded from ``gen`` and restored afterwards: a
    run's randomness is all in ``gen``, whose state the encoder file keeps for resuming."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        yield


def _sample(generator, encoder: LatentEncoder, render: RenderOptions, o: EncoderTrainOptions, gen):
    """One batch: (images [B, 3, S, S], standardised offsets [B, 2, L, H], pitch [B], yaw [B])."""
    device = encoder.avg_frequencies.device
    z = torch.randn(o.batch_size, generator.z_dim, generator=gen).to(device)
    with torch.no_grad(), _seeded(gen, device):
        raw_f, raw_p = generator.siren.mapping_network(z)
        f = encoder.avg_frequencies + o.psi * (raw_f - encoder.avg_frequencies)
        p = encoder.avg_phase_shifts + o.psi * (raw_p - encoder.avg_phase_shifts)
        _, pitch, yaw = ops.sample_camera_positions(
            device=device, n=o.batch_size, r=1, horizontal_stddev=render.h_stddev, vertical_stddev=render.v_stddev,
            horizontal_mean=render.h_mean, vertical_mean=render.v_mean, mode=render.sample_dist)
        images = generator.render(frequencies=f, phase_shifts=p, pitch=pitch, yaw=yaw, options=render,
                                  jitter=False)["pixels"]
    return images.float(), encoder.standardise(f, p), pitch.reshape(-1), yaw.reshape(-1)


def _losses(generator, encoder: LatentEncoder, render: RenderOptions, o: EncoderTrainOptions, batch, gen) -> dict:
    images, target, pitch, yaw = batch
    c = encoder.config
    out = encoder(images)
    latent = F.mse_loss(out["offsets"], target)
    # angles in units of the curriculum's spread, so pitch and yaw weigh alike; a fixed axis
    # (stddev 0) is predicted exactly and adds nothing
    pose = 0.5 * (((out["pitch"] - pitch) / max(c.v_stddev, 1e-3)).pow(2).mean()
                  + ((out["yaw"] - yaw) / max(c.h_stddev, 1e-3)).pow(2).mean())
    loss = latent + pose
    recon = torch.zeros((), device=images.device)
    if o.recon_weight > 0:
        f, p = encoder.latent(out["offsets"])
        size = min(o.recon_size, images.shape[-1])
        with _seeded(gen, images.device):
            fit = generator.render(frequencies=f, phase_shifts=p, pitch=out["pitch"].reshape(-1, 1),
                                   yaw=out["yaw"].reshape(-1, 1), options=render.replace(img_size=size),
                                   jitter=False)["pixels"]
        recon = F.mse_loss(fit.float(), F.interpolate(images, size=(size, size), mode="area"))
        loss = loss + o.recon_weight * recon
    return {"loss": loss, "latent_loss": latent, "pose_loss": pose, "recon_loss": recon}


class _Run:
    """Encoder, optimiser, sampling generator and step of one run, fresh or resumed."""

    def __init__(self, generator, render: RenderOptions, o: EncoderTrainOptions, out: Path, weights: str,
                 resume: bool):
        device = next(generator.parameters()).device
        self.path = out / ENCODER_NAME
        self.sha = generator_hash(generator)
        self.weights = weights
        self.gen = torch.Generator()
        if resume:
            state = read_encoder_file(self.path, device)
            if "optimizer" not in state:
                raise UsageError(f"{str(self.path)!r} holds no training state to resume")
            self.encoder = load_encoder(self.path, generator, device, state=state).train()
            if self.encoder.config.img_size != o.img_size:
                raise UsageError(f"--img-size {o.img_size}: {str(self.path)!r} was trained at "
                                 f"{self.encoder.config.img_size} px; resume it at that size")
            self.step = int(state["step"])
            self.gen.set_state(state["rng"].cpu())
        else:
            config = encoder_config_for(generator, render, o.img_size, channels=o.channels)
            if o.channels is not None:
                config = dataclasses.replace(config, fpn_dim=2 * o.channels)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(o.seed)             # the initial weights too come from the seed
                self.encoder = LatentEncoder(config).to(device).train()
            stats = latent_statistics(generator, o.num_avg, o.seed)
            for name, value in zip(("avg_frequencies", "avg_phase_shifts", "std_frequencies", "std_phase_shifts"),
                                   stats):
                getattr(self.encoder, name).copy_(value)
            self.step = 0
            self.gen.manual_seed(o.seed)
            batches = -(-PIXEL_STATISTICS_IMAGES // o.batch_size)
            images = torch.cat([_sample(generator, self.encoder, render, o, self.gen)[0] for _ in range(batches)])
            self.encoder.set_pixel_statistics(images)
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=o.lr)
        if resume:
            self.opt.load_state_dict(state["optimizer"])
            for group in self.opt.param_groups:
                group["lr"] = o.lr

    def save(self, o: EncoderTrainOptions) -> Path:
        extra = {"step": self.step, "optimizer": self.opt.state_dict(), "rng": self.gen.get_state(),
                 "train_options": dataclasses.asdict(o)}
        return save_encoder(self.path, self.encoder, self.sha, self.weights, extra)


def _loop(generator, run: _Run, render: RenderOptions, o: EncoderTrainOptions, logger, bar, stop):
    """Steps until max_steps, max_time or ``stop``; returns (why it stopped, the total loss per step)."""
    t0, losses, bad = time.perf_counter(), [], 0
    while run.step < o.max_steps:
        batch = _sample(generator, run.encoder, render, o, run.gen)
        scalars = _losses(generator, run.encoder, render, o, batch, run.gen)
        if not torch.isfinite(scalars["loss"]):
            bad += 1
            if bad >= 10:
                raise DivergedError(f"the encoder's loss was NaN/Inf for {bad} steps in a row at step "
                                    f"{run.step}; lower the learning rate")
            continue
        bad = 0
        run.opt.zero_grad(set_to_none=True)
        scalars["loss"].backward()
        run.opt.step()
        run.step += 1
        values = {k: v.item() for k, v in scalars.items()}
        losses.append(values["loss"])
        elapsed = time.perf_counter() - t0
        if run.step % o.log_every == 0 or run.step == 1:
            with writing(logger.path, remove_partial=False):
                logger.log(run.step, **values, time_s=elapsed)
        if o.ckpt_every and run.step % o.ckpt_every == 0:
            run.save(o)
        if bar is not None:
            bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
            bar.update(1)
        if stop is not None and getattr(stop, "raised", False):
            return "signal", losses
        if o.max_time is not None and elapsed >= o.max_time:
            return "max_time", losses
    return "max_steps", losses


def train_encoder(generator, render: RenderOptions, options: EncoderTrainOptions, out_dir, *, weights: str = "ema",
                  resume: bool = False, progress_bar: bool = False, stop=None) -> dict:
    """Train (or with ``resume`` continue) the encoder of ``generator`` in ``out_dir``: writes
    encoder.pt (weights, the generator's hash and ``weights`` ("ema" or "raw": which of the
    checkpoint's weights ``generator`` holds), the training state), log.csv and loss.png.
    ``render``: the curriculum's camera and marcher (img_size / num_steps replaced by the options').
    ``stop``: an object whose ``raised`` turns true to stop after the current step (SIGINT/SIGTERM).
    The generator is frozen while training and left as it was. Returns {"step", "reason"
    ("max_steps", "max_time", "signal"), "losses" (this run's total loss per step), "path", "elapsed"}."""
    o = options
    out = check_output_dir(out_dir)
    if weights not in ("ema", "raw"):
        raise UsageError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if resume and not (out / ENCODER_NAME).is_file():
        raise UsageError(f"nothing to resume: {str(out / ENCODER_NAME)!r} does not exist")
    if not resume and (out / ENCODER_NAME).exists():
        raise UsageError(f"{str(out / ENCODER_NAME)!r} exists: continue it with resume (--resume) or choose "
                         "another output folder")
    render = render.replace(img_size=o.img_size, nerf_noise=0.0,
                            num_steps=o.num_steps if o.num_steps is not None else render.num_steps)
    t0 = time.perf_counter()
    with frozen(generator):
        run = _Run(generator, render, o, out, weights, resume)
        if run.step >= o.max_steps:
            raise UsageError(f"the encoder is already at step {run.step} >= max_steps {o.max_steps}; "
                             "raise the step limit to continue it")
        logger = ScalarLogger(out, tensorboard=False)
        if run.step:
            with writing(logger.path, remove_partial=False):
                logger.truncate_after(run.step)
        bar = progress(None, enabled=progress_bar, desc="train-encoder", total=o.max_steps, initial=run.step,
                       file=sys.stderr, mininterval=1.0, leave=True)
        try:
            reason, losses = _loop(generator, run, render, o, logger, bar, stop)
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        path = run.save(o)
    with writing(out / "loss.png", note=f"the encoder {path} was written"):
        plot_loss_csv(logger.path, out / "loss.png", keys=LOSS_KEYS)
    return {"step": run.step, "reason": reason, "losses": losses, "path": path,
            "elapsed": time.perf_counter() - t0}
