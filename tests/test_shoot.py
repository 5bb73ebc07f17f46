"""The screenshots the README shows are the ones ``python -m tests.shoot`` makes."""

from __future__ import annotations

import re
import struct

from tests.shoot import DOCS, LOOKS, SECTIONS, file_name

README = DOCS.parent.parent / "README.md"


def made_by_shoot() -> set[str]:
    names = {file_name(look, section) for look, _, _ in LOOKS for section in SECTIONS}
    return names | {"desktop-report.png", "dark-report.png"}


def test_the_readme_shows_every_screenshot_and_each_is_committed() -> None:
    shown = set(re.findall(r"\(static/docs/([\w.-]+\.png)\)", README.read_text()))
    assert made_by_shoot() <= shown
    for name in shown:
        assert (DOCS / name).is_file(), name


def test_each_screenshot_has_the_size_of_its_look() -> None:
    sizes = {look: size for look, size, _ in LOOKS}
    for look, _, _ in LOOKS:
        for section in SECTIONS:
            data = (DOCS / file_name(look, section)).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            width, height = struct.unpack(">II", data[16:24])
            assert (width, height) == sizes[look], (look, section)
