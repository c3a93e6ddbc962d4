"""The benchmark charts: drawn from a results file, tolerant of missing and new rows."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks._charts import FILES, draw_charts

LATEST = Path(__file__).resolve().parents[1] / "results" / "latest.json"


def svg_text(path: Path) -> str:
    """Every piece of text in an SVG file (charts keep their text as text)."""
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    return " ".join(t.strip() for t in root.itertext() if t.strip())


def latest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LATEST.read_text(encoding="utf-8"))
    return data


def test_the_committed_results_draw_three_charts(tmp_path: Path) -> None:
    written = draw_charts(LATEST, tmp_path)
    assert [p.name for p in written] == list(FILES)
    detect = svg_text(tmp_path / "detect_vs_polls.svg")
    for label in ("adaptive", "webhooks", "fixed 1 s", "fixed 0.1 s", "polls per task"):
        assert label in detect, label
    assert "official wavespeed SDK" in detect  # labels lose their markdown backticks
    cpu = svg_text(tmp_path / "cpu_per_job.svg")
    for row in latest()["comparison"]:
        assert f"{row['cpu_ms_per_job']:.2f}" in cpu
    memory = svg_text(tmp_path / "memory_vs_jobs.svg")
    for row in latest()["scale"]:
        assert f"{row['rss_peak_mib']:.0f} MiB" in memory


def test_the_same_results_give_the_same_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    draw_charts(LATEST, a)
    draw_charts(LATEST, b)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_missing_figures_and_new_rows_are_tolerated(tmp_path: Path) -> None:
    data = latest()
    del data["scale"]
    del data["workload"]
    comparison = data["comparison"]
    del comparison[0]["emulator"]  # no detection figures: left out of that chart only
    del comparison[2]["cpu_ms_per_job"]
    new = copy.deepcopy(comparison[1])
    new.update(client="ray", label="wavespeed_async on Ray", poll="adaptive (Ray actors)")
    new["emulator"]["polls_per_task"] = 5.5
    new["cpu_ms_per_job"] = 7.25
    comparison.append(new)
    comparison.append({"name": "broken", "emulator": "not a dict", "cpu_ms_per_job": None})

    written = draw_charts(data, tmp_path)
    assert [p.name for p in written] == ["detect_vs_polls.svg", "cpu_per_job.svg"]
    detect = svg_text(tmp_path / "detect_vs_polls.svg")
    assert "wavespeed_async on Ray" in detect
    assert "adaptive" in detect
    cpu = svg_text(tmp_path / "cpu_per_job.svg")
    assert "7.25" in cpu
    assert "hand-written aiohttp floor, fixed 1 s" not in cpu
    assert "hand-written aiohttp floor, fixed 0.5 s" in cpu
    assert not (tmp_path / "memory_vs_jobs.svg").exists()


def test_no_rows_draw_nothing(tmp_path: Path) -> None:
    assert draw_charts({"mode": "full"}, tmp_path) == []
    assert list(tmp_path.iterdir()) == []
