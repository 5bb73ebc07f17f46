"""The fixed values a pattern runs with where it has no such field.

The engine and the flows read every load attribute of every spec (``spec.rate``,
``spec.burst``, ``spec.in_flight``, ``spec.size``...), but each pattern's model
(:mod:`app.runs.spec`) has only the fields that pattern uses, so that a field it would
ignore is refused by name. The mixins below fill the gap: each answers, as read-only
properties, with the value a pattern without those fields runs with, and the ``DEFAULT_*``
constants are those values (the models that do have the fields use them as defaults, so a
field left out and a field missing mean the same run).
"""

from __future__ import annotations

# The values a pattern without such a field runs with (the engine reads them all).
DEFAULT_CONNECTIONS = 1
DEFAULT_SIZE = 64
DEFAULT_BURST = 10
DEFAULT_INTERVAL = 1.0
DEFAULT_IN_FLIGHT = 1


class Unpaced:
    """A pattern that sets its own pace: no rate."""

    @property
    def rate(self) -> float | None:
        return None

    @property
    def bitrate(self) -> float | None:
        return None

    @property
    def message_rate(self) -> float | None:
        return None


class NoBursts:
    @property
    def burst(self) -> int:
        return DEFAULT_BURST

    @property
    def interval(self) -> float:
        return DEFAULT_INTERVAL


class OneInFlight:
    @property
    def in_flight(self) -> int:
        return DEFAULT_IN_FLIGHT


class AwaitsReplies:
    """A closed-loop pattern waits for each reply, so the field is not its to set; at a
    socketlab sink, which answers nothing, the lab knows none will come (``None``: the lab
    decides), so the run claims no loss and its ``remote`` says what arrived."""

    @property
    def expect_replies(self) -> bool | None:
        return None


class OwnBytes:
    """A pattern whose bytes are its own (a packet's payload, a scenario's steps): the
    message sizes have their fixed values and nothing is left out as warm-up."""

    @property
    def size(self) -> int:
        return DEFAULT_SIZE

    @property
    def size_max(self) -> int | None:
        return None

    @property
    def largest_size(self) -> int:
        return DEFAULT_SIZE

    @property
    def mean_size(self) -> float:
        return DEFAULT_SIZE

    @property
    def warmup(self) -> float:
        return 0.0
