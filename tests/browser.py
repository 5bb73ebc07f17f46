"""Launching Debian's Chromium through Playwright, the way every browser test does it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"


@contextmanager
def chromium_page(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A fresh browser context and page; skips only when no Chromium is installed at all."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: `make test` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            yield page
            context.close()
        finally:
            browser.close()


def screenshot(page: Any, name: str, *, scroll_to: str | None = None) -> None:
    """Save what the viewport shows (1280x800 by default) as tests/screenshots/NAME.png.

    ``scroll_to`` names an element to bring into view first, for sections taller than
    the screen; without it the page is shown from the top.
    """
    SCREENSHOTS.mkdir(exist_ok=True)
    if scroll_to is not None:
        page.locator(scroll_to).scroll_into_view_if_needed()
    else:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
