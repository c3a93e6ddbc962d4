"""``models``, ``schema`` and ``types``: the model catalogue on the command line.

Also the check of a batch's lines against the catalogue before the first submit.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

from wavespeed_async._core.catalog import Model
from wavespeed_async._core.codegen import generate_module
from wavespeed_async._core.errors import WaveSpeedError
from wavespeed_async._core.requests import UnknownFieldWarning
from wavespeed_async._core.rules import NO_VALUE, FieldRule, show_value
from wavespeed_async._core.schema import Checker, compile_schema
from wavespeed_async._core.settings import FlowLimits
from wavespeed_async._core.text import json_printable, printable
from wavespeed_async._facade.client import Client
from wavespeed_async.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    REFUSED,
    Target,
    UsageError,
    add_connection_options,
    err,
    open_client,
    public_url,
    refused_message,
    resolve_target,
    run_loop,
)
from wavespeed_async.cli._jobs import LOCAL_FILE_URL, inputs_as_sent
from wavespeed_async.cli._plan import Plan
from wavespeed_async.jobs.journal import Journal

__all__ = ["add_parsers", "check_plan", "check_run_inputs", "retype_sets"]

_TYPE_NAMES: Final = {"array": "list"}
_DEFAULT_WIDTH: Final = 24
_encoder: Final = msgspec.json.Encoder(decimal_format="number")


def add_parsers(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "models",
        help="list the models of the catalogue: id, type, base price",
        description="List the models the API serves (GET /api/v3/models).",
    )
    p.add_argument("--type", default=None, metavar="TYPE", help="only models of this type, "
                   "e.g. text-to-image, image-to-image, text-to-video")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the models as JSON")
    add_connection_options(p, tasks=False)
    p.set_defaults(func=models_command)

    p = sub.add_parser(
        "schema",
        help="show a model's inputs: types, ranges, defaults, required",
        description="Show the inputs MODEL takes, as its schema in the catalogue states "
        "them; every submit is checked against it.",
    )
    p.add_argument("model", metavar="MODEL", help="e.g. wavespeed-ai/flux-dev-lora")
    p.add_argument("--json", action="store_true", help="print the JSON Schema itself")
    add_connection_options(p, tasks=False)
    p.set_defaults(func=schema_command)

    p = sub.add_parser(
        "types",
        help="write typed requests (msgspec classes) for models, from the catalogue",
        description="Write a Python module with one typed request class per MODEL "
        "(client.run(FluxDevLora(prompt=...))): fields, defaults, constraints and docs "
        "from the catalogue's schemas.",
    )
    p.add_argument("models", metavar="MODEL", nargs="*", help="the models (or --all)")
    p.add_argument("--all", action="store_true", help="every model of the catalogue")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="the module to write (default: print it)")  # fmt: skip
    add_connection_options(p, tasks=False)
    p.set_defaults(func=types_command)


# ---------------------------------------------------------------------------------------
# Fetching the catalogue


def _fetch(target: Target, share: str | None = None) -> list[Model]:
    async def go() -> list[Model]:
        # With a share, as every request of the command: its limits and 429 cool-down hold,
        # and a share that cannot be used is said here, before any request.
        limits = FlowLimits() if share is not None else None
        async with open_client(target, timeout_s=None, share=share, limits=limits) as client:
            return await client.models()

    return run_loop(go)


def _catalogue(args: argparse.Namespace) -> tuple[list[Model], Target] | int:
    """The models, or the exit code after saying why there are none."""
    target = resolve_target(args)
    try:
        return _fetch(target), target
    except REFUSED as exc:
        err(refused_message(exc))
        return EXIT_USAGE
    except WaveSpeedError as exc:
        err(f"error: the model catalogue could not be fetched: {exc}")
        return EXIT_FAILED


def _unknown(model_id: str, models: list[Model]) -> str:
    close = difflib.get_close_matches(model_id, [m.id for m in models], n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"{printable(model_id, limit=200)!r} is not in the catalogue{hint}"


def _price(price: Decimal | None) -> str:
    return "-" if price is None else f"${price}"


def _table(rows: list[tuple[str, ...]]) -> Iterator[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        yield "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()


# ---------------------------------------------------------------------------------------
# models


def models_command(args: argparse.Namespace) -> int:
    found = _catalogue(args)
    if isinstance(found, int):
        return found
    models, _target = found
    if args.type is not None:
        models = [m for m in models if m.type == args.type]
    if args.json:
        records = [
            {
                "id": m.id,
                "name": m.name,
                "type": m.type,
                "base_price": m.base_price,
                "description": m.description,
                "sort_order": m.sort_order,
                "formula": m.formula,
            }
            for m in models
        ]
        print(json_printable(msgspec.json.format(_encoder.encode(records), indent=2).decode()))
        return EXIT_OK
    if not models:
        err(f"no models of type {args.type!r}" if args.type is not None else "no models")
        return EXIT_OK
    rows: list[tuple[str, ...]] = [("MODEL", "TYPE", "BASE PRICE")]
    rows += [
        (printable(m.id, limit=200), printable(m.type, limit=40), _price(m.base_price))
        for m in models
    ]
    for line in _table(rows):
        print(line)
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# schema


def _type_text(rule: FieldRule) -> str:
    if rule.types is None:
        return "any"
    names = [_TYPE_NAMES.get(t, t) for t in sorted(rule.types)]
    return "|".join(names) or "null"


def _default_text(rule: FieldRule) -> str:
    if rule.default is NO_VALUE:
        return "-"
    try:
        text = json_printable(msgspec.json.encode(rule.default).decode())
    except (TypeError, msgspec.EncodeError):  # pragma: no cover - decoded from JSON
        text = show_value(rule.default)
    return text if len(text) <= _DEFAULT_WIDTH else text[: _DEFAULT_WIDTH - 1] + "\u2026"


def _rows(rules: Mapping[str, FieldRule], prefix: str = "") -> Iterator[tuple[FieldRule, str]]:
    """Each field and the fields inside it (``loras[].path``), with its shown name."""
    for name, rule in rules.items():
        shown = f"{prefix}{printable(name, limit=60)}"
        yield rule, shown
        inner = rule.items if rule.items is not None else rule
        nested = inner.properties
        if nested:
            yield from _rows(nested, f"{shown}[]." if inner is rule.items else f"{shown}.")


def _describe_schema(model: Model, checker: Checker) -> Iterator[str]:
    yield f"{printable(model.id, limit=200)}: {printable(model.name, limit=200)}"
    yield f"type {printable(model.type, limit=60) or '-'}, base price {_price(model.base_price)}"
    if model.description:
        yield from textwrap.wrap(printable(model.description, limit=2000), 100)
    if checker.uncheckable:
        yield ""
        yield f"Its inputs cannot be checked: {checker.reason}."
        return
    rows: list[tuple[str, ...]] = [("FIELD", "TYPE", "REQUIRED", "DEFAULT", "ALLOWED")]
    described: list[tuple[int, str]] = []
    for rule, shown in _rows(checker.fields):
        depth = shown.count(".")
        indent = "  " * depth
        rows.append(
            (
                indent + shown,
                _type_text(rule),
                "yes" if rule.required else "no",
                _default_text(rule),
                printable(rule.allowed, limit=200),
            )
        )
        described.append((len(indent), printable(rule.description, limit=1000)))
    yield ""
    lines = list(_table(rows))
    yield lines[0]
    for line, (width, text) in zip(lines[1:], described, strict=True):
        yield line
        if text:
            pad = " " * (width + 4)
            yield from textwrap.wrap(text, 100, initial_indent=pad, subsequent_indent=pad)
    if not checker.exact:
        yield ""
        yield f"Not checked before sending: {checker.reason}."


def schema_command(args: argparse.Namespace) -> int:
    found = _catalogue(args)
    if isinstance(found, int):
        return found
    models, _target = found
    model = next((m for m in models if m.id == args.model), None)
    if model is None:
        err(f"error: {_unknown(args.model, models)}; `wavespeed-async models` lists them")
        return EXIT_USAGE
    if args.json:
        schema = model.input_schema
        print(json_printable(msgspec.json.format(msgspec.json.encode(schema), indent=2).decode()))
        return EXIT_OK
    for line in _describe_schema(model, compile_schema(model.id, model.input_schema)):
        print(line)
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# types


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def types_command(args: argparse.Namespace) -> int:
    if not args.models and not args.all:
        raise UsageError("types: name at least one MODEL, or pass --all")
    if args.models and args.all:
        raise UsageError("types: name models or pass --all, not both")
    out = Path(args.output) if args.output is not None else None
    if out is not None and out.is_dir():
        raise UsageError(f"-o {args.output}: is a folder; allowed: a file such as models.py")
    found = _catalogue(args)
    if isinstance(found, int):
        return found
    models, target = found
    by_id = {m.id: m for m in models}
    missing = [m for m in args.models if m not in by_id]
    if missing:
        for model_id in missing:
            err(f"error: {_unknown(model_id, models)}")
        err("`wavespeed-async models` lists the models; nothing was written")
        return EXIT_USAGE
    chosen = models if args.all else [by_id[m] for m in dict.fromkeys(args.models)]
    source = "the built-in emulator" if target.emulator else public_url(target.base_url or "")
    skipped = [m for m in chosen if compile_schema(m.id, m.input_schema).uncheckable]
    text = generate_module(chosen, source=source)
    for model in skipped:
        reason = compile_schema(model.id, model.input_schema).reason
        err(f"warning: {printable(model.id, limit=200)}: no class ({reason})")
    written = len(chosen) - len(skipped)
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            _write_atomically(out, text)
        except OSError as exc:
            raise UsageError(f"-o {args.output}: cannot write it: {exc.strerror or exc}") from None
        if not args.quiet:
            err(f"wrote {written} typed request(s) to {out}")
    return EXIT_OK if written else EXIT_FAILED


# ---------------------------------------------------------------------------------------
# The batch's check before its first submit


def _models_quietly(target: Target, share: str | None) -> dict[str, Model] | None:
    try:
        return {m.id: m for m in _fetch(target, share)}
    except WaveSpeedError:
        return None  # the batch's Client checks at each submit, failing open, and says so


def check_plan(target: Target, plan: Plan, journal: Journal, share: str | None = None) -> None:
    """Check every job to submit against the model catalogue before the first submit.

    A job whose inputs the catalogue refuses becomes ``invalid`` (all its problems in its
    error), reported with the other invalid lines. Jobs of a model the catalogue cannot
    check, or every job when it cannot be fetched, are left to the Client's own check at
    submit, which fails open and says so once per model. ``share``: the batch's
    ``--share`` (a share that cannot be used is a ``UsageError`` from here).
    """
    todo = [j for j in plan.to_submit if j.model is not None]
    if not todo:
        return
    models = _models_quietly(target, share)
    if models is None:
        return
    checkers: dict[str, Checker] = {}
    refused: dict[int, str] = {}
    for job in todo:
        model = models.get(job.model or "")
        if model is None:
            continue
        checker = checkers.get(model.id)
        if checker is None:
            checker = checkers[model.id] = compile_schema(model.id, model.input_schema)
        if checker.uncheckable:
            continue
        problems = checker.problems(inputs_as_sent(job))
        if problems:
            refused[job.line] = "; ".join(str(p) for p in problems)
    if not refused:
        return
    for i, job in enumerate(plan.jobs):
        error = refused.get(job.line)
        if error is None:
            continue
        plan.jobs[i] = job = dataclasses.replace(job, error=error, warnings=())
        journal.mark_invalid(job.line, job.hash, error)
        plan.invalid.append(job)
    plan.invalid.sort(key=lambda j: j.line)
    plan.to_submit = [j for j in plan.to_submit if j.line not in refused]


async def check_run_inputs(client: Client, model: str, inputs: dict[str, Any], local: bool) -> bool:
    """Check ``run``'s inputs as its submit will, before anything is uploaded or sent.

    Prints each problem (and each field the built-in spec does not know, when the catalogue
    cannot check). ``local``: the image is a local file, uploaded only if this passes.
    """
    checked = {**inputs, "image": LOCAL_FILE_URL} if local else inputs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownFieldWarning)
        problems = await client.check_input(model, checked)
    for w in caught:
        if issubclass(w.category, UnknownFieldWarning):
            err(f"warning: {w.message}")
    for problem in problems:
        err(f"error: {problem}")
    return not problems


async def retype_sets(client: Client, model: str, items: list[str], inputs: dict[str, Any]) -> None:
    """``run --set KEY=VALUE`` values of the model's string fields, kept as text.

    ``--set KEY=2`` read as JSON is a number, where the catalogue's schema wants the string.
    """
    try:
        found = await client.model(model)
    except WaveSpeedError:
        return  # no catalogue: the built-in spec typed them, and the check will say why
    if found is None:
        return
    fields = compile_schema(found.id, found.input_schema).fields
    for item in items:
        key, _, text = item.partition("=")
        rule = fields.get(key.strip())
        if rule is not None and rule.types == frozenset({"string"}):
            inputs[key.strip()] = text
