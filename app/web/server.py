"""Run the web application on Hypercorn's trio worker, inside the lab's nursery.

:func:`serve_web` is the lab's web server: the Lab is handed it (``Lab(settings,
web=serve_web)``) and starts it with its :class:`~app.web.deps.WebDeps`, so the Lab never
imports this layer.

:func:`serve_hypercorn` is ``hypercorn.trio.serve`` with one difference: its accept loop
goes through :mod:`app.web.accept`, which caps the web server's connections at its share
of the descriptor budget (:mod:`app.descriptors`) and closes idle connections first to make
room, so idle clients cannot make the API unreachable. Hypercorn's ``serve`` has no hook
for that (it builds its listeners and connection servers itself), so the few lines of its
worker that start them are repeated here, against the Hypercorn minor version pinned in
pyproject.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app

from app.descriptors import DESCRIPTORS
from app.endpoint import host_port
from app.turns import counting_requests
from app.web.accept import GuardedListener, TrackedServer, WebConnections
from app.web.factory import create_web
from app.web.feed import Feed

if TYPE_CHECKING:
    from app.settings import Settings
    from app.web.deps import WebDeps

logger = logging.getLogger(__name__)

# Dashboard WebSocket frames are small snapshots; 1 MiB bounds what a client can make us
# buffer (Hypercorn's default is 16 MiB).
WEBSOCKET_MAX_MESSAGE = 1024 * 1024
WEB_BACKLOG = 4096
# An idle connection (before its first request, or between two) is closed after this long.
KEEP_ALIVE_TIMEOUT = 5.0
# The longest wait for the next bytes of a request being read (slow-body clients).
READ_TIMEOUT = 30


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [host_port(settings.web_host, settings.web_port)]
    config.graceful_timeout = settings.graceful_timeout
    config.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE
    # The login URL carries the token in its query string: no access log, so it is never
    # written anywhere.
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    config.read_timeout = READ_TIMEOUT
    # Hypercorn's default backlog (100) overflows under a burst of connections, and every
    # client past it waits for a SYN retry (1 s, then 3 s, ...); queued connections cost no
    # descriptor, and the accept loop makes room for them (app.web.accept). The kernel caps
    # it at net.core.somaxconn.
    config.backlog = WEB_BACKLOG
    return config


async def serve_hypercorn(
    web: Any,
    config: Config,
    connections: WebConnections,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``web`` as ``hypercorn.trio.serve`` does, its connections kept by ``connections``.

    Reports the bound addresses (``http://host:port``) like Hypercorn. Returns once
    ``shutdown_trigger`` has returned and the connections have drained (at most
    ``config.graceful_timeout``).
    """
    app = wrap_app(counting_requests(web), config.wsgi_max_body_size, None)
    state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            listeners: list[GuardedListener] = []
            binds: list[str] = []
            for sock in config.create_sockets().insecure_sockets:
                sock.listen(config.backlog)
                inner = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                listeners.append(GuardedListener(inner, connections))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            connection_state = ConnectionState(state.copy())

            async def handle(stream: trio.SocketStream) -> None:
                # Counted open by GuardedListener.accept, before this task even starts.
                try:
                    await TrackedServer(connections, app, config, context, connection_state, stream)
                finally:
                    connections.closed(stream)

            task_status.started(binds)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners, handle, listeners, handler_nursery=server_nursery
                        )
                    )
            except* ShutdownError:
                pass
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


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
    DESCRIPTORS.refresh()
    connections = WebConnections(DESCRIPTORS.web_max)
    try:
        async with trio.open_nursery() as nursery:

            async def run_hypercorn(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve_hypercorn(
                    web,
                    config,
                    connections,
                    shutdown_trigger=deps.shutdown.wait,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            await nursery.start(feed.serve)
            binds: list[str] = await nursery.start(run_hypercorn)
            port = int(binds[0].rsplit(":", 1)[1])
            task_status.started(port)
    finally:
        done.set()
