"""The catalogue is fetched once however many tasks ask, and kept for its TTL.

It is shared with other processes through a file that can never break a call, and a failed
fetch is not cached beyond a short cool-down.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import pytest

from tests.core.fixture import catalog_bytes
from wavespeed_async._core.errors import DecodeError
from wavespeed_async._core.schema import Checker
from wavespeed_async._runtime.catalog_cache import (
    CatalogCache,
    cache_key,
    default_cache_dir,
)

pytestmark = pytest.mark.anyio

BASE = "https://api.wavespeed.ai"
BODY = catalog_bytes()
DEV = "wavespeed-ai/flux-kontext-dev"


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeFetch:
    """A catalogue fetch that counts its calls, can fail, and can hold until released."""

    def __init__(self, body: bytes = BODY) -> None:
        self.body = body
        self.calls = 0
        self.error: Exception | None = None
        self.gate: anyio.Event | None = None
        self.started = anyio.Event()

    async def __call__(self) -> bytes:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.body


def make(fetch: FakeFetch, clock: FakeClock, cache_dir: Path | None, **kw: float) -> CatalogCache:
    return CatalogCache(fetch, base_url=BASE, cache_dir=cache_dir, clock=clock, **kw)


# ---------------------------------------------------------------------------------------
# Single flight.


async def test_two_hundred_concurrent_first_callers_cause_one_fetch(tmp_path: Path) -> None:
    fetch = FakeFetch()
    fetch.gate = anyio.Event()
    cache = make(fetch, FakeClock(), tmp_path)
    results: list[int] = []

    async def ask() -> None:
        results.append(len(await cache.models()))

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(ask)
        await fetch.started.wait()
        fetch.gate.set()
    assert fetch.calls == 1
    assert cache.fetches == 1
    assert results == [11] * 200


async def test_a_failed_fetch_wakes_every_waiter_with_the_failure(tmp_path: Path) -> None:
    fetch = FakeFetch()
    fetch.gate = anyio.Event()
    fetch.error = ConnectionError("catalogue down")
    cache = make(fetch, FakeClock(), tmp_path)
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await cache.models()
        except ConnectionError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(ask)
        await fetch.started.wait()
        fetch.gate.set()
    assert fetch.calls == 1
    assert len(errors) == 50
    assert all(str(e) == "catalogue down" for e in errors)


async def test_a_failure_is_kept_only_for_the_cool_down(tmp_path: Path) -> None:
    clock = FakeClock()
    fetch = FakeFetch()
    fetch.error = ConnectionError("down")
    cache = make(fetch, clock, tmp_path, failure_cooldown_s=5)
    with pytest.raises(ConnectionError):
        await cache.models()
    clock.now += 4.9
    with pytest.raises(ConnectionError):
        await cache.models()
    assert fetch.calls == 1  # within the cool-down: the same failure, no new request
    clock.now += 0.2
    fetch.error = None
    assert DEV in await cache.models()
    assert fetch.calls == 2


async def test_refresh_fetches_even_during_the_cool_down(tmp_path: Path) -> None:
    fetch = FakeFetch()
    fetch.error = ConnectionError("down")
    cache = make(fetch, FakeClock(), tmp_path)
    with pytest.raises(ConnectionError):
        await cache.models()
    fetch.error = None
    assert DEV in await cache.refresh()
    assert fetch.calls == 2


async def test_when_the_fetching_task_is_cancelled_a_waiter_fetches_instead(
    tmp_path: Path,
) -> None:
    fetch = FakeFetch()
    fetch.gate = anyio.Event()
    cache = make(fetch, FakeClock(), tmp_path)
    got: list[int] = []

    async def wait_for_it() -> None:
        got.append(len(await cache.models()))

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.models()

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await fetch.started.wait()
        tg.start_soon(wait_for_it)
        await anyio.wait_all_tasks_blocked()
        leader_scope.cancel()
        await anyio.wait_all_tasks_blocked()
        fetch.gate.set()
    assert got == [11]
    assert fetch.calls == 2


async def test_a_body_that_is_not_a_catalogue_fails_and_is_not_cached(tmp_path: Path) -> None:
    fetch = FakeFetch(b'{"code": 500, "message": "internal"}')
    cache = make(fetch, FakeClock(), tmp_path, failure_cooldown_s=0)
    with pytest.raises(DecodeError, match="code 500"):
        await cache.models()
    assert list(tmp_path.iterdir()) == []
    fetch.body = BODY
    assert DEV in await cache.models()
    assert fetch.calls == 2


# ---------------------------------------------------------------------------------------
# Time to live, and stale if error.


async def test_the_catalogue_is_fetched_again_after_its_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    fetch = FakeFetch()
    cache = make(fetch, clock, None, ttl_s=3600)
    await cache.models()
    clock.now += 3599
    await cache.models()
    assert fetch.calls == 1
    clock.now += 2
    await cache.models()
    assert fetch.calls == 2
    assert cache.fetched_at == clock.now


async def test_an_expired_catalogue_stands_in_when_a_refresh_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    fetch = FakeFetch()
    cache = make(fetch, clock, None, ttl_s=60, stale_if_error_s=600)
    await cache.models()
    clock.now += 120
    fetch.error = ConnectionError("down")
    with caplog.at_level(logging.WARNING, logger="wavespeed_async"):
        assert DEV in await cache.models()
    assert "fetched 120 s ago" in caplog.text
    clock.now += 600
    with pytest.raises(ConnectionError):
        await cache.models()


async def test_stale_if_error_zero_never_uses_an_expired_catalogue(tmp_path: Path) -> None:
    clock = FakeClock()
    fetch = FakeFetch()
    cache = make(fetch, clock, None, ttl_s=60, stale_if_error_s=0)
    await cache.models()
    clock.now += 61
    fetch.error = ConnectionError("down")
    with pytest.raises(ConnectionError):
        await cache.models()


# ---------------------------------------------------------------------------------------
# Checkers.


async def test_checkers_are_compiled_once_per_catalogue(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = make(FakeFetch(), clock, None, ttl_s=60)
    first = await cache.checker(DEV)
    assert isinstance(first, Checker)
    assert first.exact
    assert await cache.checker(DEV) is first
    assert await cache.checker("acme/not-listed") is None
    unknown_schema = await cache.checker("acme/no-schema")
    assert unknown_schema is not None and unknown_schema.uncheckable
    clock.now += 61
    assert await cache.checker(DEV) is not first  # a new catalogue, compiled anew
    assert any("no model_id" in p.message for p in cache.problems)


# ---------------------------------------------------------------------------------------
# The disk cache.


async def test_a_second_cache_reads_the_file_without_fetching(tmp_path: Path) -> None:
    clock = FakeClock()
    await make(FakeFetch(), clock, tmp_path).models()
    other = FakeFetch()
    second = make(other, clock, tmp_path)
    assert DEV in await second.models()
    assert other.calls == 0
    clock.now += 3601
    await make(other, clock, tmp_path).models()  # the file is too old now
    assert other.calls == 1


async def test_the_file_is_keyed_by_the_base_url_without_its_credentials(tmp_path: Path) -> None:
    url = "https://user:hunter2@API.Host-7f3a.invalid/?token=s3cret#frag"
    cache = CatalogCache(FakeFetch(), base_url=url, cache_dir=tmp_path, clock=FakeClock())
    await cache.models()
    [path] = tmp_path.iterdir()
    assert cache.path == path
    content = path.read_bytes()
    for secret in (b"hunter2", b"user", b"s3cret", b"7f3a", b"invalid"):
        assert secret not in path.name.encode()
        assert secret not in content
    assert cache_key(url) == cache_key("https://api.host-7f3a.invalid")
    assert cache_key("https://api.wavespeed.ai") != cache_key("http://127.0.0.1:8080")
    assert "hunter2" not in repr(cache)


async def test_another_base_url_does_not_read_this_file(tmp_path: Path) -> None:
    clock = FakeClock()
    await make(FakeFetch(), clock, tmp_path).models()
    fetch = FakeFetch()
    other = CatalogCache(fetch, base_url="http://127.0.0.1:9", cache_dir=tmp_path, clock=clock)
    await other.models()
    assert fetch.calls == 1
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"\xff\xfe garbage",
        b'{"format": "something else", "key": "x", "fetched_at": 0, "body": {}}',
        b"[" * 100_000,
    ],
)
async def test_a_corrupt_file_is_ignored_and_overwritten(tmp_path: Path, content: bytes) -> None:
    clock = FakeClock()
    cache = make(FakeFetch(), clock, tmp_path)
    assert cache.path is not None
    cache.path.write_bytes(content)
    fetch = FakeFetch()
    assert DEV in await make(fetch, clock, tmp_path).models()
    assert fetch.calls == 1
    assert json.loads(cache.path.read_bytes())["fetched_at"] == clock.now


async def test_a_file_of_another_key_or_from_the_future_is_not_trusted(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = make(FakeFetch(), clock, tmp_path)
    await cache.models()
    assert cache.path is not None
    record = json.loads(cache.path.read_bytes())
    for change in ({"key": "0" * 32}, {"fetched_at": clock.now + 3600}, {"body": {"code": 500}}):
        cache.path.write_text(json.dumps({**record, **change}))
        fetch = FakeFetch()
        await make(fetch, clock, tmp_path).models()
        assert fetch.calls == 1, change


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
async def test_a_fifo_planted_at_the_file_path_is_ignored_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "planted"
    os.mkfifo(fifo)
    cache = make(FakeFetch(), FakeClock(), tmp_path)
    assert cache.path is not None
    cache.path.symlink_to(fifo)
    blocked: list[bool] = []

    def unblock() -> None:
        # A reader stuck opening the FIFO is let go (so the test fails rather than hangs).
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader has it open: nothing was stuck
            return
        blocked.append(True)

    guard = threading.Timer(2.0, unblock)
    guard.start()
    try:
        fetch = FakeFetch()
        assert DEV in await make(fetch, FakeClock(), tmp_path).models()
    finally:
        guard.cancel()
    assert blocked == []
    assert fetch.calls == 1
    assert not cache.path.is_symlink()  # replaced by the catalogue, the FIFO left alone
    assert json.loads(cache.path.read_bytes())["key"] == cache_key(BASE)


async def test_an_unwritable_cache_dir_never_fails_a_call(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    fetch = FakeFetch()
    cache = make(fetch, FakeClock(), blocker / "cache")
    assert DEV in await cache.models()
    assert fetch.calls == 1


async def test_no_cache_dir_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = make(FakeFetch(), FakeClock(), None)
    await cache.models()
    assert cache.path is None
    assert list(tmp_path.iterdir()) == []


async def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = make(FakeFetch(), clock, tmp_path, ttl_s=1)
    for _ in range(3):
        await cache.refresh()
        clock.now += 2
    assert [p.name for p in tmp_path.iterdir()] == [cache.path.name if cache.path else ""]


def test_the_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "wavespeed-async"
    cache = CatalogCache(FakeFetch(), base_url=BASE)
    assert cache.path is not None and cache.path.parent == tmp_path / "wavespeed-async"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "wavespeed-async"


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_durations_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        CatalogCache(FakeFetch(), base_url=BASE, ttl_s=bad, cache_dir=None)


@pytest.mark.e2e
async def test_another_process_reads_the_file_without_fetching(tmp_path: Path) -> None:
    # Both processes use the real wall clock here, as in production.
    await CatalogCache(FakeFetch(), base_url=BASE, cache_dir=tmp_path).models()
    script = textwrap.dedent(
        f"""
        import anyio
        from pathlib import Path
        from wavespeed_async._runtime.catalog_cache import CatalogCache

        async def fetch() -> bytes:
            raise SystemExit("fetched, but the file should have been read")

        async def main() -> None:
            cache = CatalogCache(fetch, base_url={BASE!r}, cache_dir=Path({str(tmp_path)!r}))
            models = await cache.models()
            print(len(models), cache.fetches, sorted(models)[0])

        anyio.run(main)
        """
    )
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-c", script],
            check=False,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["11", "0", "acme/3d-model"]
