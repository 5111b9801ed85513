#!/usr/bin/env python3
"""Turn a pytest-benchmark JSON file into a side-by-side table (markdown) and a compact JSON summary.

    python scripts/bench_summary.py bench.json [--md summary.md] [--json summary.json] [--title TEXT]

Cases of one benchmark group (the same workload) sit together: each backend's median time, its
speedup over "reference" (reference median / backend median) and, when the case recorded it, the
bytes autograd saved for backward relative to the inputs.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict


def load_rows(data: dict) -> list[dict]:
    groups: "OrderedDict[str, dict]" = OrderedDict()
    for b in data.get("benchmarks", []):
        group = b.get("group") or b["name"]
        extra = b.get("extra_info", {})
        backend = extra.get("backend") or b.get("params", {}).get("backend") or b["name"]
        stats = b["stats"]
        groups.setdefault(group, {})[backend] = {
            "median_ms": stats["median"] * 1e3, "mean_ms": stats["mean"] * 1e3,
            "stddev_ms": stats["stddev"] * 1e3, "rounds": stats["rounds"],
            "saved_over_inputs": extra.get("saved_over_inputs"), "saved_bytes": extra.get("saved_bytes"),
            "device": extra.get("device"),
        }
    rows = []
    for group, by_backend in groups.items():
        row = {"group": group, "backends": by_backend}
        ref = by_backend.get("reference")
        if ref:
            row["speedup"] = {k: ref["median_ms"] / v["median_ms"] for k, v in by_backend.items()
                              if k != "reference" and v["median_ms"] > 0}
        rows.append(row)
    return rows


def machine_line(data: dict) -> str:
    for b in data.get("benchmarks", []):
        e = b.get("extra_info", {})
        parts = []
        if e.get("gpu"):
            parts.append(f"GPU: {e['gpu']}")
        if e.get("cpu"):
            parts.append(f"CPU: {e['cpu']} ({e.get('threads', '?')} threads)")
        if e.get("torch"):
            parts.append(f"torch {e['torch']}")
        if parts:
            return "; ".join(parts)
    mi = data.get("machine_info", {})
    return f"CPU: {mi.get('cpu', {}).get('brand_raw', mi.get('processor', '?'))}"


def to_markdown(rows: list[dict], title: str, machine: str) -> str:
    """One line per (workload, backend); "vs reference" = reference median / this median."""
    lines = [f"# {title}", "", machine, "",
             "| workload | backend | median (ms) | vs reference | saved for backward / inputs |",
             "|---|---|---|---|---|"]
    for r in rows:
        by_backend = r["backends"]
        order = sorted(by_backend, key=lambda k: (k != "reference", k))
        for i, b in enumerate(order):
            v = by_backend[b]
            speed = "1.00x" if b == "reference" else (f"{r['speedup'][b]:.2f}x" if b in r.get("speedup", {})
                                                     else "")
            saved = v.get("saved_over_inputs")
            lines.append(f"| {r['group'] if i == 0 else ''} | {b} | {v['median_ms']:.3f} ± {v['stddev_ms']:.3f} "
                         f"| {speed} | {'' if saved is None else f'{saved:.2f}'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench_json")
    p.add_argument("--md", help="write the markdown table here (default: stdout)")
    p.add_argument("--json", dest="json_out", help="write the summary JSON here")
    p.add_argument("--title", default="pigan-kernels benchmarks")
    p.add_argument("--machine", help="override the machine line (e.g. the GPU name from nvidia-smi)")
    args = p.parse_args(argv)
    with open(args.bench_json) as f:
        data = json.load(f)
    rows = load_rows(data)
    machine = args.machine or machine_line(data)
    md = to_markdown(rows, args.title, machine)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    else:
        sys.stdout.write(md)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": machine, "datetime": data.get("datetime"), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
