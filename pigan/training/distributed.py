"""Process rank and world size (torchrun's environment), process-group start and teardown, and the
stop flag that SIGINT / SIGTERM raise and every rank agrees on. The device of a process is
``pigan.common.pick_device(name, local_rank=local_rank())``."""
from __future__ import annotations

import gc
import os
import signal
import sys

import torch
import torch.distributed as dist


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device_spec: str) -> bool:
    """Join the process group when started by torchrun with WORLD_SIZE > 1; True if this call did."""
    if world() <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() and device_spec != "cpu" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend=backend)
    return True


def shutdown_distributed(clean: bool):
    """Leave the process group. Call after the DDP wrappers are dropped: a gloo rank that leaves while
    its reducer still holds the group can abort at interpreter exit. ``clean``: all ranks got here
    normally, so wait for each other first."""
    gc.collect()
    if clean:
        try:
            dist.barrier()
        except Exception as exc:  # a peer already gone: still release our side
            print(f"pigan train: warning: barrier before shutdown failed: {exc}", file=sys.stderr)
    dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device, distributed: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if not distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item() > 0


def barrier(distributed: bool):
    if distributed:
        dist.barrier()


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
