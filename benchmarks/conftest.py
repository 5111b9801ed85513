"""Benchmarks of pigan-kernels: `pytest benchmarks --benchmark-only` (pytest-benchmark).

Files are named bench_*.py; this hook collects them without changing the project's test discovery.
Each case records in extra_info its device, its ``kind`` (the implementation timed), whether it is
``ours`` (the path pigan-kernels gives a user) or a peer, the first call's time (``warmup_s``:
torch.compile, Triton autotuning, caches) and on CUDA the peak memory of one call (``peak_bytes``).
Cases of one workload share a group, so every ratio in a group comes from one run.

Cases marked ``gpucheck`` are the ones scripts/gpu_check.sh runs: the CUDA cases at pi-GAN's GPU
sizes, or, with ``PIGAN_BENCH_TINY=1`` (its dry run), the same cases on the CPU at tiny sizes.
``PIGAN_BENCH_JSONL=FILE`` appends each finished case to FILE as one JSON line, so a run cut short
by a time limit still leaves every case it finished. ``PIGAN_BENCH_COMPILE_BACKEND`` picks the
torch.compile backend of the "compile" cases (default inductor).
"""
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

# The input makers the tests use (tests/inputs.py); appended so that this folder's conftest wins.
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))

TINY = os.environ.get("PIGAN_BENCH_TINY", "0") == "1"
COMPILE_BACKEND = os.environ.get("PIGAN_BENCH_COMPILE_BACKEND", "inductor")
CUDA = torch.cuda.is_available()
gpucheck = pytest.mark.gpucheck


def pytest_configure(config):
    config.addinivalue_line("markers", "gpucheck: a benchmark that scripts/gpu_check.sh runs")


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config, items):
    # torch.compile cases last: their warm-up is the slowest part, and a time limit should cut them
    # rather than the cases after them.
    items.sort(key=lambda item: "compile" in item.name)


@pytest.fixture(autouse=True)
def _stream_result(request):
    yield
    path = os.environ.get("PIGAN_BENCH_JSONL")
    bm = request.node.funcargs.get("benchmark")
    meta = getattr(bm, "stats", None)
    if not path or meta is None:
        return
    st = meta.stats
    rec = {"name": request.node.name, "group": bm.group, "extra_info": dict(bm.extra_info),
           "stats": {k: getattr(st, k) for k in ("min", "max", "mean", "median", "stddev", "rounds")}}
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def devices():
    """Devices of the cases that belong to both tables (CPU and GPU); only the cases gpu_check runs
    carry the gpucheck mark: the CUDA ones, or the CPU ones in a tiny rehearsal."""
    out = [pytest.param("cpu", marks=[gpucheck] if TINY else [])]
    if CUDA:
        out.append(pytest.param("cuda", marks=[gpucheck]))
    return out


def check_devices():
    """Devices of the cases that exist only for gpu_check (GPU sizes): CUDA, or the CPU when tiny."""
    out = [pytest.param("cpu", marks=[gpucheck])] if TINY else []
    if CUDA:
        out.append(pytest.param("cuda", marks=[gpucheck]))
    return out


def all_devices():
    """devices() and check_devices() together, each device once (a CUDA case carries the mark)."""
    out = {}
    for p in devices() + check_devices():
        out.setdefault(p.values[0], p)
    return list(out.values())


def size(device, cpu, cuda, tiny):
    """The problem size of a case: tiny in a rehearsal, else the device's."""
    if TINY:
        return tiny
    return cuda if device == "cuda" else cpu


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def machine_info():
    info = {"torch": torch.__version__}
    if CUDA:
        info["gpu"] = torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["threads"] = torch.get_num_threads()
    try:  # the ISA level of pigan._C's own vectorised CPU loops (PIGAN_CPU_ISA forces one)
        import pigan._C
        info["cpu_isa"] = pigan._C.cpu_isa()
    except (ImportError, AttributeError):
        info["cpu_isa"] = None
    return info


def saved_bytes(fn):
    """(bytes of the distinct storages autograd saves for backward while running fn, fn's result)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


def skip_unless_backend(name, device):
    from pigan import ops
    ok, why = ops.backend_status(name, torch.device(device))
    if not ok:
        pytest.skip(f"backend {name!r} on {device}: {why}")


def run_case(benchmark, fn, device, *, kind, ours, rounds, skip_on_error=False, **extra):
    """Time fn (which runs the workload once): the first call (compile/autotune) as warmup_s, the
    peak CUDA memory of one warm call as peak_bytes, then ``rounds`` timed rounds."""
    def call():
        out = fn()
        sync(device)
        return out

    if TINY:  # a rehearsal walks the code; its timings mean nothing
        rounds = min(rounds, 2)
    benchmark.extra_info.update(**machine_info(), device=device, kind=kind, ours=ours, **extra)
    t0 = time.perf_counter()
    try:
        call()
    except Exception as exc:
        if not skip_on_error:
            raise
        # torch.compile unavailable or failing here: say so in the log rather than report a row.
        pytest.skip(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
    benchmark.extra_info["warmup_s"] = round(time.perf_counter() - t0, 4)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        call()
        benchmark.extra_info["peak_bytes"] = torch.cuda.max_memory_allocated()
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=1 if device == "cuda" else 0, iterations=1)
