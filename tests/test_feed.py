"""The dashboard's tick loop over a lab's WebDeps: what each transport gets of one tick."""

from __future__ import annotations

import json
from pathlib import Path

from app.lab import Lab
from app.web.events_api import MAX_BUFFER, NDJSON_ENCODER
from app.web.feed import WS_ENCODER, Feed
from tests.helpers import lab_settings


async def test_one_tick_gives_the_dashboard_a_tick_and_the_stream_its_connection_events(
    tmp_path: Path,
) -> None:
    lab = Lab(lab_settings(tmp_path))  # not served: the feed reads its collaborators only
    deps = lab.web_deps()
    feed = Feed(deps)
    conn = deps.registry.open("tcp", ("127.0.0.1", 9000), ("127.0.0.1", 50000))
    async with (
        deps.hub.subscribe(encoder=WS_ENCODER) as ws,
        deps.hub.subscribe(MAX_BUFFER, encoder=NDJSON_ENCODER) as stream,
    ):
        feed.tick()
        tick = json.loads(ws.receive_channel.receive_nowait())
        assert (tick["type"], tick["total"], tick["runs"]) == ("tick", 1, [])
        assert ws.drain_nowait() == 0  # connection rows reach a browser as its own page
        event, line = stream.receive_channel.receive_nowait()
        assert event.row["id"] == conn.id
        assert json.loads(line) == {"type": "connection.opened", **event.row}
        assert stream.drain_nowait() == 0  # ticks are the dashboard's alone
        assert feed.conn_epoch == 1
        deps.registry.close(conn)
        feed.tick()
        _event, line = stream.receive_channel.receive_nowait()
        assert json.loads(line) == {"type": "connection.closed", "id": conn.id}
        assert feed.conn_epoch == 2


async def test_without_subscribers_a_tick_builds_no_events(tmp_path: Path) -> None:
    lab = Lab(lab_settings(tmp_path))
    deps = lab.web_deps()
    feed = Feed(deps)
    deps.registry.open("tcp", ("127.0.0.1", 9000), ("127.0.0.1", 50000))
    feed.tick()
    assert deps.hub.published == 0
    assert feed.conn_epoch == 1
