"""The bytecode-count harness: package attribution, the report, and one real short count."""

from __future__ import annotations

from pathlib import Path

from benchmarks._bytecodes import Counted, count, package_of, render
from benchmarks._emulator import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]  # the project root


def test_files_are_attributed_to_their_package() -> None:
    site = "/venv/lib/python3.11/site-packages"
    assert package_of(f"{site}/aiohttp/client.py") == "aiohttp"
    assert package_of("/work/wavespeed_async/_transport.py") == "wavespeed_async"
    assert package_of("/usr/lib/python3.11/asyncio/base_events.py") == "asyncio"
    assert package_of("/usr/lib/python3.11/json/decoder.py") == "json"
    assert package_of("/work/benchmarks/_floor.py") == "benchmarks"
    assert package_of("/usr/lib/python3.11/selectors.py") == "other"


def test_the_report_divides_by_jobs_and_requests_and_ranks_our_functions() -> None:
    ours = Counted(
        "ours",
        jobs=10,
        ok=10,
        requests=40,
        functions={
            "/w/wavespeed_async/_transport.py:229 _attempt": 3_000,
            "/w/wavespeed_async/_polling.py:242 _hazard_interval": 5_000,
            "/v/site-packages/aiohttp/client.py:558 _request": 12_000,
        },
    )
    floor = Counted(
        "floor-0.5",
        jobs=10,
        ok=10,
        requests=50,
        functions={"/v/site-packages/aiohttp/client.py:558 _request": 15_000},
    )
    text = render([ours, floor])
    # ours: 20,000 bytecodes over 10 jobs and 40 requests; 800 of its own per job.
    assert "| ours | 4.00 | 2,000 | 500 | 800 | 1,200 |" in text
    assert "| floor-0.5 | 5.00 | 1,500 | 300 | 0 | 1,500 |" in text
    own = text.split("top 20", 1)[1]
    assert own.index("_hazard_interval") < own.index("_attempt")
    assert "| `wavespeed_async/_polling.py:242 _hazard_interval` | 500 |" in own


def test_a_real_count_sees_our_package_only_in_ours() -> None:
    with EmulatorProcess(latency="0", seed=7, cwd=ROOT) as emu:
        ours = count(emu, "ours", jobs=8, warmup=4, concurrency=4)
        floor = count(emu, "floor-0.05", jobs=8, warmup=4, concurrency=4)
    for counted in (ours, floor):
        assert counted.ok == counted.jobs == 8
        assert counted.requests >= 2 * 8  # a submit and at least one poll per job
        assert counted.per_package().get("aiohttp", 0) > 0
    assert ours.per_package().get("wavespeed_async", 0) > 0
    assert floor.per_package().get("wavespeed_async", 0) == 0
    assert floor.per_package().get("json", 0) > 0  # the floor decodes with json
