"""What every command shares: where to send requests, with which key, and how to say so."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar
from urllib.parse import urlsplit

import anyio

from wavespeed_async._core.errors import (
    AuthenticationError,
    ConnectError,
    PermissionDeniedError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.secret import redacted_url
from wavespeed_async._core.settings import FlowLimits, PollConfig, Timeouts
from wavespeed_async._facade.client import DEFAULT_BASE_URL, Client
from wavespeed_async._runtime.fdlimit import open_file_limit
from wavespeed_async._runtime.share import Share

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "REFUSED",
    "Target",
    "UsageError",
    "add_connection_options",
    "add_share_option",
    "open_client",
    "os_error_in",
    "os_error_text",
    "output_folder",
    "refused_message",
    "resolve_target",
    "run_loop",
    "usage_error_in",
]

T = TypeVar("T")

# One table for every command (see docs/cli.md): 128 + N is "ended by signal N".
EXIT_OK: Final = 0
#: Some jobs failed, are invalid, unknown or unfinished.
EXIT_FAILED: Final = 1
#: A usage or configuration error, a refused key (401) or account (403) included.
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130  # SIGINT
EXIT_TERMINATED: Final = 143  # SIGTERM
#: The reader of the output went away (``| head``): SIGPIPE's code, as shell tools give.
EXIT_PIPE: Final = 141

#: Answers that every further request would meet too: a configuration problem (exit 2).
REFUSED: Final = (AuthenticationError, PermissionDeniedError)

#: The in-process emulator's default latency: the realistic profile, a bit shorter, so
#: that the quick start shows its progress and still ends in seconds.
DEFAULT_EMULATOR_LATENCY: Final = "realistic"

NO_KEY_MESSAGE: Final = (
    "no API key: set WAVESPEED_API_KEY (export WAVESPEED_API_KEY=...), or pass --api-key.\n"
    "To try it without a key and without network, add --emulator: it runs the built-in "
    "emulator of the WaveSpeed API in this process and produces real PNG files.\n"
    "Against an emulator started with `wavespeed-async emulator`, any key works: set "
    "WAVESPEED_BASE_URL (or --base-url) to its address too."
)


class UsageError(Exception):
    """A bad command line or configuration: exit code 2 with this message."""


def usage_error_in(exc: BaseException) -> UsageError | None:
    """``exc`` if it is a UsageError, or the first of an exception group holding only it.

    The group may also hold cancellations of its other tasks.
    """
    if isinstance(exc, UsageError):
        return exc
    inner = getattr(exc, "exceptions", None)  # an exception group (3.10: the backport)
    if isinstance(inner, tuple) and inner:
        found = [u for e in inner if (u := usage_error_in(e)) is not None]
        if found and len(found) == len(inner):
            return found[0]
    return None


def os_error_in(exc: BaseException) -> OSError | None:
    """``exc`` if it is an OSError, or the first of an exception group made only of them."""
    if isinstance(exc, OSError):
        return exc
    inner = getattr(exc, "exceptions", None)  # an exception group (3.10: the backport)
    if isinstance(inner, tuple) and inner:
        causes = [os_error_in(e) for e in inner if isinstance(e, BaseException)]
        if len(causes) == len(inner) and all(c is not None for c in causes):
            return causes[0]
    return None


def os_error_text(exc: OSError) -> str:
    """An operating-system error as a user reads it; "Too many open files" with its fix."""
    text = str(exc)
    if exc.errno == errno.EMFILE:
        text += (
            f" (this process may open {open_file_limit() or 'a limited number of'} files: "
            "raise the limit with "
            "`ulimit -n`, or lower --concurrency)"
        )
    return text


def err(text: str, *, stream: TextIO | None = None) -> None:
    """Print a line to stderr (never anything that holds the API key)."""
    out = stream or sys.stderr
    out.write(text + "\n")
    out.flush()


def refused_message(exc: WaveSpeedError) -> str:
    """What to print when the server refused the key (401) or the account (403)."""
    if isinstance(exc, AuthenticationError):
        return (
            f"error: the server refused the API key: {exc} (check WAVESPEED_API_KEY or --api-key)"
        )
    return f"error: the server refused this account: {exc} (check the balance and plan)"


def add_connection_options(p: argparse.ArgumentParser, *, tasks: bool = True) -> None:
    """The options every command takes; ``tasks=False`` leaves out those about tasks."""
    g = p.add_argument_group("connection")
    g.add_argument(
        "--api-key",
        default=None,
        help="the API key (default: $WAVESPEED_API_KEY; prefer the variable: a key on "
        "the command line is visible to other users of the machine)",
    )
    g.add_argument(
        "--base-url",
        default=None,
        help=f"the API's base URL (default: $WAVESPEED_BASE_URL, else {DEFAULT_BASE_URL})",
    )
    g.add_argument(
        "--emulator",
        action="store_true",
        help="run against the built-in emulator, started in this process (no key, no "
        "network; real PNG outputs)",
    )
    if tasks:
        _add_task_options(g)
    else:
        g.add_argument(
            "--timeout",
            type=float,
            default=None,
            metavar="S",
            help="give up after S seconds (default: the client's own request timeouts)",
        )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and results")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log requests (-vv: debug)")


def _add_task_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--emulator-latency",
        default=None,
        metavar="fast|realistic|SCALE",
        help=f"the emulator's task durations: fast (milliseconds), realistic (a few "
        f"seconds), or a factor of realistic (default {DEFAULT_EMULATOR_LATENCY})",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="give up waiting for one task after S seconds (the task keeps running on the "
        "server; default 1800)",
    )


def add_share_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--share",
        default=None,
        metavar="URL",
        help="share the account's limits with every process given the same URL, on any "
        "machine: a Redis server such as redis://host:6379/0 (needs the redis extra)",
    )


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send requests. ``api_key`` is never printed (see ``__repr__``)."""

    base_url: str | None
    api_key: str = ""
    emulator_scale: float | None = None  # set: start an in-process emulator

    def __repr__(self) -> str:
        return f"Target(base_url={self.base_url!r}, emulator_scale={self.emulator_scale!r})"

    @property
    def emulator(self) -> bool:
        return self.emulator_scale is not None


def _emulator_scale(text: str) -> float:
    if text == "realistic":
        return 1.0
    if text == "fast":
        return 0.0  # the "fast" profile (milliseconds)
    try:
        factor = float(text)
    except ValueError:
        raise UsageError(
            f"--emulator-latency: {text!r}; allowed: fast, realistic, or a factor of "
            "realistic such as 0.5"
        ) from None
    if not 0 < factor <= 100:
        raise UsageError(f"--emulator-latency: {text!r}; allowed: a factor > 0 and <= 100")
    return factor


def resolve_target(args: argparse.Namespace) -> Target:
    """The target from the options and the environment, or UsageError (exit 2)."""
    timeout = getattr(args, "timeout", None)
    latency = getattr(args, "emulator_latency", None)
    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout: {timeout}; allowed: a number of seconds > 0")
    _check_share(getattr(args, "share", None))
    if args.emulator:
        if args.base_url:
            raise UsageError("--emulator and --base-url: pass one or the other")
        return Target(None, "emulator", _emulator_scale(latency or DEFAULT_EMULATOR_LATENCY))
    if latency is not None:
        raise UsageError("--emulator-latency needs --emulator")
    key = args.api_key if args.api_key is not None else os.environ.get("WAVESPEED_API_KEY", "")
    if not key.strip():
        raise UsageError(NO_KEY_MESSAGE)
    url = args.base_url or os.environ.get("WAVESPEED_BASE_URL") or DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--base-url: {url!r}; allowed: an http(s) URL")
    return Target(url.rstrip("/"), key.strip())


#: What ``--share`` accepts: the URL schemes of a Redis server.
SHARE_SCHEMES: Final = ("redis", "rediss", "unix")


def _check_share(share: str | None) -> None:
    if share is not None and urlsplit(share).scheme not in SHARE_SCHEMES:
        raise UsageError(
            f"--share: {redacted_url(share)!r}; allowed: a Redis URL "
            "(redis://host:6379/0, rediss://..., unix:///path/redis.sock)"
        )


def output_folder(value: str) -> Path:
    """The ``-o`` folder, created if missing, or UsageError (exit 2) before anything is sent.

    A task whose outputs cannot be saved is paid for all the same.
    """
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {value}: is a file; allowed: a folder (created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-o {value}: cannot write there: {exc.strerror or exc}") from None
    return out


def public_url(url: str) -> str:
    """A URL without any credentials in it, to show or record."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def _poll_for(scale: float | None) -> PollConfig:
    """Polling matched to the emulator's durations (the defaults suit the real API)."""
    if scale is None:
        return PollConfig()
    if scale == 0.0:  # fast: tasks take milliseconds
        return PollConfig(expected_duration_s=0.03, min_interval_s=0.005, max_interval_s=0.05)
    expected = max(0.03, 3.5 * scale)
    low = min(0.1, expected / 30)
    return PollConfig(
        expected_duration_s=expected,
        min_interval_s=low,
        max_interval_s=max(low, min(5.0, expected)),
    )


@asynccontextmanager
async def open_client(
    target: Target,
    *,
    timeout_s: float | None,
    on_started: Callable[[str], None] | None = None,
    on_task_created: Callable[[Prediction], Any] | None = None,
    seed: int = 0,
    share: str | Share | None = None,
    limits: FlowLimits | None = None,
) -> AsyncIterator[Client]:
    """A Client for the target; with ``--emulator``, an emulator runs for its lifetime.

    ``on_started`` is told the (credential-free) base URL once requests can be sent.
    In-flight and start-rate limits are left to the caller (the batch paces itself, so
    that a job is recorded as "submitting" only just before its request goes out), unless
    ``limits`` are given: with a ``share``, they are the account-wide ones.
    """
    limits = limits or FlowLimits(max_in_flight=None, max_tasks_per_minute=None)
    timeouts = Timeouts(task_s=timeout_s)
    async with AsyncExitStack() as stack:
        if target.emulator_scale is None:
            base_url = target.base_url or ""
            poll: PollConfig | None = None
        else:
            from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

            scale = target.emulator_scale
            latency = (
                LatencyProfile.fast() if scale == 0.0 else LatencyProfile.realistic().scaled(scale)
            )
            emu = await stack.enter_async_context(
                Emulator(EmulatorConfig(seed=seed, latency=latency))
            )
            base_url, poll = emu.base_url, _poll_for(scale)
        if on_started is not None:
            on_started(public_url(base_url))
        try:
            client = await stack.enter_async_context(
                Client(
                    target.api_key,
                    base_url=base_url,
                    limits=limits,
                    timeouts=timeouts,
                    poll=poll,
                    on_task_created=on_task_created,
                    share=share,
                )
            )
        except (ConnectError, ValidationError, ImportError) as exc:
            if share is None:
                raise
            # Nothing was sent: a share that cannot be used is the command line's to fix.
            raise UsageError(f"--share: {exc}") from None
        yield client


def run_loop(fn: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(fn)``, where Ctrl-C is a ``KeyboardInterrupt`` on every Python.

    Ctrl-C cancels the main task, and the runner turns that into ``KeyboardInterrupt``; on
    Python 3.10 (no ``Task.uncancel``) it cannot tell, and ``CancelledError`` escapes. A
    command's main task is cancelled by nothing else, so on 3.10 that is the Ctrl-C.
    """
    try:
        return anyio.run(fn)
    except asyncio.CancelledError:
        if sys.version_info >= (3, 11):
            raise
        raise KeyboardInterrupt from None
