"""The direction fields of the patterns that send many messages: ``reverse`` and ``bidir``.

Rate, bulk and burst runs may run reversed (the target, a socketlab source, sends and this
end measures) or in both directions at once; :mod:`app.runs.spec` gives those models the
two fields and the others :class:`OneWay`, which answers ``False`` for both.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.wire.probe import HEADER_SIZE


def reverse_field() -> Any:
    return Field(
        False,
        description="the target (a socketlab source) sends and this end measures what "
        "arrives, as iperf3's -R",
    )


def bidir_field() -> Any:
    return Field(
        False,
        description="both directions at once: this end sends to the target (a socketlab "
        "source) and measures what the source sends back on flows of their own",
    )


def check_directions(spec: Any) -> None:
    """What the reverse direction needs: a probe header in every message, one size."""
    if spec.reverse and spec.bidir:
        raise ValueError("bidir: give reverse or bidir, not both")
    if not (spec.reverse or spec.bidir):
        return
    name = "bidir" if spec.bidir else "reverse"
    if spec.size < HEADER_SIZE:
        raise ValueError(
            f"size: a {name} run's messages carry a 28-byte probe header; give 28 or more"
        )
    if spec.size_max is not None:
        raise ValueError(f"size_max: the source of a {name} run sends size bytes each time")


class OneWay:
    """A pattern that runs in one direction only."""

    @property
    def reverse(self) -> bool:
        return False

    @property
    def bidir(self) -> bool:
        return False
