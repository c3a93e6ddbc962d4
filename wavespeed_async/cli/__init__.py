"""The ``wavespeed-async`` command line (install the ``cli`` extra for the progress bar).

::

    wavespeed-async batch examples/jobs.jsonl -o out --emulator
    wavespeed-async run wavespeed-ai/flux-kontext-pro/text-to-image --prompt "a fox" -o out
    wavespeed-async get TASK_ID -o out
    wavespeed-async balance
    wavespeed-async models --type text-to-video
    wavespeed-async schema wavespeed-ai/flux-dev-lora
    wavespeed-async types wavespeed-ai/flux-dev-lora -o models.py
    wavespeed-async emulator --port 8080

Exit codes, the same for every command: 0 every job succeeded; 1 some failed; 2 a usage
or configuration error (bad arguments, no API key, a key or account the server refused);
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 the output's reader went away (a
closed pipe, ``| head``). ``emulator`` is a server: a signal is its normal end (0). See
``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from wavespeed_async.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    err,
    os_error_in,
    os_error_text,
    usage_error_in,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from wavespeed_async.cli import _batch, _catalog, _commands

    p = argparse.ArgumentParser(
        prog="wavespeed-async",
        description="Generate images with the WaveSpeedAI API: one task, or a resumable "
        "batch from a JSONL file. Add --emulator to try it offline without a key.",
        epilog="Exit codes: 0 all jobs succeeded, 1 some failed, 2 usage or configuration "
        "error (a refused key included), 130 interrupted, 143 terminated, 141 closed pipe. "
        "The key is read from $WAVESPEED_API_KEY.",
    )
    from wavespeed_async import __version__

    p.add_argument("--version", action="version", version=f"wavespeed-async {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _batch.add_parser(sub)
    _commands.add_parsers(sub)
    _catalog.add_parsers(sub)
    sub.add_parser(
        "emulator",
        help="run the built-in emulator of the API as a server "
        "(options: wavespeed-async emulator --help)",
        add_help=False,
    )
    return p


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _broken_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` is (or a group holding only) a BrokenPipeError."""
    if isinstance(exc, BrokenPipeError):
        return True
    inner: tuple[BaseException, ...] = getattr(exc, "exceptions", None) or ()
    return bool(inner) and all(_broken_pipe(e) for e in inner)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    try:
        return _main(argv)
    except BaseException as exc:
        if not _broken_pipe(exc):
            raise
        # The reader went away (``| head``): end quietly, and let nothing write to the
        # closed pipe again when the interpreter flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "emulator":
        from wavespeed_async.emulator.__main__ import main as emulator_main

        try:
            return emulator_main(args_list[1:], prog="wavespeed-async emulator")
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _logging(args.verbose)
    if args.command != "batch":  # the batch handles its signals itself (graceful stop)
        _terminate_like_interrupt()
    try:
        code: int = args.func(args)
    except UsageError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except _Terminated:
        err("terminated")
        return EXIT_TERMINATED
    except Exception as exc:
        usage = usage_error_in(exc)  # raised inside a task group
        if usage is not None:
            err(f"error: {usage}")
            return EXIT_USAGE
        # The machine said no (a full disk, too many open files, ...), maybe from inside
        # a task group: say so, without a traceback.
        cause = os_error_in(exc)
        if cause is None or _broken_pipe(exc):
            raise
        err(f"error: {os_error_text(cause)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    return code


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: say which task still runs, then exit 143."""


def _terminate_like_interrupt() -> None:
    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, handler)
