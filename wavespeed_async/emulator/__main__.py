"""``python -m wavespeed_async.emulator``: run the emulator as a server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from wavespeed_async.emulator._config import (
    TIERS,
    EmulatorConfig,
    FaultRates,
    LatencyProfile,
    Limits,
)
from wavespeed_async.emulator._server import Emulator

__all__ = ["build_config", "main", "parse_args"]


def _latency(text: str) -> LatencyProfile:
    if text == "realistic":
        return LatencyProfile.realistic()
    if text == "fast":
        return LatencyProfile.fast()
    # argparse names the option in front of these messages: they start with the value.
    try:
        factor = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}; allowed: realistic, fast, or a scale factor of realistic"
        ) from None
    if not factor >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: a scale factor >= 0")
    return LatencyProfile.realistic().scaled(factor)


def _fault(text: str) -> tuple[str, str, float]:
    target, _, rest = text.partition(".")
    name, _, value = rest.partition("=")
    allowed = ", ".join(FaultRates.names())
    if target not in ("submit", "poll") or name not in FaultRates.names():
        raise argparse.ArgumentTypeError(
            f"{text!r}; allowed: submit.KIND=RATE or poll.KIND=RATE, KIND one of {allowed}"
        )
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: RATE is a number in 0 ~ 1") from None
    return target, name, rate


def _money(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: an amount in USD") from None
    if not amount.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: a finite amount in USD")
    return amount


def parse_args(
    argv: Sequence[str] | None = None, *, prog: str = "python -m wavespeed_async.emulator"
) -> argparse.Namespace:
    """Parse the command line; ``prog`` is the program name that usage and help show."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a local emulator of the WaveSpeed v3 REST API.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port", type=int, default=8080, help="0 picks a free port (default: %(default)s)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of images, latencies, failures and faults; task ids differ on every "
        "start (default: %(default)s)",
    )
    p.add_argument(
        "--latency",
        type=_latency,
        default="realistic",
        metavar="realistic|fast|SCALE",
        help="latency profile, or a factor applied to the realistic one (default: realistic)",
    )
    p.add_argument("--api-key", default=None, help="accept only this key (default: any key)")
    p.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
        help="fraction of tasks that fail (default: %(default)s)",
    )
    p.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="TARGET.KIND=RATE",
        help="e.g. submit.reset_after=0.05 or poll.server_error_before=0.1 (repeatable; "
        "default: none)",
    )
    p.add_argument(
        "--tier", choices=sorted(TIERS), default=None, help="account tier limits (default: none)"
    )
    p.add_argument(
        "--submits-per-minute", type=int, default=None, help="overrides the tier's (default: none)"
    )
    p.add_argument(
        "--max-running", type=int, default=None, help="overrides the tier's (default: none)"
    )
    p.add_argument(
        "--sync-wait",
        type=float,
        default=90.0,
        help="seconds sync mode holds a submit (default: %(default)s)",
    )
    p.add_argument(
        "--stall",
        type=float,
        default=30.0,
        help="seconds a stall fault lasts (default: %(default)s)",
    )
    p.add_argument(
        "--initial-balance",
        type=_money,
        default=Decimal(100),
        help="USD (default: %(default)s)",
    )
    p.add_argument(
        "--enforce-balance",
        action="store_true",
        help="refuse a submit whose price exceeds the balance: HTTP 403, code 402 (default: off)",
    )
    p.add_argument(
        "--discount-rate",
        type=_money,
        default=Decimal(0),
        help="fraction taken off every price, 0 ~ 1 (default: %(default)s)",
    )
    p.add_argument(
        "--no-model-price",
        action="store_true",
        help="answer 404 to POST /api/v3/model/price, as an older API would (default: off)",
    )
    p.add_argument(
        "--reject-unknown-models",
        action="store_true",
        help="answer 404 to submits of models outside the catalogue (default: run them)",
    )
    p.add_argument(
        "--max-upload-bytes",
        type=int,
        default=300 * 1024 * 1024,
        help="larger uploads get 413 (default: %(default)s)",
    )
    p.add_argument(
        "--echo-input",
        action="store_true",
        help="every answer about a task carries its inputs, polls too (default: submits only)",
    )
    p.add_argument(
        "--webhook-failure-rate",
        type=float,
        default=0.0,
        help="fraction of webhook deliveries dropped (default: %(default)s)",
    )
    p.add_argument(
        "--webhook-any-host",
        action="store_true",
        help="deliver webhooks to any host, not only to loopback addresses (default: off)",
    )
    p.add_argument(
        "--print-url",
        action="store_true",
        help="also print the bare URL on a second line, after the listening line",
    )
    p.add_argument(
        "--log-level", default="WARNING", help="DEBUG, INFO, WARNING... (default: %(default)s)"
    )
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """The EmulatorConfig that parsed command-line options ask for.

    Raises:
        ValueError: the options make no valid configuration (e.g. fault rates above 1).
    """
    rates: dict[str, dict[str, float]] = {"submit": {}, "poll": {}}
    for target, name, rate in args.fault:
        rates[target][name] = rate
    limits = Limits.tier(args.tier) if args.tier else Limits()
    if args.submits_per_minute is not None or args.max_running is not None:
        limits = Limits(
            submits_per_minute=args.submits_per_minute or limits.submits_per_minute,
            max_running=args.max_running or limits.max_running,
        )
    return EmulatorConfig(
        seed=args.seed,
        api_key=args.api_key,
        latency=args.latency,
        failure_rate=args.failure_rate,
        submit_faults=FaultRates(**rates["submit"]),
        poll_faults=FaultRates(**rates["poll"]),
        limits=limits,
        sync_wait_s=args.sync_wait,
        stall_s=args.stall,
        initial_balance=args.initial_balance,
        enforce_balance=args.enforce_balance,
        discount_rate=args.discount_rate,
        serve_model_price=not args.no_model_price,
        accept_unknown_models=not args.reject_unknown_models,
        max_upload_bytes=args.max_upload_bytes,
        echo_input=args.echo_input,
        webhook_failure_rate=args.webhook_failure_rate,
        webhook_any_host=args.webhook_any_host,
    )


class _CannotListen(Exception):
    """The server's address could not be bound (the OSError is the cause)."""


async def _serve(config: EmulatorConfig, host: str, port: int, print_url: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    emu = Emulator(config, host=host, port=port)
    try:
        await emu.start()
    except OSError as exc:
        raise _CannotListen from exc
    try:
        sys.stdout.write(f"WaveSpeed emulator listening on {emu.base_url}\n")
        if print_url:
            sys.stdout.write(emu.base_url + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await emu.close()


def main(
    argv: Sequence[str] | None = None, *, prog: str = "python -m wavespeed_async.emulator"
) -> int:
    """Run the emulator until SIGINT or SIGTERM; return the exit code.

    0 after a signal (the normal way to stop a server), 2 for bad options or an address
    that cannot be listened on (one line on stderr).
    """
    args = parse_args(argv, prog=prog)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = build_config(args)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    try:
        asyncio.run(_serve(config, args.host, args.port, args.print_url))
    except _CannotListen as failure:
        cause = failure.__cause__
        assert isinstance(cause, OSError)  # noqa: S101 - raised from one
        where = f"{args.host}:{args.port}"
        reason = cause.strerror or str(cause)
        hint = "; pick another port, or --port 0 for a free one"
        if cause.errno not in (errno.EADDRINUSE, errno.EACCES):
            hint = ""
        sys.stderr.write(f"error: cannot listen on {where}: {reason}{hint}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
