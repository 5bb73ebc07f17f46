"""Browser pages in a chosen size and colour scheme, for the look tests and the screenshots."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.helpers import ServedLab, api_call

Scheme = Literal["light", "dark"]

# The sizes the dashboard is shown at: a laptop and a phone (an iPhone 12 to 15's CSS width).
DESKTOP = (1280, 800)
PHONE = (390, 844)


@contextmanager
def browser_context(
    width: int = DESKTOP[0], height: int = DESKTOP[1], *, scheme: Scheme = "light"
) -> Iterator[Any]:
    """A fresh Chromium context with that viewport and ``prefers-color-scheme``."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: `make test` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(
                viewport={"width": width, "height": height}, color_scheme=scheme
            )
            yield context
            context.close()
        finally:
            browser.close()


@contextmanager
def themed_page(
    width: int = DESKTOP[0], height: int = DESKTOP[1], *, scheme: Scheme = "light"
) -> Iterator[Any]:
    """A page of :func:`browser_context`."""
    with browser_context(width, height, scheme=scheme) as context:
        yield context.new_page()


def sign_in(page: Any, served: ServedLab) -> None:
    """Open the dashboard through the login URL and wait until its live feed is up."""
    page.goto(served.login_url)
    page.wait_for_selector("#status:text('live')", timeout=10000)


def open_section(page: Any, served: ServedLab, name: str) -> None:
    """Open a section from the nav, as a person would (signing in first if needed)."""
    if not page.url.startswith(f"http://127.0.0.1:{served.web_port}/"):
        sign_in(page, served)
    page.click(f"#tabs a[data-tab={name}]")
    page.wait_for_selector(f"section#{name}:not([hidden])", timeout=5000)


# Counts the strongly coloured pixels of a chart's canvas: series lines and bars, not the
# grey axes and grid, so a drawn chart and an empty one are told apart by what is painted.
COLOURED_PIXELS = """(selector) => {
  const canvas = document.querySelector(selector + " canvas");
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    const r = data[i], g = data[i + 1], b = data[i + 2];
    if (data[i + 3] > 200 && Math.max(r, g, b) - Math.min(r, g, b) > 80) n += 1;
  }
  return n;
}"""


def wait_run(served: ServedLab, run_id: str) -> dict[str, Any]:
    """A run's document once it has ended (polled: it runs in another process)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = api_call(served, "GET", f"/api/runs/{run_id}")
        if run["status"] != "running":
            return run
        time.sleep(0.05)  # polling another process's state: there is no event to wait on
    raise AssertionError(f"run {run_id} did not end")
