"""Draw the JSON of scripts/benchmark.py or scripts/compare.py as an SVG bar chart.

    python scripts/plot_benchmark.py bench.json bench.svg
    python scripts/plot_benchmark.py docs/benchmarks.json docs/benchmark.svg

One horizontal bar per row: the seconds of one call, stacked by stage (semantic, coarse, fine, decode, and
"other" for what the call spent outside the four), grouped by workload. The end of each bar
gives the latency and the real-time factor, and for nanobark the speed-ups the file holds. Hand-written SVG
from string templates: no plotting library.
"""

import argparse
import json
import math
from html import escape

STAGES = dict(semantic="#4C72B0", coarse="#DD8452", fine="#55A868", decode="#8172B3", other="#B0B0B0")
FONT = 13  # px
BAR_H, GAP, GROUP_H = 24, 8, 28
WIDTH, PAD = 960, 16


def width(s, size=FONT):
    """About how wide `s` is drawn at `size` px in a sans-serif face (a little generous)."""
    return len(s) * size * 0.58


def text(x, y, s, size=FONT, anchor="start", weight="normal", fill="#222", style="normal"):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
        f'font-style="{style}" fill="{fill}">{escape(str(s))}</text>'
    )


def rect(x, y, w, h, fill, title=""):
    tip = f"<title>{escape(title)}</title>" if title else ""
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h}" fill="{fill}">{tip}</rect>'


def nice_step(top, ticks=6):
    """A 1, 2 or 5 x 10^k step that cuts 0..top into about `ticks` parts."""
    raw = top / ticks
    k = 10 ** math.floor(math.log10(raw))
    return next(m * k for m in (1, 2, 5, 10) if m * k >= raw)


def stages_of(row):
    """[(stage, seconds)] of a measured row; 'other' is the call's time outside the four stages."""
    parts = [(s, row["stage_s"].get(s, 0.0)) for s in list(STAGES)[:-1]]
    return parts + [("other", max(0.0, row["latency_s"] - sum(t for _, t in parts)))]


def label(row):
    impl = row.get("impl", "nanobark")
    batch = f", batch {row['batch']}" if row["batch"] != 1 else ""
    return f"{impl} {row['config']}{batch}" + ("*" if "note" in row else "")  # *: a footnote


def end_note(row, speedups):
    note = f"{row['latency_s']:.2f} s · RTF {row['latency_s'] / row.get('audio_s', 3.0 * row['batch']):.2f}"
    ups = [
        f"{s['speedup']:.2f}x vs {s['reference']}"
        for s in speedups
        if row.get("impl", "nanobark") == "nanobark"
        and (s["workload"], s["config"], s["batch"]) == (row["workload"], row["config"], row["batch"])
    ]
    return note + (" · " + ", ".join(ups) if ups else "")


def subtitle(result):
    d = result.get("device", {})
    where = d.get("gpu") or f"{d.get('cpu', 'CPU')}, {d.get('cpu_count', '?')} cores"
    threads = f"{d.get('threads', '?')} thread" + ("" if d.get("threads") == 1 else "s")
    parts = [where, threads, f"torch {d.get('torch', '?')}"]
    weights = next(iter(result.get("workloads", {}).values()), {}).get("weights")
    return "  ·  ".join(parts + ([f"weights: {weights}"] if weights else []))


def workload_name(result, w):
    voice = result.get("workloads", {}).get(w, {}).get("voice")
    return f"workload {w} ({'voice ' + voice if voice else 'no voice'}, 3.0 s of audio a sample)"


def chart(result):
    rows = [dict(r, workload=r.get("workload", "W")) for r in result["rows"]]
    speedups = result.get("speedups", [])
    groups = {}
    for r in rows:
        groups.setdefault(r["workload"], []).append(r)
    measured = [r for r in rows if "latency_s" in r]
    top = max([r["latency_s"] for r in measured] + [1e-9])
    step = nice_step(top)
    top = math.ceil(top / step - 1e-9) * step
    left = PAD + max(width(label(r)) for r in rows) + 12
    room = WIDTH - PAD - left  # the widest scale at which the axis and every bar with its end note fit
    scale = min([room / top] + [(room - 6 - width(end_note(r, speedups), 12)) / r["latency_s"] for r in measured])
    title = "nanobark" if result.get("tool") == "benchmark" else "nanobark, transformers and Suno's original"
    out, y = [], PAD + 18
    out.append(text(PAD, y, f"{title}: seconds per call, by stage (lower is better)", 17, weight="bold"))
    y += 20
    out.append(text(PAD, y, subtitle(result), 12, fill="#555"))
    if result.get("source"):
        y += 17
        out.append(text(PAD, y, result["source"], 12, fill="#555", style="italic"))
    y += 22
    x = left
    for stage, color in STAGES.items():  # legend
        out.append(rect(x, y - 11, 12, 12, color))
        out.append(text(x + 16, y, stage, 12))
        x += 16 + width(stage, 12) + 18
    y += 14
    axis_top = y
    for workload, members in groups.items():
        y += GROUP_H
        out.append(text(PAD, y - 9, workload_name(result, workload), 13, weight="bold", fill="#333"))
        for r in members:
            mid = y + BAR_H / 2 + FONT * 0.35
            out.append(text(left - 10, mid, label(r), anchor="end"))
            if "latency_s" not in r:
                why = ("skipped: " + r["skipped"]) if "skipped" in r else "FAILED: " + r.get("error", "?")
                out.append(text(left + 4, mid, why[:110], 12, fill="#888", style="italic"))
            else:
                x = left
                for stage, seconds in stages_of(r):
                    w = seconds * scale
                    out.append(rect(x, y, w, BAR_H, STAGES[stage], f"{stage}: {seconds:.3f} s"))
                    if w > width(f"{seconds:.1f}", 12) + 6:  # the seconds inside the segment when they fit
                        out.append(text(x + w / 2, mid, f"{seconds:.1f}", 12, "middle", fill="#fff"))
                    x += w
                out.append(text(x + 6, mid, end_note(r, speedups), 12))
            y += BAR_H + GAP
    y += 6
    for i in range(int(round(top / step)) + 1):  # seconds axis, with a light grid behind the bars
        x = left + i * step * scale
        out.insert(0, f'<line x1="{x:.1f}" y1="{axis_top + 8}" x2="{x:.1f}" y2="{y}" stroke="#e4e4e4"/>')
        out.append(text(x, y + 16, f"{i * step:g}", 12, "middle", fill="#555"))
    out.append(f'<line x1="{left}" y1="{y}" x2="{left + top * scale:.1f}" y2="{y}" stroke="#888"/>')
    out.append(text(left + top * scale / 2, y + 34, "seconds per call (median)", 12, "middle", fill="#555"))
    y += 34
    for r in rows:  # footnotes: what the file says about a row
        if "note" in r:
            y += 18
            out.append(text(PAD, y, f"* {label(r)[:-1]}: {r['note']}", 12, fill="#555", style="italic"))
    height = y + PAD
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
        f'<rect width="100%" height="100%" fill="#fff"/>\n' + "\n".join(out) + "\n</svg>\n"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="output of scripts/benchmark.py --json or scripts/compare.py --json")
    p.add_argument("svg", help="the chart to write")
    args = p.parse_args(argv)
    with open(args.json) as f:
        result = json.load(f)
    if not result.get("rows"):
        p.error(f"{args.json} has no timing rows (an --agreement run?)")
    with open(args.svg, "w") as f:
        f.write(chart(result))
    print(f"wrote {args.svg}")


if __name__ == "__main__":
    main()
