#!/usr/bin/env python3
"""The two files scripts/gpu_check.sh leaves as its verdict, and the environment record it starts with.

    gpu_check_report.py --env OUT/env.json --nvidia-smi OUT/nvidia-smi.txt --arch 9.0
    gpu_check_report.py --summarize OUT       # OUT/summary.md + OUT/summary.json

--summarize reads what the phases left in OUT (phases.tsv, env.json, build_info.json, the junit XML
files or, for a phase cut short, its pytest -v log, bench.jsonl) and never fails on a missing piece:
a phase that produced nothing shows as such.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_summary  # noqa: E402

BUDGET_NOTE = "budget per phase and the 470 s total: see the header of scripts/gpu_check.sh"


def environment(nvidia_smi: str | None, arch: str | None) -> dict:
    import torch
    env = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "dry_run": os.environ.get("PIGAN_GPU_DRY_RUN") == "1", "python": platform.python_version(),
           "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cpus": os.cpu_count(),
           "cuda_available": torch.cuda.is_available(), "arch_list": arch or None}
    try:
        import triton
        env["triton"] = triton.__version__
    except Exception as exc:  # triton is optional: say why it is missing
        env["triton"] = f"unavailable ({type(exc).__name__}: {exc})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   gpu_memory_gib=round(p.total_memory / 2 ** 30, 1))
    if nvidia_smi and os.path.exists(nvidia_smi):
        with open(nvidia_smi) as f:
            env["nvidia_smi"] = f.read().strip()
    cuda_home = os.environ.get("CUDA_HOME")
    if cuda_home:
        try:
            out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True,
                                 text=True, timeout=20).stdout
            m = re.search(r"release (\S+),", out)
            env["nvcc"] = f"{m.group(1) if m else '?'} ({cuda_home})"
        except (OSError, subprocess.SubprocessError) as exc:
            env["nvcc"] = f"unavailable ({exc})"
    return env


def read_phases(out: str) -> list[dict]:
    phases = []
    path = os.path.join(out, "phases.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, rc, seconds, budget = line.rstrip("\n").split("\t")
                status = {"0": "ok", "124": "out of time", "137": "out of time", "skipped": "skipped"}.get(
                    rc, f"failed (exit {rc})")
                phases.append({"phase": name, "status": status, "rc": rc, "seconds": int(seconds),
                               "budget_s": int(budget)})
    return phases


def junit_counts(path: str) -> dict | None:
    """Counts and failing test ids of a junit XML file, or None when there is none."""
    if not os.path.exists(path):
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    c = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    c["passed"] = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    c["failed_ids"] = [f"{tc.get('classname')}::{tc.get('name')}" for s in suites for tc in s.iter("testcase")
                       if tc.find("failure") is not None or tc.find("error") is not None]
    c["source"] = os.path.basename(path)
    return c


_VERBOSE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)")


def log_counts(path: str) -> dict | None:
    """Counts from a `pytest -v` log, for a run killed before it wrote its junit file."""
    if not os.path.exists(path):
        return None
    seen = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = _VERBOSE.match(line)
            if m:
                seen[m.group(1)] = m.group(2)
    if not seen:
        return None
    vals = list(seen.values())
    c = {"tests": len(vals), "passed": vals.count("PASSED") + vals.count("XPASS"),
         "failures": vals.count("FAILED"), "errors": vals.count("ERROR"),
         "skipped": vals.count("SKIPPED") + vals.count("XFAIL"),
         "failed_ids": [k for k, v in seen.items() if v in ("FAILED", "ERROR")],
         "source": os.path.basename(path) + " (cut short: counts of the tests that finished)"}
    return c


def _load_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def summarize(out: str) -> dict:
    env = _load_json(os.path.join(out, "env.json")) or {}
    jsonl = os.path.join(out, "bench.jsonl")
    records = bench_summary.load_records([jsonl]) if os.path.exists(jsonl) else []
    tests = junit_counts(os.path.join(out, "gpu_tests.xml")) or log_counts(os.path.join(out, "tests.log"))
    phases = read_phases(out)
    return {
        "title": "pigan-kernels GPU check" + (" (DRY RUN on the CPU: not measurements)" if env.get("dry_run") else ""),
        "date_utc": env.get("date_utc"), "dry_run": env.get("dry_run"), "environment": env,
        "phases": phases, "all_phases_ok": bool(phases) and all(p["status"] == "ok" for p in phases),
        "build_info": _load_json(os.path.join(out, "build_info.json")),
        "build_tests": junit_counts(os.path.join(out, "build_tests.xml")),
        "gpu_tests": tests, "benchmarks": bench_summary.summarize(records),
        "machine": bench_summary.machine_line(records) if records else None,
    }


def _tests_line(c: dict | None) -> str:
    if not c:
        return "no result (the phase produced neither a junit file nor a test log line)"
    return (f"{c['passed']} passed, {c['failures']} failed, {c['errors']} errors, {c['skipped']} skipped "
            f"of {c['tests']} ({c['source']})")


def to_markdown(s: dict) -> str:
    env = s["environment"]
    lines = [f"# {s['title']}", "", f"Date (UTC): {s['date_utc']}", ""]
    if env:
        lines.append("Machine: " + "; ".join(f"{k} {env[k]}" for k in (
            "gpu", "capability", "sms", "gpu_memory_gib", "cpus", "python", "torch", "torch_cuda", "triton",
            "nvcc", "arch_list") if env.get(k) is not None))
        if env.get("nvidia_smi"):
            lines.append(f"nvidia-smi: {env['nvidia_smi']}")
        lines.append("")
    lines += ["| phase | status | seconds | budget s |", "|---|---|---|---|"]
    lines += [f"| {p['phase']} | {p['status']} | {p['seconds']} | {p['budget_s']} |" for p in s["phases"]]
    lines += ["", f"({BUDGET_NOTE})", ""]
    if not s["dry_run"] and s["build_info"] and not s["build_info"].get("cuda"):
        lines += ["**pigan._C was built without its CUDA kernels** (see build.log): every native CUDA "
                  "result below is missing or comes from a fallback.", ""]
    lines += [f"Build: {json.dumps(s['build_info']) if s['build_info'] else 'no build info'}",
              f"Build tests: {_tests_line(s['build_tests'])}", f"GPU tests (pytest -m gpu): {_tests_line(s['gpu_tests'])}"]
    failed = (s["gpu_tests"] or {}).get("failed_ids", []) + (s["build_tests"] or {}).get("failed_ids", [])
    if failed:
        lines += ["", "Failing tests:"] + [f"- {t}" for t in failed[:50]]
        if len(failed) > 50:
            lines.append(f"- ... and {len(failed) - 50} more")
    lines += ["", "## Benchmarks", ""]
    if s["benchmarks"]:
        lines += [s["machine"] or "", "", bench_summary.to_markdown(s["benchmarks"])]
    else:
        lines.append("No benchmark finished.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", help="write the environment record (JSON) here")
    p.add_argument("--nvidia-smi", help="nvidia-smi's output, saved by gpu_check.sh")
    p.add_argument("--arch", help="the CUDA architectures the build targets")
    p.add_argument("--summarize", metavar="OUT", help="write OUT/summary.md and OUT/summary.json")
    args = p.parse_args(argv)
    if args.env:
        with open(args.env, "w") as f:
            json.dump(environment(args.nvidia_smi, args.arch), f, indent=2)
    if args.summarize:
        s = summarize(args.summarize)
        with open(os.path.join(args.summarize, "summary.json"), "w") as f:
            json.dump(s, f, indent=2)
        md = to_markdown(s)
        with open(os.path.join(args.summarize, "summary.md"), "w") as f:
            f.write(md)
    if not (args.env or args.summarize):
        p.error("give --env or --summarize")


if __name__ == "__main__":
    main()
