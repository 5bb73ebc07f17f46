"""Socket passes are short while an HTTP request waits for its turns, and long otherwise."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from app.turns import PASS_SIZE, SHORT_PASS, WEB, counting_requests


async def test_a_request_in_flight_shortens_the_passes_until_it_is_answered() -> None:
    inside = trio.Event()
    release = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        inside.set()
        await release.wait()

    counted = counting_requests(app)
    assert WEB.pass_size() == PASS_SIZE
    async with trio.open_nursery() as nursery:
        nursery.start_soon(counted, {"type": "http"}, None, None)
        await inside.wait()
        assert WEB.requests == 1 and WEB.pass_size() == SHORT_PASS
        release.set()
    assert WEB.requests == 0 and WEB.pass_size() == PASS_SIZE


async def test_websockets_and_lifespan_do_not_count() -> None:
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(WEB.requests)

    counted = counting_requests(app)
    await counted({"type": "websocket"}, None, None)
    await counted({"type": "lifespan"}, None, None)
    assert seen == [0, 0]


async def test_a_request_that_fails_is_no_longer_counted() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("the application failed")

    with pytest.raises(RuntimeError):
        await counting_requests(app)({"type": "http"}, None, None)
    assert WEB.requests == 0
