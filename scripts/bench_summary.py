#!/usr/bin/env python3
"""Turn benchmark results into one side-by-side table (markdown) and a JSON summary.

    python scripts/bench_summary.py RESULTS... [--md summary.md] [--json summary.json] [--title TEXT]

RESULTS are pytest-benchmark JSON files (``--benchmark-json``) or JSON-lines files written through
``PIGAN_BENCH_JSONL`` (one finished case per line; what scripts/gpu_check.sh collects). Cases of one
group (one workload, one run) sit together. In each group the case marked ``ours`` (pigan-kernels'
path; "auto" first when several) is the unit: every other case shows ``this / ours``, its median time
over ours (above 1: ours is faster; below 1: this one is, as a floor such as cuBLAS addmm should be).
Groups whose cases recorded ``min_bytes`` also get a "bandwidth floor" row: min_bytes over the copy
bandwidth measured by the "device copy" case of the same results.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict


def load_records(paths: list[str]) -> list[dict]:
    """Benchmark records from pytest-benchmark JSON or JSON-lines files; the last record of a name wins."""
    by_name: "OrderedDict[str, dict]" = OrderedDict()
    for path in paths:
        with open(path) as f:
            text = f.read()
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            records = data.get("benchmarks", []) if isinstance(data, dict) else data
        except json.JSONDecodeError:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        for r in records:
            by_name[r.get("fullname") or r["name"]] = r
    return list(by_name.values())


def _entry(r: dict) -> dict:
    extra = r.get("extra_info", {})
    st = r["stats"]
    return {
        "kind": extra.get("kind") or extra.get("backend") or r.get("params", {}).get("backend") or r["name"],
        "ours": bool(extra.get("ours")),
        "device": extra.get("device"),
        "median_ms": st["median"] * 1e3, "min_ms": st["min"] * 1e3, "rounds": st["rounds"],
        "peak_mib": extra["peak_bytes"] / 2 ** 20 if extra.get("peak_bytes") is not None else None,
        "warmup_s": extra.get("warmup_s"),
        "min_bytes": extra.get("min_bytes"), "bytes_moved": extra.get("bytes_moved"),
        "saved_over_inputs": extra.get("saved_over_inputs"),
    }


def _ours(entries: dict) -> str | None:
    marked = [k for k, e in entries.items() if e["ours"]]
    for k in ("auto", "stack", "native", "triton"):
        if k in marked:
            return k
    return marked[0] if marked else None


def copy_bandwidth(records: list[dict]) -> dict:
    """Bytes per second of the "device copy" case, per device."""
    out = {}
    for r in records:
        e = _entry(r)
        if e["kind"] == "copy" and e["bytes_moved"] and e["median_ms"] > 0:
            out[e["device"]] = e["bytes_moved"] / (e["median_ms"] / 1e3)
    return out


def summarize(records: list[dict]) -> list[dict]:
    """One row per group: its entries, the unit ("ours"), each entry's time over ours, the floor."""
    groups: "OrderedDict[str, dict]" = OrderedDict()
    for r in records:
        e = _entry(r)
        groups.setdefault(r.get("group") or r["name"], OrderedDict())[e["kind"]] = e
    bandwidth = copy_bandwidth(records)
    rows = []
    for group, entries in groups.items():
        ours = _ours(entries)
        row = {"group": group, "ours": ours, "entries": entries}
        if ours:
            unit = entries[ours]["median_ms"]
            for k, e in entries.items():
                e["over_ours"] = e["median_ms"] / unit if unit > 0 else None
            e0 = entries[ours]
            bw = bandwidth.get(e0["device"])
            if e0["min_bytes"] and bw:
                floor_ms = e0["min_bytes"] / bw * 1e3
                row["bandwidth_floor"] = {"min_bytes": e0["min_bytes"], "copy_gb_s": bw / 1e9,
                                          "floor_ms": floor_ms, "over_ours": floor_ms / unit}
        rows.append(row)
    return rows


def _fmt(v, spec, empty=""):
    return empty if v is None else format(v, spec)


def to_markdown(rows: list[dict]) -> str:
    lines = ["| workload | kind | median ms (min) | this / ours (time) | peak MiB | warm-up s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        order = sorted(r["entries"], key=lambda k: k != r["ours"])
        first = True
        for k in order:
            e = r["entries"][k]
            name = f"**{k}** (ours)" if k == r["ours"] else k
            ratio = "1.00" if k == r["ours"] else _fmt(e.get("over_ours"), ".2f")
            lines.append(f"| {r['group'] if first else ''} | {name} | {e['median_ms']:.3f} ({e['min_ms']:.3f}) "
                         f"| {ratio} | {_fmt(e['peak_mib'], '.0f')} | {_fmt(e['warmup_s'], '.2f')} |")
            first = False
        fl = r.get("bandwidth_floor")
        if fl:
            lines.append(f"| | bandwidth floor ({fl['min_bytes'] / 1e6:.1f} MB at {fl['copy_gb_s']:.1f} GB/s "
                         f"copy) | {fl['floor_ms']:.3f} | {fl['over_ours']:.2f} | | |")
    return "\n".join(lines) + "\n"


def machine_line(records: list[dict]) -> str:
    for r in records:
        e = r.get("extra_info", {})
        parts = []
        if e.get("gpu"):
            parts.append(f"GPU: {e['gpu']}")
        if e.get("cpu"):
            parts.append(f"CPU: {e['cpu']} ({e.get('threads', '?')} threads)")
        if e.get("torch"):
            parts.append(f"torch {e['torch']}")
        if parts:
            return "; ".join(parts)
    return "machine unknown"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+")
    p.add_argument("--md", help="write the markdown table here (default: stdout)")
    p.add_argument("--json", dest="json_out", help="write the summary JSON here")
    p.add_argument("--title", default="pigan-kernels benchmarks")
    p.add_argument("--machine", help="override the machine line (e.g. the GPU name from nvidia-smi)")
    args = p.parse_args(argv)
    records = load_records(args.results)
    rows = summarize(records)
    machine = args.machine or machine_line(records)
    md = f"# {args.title}\n\n{machine}\n\n" + to_markdown(rows)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    else:
        sys.stdout.write(md)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
