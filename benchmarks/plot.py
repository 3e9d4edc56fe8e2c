#!/usr/bin/env python3
"""Plots offsync-bench results: throughput (records/s) against N, and live-change latency against devices.

Usage: benchmarks/plot.py RESULTS.jsonl [MORE.jsonl ...] [-o throughput.png] [--latency-output live-latency.svg]

Reads the JSON lines that `offsync-bench --out FILE` writes. Throughput rows (push, pull,
baselines) make a PNG with matplotlib (`pip install matplotlib`; without it the script says so
and exits 2). `--scenario live` rows (live_latency, live_fanout) make an SVG that needs nothing
beyond Python. A chart without rows in the input is not written.
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


# Issue 20's targets for 1,000 subscribed devices, drawn on the latency chart.
LIVE_TARGETS_MS = {"p50": 10.0, "p99": 50.0}


def plot_throughput(plt, rows, output):
    points = defaultdict(dict)  # label -> n -> best records/s at that n
    for r in rows:
        label = SERIES.get((r.get("scenario"), r.get("mode")))
        if not label or not r.get("records_per_s"):
            continue
        n = r.get("n")
        points[label][n] = max(points[label].get(n, 0), r["records_per_s"])
    if not points:
        return False

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
    fig.savefig(output, dpi=110)
    print(f"plot.py: wrote {output}")
    return True


# (scenario, field, devices key) -> label of one latency line.
LIVE_SERIES = {
    ("live_latency", "store_p50_ms", "devices"): "push ack → record in the device's store, p50",
    ("live_latency", "store_p99_ms", "devices"): "push ack → record in the device's store, p99",
    ("live_fanout", "hint_p50_ms", "streams"): "push ack → hint read (fan-out alone), p50",
    ("live_fanout", "hint_p99_ms", "streams"): "push ack → hint read (fan-out alone), p99",
}


def live_points(rows):
    """label -> K -> (median, low, high) in ms over the runs in `rows`."""
    samples = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for (scenario, field, key), label in LIVE_SERIES.items():
            if r.get("scenario") == scenario and r.get(key) and field in r:
                samples[label][r[key]].append(r[field])
    points = {}
    for label, by_k in samples.items():
        points[label] = {}
        for k, values in by_k.items():
            values = sorted(values)
            middle = len(values) // 2
            median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
            points[label][k] = (median, values[0], values[-1])
    return points


def plot_live_latency(rows, output):
    """Writes the latency chart as SVG, drawn here rather than with matplotlib: Debian's
    matplotlib pulls in Boost 1.74 headers, which remove the Boost 1.81 that offsync builds on,
    so this chart can be made on the build machine itself.

    Several runs give several figures per K: the line goes through their median and a bar
    spans their range, since shared machines spread widely from run to run. A hint can arrive
    before the writer reads its own answer (a negative figure); a log axis cannot show it, so
    it is drawn at the axis floor."""
    import math

    points = live_points(rows)
    if not points:
        return False
    width, height = 900, 470
    left, right, top, bottom = 70, 330, 40, 60  # margins; the legend sits on the right
    floor_ms = 0.01
    ks = sorted({k for by_k in points.values() for k in by_k})
    highest = max([v[2] for by_k in points.values() for v in by_k.values()] +
                  list(LIVE_TARGETS_MS.values()))
    x_lo, x_hi = math.log10(min(ks)) - 0.15, math.log10(max(ks)) + 0.15
    y_lo, y_hi = math.log10(floor_ms), math.ceil(math.log10(highest))

    def x_of(k):
        return left + (math.log10(k) - x_lo) / (x_hi - x_lo) * (width - left - right)

    def y_of(ms):
        ms = max(ms, floor_ms)
        return height - bottom - (math.log10(ms) - y_lo) / (y_hi - y_lo) * (height - top - bottom)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{(left + width - right) / 2}" y="22" text-anchor="middle" font-size="14">'
        "offsync-bench --scenario live: latency of a change against devices</text>",
    ]
    for exponent in range(int(y_lo), int(y_hi) + 1):  # horizontal grid, one line a decade
        y = y_of(10 ** exponent)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** exponent:g}</text>')
    for k in ks:
        x = x_of(k)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{k:,}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 18}" text-anchor="middle">'
               "devices subscribed to the changed collection</text>")
    out.append(f'<text transform="translate(18,{(top + height - bottom) / 2}) rotate(-90)" '
               'text-anchor="middle">milliseconds (log)</text>')
    legend = []
    for name, ms in LIVE_TARGETS_MS.items():
        y = y_of(ms)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#888" stroke-dasharray="2,3"/>')
        legend.append(("#888", "2,3", f"target {name} at 1,000 devices: {ms:g} ms"))
    for i, label in enumerate(LIVE_SERIES.values()):
        if label not in points:
            continue
        colour = colours[i % len(colours)]
        dash = "6,4" if "fan-out" in label else "none"
        by_k = points[label]
        path = " ".join(f"{x_of(k):.1f},{y_of(by_k[k][0]):.1f}" for k in sorted(by_k))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
                   f'stroke-dasharray="{dash}"/>')
        for k in sorted(by_k):
            median, low, high = by_k[k]
            x = x_of(k)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_of(low):.1f}" y2="{y_of(high):.1f}" '
                       f'stroke="{colour}"/>')
            out.append(f'<circle cx="{x:.1f}" cy="{y_of(median):.1f}" r="3.5" fill="{colour}"/>')
        legend.append((colour, dash, label))
    for i, (colour, dash, label) in enumerate(legend):
        y = top + 10 + i * 20
        x = width - right + 15
        out.append(f'<line x1="{x}" x2="{x + 24}" y1="{y}" y2="{y}" stroke="{colour}" '
                   f'stroke-width="2" stroke-dasharray="{dash}"/>')
        text = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        out.append(f'<text x="{x + 30}" y="{y + 4}" font-size="10">{text}</text>')
    out.append("</svg>")
    with open(output, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"plot.py: wrote {output}")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="JSON lines written by offsync-bench --out")
    parser.add_argument("-o", "--output", default="throughput.png", help="throughput PNG to write")
    parser.add_argument(
        "--latency-output", default="live-latency.svg", help="live-change latency SVG to write"
    )
    args = parser.parse_args()
    rows = load(args.results)

    wrote_latency = plot_live_latency(rows, args.latency_output)
    has_throughput = any(SERIES.get((r.get("scenario"), r.get("mode"))) for r in rows)
    if not has_throughput:
        if wrote_latency:
            return 0
        print("plot.py: no push, pull, baseline or live rows in the input", file=sys.stderr)
        return 1
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
    plot_throughput(plt, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
