"""The fit loop and ``run``, a whole training run from a resolved ``TrainConfig``.

``fit`` steps the trainer until max_steps, max_time or a stop signal, logging scalars, writing
sample grids and checkpoints on schedule. A run whose losses stay NaN/Inf for ``--max-nonfinite``
steps stops with DivergedError; a checkpoint is never written from a step with non-finite losses, so
the last one on disk is the last finite state. A failed write (full disk, read-only folder) stops
with OutputError naming the file and the last good checkpoint.
"""
from __future__ import annotations

import math
import sys
import time

from .. import ops
from ..common import DivergedError, progress, writing
from ..logging_utils import ScalarLogger, plot_loss_csv
from ..model import curriculums as C
from .config import CHECKPOINT_NAME, TrainConfig
from .distributed import StopFlag, any_rank, init_distributed, shutdown_distributed
from .state import remove_stale_temporaries, set_rng_state
from .trainer import Trainer


class _LastCheckpoint:
    """Where the last good checkpoint is, for error messages."""

    def __init__(self, path=None, step=None):
        self.path, self.step = path, step

    def note(self) -> str:
        if self.path is None:
            return "no checkpoint was written by this run"
        return f"the last good checkpoint is {self.path} (step {self.step})"


def _evaluate(trainer: Trainer, logger, step: int, last: _LastCheckpoint):
    """FID / KID x100 / IS of the EMA generator (every rank renders; rank 0 logs and plots)."""
    from .evaluation import TrainingEvaluator, scalars

    if trainer.evaluator is None:
        trainer.evaluator = TrainingEvaluator(trainer.config, trainer.cur, trainer.device, trainer.rank,
                                              trainer.world)
    result = trainer.evaluator(trainer.ema.module, step, seed=trainer.config.seed)
    if result is None or logger is None:
        return
    values = scalars(result)
    with writing(logger.path, note=last.note(), remove_partial=False):
        logger.log(step, **values)
    with writing(trainer.out / "metrics.png", note=last.note()):
        trainer.evaluator.plot(trainer.out / "metrics.png")
    print(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
          + f" ({trainer.evaluator.extractor.name})", file=sys.stderr, flush=True)


def _open_logger(trainer: Trainer, last: _LastCheckpoint):
    """log.csv (and TensorBoard) on rank 0, cut back to the resumed step; None on other ranks."""
    if not trainer.is_main:
        return None
    logger = ScalarLogger(trainer.out, tensorboard=trainer.config.tensorboard)
    if trainer.step > 0:
        with writing(logger.path, note=last.note(), remove_partial=False):
            logger.truncate_after(trainer.step)
    return logger


def _restore_position(trainer: Trainer):
    """The data stream of the stage in force and, when resuming, the checkpoint's RNG state."""
    trainer.ensure_data(C.stage_metadata(trainer.cur, trainer.step))
    if trainer.resume_data_key is not None and trainer.resume_data_key != trainer.data.key:
        trainer.position = 0
    if trainer.resume_rng is not None:
        set_rng_state(trainer.resume_rng, trainer.device)
        trainer.resume_rng = None


def _report(trainer: Trainer, logger, bar, scalars: dict, meta: dict, speed: float, elapsed: float,
            last: _LastCheckpoint):
    """The step's scalars to log.csv (on the log schedule and at step 1) and the progress bar."""
    step, config = trainer.step, trainer.config
    if logger is not None and (step % config.log_every == 0 or step == 1):
        with writing(logger.path, note=last.note(), remove_partial=False):
            logger.log(step, **scalars, images_per_s=speed, time_s=elapsed)
    if bar is not None:
        bar.set_postfix(d=f"{scalars['d_loss']:.3f}", g=f"{scalars['g_loss']:.3f}",
                        img=meta["img_size"], ips=f"{speed:.1f}", refresh=False)
        bar.update(1)


def _scheduled_outputs(trainer: Trainer, logger, last: _LastCheckpoint, finite: bool) -> _LastCheckpoint:
    """Sample grid, metrics and checkpoint when their schedules say so (a checkpoint only from a step
    with finite losses); returns where the last good checkpoint now is."""
    step, config = trainer.step, trainer.config
    if config.sample_every and step % config.sample_every == 0:
        trainer.write_samples(f"{step:07d}.png", note=last.note())
    if config.eval_every and step % config.eval_every == 0:
        _evaluate(trainer, logger, step, last)
    if config.ckpt_every and step % config.ckpt_every == 0 and finite:
        if trainer.save(note=last.note()) is not None:
            return _LastCheckpoint(trainer.checkpoint_path(), step)
    return last


def _check_finite(trainer: Trainer, scalars: dict, nonfinite: int) -> int:
    """The count of consecutive steps with non-finite losses, warning on each (rank 0)."""
    if all(math.isfinite(scalars[k]) for k in ("d_loss", "g_loss")):
        return 0
    if trainer.is_main:
        print(f"warning: non-finite loss at step {trainer.step}: d_loss {scalars['d_loss']}, "
              f"g_loss {scalars['g_loss']}", file=sys.stderr)
    return nonfinite + 1


def _stop_if_diverged(trainer: Trainer, nonfinite: int, last: _LastCheckpoint):
    """DivergedError on every rank when any rank's losses were non-finite ``--max-nonfinite`` steps in a row."""
    limit = trainer.config.max_nonfinite
    if any_rank(nonfinite >= limit, trainer.device, trainer.distributed):
        raise DivergedError(
            f"the losses were NaN/Inf for {nonfinite or limit} steps in a row (up to "
            f"step {trainer.step}); stopped without saving: {last.note()}. Lower the learning rates or "
            "check the curriculum's camera settings")


def _final_save(trainer: Trainer, nonfinite: int, last: _LastCheckpoint):
    trainer.final_saved = False
    if nonfinite:
        if trainer.is_main:
            print(f"warning: the last step's losses were not finite: no final checkpoint; {last.note()}",
                  file=sys.stderr)
        return
    trainer.save(note=last.note())
    trainer.final_saved = True


def fit(trainer: Trainer, stop: StopFlag | None = None) -> str:
    """Train until max_steps, max_time or a stop signal; save a final checkpoint. Returns why it
    stopped: "max_steps", "max_time" or "signal"."""
    config = trainer.config
    last = _LastCheckpoint(config.resume, trainer.step) if config.resume is not None else _LastCheckpoint()
    logger = _open_logger(trainer, last)
    _restore_position(trainer)
    bar = progress(None, enabled=trainer.is_main and not config.no_progress, desc="train",
                   total=config.max_steps, initial=trainer.step, mininterval=1.0, file=sys.stderr, leave=True)
    t0 = time.perf_counter()
    imgs_seen, nonfinite, reason = 0, 0, "max_steps"
    try:
        while trainer.step < config.max_steps:
            meta = C.extract_metadata(trainer.cur, trainer.step)
            trainer.ensure_data(meta)
            real, trainer.epoch, trainer.position = trainer.stream.next(trainer.epoch, trainer.position,
                                                                        trainer.step)
            scalars = trainer.train_step(real, meta)
            imgs_seen += real.shape[0] * trainer.world
            now = time.perf_counter()
            nonfinite = _check_finite(trainer, scalars, nonfinite)
            _report(trainer, logger, bar, scalars, meta, imgs_seen / max(now - t0, 1e-9), now - t0, last)
            last = _scheduled_outputs(trainer, logger, last, finite=nonfinite == 0)
            want_stop = stop is not None and stop.raised
            if config.max_time is not None and now - t0 >= config.max_time:
                want_stop, reason = True, "max_time"
            _stop_if_diverged(trainer, nonfinite, last)
            if any_rank(want_stop, trainer.device, trainer.distributed):
                if reason != "max_time":
                    reason = "signal"
                break
    finally:
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    trainer.elapsed = time.perf_counter() - t0
    _final_save(trainer, nonfinite, last)
    return reason


def run(config: TrainConfig, cur: dict, resume_state=None) -> int:
    """Train with a resolved config (see ``resolve_config``); returns the exit code."""
    import torch

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    started = init_distributed(config.device)
    stop = StopFlag().install()
    ok = False
    trainer = None
    try:
        with ops.use_backend(config.backend):
            trainer = Trainer(config, cur, resume_state)
            if trainer.is_main:
                stale = remove_stale_temporaries(trainer.out, CHECKPOINT_NAME)
                if stale:
                    print(f"removed {len(stale)} temporary file(s) left by an interrupted checkpoint write "
                          f"in {trainer.out}", file=sys.stderr)
                meta = C.stage_metadata(cur, trainer.step)
                print(f"pigan train: device {trainer.device}, backend {config.backend}, precision "
                      f"{trainer.amp_dtype or 'fp32'}, world {trainer.world}, from step {trainer.step} to "
                      f"{config.max_steps}, img {meta['img_size']}, batch {meta['batch_size']}, out {config.out}",
                      flush=True)
            reason = fit(trainer, stop)
            if trainer.is_main:
                ckpt = trainer.checkpoint_path()
                loss_png = trainer.out / "loss.png"
                with writing(loss_png, note=f"the checkpoint {ckpt} was written"):
                    plot_loss_csv(trainer.out / "log.csv", loss_png)
                if reason == "signal":
                    print(f"stopped by signal {stop.signum} at step {trainer.step}; checkpoint "
                          f"{ckpt}; continue with --resume", flush=True)
                else:
                    wrote = [] if config.no_final else trainer.write_final(note=f"the checkpoint {ckpt} was written")
                    wrote += ([ckpt] if trainer.final_saved else []) + [loss_png]
                    print(f"done: {trainer.step} steps in {trainer.elapsed:.1f} s ({reason}); wrote "
                          f"{', '.join(str(p) for p in wrote)}", flush=True)
        ok = True
        return 0
    finally:
        stop.restore()
        trainer = None  # drop the DDP wrappers (and their hold on the process group) first
        if started:
            shutdown_distributed(ok)
