"""scripts/gpu_check.sh: its dry run walks every phase on the CPU and writes the verdict files; without
a CUDA device and without the dry-run flag it stops at once with one clear line."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
PHASES = ["preflight", "build", "tests", "bench_film", "bench_render", "bench_train", "bench_skip"]
# One cheap case per benchmark phase (the filter is and-ed with each phase's own selection).
FEW_CASES = "device_copy or film_layer and fp32 and native or train_step and auto"


def _env(tmp_path, **extra):
    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200 (fake), 143771 MiB, 570.00, 9.0'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable,
               OMP_NUM_THREADS="1", PIGAN_BENCH_COMPILE_BACKEND="eager")
    env.update(extra)
    return env


# A shared CI machine can be slow to import torch: budgets wide enough that only a hang runs out.
ROOMY = {f"PIGAN_BUDGET_{p.upper()}": "200" for p in PHASES} | {"PIGAN_BUDGET_TOTAL": "1500"}


def _dry_run(tmp_path, timeout, **extra):
    out = tmp_path / "out"
    env = _env(tmp_path, PIGAN_GPU_SKIP_BUILD="1", **{**ROOMY, **extra})
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout, env=env)
    return proc, out


def _check_verdict(proc, out, bench_cases):
    summary = json.loads((out / "summary.json").read_text())
    md = (out / "summary.md").read_text()
    assert summary["dry_run"] is True and "DRY RUN" in md
    assert [p["phase"] for p in summary["phases"]] == PHASES
    bad = [p for p in summary["phases"] if p["status"] != "ok"]
    assert not bad, (bad, proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert summary["environment"]["nvidia_smi"].startswith("NVIDIA H200 (fake)")
    assert summary["build_info"]["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert summary["build_tests"]["failures"] == 0 and summary["build_tests"]["passed"] > 0
    # Every GPU test is selected (and skipped on the CPU): none fails, none is missing.
    tests = summary["gpu_tests"]
    assert tests["tests"] > 0 and tests["failures"] == tests["errors"] == 0
    assert tests["skipped"] == tests["tests"]
    groups = {r["group"]: r for r in summary["benchmarks"]}
    assert len(groups) >= bench_cases, list(groups)
    for r in groups.values():
        for e in r["entries"].values():
            assert e["median_ms"] > 0 and e["rounds"] >= 1
    train = [r for g, r in groups.items() if g.startswith("CelebA generator train step")]
    assert train and train[0]["ours"] == "auto" and train[0]["entries"]["auto"]["warmup_s"] > 0
    comp = [r for g, r in groups.items() if g.startswith("composite forward+backward")]
    if comp:
        assert comp[0]["bandwidth_floor"]["floor_ms"] > 0
    return summary


def test_dry_run_writes_the_verdict(tmp_path):
    # ~45 s of CPU time: ~45 s on an idle 2-core machine, more when it is shared.
    proc, out = _dry_run(tmp_path, 600, PIGAN_GPU_BENCH_K=FEW_CASES)
    summary = _check_verdict(proc, out, bench_cases=4)
    film = [r for r in summary["benchmarks"] if r["group"].startswith("film 256->256 cpu fp32")]
    assert film and all(r["ours"] == "native" for r in film)
    assert "| phase | status | seconds | budget s |" in (out / "summary.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PIGAN_FULL_DRY_RUN") != "1",
                    reason="several minutes on 2 cores; PIGAN_FULL_DRY_RUN=1 runs every benchmark case")
def test_full_dry_run_runs_every_case(tmp_path):
    proc, out = _dry_run(tmp_path, 1500, PIGAN_BUDGET_BENCH_FILM="500", PIGAN_BUDGET_BENCH_RENDER="300",
                         PIGAN_BUDGET_BENCH_TRAIN="300")
    summary = _check_verdict(proc, out, bench_cases=12)
    kinds = {k for r in summary["benchmarks"] for k in r["entries"]}
    assert {"native", "addmm", "reference", "compile", "stack", "auto", "copy"} <= kinds


def test_fails_loudly_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=_env(tmp_path))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--dry-run" in lines[0], proc.stderr


def test_usage_error(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr


def _scripts():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_summary
        import gpu_check_report
    finally:
        sys.path.pop(0)
    return bench_summary, gpu_check_report


def _record(name, group, kind, median_s, ours=False, **extra):
    return {"name": name, "group": group, "extra_info": {"kind": kind, "ours": ours, "device": "cuda", **extra},
            "stats": {"min": median_s * 0.9, "max": median_s * 1.2, "mean": median_s, "median": median_s,
                      "stddev": 0.0, "rounds": 5}}


def test_summary_ratios_and_bandwidth_floor(tmp_path):
    bench_summary, _ = _scripts()
    recs = [_record("a", "film", "addmm", 0.004), _record("b", "film", "auto", 0.005, ours=True, peak_bytes=2 ** 30),
            _record("c", "film", "reference", 0.020), _record("d", "film", "triton", 0.0045, ours=True),
            _record("e", "comp", "native", 0.002, ours=True, min_bytes=10 ** 9),
            _record("f", "comp", "reference", 0.010), _record("g", "copy", "copy", 0.001, bytes_moved=2 * 10 ** 9)]
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs[:4]) + "\n")
    (tmp_path / "b.json").write_text(json.dumps({"benchmarks": recs[4:]}))
    rows = {r["group"]: r for r in bench_summary.summarize(
        bench_summary.load_records([str(path), str(tmp_path / "b.json")]))}
    film = rows["film"]
    assert film["ours"] == "auto"                       # auto is the unit even when triton is faster
    assert film["entries"]["reference"]["over_ours"] == pytest.approx(4.0)
    assert film["entries"]["addmm"]["over_ours"] == pytest.approx(0.8)
    assert film["entries"]["auto"]["peak_mib"] == pytest.approx(1024)
    floor = rows["comp"]["bandwidth_floor"]               # 1 GB at 2 TB/s: 0.5 ms, ours 2 ms
    assert floor["copy_gb_s"] == pytest.approx(2000) and floor["floor_ms"] == pytest.approx(0.5)
    assert floor["over_ours"] == pytest.approx(0.25)
    md = bench_summary.to_markdown(list(rows.values()))
    assert "**auto** (ours)" in md and "bandwidth floor" in md


def test_report_counts_a_test_run_cut_short(tmp_path):
    _, report = _scripts()
    (tmp_path / "tests.log").write_text(
        "tests/test_a.py::test_x[cuda] PASSED   [  1%]\ntests/test_a.py::test_y[cuda] FAILED   [  2%]\n"
        "tests/test_b.py::test_z[cuda-7] SKIPPED (why)   [  3%]\nsome other line\n")
    (tmp_path / "phases.tsv").write_text("preflight\t0\t3\t25\ntests\t124\t90\t90\n")
    s = report.summarize(str(tmp_path))
    assert s["gpu_tests"]["passed"] == 1 and s["gpu_tests"]["failures"] == 1 and s["gpu_tests"]["skipped"] == 1
    assert s["gpu_tests"]["failed_ids"] == ["tests/test_a.py::test_y[cuda]"]
    assert [p["status"] for p in s["phases"]] == ["ok", "out of time"] and not s["all_phases_ok"]
    md = report.to_markdown(s)
    assert "cut short" in md and "No benchmark finished." in md
