"""Pydantic models of the run history's routes: search, labels and the RTT histogram.

Kept beside :mod:`app.web.schemas` (which documents the rest of the API the same way) so
that the history's fields are defined once, here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, FailFast, Field, WithJsonSchema

from app.runs.histogram import DEFAULT_PER_DOUBLING, MAX_PER_DOUBLING
from app.runs.spec import PATTERNS
from app.web.query import ASCII_INTEGER, QueryInt
from app.web.schemas import RunStatus, Strict

# Letters, digits and a few separators: a label reads the same in a URL, a page and a CLI.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$"
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL_PATTERN)]


def _known_pattern(name: str) -> str:
    if name not in PATTERNS:
        raise ValueError(f"must be one of {', '.join(PATTERNS)}")
    return name


# One of the run patterns (the spec models' own list, not a copy of it).
PatternName = Annotated[
    str,
    AfterValidator(_known_pattern),
    WithJsonSchema({"type": "string", "enum": list(PATTERNS)}),
]
# Text to look for: printable, so a stray NUL or an empty value is a 422, not a search.
SearchText = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class RunsQuery(Strict):
    """Which runs ``GET /api/runs`` returns; every filter given must hold."""

    limit: QueryInt = Field(100, ge=1, le=1000, description="runs to return, newest first")
    offset: Annotated[int, Field(ge=0, le=10_000_000), ASCII_INTEGER] = Field(
        0, description="stored runs to skip (running ones come first on the first page)"
    )
    q: SearchText | None = Field(None, description="found in the id, target, pattern or a label")
    target: SearchText | None = Field(None, description="found in the target URL")
    pattern: PatternName | None = Field(None, description="the pattern, exactly")
    status: RunStatus | None = None
    label: Label | None = Field(None, description="a label the run carries")


class LabelRequest(Strict):
    """A label to put on a run."""

    label: Label = Field(examples=["baseline"])


class RunLabels(Strict):
    """A run's labels, sorted."""

    id: str
    labels: list[str]


class HistogramQuery(Strict):
    per_doubling: Annotated[int, Field(ge=1, le=MAX_PER_DOUBLING), ASCII_INTEGER] = Field(
        DEFAULT_PER_DOUBLING,
        description="buckets per doubling of the RTT (8: each bucket about 9 % wide)",
    )


class HistogramBucket(Strict):
    """RTTs above ``from_ms`` up to ``to_ms``."""

    from_ms: float
    to_ms: float
    count: int


class PercentileMarker(Strict):
    """A percentile of the run's RTT: the summary's own figure."""

    name: Literal["p50", "p90", "p99", "p999"]
    percentile: float
    ms: float


class RunHistogram(Strict):
    """A run's RTT histogram in fine buckets, with markers at the summary's percentiles.

    ``resolution`` is ``fine`` when the run's HDR histogram is at hand (running runs, and
    runs ended since it is stored), ``coarse`` for older runs: their doubling rows."""

    id: str
    status: RunStatus
    resolution: Literal["fine", "coarse"]
    per_doubling: int | None = Field(description="null for coarse buckets (they double)")
    count: int = Field(description="RTTs in the buckets")
    buckets: Annotated[list[HistogramBucket], FailFast()]
    markers: list[PercentileMarker]
