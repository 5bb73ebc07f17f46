"""Done: the one-waiter event a served socket's owner waits on (app/readyloop.py)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from app.readyloop import Done


async def test_set_wakes_the_waiter_and_a_set_event_returns_at_once() -> None:
    done = Done()
    woke = trio.Event()

    async def owner() -> None:
        await done.wait()
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set() and not woke.is_set()
        done.set()
        done.set()  # idempotent
        await woke.wait()
    assert done.is_set()
    with trio.fail_after(1):
        await done.wait()  # set already: returns after a checkpoint


async def test_a_cancelled_wait_leaves_it_unset_and_waitable_again(autojump_clock: object) -> None:
    done = Done()
    with trio.move_on_after(1) as scope:
        await done.wait()
    assert scope.cancelled_caught
    assert not done.is_set()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(done.wait)
        await trio.testing.wait_all_tasks_blocked()
        done.set()


async def test_a_second_waiter_is_refused() -> None:
    done = Done()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(done.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="one owner"):
            await done.wait()
        done.set()
