"""Run the web application on Hypercorn's trio worker, inside the lab's nursery."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from app.endpoint import host_port
from app.web.factory import create_web

if TYPE_CHECKING:
    from app.lab import Lab

logger = logging.getLogger(__name__)

# Dashboard WebSocket frames are small snapshots; 1 MiB bounds what a client can make us
# buffer (Hypercorn's default is 16 MiB).
WEBSOCKET_MAX_MESSAGE = 1024 * 1024


def hypercorn_config(lab: Lab) -> Config:
    settings = lab.settings
    config = Config()
    config.bind = [host_port(settings.web_host, settings.web_port)]
    config.graceful_timeout = settings.graceful_timeout
    config.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE
    # The login URL carries the token in its query string: no access log, so it is never
    # written anywhere.
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 5.0
    config.read_timeout = 30
    return config


async def serve_web(
    lab: Lab,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard until ``lab.shutdown`` is set, then drain; reports the bound port.

    Hypercorn is stopped through its ``shutdown_trigger``, never by cancellation, which
    would skip its socket shutdown. ``done`` is set once it has drained.
    """
    web = create_web(lab)
    config = hypercorn_config(lab)
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(serve, web, config, shutdown_trigger=lab.shutdown.wait)
            )
            port = int(binds[0].rsplit(":", 1)[1])
            task_status.started(port)
    finally:
        done.set()
