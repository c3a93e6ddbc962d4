"""The native sampling harness: perf's report, the tables, bad options, a real short run.

Checks that perf's report is read right, and runs a real short run where perf can sample.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import _sampled
from benchmarks._sampled import ClientSamples, main, parse_report, perf_works, render

REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 1K of event 'cpu-clock'
#
# Overhead       Samples  Shared Object                 Symbol
# ........  ............  ............................  ..............................
#
    16.79%           132  libpython3.11.so.1.0          [.] _PyEval_EvalFrameDefault
     1.07%            11  [kernel.kallsyms]             [k] finish_task_switch.isra.0
     0.50%             4  _http_parser.cpython-311.so   [.] __pyx_f_7aiohttp_parse (args)
     0.10%             1  libpython3.11.so.1.0          [.] _PyEval_EvalFrameDefault

#
# (Tip: a line that is not a row is skipped)
#
"""


def test_the_report_gives_samples_per_object_and_symbol() -> None:
    counts = parse_report(REPORT)
    assert counts == Counter(
        {
            ("libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"): 133,
            ("[kernel.kallsyms]", "finish_task_switch.isra.0"): 11,
            ("_http_parser.cpython-311.so", "__pyx_f_7aiohttp_parse (args)"): 4,
        }
    )


def test_the_tables_give_samples_per_request_and_rank_the_difference() -> None:
    ours = ClientSamples("ours", requests=100, jobs=20, cpu_s=0.025)
    ours.by_symbol.update({("libpython", "eval"): 30, ("libpython", "gc"): 10, ("[k]", "x"): 5})
    floor = ClientSamples("floor-0.5", requests=200, jobs=40, cpu_s=0.04)
    floor.by_symbol.update({("libpython", "eval"): 58, ("[k]", "x"): 30})
    text = render([ours, floor], frequency=1000, top=10)
    lines = text.splitlines()
    assert "| requests | 100 | 200 |" in lines
    assert "| CPU µs (timed) | 250 | 200 |" in lines
    # 45 samples at 1000 Hz over 100 requests: 450 µs; 88 over 200: 440 µs.
    assert "| CPU µs (samples at 1000 Hz) | 450 | 440 |" in lines
    assert "| samples | 0.4500 | 0.4400 |" in lines
    assert "| libpython | 0.4000 | 0.2900 |" in lines
    assert "| [k] | 0.0500 | 0.1500 |" in lines
    symbols = lines[
        lines.index("| symbol (difference of the first two) | object | ours | floor-0.5 |") :
    ]
    # Ranked by the size of the difference: gc (0.10 against 0), then x (-0.10), eval.
    assert [row.split("|")[1].strip() for row in symbols[2:]] == ["`gc`", "`x`", "`eval`"]
    assert "| `gc` | libpython | 0.1000 | 0.0000 |" in symbols


def test_a_bad_client_name_or_count_fails_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def checked(perf: str) -> str | None:
        raise AssertionError("perf was tried before the options were checked")

    monkeypatch.setattr(_sampled, "perf_works", checked)
    for argv, message in (
        (["ours", "floor-0"], "floor-<interval s> with an interval above 0, got 'floor-0'"),
        (["ours", "--rounds", "0"], "--rounds must be at least 1, got 0"),
        (["ours", "--frequency", "-5"], "--frequency must be at least 1, got -5"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


def test_a_perf_that_cannot_run_is_named_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = "/nonexistent/perf"
    with pytest.raises(SystemExit) as exit_:
        main(["ours", "--perf", missing])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--perf: cannot sample here (/nonexistent/perf:" in err


def test_a_perf_that_cannot_attach_stops_the_run_with_its_own_words(tmp_path: Path) -> None:
    # A perf that refuses to sample the worker (as with kernel.perf_event_paranoid at 3):
    # the run stops with perf's message, and the worker waiting for "go" ends with it.
    perf = tmp_path / "perf"
    perf.write_text("#!/bin/sh\necho 'perf: no permission to attach to the process' >&2\nexit 1\n")
    perf.chmod(0o755)
    with pytest.raises(RuntimeError) as raised:
        _sampled.sample_clients(
            ["ours"],
            jobs=2,
            warmup=1,
            concurrency=1,
            latency="0",
            rounds=1,
            frequency=99,
            perf=str(perf),
        )
    message = str(raised.value)
    assert "perf record did not start sampling process" in message
    assert "no permission to attach to the process" in message


PERF = shutil.which("perf")
WHY = "perf is not installed" if PERF is None else perf_works(PERF)


@pytest.mark.skipif(WHY is not None, reason=f"no sampling here: {WHY}")
def test_a_real_run_samples_each_client_during_its_measured_batch() -> None:
    assert PERF is not None
    results = _sampled.sample_clients(
        ["ours", "floor-0.05"],
        jobs=6,
        warmup=2,
        concurrency=2,
        latency="0",
        rounds=2,
        frequency=4999,
        perf=PERF,
    )
    assert [r.client for r in results] == ["ours", "floor-0.05"]
    for r in results:
        assert r.jobs == 12  # both rounds
        assert r.requests >= 2 * r.jobs  # a submit and at least one poll per job
        assert r.cpu_s > 0
        # The interpreter ran the client: its samples are there, under its own name.
        assert any(obj.startswith(("libpython", "python")) for obj, _ in r.by_symbol)
        assert r.samples > 0
    text = render(results, 4999, 5)
    assert f"| requests | {results[0].requests} | {results[1].requests} |" in text
