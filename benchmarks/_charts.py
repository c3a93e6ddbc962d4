"""Charts of a benchmark run (SVG, matplotlib's Agg backend), drawn from ``latest.json``.

- ``detect_vs_polls.svg``: detection latency (p50, bar to p95) against polls per task, for
  every client and polling mode of the comparison: the trade-off at a glance.
- ``cpu_per_job.svg``: the client's CPU time per job, for the same runs.
- ``memory_vs_jobs.svg``: peak memory against the number of jobs, for the scale runs.

The JSON is read as plain data and every field is looked up with a default: a row that
lacks a figure is left out of the chart that needs it, and rows of new clients or modes
get a chart entry of their own. Redraw from an existing file without running anything::

    python -m benchmarks.charts [benchmarks/results/latest.json] [--out DIR]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["FILES", "draw_charts", "draw_or_explain"]

#: The charts, by file name.
FILES: Final = ("detect_vs_polls.svg", "cpu_per_job.svg", "memory_vs_jobs.svg")

#: A colour per client kind; other kinds take the next colour of the default cycle.
COLOURS: Final = {"ours": "#2563eb", "floor": "#6b7280", "official": "#dc2626"}


def _num(row: Any, *path: str) -> float | None:
    """``row[path[0]][path[1]]...`` as a float, or ``None`` if anything is missing."""
    value = row
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _rows(results: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = results.get(key)
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _client_label(row: dict[str, Any]) -> str:
    return str(row.get("label") or row.get("name") or row.get("client") or "?").replace("`", "")


def _poll_label(row: dict[str, Any]) -> str:
    """The polling mode, short: ``adaptive``, ``webhooks``, ``fixed 1 s``."""
    return str(row.get("poll") or "").split(" (")[0].replace("`", "")


class _Palette:
    def __init__(self) -> None:
        self._extra: dict[str, str] = {}

    def __call__(self, kind: str) -> str:
        if kind in COLOURS:
            return COLOURS[kind]
        if kind not in self._extra:
            cycle = ["#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04"]
            self._extra[kind] = cycle[len(self._extra) % len(cycle)]
        return self._extra[kind]


def _subtitle(results: dict[str, Any], scale: bool) -> str:
    w = results.get("workload") if isinstance(results.get("workload"), dict) else {}
    assert isinstance(w, dict)
    machine = results.get("machine") if isinstance(results.get("machine"), dict) else {}
    assert isinstance(machine, dict)
    date = str(machine.get("date", ""))
    if scale:
        text = (
            f"concurrency {w.get('scale_concurrency', '?')}, "
            f"emulator latency x{w.get('scale_latency', '?')}"
        )
    else:
        jobs = w.get("jobs")
        jobs_text = f"{jobs:,}" if isinstance(jobs, int) else "?"
        text = (
            f"{jobs_text} jobs at concurrency {w.get('concurrency', '?')}, "
            f"emulator latency x{w.get('latency', '?')}"
        )
    return f"{text}; {date}" if date else text


def _detect_chart(plt: Any, results: dict[str, Any], path: Path) -> bool:
    points = []
    for row in _rows(results, "comparison"):
        polls = _num(row, "emulator", "polls_per_task")
        p50 = _num(row, "emulator", "detect_p50_ms")
        p95 = _num(row, "emulator", "detect_p95_ms")
        if polls is not None and p50 is not None:
            points.append((row, polls, max(p50, 0.5), p95))
    if not points:
        return False
    colour = _Palette()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    seen: set[str] = set()
    for row, polls, p50, p95 in points:
        kind = str(row.get("client", "?"))
        label = _client_label(row)
        c = colour(kind)
        if p95 is not None and p95 > p50:
            ax.plot([polls, polls], [p50, p95], color=c, linewidth=2, alpha=0.35)
        ax.scatter([polls], [p50], s=70, color=c, zorder=3, label=None if label in seen else label)
        seen.add(label)
        ax.annotate(
            _poll_label(row),
            (polls, p50),
            textcoords="offset points",
            xytext=(5, -13),
            fontsize=8.5,
            color="#333",
        )
    ax.set_yscale("log")
    highs = [p95 if p95 is not None else p50 for _, _, p50, p95 in points]
    ax.set_ylim(min(p for _, _, p, _ in points) / 2.5, max(highs) * 1.6)
    ax.set_xlabel("polls per task (result requests / jobs)")
    ax.set_ylabel("detection latency, ms (dot p50, bar to p95)")
    ax.set_title("Seeing a result sooner against polling more", loc="left", fontsize=12, pad=16)
    ax.text(0, 1.01, _subtitle(results, False), transform=ax.transAxes, fontsize=8, va="bottom")
    ax.set_xlim(left=-0.4, right=max(p for _, p, _, _ in points) * 1.2 + 0.5)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper right", frameon=False)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _cpu_chart(plt: Any, results: dict[str, Any], path: Path) -> bool:
    bars = [
        (f"{_client_label(r)}, {_poll_label(r)}", cpu, str(r.get("client", "?")))
        for r in _rows(results, "comparison")
        if (cpu := _num(r, "cpu_ms_per_job")) is not None
    ]
    if not bars:
        return False
    colour = _Palette()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.4))
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, [b[1] for b in bars], color=[colour(b[2]) for b in bars], height=0.6)
    ax.set_yticks(ys, [b[0] for b in bars], fontsize=8.5)
    for y, (_, value, _) in zip(ys, bars, strict=True):
        ax.annotate(
            f"{value:.2f}", (value, y), xytext=(4, 0), textcoords="offset points",
            va="center", fontsize=8.5,
        )  # fmt: skip
    ax.set_xlabel("client CPU per job, ms (user + system, all threads)")
    ax.set_title("CPU per job", loc="left", fontsize=12, pad=16)
    ax.text(0, 1.01, _subtitle(results, False), transform=ax.transAxes, fontsize=8, va="bottom")
    ax.set_xlim(right=max(b[1] for b in bars) * 1.15)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _memory_chart(plt: Any, results: dict[str, Any], path: Path) -> bool:
    series: dict[str, list[tuple[float, float, str]]] = {}
    for row in _rows(results, "scale"):
        jobs, peak = _num(row, "jobs"), _num(row, "rss_peak_mib")
        if jobs is not None and peak is not None:
            name = f"{_client_label(row)}, {_poll_label(row)}"
            series.setdefault(name, []).append((jobs, peak, str(row.get("client", "?"))))
    if not series:
        return False
    colour = _Palette()
    fig, ax = plt.subplots(figsize=(8, 4.4))
    top = 0.0
    for name, points in series.items():
        points.sort()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        c = colour(points[0][2])
        ax.plot(xs, ys, marker="o", color=c, label=name, linewidth=2)
        top = max(top, *ys)
    highest = {
        x: max(y for pts in series.values() for x2, y, _ in pts if x2 == x)
        for x in {x for pts in series.values() for x, _, _ in pts}
    }
    for points in series.values():
        for x, y, _ in points:
            above = y >= highest[x]
            ax.annotate(
                f"{y:.0f} MiB", (x, y), xytext=(0, 8 if above else -15),
                textcoords="offset points", ha="center", fontsize=8.5,
            )  # fmt: skip
    ax.set_ylim(0, top * 1.25)
    ax.set_xlabel("jobs in the batch")
    ax.set_ylabel("peak RSS of the client, MiB")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_title("Memory against the number of jobs", loc="left", fontsize=12, pad=16)
    ax.text(0, 1.01, _subtitle(results, True), transform=ax.transAxes, fontsize=8, va="bottom")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8.5, loc="lower right", frameon=False)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _save(fig: Any, path: Path) -> None:
    # No date and a fixed id salt: the same results give the same bytes.
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "svg", metadata={"Date": None})
    tmp.replace(path)


def draw_charts(
    results: dict[str, Any] | str | Path, out: str | Path, *, fmt: str = "svg"
) -> list[Path]:
    """Draw the charts of ``results`` (a dict, or a ``latest.json`` path) into ``out``.

    Returns the files written (a chart with no rows to show is not drawn). ``fmt``: the
    file format (``svg``; ``png`` for a quick look).

    Raises:
        ImportError: matplotlib is not installed (the ``bench`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = results if isinstance(results, dict) else json.loads(Path(results).read_text("utf-8"))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context(
        {"svg.hashsalt": "wavespeed-async", "svg.fonttype": "none", "font.size": 9.5}
    ):
        for name, draw in zip(FILES, (_detect_chart, _cpu_chart, _memory_chart), strict=True):
            path = folder / (Path(name).stem + "." + fmt)
            if draw(plt, data, path):
                written.append(path)
    return written


def draw_or_explain(results: Path, out: Path) -> list[Path]:
    """:func:`draw_charts`, or a note on stderr when matplotlib is missing."""
    try:
        return draw_charts(results, out)
    except ImportError:
        sys.stderr.write(
            "[benchmarks] charts skipped: matplotlib is not installed (pip install -e '.[bench]')\n"
        )
        return []


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    root = Path(__file__).resolve().parent / "results"
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.charts",
        description="Draw the benchmark charts (SVG) from a results JSON file.",
    )
    p.add_argument("json", nargs="?", type=Path, default=root / "latest.json")
    p.add_argument("--out", type=Path, default=None, help="folder (default: the JSON's)")
    p.add_argument("--format", default="svg", choices=("svg", "png", "pdf"))
    args = p.parse_args(argv)
    for path in draw_charts(args.json, args.out or args.json.parent, fmt=args.format):
        print(path)
    return 0
