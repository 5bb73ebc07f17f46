"""Run the web application on Hypercorn's trio worker, inside the lab's nursery.

:func:`serve_web` is the lab's web server: the Lab is handed it (``Lab(settings,
web=serve_web)``) and starts it with its :class:`~app.web.deps.WebDeps`, so the Lab never
imports this layer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from app.endpoint import host_port
from app.web.factory import create_web
from app.web.feed import Feed

if TYPE_CHECKING:
    from app.settings import Settings
    from app.web.deps import WebDeps

logger = logging.getLogger(__name__)

# Dashboard WebSocket frames are small snapshots; 1 MiB bounds what a client can make us
# buffer (Hypercorn's default is 16 MiB).
WEBSOCKET_MAX_MESSAGE = 1024 * 1024


def hypercorn_config(settings: Settings) -> Config:
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
    deps: WebDeps,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard and its tick loop until ``deps.shutdown`` is set, then drain;
    reports the bound port.

    Hypercorn is stopped through its ``shutdown_trigger``, never by cancellation, which
    would skip its socket shutdown; the tick loop is cancelled once Hypercorn has drained.
    ``done`` is set then.
    """
    feed = Feed(deps)
    web = create_web(deps, feed)
    config = hypercorn_config(deps.settings)
    try:
        async with trio.open_nursery() as nursery:

            async def run_hypercorn(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(
                    web, config, shutdown_trigger=deps.shutdown.wait, task_status=task_status
                )
                nursery.cancel_scope.cancel()

            await nursery.start(feed.serve)
            binds: list[str] = await nursery.start(run_hypercorn)
            port = int(binds[0].rsplit(":", 1)[1])
            task_status.started(port)
    finally:
        done.set()
