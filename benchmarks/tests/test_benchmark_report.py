"""The benchmark's verdicts: repeated rounds, median runs, and ratios judged per round."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from benchmarks._common import Stopwatch
from benchmarks._metrics import RunFigures
from benchmarks._report import (
    Results,
    evaluate_targets,
    median_run,
    median_runs,
    render_markdown,
    round_ratios,
)

RESULTS = Path(__file__).resolve().parents[1] / "results" / "latest.json"
CPU_CLIENTS = ("ours", "floor-1s", "floor-0.5s", "floor-0.25s", "official-1s")


def _stored() -> Results:
    return msgspec.json.decode(RESULTS.read_bytes(), type=Results)


def _scaled(fig: RunFigures, factor: float) -> RunFigures:
    """The same run on a machine ``factor`` times slower (CPU scaled, nothing else)."""
    return msgspec.structs.replace(
        fig,
        cpu_s=fig.cpu_s * factor,
        cpu_ms_per_job=fig.cpu_ms_per_job * factor,
        cpu_us_per_request=fig.cpu_us_per_request * factor,
    )


#: name, client, CPU ms/job, requests/job: one round of the CPU goals' clients (the figures
#: of a real round; any stored run lends the rest of the fields).
ROUND = (
    ("ours", "ours", 1.35, 4.96),
    ("floor-1s", "floor", 0.87, 3.32),
    ("floor-0.5s", "floor", 1.28, 5.16),
    ("floor-0.25s", "floor", 2.48, 8.87),
    ("official-1s", "official", 7.22, 4.32),
)


def _runs(results: Results) -> list[RunFigures]:
    template = results.comparison[0]
    runs = []
    for name, client, cpu_ms, requests in ROUND:
        emulator = msgspec.structs.replace(template.emulator, requests_per_job=requests)
        runs.append(
            msgspec.structs.replace(
                template,
                name=name,
                client=client,
                cpu_s=cpu_ms * template.jobs / 1000,
                cpu_ms_per_job=cpu_ms,
                cpu_us_per_request=1000 * cpu_ms / requests,
                emulator=emulator,
            )
        )
    return runs


def test_the_median_run_is_a_real_run_of_middle_cpu() -> None:
    base = _runs(_stored())[0]
    runs = [_scaled(base, 1.3), _scaled(base, 0.8), _scaled(base, 1.0)]
    assert median_run(runs) is runs[2]
    # An even number: the lower middle, still one of the runs.
    assert median_run(runs[:2]) is runs[1]


def test_a_machine_that_slows_down_between_rounds_does_not_move_the_verdicts() -> None:
    stored = _stored()
    one = _runs(stored)
    # Round 2 ran on a machine twice as slow, round 3 at 0.9x: every client alike.
    rounds = [one, [_scaled(f, 2.0) for f in one], [_scaled(f, 0.9) for f in one]]
    ratios = round_ratios(rounds)
    assert [r.round for r in ratios] == [1, 2, 3]
    for r in ratios[1:]:
        assert r.over_floor == pytest.approx(ratios[0].over_floor)
        assert r.sdk_factor == pytest.approx(ratios[0].sdk_factor)
    assert ratios[1].ours_ms == pytest.approx(2 * ratios[0].ours_ms)

    single = evaluate_targets(one, stored.scale, stored.inflight)
    repeated = evaluate_targets(median_runs(rounds), stored.scale, stored.inflight, rounds)
    assert [t.goal for t in repeated] == [t.goal for t in single]
    assert [t.met for t in repeated] == [t.met for t in single]
    sdk = next(t for t in repeated if "official SDK" in t.goal)
    assert "per round" in sdk.measured
    assert "median" in sdk.measured
    # The median runs are round 1's (middle CPU of 0.9x, 1x, 2x).
    assert median_runs(rounds)[0] is one[0]


def test_the_verdict_follows_the_median_of_the_rounds_ratios_not_one_lucky_round() -> None:
    stored = _stored()
    one = _runs(stored)
    ours, floors, sdk = one[0], one[1:4], one[4]
    need = 5.0 * ours.cpu_ms_per_job / sdk.cpu_ms_per_job  # SDK scaling that makes it 5x

    def round_with(sdk_factor: float) -> list[RunFigures]:
        return [ours, *floors, _scaled(sdk, need * sdk_factor / 5.0)]

    lucky_once = [round_with(7.0), round_with(4.0), round_with(4.5)]
    target = next(
        t
        for t in evaluate_targets(median_runs(lucky_once), [], [], lucky_once)
        if "official SDK" in t.goal
    )
    assert target.met is False
    assert "median 4.50x" in target.measured
    twice = [round_with(7.0), round_with(5.5), round_with(4.5)]
    target = next(
        t for t in evaluate_targets(median_runs(twice), [], [], twice) if "official SDK" in t.goal
    )
    assert target.met is True


def test_the_report_shows_every_round() -> None:
    stored = _stored()
    one = _runs(stored)
    rounds = [one, [_scaled(f, 1.5) for f in one], [_scaled(f, 0.8) for f in one]]
    results = msgspec.structs.replace(
        stored, comparison=median_runs(rounds), rounds=rounds, targets=[]
    )
    results.targets = evaluate_targets(results.comparison, [], [], rounds)
    text = render_markdown(results)
    assert "## CPU per job, round by round" in text
    table = text.split("## CPU per job, round by round", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3"]
    assert f"| 2 | {1.5 * one[0].cpu_ms_per_job:.2f} |" in table


def test_a_stopwatch_counts_the_times_its_process_blocked() -> None:
    watch = Stopwatch()
    for _ in range(3):
        time.sleep(0.001)  # what is measured here is blocking itself
    outcome = watch.stop(jobs=1, ok=1, failed=0, timed_out=False)
    assert outcome.sleeps is not None
    assert outcome.sleeps >= 3


def test_the_comparison_shows_sleeps_per_request_and_old_results_still_render() -> None:
    raw = msgspec.json.decode(RESULTS.read_bytes())
    for fig in raw["comparison"]:
        fig["sleeps_per_request"] = 0.25
    text = render_markdown(msgspec.convert(raw, type=Results))
    header = next(line for line in text.splitlines() if line.startswith("| client | polling"))
    cells = [c.strip() for c in header.split("|")]
    column = cells.index("sleeps/request")
    row = next(line for line in text.splitlines() if line.startswith("| wavespeed_async"))
    assert row.split("|")[column].strip() == "0.25"
    # Results written before sleeps were counted have no such field: "n/a", not an error.
    for fig in raw["comparison"]:
        del fig["sleeps_per_request"]
    old = render_markdown(msgspec.convert(raw, type=Results))
    row = next(line for line in old.splitlines() if line.startswith("| wavespeed_async"))
    assert row.split("|")[column].strip() == "n/a"


def test_results_without_sleeps_survive_being_written_and_read_again() -> None:
    raw = msgspec.json.decode(RESULTS.read_bytes())
    for fig in raw["comparison"]:
        fig.pop("sleeps_per_request", None)
        fig["worker"]["measured"].pop("sleeps", None)
    old = msgspec.convert(raw, type=Results)
    assert old.comparison[0].sleeps_per_request is None
    assert old.comparison[0].worker.measured.sleeps is None
    # --render writes the results back out; reading that again must work too.
    again = msgspec.json.decode(msgspec.json.encode(old), type=Results)
    assert again.comparison[0].sleeps_per_request is None
    assert "| n/a |" in render_markdown(again)


def test_rounds_option_repeats_the_compared_clients_and_is_recorded() -> None:
    from benchmarks._run import REPEATED, command_line, parse_args, plan_for

    args = parse_args(["--only", "ours", "floor-0.5s", "--rounds", "15"])
    assert plan_for(args).rounds == 15
    assert command_line(args) == "python -m benchmarks --only ours floor-0.5s --rounds 15"
    # Without the option each plan keeps its own count, and the command is the plain one.
    assert plan_for(parse_args([])).rounds == 7
    assert command_line(parse_args([])) == "python -m benchmarks"
    quick = plan_for(parse_args(["--quick", "--rounds", "3"]))
    assert quick.rounds == 3
    # A quick run with rounds has clients to compare in every round, not only the first.
    repeated = [s.name for s in quick.scenarios if s.name in quick.repeated]
    assert repeated == [n for n in REPEATED if n in {s.name for s in quick.scenarios}]
    assert len(repeated) >= 2


@pytest.mark.parametrize("bad", ["0", "-2"])
def test_rounds_below_one_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks._run import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(["--rounds", bad])
    assert exc.value.code == 2
    assert f"--rounds must be at least 1, got {bad}" in capsys.readouterr().err
