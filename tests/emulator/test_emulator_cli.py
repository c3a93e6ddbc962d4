"""``python -m wavespeed_async.emulator`` as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

import wavespeed_async
from wavespeed_async.emulator import LatencyProfile

pytestmark = pytest.mark.e2e

ROOT = Path(wavespeed_async.__file__).resolve().parent.parent


def test_cli_starts_answers_and_stops() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable,
        "-m",
        "wavespeed_async.emulator",
        "--port",
        "0",
        "--latency",
        "fast",
        "--seed",
        "3",
        "--fault",
        "poll.stall_before=0.0",
        "--tier",
        "gold",
        "--print-url",
    ]
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            prefix = "WaveSpeed emulator listening on "
            assert line.startswith(prefix), (line, proc.stderr.read() if proc.stderr else "")
            url = line[len(prefix) :]
            assert url.startswith("http://127.0.0.1:")
            assert not url.endswith(":0")
            assert proc.stdout.readline().strip() == url
            request = urllib.request.Request(  # noqa: S310 - http on 127.0.0.1
                f"{url}/api/v3/balance", headers={"Authorization": "Bearer k"}
            )
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
                assert json.loads(r.read())["data"]["balance"] == 100.0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_cli_rejects_bad_fault() -> None:
    from wavespeed_async.emulator.__main__ import build_config, parse_args

    config = build_config(
        parse_args(["--fault", "submit.reset_after=0.05", "--latency", "0.5", "--tier", "bronze"])
    )
    assert config.submit_faults.reset_after == 0.05
    assert config.limits.submits_per_minute == 2
    assert config.latency.for_model("x").inference_ms[2] == 3000
    import pytest

    with pytest.raises(SystemExit):
        parse_args(["--fault", "submit.explode=1"])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


CLI = [sys.executable, "-m", "wavespeed_async.emulator"]


def _submit(url: str, prompt: str) -> str:
    request = urllib.request.Request(  # noqa: S310 - http on 127.0.0.1
        f"{url}/api/v3/wavespeed-ai/flux-kontext-dev",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
        task_id: str = json.loads(r.read())["data"]["id"]
        return task_id


def test_two_emulators_started_with_one_seed_hand_out_disjoint_ids() -> None:
    ids: list[list[str]] = []
    for _ in range(2):
        cmd = [*CLI, "--port", "0", "--latency", "fast", "--seed", "0"]
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True
        ) as proc:
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline().strip()
                url = line.rsplit(" ", 1)[-1]
                assert url.startswith("http://127.0.0.1:"), line
                ids.append([_submit(url, f"same prompt {i}") for i in range(5)])
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=10) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert len(set(ids[0])) == len(set(ids[1])) == 5
    assert not set(ids[0]) & set(ids[1])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=_env(), timeout=60, check=False
    )


def test_a_bad_fault_names_the_option_once_and_the_allowed_form() -> None:
    done = _run("--fault", "submit.explode=1")
    assert done.returncode == 2
    [line] = [x for x in done.stderr.splitlines() if "error" in x]
    assert line.count("--fault") == 1
    assert "argument --fault: 'submit.explode=1'; allowed: submit.KIND=RATE" in line
    done = _run("--fault", "poll.reset_before=lots")
    assert done.returncode == 2
    assert done.stderr.count("--fault") == 2  # the usage line, then the error once
    assert "RATE is a number in 0 ~ 1" in done.stderr


def test_help_shows_the_defaults() -> None:
    done = _run("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for default in (
        "(default: 8080)",
        "(default: 127.0.0.1)",
        "(default: 0)",
        "(default: realistic)",
        "(default: 100)",
        "(default: 90.0)",
        "(default: 30.0)",
        "(default: WARNING)",
        "(default: off)",
    ):
        assert default in text, default
    assert "--webhook-any-host" in text


def test_a_busy_port_is_one_line_suggesting_port_0_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _run("--port", str(port), "--latency", "fast")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port 0" in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_new_options_reach_the_config() -> None:
    from wavespeed_async.emulator.__main__ import build_config, parse_args

    config = build_config(
        parse_args(
            [
                "--webhook-any-host",
                "--no-model-price",
                "--reject-unknown-models",
                "--enforce-balance",
                "--initial-balance",
                "2.50",
            ]
        )
    )
    assert config.webhook_any_host
    assert not config.serve_model_price
    assert not config.accept_unknown_models
    assert config.enforce_balance
    assert config.initial_balance == Decimal("2.50")
    defaults = build_config(parse_args([]))
    assert not defaults.webhook_any_host
    assert defaults.serve_model_price
    assert defaults.accept_unknown_models
    assert defaults.latency == LatencyProfile.realistic()
