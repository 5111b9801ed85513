"""The trainer's state and one training step.

``Trainer`` owns the models, their optimisers, the two generator EMAs, the AMP scaler and the
position in the data; ``train_step`` runs a discriminator update then a generator update, each one
``accumulate_and_step`` over ``batch_split`` sub-batches, then updates the EMAs.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from .. import imaging
from ..common import UsageError, pick_device, writing
from ..model import curriculums as C
from ..model.render_options import RenderOptions
from ..render import render_images, yaw_sweep
from . import loss as L
from .config import CHECKPOINT_NAME, TrainConfig
from .data import StageData
from .distributed import local_rank, rank, world
from .state import EMA, check_same_architecture, rng_state, seed_all
from .step import accumulate_and_step, autocast, pick_precision


def model_configs(cur: dict) -> tuple[dict, dict]:
    """(generator_config, discriminator_config) in pigan.checkpoints' format, from the curriculum's
    model / generator / discriminator keys and our width options."""
    from ..model.generators import SIREN_OPTIONS

    gen = {"class": cur.get("generator", "ImplicitGenerator3d"), "siren": cur.get("model", "SPATIALSIRENBASELINE"),
           "z_dim": int(cur.get("latent_dim", 256))}
    gen.update({k: cur[k] for k in SIREN_OPTIONS if k in cur})
    disc = {"class": cur.get("discriminator", "CCSEncoderDiscriminator")}
    if cur.get("disc_max_channels") is not None:
        disc["max_channels"] = int(cur["disc_max_channels"])
    return gen, disc


def build_models(cur: dict, device: torch.device):
    """(generator, discriminator) built from the curriculum; UsageError for unknown classes."""
    from ..checkpoints import build_discriminator, build_generator

    gcfg, dcfg = model_configs(cur)
    try:
        generator = build_generator(gcfg)
        discriminator = build_discriminator(dcfg)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot build the models from the curriculum: {exc}")
    return generator.to(device), discriminator.to(device)


def _betas(meta):
    return tuple(float(b) for b in meta.get("betas", (0, 0.9)))


class Trainer:
    def __init__(self, config: TrainConfig, cur: dict, resume_state: dict | None = None,
                 device: torch.device | None = None):
        """``config`` and ``cur`` as ``resolve_config`` returns them."""
        self.config, self.cur = config, cur
        self.rank, self.world = rank(), world()
        self.distributed = self.world > 1
        self.device = device or pick_device(config.device, local_rank=local_rank())
        self.is_main = self.rank == 0
        self.out = Path(config.out)
        seed_all(config.seed + self.rank)

        self.generator, self.discriminator = build_models(cur, self.device)
        if hasattr(self.generator, "set_device"):
            with torch.random.fork_rng(devices=self._rng_devices()):
                self.generator.set_device(self.device)
        meta = C.extract_metadata(cur, 0)
        wd = meta.get("weight_decay", 0)
        if meta.get("unique_lr", False):
            mapping = [p for n, p in self.generator.named_parameters() if "mapping_network" in n]
            other = [p for n, p in self.generator.named_parameters() if "mapping_network" not in n]
            g_groups = [{"params": other, "name": "generator"},
                        {"params": mapping, "name": "mapping_network", "lr": meta["gen_lr"] * 5e-2}]
        else:
            g_groups = [{"params": list(self.generator.parameters()), "name": "generator"}]
        self.opt_g = torch.optim.Adam(g_groups, lr=meta.get("gen_lr", 6e-5), betas=_betas(meta), weight_decay=wd)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=meta.get("disc_lr", 2e-4),
                                      betas=_betas(meta), weight_decay=wd)
        self.amp_dtype = pick_precision(self.device, config.precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.g_ddp, self.d_ddp = self.generator, self.discriminator
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_ddp = DDP(self.generator, device_ids=ids, find_unused_parameters=True)
            self.d_ddp = DDP(self.discriminator, device_ids=ids, find_unused_parameters=True)
        # after DDP's broadcast of rank 0's weights: every rank's EMAs start from the same weights
        self.ema = EMA(self.generator, cur.get("ema_decay", 0.999))
        self.ema2 = EMA(self.generator, cur.get("ema2_decay", 0.9999))

        self.step, self.epoch, self.position = 0, 0, 0
        self.fixed_z = torch.randn(config.num_samples, cur.get("latent_dim", 256),
                                   generator=torch.Generator().manual_seed(1234)).to(self.device)
        self.resume_rng = self.resume_data_key = None
        if resume_state is not None:
            self.load_state(resume_state)
        self.evaluator = None            # built at the first --eval-every step (see loop._evaluate)
        self.data = StageData(cur, config.data, config.seed, config.num_images, config.num_workers, self.rank,
                              self.world, self.device)

    def _rng_devices(self):
        return [self.device] if self.device.type == "cuda" else []

    @property
    def stream(self):
        return self.data.stream

    def ensure_data(self, meta: dict):
        """The batch stream of the stage in force; a new stage restarts the epoch order."""
        if self.data.ensure(meta):
            self.position = 0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema2": self.ema2.state_dict(),
            "rng": rng_state(self.device),
            "curriculum": C.to_json(self.cur),
            "data_key": list(self.data.key) if getattr(self, "data", None) and self.data.key else None,
            "world_size": self.world,
        }

    def load_state(self, state: dict):
        check_same_architecture(state, self.generator, self.discriminator, self.config.resume)
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        tr = state["training"]
        self.opt_g.load_state_dict(tr["opt_g"])
        self.opt_d.load_state_dict(tr["opt_d"])
        if tr.get("scaler"):
            self.scaler.load_state_dict(tr["scaler"])
        self.ema.load_state_dict(state["ema"])
        self.ema2.load_state_dict(tr["ema2"])
        self.step, self.epoch, self.position = tr["step"], tr["epoch"], tr["position"]
        self.generator.step = self.discriminator.step = self.step
        self.resume_rng = tr["rng"]
        self.resume_data_key = tuple(tr["data_key"]) if tr.get("data_key") else None
        if tr.get("world_size", 1) != self.world and self.is_main:
            print(f"note: checkpoint was written by {tr.get('world_size')} process(es), resuming on "
                  f"{self.world}: the data order changes", file=sys.stderr)

    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def save(self, note: str = ""):
        """Checkpoint (rank 0): pigan.checkpoints' format (models, EMA as an AveragedModel state dict,
        curriculum as config) plus the training state under "training"; atomic. A failed write is an
        OutputError naming the file and the space it needed; ``note`` is appended to its message."""
        if not self.is_main:
            return None
        from ..checkpoints import save_checkpoint

        path = self.checkpoint_path()
        config = json.loads(C.to_json(self.cur))
        state = self.state_dict()
        needed = sum(t.numel() * t.element_size() for m in (self.generator, self.discriminator, self.ema)
                     for t in m.state_dict().values()) * 3      # weights, EMA, two Adam moments, roughly
        with writing(path, needed=needed, note=note, remove_partial=False):
            return save_checkpoint(path, self.generator, self.discriminator, self.ema.state_dict(),
                                   extra={"training": state, "step": self.step}, config=config)

    # ------------------------------------------------------------------ one step
    def _set_lrs(self, meta: dict):
        for group in self.opt_g.param_groups:
            group["lr"] = meta["gen_lr"] * (5e-2 if group.get("name") == "mapping_network" else 1)
            group["betas"] = _betas(meta)
            group["weight_decay"] = meta.get("weight_decay", 0)
        for group in self.opt_d.param_groups:
            group["lr"] = meta["disc_lr"]
            group["betas"] = _betas(meta)
            group["weight_decay"] = meta.get("weight_decay", 0)

    def _z(self, n: int, meta: dict):
        if meta.get("z_dist", "gaussian") == "uniform":
            return torch.rand(n, meta["latent_dim"], device=self.device) * 2 - 1
        return torch.randn(n, meta["latent_dim"], device=self.device)

    def train_step(self, real_imgs: torch.Tensor, meta: dict) -> dict:
        step = self.step
        meta = dict(meta)
        # pi-GAN anneals the density noise over 5000 steps; short runs (the demo) may shorten it
        meta["nerf_noise"] = max(0.0, 1.0 - step / float(meta.get("nerf_noise_steps", 5000)))
        fade = meta.get("fade_steps", 10000)
        alpha = min(1.0, (step - C.last_upsample_step(self.cur, step)) / fade) if fade > 0 else 1.0
        split = meta.get("batch_split", 1)
        n = real_imgs.shape[0]
        sub = n // split
        r1_on = meta.get("r1_lambda", 0) > 0
        if self.scaler.is_enabled() and self.scaler.get_scale() < 1:
            self.scaler.update(1.0)
        self.generator.train()
        self.discriminator.train()
        self._set_lrs(meta)
        ac = autocast(self.device, self.amp_dtype)

        # ---------------- discriminator: reals and fakes in one forward pass
        self.discriminator.requires_grad_(True)
        z_all = self._z(n, meta)

        def d_loss_fn(i):
            z = z_all[i * sub:(i + 1) * sub]
            real = real_imgs[i * sub:(i + 1) * sub].detach().requires_grad_(r1_on)
            with ac:
                with torch.no_grad():
                    fake, fake_pos = self.generator(z, **meta)
                preds, pred_latent, pred_pos = self.d_ddp(torch.cat([real, fake.to(real.dtype)]), alpha, **meta)
            r_preds, g_preds = preds[:sub].float(), preds[sub:].float()
            if r1_on:
                r1 = L.r1_penalty(r_preds, real, meta["r1_lambda"], self.scaler)
            else:
                r1 = torch.zeros((), device=self.device)
            ident = L.identity_penalty(meta, pred_latent[sub:], z, pred_pos[sub:], fake_pos)
            d_loss = L.discriminator_loss(r_preds, g_preds, r1, ident)
            return d_loss, {"d_loss": d_loss, "r1": r1}

        d_parts, d_norm = accumulate_and_step(
            d_loss_fn, split, self.opt_d, self.discriminator.parameters(), self.scaler,
            meta.get("grad_clip", 10), self.d_ddp if self.distributed else None, summed_in_pigan=False)

        # ---------------- generator: the discriminator runs outside DDP with its grads off
        self.discriminator.requires_grad_(False)
        z_all = self._z(n, meta)
        frac = L.topk_fraction(meta, step)

        def g_loss_fn(i):
            z = z_all[i * sub:(i + 1) * sub]
            with ac:
                fake, fake_pos = self.g_ddp(z, **meta)
                preds, pred_latent, pred_pos = self.discriminator(fake, alpha, **meta)
            ident = L.identity_penalty(meta, pred_latent, z, pred_pos, fake_pos)
            g_loss = L.generator_loss(preds.float(), frac, ident)
            return g_loss, {"g_loss": g_loss, "g_identity": ident}

        g_parts, g_norm = accumulate_and_step(
            g_loss_fn, split, self.opt_g, self.generator.parameters(), self.scaler,
            meta.get("grad_clip", 0.3), self.g_ddp if self.distributed else None, summed_in_pigan=True)
        self.scaler.update()
        self.opt_g.zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(True)
        self.ema.update_parameters(self.generator)
        self.ema2.update_parameters(self.generator)
        self.step += 1
        self.generator.step = self.discriminator.step = self.step      # pi-GAN keeps them on the modules
        return {"d_loss": d_parts["d_loss"], "g_loss": g_parts["g_loss"], "r1": d_parts["r1"],
                "g_identity": g_parts["g_identity"], "d_grad_norm": d_norm, "g_grad_norm": g_norm,
                "alpha": alpha, "img_size": meta["img_size"], "nerf_noise": meta["nerf_noise"]}

    # ------------------------------------------------------------------ images (rank 0)
    def render_options(self) -> RenderOptions:
        """The sample grids' options: as `pigan render`'s default, empty space skipped (the same pixels
        to about 1e-3); --eval-every's FID renders exactly, as `pigan eval`'s default."""
        return RenderOptions.from_curriculum(self.cur, self.step).replace(skip_empty=True)

    def _latents(self, z):
        with torch.no_grad():
            return self.ema.module.siren.mapping_network(z)

    def sample_images(self) -> torch.Tensor:
        """The EMA generator's images of the fixed latents at the mean pose, [N, 3, H, W] on the CPU."""
        o = self.render_options()
        f, p = self._latents(self.fixed_z)
        return render_images(self.ema.module, f, p, o.pitch, o.yaw, o)[0]

    def multiview_images(self, identities: int = 4, views: int = 7) -> torch.Tensor:
        """``identities`` fixed latents x ``views`` yaws: [identities * views, 3, H, W] (identity-major)."""
        f, p = self._latents(self.fixed_z[:identities])
        return yaw_sweep(self.ema.module, f, p, self.render_options(), views)

    def write_image(self, images: torch.Tensor, path: Path, nrow: int, note: str = ""):
        with writing(path, needed=images.numel(), note=note):
            return imaging.save_grid(images, path, nrow=nrow)

    def write_samples(self, name: str, note: str = ""):
        if not self.is_main:
            return None
        imgs = self.sample_images()
        return self.write_image(imgs, self.out / "samples" / name, int(math.ceil(math.sqrt(len(imgs)))), note)

    def write_final(self, note: str = "") -> list[Path]:
        """samples.png and multiview.png (rank 0); the paths written."""
        if not self.is_main:
            return []
        imgs = self.sample_images()
        a = self.write_image(imgs, self.out / "samples.png", int(math.ceil(math.sqrt(len(imgs)))), note)
        b = self.write_image(self.multiview_images(), self.out / "multiview.png", 7, note)
        return [a, b]
