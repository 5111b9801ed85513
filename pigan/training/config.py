"""`pigan train`'s arguments and curriculum: loading, ``--set`` overrides, validation.

Everything that can be checked before a model or a dataset is built is checked here, so a bad value
is one ``UsageError`` line before any work. ``load_curriculum`` and ``validate_curriculum`` are shared
with the other commands that read a curriculum (invert, render).
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import math
from pathlib import Path

import torch

from .. import curriculums as C
from .. import ops
from ..cli import EXIT_CODES_HELP, ArgumentParser, UsageError, check_output_dir
from ..data import PROCEDURAL_NAMES
from .distributed import rank

CHECKPOINT_NAME = "checkpoint.pt"
DEFAULT_MAX_STEPS = 100000
# Training stops when the losses are NaN/Inf this many steps in a row.
DEFAULT_MAX_NONFINITE = 5


def curriculum_names() -> list[str]:
    return sorted(C.CURRICULA)


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
        return C.int_keys(cur)
    if spec.lower() not in C.CURRICULA:
        raise UsageError(f"unknown curriculum {spec!r}: choose one of {', '.join(curriculum_names())} "
                         "or give a .json/.py file")
    return C.get_curriculum(spec)


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
    ``*.key=value`` sets it in every training stage."""
    for item in sets or []:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key, value = key.strip(), _parse_value(text.strip())
        if "." in key:
            stage, sub = key.split(".", 1)
            if stage == "*":
                targets = C.training_stages(cur)
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


# ---------------------------------------------------------------------------- validation
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(name, v, allow_zero=False):
    if not _is_int(v) or v < (0 if allow_zero else 1):
        raise UsageError(f"{name} must be a{' non-negative' if allow_zero else ' positive'} integer, got {v!r}")


def _number(name, v, lo=None, hi=None, lo_open=False, hi_open=False):
    ok = _is_num(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        want = " and ".join(x for x in (lo_s, hi_s) if x) or "finite"
        raise UsageError(f"{name} must be a number {want}, got {v!r}")


_CHOICES = {"clamp_mode": ("relu", "softplus"), "z_dist": ("gaussian", "uniform"),
            "sample_dist": ("gaussian", "normal", "uniform", "spherical_uniform", "hybrid",
                            "truncated_gaussian", "mean", None)}
_NON_NEGATIVE = ("h_stddev", "v_stddev", "r1_lambda", "pos_lambda", "z_lambda", "fade_steps", "weight_decay")


def validate_stage(meta: dict, where: str):
    """Check the per-stage keys of one stage's metadata (merged with the shared keys)."""
    for key in ("batch_size", "img_size", "num_steps"):
        if key not in meta:
            raise UsageError(f"curriculum {where} has no {key!r}")
        _positive(f"{key} ({where})", meta[key])
    if meta["num_steps"] < 2:
        raise UsageError(f"num_steps ({where}) must be at least 2 samples per ray, got {meta['num_steps']}")
    split = meta.get("batch_split", 1)
    _positive(f"batch_split ({where})", split)
    if meta["batch_size"] % split:
        raise UsageError(f"batch_size {meta['batch_size']} ({where}) is not divisible by batch_split {split}")
    if meta["img_size"] & (meta["img_size"] - 1) or meta["img_size"] < 4:
        raise UsageError(f"img_size must be a power of two >= 4, got {meta['img_size']} ({where})")
    for lr in ("gen_lr", "disc_lr"):
        if lr in meta and not (_is_num(meta[lr]) and meta[lr] > 0):
            raise UsageError(f"{lr} must be a positive number, got {meta[lr]!r} ({where})")


def validate_curriculum(cur: dict):
    """Ranges and types of the shared keys and of every training stage; UsageError naming the key."""
    if not C.training_stages(cur):
        raise UsageError("the curriculum has no stages (integer keys such as 0: {...})")
    for s in C.training_stages(cur):
        validate_stage(C.extract_metadata(cur, s), f"stage {s}")
    if "fov" in cur:
        _number("fov (degrees)", cur["fov"], 0, 180, lo_open=True, hi_open=True)
    if "ray_start" in cur or "ray_end" in cur:
        start, end = cur.get("ray_start", 0.88), cur.get("ray_end", 1.12)
        _number("ray_start", start, 0, lo_open=True)
        _number("ray_end", end, start, lo_open=True)
    for key in ("h_mean", "v_mean"):
        if key in cur:
            _number(key, cur[key])
    for key in _NON_NEGATIVE:
        if key in cur:
            _number(key, cur[key], 0)
    for key, options in _CHOICES.items():
        if key in cur and cur[key] not in options:
            raise UsageError(f"{key} must be one of {', '.join(map(str, options))}, got {cur[key]!r}")
    if "grad_clip" in cur:
        _number("grad_clip", cur["grad_clip"], 0, lo_open=True)
    if "topk_interval" in cur:
        _number("topk_interval", cur["topk_interval"], 0, lo_open=True)
    if "topk_v" in cur:
        _number("topk_v", cur["topk_v"], 0, 1, lo_open=True)
    if "nerf_noise_steps" in cur:
        _number("nerf_noise_steps", cur["nerf_noise_steps"], 0, lo_open=True)
    for key in ("ema_decay", "ema2_decay"):
        if key in cur:
            _number(key, cur[key], 0, 1, hi_open=True)
    if "betas" in cur:
        b = cur["betas"]
        if not (isinstance(b, (list, tuple)) and len(b) == 2 and all(_is_num(x) and 0 <= x < 1 for x in b)):
            raise UsageError(f"betas must be two numbers in [0, 1), got {b!r}")
    for key in ("latent_dim", "hidden_dim", "map_hidden_dim", "mapping_hidden_layers", "disc_max_channels",
                "num_images"):
        if cur.get(key) is not None:
            _positive(key, cur[key])
    if "crop_fraction" in cur:
        _number("crop_fraction", cur["crop_fraction"], 0, 1, lo_open=True)


# ---------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pigan train", description="Train a pi-GAN from a curriculum.",
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--curriculum", "-c", default=None,
                   help="celeba | carla | cats | demo | faces, or a .json/.py file (default: demo, or the "
                        "checkpoint's when resuming)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a curriculum key; STEP.key=value or *.key=value for stage keys (repeatable)")
    p.add_argument("--data", default=None,
                   help="image folder, or an embedded dataset: 'procedural' (shapes) or 'faces' (default: "
                        "the curriculum's dataset, else its dataset_path)")
    p.add_argument("--out", "-o", default="runs/pigan", help="output folder (default: runs/pigan)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="total training steps (default: the curriculum's max_steps, else its end, else 100000)")
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
    p.add_argument("--max-nonfinite", type=int, default=DEFAULT_MAX_NONFINITE,
                   help="stop when the losses are NaN/Inf this many steps in a row (default "
                        f"{DEFAULT_MAX_NONFINITE}); the last finite checkpoint is kept")
    p.add_argument("--num-samples", type=int, default=16, help="images in each sample grid")
    p.add_argument("--num-workers", type=int, default=None, help="data loader workers (image folders)")
    p.add_argument("--num-images", type=int, default=None, help="procedural dataset size")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="resume from CHECKPOINT (default: <out>/checkpoint.pt)")
    p.add_argument("--no-final", action="store_true", help="skip the final samples / multi-view grid")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="also write TensorBoard event files when tensorboard is installed")
    from .evaluation import add_arguments
    add_arguments(p)
    return p


_STAGE_FLAGS = ("batch_size", "img_size", "num_steps", "batch_split")


def resolve_config(argv=None):
    """Parse and validate everything that can be checked before touching models or data.

    Returns (args, curriculum, resume_state or None). Raises UsageError with one clear message.
    """
    from .state import load_training_checkpoint

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
        cur = C.from_json(resume_state["curriculum"])
    else:
        cur = load_curriculum(args.curriculum or "demo")
    if not C.training_stages(cur):
        raise UsageError("the curriculum has no stages (integer keys such as 0: {...})")
    apply_overrides(cur, args.sets)
    for key in _STAGE_FLAGS:
        v = getattr(args, key)
        if v is not None:
            for s in C.training_stages(cur):
                cur[s][key] = v
    validate_curriculum(cur)
    if args.max_steps is None:
        end = C.final_step(cur)
        args.max_steps = int(cur.get("max_steps") or (end if math.isfinite(end) else DEFAULT_MAX_STEPS))
    _positive("--max-steps", args.max_steps)
    if args.max_time is not None and not args.max_time > 0:
        raise UsageError(f"--max-time must be positive, got {args.max_time}")
    for name, default in (("sample_every", cur.get("sample_every", 500)), ("log_every", cur.get("log_every", 10)),
                          ("ckpt_every", cur.get("ckpt_every", 1000))):
        if getattr(args, name) is None:
            setattr(args, name, int(default))
        _positive("--" + name.replace("_", "-"), getattr(args, name), allow_zero=True)
    args.log_every = max(1, args.log_every)
    _positive("--max-nonfinite", args.max_nonfinite)
    _positive("--num-samples", args.num_samples)
    if args.num_images is not None:
        _positive("--num-images", args.num_images)
    if args.num_workers is not None:
        _positive("--num-workers", args.num_workers, allow_zero=True)
    if args.threads is not None:
        _positive("--threads", args.threads)
    from . import evaluation
    evaluation.resolve(args, cur)
    if args.data is None:
        dataset = str(cur.get("dataset") or "").lower()
        args.data = dataset if dataset in PROCEDURAL_NAMES else cur.get("dataset_path") or "procedural"
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
    if rank() == 0:
        check_output_dir(out)
    args.out = str(out)
    return args, copy.deepcopy(cur), resume_state

