"""Every figure on the Fire page is the API's figure, for every pattern and protocol.

Each case fires a short run from the Fire form (in Chromium, against a real ``socketlab
serve`` and its own echo and sink listeners), watches both live charts gain points while the
run goes, and then reads every figure on the result: each is an element naming its summary
field (``data-field``), and its text must be the API's value of that field (``GET
/api/runs/{id}``, the outside truth) put through the page's own formatter for the unit this
test expects (``FIGURES`` in static/js/util.js). The set of fields shown is checked too: what
the pattern measures is there, what it does not is absent, and no number on the result
stands outside a checked figure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.helpers import ServedLab, api_call, start_served_lab

pytestmark = pytest.mark.browser

SIZE = 256  # the framed sinks' message_size, and every case's message size
RTT_KEYS = ("min", "p50", "p90", "p99", "p999", "max", "mean")

# What each pattern's form gets (besides target and pattern): short runs of a few seconds.
FORM: dict[str, dict[str, str]] = {
    "pingpong": {"connections": "2", "duration": "3", "size": str(SIZE)},
    "rate": {"rate": "100", "duration": "3", "size": str(SIZE)},
    "bulk": {"bitrate_mbit": "8", "duration": "3", "size": str(SIZE)},
    "burst": {"burst": "5", "interval": "0.25", "duration": "3", "size": str(SIZE)},
    "packet": {"payload_kind": "text", "payload_text": "PING\\r\\n"},
}


@dataclass(frozen=True)
class Case:
    pattern: str
    protocol: str
    target: str = "echo"  # "echo", "sink" (framed when TCP/TLS) or "bytes-sink"

    @property
    def id(self) -> str:
        return f"{self.pattern}-{self.protocol}-{self.target}"


CASES = [
    *(Case(p, proto) for p in FORM for proto in ("tcp", "udp", "tls")),
    Case("rate", "udp", "sink"),
    Case("rate", "tls", "sink"),
    Case("burst", "tcp", "sink"),
    Case("bulk", "udp", "sink"),
    Case("bulk", "tcp", "bytes-sink"),
]

# The page's own formatter module, fed the API's numbers: [[unit, value], ...] -> texts.
FORMAT = """async (pairs) => {
  const util = await import("/static/js/util.js");
  return pairs.map(([unit, value]) => util.FIGURES[unit](value));
}"""

# Every figure on the result, and each row's text with its figures taken out.
READ_RESULT = """() => {
  const figures = [...document.querySelectorAll("#run-result [data-field]")]
    .filter((node) => !node.closest("[hidden]"))
    .map((node) => [node.dataset.field, node.textContent]);
  const rest = [...document.querySelectorAll("#result-table tr, #result-pct tr")].map((tr) => {
    const td = tr.querySelector("td").cloneNode(true);
    for (const fig of td.querySelectorAll("[data-field]")) fig.remove();
    return [tr.dataset.key, td.textContent];
  });
  return { figures, rest };
}"""

# Both charts' point counts while the run goes; null until `want` says enough.
CHART_POINTS = """([rtt, tput]) => {
  const n = (sel) => Number(document.querySelector(sel).dataset.points || 0);
  const done = !document.querySelector("#run-result").hidden;
  const got = { rtt: n("#chart-run-rtt"), tput: n("#chart-run-tput"), done };
  return done || (got.rtt >= rtt && got.tput >= tput) ? got : null;
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data = tmp_path_factory.mktemp("figures") / "data"
    listen = []
    for url in (
        "tcp://127.0.0.1:0?mode=echo",
        "udp://127.0.0.1:0?mode=echo",
        "tls://127.0.0.1:0?mode=echo",
        f"tcp://127.0.0.1:0?mode=sink&message_size={SIZE}",
        f"tls://127.0.0.1:0?mode=sink&message_size={SIZE}",
        "udp://127.0.0.1:0?mode=sink",
        "tcp://127.0.0.1:0?mode=sink",
    ):
        listen += ["--listen", url]
    lab = start_served_lab(data, *listen)
    try:
        yield lab
    finally:
        assert lab.stop() == 0
        lab.close_stdout()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, served: ServedLab) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(served.login_url)
        page.wait_for_selector("#status:text('live')", timeout=15000)
        page.click("#tabs a[data-tab=fire]")
        page.wait_for_selector("section#fire:not([hidden])", timeout=5000)
        yield page
    finally:
        context.close()


def target_of(served: ServedLab, case: Case) -> str:
    mode = "sink" if case.target != "echo" else "echo"
    framed = case.target == "sink" and case.protocol != "udp"
    for item in api_call(served, "GET", "/api/listeners")["items"]:
        if (item["protocol"], item["mode"]) != (case.protocol, mode):
            continue
        if mode == "echo" or ("message_size" in item["options"]) == framed:
            return f"{case.protocol}://127.0.0.1:{item['port']}"
    raise AssertionError(f"no listener for {case}")


def fire_from_form(page: Any, target: str, case: Case) -> None:
    page.fill("#fire-target", target)
    page.select_option("#fire-pattern", case.pattern)
    fields = dict(FORM[case.pattern])
    if case.pattern == "bulk" and case.protocol != "udp":
        del fields["bitrate_mbit"]  # a byte stream goes as fast as it can
    for name, value in fields.items():
        field = f"#fire-form [name={name}]"
        if name == "payload_kind":
            page.select_option(field, value)
        else:
            page.fill(field, value)
    if case.protocol == "tls":
        # The lab's TLS listeners have self-signed certificates: the run must accept any.
        if page.locator("#fire-form [name=insecure]").count():
            page.check("#fire-form [name=insecure]")
        else:
            # No such option on the form yet: the form's own spec, with the API's field, is
            # posted the way the form posts it, and the run opened in the Fire section.
            page.evaluate(
                """async () => {
                  const { specFromForm } = await import("/static/js/fire.js");
                  const { api } = await import("/static/js/util.js");
                  const run = await api("POST", "/api/runs", { ...specFromForm(), insecure: true });
                  location.hash = `#fire/${run.id}`;
                }"""
            )
            return
    page.click("#fire-button")


def watch_live_charts(page: Any, case: Case) -> None:
    """Both charts gain points while the run goes (not only when it has ended)."""
    rtt_measured = case.target == "echo" and not (case.pattern == "bulk" and case.protocol != "udp")
    first = page.wait_for_function(CHART_POINTS, arg=[int(rtt_measured), 1], timeout=20000)
    first = first.json_value()
    assert not first["done"], f"the run ended before its charts had a point: {first}"
    grown = page.wait_for_function(
        CHART_POINTS, arg=[first["rtt"] + int(rtt_measured), first["tput"] + 1], timeout=20000
    ).json_value()
    assert not grown["done"], f"the charts did not grow while the run went: {first} {grown}"
    if not rtt_measured:
        assert grown["rtt"] == 0
        assert page.is_visible("#fire .chart-note")  # says why there is no RTT chart


def value_at(summary: dict[str, Any], path: str) -> Any:
    value: Any = summary
    for part in path.split("."):
        value = value[part]
    return value


def expected_units(case: Case, summary: dict[str, Any]) -> dict[str, str]:
    """The figures the result must show for this case, and the unit of each."""
    units = {
        "elapsed": "seconds",
        "sent": "count",
        "bytes_sent": "bytes",
        "errors": "count",
        "sent_per_s": "msgrate",
        "bits_per_s": "bitrate",
    }
    kinds = summary["errors_by_kind"]
    units.update({f"errors_by_kind.{kind}": "count" for kind, n in kinds.items() if n})
    stream = case.protocol != "udp"
    remote = summary["remote"] or {}
    if case.target == "sink":
        for key in ("received", "lost", "duplicates", "reordered"):
            units[f"remote.{key}"] = "count"
        units["remote.loss_pct"] = "pct"
        if remote["jitter_ms"] is not None:
            units["remote.jitter_ms"] = "ms"
    if case.target != "echo" and remote.get("rx_bytes") is not None:
        units["remote.rx_bytes"] = "bytes"  # a sink that counts the bytes of each run
        if remote.get("rx_bits_per_s") is not None:
            units["remote.rx_bits_per_s"] = "bitrate"
    elif case.target == "echo" and case.pattern == "bulk" and stream:
        units.update(bytes_received="bytes", bits_per_s_received="bitrate")
    elif case.target == "echo":
        units.update(received="count", bytes_received="bytes", lost="count", loss_pct="pct")
        units.update(msgs_per_s="msgrate", bits_per_s_received="bitrate")
        if not stream:
            units.update(duplicates="count", reordered="count")
        units.update({f"rtt_ms.{key}": "ms" for key in RTT_KEYS})
    if summary["jitter_ms"] is not None:
        units["jitter_ms"] = "ms"
    if summary["send_lateness_ms"] is not None:
        units.update({"send_lateness_ms.mean": "ms", "send_lateness_ms.max": "ms"})
    if case.pattern == "packet":
        units.update({"reply.bytes": "bytes", "reply.rtt_ms": "ms"})
    return units


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_figure_on_the_result_is_the_api_summary(
    page: Any, served: ServedLab, case: Case
) -> None:
    fire_from_form(page, target_of(served, case), case)
    if case.pattern != "packet":  # one message: nothing to chart over time
        watch_live_charts(page, case)
    page.wait_for_selector("#run-result:not([hidden])", timeout=30000)
    run_id = page.inner_text("#result-id")
    doc = api_call(served, "GET", f"/api/runs/{run_id}")
    assert doc["status"] == "finished", doc["error"]
    assert doc["spec"]["pattern"] == case.pattern
    summary = doc["summary"]

    shown = page.evaluate(READ_RESULT)
    figures = dict(shown["figures"])
    assert len(figures) == len(shown["figures"]), "a field shown twice"
    units = expected_units(case, summary)
    assert set(figures) == set(units)
    fields = sorted(units)
    texts = page.evaluate(FORMAT, [[units[f], value_at(summary, f)] for f in fields])
    assert {f: figures[f] for f in fields} == dict(zip(fields, texts, strict=True))

    # No number on the result outside a checked figure (the status is the API's words).
    rest = dict(shown["rest"])
    assert rest.pop("status") == doc["status"] + (f" ({doc['error']})" if doc["error"] else "")
    rest.pop("started")
    assert not [t for t in rest.values() if any(ch.isdigit() for ch in t)], rest
    if case.target == "bytes-sink":
        assert "message_size" in rest["remote"]  # says why the sink has no counts
    if "rtt_ms.p50" not in units:
        assert "round trips" in page.inner_text("#result-pct")  # says why there is no RTT

    if case.pattern == "packet":
        reply = summary["reply"]
        assert page.inner_text("#result-reply .reply-hex") == reply["hex"]
        assert page.inner_text("#result-reply .reply-text") == f'"{reply["text"]}"'
        assert reply["text"] == "PING\\r\\n"  # escaped once, by the lab
    else:
        # After the run the charts hold the API's series, one point a second.
        tput = int(page.get_attribute("#chart-run-tput", "data-points") or 0)
        assert tput == len(doc["series"]) >= 2


# What a person reads for each unit: three significant digits, no trailing zeros, whole
# numbers with separators from 1,000 up, and small rates that do not all round to 0 or 1.
FORMATTED = [
    ("bytes", 5, "5 B"),
    ("bytes", 999.7, "1 kB"),
    ("bytes", 8000, "8 kB"),
    ("bytes", 2_100_000_000, "2.1 GB"),
    ("bytes", 21_609_280, "21.6 MB"),
    ("byterate", 8000, "8 kB/s"),
    ("byterate", 8123, "8.12 kB/s"),
    ("bitrate", 86_436_910.8, "86.4 Mbit/s"),
    ("bitrate", 0.5, "0.5 bit/s"),
    ("msgrate", 0.2, "0.2 msg/s"),
    ("msgrate", 0.4, "0.4 msg/s"),
    ("msgrate", 0.6, "0.6 msg/s"),
    ("msgrate", 19.9943, "20 msg/s"),
    ("msgrate", 39_783.8, "39,784 msg/s"),
    ("ms", 0.44992, "0.45 ms"),
    ("ms", 0.021263, "0.0213 ms"),
    ("ms", 14.999551, "15 ms"),
    ("seconds", 2.001478, "2 s"),
    ("seconds", 0.129599, "0.13 s"),
    ("seconds", 90, "1 min 30 s"),
    ("pct", 0, "0 %"),
    ("pct", 100, "100 %"),
    ("pct", 99.96, "99.96 %"),
    ("pct", 33.333, "33.3 %"),
    ("count", 337_645, "337,645"),
    ("count", None, "\u2013"),
]


def test_one_formatter_per_unit_reads_without_trailing_zeros(page: Any) -> None:
    texts = page.evaluate(FORMAT, [[unit, value] for unit, value, _ in FORMATTED])
    assert dict(zip([(u, v) for u, v, _ in FORMATTED], texts, strict=True)) == {
        (u, v): text for u, v, text in FORMATTED
    }


def test_after_a_reload_mid_run_both_charts_go_on_growing(page: Any, served: ServedLab) -> None:
    case = Case("rate", "udp")
    page.fill("#fire-target", target_of(served, case))
    page.select_option("#fire-pattern", "rate")
    page.fill("#fire-form [name=rate]", "50")
    page.fill("#fire-form [name=duration]", "5")
    page.click("#fire-button")
    before = page.wait_for_function(CHART_POINTS, arg=[1, 1], timeout=20000).json_value()
    assert not before["done"]
    page.reload()
    page.wait_for_selector("#status:text('live')", timeout=15000)
    page.click("#tabs a[data-tab=fire]")
    # The stored points come back, then the live ones extend both charts.
    stored = page.wait_for_function(CHART_POINTS, arg=[1, 1], timeout=20000).json_value()
    grown = page.wait_for_function(
        CHART_POINTS, arg=[stored["rtt"] + 1, stored["tput"] + 1], timeout=20000
    ).json_value()
    assert not grown["done"], f"the charts froze after the reload: {stored} {grown}"
    assert grown["rtt"] == grown["tput"]  # one x per second in both
