"""A batch's gallery in a real browser: headless Chromium (Debian's ``chromium``) via Playwright.

Skipped, with the reason, where no Chromium is installed; under CI (``$CI`` set) a missing
browser fails instead, since ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import DEV, PRO, REPO, check_png, cli, manifest, write_jobs

pytestmark = pytest.mark.e2e

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_FLAG = '<img src=y onerror="window.__pwned=1"><script>window.__pwned=2</script>'

#: Keeps the browser to this machine: no updates, no background traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    reason = ""
    if path is None:
        reason = "no Chromium (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is not installed (the test extra)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)
    assert path is not None
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_a_batch_gallery_renders_every_image_and_shows_hostile_prompts_as_text(
    tmp_path: Path, browser: Any
) -> None:
    lines: list[dict[str, Any]] = [
        {"prompt": "a lighthouse on a rocky coast at dusk", "aspect_ratio": "16:9"},
        {"prompt": HOSTILE},
        {"prompt": "a job that fails [fail:1200]"},
        {"prompt": HOSTILE_FLAG, "num_images": 2, "aspect_ratio": "3:2"},
    ]
    lines += [{"prompt": f"filler {i}", "aspect_ratio": "9:16"} for i in range(12)]
    jobs = write_jobs(tmp_path / "jobs.jsonl", lines)
    out = tmp_path / "out"
    r = cli(
        "batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator",
        "--emulator-latency", "fast",
    )  # fmt: skip
    assert r.returncode == 1, r.stderr  # the [fail] job
    outputs = [n for e in manifest(out) for n in e["outputs"]]
    assert len(outputs) == 1 + 1 + 2 + 12

    page = browser.new_page(viewport={"width": 1200, "height": 800})
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto((out / "index.html").as_uri())
    page.wait_for_load_state("load")

    # Lazy images below the fold have not loaded yet; scroll each into view to load it.
    for img in page.query_selector_all("img"):
        img.scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=20_000)
    images = page.evaluate(
        "[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth, i.loading])"
    )
    assert [src for src, _, _ in images] == outputs
    assert all(width > 0 for _, width, _ in images), images
    assert {loading for _, _, loading in images} == {"lazy"}
    # Only the batch's own files were fetched: the page itself and its images.
    assert {u.rsplit("/", 1)[1] for u in requests} == {"index.html", *outputs}

    # The hostile prompts are text: no element made from them, no handler ran.
    assert dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('img[src=x], img[src=y], script').length") == 0
    text = page.inner_text("main")
    assert HOSTILE in text and '<img src=y onerror="window.__pwned=1">' in text
    cards = page.query_selector_all("article")
    assert len(cards) == 16

    # The failed job shows its error in place of an image.
    failed = page.query_selector("#j3")
    assert failed is not None
    assert "code 1200" in failed.inner_text() and failed.query_selector("img") is None

    # Filtering by status works without JavaScript (plain CSS).
    page.click("label[for=f-bad]")
    visible = [c.get_attribute("id") for c in cards if c.is_visible()]
    assert visible == ["j3"]
    page.click("label[for=f-all]")
    assert sum(c.is_visible() for c in cards) == 16

    # And from the keyboard: Tab reaches the filter, the arrow keys move it.
    page.goto((out / "index.html").as_uri())  # a fresh load: nothing focused yet
    cards = page.query_selector_all("article")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-all"
    page.keyboard.press("ArrowRight")  # completed
    page.keyboard.press("ArrowRight")  # failed
    assert page.evaluate("document.activeElement.id") == "f-bad"
    assert [c.get_attribute("id") for c in cards if c.is_visible()] == ["j3"]
    page.close()


def test_without_chromium_the_test_skips_with_the_reason_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        _chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        _chromium()


def test_an_edit_jobs_card_shows_its_input_image_beside_the_output(
    tmp_path: Path, browser: Any
) -> None:
    shutil.copy(REPO / "examples" / "images" / "cottage.png", tmp_path / "cottage.png")
    url_input = "https://example.com/elsewhere.png"
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"model": DEV, "prompt": "make it winter", "image": "cottage.png"},
            {"model": PRO, "prompt": "a lighthouse"},
            {"model": DEV, "prompt": "again, by URL", "image": url_input},
        ],
    )
    out = tmp_path / "out"
    r = cli("batch", str(jobs), "-o", str(out), "--emulator", "--emulator-latency", "fast")
    assert r.returncode == 0, r.stderr

    page = browser.new_page(viewport={"width": 1200, "height": 800})
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto((out / "index.html").as_uri())
    page.wait_for_load_state("load")
    for img in page.query_selector_all("img"):
        img.scroll_into_view_if_needed()
    # Polled from here: the page's policy forbids the eval that wait_for_function uses.
    for _ in range(200):
        if page.evaluate("[...document.images].every(i => i.complete)"):
            break
        page.wait_for_timeout(50)
    edit = page.query_selector_all("#j1 img")
    shown = [
        (i.get_attribute("src") or "", i.evaluate("i => i.naturalWidth"), i.get_attribute("alt"))
        for i in edit
    ]
    assert len(shown) == 2, shown
    (input_src, input_width, input_alt), (output_src, output_width, _) = shown
    assert input_src.startswith("inputs/") and input_alt == "line 1, input 1"
    assert input_width == check_png(tmp_path / "cottage.png")[0]  # the very file, loaded
    assert output_src.startswith("line00001_") and output_width > 0
    # The input is marked as such, and sits before (left of) the output.
    assert page.evaluate("getComputedStyle(document.querySelector('#j1 a.in'), '::after').content")
    boxes = [img.bounding_box() for img in edit]
    assert boxes[0] is not None and boxes[1] is not None
    assert boxes[0]["x"] < boxes[1]["x"]
    # A text-to-image job has no input; an input given as a URL is linked, never loaded.
    assert len(page.query_selector_all("#j2 img")) == 1
    assert len(page.query_selector_all("#j3 img")) == 1
    assert page.get_attribute("#j3 a[href^='https://']", "href") == url_input
    assert all(u.startswith("file://") for u in requests), requests
    page.close()
