"""``POST /api/v3/predictions``: the task history, newest first, kept 7 days."""

from __future__ import annotations

from typing import Any

import pytest

from wavespeed_async.emulator import HISTORY_DAYS

from .helpers import DEV, PRO, VIDEO, call, in_process, run_task

pytestmark = pytest.mark.anyio


async def history(emu: Any, **query: Any) -> tuple[int, Any]:
    return await call(emu, "POST", "/api/v3/predictions", query)


async def test_history_lists_tasks_newest_first_a_page_at_a_time() -> None:
    emu, _ = in_process()
    async with emu:
        ids = []
        for i in range(5):
            ids.append((await run_task(emu, DEV, {"prompt": f"h{i}", "typo": 1}))["id"])
            await emu.advance(10)
        status, body = await history(emu, page=1, page_size=2)
        assert status == 200
        assert set(body["data"]) == {"page", "items"}
        items = body["data"]["items"]
        assert [i["id"] for i in items] == [ids[4], ids[3]]
        assert set(items[0]) == {
            "id",
            "model",
            "status",
            "outputs",
            "input",
            "created_at",
            "executionTime",
            "error",
        }
        assert items[0]["input"] == {"prompt": "h4"}  # the unknown key was dropped
        assert items[0]["status"] == "completed"
        assert items[0]["outputs"][0].endswith(f"/media/outputs/{ids[4]}/0.png")
        _, body = await history(emu, page=3, page_size=2)
        assert [i["id"] for i in body["data"]["items"]] == [ids[0]]
        _, body = await history(emu, page=4, page_size=2)
        assert body["data"] == {"page": 4, "items": []}
        # An empty body is the first page of 20.
        answer = await emu.handle("POST", "/api/v3/predictions", {"Authorization": "Bearer k"}, b"")
        assert answer.status == 200


async def test_history_filters_by_model_status_and_creation_time() -> None:
    emu, _ = in_process()
    async with emu:
        a = (await run_task(emu, DEV, {"prompt": "a"}))["id"]
        await emu.advance(100)
        b = (await run_task(emu, PRO, {"prompt": "b [fail:1200]"}))["id"]
        await emu.advance(100)
        c = (await run_task(emu, VIDEO, {"prompt": "c [latency:600000]"}))["id"]
        _, body = await history(emu, model=PRO)
        assert [i["id"] for i in body["data"]["items"]] == [b]
        _, body = await history(emu, status="failed")
        assert [i["id"] for i in body["data"]["items"]] == [b]
        assert body["data"]["items"][0]["error"]
        _, body = await history(emu, status="created")
        assert [i["id"] for i in body["data"]["items"]] == [c]
        await emu.advance(61)  # c leaves the queue after 10 % of its 600 s
        _, body = await history(emu, status="processing")
        assert [i["id"] for i in body["data"]["items"]] == [c]
        _, all_items = await history(emu)
        stamps = {i["id"]: i["created_at"] for i in all_items["data"]["items"]}
        _, body = await history(emu, created_after=stamps[b])
        assert [i["id"] for i in body["data"]["items"]] == [c, b]
        _, body = await history(emu, created_before=stamps[b])
        assert [i["id"] for i in body["data"]["items"]] == [b, a]
        _, body = await history(emu, created_after=stamps[a], created_before=stamps[a])
        assert [i["id"] for i in body["data"]["items"]] == [a]


async def test_history_keeps_seven_days_by_the_emulators_clock_and_hides_deleted_tasks() -> None:
    emu, _ = in_process()
    async with emu:
        old = (await run_task(emu, DEV, {"prompt": "old"}))["id"]
        await emu.advance(2 * 86400)
        gone = (await run_task(emu, DEV, {"prompt": "deleted"}))["id"]
        kept = (await run_task(emu, DEV, {"prompt": "kept"}))["id"]
        await call(emu, "POST", "/api/v3/predictions/delete", {"ids": [gone]})
        _, body = await history(emu)
        assert [i["id"] for i in body["data"]["items"]] == [kept, old]
        await emu.advance((HISTORY_DAYS - 2) * 86400 + 1)
        _, body = await history(emu)
        assert [i["id"] for i in body["data"]["items"]] == [kept]
        assert HISTORY_DAYS == 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page_size": 101}, "page_size"),
        ({"page": -1}, "page"),
        ({"status": "done"}, "status"),
        ({"created_after": "31/01/2025"}, "created_after"),
        ({"created_before": "2025-13-01T00:00:00Z"}, "created_before"),
        ({"model": 5}, "model"),
    ],
)
async def test_history_refuses_bad_queries_naming_the_field(
    query: dict[str, Any], field: str
) -> None:
    emu, _ = in_process()
    async with emu:
        status, body = await history(emu, **query)
        assert status == 400
        assert body["message"].startswith(f"{field}:")
