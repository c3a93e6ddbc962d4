"""The hand-off between run_many's workers and its consumer (``_bulk._Inbox``)."""

from __future__ import annotations

import anyio
import pytest

from wavespeed_async._facade.bulk import _Inbox

pytestmark = pytest.mark.anyio


async def test_items_come_out_in_order_and_the_end_after_the_last_sender() -> None:
    inbox: _Inbox[int] = _Inbox(2)
    inbox.put(1)
    inbox.sender_done()
    inbox.put(2)
    assert inbox.get_nowait() == 1
    assert await inbox.get() == 2
    with pytest.raises(anyio.WouldBlock):
        inbox.get_nowait()  # one sender may still put something
    inbox.sender_done()
    with pytest.raises(anyio.EndOfStream):
        await inbox.get()


async def test_a_waiting_consumer_wakes_for_an_item_and_for_the_end() -> None:
    inbox: _Inbox[str] = _Inbox(1)
    got: list[str] = []

    async def consume() -> None:
        got.append(await inbox.get())
        with pytest.raises(anyio.EndOfStream):
            await inbox.get()
        got.append("end")

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        assert got == []  # waiting, not spinning
        inbox.put("a")
        await anyio.wait_all_tasks_blocked()
        assert got == ["a"]
        inbox.sender_done()
    assert got == ["a", "end"]


async def test_a_cancelled_wait_leaves_the_inbox_usable() -> None:
    inbox: _Inbox[int] = _Inbox(1)
    with anyio.move_on_after(0) as scope:
        await inbox.get()
    assert scope.cancelled_caught
    inbox.put(7)
    assert await inbox.get() == 7


async def test_a_closed_inbox_drops_what_comes_and_says_it_is_closed() -> None:
    inbox: _Inbox[int] = _Inbox(1)
    inbox.put(1)
    inbox.close()
    inbox.put(2)  # a worker finishing after the consumer left: no error, nothing kept
    with pytest.raises(anyio.ClosedResourceError):
        inbox.get_nowait()
    with pytest.raises(anyio.ClosedResourceError):
        await inbox.get()
