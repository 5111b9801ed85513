"""Curricula by name or from a file, ``--set``-style key overrides, and validation.

Everything that can be checked before a model or a dataset is built is checked here, so a bad value
is one ``UsageError`` naming the key before any work. Every job that reads a curriculum (training,
rendering, inversion, evaluation) loads it through ``load_curriculum`` and checks it with
``validate_curriculum``.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from ..common import UsageError, check_number, check_positive, is_number
from ..ops.compositing import CLAMP_MODES
from ..ops.rays import CAMERA_MODES
from . import curriculums as C

__all__ = ["curriculum_names", "load_curriculum", "apply_overrides", "validate_stage", "validate_curriculum"]


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
_CHOICES = {"clamp_mode": CLAMP_MODES, "z_dist": C.Z_DISTRIBUTIONS,
            "sample_dist": (*CAMERA_MODES, "mean", None)}
_NON_NEGATIVE = ("h_stddev", "v_stddev", "r1_lambda", "pos_lambda", "z_lambda", "fade_steps", "weight_decay")


def validate_stage(meta: dict, where: str):
    """Check the per-stage keys of one stage's metadata (merged with the shared keys)."""
    for key in ("batch_size", "img_size", "num_steps"):
        if key not in meta:
            raise UsageError(f"curriculum {where} has no {key!r}")
        check_positive(f"{key} ({where})", meta[key])
    if meta["num_steps"] < 2:
        raise UsageError(f"num_steps ({where}) must be at least 2 samples per ray, got {meta['num_steps']}")
    split = meta.get("batch_split", 1)
    check_positive(f"batch_split ({where})", split)
    if meta["batch_size"] % split:
        raise UsageError(f"batch_size {meta['batch_size']} ({where}) is not divisible by batch_split {split}")
    if meta["img_size"] & (meta["img_size"] - 1) or meta["img_size"] < 4:
        raise UsageError(f"img_size must be a power of two >= 4, got {meta['img_size']} ({where})")
    for lr in ("gen_lr", "disc_lr"):
        if lr in meta and not (is_number(meta[lr]) and meta[lr] > 0):
            raise UsageError(f"{lr} must be a positive number, got {meta[lr]!r} ({where})")


def validate_curriculum(cur: dict):
    """Ranges and types of the shared keys and of every training stage; UsageError naming the key."""
    if not C.training_stages(cur):
        raise UsageError("the curriculum has no stages (integer keys such as 0: {...})")
    for s in C.training_stages(cur):
        validate_stage(C.extract_metadata(cur, s), f"stage {s}")
    if "fov" in cur:
        check_number("fov (degrees)", cur["fov"], 0, 180, lo_open=True, hi_open=True)
    if "ray_start" in cur or "ray_end" in cur:
        start, end = cur.get("ray_start", 0.88), cur.get("ray_end", 1.12)
        check_number("ray_start", start, 0, lo_open=True)
        check_number("ray_end", end, start, lo_open=True)
    for key in ("h_mean", "v_mean"):
        if key in cur:
            check_number(key, cur[key])
    for key in _NON_NEGATIVE:
        if key in cur:
            check_number(key, cur[key], 0)
    for key, options in _CHOICES.items():
        if key in cur and cur[key] not in options:
            raise UsageError(f"{key} must be one of {', '.join(map(str, options))}, got {cur[key]!r}")
    if "grad_clip" in cur:
        check_number("grad_clip", cur["grad_clip"], 0, lo_open=True)
    if "topk_interval" in cur:
        check_number("topk_interval", cur["topk_interval"], 0, lo_open=True)
    if "topk_v" in cur:
        check_number("topk_v", cur["topk_v"], 0, 1, lo_open=True)
    if "nerf_noise_steps" in cur:
        check_number("nerf_noise_steps", cur["nerf_noise_steps"], 0, lo_open=True)
    for key in ("ema_decay", "ema2_decay"):
        if key in cur:
            check_number(key, cur[key], 0, 1, hi_open=True)
    if "betas" in cur:
        b = cur["betas"]
        if not (isinstance(b, (list, tuple)) and len(b) == 2 and all(is_number(x) and 0 <= x < 1 for x in b)):
            raise UsageError(f"betas must be two numbers in [0, 1), got {b!r}")
    for key in ("latent_dim", "hidden_dim", "map_hidden_dim", "mapping_hidden_layers", "disc_max_channels",
                "num_images"):
        if cur.get(key) is not None:
            check_positive(key, cur[key])
    if "crop_fraction" in cur:
        check_number("crop_fraction", cur["crop_fraction"], 0, 1, lo_open=True)
