"""The public namespace: flat, complete, and every error in one tree."""

from __future__ import annotations

import inspect

import pytest

import wavespeed_async
from wavespeed_async._core import errors as _errors


def test_all_lists_every_public_name_once_and_sorted_within_groups() -> None:
    exported = wavespeed_async.__all__
    assert len(exported) == len(set(exported))
    public = {n for n in vars(wavespeed_async) if not n.startswith("_") and n != "annotations"}
    modules = {n for n in public if inspect.ismodule(getattr(wavespeed_async, n))}
    assert public - modules - set(exported) == set(), "public names missing from __all__"
    for name in exported:
        assert hasattr(wavespeed_async, name), name


def test_every_error_is_exported_and_derives_from_the_base() -> None:
    errors = {
        name
        for name, obj in vars(_errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    assert errors == set(_errors.__all__)
    for name in errors:
        cls = getattr(wavespeed_async, name)
        assert issubclass(cls, wavespeed_async.WaveSpeedError)
        assert name in (_errors.__doc__ or ""), f"{name} is missing from the drawn tree"


def test_timeout_error_is_also_a_builtin_timeout_error() -> None:
    assert issubclass(wavespeed_async.TaskTimeoutError, TimeoutError)
    assert issubclass(wavespeed_async.ValidationError, ValueError)


@pytest.mark.anyio
async def test_the_version_is_written_once_and_sent_to_the_server() -> None:
    from importlib.metadata import version

    from aiohttp import web

    from tests.conftest import CANARY_KEY
    from tests.services import serve_aiohttp

    assert version("wavespeed-async") == wavespeed_async.__version__
    seen: list[tuple[str | None, str | None]] = []

    async def result(request: web.Request) -> web.Response:
        seen.append((request.headers.get("User-Agent"), request.headers.get("X-Client-Version")))
        task = {"id": "t1", "status": "processing", "outputs": []}
        return web.json_response({"code": 200, "message": "success", "data": task})

    app = web.Application()
    app.router.add_get("/api/v3/predictions/{id}/result", result)
    async with serve_aiohttp(app) as url, wavespeed_async.Client(CANARY_KEY, base_url=url) as c:
        assert (await c.get_result("t1")).status == "processing"
    v = wavespeed_async.__version__
    assert seen == [(f"wavespeed-async/{v}", v)]
