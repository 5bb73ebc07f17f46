"""Listener modes: what a listener does with the bytes it receives.

| mode    | module     | TCP / TLS                                | UDP                           |
| ------- | ---------- | ---------------------------------------- | ----------------------------- |
| echo    | echo.py    | every byte back (+ delay, jitter)        | every datagram back (+ loss,  |
|         | impair.py  |                                          | duplication, delay, jitter)   |
| sink    | sink.py    | count; probe stats with message_size     | count; probe stats per flow   |
| respond | respond.py | rule replies per line or per read        | rule replies per datagram     |
| statsd  | statsd.py  | StatsD lines, cut at newlines            | StatsD datagrams              |
| influx  | influx.py  | line protocol, cut at newlines           | line protocol datagrams       |
| graphite| graphite.py| plaintext lines, cut at newlines         | plaintext datagrams           |
| syslog  | syslog.py  | RFC 6587 octet counting or newline/NUL   | one message per datagram      |
|         | collector.py (shared by the three: limits, counters, ``forward``)                  |
| source  | source.py  | a probe stream per send request; else as | a probe stream per requester; |
|         |            | a sink                                   | else as a sink                |
"""

from __future__ import annotations

from app.listeners.base import Listener, Mode
from app.listeners.modes.echo import EchoMode
from app.listeners.modes.graphite import GraphiteMode
from app.listeners.modes.influx import InfluxMode
from app.listeners.modes.respond import RespondMode
from app.listeners.modes.sink import SinkMode
from app.listeners.modes.source import SourceMode
from app.listeners.modes.statsd import StatsdMode
from app.listeners.modes.syslog import SyslogMode
from app.listeners.spec import ListenerSpec

# The mode class of each ``mode=`` value (LISTENER_MODES in app.listeners.spec).
MODES: dict[str, type[Mode]] = {
    "echo": EchoMode,
    "sink": SinkMode,
    "respond": RespondMode,
    "statsd": StatsdMode,
    "source": SourceMode,
    "influx": InfluxMode,
    "graphite": GraphiteMode,
    "syslog": SyslogMode,
}


def make_mode(listener: Listener) -> Mode:
    """The mode object for ``listener``'s spec."""
    return MODES[listener.spec.mode](listener)


def create_listener(listener_id: str, spec: ListenerSpec) -> Listener:
    """A :class:`~app.listeners.base.Listener` with its mode attached, not yet serving."""
    listener = Listener(listener_id, spec)
    listener.mode = make_mode(listener)
    return listener
