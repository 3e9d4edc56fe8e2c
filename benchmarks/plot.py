#!/usr/bin/env python3
"""Plots offsync-bench results: throughput (records/s) against N, one line per scenario and mode.

Usage: benchmarks/plot.py RESULTS.jsonl [MORE.jsonl ...] [-o throughput.png]

Reads the JSON lines that `offsync-bench --out FILE` writes. Needs matplotlib
(Debian: apt-get install python3-matplotlib); without it the script says so and exits 2.
"""
import argparse
import json
import sys
from collections import defaultdict

# What each line shows: (scenario, mode) -> label. Rows of other scenarios are not plotted
# against N (an incremental round is measured against k, a conflict round against conflicts).
SERIES = {
    ("push", "http"): "push, HTTP + SQLite",
    ("pull", "http"): "pull, HTTP + SQLite",
    ("push", "inproc"): "push, in process",
    ("pull", "inproc"): "pull, in process",
    ("baseline_sqlite", "baseline"): "bound: raw SQLite insert, one transaction",
    ("baseline_codec", "baseline"): "bound: JSON encode + decode",
    ("baseline_naive_http", "http"): "bound: one HTTP PUT per record",
}


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{number}: not a JSON line: {e}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="JSON lines written by offsync-bench --out")
    parser.add_argument("-o", "--output", default="throughput.png", help="PNG to write")
    args = parser.parse_args()

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "plot.py: matplotlib is not installed; install it with "
            "`apt-get install python3-matplotlib` (or `pip install matplotlib`) and run again.",
            file=sys.stderr,
        )
        return 2

    rows = load(args.results)
    points = defaultdict(dict)  # label -> n -> best records/s at that n
    for r in rows:
        label = SERIES.get((r.get("scenario"), r.get("mode")))
        if not label or not r.get("records_per_s"):
            continue
        n = r.get("n")
        points[label][n] = max(points[label].get(n, 0), r["records_per_s"])
    if not points:
        print("plot.py: no push, pull or baseline rows in the input", file=sys.stderr)
        return 1

    fig, ax = plt.subplots(figsize=(11, 5.5))
    for label in SERIES.values():
        if label not in points:
            continue
        ns = sorted(points[label])
        style = "--" if label.startswith("bound") else "-"
        ax.plot(ns, [points[label][n] for n in ns], style, marker="o", label=label)
    ax.axhline(100_000, color="grey", linewidth=0.8, linestyle=":", label="target: 100,000/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (records)")
    ax.set_ylabel("records per second")
    ax.set_title("offsync-bench: throughput against N")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"plot.py: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
