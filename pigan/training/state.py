"""What a checkpoint holds beyond the weights: RNG state, the generator EMAs, and reading a training
checkpoint back (with a clear error when the command line asks for another architecture)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from ..common import UsageError


# ---------------------------------------------------------------------------- RNG
def rng_state(device: torch.device) -> dict:
    """torch, numpy, python (and the device's CUDA) generator states as checkpoint-safe values."""
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


def set_rng_state(state: dict, device: torch.device):
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((state["python_version"], tuple(state["python_state"]), None))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def seed_all(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# ---------------------------------------------------------------------------- EMA
def ema_decay(decay: float, update: int) -> float:
    """torch_ema's warm-up (pi-GAN's EMA): the ``update``-th update (1-based) uses
    min(decay, (1 + update) / (10 + update)), so the first one already averages (2/11 old, 9/11 new)."""
    return min(decay, (1 + update) / (10 + update))


class EMA(AveragedModel):
    """An exponential moving average of a model's parameters with torch_ema's warm-up.

    Stored as an ``AveragedModel`` (``module.*`` and ``n_averaged``), the checkpoint format, but every
    update averages, the first included (AveragedModel's own first update copies the weights).
    Buffers are not averaged (they keep the values they had when the EMA was made), as in torch_ema.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__(model, use_buffers=False)
        self.decay = float(decay)

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module):
        update = int(self.n_averaged) + 1
        d = ema_decay(self.decay, update)
        ema = [p.detach() for p in self.module.parameters()]
        new = [p.detach().to(e.device) for p, e in zip(model.parameters(), ema)]
        floats = [(e, n) for e, n in zip(ema, new) if e.is_floating_point() or e.is_complex()]
        if floats:
            # torch_ema's s -= (1 - d) * (s - p), one fused call for all parameters
            torch._foreach_lerp_([e for e, _ in floats], [n for _, n in floats], 1 - d)
        for e, n in zip(ema, new):
            if not (e.is_floating_point() or e.is_complex()):
                e.copy_(n)
        self.n_averaged += 1


# ---------------------------------------------------------------------------- checkpoints
def load_training_checkpoint(path) -> dict:
    from ..checkpoints import load_checkpoint

    state = load_checkpoint(path)                 # a bad file is a CheckpointError, i.e. a UsageError
    if "training" not in state or "ema" not in state:
        raise UsageError(f"{str(path)!r} is not a `pigan train` checkpoint (no training state); "
                         "it can be rendered, not resumed")
    state["curriculum"] = state["training"]["curriculum"]
    return state


def architecture_differences(state: dict, generator, discriminator) -> list[str]:
    """``"generator hidden_dim: 32 in the checkpoint, 16 now"`` for each model setting that differs
    between a checkpoint and freshly built models."""
    from ..checkpoints import discriminator_config, generator_config

    out = []
    for name, model, make in (("generator", generator, generator_config),
                              ("discriminator", discriminator, discriminator_config)):
        saved = state.get(f"{name}_config")
        if saved is None:
            continue
        now = make(model)
        for key in sorted(set(saved) | set(now)):
            if saved.get(key) != now.get(key):
                out.append(f"{name} {key}: {saved.get(key, '(default)')} in the checkpoint, "
                           f"{now.get(key, '(default)')} now")
    return out


def check_same_architecture(state: dict, generator, discriminator, path):
    diffs = architecture_differences(state, generator, discriminator)
    if diffs:
        raise UsageError(f"--resume {path}: the checkpoint's models differ from the command line's "
                         f"({'; '.join(diffs)}); resume without changing these settings")


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files (atomic writes of a run that was killed mid-write)."""
    removed = []
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed
