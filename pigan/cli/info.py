"""``pigan info``: versions, devices and the kernel backends (with why any is unavailable)."""
from __future__ import annotations

import argparse
import platform

from pigan.cli import ArgumentParser, run_command


def build_parser() -> argparse.ArgumentParser:
    return ArgumentParser(prog="pigan info", description="Print versions, devices and the kernel backends.")


def report() -> list[str]:
    import torch

    import pigan
    from pigan import ops

    lines = [f"pigan-kernels {pigan.__version__}",
             f"python {platform.python_version()} ({platform.platform()})",
             f"torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'})"]
    try:
        import triton
        lines.append(f"triton {triton.__version__}")
    except Exception as exc:
        lines.append(f"triton: not importable ({type(exc).__name__})")
    if torch.cuda.is_available():
        lines += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    else:
        lines.append("cuda: no device")
    lines += [f"backend in force: {ops.current_backend()}", "backends:"]
    for name, st in ops.available_backends().items():
        where = ", ".join(d for d in ("cpu", "cuda") if st.get(d)) or "-"
        line = f"  {name:9s} {'available' if st['available'] else 'unavailable':11s} devices: {where}"
        if st.get("reason"):
            line += f"  ({st['reason']})"
        lines.append(line)
        lines += [f"            note: {note}" for note in st.get("notes", ())]
    build = ops.native_build_info()
    if build is not None:
        if isinstance(build, dict) and build.get("cpu_isa"):
            lines.append(f"cpu loops: {build['cpu_isa']} (this CPU: {build.get('cpu_isa_supported')}; "
                         "PIGAN_CPU_ISA=baseline|avx2|avx512 forces a level)")
        lines.append(f"native build: {build}")
    return lines


def _main(argv) -> int:
    build_parser().parse_args(argv)
    print("\n".join(report()))
    return 0


def main(argv=None) -> int:
    return run_command("pigan info", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
