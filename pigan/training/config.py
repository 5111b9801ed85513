"""A training run's settings (``TrainConfig``) and their resolution against the curriculum.

``resolve_config`` fills what the curriculum decides (max_steps, the logging / sample / checkpoint
intervals, the data, the evaluation settings), applies the overrides, and checks everything that can
be checked before a model or a dataset is built, so a bad value is one ``UsageError`` before any
work. Curricula are loaded and validated by ``pigan.model.curriculum_loading``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import ops
from ..common import UsageError, check_number, check_output_dir, check_positive, pick_device
from ..data import PROCEDURAL_NAMES
from ..model import curriculums as C
from ..model.curriculum_loading import apply_overrides, load_curriculum, validate_curriculum
from .distributed import local_rank, rank

__all__ = ["CHECKPOINT_NAME", "DEFAULT_MAX_STEPS", "DEFAULT_MAX_NONFINITE", "TrainConfig", "resolve_config",
           "load_curriculum", "apply_overrides", "validate_curriculum"]

CHECKPOINT_NAME = "checkpoint.pt"
DEFAULT_MAX_STEPS = 100000
# Training stops when the losses are NaN/Inf this many steps in a row.
DEFAULT_MAX_NONFINITE = 5


@dataclass
class TrainConfig:
    """One field per ``pigan train`` option, same names and defaults (``None``: decided by the
    curriculum, or by the checkpoint when resuming). ``resolve_config`` returns a copy with every
    ``None`` that has a resolved value filled in."""
    # what to train, on what, where
    curriculum: str | None = None          # a name or a .json/.py file; None: demo, or the checkpoint's
    sets: list[str] = field(default_factory=list)       # "KEY=VALUE" overrides (see apply_overrides)
    data: str | None = None
    out: str = "runs/pigan"
    resume: str | None = None              # a checkpoint path, or "auto" for <out>/checkpoint.pt
    # how long
    max_steps: int | None = None
    max_time: float | None = None          # seconds
    # stage keys forced in every stage
    batch_size: int | None = None
    img_size: int | None = None
    num_steps: int | None = None
    batch_split: int | None = None
    # how
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    backend: str = "auto"
    precision: str = "auto"                # auto | fp32 | bf16 | fp16
    num_workers: int | None = None
    num_images: int | None = None
    max_nonfinite: int = DEFAULT_MAX_NONFINITE
    # outputs
    sample_every: int | None = None
    log_every: int | None = None
    ckpt_every: int | None = None
    num_samples: int = 16
    no_final: bool = False
    no_progress: bool = False
    tensorboard: bool = True
    # metrics during training (see pigan.training.evaluation)
    eval_every: int | None = None
    eval_real: str | None = None
    eval_real_count: int | None = None
    eval_fake_count: int | None = None
    eval_size: int | None = None
    inception: str | None = None


_STAGE_KEYS = ("batch_size", "img_size", "num_steps", "batch_split")


def _load_resume(config: TrainConfig, out: Path):
    """The checkpoint named by ``config.resume`` (None when not resuming); sets ``config.resume`` to its path."""
    from .state import load_training_checkpoint

    if config.resume is None:
        return None
    ckpt = out / CHECKPOINT_NAME if config.resume == "auto" else Path(config.resume).expanduser()
    if not ckpt.is_file():
        raise UsageError(f"--resume: no checkpoint at {str(ckpt)!r}")
    config.resume = str(ckpt)
    return load_training_checkpoint(ckpt)


def _curriculum(config: TrainConfig, resume_state) -> dict:
    """The curriculum with the overrides and the forced stage keys applied, validated."""
    if config.curriculum is None and resume_state is not None:
        cur = C.from_json(resume_state["curriculum"])
    else:
        cur = load_curriculum(config.curriculum or "demo")
    apply_overrides(cur, config.sets)
    for key in _STAGE_KEYS:
        v = getattr(config, key)
        if v is not None:
            for s in C.training_stages(cur):
                cur[s][key] = v
    validate_curriculum(cur)
    return cur


def _schedule(config: TrainConfig, cur: dict):
    """max_steps and the logging / sample / checkpoint intervals, from the curriculum when unset."""
    if config.max_steps is None:
        end = C.final_step(cur)
        config.max_steps = int(cur.get("max_steps") or (end if math.isfinite(end) else DEFAULT_MAX_STEPS))
    check_positive("--max-steps", config.max_steps)
    if config.max_time is not None and config.max_time != math.inf:        # inf: no limit
        check_number("--max-time", config.max_time, 0, lo_open=True)
    for name, default in (("sample_every", cur.get("sample_every", 500)), ("log_every", cur.get("log_every", 10)),
                          ("ckpt_every", cur.get("ckpt_every", 1000))):
        if getattr(config, name) is None:
            setattr(config, name, int(default))
        check_positive("--" + name.replace("_", "-"), getattr(config, name), allow_zero=True)
    config.log_every = max(1, config.log_every)


def _check_run_options(config: TrainConfig):
    check_positive("--max-nonfinite", config.max_nonfinite)
    check_positive("--num-samples", config.num_samples)
    if config.num_images is not None:
        check_positive("--num-images", config.num_images)
    if config.num_workers is not None:
        check_positive("--num-workers", config.num_workers, allow_zero=True)
    if config.threads is not None:
        check_positive("--threads", config.threads)


def _check_device_and_backend(config: TrainConfig):
    pick_device(config.device, local_rank=local_rank())
    ok, why = ops.backend_status(config.backend)
    if not ok:
        raise UsageError(f"--backend {config.backend}: {why}")


def _resolve_data(config: TrainConfig, cur: dict):
    if config.data is None:
        dataset = str(cur.get("dataset") or "").lower()
        config.data = dataset if dataset in PROCEDURAL_NAMES else cur.get("dataset_path") or "procedural"
    if str(config.data).lower() not in PROCEDURAL_NAMES:
        d = Path(config.data).expanduser()
        if not d.exists():
            raise UsageError(f"data folder {str(d)!r} does not exist")
        if not d.is_dir():
            raise UsageError(f"data folder {str(d)!r} is not a directory")


def resolve_config(config: TrainConfig):
    """Validate ``config`` and fill it from the curriculum, before touching models or data.

    Returns (resolved copy of config, curriculum, resume_state or None); ``config`` itself is left
    as given. Raises UsageError with one clear message (OutputError when ``out`` is not writable).
    """
    from . import evaluation

    config = dataclasses.replace(config, sets=list(config.sets))
    out = Path(config.out).expanduser()
    resume_state = _load_resume(config, out)
    cur = _curriculum(config, resume_state)
    _schedule(config, cur)
    _check_run_options(config)
    evaluation.resolve(config, cur)
    _resolve_data(config, cur)
    _check_device_and_backend(config)
    if rank() == 0:
        check_output_dir(out)
    config.out = str(out)
    return config, copy.deepcopy(cur), resume_state
