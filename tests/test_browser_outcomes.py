"""TLS from the dashboard against the lab's own self-signed listener: the Fire form and the
Packet tool offer "accept any certificate" for tls:// targets only, say why a handshake
failed, and go through with the option. Real Chromium, a real ``socketlab serve``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import chromium_page
from tests.helpers import ServedLab, api_call, start_served_lab

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data = tmp_path_factory.mktemp("outcomes") / "data"
    served = start_served_lab(
        data,
        "--listen",
        "tcp://127.0.0.1:0?mode=echo",
        "--listen",
        "tls://127.0.0.1:0?mode=echo",
    )
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


def tls_target(served: ServedLab) -> str:
    listeners = api_call(served, "GET", "/api/listeners")["items"]
    port = next(item["port"] for item in listeners if item["protocol"] == "tls")
    return f"tls://127.0.0.1:{port}"


def open_section(page: Any, served: ServedLab, name: str) -> None:
    page.goto(served.login_url)
    page.wait_for_selector("#status:text('live')", timeout=10000)
    page.click(f"#tabs a[data-tab={name}]")
    page.wait_for_selector(f"section#{name}:not([hidden])", timeout=5000)


def fire_and_wait(page: Any, served: ServedLab) -> dict[str, Any]:
    """Fire the form and return the API's document of the new run, once it has ended."""
    before = page.evaluate("document.querySelector('#result-id')?.textContent || ''")
    page.click("#fire-button")
    page.wait_for_function(
        "(before) => !document.querySelector('#run-result').hidden"
        " && document.querySelector('#result-id').textContent !== before",
        arg=before,
        timeout=30000,
    )
    run_id = page.inner_text("#result-id")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run: dict[str, Any] = api_call(served, "GET", f"/api/runs/{run_id}")
        if run["status"] != "running":
            return run
        time.sleep(0.05)  # another process's state: there is no event to wait on
    raise AssertionError(f"run {run_id} did not end")


def test_fire_at_the_labs_tls_listener_says_why_and_goes_with_accept_any_certificate(
    served: ServedLab,
) -> None:
    target = tls_target(served)
    with chromium_page() as page:
        open_section(page, served, "fire")
        insecure = "#fire-form input[name=insecure]"
        assert not page.is_visible(insecure)  # the default target is plain TCP
        page.fill("#fire-target", target)
        assert page.is_visible(insecure)
        page.fill("input[name=duration]", "1")

        refused = fire_and_wait(page, served)
        assert refused["status"] == "failed"
        assert "insecure" not in refused["spec"] or refused["spec"]["insecure"] is False
        status = page.inner_text("#result-table tr[data-key=status] td")
        assert status == f"failed ({refused['error']})"
        assert "self-signed certificate" in status

        page.check(insecure)
        accepted = fire_and_wait(page, served)
        assert accepted["spec"]["insecure"] is True
        assert accepted["status"] == "finished"
        assert accepted["summary"]["received"] > 0
        page.wait_for_function(
            "document.querySelector('#result-table tr[data-key=status] td')"
            ".textContent === 'finished'",
            timeout=10000,
        )

        # Back to a plain target: the option is hidden and not sent (it would be refused).
        page.fill("#fire-target", f"tcp://127.0.0.1:{served.listeners['tcp']}")
        assert not page.is_visible(insecure)
        plain = fire_and_wait(page, served)
        assert plain["status"] == "finished"
        assert plain["spec"].get("insecure", False) is False


def test_the_packet_tool_at_the_labs_tls_listener_says_why_and_goes_with_the_option(
    served: ServedLab,
) -> None:
    target = tls_target(served)
    with chromium_page() as page:
        open_section(page, served, "packet")
        insecure = "#packet-form input[name=insecure]"
        page.fill("#packet-target", f"tcp://127.0.0.1:{served.listeners['tcp']}")
        assert not page.is_visible(insecure)
        page.fill("#packet-target", target)
        assert page.is_visible(insecure)
        page.fill("#packet-payload", "hello")
        page.click("#packet-send")
        page.wait_for_function(
            "document.querySelector('#packet').innerText.includes('self-signed certificate')",
            timeout=15000,
        )
        page.check(insecure)
        page.click("#packet-send")
        page.wait_for_function(
            "document.querySelector('#reply-hex').dataset.hex === '68656c6c6f'", timeout=15000
        )
