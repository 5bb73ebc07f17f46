"""The registry's rows and the diffs between snapshots, tick by tick, on trio's mock clock.

No sockets: a row is what the hot path writes to, and a diff is what the snapshot timer
reads, so the tests play both parts by hand. The autojump clock lets a "tick" be a jump in
time, which is what shows that updated rows get their activity time at the diff.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from app.registry import Conn, Registry, format_address

EMPTY: dict[str, list[Any]] = {"added": [], "updated": [], "removed": []}


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


def opened(registry: Registry, n: int) -> list[Conn]:
    return [registry.open("tcp", ("127.0.0.1", 9000), ("127.0.0.1", 40000 + i)) for i in range(n)]


async def test_a_new_row_is_added_once_with_its_whole_row(autojump_clock: object) -> None:
    registry = Registry()
    conn = registry.open("udp", ("127.0.0.1", 9000), ("::1", 5353), listener_id="l1")
    diff = registry.take_diff()
    assert diff["updated"] == diff["removed"] == []
    (row,) = diff["added"]
    expected = conn.row()
    # last_activity is wall time now minus the idle time on trio's clock: not to the ns.
    assert row.pop("last_activity") == pytest.approx(expected.pop("last_activity"), abs=0.01)
    assert row == expected
    assert (row["protocol"], row["remote"], row["bytes_in"]) == ("udp", "[::1]:5353", 0)
    assert registry.take_diff() == EMPTY


async def test_a_diff_without_rows_lists_the_added_ids_and_the_same_changes(
    autojump_clock: object,
) -> None:
    registry = Registry()
    a, b, c = opened(registry, 3)
    b.touch()
    registry.close(c)
    assert registry.take_diff(rows=False) == {"added": [a.id, b.id], "updated": [], "removed": []}
    a.touch()
    registry.close(b)
    assert registry.take_diff(rows=False) == {"added": [], "updated": [a.id], "removed": [b.id]}


async def test_diffs_across_ticks_list_each_change_once(autojump_clock: object) -> None:
    registry = Registry()
    a, b, c = opened(registry, 3)
    assert ids(registry.take_diff()["added"]) == [a.id, b.id, c.id]
    # Tick 2: b carries traffic (several messages, one touch each), c closes, d opens.
    for _ in range(3):
        b.bytes_in += 10
        b.touch()
    registry.close(c)
    (d,) = opened(registry, 1)
    diff = registry.take_diff()
    assert ids(diff["added"]) == [d.id]
    assert diff["updated"] == [b.id]
    assert diff["removed"] == [c.id]
    # Tick 3: nothing happened.
    assert registry.take_diff() == EMPTY
    # Tick 4: a and d both carry traffic; each is listed once, in the order it moved.
    d.touch()
    a.touch()
    d.touch()
    assert registry.take_diff() == {"added": [], "updated": [d.id, a.id], "removed": []}


async def test_a_row_opened_and_closed_between_two_diffs_is_in_neither(
    autojump_clock: object,
) -> None:
    registry = Registry()
    (kept,) = opened(registry, 1)
    registry.take_diff()
    (brief,) = opened(registry, 1)
    brief.bytes_in += 1
    brief.touch()
    registry.close(brief)
    assert registry.take_diff() == EMPTY
    assert registry.get(brief.id) is None
    assert [conn.id for conn in registry] == [kept.id]


async def test_a_row_opened_and_touched_in_one_tick_is_only_added(autojump_clock: object) -> None:
    registry = Registry()
    (conn,) = opened(registry, 1)
    conn.bytes_in += 5
    conn.touch()
    diff = registry.take_diff()
    assert ids(diff["added"]) == [conn.id]
    assert diff["added"][0]["bytes_in"] == 5  # the added row already has the traffic
    assert diff["updated"] == []
    assert registry.take_diff() == EMPTY  # and the touch does not come back next tick


async def test_a_row_touched_then_closed_in_one_tick_is_only_removed(
    autojump_clock: object,
) -> None:
    registry = Registry()
    (conn,) = opened(registry, 1)
    registry.take_diff()
    conn.touch()
    registry.close(conn)
    assert registry.take_diff() == {"added": [], "updated": [], "removed": [conn.id]}


async def test_closing_twice_removes_once(autojump_clock: object) -> None:
    registry = Registry()
    (conn,) = opened(registry, 1)
    registry.take_diff()
    registry.close(conn)
    registry.close(conn)
    assert registry.take_diff()["removed"] == [conn.id]
    registry.close(conn)
    assert registry.take_diff() == EMPTY
    assert len(registry) == 0


async def test_a_touch_after_a_diff_is_seen_by_the_next_diff(autojump_clock: object) -> None:
    registry = Registry()
    (conn,) = opened(registry, 1)
    registry.take_diff()
    conn.touch()
    assert registry.take_diff()["updated"] == [conn.id]
    assert registry.take_diff()["updated"] == []
    conn.touch()  # the flag was cleared by the diff, so this touch counts again
    assert registry.take_diff()["updated"] == [conn.id]


async def test_updated_rows_get_their_activity_time_at_the_diff(autojump_clock: object) -> None:
    registry = Registry()
    busy, idle = opened(registry, 2)
    registry.take_diff()
    opened_at = trio.current_time()
    await trio.sleep(7)
    busy.touch()  # the hot path reads no clock: the diff stamps the row
    await trio.sleep(1)
    registry.take_diff()
    assert busy.last_active == opened_at + 8
    assert idle.last_active == opened_at
    age = busy.row()["last_activity"] - idle.row()["last_activity"]
    assert age == pytest.approx(8, abs=0.01)


async def test_ids_are_never_reused(autojump_clock: object) -> None:
    registry = Registry()
    first = opened(registry, 3)
    for conn in first:
        registry.close(conn)
    again = opened(registry, 2)
    assert [c.id for c in first + again] == ["c1", "c2", "c3", "c4", "c5"]


async def test_close_connection_closes_the_real_socket_through_its_hook(
    autojump_clock: object,
) -> None:
    registry = Registry()
    hooked, plain = opened(registry, 2)
    registry.take_diff()
    closed: list[str] = []

    def close_socket() -> None:
        # What a listener's hook does: close the socket, whose owner then closes the row.
        closed.append(hooked.id)
        registry.close(hooked)

    hooked.close_hook = close_socket
    assert registry.close_connection(hooked.id) is True
    assert closed == [hooked.id]
    assert hooked.close_hook is None  # a closed row holds no socket any more
    assert registry.close_connection(plain.id) is True  # no hook: the row alone is closed
    assert registry.close_connection("c99") is False
    assert registry.take_diff()["removed"] == [hooked.id, plain.id]
    assert registry.close_connection(hooked.id) is False


async def test_a_row_names_its_run_or_its_listener(autojump_clock: object) -> None:
    registry = Registry()
    inbound = registry.open("tcp", ("127.0.0.1", 1), ("127.0.0.1", 2), listener_id="l1")
    outbound = registry.open("tcp", ("127.0.0.1", 3), ("127.0.0.1", 1), run_id="r1")
    assert inbound.row()["listener_id"] == "l1"
    assert "run_id" not in inbound.row()
    assert outbound.row()["run_id"] == "r1"
    assert "listener_id" not in outbound.row()
    assert set(inbound.row()) == {
        "id",
        "protocol",
        "local",
        "remote",
        "bytes_in",
        "bytes_out",
        "msgs_in",
        "msgs_out",
        "opened_at",
        "last_activity",
        "listener_id",
    }


async def test_rows_pages_oldest_first_and_counts_what_matches(autojump_clock: object) -> None:
    registry = Registry()
    conns = opened(registry, 10)
    page, total = registry.rows(offset=2, limit=3)
    assert (ids(page), total) == ([c.id for c in conns[2:5]], 10)
    even = {c.id for c in conns[::2]}
    page, total = registry.rows(limit=2, predicate=lambda c: c.id in even)
    assert (ids(page), total) == ([conns[0].id, conns[2].id], 5)
    assert registry.rows(offset=50) == ([], 10)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (("127.0.0.1", 80), "127.0.0.1:80"),
        (("::1", 80, 0, 0), "[::1]:80"),
        (("fe80::1%eth0", 9000, 0, 2), "[fe80::1%eth0]:9000"),
        ("/run/socket", "/run/socket"),
        ("test", "test"),
        (None, "None"),
    ],
)
def test_format_address_brackets_ipv6_only(address: Any, text: str) -> None:
    assert format_address(address) == text
