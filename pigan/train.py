"""`pigan train`: pi-GAN's training loop (PIGAN.md section 6) on the engine's model.

One step = a discriminator update (softplus non-saturating loss, R1 on reals, position/latent loss
on fakes) then a generator update (top-k softplus loss, position/latent loss), each over
``batch_split`` sub-batches with gradient accumulation and gradient-norm clipping; then the two
EMAs of the generator (``torch.optim.swa_utils.AveragedModel``) are updated.

Differences from pi-GAN's script, on purpose:
- sub-batch losses are divided by ``batch_split`` (pi-GAN sums them), so ``batch_split`` only trades
  memory for time and never changes the update; the discriminator step is split too.
- the data order and flips are a function of (seed, epoch, position, step), and the sample grids
  run under a forked RNG, so a resumed run continues exactly as an uninterrupted one.
- the discriminator sees reals and fakes in one forward pass (same maths; one DDP forward per
  backward), and the generator step runs the discriminator outside DDP with its grads off.
- the curriculum's ``batch_size`` is per process, as in pi-GAN's multi-GPU runs.
"""
from __future__ import annotations

import argparse
import ast
import copy
import gc
import json
import math
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import ops
from .data import PROCEDURAL_NAMES, ImageFolder, ProceduralShapes, build_dataset, save_image_grid
from .logging_utils import ScalarLogger, plot_loss_csv

CHECKPOINT_NAME = "checkpoint.pt"
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad arguments: reported as one clear line, exit code 2, before any training."""


# ---------------------------------------------------------------------------------------------
# Curricula
# ---------------------------------------------------------------------------------------------

def _curriculums():
    from . import curriculums
    return curriculums


def curriculum_names() -> list[str]:
    mod = _curriculums()
    names = getattr(mod, "CURRICULA", None) or getattr(mod, "CURRICULUMS", None)
    if isinstance(names, dict):
        return sorted(names)
    return sorted(n for n in ("celeba", "carla", "cats", "demo") if _lookup_named(n) is not None)


def _lookup_named(name: str):
    mod = _curriculums()
    getter = getattr(mod, "get_curriculum", None)
    if getter is not None:
        try:
            return getter(name)
        except (KeyError, ValueError):
            return None
    for attr in (name, name.upper(), name.capitalize(), {"celeba": "CelebA", "carla": "CARLA",
                                                        "cats": "CATS"}.get(name, name)):
        if isinstance(getattr(mod, attr, None), dict):
            return copy.deepcopy(getattr(mod, attr))
    return None


def _int_keys(d: dict) -> dict:
    """JSON has only string keys: stage keys like "0" or "2000" become ints again."""
    out = {}
    for k, v in d.items():
        if isinstance(k, str) and k.lstrip("-").isdigit():
            k = int(k)
        out[k] = v
    return out


def load_curriculum(spec: str) -> dict:
    """A curriculum by name, or from a .json file or a .py file defining ``curriculum`` (a dict)."""
    path = Path(spec).expanduser()
    # A known name wins over a directory of that name in the working folder (e.g. an output `demo/`).
    if path.suffix in (".json", ".py") or path.is_file() or (path.exists() and spec.lower() not in curriculum_names()):
        if not path.is_file():
            raise UsageError(f"curriculum file {spec!r} does not exist")
        try:
            if path.suffix == ".json":
                cur = json.loads(path.read_text())
            else:
                import runpy
                ns = runpy.run_path(str(path))
                cur = ns.get("curriculum") or ns.get("CURRICULUM")
                if cur is None:
                    dicts = [v for k, v in ns.items() if isinstance(v, dict) and not k.startswith("__")]
                    cur = dicts[0] if len(dicts) == 1 else None
        except Exception as exc:
            raise UsageError(f"could not read curriculum file {spec!r}: {type(exc).__name__}: {exc}")
        if not isinstance(cur, dict):
            raise UsageError(f"curriculum file {spec!r} must define a dict (JSON object, or `curriculum = {{...}}`)")
        return _int_keys(cur)
    cur = _lookup_named(spec.lower())
    if cur is None:
        raise UsageError(f"unknown curriculum {spec!r}: choose one of {', '.join(curriculum_names())} "
                         "or give a .json/.py file")
    return copy.deepcopy(cur)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def apply_overrides(cur: dict, sets: list[str]) -> dict:
    """``key=value`` sets a top-level key; ``STEP.key=value`` (e.g. ``0.batch_size=8``) a stage key;
    ``*.key=value`` sets it in every stage."""
    for item in sets or []:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key, value = key.strip(), _parse_value(text.strip())
        if "." in key:
            stage, sub = key.split(".", 1)
            if stage == "*":
                targets = stage_steps(cur)
            elif stage.lstrip("-").isdigit():
                targets = [int(stage)]
                cur.setdefault(int(stage), {})
            else:
                raise UsageError(f"--set {item!r}: a stage key is STEP.key or *.key")
            for t in targets:
                cur[t][sub] = value
        else:
            cur[key] = value
    return cur


def stage_steps(cur: dict) -> list[int]:
    """Starts of the non-empty stages (an empty stage marks the end of training)."""
    return sorted(k for k in cur if isinstance(k, int) and not isinstance(k, bool) and cur[k])


def final_step(cur: dict):
    ends = [k for k in cur if isinstance(k, int) and not isinstance(k, bool) and not cur[k]]
    return min(ends) if ends else None


def extract_metadata(cur: dict, step: int) -> dict:
    mod = _curriculums()
    if hasattr(mod, "extract_metadata"):
        return mod.extract_metadata(cur, step)
    out = {}
    for s in reversed(stage_steps(cur)):
        if step >= s:
            out.update(cur[s])
            break
    out.update({k: v for k, v in cur.items() if isinstance(k, str)})
    return out


def stage_metadata(cur: dict, step: int) -> dict:
    """extract_metadata, but past the end of training the last real stage stays in force."""
    meta = extract_metadata(cur, step)
    if "img_size" not in meta and stage_steps(cur):
        meta = extract_metadata(cur, max(s for s in stage_steps(cur) if s <= step) if any(
            s <= step for s in stage_steps(cur)) else stage_steps(cur)[0])
    return meta


def last_upsample_step(cur: dict, step: int) -> int:
    mod = _curriculums()
    if hasattr(mod, "last_upsample_step"):
        return mod.last_upsample_step(cur, step)
    past = [s for s in stage_steps(cur) if s <= step]
    return max(past) if past else 0


def curriculum_to_json(cur: dict) -> str:
    return json.dumps({str(k): v for k, v in cur.items()}, default=lambda o: list(o) if isinstance(o, tuple) else str(o))


def curriculum_from_json(text: str) -> dict:
    return _int_keys(json.loads(text))


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pigan train", description="Train a pi-GAN from a curriculum.")
    p.add_argument("--curriculum", "-c", default=None,
                   help="celeba | carla | cats | demo, or a .json/.py file (default: demo, or the "
                        "checkpoint's when resuming)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a curriculum key; STEP.key=value or *.key=value for stage keys (repeatable)")
    p.add_argument("--data", default=None,
                   help="image folder, or 'procedural' for the embedded dataset (default: the "
                        "curriculum's dataset_path, else procedural)")
    p.add_argument("--out", "-o", default="runs/pigan", help="output folder (default: runs/pigan)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="total training steps (default: the curriculum's max_steps, else 100000)")
    p.add_argument("--max-time", type=float, default=None,
                   help="stop (and save) after this many seconds of training")
    p.add_argument("--batch-size", type=int, default=None, help="per-process batch size in every stage")
    p.add_argument("--img-size", type=int, default=None, help="image size in every stage (no growing)")
    p.add_argument("--num-steps", type=int, default=None, help="samples per ray in every stage")
    p.add_argument("--batch-split", type=int, default=None, help="sub-batches per step in every stage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--backend", default="auto", choices=list(ops.BACKENDS),
                   help="pigan.ops backend (default auto: the fastest available)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast dtype on CUDA (auto: bf16 when supported, else fp16 + grad scaler); "
                        "CPU always runs fp32")
    p.add_argument("--sample-every", type=int, default=None, help="sample grid every k steps (0: off)")
    p.add_argument("--log-every", type=int, default=None, help="log scalars every k steps")
    p.add_argument("--ckpt-every", type=int, default=None, help="checkpoint every k steps (0: only at the end)")
    p.add_argument("--num-samples", type=int, default=16, help="images in each sample grid")
    p.add_argument("--num-workers", type=int, default=None, help="data loader workers (image folders)")
    p.add_argument("--num-images", type=int, default=None, help="procedural dataset size")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="resume from CHECKPOINT (default: <out>/checkpoint.pt)")
    p.add_argument("--no-final", action="store_true", help="skip the final samples / multi-view grid")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="also write TensorBoard event files when tensorboard is installed")
    return p


_STAGE_FLAGS = {"batch_size": "batch_size", "img_size": "img_size", "num_steps": "num_steps",
                "batch_split": "batch_split"}


def _check_writable(folder: Path):
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}")


def _positive(name, v, allow_zero=False):
    if isinstance(v, bool) or not isinstance(v, int) or v < (0 if allow_zero else 1):
        raise UsageError(f"{name} must be a{' non-negative' if allow_zero else ' positive'} integer, got {v!r}")


def resolve_config(argv=None):
    """Parse and validate everything that can be checked before touching models or data.

    Returns (args, curriculum, resume_state or None). Raises UsageError with one clear message.
    """
    args = build_parser().parse_args(argv)
    out = Path(args.out).expanduser()
    resume_state = None
    if args.resume is not None:
        ckpt = out / CHECKPOINT_NAME if args.resume == "auto" else Path(args.resume).expanduser()
        if not ckpt.is_file():
            raise UsageError(f"--resume: no checkpoint at {str(ckpt)!r}")
        resume_state = load_training_checkpoint(ckpt)
        args.resume = str(ckpt)
    if args.curriculum is None and resume_state is not None:
        cur = curriculum_from_json(resume_state["curriculum"])
    else:
        cur = load_curriculum(args.curriculum or "demo")
    if not stage_steps(cur):
        raise UsageError("the curriculum has no stages (integer keys such as 0: {...})")
    apply_overrides(cur, args.sets)
    for flag, key in _STAGE_FLAGS.items():
        v = getattr(args, flag)
        if v is not None:
            for s in stage_steps(cur):
                cur[s][key] = v
    for s in stage_steps(cur):
        stage = extract_metadata(cur, s)
        for key in ("batch_size", "img_size", "num_steps"):
            if key not in stage:
                raise UsageError(f"curriculum stage {s} has no {key!r}")
            _positive(f"{key} (stage {s})", stage[key])
        split = stage.get("batch_split", 1)
        _positive(f"batch_split (stage {s})", split)
        if stage["batch_size"] % split:
            raise UsageError(f"batch_size {stage['batch_size']} (stage {s}) is not divisible by batch_split {split}")
        if stage["img_size"] & (stage["img_size"] - 1) or stage["img_size"] < 4:
            raise UsageError(f"img_size must be a power of two >= 4, got {stage['img_size']} (stage {s})")
        for lr in ("gen_lr", "disc_lr"):
            if lr in stage and not (isinstance(stage[lr], (int, float)) and stage[lr] > 0):
                raise UsageError(f"{lr} must be a positive number, got {stage[lr]!r} (stage {s})")
    if args.max_steps is None:
        args.max_steps = int(cur.get("max_steps") or final_step(cur) or 100000)
    _positive("--max-steps", args.max_steps)
    if args.max_time is not None and args.max_time <= 0:
        raise UsageError(f"--max-time must be positive, got {args.max_time}")
    for name, default in (("sample_every", cur.get("sample_every", 500)), ("log_every", cur.get("log_every", 10)),
                          ("ckpt_every", cur.get("ckpt_every", 1000))):
        if getattr(args, name) is None:
            setattr(args, name, int(default))
        _positive("--" + name.replace("_", "-"), getattr(args, name), allow_zero=True)
    args.log_every = max(1, args.log_every)
    _positive("--num-samples", args.num_samples)
    if args.num_images is not None:
        _positive("--num-images", args.num_images)
    if args.num_workers is not None:
        _positive("--num-workers", args.num_workers, allow_zero=True)
    if args.threads is not None:
        _positive("--threads", args.threads)
    if args.data is None:
        args.data = cur.get("dataset_path") if cur.get("dataset", "").lower() not in PROCEDURAL_NAMES else None
        args.data = args.data or "procedural"
    if str(args.data).lower() not in PROCEDURAL_NAMES:
        d = Path(args.data).expanduser()
        if not d.exists():
            raise UsageError(f"data folder {str(d)!r} does not exist")
        if not d.is_dir():
            raise UsageError(f"data folder {str(d)!r} is not a directory")
    if args.device != "auto":
        try:
            dev = torch.device(args.device)
        except RuntimeError as exc:
            raise UsageError(f"--device: {exc}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda requested but no CUDA device is available")
    ok, why = ops._backend.backend_status(args.backend)
    if not ok:
        raise UsageError(f"--backend {args.backend}: {why}")
    if _rank() == 0:
        _check_writable(out)
    args.out = str(out)
    return args, cur, resume_state


# ---------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------

def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", _local_rank() % torch.cuda.device_count())
    return dev


# ---------------------------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------------------------

def ema_multi_avg_fn(decay: float, warmup: bool = True):
    """EMA update for AveragedModel. With ``warmup`` the decay is min(decay, (1 + n) / (10 + n))
    after n updates, as torch_ema (pi-GAN's EMA) does, so short runs are not dominated by the
    initial weights."""
    if not warmup:
        return get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def fn(ema_params, current_params, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0]):
            torch._foreach_lerp_(ema_params, current_params, 1 - d)
        else:
            for e, c in zip(ema_params, current_params):
                e.copy_(e * d + c * (1 - d))
    return fn


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def _rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]), "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python_version": int(py_state[0]), "python_state": list(py_state[1]),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device):
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((state["python_version"], tuple(state["python_state"]), None))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def load_training_checkpoint(path) -> dict:
    from .checkpoints import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise UsageError(str(exc))
    if "training" not in state or "ema" not in state:
        raise UsageError(f"{str(path)!r} is not a `pigan train` checkpoint (no training state); "
                         "it can be rendered, not resumed")
    state["curriculum"] = state["training"]["curriculum"]
    return state


# ---------------------------------------------------------------------------------------------
# Data stream (deterministic order: exact resume)
# ---------------------------------------------------------------------------------------------

class BatchStream:
    """Per-process batches in a DistributedSampler order fixed by (seed, epoch); ``position`` counts
    batches taken in the current epoch. Flips come from a generator seeded by (seed, step, rank)."""

    def __init__(self, dataset, batch_size: int, seed: int, rank: int, world: int, num_workers: int,
                 device: torch.device):
        from torch.utils.data.distributed import DistributedSampler

        per_epoch = len(dataset) // world
        if per_epoch < batch_size:
            raise UsageError(f"the dataset has {len(dataset)} images: too few for batch_size {batch_size} "
                             f"on {world} process(es)")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world, self.device = rank, world, device
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.num_workers = num_workers
        self.in_memory = isinstance(dataset, ProceduralShapes)
        self.batches_per_epoch = len(self.sampler) // batch_size
        self._iter = None

    def _epoch_batches(self, epoch: int, start: int):
        self.sampler.set_epoch(epoch)
        idx = list(self.sampler)
        return [idx[i * self.batch_size:(i + 1) * self.batch_size]
                for i in range(start, self.batches_per_epoch)]

    def _open(self, epoch, position):
        batches = self._epoch_batches(epoch, position)
        if self.in_memory:
            self._iter = (self.dataset.images[torch.tensor(b)] for b in batches)
        else:
            from torch.utils.data import DataLoader
            loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                                pin_memory=self.device.type == "cuda", persistent_workers=False)
            self._iter = (x for x, _ in loader)
        self._key = (epoch, position)

    def next(self, epoch: int, position: int, step: int):
        """The batch at (epoch, position); returns (images on device, new epoch, new position)."""
        if position >= self.batches_per_epoch:
            epoch, position = epoch + 1, 0
        if self._iter is None or self._key != (epoch, position):
            self._open(epoch, position)
        imgs = next(self._iter)
        self._key = (epoch, position + 1)
        g = torch.Generator().manual_seed(hash((self.seed, step, self.rank)) & 0x7FFFFFFF)
        flip = torch.rand(imgs.shape[0], generator=g) < 0.5
        imgs = torch.where(flip[:, None, None, None], imgs.flip(-1), imgs)
        return imgs.to(self.device, non_blocking=True), epoch, position + 1


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------

def model_configs(cur: dict) -> tuple[dict, dict]:
    """(generator_config, discriminator_config) in pigan.checkpoints' format, from the curriculum's
    model / generator / discriminator keys and our width options."""
    from .generators import SIREN_OPTIONS

    gen = {"class": cur.get("generator", "ImplicitGenerator3d"), "siren": cur.get("model", "SPATIALSIRENBASELINE"),
           "z_dim": int(cur.get("latent_dim", 256))}
    gen.update({k: cur[k] for k in SIREN_OPTIONS if k in cur})
    disc = {"class": cur.get("discriminator", "CCSEncoderDiscriminator")}
    if cur.get("disc_max_channels") is not None:
        disc["max_channels"] = int(cur["disc_max_channels"])
    return gen, disc


def build_models(cur: dict, device: torch.device):
    """(generator, discriminator) built from the curriculum; UsageError for unknown classes."""
    from .checkpoints import build_discriminator, build_generator

    gcfg, dcfg = model_configs(cur)
    try:
        generator = build_generator(gcfg)
        discriminator = build_discriminator(dcfg)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot build the models from the curriculum: {exc}")
    return generator.to(device), discriminator.to(device)


class StopFlag:
    """SIGINT / SIGTERM set a flag; the loop finishes its step, saves and exits. A second Ctrl-C
    raises KeyboardInterrupt as usual."""

    def __init__(self):
        self.raised = False
        self.signum = None
        self._old = {}

    def _handler(self, signum, frame):
        if self.raised and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.raised, self.signum = True, signum

    def install(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handler)
            except ValueError:          # not the main thread: no handler (tests, notebooks)
                pass
        return self

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)


class Trainer:
    def __init__(self, args, cur: dict, resume_state: dict | None = None, device: torch.device | None = None):
        self.args, self.cur = args, cur
        self.rank, self.world = _rank(), _world()
        self.distributed = self.world > 1
        self.device = device or pick_device(args.device)
        self.is_main = self.rank == 0
        self.out = Path(args.out)
        torch.manual_seed(args.seed + self.rank)
        np.random.seed((args.seed + self.rank) % 2**32)
        random.seed(args.seed + self.rank)

        self.generator, self.discriminator = build_models(cur, self.device)
        if hasattr(self.generator, "set_device"):
            with torch.random.fork_rng(devices=self._rng_devices()):
                self.generator.set_device(self.device)
        meta = extract_metadata(cur, 0)
        betas = tuple(float(b) for b in meta.get("betas", (0, 0.9)))
        wd = meta.get("weight_decay", 0)
        if meta.get("unique_lr", False):
            mapping = [p for n, p in self.generator.named_parameters() if "mapping_network" in n]
            other = [p for n, p in self.generator.named_parameters() if "mapping_network" not in n]
            g_groups = [{"params": other, "name": "generator"},
                        {"params": mapping, "name": "mapping_network", "lr": meta["gen_lr"] * 5e-2}]
        else:
            g_groups = [{"params": list(self.generator.parameters()), "name": "generator"}]
        self.opt_g = torch.optim.Adam(g_groups, lr=meta.get("gen_lr", 6e-5), betas=betas, weight_decay=wd)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=meta.get("disc_lr", 2e-4),
                                      betas=betas, weight_decay=wd)
        self.ema = AveragedModel(self.generator, multi_avg_fn=ema_multi_avg_fn(cur.get("ema_decay", 0.999)))
        self.ema2 = AveragedModel(self.generator, multi_avg_fn=ema_multi_avg_fn(cur.get("ema2_decay", 0.9999)))

        self.amp_dtype = self._pick_precision(args.precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.g_ddp, self.d_ddp = self.generator, self.discriminator
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_ddp = DDP(self.generator, device_ids=ids, find_unused_parameters=True)
            self.d_ddp = DDP(self.discriminator, device_ids=ids, find_unused_parameters=True)

        self.step, self.epoch, self.position = 0, 0, 0
        self.fixed_z = torch.randn(args.num_samples, cur.get("latent_dim", 256),
                                   generator=torch.Generator().manual_seed(1234)).to(self.device)
        if resume_state is not None:
            self.load_state(resume_state)
        self.dataset = None
        self.stream = None
        self._data_key = None

    # ------------------------------------------------------------------ setup helpers
    def _rng_devices(self):
        return [self.device] if self.device.type == "cuda" else []

    def _pick_precision(self, precision: str):
        if self.device.type != "cuda" or precision == "fp32":
            return None
        if precision == "fp16":
            return torch.float16
        if precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _ensure_data(self, meta: dict):
        key = (meta["img_size"], meta["batch_size"])
        if key == self._data_key:
            return
        if self.dataset is None:
            camera = {k: meta[k] for k in ("fov", "ray_start", "ray_end", "h_stddev", "v_stddev",
                                           "h_mean", "v_mean", "sample_dist") if k in meta}
            sizes = [extract_metadata(self.cur, s)["img_size"] for s in stage_steps(self.cur)]
            num_images = self.args.num_images or int(self.cur.get("num_images", 2048))
            if self.distributed and not self.is_main:
                dist.barrier()         # rank 0 generates (and caches) the procedural dataset first
            try:
                self.dataset = build_dataset(self.args.data, meta["img_size"], camera=camera, seed=self.args.seed,
                                             num_images=num_images, render_size=max(sizes),
                                             crop_fraction=self.cur.get("crop_fraction", 1.0),
                                             verbose=self.is_main)
            except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
                raise UsageError(str(exc))
            finally:
                if self.distributed and self.is_main:
                    dist.barrier()     # the others now load it from the cache (or fail alike)
        elif isinstance(self.dataset, ProceduralShapes):
            self.dataset.set_img_size(meta["img_size"])
        else:
            self.dataset.img_size = meta["img_size"]
        workers = self.args.num_workers
        if workers is None:
            workers = 0 if isinstance(self.dataset, ProceduralShapes) else min(4, os.cpu_count() or 1)
        if self._data_key is not None:
            self.position = 0         # a new stage restarts the epoch order, as pi-GAN's new loader does
        self.stream = BatchStream(self.dataset, meta["batch_size"], self.args.seed, self.rank, self.world,
                                  workers, self.device)
        self._data_key = key

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema2": self.ema2.state_dict(),
            "rng": _rng_state(self.device),
            "curriculum": curriculum_to_json(self.cur),
            "data_key": list(self._data_key) if self._data_key else None,
            "world_size": self.world,
        }

    def load_state(self, state: dict):
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
        self._resume_rng = tr["rng"]
        self._resume_data_key = tuple(tr["data_key"]) if tr.get("data_key") else None
        if tr.get("world_size", 1) != self.world and self.is_main:
            print(f"note: checkpoint was written by {tr.get('world_size')} process(es), resuming on "
                  f"{self.world}: the data order changes", file=sys.stderr)

    def save(self, path: Path | None = None):
        """Checkpoint (rank 0): pigan.checkpoints' format (models, EMA as an AveragedModel state dict,
        curriculum as config) plus the training state under "training"; atomic."""
        if not self.is_main:
            return None
        from .checkpoints import save_checkpoint

        path = path or self.out / CHECKPOINT_NAME
        config = json.loads(curriculum_to_json(self.cur))
        return save_checkpoint(path, self.generator, self.discriminator, self.ema.state_dict(),
                               extra={"training": self.state_dict(), "step": self.step}, config=config)

    # ------------------------------------------------------------------ one step
    def _set_lrs(self, meta: dict):
        for group in self.opt_g.param_groups:
            lr = meta["gen_lr"] * (5e-2 if group.get("name") == "mapping_network" else 1)
            group["lr"] = lr
            group["betas"] = tuple(float(b) for b in meta.get("betas", (0, 0.9)))
            group["weight_decay"] = meta.get("weight_decay", 0)
        for group in self.opt_d.param_groups:
            group["lr"] = meta["disc_lr"]
            group["betas"] = tuple(float(b) for b in meta.get("betas", (0, 0.9)))
            group["weight_decay"] = meta.get("weight_decay", 0)

    def _z(self, n: int, meta: dict):
        if meta.get("z_dist", "gaussian") == "uniform":
            return torch.rand(n, meta["latent_dim"], device=self.device) * 2 - 1
        return torch.randn(n, meta["latent_dim"], device=self.device)

    @staticmethod
    def _identity_penalty(meta, pred_latent, z, pred_pos, pos):
        pen = 0.0
        if meta.get("z_lambda", 0) > 0:
            pen = pen + F.mse_loss(pred_latent.float(), z.float()) * meta["z_lambda"]
        if meta.get("pos_lambda", 0) > 0:
            pen = pen + F.mse_loss(pred_pos.float(), pos.float()) * meta["pos_lambda"]
        return pen

    def train_step(self, real_imgs: torch.Tensor, meta: dict) -> dict:
        step = self.step
        meta = dict(meta)
        # pi-GAN anneals the density noise over 5000 steps; short runs (the demo) may shorten it
        meta["nerf_noise"] = max(0.0, 1.0 - step / float(meta.get("nerf_noise_steps", 5000)))
        fade = meta.get("fade_steps", 10000)
        alpha = min(1.0, (step - last_upsample_step(self.cur, step)) / fade) if fade > 0 else 1.0
        split = meta.get("batch_split", 1)
        n = real_imgs.shape[0]
        sub = n // split
        if self.scaler.is_enabled() and self.scaler.get_scale() < 1:
            self.scaler.update(1.0)
        self.generator.train()
        self.discriminator.train()
        self._set_lrs(meta)
        gen = self.generator

        # ---------------- discriminator
        self.discriminator.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        z_all = self._z(n, meta)
        d_total, r1_total = 0.0, 0.0
        for i in range(split):
            z = z_all[i * sub:(i + 1) * sub]
            real = real_imgs[i * sub:(i + 1) * sub].detach().requires_grad_(meta.get("r1_lambda", 0) > 0)
            last = i == split - 1
            ctx = self.d_ddp.no_sync() if (self.distributed and not last) else _nullcontext()
            with ctx:
                with self._autocast():
                    with torch.no_grad():
                        fake, fake_pos = gen(z, **meta)
                    preds, pred_latent, pred_pos = self.d_ddp(torch.cat([real, fake.to(real.dtype)]), alpha, **meta)
                r_preds, g_preds = preds[:sub].float(), preds[sub:].float()
                if meta.get("r1_lambda", 0) > 0:
                    grad_real, = torch.autograd.grad(self.scaler.scale(r_preds.sum()), real, create_graph=True)
                    grad_real = grad_real / self.scaler.get_scale()
                    r1 = 0.5 * meta["r1_lambda"] * grad_real.float().pow(2).flatten(1).sum(1).mean()
                else:
                    r1 = torch.zeros((), device=self.device)
                ident = self._identity_penalty(meta, pred_latent[sub:], z, pred_pos[sub:], fake_pos)
                d_loss = F.softplus(g_preds).mean() + F.softplus(-r_preds).mean() + r1 + ident
                self.scaler.scale(d_loss / split).backward()
            d_total += d_loss.item() / split
            r1_total += float(r1.detach()) / split
        self.scaler.unscale_(self.opt_d)
        d_norm = torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), meta.get("grad_clip", 10))
        self.scaler.step(self.opt_d)

        # ---------------- generator
        self.discriminator.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        z_all = self._z(n, meta)
        g_total, pos_total = 0.0, 0.0
        for i in range(split):
            z = z_all[i * sub:(i + 1) * sub]
            sync = i == split - 1
            ctx = self.g_ddp.no_sync() if (self.distributed and not sync) else _nullcontext()
            with ctx:
                with self._autocast():
                    fake, fake_pos = self.g_ddp(z, **meta)
                    preds, pred_latent, pred_pos = self.discriminator(fake, alpha, **meta)
                preds = preds.float()
                if "topk_interval" in meta and "topk_v" in meta:
                    frac = max(0.99 ** (step / meta["topk_interval"]), meta["topk_v"])
                else:
                    frac = 1.0
                k = math.ceil(frac * preds.shape[0])
                top = torch.topk(preds, k, dim=0).values
                ident = self._identity_penalty(meta, pred_latent, z, pred_pos, fake_pos)
                g_loss = F.softplus(-top).mean() + ident
                self.scaler.scale(g_loss / split).backward()
            g_total += g_loss.item() / split
            pos_total += float(ident.detach() if torch.is_tensor(ident) else ident) / split
        self.scaler.unscale_(self.opt_g)
        g_norm = torch.nn.utils.clip_grad_norm_(self.generator.parameters(), meta.get("grad_clip", 0.3))
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.opt_g.zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(True)
        self.ema.update_parameters(self.generator)
        self.ema2.update_parameters(self.generator)
        self.step += 1
        self.generator.step = self.discriminator.step = self.step      # pi-GAN keeps them on the modules
        return {"d_loss": d_total, "g_loss": g_total, "r1": r1_total, "g_identity": pos_total,
                "d_grad_norm": float(d_norm), "g_grad_norm": float(g_norm), "alpha": alpha,
                "img_size": meta["img_size"], "nerf_noise": meta["nerf_noise"]}

    # ------------------------------------------------------------------ samples
    def _eval_meta(self, meta: dict) -> dict:
        m = dict(meta)
        m["nerf_noise"] = 0.0
        if m.get("eval_last_back") is not None:
            m["last_back"] = m["eval_last_back"]
        return m

    @torch.no_grad()
    def render_views(self, model, z, meta, pitch, yaw, img_size=None):
        """Images [B, 3, H, W] of latents z at the given camera (no RNG leak into training)."""
        m = self._eval_meta(meta)
        size = img_size or m["img_size"]
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(0)
            model.eval()
            if hasattr(model, "render"):
                out = model.render(z, pitch=pitch, yaw=yaw, img_size=size, fov=m["fov"], ray_start=m["ray_start"],
                                   ray_end=m["ray_end"], num_steps=m["num_steps"],
                                   hierarchical_sample=m.get("hierarchical_sample", True), jitter=False,
                                   clamp_mode=m.get("clamp_mode", "relu"), white_back=m.get("white_back", False),
                                   last_back=m.get("last_back", False), lock_view_dependence=False,
                                   max_batch_size=m.get("max_batch_size"))["pixels"]
            else:
                m.update(img_size=size, h_stddev=0, v_stddev=0, h_mean=float(yaw), v_mean=float(pitch))
                out = model(z, **m)[0]
            model.train()
        return out.float().cpu()

    def write_samples(self, name: str):
        if not self.is_main:
            return None
        meta = stage_metadata(self.cur, self.step)
        imgs = self.render_views(self.ema.module, self.fixed_z, meta, meta["v_mean"], meta["h_mean"])
        return save_image_grid(imgs, self.out / "samples" / name, nrow=int(math.ceil(math.sqrt(len(imgs)))))

    def write_multiview(self, path: Path, identities: int = 4, views: int = 7):
        meta = stage_metadata(self.cur, self.step)
        h = meta.get("h_stddev", 0.3)
        spread = min(2 * h, 1.2) if meta.get("sample_dist") != "spherical_uniform" else min(h, 1.2)
        yaws = [meta["h_mean"] + spread * (2 * i / (views - 1) - 1) for i in range(views)]
        z = self.fixed_z[:identities]
        rows = [self.render_views(self.ema.module, z, meta, meta["v_mean"], y) for y in yaws]  # views x [I,3,H,W]
        grid = torch.stack(rows, 1).flatten(0, 1)                                            # identity-major
        return save_image_grid(grid, path, nrow=views)

    def write_final(self):
        if not self.is_main or self.args.no_final:
            return
        meta = stage_metadata(self.cur, self.step)
        imgs = self.render_views(self.ema.module, self.fixed_z, meta, meta["v_mean"], meta["h_mean"])
        save_image_grid(imgs, self.out / "samples.png")
        self.write_multiview(self.out / "multiview.png")

    # ------------------------------------------------------------------ loop
    def fit(self, stop: StopFlag | None = None) -> str:
        """Train until max_steps, max_time or a stop signal. Returns why it stopped."""
        args = self.args
        logger = ScalarLogger(self.out, tensorboard=args.tensorboard) if self.is_main else None
        if logger is not None and self.step > 0:
            logger.truncate_after(self.step)
        meta = stage_metadata(self.cur, self.step)
        self._ensure_data(meta)
        if getattr(self, "_resume_data_key", None) is not None and self._resume_data_key != self._data_key:
            self.position = 0
        if getattr(self, "_resume_rng", None) is not None:
            _set_rng_state(self._resume_rng, self.device)
            self._resume_rng = None
        bar = None
        if self.is_main and not args.no_progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=args.max_steps, initial=self.step, desc="train", dynamic_ncols=True,
                       mininterval=1.0, file=sys.stderr)
        t0 = time.perf_counter()
        imgs_seen, t_last = 0, t0
        reason = "max_steps"
        try:
            while self.step < args.max_steps:
                meta = extract_metadata(self.cur, self.step)
                self._ensure_data(meta)
                real, self.epoch, self.position = self.stream.next(self.epoch, self.position, self.step)
                scalars = self.train_step(real, meta)
                imgs_seen += real.shape[0] * self.world
                now = time.perf_counter()
                speed = imgs_seen / max(now - t0, 1e-9)
                if not all(math.isfinite(scalars[k]) for k in ("d_loss", "g_loss")) and self.is_main:
                    print(f"warning: non-finite loss at step {self.step}: {scalars}", file=sys.stderr)
                if logger is not None and (self.step % args.log_every == 0 or self.step == 1):
                    logger.log(self.step, **scalars, images_per_s=speed, time_s=now - t0)
                if bar is not None:
                    bar.set_postfix(d=f"{scalars['d_loss']:.3f}", g=f"{scalars['g_loss']:.3f}",
                                    img=meta["img_size"], ips=f"{speed:.1f}", refresh=False)
                    bar.update(1)
                if args.sample_every and self.step % args.sample_every == 0:
                    self.write_samples(f"{self.step:07d}.png")
                if args.ckpt_every and self.step % args.ckpt_every == 0:
                    self.save()
                want_stop = stop is not None and stop.raised
                if args.max_time is not None and now - t0 >= args.max_time:
                    want_stop, reason = True, "max_time"
                if self.distributed:
                    flag = torch.tensor([1.0 if want_stop else 0.0], device=self.device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    want_stop = flag.item() > 0
                if want_stop:
                    if reason != "max_time":
                        reason = "signal"
                    break
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
        self.save()
        self.elapsed = time.perf_counter() - t0
        return reason


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _init_distributed(device_spec: str):
    if _world() <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() and device_spec != "cpu" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(_local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend=backend)
    return True


def run(args, cur, resume_state=None) -> int:
    """Train with validated arguments (see ``resolve_config``); returns the exit code."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = _init_distributed(args.device)
    stop = StopFlag().install()
    ok = False
    try:
        with ops.use_backend(args.backend):
            trainer = Trainer(args, cur, resume_state)
            if trainer.is_main:
                meta = stage_metadata(cur, trainer.step)
                print(f"pigan train: device {trainer.device}, backend {args.backend}, precision "
                      f"{trainer.amp_dtype or 'fp32'}, world {trainer.world}, from step {trainer.step} to "
                      f"{args.max_steps}, img {meta['img_size']}, batch {meta['batch_size']}, out {args.out}",
                      flush=True)
            reason = trainer.fit(stop)
            if trainer.is_main:
                plot_loss_csv(trainer.out / "log.csv", trainer.out / "loss.png")
                if reason == "signal":
                    print(f"stopped by signal {stop.signum} at step {trainer.step}; checkpoint "
                          f"{trainer.out / CHECKPOINT_NAME}; continue with --resume", flush=True)
                else:
                    trainer.write_final()
                    print(f"done: {trainer.step} steps in {trainer.elapsed:.1f} s ({reason}); wrote "
                          f"{trainer.out / 'samples.png'}, {trainer.out / 'multiview.png'}, "
                          f"{trainer.out / 'loss.png'}", flush=True)
        ok = True
        return 0
    finally:
        stop.restore()
        trainer = None  # drop the DDP wrappers (and their hold on the process group) first
        if started:
            _shutdown_distributed(ok)


def _shutdown_distributed(clean: bool):
    # Tear down together and only after the DDP wrappers are gone: a gloo rank that leaves while its
    # reducer still holds the group can abort at interpreter exit ("terminate called without an
    # active exception"), seen once in CI on rank 1 while rank 0 was still writing its images.
    gc.collect()
    if clean:
        try:
            dist.barrier()
        except Exception as exc:  # a peer already gone: still release our side
            print(f"pigan train: warning: barrier before shutdown failed: {exc}", file=sys.stderr)
    dist.destroy_process_group()


def main(argv=None) -> int:
    try:
        args, cur, resume_state = resolve_config(argv)
        return run(args, cur, resume_state)
    except UsageError as exc:
        print(f"pigan train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
