"""A run as one self-contained HTML page: ``GET /api/runs/{run_id}/report.html``.

The page carries everything it needs inside itself, so it opens from a disk with no network:
the run document the API returns (spec, summary, series) as JSON, the dashboard's style
sheet and uPlot's, uPlot itself, and the dashboard's own modules (formatters, summary rows,
charts) inlined by :mod:`app.web.jsbundle`. Its figures are drawn in the browser from that
document by the same code the dashboard runs, so the report and the page cannot disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from app.web.jsbundle import bundle

REPORT_ENTRY = "report.js"
_CLOSERS = re.compile(r"</(script|style)", re.I)


@dataclass(frozen=True)
class ReportAssets:
    """What the report page inlines: style sheets and one classic script."""

    css: str
    script: str


def _checked(name: str, text: str) -> str:
    # Inline text must not end its own <script> or <style> element early.
    if _CLOSERS.search(text):
        raise ValueError(f"{name} contains a closing script or style tag; it cannot be inlined")
    return text


def load_assets(static_dir: Path) -> ReportAssets:
    """Read the report's assets from ``static_dir`` (blocking: call it in a thread).

    Raises:
        OSError: An asset cannot be read.
        app.web.jsbundle.BundleError: A module cannot be inlined.
    """
    uplot = static_dir / "vendor" / "uplot"
    css = "\n".join(
        _checked(path.name, path.read_text(encoding="utf-8"))
        for path in (uplot / "uPlot.min.css", static_dir / "style.css")
    )
    script = "\n".join(
        (
            _checked(
                "uPlot.iife.min.js", (uplot / "uPlot.iife.min.js").read_text(encoding="utf-8")
            ),
            _checked("report bundle", bundle(static_dir / "js", REPORT_ENTRY)),
        )
    )
    return ReportAssets(css=css, script=script)


def embedded_json(doc: dict[str, Any]) -> str:
    """``doc`` as JSON safe inside a ``<script type="application/json">`` element."""
    # "<" escaped: no "</script>" (nor "<!--") inside a value can end the element.
    return json.dumps(doc).replace("<", "\\u003c")


async def report_assets(static_dir: Path) -> ReportAssets:
    """:func:`load_assets` off the event loop (a few small files, read on every report so
    an edited module shows in the next report)."""
    return await trio.to_thread.run_sync(load_assets, static_dir)
