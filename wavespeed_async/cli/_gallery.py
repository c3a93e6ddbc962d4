"""The batch's gallery, ``DIR/index.html``: rebuilt from the journal while the batch runs.

The page is written when the batch starts (so a resumed batch shows what earlier runs
did), again as results arrive, and at the end. While the batch runs it is rewritten at
most every :data:`MIN_INTERVAL_S` seconds, and never more often than it takes 20 times
the last write, so a batch of 10,000 jobs spends at most a few percent of its time on it.
The page never stops a batch: a write that fails is reported once and the batch goes on.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import anyio

from wavespeed_async._journal import JobRecord, Journal
from wavespeed_async.cli._common import Target, err
from wavespeed_async.cli._jobs import Job
from wavespeed_async.cli._outdir import STATUS
from wavespeed_async.cli._progress import Counters
from wavespeed_async.gallery import INDEX_NAME, GalleryItem, render_gallery, write_page

__all__ = ["MIN_INTERVAL_S", "BatchGallery", "items_from_records"]

#: The shortest time between two rewrites of the page while a batch runs.
MIN_INTERVAL_S: Final = 2.0
#: A rewrite waits at least this many times as long as the last one took.
COST_FACTOR: Final = 20.0

_OPEN_TEXT: Final = {
    "pending": "not submitted yet: re-run the same command to submit it",
    "created": "still running on the server: re-run the same command to collect it",
    "submitting": "being submitted",
}


def items_from_records(records: list[JobRecord], jobs: dict[int, Job]) -> list[GalleryItem]:
    """One item per journal record; the prompt from the body sent, else from the jobs file."""
    items = []
    for rec in records:
        job = jobs.get(rec.line)
        source = rec.body if rec.body is not None else (job.inputs if job is not None else {})
        prompt = source.get("prompt")
        items.append(
            GalleryItem(
                number=rec.line,
                status=STATUS.get(rec.state, rec.state),
                files=rec.outputs,
                prompt=prompt if isinstance(prompt, str) else None,
                model=rec.model or (job.model if job is not None else None),
                task_id=rec.task_id,
                inference_ms=rec.inference_ms,
                error=rec.error or _OPEN_TEXT.get(rec.state),
            )
        )
    return items


def command_line(args: argparse.Namespace, target: Target) -> str:
    """The command as typed (when this process is the command line), never with a secret.

    The key (however it was spelled on the command line) and any credentials in
    ``--base-url`` are replaced by ``***``.
    """
    argv = sys.argv[1:]
    if argv[:1] != ["batch"]:
        argv = ["batch", str(args.jobs), "-o", str(args.output)]
    text = "wavespeed-async " + shlex.join(argv)
    secrets = [getattr(args, "api_key", None)]
    if not target.emulator:
        secrets.append(target.api_key)
    base_url = getattr(args, "base_url", None)
    if base_url:
        user = urlsplit(base_url)
        secrets += [user.username, user.password]
    for secret in secrets:
        if secret and secret.strip():
            text = text.replace(secret.strip(), "***")
    return text


class BatchGallery:
    """Writes ``DIR/index.html`` for a batch (nothing at all when ``enabled`` is false)."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: Path,
        journal: Journal,
        jobs: list[Job],
        target: Target,
    ) -> None:
        self.enabled = not getattr(args, "no_gallery", False)
        self.out = out
        self.journal = journal
        self.jobs = {j.line: j for j in jobs}
        self.title = f"{Path(args.jobs).name} → {out.name or out}"
        self.command = command_line(args, target)
        self.started = time.monotonic()
        self._last_cost_s = 0.0
        self._failed = False

    def _records(self) -> list[JobRecord]:
        return [r for r in self.journal.all() if r.line in self.jobs]

    def _write(self, records: list[JobRecord], wall_s: float) -> None:
        if self._failed:
            return
        t0 = time.perf_counter()
        try:
            page = render_gallery(
                items_from_records(records, self.jobs),
                title=self.title,
                command=self.command,
                wall_s=wall_s,
                numbering="line",
            )
            write_page(self.out, page)
        except OSError as exc:
            self._failed = True
            err(f"note: cannot write the gallery {self.out / INDEX_NAME}: {exc}")
        self._last_cost_s = time.perf_counter() - t0

    def write(self, records: list[JobRecord] | None = None) -> None:
        """Write the page now, from ``records`` (default: the journal's)."""
        if self.enabled:
            self._write(self._records() if records is None else records, self._wall())

    def announce(self) -> None:
        """Tell where the page is (after the summary)."""
        if self.enabled and not self._failed:
            print(f"Gallery: {self.out / INDEX_NAME} (open it in a browser)")

    def _wall(self) -> float:
        return time.monotonic() - self.started

    async def alongside(self, run: Callable[[], Awaitable[None]], counters: Counters) -> None:
        """Run the batch (``run``), rewriting the page as its results arrive."""
        if not self.enabled:
            await run()
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow, counters)
            await run()
            tg.cancel_scope.cancel()

    async def _follow(self, counters: Counters) -> None:
        seen = -1
        while True:
            if counters.ended_this_run != seen:
                seen = counters.ended_this_run
                # Read the journal here (its connection belongs to this thread); render
                # and write in a worker thread, not cancelled midway.
                records, wall = self._records(), self._wall()
                await anyio.to_thread.run_sync(self._write, records, wall)
            await anyio.sleep(max(MIN_INTERVAL_S, COST_FACTOR * self._last_cost_s))
