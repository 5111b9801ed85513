"""Benchmarks of pigan-kernels: `pytest benchmarks --benchmark-only` (pytest-benchmark).

Files are named bench_*.py; this hook collects them without changing the project's test discovery.
Each case records its device, shape and, where it applies, the bytes saved for backward in
extra_info; groups put the reference and the native case of one workload side by side.
"""
import pytest
import torch


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def machine_info():
    info = {"torch": torch.__version__}
    if torch.cuda.is_available():
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
