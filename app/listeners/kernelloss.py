"""Real packet loss in the kernel for a listener, through the ``nft`` command.

A listener with ``kernel_loss=N`` (percent) gets a chain of its own in socketlab's own
nftables table when it starts, removed when it stops (:mod:`app.listeners.nftrules` writes
the rules and says which packets they match). TCP then loses real segments and retransmits
them; UDP loses datagrams on the way, as on a lossy path.

What it needs, checked before the listener binds (:meth:`KernelLoss.refusal`): Linux, the
``nft`` command (Debian's ``nftables`` package) and ``CAP_NET_ADMIN`` (root). Without them
the listener refuses to start with one line naming what is missing: a 422 from the API,
exit 2 from the CLI. tc netem (delay and reordering in the kernel) needs ``sch_netem``;
:func:`netem_missing` says whether this kernel has it, and the listener document shows it.

After a crash: a lab that added chains leaves a marker file ``<netns>-<pid>`` in
``/run/socketlab/kernel-loss`` (``/run`` is emptied at boot, as is the ruleset). The next
manager to start in the same network namespace finds the marker of a dead process and
removes that process's chains (:meth:`KernelLoss.clean_stale`); it runs ``nft`` only then,
so a lab that never used kernel loss never runs it.

Error handling: an ``nft`` that fails, or takes longer than ``NFT_TIMEOUT``, raises
:class:`~app.errors.SpecError` (field ``kernel_loss``) with nft's first line of complaint
when adding; removing and cleaning log a warning and carry on (the listener is stopping).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from app.errors import SpecError
from app.listeners.nftrules import (
    FAMILY,
    TABLE,
    LossRules,
    chain_drops,
    delete_script,
    netem_missing,
    stale_chains,
    where_refused,
)
from app.listeners.spec import ListenerSpec

__all__ = ["NFT_TIMEOUT", "KernelLoss", "KernelLossState", "netem_reason"]

logger = logging.getLogger(__name__)

# nft answers in milliseconds; a loaded machine may take far longer to fork it.
NFT_TIMEOUT = 15.0
# How often a lossy listener's drop counters are read back (one nft run each).
REFRESH_PERIOD = 2.0
_CAP_NET_ADMIN = 12
DEFAULT_RUN_DIR = Path("/run/socketlab/kernel-loss")


@dataclass(slots=True)
class KernelLossState:
    """A running listener's kernel loss: its rules, its chain, the drops counted so far."""

    rules: LossRules
    chain: str
    netem: str | None
    dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``kernel_loss`` section of the listener's document."""
        return {
            "percent": self.rules.percent,
            "direction": self.rules.direction,
            "backend": "nftables",
            "table": f"{FAMILY} {TABLE}",
            "chain": self.chain,
            "dropped": {way: self.dropped.get(way, 0) for way in _ways(self.rules)},
            "netem": self.netem or "available",
        }


def _ways(rules: LossRules) -> tuple[str, ...]:
    return ("in", "out") if rules.direction == "both" else (rules.direction,)


def net_admin() -> bool | None:
    """Whether this process holds CAP_NET_ADMIN (None where /proc cannot say)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    return None


def netem_reason() -> str | None:
    """Why tc netem is not available on this kernel, or None when it is."""
    release = platform.release()
    config: str | None = None
    with contextlib.suppress(OSError, EOFError):
        config = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode(errors="replace")
    if config is None:
        with contextlib.suppress(OSError):
            config = Path(f"/boot/config-{release}").read_text(errors="replace")
    modules = Path("/lib/modules") / release / "kernel/net/sched"
    files = [str(p) for p in modules.glob("sch_netem.ko*")] if modules.is_dir() else []
    return netem_missing(config, files, Path("/sys/module/sch_netem").exists(), release)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


class KernelLoss:
    """Adds and removes the nftables chains of one process's lossy listeners.

    Args:
        nft: The nft command; found on ``PATH`` when None.
        run_dir: Where the crash markers live.
    """

    def __init__(self, nft: str | None = None, run_dir: Path = DEFAULT_RUN_DIR) -> None:
        self.nft = nft if nft is not None else shutil.which("nft")
        self.run_dir = run_dir
        self.pid = os.getpid()
        self._cleaned = False
        self._chains: set[str] = set()
        self._netem: str | bool | None = False  # False: not looked at yet

    @property
    def netem(self) -> str | None:
        """Why tc netem is missing (None when the kernel has it); looked at once."""
        if self._netem is False:
            self._netem = netem_reason()
        return self._netem if isinstance(self._netem, str) else None

    def refusal(self, spec: ListenerSpec) -> str | None:
        """Why ``spec``'s kernel loss cannot be set up here (one line), or None."""
        reason = where_refused(spec.host, spec.kernel_loss_direction)
        if reason is not None:
            return reason
        if platform.system() != "Linux":
            return f"kernel_loss needs Linux nftables; this is {platform.system()}"
        if self.nft is None:
            return (
                "kernel_loss needs the nft command (Debian package nftables), and none is on PATH"
            )
        if not net_admin():
            return (
                "kernel_loss needs root (CAP_NET_ADMIN) to change nftables rules; "
                f"this lab runs as uid {os.geteuid()} without it"
            )
        return None

    def check(self, spec: ListenerSpec) -> None:
        """Refuse ``spec`` before anything binds.

        Raises:
            SpecError: What is missing (field ``kernel_loss``).
        """
        reason = self.refusal(spec)
        if reason is not None:
            raise SpecError(reason, "kernel_loss")

    async def _nft(self, *args: str, script: str | None = None) -> tuple[int, str, str]:
        assert self.nft is not None
        command = [self.nft, *args] + (["-f", "-"] if script is not None else [])
        with trio.fail_after(NFT_TIMEOUT):
            done = await trio.run_process(
                command,
                stdin=script.encode() if script is not None else b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        return (
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    def _marker(self) -> Path:
        return self.run_dir / f"{_netns()}-{self.pid}"

    async def clean_stale(self, *, force: bool = False) -> list[str]:
        """Remove the chains dead processes left in this network namespace.

        Runs ``nft`` only when ``force`` is given or a marker of a dead process of this
        namespace is found (and never without the nft command and CAP_NET_ADMIN).

        Returns:
            The chains removed.
        """
        netns = f"{_netns()}-"
        try:
            markers = [p for p in self.run_dir.iterdir() if p.name.startswith(netns)]
        except OSError:
            markers = []
        dead = [p for p in markers if not _alive(int(p.name.rsplit("-", 1)[-1] or 0))]
        if not (force or dead) or self.nft is None or not net_admin():
            return []
        removed: list[str] = []
        try:
            code, out, _ = await self._nft("-j", "list", "table", FAMILY, TABLE)
            if code == 0:
                for chain in stale_chains(out, _alive):
                    code, _, err = await self._nft(script=delete_script(chain))
                    if code == 0:
                        removed.append(chain)
                    else:
                        logger.warning("cannot remove stale chain %s: %s", chain, err.strip())
        except (OSError, trio.TooSlowError) as exc:
            logger.warning("cannot clean up stale kernel-loss chains: %s", exc)
            return removed
        for marker in dead:
            with contextlib.suppress(OSError):
                marker.unlink(missing_ok=True)
        if removed:
            logger.info("removed kernel-loss chains of dead processes: %s", ", ".join(removed))
        return removed

    async def add(self, listener_id: str, spec: ListenerSpec, port: int) -> KernelLossState:
        """Add the chain of a listener bound to ``port``.

        Raises:
            SpecError: nft refused the rules or did not answer (field ``kernel_loss``).
        """
        self.check(spec)
        if not self._cleaned:
            self._cleaned = True
            await self.clean_stale(force=True)
        rules = LossRules(
            listener_id,
            "udp" if spec.protocol == "udp" else "tcp",
            spec.host,
            port,
            spec.kernel_loss,
            spec.kernel_loss_direction,
        )
        chain = rules.chain(self.pid)
        try:
            code, _, err = await self._nft(script=rules.add_script(self.pid))
        except (OSError, trio.TooSlowError) as exc:
            raise SpecError(f"kernel_loss: nft did not run: {exc}", "kernel_loss") from None
        if code != 0:
            first = next((line for line in err.splitlines() if line.strip()), f"exit {code}")
            raise SpecError(f"kernel_loss: nft refused the rule: {first}", "kernel_loss")
        self._chains.add(chain)
        with contextlib.suppress(OSError):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._marker().touch()
        logger.info(
            "kernel loss %g%% %s on port %d (chain %s)",
            spec.kernel_loss,
            spec.kernel_loss_direction,
            port,
            chain,
        )
        # /proc/config.gz and /lib/modules are files: read once, off the event loop.
        netem = await trio.to_thread.run_sync(lambda: self.netem)
        return KernelLossState(rules, chain, netem)

    async def refresh(self, state: KernelLossState) -> None:
        """Read the chain's drop counters into ``state``; a failure keeps the last figures."""
        try:
            code, out, _ = await self._nft("-j", "list", "chain", FAMILY, TABLE, state.chain)
        except (OSError, trio.TooSlowError):
            return
        if code == 0:
            state.dropped = chain_drops(out, state.chain)

    async def watch(self, state: KernelLossState, stopped: trio.Event) -> None:
        """Refresh ``state``'s counters every ``REFRESH_PERIOD`` until ``stopped``."""
        while not stopped.is_set():
            with trio.move_on_after(REFRESH_PERIOD):
                await stopped.wait()
            if not stopped.is_set():
                await self.refresh(state)

    async def remove(self, state: KernelLossState) -> None:
        """Remove a stopping listener's chain (the last counters are read first).

        Shielded, with its own deadline: it runs while the listener (or the lab) is being
        cancelled, and a chain left behind would keep dropping packets on a freed port.
        """
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 2 * NFT_TIMEOUT):
            await self.refresh(state)
            try:
                code, _, err = await self._nft(script=delete_script(state.chain))
            except (OSError, trio.TooSlowError) as exc:
                code, err = 1, str(exc)
            if code != 0:
                logger.warning("cannot remove kernel-loss chain %s: %s", state.chain, err.strip())
                return
            self._chains.discard(state.chain)
            if not self._chains:
                with contextlib.suppress(OSError):
                    self._marker().unlink(missing_ok=True)
