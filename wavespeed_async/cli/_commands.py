"""``run`` (one generation), ``get`` (a task by id) and ``balance``."""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec

from wavespeed_async._core.errors import (
    NotFoundError,
    TaskFailedError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.requests import UnknownFieldWarning
from wavespeed_async._core.settings import FlowLimits
from wavespeed_async._core.specs import MODEL_SPECS
from wavespeed_async._core.text import json_printable, printable
from wavespeed_async._facade.client import Client
from wavespeed_async.cli._catalog import check_run_inputs, retype_sets
from wavespeed_async.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    REFUSED,
    UsageError,
    add_connection_options,
    add_share_option,
    err,
    open_client,
    output_folder,
    refused_message,
    resolve_target,
    run_loop,
)
from wavespeed_async.cli._jobs import check_fields, check_local_image, is_url

__all__ = ["add_parsers", "parse_set"]


def add_parsers(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="one generation: submit, wait, save the outputs",
        description="Run one task and save its outputs to DIR.",
    )
    p.add_argument(
        "model", metavar="MODEL", help="e.g. wavespeed-ai/flux-kontext-pro/text-to-image"
    )
    p.add_argument("--prompt", default=None, help="the prompt (for a model that takes one)")
    p.add_argument(
        "--image", default=None, metavar="PATH_OR_URL", help="an input image: a URL, or a "
        "local file (uploaded first)",
    )  # fmt: skip
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another input, e.g. --set aspect_ratio=16:9 --set num_images=2 (repeatable; "
        "values are typed from the model's spec, else read as JSON, else kept as text)",
    )
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="where to save outputs")
    p.add_argument("--json", action="store_true", help="print the final task as JSON")
    add_connection_options(p)
    add_share_option(p)
    p.set_defaults(func=run_command)

    p = sub.add_parser(
        "get",
        help="show a task by id (and save its outputs)",
        description="Print a task's current state as JSON; with -o, save its outputs.",
    )
    p.add_argument("task_id", metavar="ID", help="the task id")
    p.add_argument("-o", "--output", default=None, metavar="DIR", help="save outputs to DIR")
    p.add_argument("--wait", action="store_true", help="wait until the task ends")
    add_connection_options(p)
    p.set_defaults(func=get_command)

    p = sub.add_parser("balance", help="show the account balance", description="Show the "
                       "account balance in USD.")  # fmt: skip
    add_connection_options(p, tasks=False)
    p.set_defaults(func=balance_command)


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}  # fmt: skip


def _coerce(model: str, key: str, text: str) -> Any:
    spec = MODEL_SPECS.get(model)
    field = spec.by_name.get(key) if spec is not None else None
    kind = field.type if field is not None else None
    try:
        if kind is str:
            return text
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is bool and text.lower() in _BOOLEANS:
            return _BOOLEANS[text.lower()]
        if kind is bool:
            raise UsageError(f"--set {key}={text}: expected true or false")
    except ValueError:
        raise UsageError(
            f"--set {key}={text}: expected {getattr(kind, '__name__', 'a value')}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set(model: str, items: list[str]) -> dict[str, Any]:
    """``--set key=value`` items as inputs, typed from the model's spec when known."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        out[key] = _coerce(model, key, value)
    return out


def _pretty(pred: Prediction) -> str:
    # The server's text, printed: escaped where it could act on the terminal.
    return json_printable(msgspec.json.format(msgspec.json.encode(pred), indent=2).decode())


def _describe(pred: Prediction, files: list[Path], submit_s: float, total_s: float) -> str:
    inference = pred.inference_ms
    lines = [
        f"task       {pred.id}",
        f"status     {printable(pred.status, limit=80)}",
        f"model      {printable(pred.model, limit=200)}",
        f"inference  {f'{inference:,.0f} ms' if inference is not None else '-'}",
        f"timings    submit {submit_s:.2f} s, total {total_s:.2f} s",
    ]
    lines += [f"file       {f}" for f in files]
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    inputs = parse_set(args.model, args.sets)
    if args.prompt is not None:
        inputs["prompt"] = args.prompt
    try:
        check_fields(args.model, inputs)  # the built-in spec's errors, before any request
    except WaveSpeedError as exc:
        raise UsageError(str(exc)) from None
    image: str | None = args.image
    local: Path | None = None
    if image is not None:
        if is_url(image):
            inputs["image"] = image
        else:
            local = Path(image).expanduser()
            if not local.is_file():
                raise UsageError(f"--image: no such file {image!r}; allowed: a URL or a file")
            # Uploaded files become public URLs: only an image is sent (as in a batch).
            found = check_local_image("--image", image, local.resolve(), Path.cwd(), True)
            if isinstance(found, str):
                raise UsageError(found)
    output_folder(args.output)
    created: list[str] = []
    started = time.monotonic()
    created_at: list[float] = []

    def on_created(pred: Prediction) -> None:
        created.append(pred.id)
        created_at.append(time.monotonic())
        if not args.quiet:
            err(f"task {pred.id} created")

    async def go() -> int:
        async with open_client(
            target,
            timeout_s=args.timeout,
            on_task_created=on_created,
            share=args.share,
            # Shared: a lease and a start like any process of the account, so that
            # batches count this task against their --concurrency and --rate.
            limits=FlowLimits() if args.share else None,
        ) as client:
            await retype_sets(client, args.model, args.sets, inputs)
            if not await check_run_inputs(client, args.model, inputs, local is not None):
                return EXIT_USAGE  # refused by the catalogue: nothing uploaded or sent
            if local is not None:
                inputs["image"] = await client.upload(local)
            try:
                with warnings.catch_warnings():  # reported above, once
                    warnings.simplefilter("ignore", UnknownFieldWarning)
                    pred = await client.run(args.model, inputs)
            except TaskFailedError as exc:
                if args.json:
                    print(_pretty(exc.prediction))
                err(f"error: {exc}")
                return EXIT_FAILED
            files = await client.download(pred, args.output)
            total = time.monotonic() - started
            submit_s = (created_at[0] if created_at else started) - started
            print(_pretty(pred) if args.json else _describe(pred, files, submit_s, total))
            return EXIT_OK

    try:
        return run_loop(go)
    except KeyboardInterrupt:
        if created:
            err(
                f"interrupted: task {created[0]} still runs on the server; collect it with "
                f"wavespeed-async get {created[0]} --wait -o {args.output}"
            )
        raise
    except REFUSED as exc:
        err(refused_message(exc))
        return EXIT_USAGE
    except WaveSpeedError as exc:
        err(f"error: {exc}")
        if created and exc.task_id is None:
            err(f"task {created[0]}: wavespeed-async get {created[0]} --wait -o {args.output}")
        return EXIT_FAILED


def _with_client(
    args: argparse.Namespace,
    work: Callable[[Client], Awaitable[int]],
    *,
    deadline_s: float | None = None,
) -> int:
    """Run ``work`` with a client for the command's target, within ``deadline_s``.

    A refused key or account exits 2 (configuration), and so does a bad input (an id the
    server does not know, or that is not an id); any other WaveSpeedError exits 1.
    """
    target = resolve_target(args)

    async def go() -> int:
        async with open_client(target, timeout_s=getattr(args, "timeout", None)) as client:
            if deadline_s is None:
                return await work(client)
            with anyio.fail_after(deadline_s):
                return await work(client)

    try:
        return run_loop(go)
    except REFUSED as exc:
        err(refused_message(exc))
        return EXIT_USAGE
    except (NotFoundError, ValidationError) as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except WaveSpeedError as exc:
        err(f"error: {exc}")
        return EXIT_FAILED
    except TimeoutError:
        err(f"error: no answer within --timeout {deadline_s:g} s")
        return EXIT_FAILED


#: ``get --emulator`` would start an emulator of its own, which has never seen any id.
GET_EMULATOR: Final = (
    "get --emulator: the built-in emulator starts empty in this process, so it knows no "
    "task id. To look at a task of an emulator, start one with `wavespeed-async emulator` "
    "and pass its address with --base-url (any key works); `run --emulator` shows a task "
    "from start to end"
)


def _nothing_to_save(pred: Prediction) -> str:
    status = printable(pred.status, limit=80)
    if pred.done:  # failed, cancelled, timed out or deleted: there never will be outputs
        why = printable(pred.error or "no error message", limit=500)
        code = f" code {pred.code}" if pred.code is not None else ""
        return f"task {pred.id} ended {status}{code} ({why}): it has no outputs to save"
    return f"task {pred.id} is {status}: nothing to save yet; add --wait to wait for it to end"


def get_command(args: argparse.Namespace) -> int:
    if args.emulator:
        raise UsageError(GET_EMULATOR)
    if args.output is not None:
        output_folder(args.output)

    async def get(client: Client) -> int:
        status = EXIT_OK
        try:
            if args.wait:
                try:
                    pred = await client.wait(args.task_id)
                except TaskFailedError as exc:
                    pred = exc.prediction
                    status = EXIT_FAILED
            else:
                pred = await client.get_result(args.task_id)
        except NotFoundError as exc:
            raise NotFoundError(
                f"no task {printable(args.task_id, limit=80)} on this server (check the id, "
                f"and --base-url): {exc.message}",
                status=exc.status,
                code=exc.code,
            ) from None
        print(_pretty(pred))
        if args.output is not None:
            if pred.ok:
                for f in await client.download(pred, args.output):
                    err(f"saved {f}")
            else:
                err(_nothing_to_save(pred))
                status = EXIT_FAILED
        return status

    return _with_client(args, get)


def balance_command(args: argparse.Namespace) -> int:
    timeout: float | None = args.timeout

    async def balance(client: Client) -> int:
        value = await client.balance()
        print(f"{value:.2f} USD")
        return EXIT_OK

    return _with_client(args, balance, deadline_s=timeout)
