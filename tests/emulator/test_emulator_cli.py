"""``python -m wavespeed_async.emulator`` as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import wavespeed_async

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
