"""Start and stop listeners while the lab runs.

Listeners the operator gives (config file, command line) start as written; those a client
asks for (the API, the dashboard) go through :meth:`ListenerManager.start_requested`, which
applies the bind policy and the cap on listeners (:mod:`app.listeners.policy`) and keeps
them in the store (:mod:`app.listeners.saved`): :meth:`ListenerManager.restore` starts them
again when the lab starts, through the same policy and cap. One that cannot start again (its
port taken, the policy narrowed) is listed in :attr:`ListenerManager.failed` with the reason,
and the lab starts without it.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import trio

from app.errors import ConflictError, NotFoundError, SocketlabError, SpecError
from app.listeners.base import Listener
from app.listeners.collectors import collector, collector_doc, collectors
from app.listeners.forward import Forwarder
from app.listeners.kernelloss import KernelLoss
from app.listeners.modes import create_listener
from app.listeners.modes.respond import RespondMode
from app.listeners.modes.source import SourceMode, policy_allows
from app.listeners.parse import parse_listener
from app.listeners.policy import ListenerPolicy
from app.listeners.saved import SavedListeners
from app.listeners.spec import ListenerSpec
from app.listeners.tcp import serve_tcp_listener
from app.listeners.udp import serve_udp_listener
from app.registry import Registry
from app.runs.targets import TargetPolicy

logger = logging.getLogger(__name__)

_SERVERS = {"tcp": serve_tcp_listener, "tls": serve_tcp_listener, "udp": serve_udp_listener}


class ListenerManager:
    """Owns every listener; each runs in its own cancel scope inside the manager's nursery.

    Resource handling: stopping a listener (:meth:`stop`) cancels its scope, which closes
    its socket and every connection it serves; ``stop`` returns once the port is free.

    Args:
        registry: Where listeners show their connections.
        policy: What listeners asked for by clients may bind, and how many there may be.
    """

    def __init__(
        self,
        registry: Registry,
        policy: ListenerPolicy | None = None,
        kernel_loss: KernelLoss | None = None,
    ) -> None:
        self.registry = registry
        # The nftables chains of listeners with kernel_loss (app.listeners.kernelloss).
        self.kernel_loss = kernel_loss if kernel_loss is not None else KernelLoss()
        self.policy = policy if policy is not None else ListenerPolicy()
        self._ids = itertools.count(1)
        self._listeners: dict[str, Listener] = {}
        self._nursery: trio.Nursery | None = None
        self.accepting = True
        # Requested listeners being bound: they hold a place under the cap (start_requested).
        self._starting = 0
        # Where requested listeners are kept across restarts (None: they are not kept).
        self.saved: SavedListeners | None = None
        # Kept listeners that could not start again, by key: {"key", "url", "spec", "error"}.
        self.failed: dict[str, dict[str, Any]] = {}
        # Whom a source listener may send to (a requester's address): the lab's target
        # policy; None leaves each source to its own default, loopback only.
        self.send_policy: Callable[[str], bool] | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the nursery that listeners live in, until cancelled."""
        async with trio.open_nursery() as self._nursery:
            # Chains a crashed lab left would drop packets on ports listeners reuse now.
            await self.kernel_loss.clean_stale()
            task_status.started()
            await trio.sleep_forever()

    def __iter__(self) -> Iterator[Listener]:
        return iter(list(self._listeners.values()))

    def __len__(self) -> int:
        return len(self._listeners)

    def get(self, listener_id: str) -> Listener:
        """The running listener ``listener_id``.

        Raises:
            NotFoundError: No such listener is running.
        """
        try:
            return self._listeners[listener_id]
        except KeyError:
            raise NotFoundError(f"no listener {listener_id!r}", "id") from None

    async def start(self, spec: ListenerSpec) -> Listener:
        """Bind and start a listener; returns once its port is known.

        Raises:
            ConflictError: The address is in use or cannot be bound, or the lab is stopping.
            SpecError: A TLS certificate or key cannot be loaded, or kernel loss cannot be
                set up (no root, no nft: field ``kernel_loss``).
        """
        if self._nursery is None or not self.accepting:
            raise ConflictError("the lab is not accepting new listeners", None)
        if spec.kernel_loss:
            self.kernel_loss.check(spec)
        listener = create_listener(f"l{next(self._ids)}", spec)
        if isinstance(listener.mode, SourceMode) and self.send_policy is not None:
            listener.mode.may_send_to = self.send_policy
        forwarder = getattr(listener.mode, "forwarder", None)
        if isinstance(forwarder, Forwarder):
            # The upstream is a target like a run's: resolved once, every address checked.
            await forwarder.resolve(self.send_policy or policy_allows(TargetPolicy()))
        try:
            await self._nursery.start(self._run, listener)
        except OSError as exc:
            raise ConflictError(
                f"cannot bind {spec.protocol}://{spec.host}:{spec.port}: {exc.strerror or exc}",
                "url",
            ) from exc
        if isinstance(forwarder, Forwarder) and forwarder.loops_to(listener.host, listener.port):
            await self._stop_started(listener)
            raise SpecError("forward: the upstream is this listener itself", "forward")
        if spec.kernel_loss:
            await self._add_kernel_loss(listener)
        listener.started_at = time.time()
        self._listeners[listener.id] = listener
        logger.info("listener %s serving %s", listener.id, listener.spec_url())
        return listener

    async def start_requested(self, spec: ListenerSpec) -> Listener:
        """Start a listener a client asked for (the API, the dashboard), if the policy
        allows its address and the cap on listeners has room.

        The count is checked and a place taken before the first await, so simultaneous
        requests cannot all pass the cap before any of them is bound.

        Raises:
            SpecError: The policy refuses the address or the port (naming ``url``).
            ConflictError: The cap on listeners is reached, or as for :meth:`start`.
        """
        listener = await self._start_checked(spec)
        if self.saved is not None:
            try:
                listener.saved_key = await self.saved.add(self._bound_spec(listener), time.time())
            except SocketlabError as exc:
                # The listener serves; it only will not come back after a restart.
                logger.warning("listener %s is not kept for restarts: %s", listener.id, exc)
        return listener

    async def _start_checked(self, spec: ListenerSpec) -> Listener:
        self.policy.check(spec.host, spec.port)
        count = len(self._listeners) + self._starting
        limit = self.policy.max_listeners
        if count >= limit:
            raise ConflictError(f"{count} listeners are running (the limit is {limit})", None)
        self._starting += 1
        try:
            return await self.start(spec)
        finally:
            self._starting -= 1

    @staticmethod
    def _bound_spec(listener: Listener) -> ListenerSpec:
        # Kept with the port it bound, so that clients pointed at it find it again.
        return listener.spec.model_copy(update={"port": listener.port})

    async def restore(self) -> int:
        """Start again every kept listener, oldest first; returns how many started.

        Each goes through the bind policy and the cap like a new request. One that cannot
        start is put in :attr:`failed` with the reason (and stays kept until a client
        forgets it, :meth:`forget`); the others start regardless.

        Raises:
            StoreUnavailableError: The store cannot be read now (nothing was started).
        """
        if self.saved is None:
            return 0
        started = 0
        for kept in await self.saved.all():
            url = kept.spec.get("url", "?")
            try:
                spec = parse_listener(kept.spec)
                listener = await self._start_checked(spec)
            except SocketlabError as exc:
                logger.warning("kept listener %s did not start again: %s", url, exc.message)
                self.failed[kept.key] = {
                    "key": kept.key,
                    "url": url,
                    "spec": kept.spec,
                    "error": exc.message,
                }
                continue
            listener.saved_key = kept.key
            started += 1
        return started

    async def forget(self, key: str) -> None:
        """Forget a kept listener that failed to start again.

        Raises:
            NotFoundError: No failed listener has that key.
            StoreUnavailableError: The store cannot write now.
        """
        if key not in self.failed:
            raise NotFoundError(f"no failed listener {key!r}", "key")
        if self.saved is not None:
            await self.saved.remove(key)
        del self.failed[key]

    async def edit_rules(self, listener_id: str, body: dict[str, Any]) -> Listener:
        """Replace a respond listener's ``rules`` (and ``default_reply``, ``encoding``),
        validated as when the listener was made; connections answer by them from their next
        message, and the hit counters start again. A kept listener is kept with them.

        Raises:
            NotFoundError: No such listener is running.
            ConflictError: It is not a respond listener.
            SpecError: The rules are refused, naming the field.
            StoreUnavailableError: The store cannot write now (nothing was changed).
        """
        listener = self.get(listener_id)
        mode = listener.mode
        if not isinstance(mode, RespondMode):
            raise ConflictError(f"listener {listener_id} is not a respond listener", "id")
        current = listener.spec.to_dict()
        for name in ("rules", "rules_file", "default_reply", "encoding"):
            current.pop(name, None)
        spec = parse_listener({**current, **body})
        if listener.saved_key is not None and self.saved is not None:
            bound = spec.model_copy(update={"port": listener.port})
            await self.saved.replace(listener.saved_key, bound)
        listener.spec = spec
        mode.responder.adopt(spec.build_responder())
        logger.info("listener %s: rules replaced (%d rules)", listener_id, len(spec.rules))
        return listener

    @staticmethod
    async def _stop_started(listener: Listener) -> None:
        listener.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await listener.stopped.wait()

    async def _add_kernel_loss(self, listener: Listener) -> None:
        """Add a bound listener's nftables chain, or stop the listener and raise."""
        assert self._nursery is not None
        try:
            state = await self.kernel_loss.add(listener.id, listener.spec, listener.port)
        except BaseException:
            await self._stop_started(listener)
            raise
        listener.kernel_loss = state
        self._nursery.start_soon(self.kernel_loss.watch, state, listener.stopped)

    def serving_web(self, host: str, port: int) -> None:
        """Tell the policy where the web server listens (its port is known once bound)."""
        self.policy = replace(self.policy, web_host=host, web_port=port)

    async def _run(
        self, listener: Listener, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        serve = _SERVERS[listener.spec.protocol]
        try:
            with listener.cancel_scope:
                await serve(listener, self.registry, task_status=task_status)
        finally:
            self._listeners.pop(listener.id, None)
            if listener.kernel_loss is not None:
                await self.kernel_loss.remove(listener.kernel_loss)
            listener.stopped.set()

    async def stop(self, listener_id: str) -> Listener:
        """Stop a listener: close its socket and its connections; returns when the port is free.

        Raises:
            NotFoundError: No such listener is running.
        """
        listener = self.get(listener_id)
        if listener.saved_key is not None and self.saved is not None:
            # Forgotten first: if the store cannot write, the listener keeps serving (503)
            # rather than stopping now and coming back at the next start.
            await self.saved.remove(listener.saved_key)
            listener.saved_key = None
        listener.cancel_scope.cancel()
        await listener.stopped.wait()
        logger.info("listener %s stopped", listener_id)
        return listener

    def stop_accepting(self) -> None:
        """First step of shutdown: every listener stops, no new ones start."""
        self.accepting = False
        for listener in self._listeners.values():
            listener.cancel_scope.cancel()

    async def telemetry(self, listener_id: str | None = None) -> list[dict[str, Any]]:
        """The documents of every telemetry collector (or just ``listener_id``), kernel
        drops refreshed (:func:`~app.listeners.collectors.collector_doc`).

        Raises:
            NotFoundError: ``listener_id`` names no running listener.
            ConflictError: ``listener_id`` is not a collector.
        """
        if listener_id is not None:
            listener = self.get(listener_id)
            found = [(listener, collector(listener))]
        else:
            found = list(collectors(self))
        docs = []
        for listener, series in found:
            refresh = getattr(listener.mode, "refresh_kernel_drops", None)
            if refresh is not None:
                await refresh()
            docs.append(collector_doc(listener, series))
        return docs
