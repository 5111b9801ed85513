"""The fit loop and the ``pigan train`` entry point.

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

from .. import curriculums as C
from .. import ops
from ..cli import DivergedError, run_command, writing
from ..logging_utils import ScalarLogger, plot_loss_csv
from .config import CHECKPOINT_NAME, resolve_config
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
        trainer.evaluator = TrainingEvaluator(trainer.args, trainer.cur, trainer.device, trainer.rank,
                                              trainer.world)
    result = trainer.evaluator(trainer.ema.module, step, seed=trainer.args.seed)
    if result is None or logger is None:
        return
    values = scalars(result)
    with writing(logger.path, note=last.note(), remove_partial=False):
        logger.log(step, **values)
    with writing(trainer.out / "metrics.png", note=last.note()):
        trainer.evaluator.plot(trainer.out / "metrics.png")
    print(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
          + f" ({trainer.evaluator.extractor.name})", file=sys.stderr, flush=True)


def fit(trainer: Trainer, stop: StopFlag | None = None) -> str:
    """Train until max_steps, max_time or a stop signal; save a final checkpoint. Returns why it
    stopped: "max_steps", "max_time" or "signal"."""
    args = trainer.args
    last = _LastCheckpoint()
    if args.resume is not None:
        last = _LastCheckpoint(args.resume, trainer.step)
    logger = ScalarLogger(trainer.out, tensorboard=args.tensorboard) if trainer.is_main else None
    if logger is not None and trainer.step > 0:
        with writing(logger.path, note=last.note(), remove_partial=False):
            logger.truncate_after(trainer.step)
    trainer.ensure_data(C.stage_metadata(trainer.cur, trainer.step))
    if trainer.resume_data_key is not None and trainer.resume_data_key != trainer.data.key:
        trainer.position = 0
    if trainer.resume_rng is not None:
        set_rng_state(trainer.resume_rng, trainer.device)
        trainer.resume_rng = None
    bar = None
    if trainer.is_main and not args.no_progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=args.max_steps, initial=trainer.step, desc="train", dynamic_ncols=True,
                   mininterval=1.0, file=sys.stderr)
    t0 = time.perf_counter()
    imgs_seen = 0
    reason = "max_steps"
    nonfinite = 0
    try:
        while trainer.step < args.max_steps:
            meta = C.extract_metadata(trainer.cur, trainer.step)
            trainer.ensure_data(meta)
            real, trainer.epoch, trainer.position = trainer.stream.next(trainer.epoch, trainer.position,
                                                                        trainer.step)
            scalars = trainer.train_step(real, meta)
            step = trainer.step
            imgs_seen += real.shape[0] * trainer.world
            now = time.perf_counter()
            speed = imgs_seen / max(now - t0, 1e-9)
            finite = all(math.isfinite(scalars[k]) for k in ("d_loss", "g_loss"))
            nonfinite = 0 if finite else nonfinite + 1
            if not finite and trainer.is_main:
                print(f"warning: non-finite loss at step {step}: d_loss {scalars['d_loss']}, "
                      f"g_loss {scalars['g_loss']}", file=sys.stderr)
            if logger is not None and (step % args.log_every == 0 or step == 1):
                with writing(logger.path, note=last.note(), remove_partial=False):
                    logger.log(step, **scalars, images_per_s=speed, time_s=now - t0)
            if bar is not None:
                bar.set_postfix(d=f"{scalars['d_loss']:.3f}", g=f"{scalars['g_loss']:.3f}",
                                img=meta["img_size"], ips=f"{speed:.1f}", refresh=False)
                bar.update(1)
            if args.sample_every and step % args.sample_every == 0:
                trainer.write_samples(f"{step:07d}.png", note=last.note())
            if args.eval_every and step % args.eval_every == 0:
                _evaluate(trainer, logger, step, last)
            if args.ckpt_every and step % args.ckpt_every == 0 and nonfinite == 0:
                if trainer.save(note=last.note()) is not None:
                    last = _LastCheckpoint(trainer.checkpoint_path(), step)
            diverged = nonfinite >= args.max_nonfinite
            want_stop = stop is not None and stop.raised
            if args.max_time is not None and now - t0 >= args.max_time:
                want_stop, reason = True, "max_time"
            diverged = any_rank(diverged, trainer.device, trainer.distributed)
            if diverged:
                raise DivergedError(
                    f"the losses were NaN/Inf for {nonfinite or args.max_nonfinite} steps in a row (up to "
                    f"step {step}); stopped without saving: {last.note()}. Lower the learning rates or "
                    "check the curriculum's camera settings")
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
    trainer.final_saved = False
    if nonfinite:
        if trainer.is_main:
            print(f"warning: the last step's losses were not finite: no final checkpoint; {last.note()}",
                  file=sys.stderr)
        return reason
    trainer.save(note=last.note())
    trainer.final_saved = True
    return reason


def run(args, cur, resume_state=None) -> int:
    """Train with validated arguments (see ``resolve_config``); returns the exit code."""
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = init_distributed(args.device)
    stop = StopFlag().install()
    ok = False
    trainer = None
    try:
        with ops.use_backend(args.backend):
            trainer = Trainer(args, cur, resume_state)
            if trainer.is_main:
                stale = remove_stale_temporaries(trainer.out, CHECKPOINT_NAME)
                if stale:
                    print(f"removed {len(stale)} temporary file(s) left by an interrupted checkpoint write "
                          f"in {trainer.out}", file=sys.stderr)
                meta = C.stage_metadata(cur, trainer.step)
                print(f"pigan train: device {trainer.device}, backend {args.backend}, precision "
                      f"{trainer.amp_dtype or 'fp32'}, world {trainer.world}, from step {trainer.step} to "
                      f"{args.max_steps}, img {meta['img_size']}, batch {meta['batch_size']}, out {args.out}",
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
                    wrote = [] if args.no_final else trainer.write_final(note=f"the checkpoint {ckpt} was written")
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


def _main(argv) -> int:
    args, cur, resume_state = resolve_config(argv)
    return run(args, cur, resume_state)


def main(argv=None) -> int:
    """``pigan train [options]``; see ``pigan train --help``."""
    return run_command("pigan train", _main, argv)
