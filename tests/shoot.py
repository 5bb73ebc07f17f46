"""Screenshots of every section of the dashboard, for the README: ``python -m tests.shoot``.

Starts a real ``socketlab serve`` on free ports, gives it something to show (connections
held open, finished runs, a failed run with its failures table, two runs going, StatsD,
InfluxDB and syslog telemetry, a packet and its reply), and saves what Chromium shows of
each section in three looks: 1280 px wide (``desktop-*.png``), 390 px wide as on a phone
(``phone-*.png``) and 1280 px in the dark theme (``dark-*.png``), plus a run's HTML report
in the light and dark themes. The overview at 1280 px is ``dashboard.png``, the README's
first picture.

    python -m tests.shoot                    # into static/docs/
    python -m tests.shoot --out /tmp/shots   # elsewhere
    python -m tests.shoot --only fire runs   # some sections only

Each picture is the viewport (1280x800 or 390x844) from the top of its section (the Runs
section from a run's details), so the same section always makes the same frame; re-run it
whenever the page changes.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import ServedLab, api_call, start_served_lab
from tests.pages import DESKTOP, PHONE, Scheme, open_section, sign_in, themed_page

DOCS = Path(__file__).resolve().parent.parent / "static" / "docs"
SECTIONS = (
    "overview",
    "connections",
    "fire",
    "runs",
    "telemetry",
    "packet",
    "scenarios",
    "listeners",
    "peers",
)
# The scenario the Scenarios section shows, dry-run against the echo listener.
SCENARIO_TOML = """name = "hello"
[[steps]]
send = 'HELLO {counter}\\n'
[[steps]]
expect = "HELLO {counter}"
[[steps]]
delay = [0.01, 0.05]
"""
# (name, viewport, colour scheme) of each look.
LOOKS: tuple[tuple[str, tuple[int, int], Scheme], ...] = (
    ("desktop", DESKTOP, "light"),
    ("phone", PHONE, "light"),
    ("dark", DESKTOP, "dark"),
)
TIMEOUT_MS = 30_000
# Sections whose picture starts lower than their top: the runs' details (failures included)
# say more than the top of the list.
START_AT = {"runs": "#run-detail"}


class Scene:
    """A served lab with something in every section; what each section's picture needs."""

    def __init__(self, served: ServedLab, stack: ExitStack) -> None:
        self.served = served
        self.tcp = f"tcp://127.0.0.1:{served.listeners['tcp']}"
        self.udp = f"udp://127.0.0.1:{served.listeners['udp']}"
        self.statsd_port = self._port_of("statsd")
        # A few connections held open, with some traffic, for the Connections section.
        for size in (1200, 64_000, 5):
            conn = stack.enter_context(
                socket.create_connection(("127.0.0.1", served.listeners["tcp"]))
            )
            conn.sendall(b"x" * size)
            got = 0
            while got < size:
                got += len(conn.recv(65536))
        refusing = stack.enter_context(socket.socket())
        refusing.bind(("127.0.0.1", 0))  # bound, not listening: every connect is refused
        self.refusing = f"tcp://127.0.0.1:{refusing.getsockname()[1]}"
        self.finished = self._finish(
            {"target": self.tcp, "pattern": "pingpong", "connections": 4, "duration": 3}
        )
        self._finish({"target": self.udp, "pattern": "rate", "rate": 400, "duration": 3})
        self.failed = self._finish(
            {"target": self.refusing, "pattern": "pingpong", "connections": 3, "duration": 1}
        )
        self.going: list[str] = []

    def _port_of(self, mode: str) -> int:
        items = api_call(self.served, "GET", "/api/listeners")["items"]
        return int(next(item["port"] for item in items if item["mode"] == mode))

    def _finish(self, spec: dict[str, Any]) -> str:
        run_id = str(api_call(self.served, "POST", "/api/runs", spec)["id"])
        deadline = time.monotonic() + 60
        while api_call(self.served, "GET", f"/api/runs/{run_id}")["status"] == "running":
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} did not end")
            time.sleep(0.1)  # another process's state: there is nothing to wait on
        return run_id

    def start_going(self) -> None:
        """Two open-loop runs that last while the pictures are taken (the overview's
        "Runs going" and its charts)."""
        for target, rate in ((self.tcp, 300), (self.udp, 150)):
            spec = {"target": target, "pattern": "rate", "rate": rate, "duration": 600}
            self.going.append(str(api_call(self.served, "POST", "/api/runs", spec)["id"]))

    def stop_going(self) -> None:
        for run_id in self.going:
            api_call(self.served, "POST", f"/api/runs/{run_id}/stop", {})
        self.going.clear()

    def send_telemetry(self) -> None:
        lines = [
            b"shop.checkout:1|c",
            b"shop.cart.items:3|c|@0.5",
            b"shop.queue.depth:42|g",
            b"shop.render_ms:12|ms",
            b"shop.render_ms:27|ms",
            b"shop.visitors:alice|s",
            b"shop.visitors:bob|s",
        ]
        influx = [
            b"cpu,host=web-1,region=eu usage_user=12.5,usage_system=3.1 ",
            b"cpu,host=web-2,region=eu usage_user=48.0,usage_system=9.7 ",
            b"disk,host=web-1,path=/var free=81234567i,used_pct=61.2 ",
        ]
        logs = [
            b"<134>1 - web-1 nginx 4121 - - GET /checkout 200 12 ms",
            b"<131>1 - db-1 postgres 311 - - could not extend file: no space left on device",
            b'<12>1 - web-2 app 88 auth [login@32473 user="alice"] sign-in from a new address',
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for line in lines:
                sock.sendto(line, ("127.0.0.1", self.statsd_port))
            for line in influx:
                sock.sendto(line, ("127.0.0.1", self._port_of("influx")))
            for line in logs:
                sock.sendto(line, ("127.0.0.1", self._port_of("syslog")))


def prepare_overview(page: Any, scene: Scene) -> None:
    page.wait_for_selector("#ov-runs tbody tr", timeout=TIMEOUT_MS)
    page.wait_for_function(
        "document.querySelector('#chart-throughput').dataset.points >= 4", timeout=TIMEOUT_MS
    )


def prepare_connections(page: Any, scene: Scene) -> None:
    page.wait_for_selector("#conn-table tbody tr", timeout=TIMEOUT_MS)


def prepare_fire(page: Any, scene: Scene) -> None:
    page.fill("#fire-target", scene.tcp)
    page.select_option("#fire-pattern", "pingpong")
    page.fill("input[name=connections]", "2")
    page.fill("input[name=duration]", "2")
    page.click("#fire-button")
    page.wait_for_selector("#run-result:not([hidden])", timeout=TIMEOUT_MS)


def prepare_runs(page: Any, scene: Scene) -> None:
    page.evaluate(f"location.hash = 'runs/{scene.failed}'")
    page.wait_for_selector("#detail-failures-box:not([hidden])", timeout=TIMEOUT_MS)


def prepare_telemetry(page: Any, scene: Scene) -> None:
    scene.send_telemetry()
    for table, text in (
        ("#tm-series", "usage_user"),
        ("#tm-series", "shop.checkout"),
        ("#tm-logs", "postgres"),
        ("#tm-counters", "shop.checkout"),
    ):
        page.locator(f"{table} tbody tr", has_text=text).first.wait_for(timeout=TIMEOUT_MS)


def prepare_packet(page: Any, scene: Scene) -> None:
    page.fill("#packet-target", scene.udp)
    page.fill("#packet-payload", "PING 1\\r\\n")
    page.click("#packet-send")
    page.wait_for_selector("#packet-result:not([hidden])", timeout=TIMEOUT_MS)


def prepare_scenarios(page: Any, scene: Scene) -> None:
    page.fill("#scn-text", SCENARIO_TOML)
    page.wait_for_function(
        "document.querySelectorAll('#scn-steps li, #scn-steps tr, #scn-steps .step').length >= 3",
        timeout=TIMEOUT_MS,
    )
    page.fill("#scn-target", scene.tcp)
    page.click("#scn-dry")
    page.wait_for_selector("#scn-dry-box:not([hidden])", timeout=TIMEOUT_MS)


def prepare_listeners(page: Any, scene: Scene) -> None:
    page.wait_for_selector("#listeners-table tbody tr", timeout=TIMEOUT_MS)


def prepare_peers(page: Any, scene: Scene) -> None:
    pass


PREPARE: dict[str, Callable[[Any, Scene], None]] = {
    "overview": prepare_overview,
    "connections": prepare_connections,
    "fire": prepare_fire,
    "runs": prepare_runs,
    "telemetry": prepare_telemetry,
    "packet": prepare_packet,
    "scenarios": prepare_scenarios,
    "listeners": prepare_listeners,
    "peers": prepare_peers,
}


def file_name(look: str, section: str) -> str:
    return (
        "dashboard.png" if (look, section) == ("desktop", "overview") else f"{look}-{section}.png"
    )


def settle(page: Any) -> None:
    """Let the charts take their width and the fonts their place before the picture."""
    page.evaluate("document.fonts.ready")
    page.wait_for_function(
        "new Promise((done) => requestAnimationFrame(\n"
        "  () => requestAnimationFrame(() => done(true))))"
    )


def shoot_section(page: Any, scene: Scene, section: str, path: Path) -> None:
    open_section(page, scene.served, section)
    PREPARE[section](page, scene)
    start = START_AT.get(section)
    if start is None:
        page.evaluate("window.scrollTo(0, 0)")
    else:
        # scrollIntoView keeps the page's scroll-padding: the start stays below the header.
        page.evaluate(f"document.querySelector({start!r}).scrollIntoView()")
    settle(page)
    page.screenshot(path=str(path))


def shoot_report(scene: Scene, out: Path, look: str, scheme: Scheme) -> Path:
    path = out / f"{look}-report.png"
    with themed_page(*DESKTOP, scheme=scheme) as page:
        sign_in(page, scene.served)
        page.goto(f"http://127.0.0.1:{scene.served.web_port}/api/runs/{scene.finished}/report.html")
        page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
        settle(page)
        page.screenshot(path=str(path))
    return path


@contextmanager
def scene_lab() -> Iterator[Scene]:
    with tempfile.TemporaryDirectory(prefix="socketlab-shoot-") as tmp, ExitStack() as stack:
        served = start_served_lab(
            Path(tmp) / "data",
            "--listen",
            "tcp://127.0.0.1:0?mode=echo",
            "--listen",
            "udp://127.0.0.1:0?mode=echo",
            "--listen",
            "udp://127.0.0.1:0?mode=statsd&flush_interval=1",
            "--listen",
            "udp://127.0.0.1:0?mode=influx",
            "--listen",
            "udp://127.0.0.1:0?mode=syslog",
        )
        try:
            yield Scene(served, stack)
        finally:
            served.stop()
            served.close_stdout()


def shoot(out: Path, sections: tuple[str, ...] = SECTIONS) -> list[Path]:
    """Every section in every look into ``out``; answers the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with scene_lab() as scene:
        scene.start_going()
        try:
            for look, (width, height), scheme in LOOKS:
                with themed_page(width, height, scheme=scheme) as page:
                    sign_in(page, scene.served)
                    for section in sections:
                        path = out / file_name(look, section)
                        shoot_section(page, scene, section, path)
                        written.append(path)
                        print(f"wrote {path}", file=sys.stderr)
        finally:
            scene.stop_going()
        if "runs" in sections:
            for look, scheme in (("desktop", "light"), ("dark", "dark")):
                written.append(shoot_report(scene, out, look, scheme))
                print(f"wrote {written[-1]}", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.shoot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="where to write (static/docs/)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="these sections only")
    args = parser.parse_args(argv)
    shoot(args.out, tuple(args.only or SECTIONS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
