"""A test server on 127.0.0.1 that answers what no honest API would.

It runs on its own event loop in a thread, so that async tests and CLI subprocesses can
both talk to it. What it answers is chosen per test: ``submit`` for ``POST
/api/v3/{model}``, ``result`` for ``GET /api/v3/predictions/{id}/result`` (a name from
:data:`ANSWERS`, or a callable of the task id for answers that differ per task), and
``/media/{name}`` serves hostile outputs. ``raw_url`` is a second, raw-TCP port that
trickles even the status line, one byte at a time.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

#: One byte of the trickling answers is sent every this many seconds.
TRICKLE_S: Final = 0.02
#: A real PNG signature followed by junk: enough for magic-byte sniffing.
PNG: Final = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
#: Ids no honest server would send.
HOSTILE_IDS: Final = {
    "dotdot": "../../../x",
    "absolute": "/wavespeed-hostile-abs",
    "nul": "abc\x00def",
    "long": "a" * 5000,
    "ansi": "\x1b[31mred\x1b[0m",
    "empty": "",
    "newline": "abc\n",
}

Handler = Callable[["HostileServer", web.Request], Awaitable[web.StreamResponse]]
ANSWERS: dict[str, Handler] = {}


def answer(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ANSWERS[name] = fn
        return fn

    return register


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json"
    )


def _task_id(request: web.Request) -> str:
    return request.match_info.get("task_id") or secrets.token_hex(16)


def _deep(n: int = 100_000) -> bytes:
    return b"[" * n + b"]" * n


@answer("created")
async def _created(server: HostileServer, request: web.Request) -> web.StreamResponse:
    task_id = secrets.token_hex(16)
    server.created.append(task_id)
    return _json({"code": 200, "message": "success", "data": {"id": task_id, "status": "created"}})


#: Cookies each "..._with_cookies" answer sets, each with a name of its own (aiohttp reads
#: at most 128 header lines).
COOKIES_PER_ANSWER: Final = 40


def _with_cookies(resp: web.StreamResponse) -> web.StreamResponse:
    for i in range(COOKIES_PER_ANSWER):
        resp.set_cookie(f"c{secrets.token_hex(4)}{i}", "x" * 64, path="/")
    return resp


@answer("created_with_cookies")
async def _created_with_cookies(server: HostileServer, request: web.Request) -> web.StreamResponse:
    return _with_cookies(await _created(server, request))


@answer("completed_with_cookies")
async def _completed_with_cookies(
    server: HostileServer, request: web.Request
) -> web.StreamResponse:
    return _with_cookies(await _completed(server, request))


@answer("redirect")
async def _redirect(server: HostileServer, request: web.Request) -> web.StreamResponse:
    """Elsewhere: to a "completed" answer that only a client following redirects reads."""
    raise web.HTTPFound(server.media("envelope"))


@answer("completed")
async def _completed(server: HostileServer, request: web.Request) -> web.StreamResponse:
    data = {"id": _task_id(request), "status": "completed", "outputs": server.outputs}
    return _json({"code": 200, "message": "success", "data": data})


@answer("completed_in_pieces")
async def _completed_in_pieces(server: HostileServer, request: web.Request) -> web.StreamResponse:
    """A completed answer whose second half is sent only once the client reads past the first.

    ``reading_rest`` is set by the test: a body that cannot come whole in one read.
    """
    data = {"id": _task_id(request), "status": "completed", "outputs": server.outputs}
    body = json.dumps({"code": 200, "message": "success", "data": data}).encode()
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    if await asyncio.to_thread(server.reading_rest.wait, 5.0):
        await resp.write(body[len(body) // 2 :])
        await resp.write_eof()
    return resp


@answer("quirks")
async def _quirks(server: HostileServer, request: web.Request) -> web.StreamResponse:
    # Harmless oddities: nulls where values are optional, unknown fields, and an unknown
    # status on the first poll of each task.
    task_id = _task_id(request)
    server.polls[task_id] += 1
    status = "warming_up" if server.polls[task_id] == 1 else "completed"
    data = {
        "id": task_id,
        "status": status,
        "outputs": server.outputs if status == "completed" else [],
        "error": None,
        "has_nsfw_contents": [None],
        "timings": None,
        "urls": None,
        "created_at": None,
        "brand_new_field": {"nested": [1, 2, {"x": None}]},
    }
    return _json({"code": 200, "message": None, "data": data, "extra": True})


@answer("terminal_tricks")
async def _terminal_tricks(server: HostileServer, request: web.Request) -> web.StreamResponse:
    # A failed task whose text would act on a terminal: a bidi override, a line separator,
    # DEL and an ANSI escape (which JSON escapes itself).
    data = {
        "id": _task_id(request),
        "status": "failed",
        "model": "evil\u202emodel",
        "outputs": [],
        "error": "line\u2028break\x7f \x1b[2J gone",
    }
    return _json({"code": 200, "message": "success", "data": data})


for _status in (200, 400, 500):

    def _make(status: int) -> tuple[Handler, Handler]:
        async def bad_utf8(server: HostileServer, request: web.Request) -> web.StreamResponse:
            body = (
                b'{"code": %d, "message": "bad \xff\xfe bytes", "data": {"id": "%s", '
                b'"status": "\xc3\x28"}}' % (status, _task_id(request).encode())
            )
            return web.Response(body=body, status=status, content_type="application/json")

        async def deep(server: HostileServer, request: web.Request) -> web.StreamResponse:
            body = b'{"code": %d, "message": "deep", "data": {"id": "%s", "x": %s}}' % (
                status,
                _task_id(request).encode(),
                _deep(),
            )
            return web.Response(body=body, status=status, content_type="application/json")

        return bad_utf8, deep

    ANSWERS[f"bad_utf8_{_status}"], ANSWERS[f"deep_{_status}"] = _make(_status)

for _name, _bad_id in HOSTILE_IDS.items():

    def _make_id(bad: str) -> Handler:
        async def hostile_id(server: HostileServer, request: web.Request) -> web.StreamResponse:
            data = {"id": bad, "status": "completed", "outputs": server.outputs}
            return _json({"code": 200, "message": "success", "data": data})

        return hostile_id

    ANSWERS[f"id_{_name}"] = _make_id(_bad_id)


@answer("id_in_error")
async def _id_in_error(server: HostileServer, request: web.Request) -> web.StreamResponse:
    # A 200 carrying code 500 that names a task: the task would exist, but its id is a path.
    data = {"id": "../../etc/passwd", "status": "processing"}
    return _json({"code": 500, "message": "sync wait ran out", "data": data})


@answer("trickle")
async def _trickle(server: HostileServer, request: web.Request) -> web.StreamResponse:
    # A body that never ends in time: one byte per TRICKLE_S, far below any read timeout.
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.content_length = 100_000
    await resp.prepare(request)
    await _drip(server, resp, b" " * 100_000)
    return resp


@answer("endless")
async def _endless(server: HostileServer, request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await _flood(server, resp, b"[" + b" " * (1 << 16))
    return resp


@answer("huge_declared")
async def _huge_declared(server: HostileServer, request: web.Request) -> web.StreamResponse:
    # Announces 100 MB and sends it as fast as it is read.
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.content_length = 100 * (1 << 20)
    await resp.prepare(request)
    await _flood(server, resp, b" " * (1 << 16), limit=100 * (1 << 20))
    return resp


@answer("huge_429")
async def _huge_429(server: HostileServer, request: web.Request) -> web.StreamResponse:
    # A rate limit whose body is over any answer cap: its status and Retry-After still count.
    body = json.dumps({"code": 429, "message": "slow down " + "x" * (1 << 20)}).encode()
    return web.Response(
        status=429, body=body, headers={"Content-Type": "application/json", "Retry-After": "7"}
    )


@answer("gzip_bomb")
async def _gzip_bomb(server: HostileServer, request: web.Request) -> web.StreamResponse:
    # 64 MiB of JSON whitespace compressed to ~64 KiB: small on the wire, huge once read.
    return web.Response(
        body=server.bomb(),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )


@answer("huge_headers")
async def _huge_headers(server: HostileServer, request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"{}", headers={"X-Junk": "j" * 100_000})


@answer("hang")
async def _hang(server: HostileServer, request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _drip(server: HostileServer, resp: web.StreamResponse, data: bytes) -> None:
    try:
        for i in range(len(data)):
            await resp.write(data[i : i + 1])
            server.trickled += 1
            await asyncio.sleep(TRICKLE_S)
    except (ConnectionError, asyncio.CancelledError):
        pass


async def _flood(
    server: HostileServer, resp: web.StreamResponse, chunk: bytes, limit: int | None = None
) -> None:
    try:
        while limit is None or server.flooded < limit:
            await resp.write(chunk)
            server.flooded += len(chunk)
    except (ConnectionError, asyncio.CancelledError):
        pass


class HostileServer:
    """The hostile API and media host; ``start()``/``stop()`` it (or use ``with``)."""

    def __init__(self) -> None:
        self.submit = "created"
        self.result: str | Callable[[str], str] = "completed"
        self.outputs: list[Any] = []
        self.hits: collections.Counter[str] = collections.Counter()
        self.polls: collections.Counter[str] = collections.Counter()
        self.created: list[str] = []
        #: The Cookie header of every request that carried one, in order.
        self.cookies_sent: list[str] = []
        self.trickled = 0
        #: Set (from the client's side) when the client reads on after a first chunk.
        self.reading_rest = threading.Event()
        self.flooded = 0
        self._bomb: bytes | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._raw: asyncio.Server | None = None
        self._raw_tasks: set[asyncio.Task[None]] = set()
        self.url = self.raw_url = ""

    def bomb(self) -> bytes:
        if self._bomb is None:
            self._bomb = gzip.compress(b" " * (64 << 20), compresslevel=1)
        return self._bomb

    def media(self, name: str) -> str:
        return f"{self.url}/media/{name}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/predictions/{task_id}/result", self._dispatch)
        app.router.add_get("/api/v3/balance", self._dispatch)
        app.router.add_get("/api/v3/webhook/secret", self._dispatch)
        app.router.add_get("/media/{name}", self._media)
        # No prices here (a quote is not a submit): the batch starts without a quote.
        app.router.add_post("/api/v3/model/{form:price|pricing}", self._no_price)
        app.router.add_post("/api/v3/{model:.+}", self._dispatch)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._raw = await asyncio.start_server(self._raw_trickle, "127.0.0.1", 0)
        raw_port = self._raw.sockets[0].getsockname()[1]
        self.raw_url = f"http://127.0.0.1:{raw_port}"

    async def _no_price(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"code": 404, "message": "not found", "data": None}, status=404)

    async def _stop(self) -> None:
        if self._raw is not None:
            self._raw.close()
        for task in self._raw_tasks:
            task.cancel()
        await asyncio.gather(*self._raw_tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def _note(self, request: web.Request) -> None:
        """Count the request, and keep the Cookie header it carried, if any."""
        self.hits[request.path] += 1
        if "Cookie" in request.headers:
            self.cookies_sent.append(request.headers["Cookie"])

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        if request.method == "POST":
            name = self.submit
        else:
            result = self.result
            name = result if isinstance(result, str) else result(request.match_info["task_id"])
        return await ANSWERS[name](self, request)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._note(request)
        if name == "envelope":  # where the "redirect" answer points
            return await _completed(self, request)
        if name == "cookie.png":  # an image, and a pile of cookies for the downloader
            return _with_cookies(web.Response(body=PNG, content_type="image/png"))
        if name == "png.sh":  # a PNG whose URL suggests a shell script
            return web.Response(body=PNG, content_type="text/x-shellscript")
        if name == "page.html":
            return web.Response(body=b"<html>hi</html>", content_type="text/html")
        if name == "endless":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await _flood(self, resp, PNG + b"\x00" * (1 << 16))
            return resp
        if name == "trickle":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.content_length = 100_000
            await resp.prepare(request)
            await _drip(self, resp, PNG + b"\x00" * (100_000 - len(PNG)))
            return resp
        if name == "to-metadata":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        return web.Response(status=404)

    async def _raw_trickle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Slow-loris on the status line and headers: every byte resets a per-read timeout.
        self.hits["raw"] += 1
        task = asyncio.current_task()
        assert task is not None
        self._raw_tasks.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            for byte in (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"s" * 10_000
            ):
                writer.write(bytes([byte]))
                await writer.drain()
                self.trickled += 1
                await asyncio.sleep(TRICKLE_S)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._raw_tasks.discard(task)
