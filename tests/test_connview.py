"""A subscriber's page of connections: filters, sorting, paging and minimal diffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from app.connview import COLUMNS, ConnRow, ConnView, ConnWindow, parse_view, select
from app.errors import SpecError
from app.tcpinfo import TcpSample


@dataclass
class Row:
    id: str
    protocol: str = "tcp"
    local: str = "127.0.0.1:9000"
    remote: str = "127.0.0.1:40000"
    listener_id: str | None = "l1"
    run_id: str | None = None
    opened_at: float = 1_700_000_000.0
    last_active: float = 100.0
    bytes_in: int = 0
    bytes_out: int = 0
    msgs_in: int = 0
    msgs_out: int = 0
    tcp: TcpSample | None = None


def rows(n: int) -> list[Row]:
    return [Row(f"c{i}", remote=f"127.0.0.1:{40000 + i}", bytes_in=i % 7) for i in range(1, n + 1)]


def ids(page: Sequence[ConnRow]) -> list[str]:
    return [r.id for r in page]


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (ConnView(), ["c1", "c2", "c3", "c4"]),
        (ConnView(protocol="udp"), ["c3"]),
        (ConnView(listener="l2"), ["c2"]),
        (ConnView(listener="*"), ["c1", "c2", "c3"]),
        (ConnView(run="*"), ["c4"]),
        (ConnView(run="r9"), ["c4"]),
        (ConnView(run="r8"), []),
        (ConnView(q="40002"), ["c2"]),
        (ConnView(q=" 10.0.0 "), ["c4"]),
        (ConnView(q="c3"), ["c3"]),
        (ConnView(protocol="tcp", listener="*"), ["c1", "c2"]),
    ],
)
def test_filters_match_listener_run_protocol_and_address(
    view: ConnView, expected: list[str]
) -> None:
    table = [
        Row("c1", remote="127.0.0.1:40001"),
        Row("c2", remote="127.0.0.1:40002", listener_id="l2"),
        Row("c3", protocol="udp", remote="127.0.0.1:40003"),
        Row("c4", local="10.0.0.1:5000", listener_id=None, run_id="r9"),
    ]
    page, matched, offset = select(table, view)
    assert ids(page) == expected
    assert matched == len(expected)
    assert offset == 0


def test_sort_by_a_counter_keeps_opening_order_among_ties() -> None:
    table = rows(14)  # bytes_in = i % 7
    page, _, _ = select(table, ConnView(sort="bytes_in", desc=True, limit=4))
    assert ids(page) == ["c6", "c13", "c5", "c12"]
    page, _, _ = select(table, ConnView(sort="id", desc=True, limit=3))
    assert ids(page) == ["c14", "c13", "c12"]


def test_an_offset_past_the_end_moves_back_to_the_last_page() -> None:
    page, matched, offset = select(rows(25), ConnView(offset=100, limit=10))
    assert (ids(page), matched, offset) == (["c21", "c22", "c23", "c24", "c25"], 25, 20)
    page, matched, offset = select([], ConnView(offset=100, limit=10))
    assert (page, matched, offset) == ([], 0, 0)


def test_window_sends_the_page_once_then_only_changed_rows() -> None:
    table = rows(300)
    window = ConnWindow(ConnView(limit=100, seq=3))
    first = window.update(table, 300, 0.0)
    assert first is not None
    assert first["seq"] == 3
    assert first["cols"] == COLUMNS
    assert len(first["rows"]) == 100
    assert first["ids"] == [f"c{i}" for i in range(1, 101)]
    assert (first["matched"], first["total"], first["offset"]) == (300, 300, 0)
    assert window.update(table, 300, 0.0) is None
    table[4].bytes_in += 10
    table[200].bytes_in += 10  # off the page: nothing to send for it
    second = window.update(table, 300, 0.0)
    assert second is not None
    assert [r[0] for r in second["rows"]] == ["c5"]
    assert second["rows"][0][COLUMNS.index("bytes_in")] == table[4].bytes_in
    assert "ids" not in second
    assert window.update(table, 300, 0.0) is None


def test_window_sends_the_new_order_when_a_row_on_the_page_closes() -> None:
    table = rows(120)
    window = ConnWindow(ConnView(limit=100))
    window.update(table, 120, 0.0)
    del table[0]
    message = window.update(table, 119, 0.0)
    assert message is not None
    assert message["ids"] == [f"c{i}" for i in range(2, 102)]
    assert [r[0] for r in message["rows"]] == ["c101"]
    assert message["total"] == 119


def test_a_new_view_resends_its_whole_page_with_its_seq() -> None:
    table = rows(50)
    window = ConnWindow()
    window.update(table, 50, 0.0)
    window.set_view(ConnView(q="40007", seq=9))
    message = window.update(table, 50, 0.0)
    assert message is not None
    assert (message["seq"], message["ids"], message["matched"]) == (9, ["c7"], 1)
    assert len(message["rows"]) == 1


def test_a_count_change_off_the_page_is_sent_without_rows() -> None:
    table = rows(150)
    window = ConnWindow(ConnView(limit=100))
    window.update(table, 150, 0.0)
    table.append(Row("c151"))
    message = window.update(table, 151, 0.0)
    assert message is not None
    assert (message["matched"], message["total"]) == (151, 151)
    assert "rows" not in message
    assert "ids" not in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("not json", "body"),
        ('{"offset": 1}', "type"),
        ('["view"]', "type"),
        ('{"type": "view", "limit": 501}', "limit"),
        ('{"type": "view", "sort": "password"}', "sort"),
        ('{"type": "view", "protocol": "sctp"}', "protocol"),
        ('{"type": "view", "colour": "red"}', "colour"),
    ],
)
def test_bad_view_messages_raise_a_spec_error_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_view(text)
    assert info.value.field == field


def test_a_view_message_parses() -> None:
    view = parse_view('{"type":"view","offset":100,"limit":50,"sort":"remote","q":"127","seq":4}')
    assert (view.offset, view.limit, view.sort, view.q, view.seq) == (100, 50, "remote", "127", 4)


def test_a_row_that_vanished_without_a_reported_change_makes_the_page_stale() -> None:
    # A connection that opens and closes between two ticks never shows in the registry's
    # diffs; a page computed in between (after a view change) must still be corrected.
    table = {r.id: r for r in rows(3)}
    window = ConnWindow()
    window.update(table.values(), 3, 0.0)
    assert not window.stale(table.get, 3)
    del table["c2"]
    table["c4"] = Row("c4")
    assert window.stale(table.get, 3)
    message = window.update(table.values(), 3, 0.0)
    assert message is not None
    assert message["ids"] == ["c1", "c3", "c4"]
    assert not window.stale(table.get, 3)
    assert window.stale(table.get, 4)  # a row opened off the page: the counts are due
