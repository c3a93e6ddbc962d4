"""examples/live_progress.py in a real headless Chromium, from prompt to image.

The page submits a prompt, follows its task with ``EventSource`` and shows
"queued -> running -> done", then the image.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_gallery_browser import browser  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """The example app, with its emulator, on a free port; stopped by pid after the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "live_progress.py"), "--emulator",
         "--latency", "fast", "--port", "0"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            if line.startswith("serving on "):
                url = line.removeprefix("serving on ").strip()
                break
        assert url is not None, "the example did not start"
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_page_shows_queued_running_done_and_the_finished_image(
    browser: Any,  # noqa: F811 - the fixture imported above
    app_url: str,
) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    # Every step the page reaches, in order, as the stream moves it along.
    page.add_init_script(
        """
        window.__reached = [];
        new MutationObserver(() => {
          for (const li of document.querySelectorAll('#steps li.reached')) {
            if (!window.__reached.includes(li.dataset.step)) window.__reached.push(li.dataset.step);
          }
        }).observe(document, {subtree: true, attributes: true, attributeFilter: ['class']});
        """
    )
    page.goto(app_url)
    page.fill("#prompt", "a red fox asleep in fresh snow [latency:1500]")
    page.click("#go")
    page.wait_for_selector("#steps li[data-step=running].reached", timeout=20_000)
    assert page.evaluate("window.__reached") == ["queued", "running"]  # not done yet
    page.wait_for_function(
        "() => { const i = document.getElementById('image');"
        " return !i.hidden && i.complete && i.naturalWidth > 0; }",
        timeout=30_000,
    )
    assert page.evaluate("window.__reached") == ["queued", "running", "done"]
    width = page.evaluate("document.getElementById('image').naturalWidth")
    assert width >= 256
    task_id = page.inner_text("#caption")
    assert len(task_id) == 32
    assert page.get_attribute("#image", "src").endswith(f"/media/outputs/{task_id}/0.png")
    assert "done in" in page.inner_text("#message")
    assert page.evaluate("document.getElementById('go').disabled") is False
    assert errors == []
    page.close()


def test_a_failed_task_shows_its_error(
    browser: Any,  # noqa: F811
    app_url: str,
) -> None:
    page = browser.new_page()
    page.goto(app_url)
    page.fill("#prompt", "this one fails [fail:1200]")
    page.click("#go")
    page.wait_for_selector("#message.error", timeout=20_000)
    assert page.inner_text("#message").startswith("failed:")
    assert "1200" in page.inner_text("#message")
    assert page.evaluate("document.getElementById('image').hidden") is True
    page.close()
