"""The gallery page: escaping, safe links, size at 10,000 jobs, run_many results, the CLI."""

from __future__ import annotations

import argparse
import os
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import PRO, cli, manifest, popen, write_jobs
from wavespeed_async import BadRequestError, Client, Prediction, TaskFailedError
from wavespeed_async._facade.bulk import BulkResult
from wavespeed_async.cli._common import Target
from wavespeed_async.cli._gallery import command_line
from wavespeed_async.gallery import (
    INDEX_NAME,
    GalleryItem,
    item_from_result,
    render_gallery,
    safe_href,
    write_gallery,
    write_page,
)

HOSTILE = "<img src=x onerror=alert(1)>"


class Page(HTMLParser):
    """The tags of a page, with their attributes, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]

    @property
    def cards(self) -> list[dict[str, str | None]]:
        return self.all("article")


def hostile_items() -> list[GalleryItem]:
    return [
        GalleryItem(
            number=2,
            status="completed",
            files=["a b#?.png", "../../etc/passwd", "/abs.png", "javascript:alert(1)"],
            prompt=HOSTILE,
            model='"><script>alert(2)</script>',
            task_id="<b onmouseover=alert(3)>",
            inference_ms=1234.0,
        ),
        GalleryItem(
            number=1,
            status="failed",
            prompt="</p></article><script>alert(4)</script>",
            error="<iframe src=javascript:alert(5)>",
        ),
        GalleryItem(number=3, status='x" onclick="alert(6)', error=None),
    ]


def test_everything_from_a_job_or_the_server_is_text_not_markup() -> None:
    html = render_gallery(hostile_items(), title="<title>t", command="cmd <svg onload=alert(7)>")
    page = Page(html)
    # Only the page's own elements exist: no script, iframe, svg, b; no event handler.
    assert {t for t, _ in page.tags} <= {
        "html", "head", "meta", "title", "style", "body", "input", "header", "h1", "div",
        "span", "b", "p", "code", "nav", "label", "main", "article", "a", "img", "br",
    }  # fmt: skip
    assert not page.all("script") and not page.all("iframe") and not page.all("svg")
    assert all(not k.startswith("on") for _, attrs in page.tags for k in attrs)
    # The <b> tags are the header's counts only (the task id's <b ...> is text).
    assert len(page.all("b")) == 3
    text = "".join(page.text)
    for literal in (
        HOSTILE,
        '"><script>alert(2)</script>',
        "<b onmouseover=alert(3)>",
        "</p></article><script>alert(4)</script>",
        "<iframe src=javascript:alert(5)>",
        "cmd <svg onload=alert(7)>",
        "<title>t",
    ):
        assert literal in text, literal
    # In number order, one card each; a made-up status is a class-safe "open" card.
    assert [c["id"] for c in page.cards] == ["j1", "j2", "j3"]
    assert page.cards[2]["class"] == "c open"


def test_image_links_stay_in_the_folder_and_are_quoted() -> None:
    page = Page(render_gallery(hostile_items()))
    srcs = [a["src"] for a in page.all("img")]
    hrefs = [a["href"] for a in page.all("a")]
    assert srcs == hrefs == ["a%20b%23%3F.png", "javascript%3Aalert%281%29"]
    assert all(a["loading"] == "lazy" for a in page.all("img"))


@pytest.mark.parametrize(
    ("name", "href"),
    [
        ("line00001_abc_0.png", "line00001_abc_0.png"),
        ("sub/dir/a.png", "sub/dir/a.png"),
        ("a b#?&.png", "a%20b%23%3F%26.png"),
        ("javascript:alert(1)", "javascript%3Aalert%281%29"),
        ("é.png", "%C3%A9.png"),
        ("../a.png", None),
        ("a/../../b.png", None),
        ("./a.png", None),
        ("/etc/passwd", None),
        ("a//b.png", None),
        ("..\\a.png", None),
        ("C:\\a.png", None),
        ("a\x00.png", None),
        ("", None),
    ],
)
def test_safe_href(name: str, href: str | None) -> None:
    assert safe_href(name) == href


def test_the_header_counts_jobs_and_shows_wall_time_and_command() -> None:
    items = [
        GalleryItem(1, "completed", ["a.png"]),
        GalleryItem(2, "completed", ["b.png"]),
        GalleryItem(3, "failed", error="boom"),
        GalleryItem(4, "not_submitted", error="not submitted yet"),
    ]
    page = Page(render_gallery(items, command="wavespeed-async batch j.jsonl -o out", wall_s=12.34))
    text = "".join(page.text)
    assert "2 completed" in text
    assert "1 failed" in text and "1 not submitted" in text
    assert "4 job(s)" in text and "wall time 12.3 s" in text
    assert "wavespeed-async batch j.jsonl -o out" in text
    labels = [t for t in page.text if "(" in t and ")" in t]
    assert "completed (2)" in labels and "failed (1)" in labels and "not finished (1)" in labels
    # The failed job's error is in its card, in place of an image.
    assert "boom" in text


def test_ten_thousand_jobs_make_a_page_of_bounded_size(tmp_path: Path) -> None:
    prompt = "a lighthouse on a rocky coast at dusk, warm light, job "  # 55 characters
    items = [
        GalleryItem(
            n,
            "completed" if n % 10 else "failed",
            [f"line{n:05d}_{n:032x}_0.png"] if n % 10 else [],
            prompt=f"{prompt}{n}",
            model=PRO,
            task_id=f"{n:032x}",
            inference_ms=2400.0,
            error=None if n % 10 else "task ended failed code 5000: internal error",
        )
        for n in range(1, 10_001)
    ]
    started = time.perf_counter()
    path = write_page(tmp_path, render_gallery(items, command="wavespeed-async batch"))
    elapsed = time.perf_counter() - started
    size = path.stat().st_size
    empty = len(render_gallery([]).encode())
    per_job = (size - empty) / len(items)
    # A card: its prompt (~60 B), the file name twice (~50 B each), the task id, the model.
    assert per_job < 750, per_job
    text = path.read_text(encoding="utf-8")
    assert text.count("<article ") == 10_000 and text.count('loading="lazy"') == 9_000
    assert text.index('id="j9999"') < text.index('id="j10000"')
    print(f"10,000 jobs: {size / 1e6:.2f} MB, {per_job:.0f} B/job, written in {elapsed:.2f} s")


def test_the_page_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_page(tmp_path, "old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_page(tmp_path, "new")
    monkeypatch.undo()
    assert (tmp_path / INDEX_NAME).read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX_NAME]  # no temporary left
    write_page(tmp_path, "new")
    assert (tmp_path / INDEX_NAME).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX_NAME]


@pytest.mark.anyio
async def test_write_gallery_from_run_many_results(client: Client, tmp_path: Path) -> None:
    inputs: list[dict[str, Any]] = [
        {"prompt": "a red kite"},
        {"prompt": HOSTILE, "num_images": 2},
        {"prompt": "a failing job [fail:1200]"},
        {"prompt": "not downloaded"},
    ]
    results: list[BulkResult[dict[str, Any]]] = []
    async with client.run_many(PRO, inputs, concurrency=4) as run:
        async for r in run:
            if r.ok and r.prediction is not None and r.index != 3:
                await client.download(r.prediction, tmp_path)
            results.append(r)
    path = write_gallery(tmp_path, results, title="kites")
    assert path == tmp_path / INDEX_NAME
    page = Page(path.read_text(encoding="utf-8"))
    cards = page.cards
    assert [c["id"] for c in cards] == ["j1", "j2", "j3", "j4"]
    assert [c["class"] for c in cards] == ["c ok", "c ok", "c bad", "c ok"]
    srcs = [a["src"] for a in page.all("img")]
    by_index = {r.index: r for r in results}
    assert srcs == [
        f"{by_index[0].id}_0.png",
        f"{by_index[1].id}_0.png",
        f"{by_index[1].id}_1.png",
    ]
    assert all(src is not None and (tmp_path / src).is_file() for src in srcs)
    text = "".join(page.text)
    assert HOSTILE in text and "1200" in text and "not saved in this folder" in text
    assert by_index[2].id is not None and by_index[2].id in text
    assert isinstance(by_index[2].error, TaskFailedError)
    assert PRO in text


def test_a_result_without_a_task_is_a_failed_card(tmp_path: Path) -> None:
    error = BadRequestError("prompt: required", status=400)
    refused: BulkResult[Any] = BulkResult(0, {"prompt": "p"}, None, None, error)
    done: BulkResult[Any] = BulkResult(
        1, None, "t1", Prediction("t1", "completed", "m/x", ["u"]), None
    )
    write_gallery(tmp_path, [done, refused], model="m/default")
    page = Page((tmp_path / INDEX_NAME).read_text())
    assert [c["class"] for c in page.cards] == ["c bad", "c ok"]
    text = "".join(page.text)
    assert "m/default" in text and "m/x" in text and "1 output(s), not saved" in text
    assert "prompt: required" in text


def test_the_command_shown_never_holds_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "wsk-gallery-canary-1234"
    argv = ["wavespeed-async", "batch", "j.jsonl", "-o", "out", "--api", key]
    argv += ["--base-url", "https://user:pw@example.test/"]
    monkeypatch.setattr(sys, "argv", argv)
    args = argparse.Namespace(
        jobs="j.jsonl", output="out", api_key=key, base_url="https://user:pw@example.test/"
    )
    text = command_line(args, Target("https://example.test", key))
    assert key not in text and "pw" not in text and "user" not in text
    assert text.startswith("wavespeed-async batch j.jsonl -o out --api ***")
    # With --emulator the "key" is a placeholder that must not garble the options.
    monkeypatch.setattr(sys, "argv", ["x", "batch", "j.jsonl", "-o", "out", "--emulator"])
    args = argparse.Namespace(jobs="j.jsonl", output="out", api_key=None, base_url=None)
    text = command_line(args, Target(None, "emulator", 0.0))
    assert text == "wavespeed-async batch j.jsonl -o out --emulator"


# -- the command line ----------------------------------------------------------------------


@pytest.mark.e2e
def test_batch_writes_the_gallery_and_rebuilds_it_on_resume(tmp_path: Path) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"prompt": "a red kite"},
            {"prompt": HOSTILE, "num_images": 2},
            {"prompt": "fails [fail:1200]"},
            "not json",
        ],
    )
    out = tmp_path / "out"
    args = ("batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator")
    r = cli(*args, "--emulator-latency", "fast")
    assert r.returncode == 1, r.stderr
    assert f"Gallery: {out / INDEX_NAME}" in r.stdout
    first = (out / INDEX_NAME).read_text(encoding="utf-8")
    page = Page(first)
    entries = manifest(out)
    assert [c["class"] for c in page.cards] == ["c ok", "c ok", "c bad", "c bad"]
    assert [a["src"] for a in page.all("img")] == [n for e in entries for n in e["outputs"]]
    text = "".join(page.text)
    assert HOSTILE in text and "code 1200" in text and "not valid JSON" in text
    assert all(e["task_id"] in text for e in entries if e["task_id"])
    assert "--emulator-latency fast" in text  # the command as typed
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    # A resumed run (nothing left to do) rebuilds the same cards from the journal.
    (out / INDEX_NAME).unlink()
    r = cli(*args)
    assert r.returncode == 1, r.stderr
    again = Page((out / INDEX_NAME).read_text(encoding="utf-8"))
    assert again.cards == page.cards and again.all("img") == page.all("img")


@pytest.mark.e2e
def test_no_gallery_writes_no_page(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": "a red kite"}])
    out = tmp_path / "out"
    r = cli(
        "batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator",
        "--emulator-latency", "fast", "--no-gallery",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not (out / INDEX_NAME).exists() and "Gallery" not in r.stdout
    assert len(list(out.glob("*.png"))) == 1


@pytest.mark.e2e
def test_a_page_that_cannot_be_written_never_stops_the_batch(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": "a red kite"}, {"prompt": "a fox"}])
    out = tmp_path / "out"
    (out / INDEX_NAME).mkdir(parents=True)  # os.replace cannot put a file there
    r = cli(
        "batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator",
        "--emulator-latency", "fast",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("cannot write the gallery") == 1 and "Gallery" not in r.stdout
    assert [e["status"] for e in manifest(out)] == ["completed", "completed"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.e2e
def test_the_gallery_shows_results_while_the_batch_runs(tmp_path: Path) -> None:
    """A quick job's image is on the page while a slow job still runs."""
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"prompt": "quick [latency:20]"}, {"prompt": "slow [latency:6000]"}],
    )
    out = tmp_path / "out"
    proc = popen("batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator", key="-")
    try:
        seen: list[str | None] = []
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                page = Page((out / INDEX_NAME).read_text(encoding="utf-8"))
            except FileNotFoundError:
                page = None
            if page is not None:
                seen = [c["class"] for c in page.cards]
                if seen == ["c ok", "c open"]:
                    break
            time.sleep(0.05)
        running = proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()
    assert running, "the batch ended before the page showed the quick job"
    assert seen == ["c ok", "c open"]


def test_an_input_file_is_shown_before_the_output_and_an_input_url_only_linked() -> None:
    item = GalleryItem(
        number=1,
        status="completed",
        files=["line00001_t_0.png"],
        inputs=["inputs/abc.png", "https://cdn.example/in.png", "javascript:alert(1)", "../x.png"],
    )
    page = Page(render_gallery([item]))
    images = [attrs.get("src") or "" for tag, attrs in page.tags if tag == "img"]
    assert images[0] == "inputs/abc.png" and images[-1] == "line00001_t_0.png"
    # Nothing remote is loaded; a name that is no URL stays a file of the folder.
    assert not any(src.startswith(("http", "javascript:")) for src in images)
    links = [attrs.get("href") for tag, attrs in page.tags if tag == "a"]
    assert "https://cdn.example/in.png" in links
    assert not any(h and h.startswith("javascript:") for h in links)
    assert "../x.png" not in images and "../x.png" not in links
    classes = [attrs.get("class") for tag, attrs in page.tags if tag == "a"]
    assert classes[0] == "in"


def test_run_many_results_link_their_input_urls() -> None:
    pred = Prediction(id="t1", status="completed", outputs=["https://x/o.png"])
    r: BulkResult[Any] = BulkResult(
        0, {"prompt": "p", "image": "https://x/in.png"}, "t1", pred, None
    )
    page = Page(render_gallery([item_from_result(r, {"t1": [(0, "t1_0.png")]})]))
    assert [a.get("href") for tag, a in page.tags if tag == "a"][-1] == "https://x/in.png"
