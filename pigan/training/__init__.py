"""`pigan train`: pi-GAN's training loop on the engine's model.

One step = a discriminator update (softplus non-saturating loss, R1 on reals, position/latent loss
on fakes) then a generator update (top-k softplus loss, position/latent loss), each over
``batch_split`` sub-batches with gradient accumulation and gradient-norm clipping; then the two
EMAs of the generator are updated (torch_ema's warm-up, as pi-GAN).

Differences from pi-GAN's script, on purpose:
- sub-batch losses are averaged over ``batch_split`` for both networks, so ``batch_split`` only
  trades memory for time and never changes the update. pi-GAN sums its generator's sub-batch
  losses, so there the clipping threshold is divided by ``batch_split`` (clipping engages exactly
  when pi-GAN's does) and the logged norm multiplied by it; Adam's step ignores the gradient's
  scale but for its ``eps``, which thus weighs ``batch_split`` times more in our generator step.
  pi-GAN's discriminator loss is one mean over the whole batch, which the averaged sub-batch losses
  equal: its clipping threshold and logged norm are pi-GAN's as they are. So logged gradient norms
  are in pi-GAN's scale. The discriminator step is split too (pi-GAN splits only the generation of
  its fakes), with the same gradient.
- the data order and flips are a function of (seed, epoch, position, step), and the sample grids
  run under a forked RNG, so a resumed run continues exactly as an uninterrupted one.
- the discriminator sees reals and fakes in one forward pass (same maths; one DDP forward per
  backward), and the generator step runs the discriminator outside DDP with its grads off.
- the curriculum's ``batch_size`` is per process, as in pi-GAN's multi-GPU runs.

A run is described by a ``TrainConfig`` (one field per ``pigan train`` option); ``resolve_config``
fills it from the curriculum and checks it, ``run`` trains. The command line (argparse) is
``pigan.cli.train``.

Modules: ``config`` (TrainConfig and its resolution against the curriculum), ``loss``, ``step`` (the
shared accumulate-clip-step), ``state`` (RNG, EMA, checkpoint reading), ``data`` (batch streaming),
``distributed``, ``trainer`` (models, optimisers, one training step), ``evaluation`` (FID / KID / IS
every ``--eval-every`` steps), ``loop`` (the fit loop, run).
"""
from .config import (CHECKPOINT_NAME, TrainConfig, apply_overrides, load_curriculum, resolve_config,
                     validate_curriculum)
from .data import BatchStream, StageData
from .loop import fit, run
from .state import EMA, ema_decay
from .trainer import Trainer, build_models, model_configs

__all__ = ["CHECKPOINT_NAME", "TrainConfig", "apply_overrides", "load_curriculum", "resolve_config",
           "validate_curriculum", "BatchStream", "StageData", "fit", "run", "EMA", "ema_decay",
           "Trainer", "build_models", "model_configs"]
