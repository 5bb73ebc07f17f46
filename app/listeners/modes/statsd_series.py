"""A StatsD collector's flushes as points of the one telemetry model, and back.

Theory of operation: every flush of a :class:`~app.listeners.modes.statsd.StatsdMode`
becomes points (:func:`snapshot_points`) that go into the mode's
:class:`~app.telemetry.series.SeriesStore`, as every other collector's points do. A StatsD
key ``name|#tag,tag`` is a series name plus its tags (``env:dev`` is the tag ``env`` =
``dev``; a tag without a value has ``""``); the field says what the value is:

| StatsD section | fields |
| --- | --- |
| counters | ``counter`` (the interval's total, scaled by 1/sample rate) |
| gauges | ``gauge`` |
| timers | ``count``, ``min``, ``max``, ``mean`` and each configured ``pN`` |
| sets | ``set`` (distinct members) |

:func:`history_doc` reads the store back into the StatsD view of
``GET /api/telemetry/{id}/history``: each metric's value at every flush still held raw. A
flush runs every ``flush_interval`` seconds, not per datagram, so none of this is on the
hot path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.telemetry.points import Point, Tags
from app.telemetry.series import SeriesQuery, SeriesStore
from app.wire.statsd import Snapshot

# Keys of each section shown per flush by the history view (the first by key).
MAX_KEYS = 200
# Fields of a timer that are not percentiles.
_TIMER_FIELDS = ("count", "min", "max", "mean")
# Which section each single-valued field belongs to.
_SECTIONS = {"counter": "counters", "gauge": "gauges", "set": "sets"}


def key_tags(key: str) -> tuple[str, Tags]:
    """``name|#b:2,a`` → (``name``, ((a, ""), (b, "2"))), in the canonical order."""
    name, sep, text = key.partition("|#")
    if not sep:
        return name, ()
    pairs = []
    for tag in text.split(","):
        tag_key, _, value = tag.partition(":")
        pairs.append((tag_key, value))
    return name, tuple(sorted(pairs))


def tags_key(name: str, tags: Tags) -> str:
    """The StatsD key of a series: the inverse of :func:`key_tags`."""
    if not tags:
        return name
    texts = sorted(f"{key}:{value}" if value else key for key, value in tags)
    return f"{name}|#{','.join(texts)}"


def snapshot_points(snapshot: Snapshot) -> Iterator[Point]:
    """The points of one flushed interval, at its flush time."""
    at = snapshot["flushed_at"]
    for key, counter in snapshot["counters"].items():
        name, tags = key_tags(key)
        yield Point(name, {"counter": counter["value"]}, tags, at)
    for key, gauge in snapshot["gauges"].items():
        name, tags = key_tags(key)
        yield Point(name, {"gauge": gauge}, tags, at)
    for key, timer in snapshot["timers"].items():
        name, tags = key_tags(key)
        fields = {stat: value for stat, value in timer.items() if _timer_field(stat)}
        yield Point(name, dict(fields), tags, at)
    for key, members in snapshot["sets"].items():
        name, tags = key_tags(key)
        yield Point(name, {"set": members}, tags, at)


def _timer_field(stat: str) -> bool:
    return stat in _TIMER_FIELDS or (stat.startswith("p") and stat[1:2].isdigit())


def history_doc(series: SeriesStore) -> dict[str, Any]:
    """``points``: one per flush time still held raw, oldest first, each ``t`` and
    ``counters``, ``gauges``, ``timers`` ({key: {count, mean, pN, ...}}) and ``sets``, at
    most :data:`MAX_KEYS` keys per section."""
    flushes: dict[float, dict[str, Any]] = {}
    keys: dict[str, set[str]] = {"counters": set(), "gauges": set(), "timers": set(), "sets": set()}
    listed, _ = series.query(SeriesQuery())
    for (name, field, tags), held in listed:
        section = _SECTIONS.get(field, "timers")
        key = tags_key(name, tags)
        shown = keys[section]
        if key not in shown:
            if len(shown) >= MAX_KEYS:
                continue
            shown.add(key)
        for at, value in held.raw:
            point = flushes.get(at)
            if point is None:
                point = flushes[at] = {"t": at, **{table: {} for table in keys}}
            if section == "timers":
                point["timers"].setdefault(key, {})[field] = value
            else:
                point[section][key] = value
    return {"points": [flushes[at] for at in sorted(flushes)]}
