"""Hypothesis against every parser of user input that the wire-format tests do not cover.

The invariant, h11's: whatever arrives, a parser returns a value or raises our own error
(:class:`~app.errors.SocketlabError`, in practice :class:`~app.errors.SpecError` naming the
field); never ``ValueError``, ``KeyError``, ``TypeError``, ``UnicodeError`` or anything else
that would reach a user as a 500 or a traceback.

Covered here: listener URLs and JSON listener bodies (``parse_listener``), run targets
(``Endpoint.parse``), ``HOST:PORT`` (``parse_hostport``), the run-spec validator
(``parse_run_spec``), the live feed's view messages (``parse_view``) and the web server's
Host and Origin checks (``split_host``, ``host_allowed``, ``origin_allowed``). The wire
formats (probe header, payload escapes, StatsD, responder rules) have their own fuzz tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.connview import ConnView, parse_view
from app.endpoint import Endpoint
from app.errors import SocketlabError
from app.lab import Lab
from app.listeners.parse import parse_listener, parse_listener_url
from app.listeners.spec import ListenerSpec
from app.runs.spec import RUN_SPEC_FIELDS, RUN_SPEC_MODELS, parse_run_spec
from app.settings import parse_hostport
from app.web import security
from tests.helpers import lab_settings

_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much]
# Cheap string parsers get 1,000 examples each; the pydantic validators, whose examples are
# nested JSON documents and cost ~10x as much, get 300 (a few seconds each).
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=_QUIET)
FUZZ_DOCS = settings(max_examples=300, deadline=None, suppress_health_check=_QUIET)

# --- Strategies -------------------------------------------------------------------------

SCHEMES = ["tcp", "udp", "tls", "http", "TCP", "", "tcp:", "udp+tls"]
HOSTS = st.one_of(
    st.sampled_from(
        [
            "127.0.0.1",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
            "localhost",
            "0x7f000001",
            "2130706433",
            "[",
            "]",
            "[::1",
            "[fe80::1%25eth0]",
            "user:pass@127.0.0.1",
            "127.0.0.1#frag",
            "xn--",
            "",
            "%00",
        ]
    ),
    st.text(max_size=20),
)
PORTS = st.one_of(
    st.integers(-5, 70000).map(str),
    st.sampled_from(["", "0", "65535", "65536", "1e3", "0x50", "٨٠", "²", " 80", "80 ", "+80"]),
    st.text(max_size=6),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
    ),
    max_leaves=12,
)
# Options that would read files are left to the table tests: a fuzzer must not open paths.
_FILE_OPTIONS = {"rules_file", "cert", "key"}
LISTENER_OPTIONS = [*sorted(set(ListenerSpec.model_fields) - _FILE_OPTIONS), "url", "colour"]
RUN_FIELDS = [*sorted(RUN_SPEC_FIELDS), "colour"]


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(SCHEMES))
    host = draw(HOSTS)
    port = draw(st.one_of(st.none(), PORTS))
    text = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    text += draw(st.sampled_from(["", "/", "/path", "?", "#x", " "]))
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from([*LISTENER_OPTIONS, "rules", ""]), st.text(max_size=8)),
            max_size=4,
        )
    )
    if pairs:
        text += "?" + "&".join(f"{key}={value}" for key, value in pairs)
    return text


def option_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        JSON,
        st.sampled_from(["echo", "sink", "respond", "statsd", "line", "read", "hex", "10ms"]),
        st.lists(
            st.dictionaries(
                st.sampled_from(["match", "pattern", "reply", "encoding", "x"]),
                st.one_of(
                    st.none(),
                    st.sampled_from(["exact", "regex", "prefix", "(", "{counter}", "zz"]),
                    st.text(max_size=10),
                ),
            ),
            max_size=3,
        ),
    )


def bodies(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        JSON,
        st.dictionaries(st.sampled_from(keys), values, max_size=len(keys)),
    )


def run_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        JSON,
        urls(),
        st.sampled_from(["pingpong", "rate", "bulk", "burst", "packet", "tcp://127.0.0.1:9"]),
        st.dictionaries(
            st.sampled_from(["kind", "text", "x"]),
            st.one_of(st.sampled_from(["random", "zeros", "text", "hex", "\\x", "zz", ""]), JSON),
            max_size=3,
        ),
    )


def only_our_errors(parse: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``parse``; a raised error must be ours, naming a field or none."""
    try:
        return parse(*args, **kwargs)
    except SocketlabError as exc:
        assert isinstance(exc.message, str)
        assert exc.message
        assert exc.field is None or isinstance(exc.field, str)
        return None


# --- Listener URLs and bodies -----------------------------------------------------------


@FUZZ
@given(urls())
@example("tcp://127.0.0.1:9000?mode=echo&max_connections=100&idle_timeout=30")
@example("udp://[::1]:9000?mode=echo&loss=10&delay=50ms")
@example("tcp://[::1:9000")
@example("tcp://127.0.0.1:٨٠")
@example("tcp://127.0.0.1:9000?rules=x")
def test_a_listener_url_parses_or_raises_our_error(url: str) -> None:
    spec = only_our_errors(parse_listener_url, url)
    if spec is not None:
        assert isinstance(spec, ListenerSpec)
        assert 0 <= spec.port <= 65535
        assert spec.protocol in ("tcp", "udp", "tls")
        # What parsed once parses again from its own URL, to the same listener.
        again = parse_listener_url(spec.url)
        assert (again.protocol, again.host, again.port, again.mode) == (
            spec.protocol,
            spec.host,
            spec.port,
            spec.mode,
        )


@FUZZ
@given(st.text(max_size=60))
def test_any_text_as_a_listener_url_parses_or_raises_our_error(text: str) -> None:
    only_our_errors(parse_listener_url, text)


@FUZZ_DOCS
@given(bodies(LISTENER_OPTIONS, option_values()), st.one_of(st.none(), urls()))
@example({"url": "tcp://127.0.0.1:0", "mode": "respond", "rules": [{"match": "regex"}]}, None)
@example({"url": "udp://127.0.0.1:0", "percentiles": "x"}, None)
def test_a_listener_body_parses_or_raises_our_error(body: Any, url: str | None) -> None:
    if isinstance(body, dict) and url is not None:
        body = {**body, "url": url}
    only_our_errors(parse_listener, body)


# --- Targets and HOST:PORT --------------------------------------------------------------


@FUZZ
@given(st.one_of(urls(), st.text(max_size=40)))
@example("tcp://[::1]:65536")
@example("udp://127.0.0.1:0")
@example("tcp://:80")
@example("tls://host:80?x=1")
def test_a_target_parses_or_raises_our_error(url: str) -> None:
    endpoint = only_our_errors(Endpoint.parse, url)
    if endpoint is not None:
        assert isinstance(endpoint, Endpoint)
        assert endpoint.protocol in ("tcp", "udp", "tls")
        assert 1 <= endpoint.port <= 65535
        assert endpoint.host
        assert Endpoint.parse(endpoint.url) == endpoint


@FUZZ
@given(st.one_of(st.builds(lambda h, p: f"{h}:{p}", HOSTS, PORTS), st.text(max_size=30)))
@example("[::1]:8000")
@example("127.0.0.1:١٢")
@example(":80")
@example("host:")
def test_a_hostport_parses_or_raises_our_error(text: str) -> None:
    parsed = only_our_errors(parse_hostport, text)
    if parsed is not None:
        host, port = parsed
        assert isinstance(host, str)
        assert isinstance(port, int)
        assert 0 <= port <= 65535


# --- The run-spec validator -------------------------------------------------------------


@FUZZ_DOCS
@given(bodies(RUN_FIELDS, run_values()))
@example({"target": "udp://127.0.0.1:9", "size": 70000})
@example({"target": "tcp://127.0.0.1:9", "payload": {"kind": "hex", "text": "zz"}})
@example({"target": "tcp://127.0.0.1:9", "payload": {"kind": "text", "text": "\\x"}})
@example({"target": "tcp://127.0.0.1:9", "pattern": "packet", "payload": "x"})
@example({"target": ["tcp://127.0.0.1:9"]})
@example({"target": "tcp://127.0.0.1:9", "size": 1e400})
def test_a_run_spec_validates_or_raises_our_error(body: Any) -> None:
    spec = only_our_errors(parse_run_spec, body)
    if spec is not None:
        assert isinstance(spec, RUN_SPEC_MODELS)
        # A valid spec is valid again from its own JSON (what the store keeps).
        assert parse_run_spec(json.loads(spec.model_dump_json(exclude_unset=True))) == spec


@FUZZ_DOCS
@given(
    st.fixed_dictionaries(
        {"target": st.sampled_from(["tcp://127.0.0.1:9", "udp://127.0.0.1:9", "tls://x:1"])},
        optional={name: run_values() for name in RUN_FIELDS if name != "target"},
    )
)
def test_a_run_spec_with_a_good_target_validates_or_raises_our_error(body: Any) -> None:
    only_our_errors(parse_run_spec, body)


# --- The live feed's view messages ------------------------------------------------------


@FUZZ_DOCS
@given(
    st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40),
        JSON.map(json.dumps),
        st.dictionaries(
            st.sampled_from([*ConnView.model_fields, "type", "x"]), JSON, max_size=5
        ).map(lambda d: json.dumps({"type": "view", **d})),
    )
)
@example(b"\xff\xfe")
@example('{"type": "view", "limit": 1e999}')
@example('{"type": "view", "sort": ["id"]}')
def test_a_view_message_parses_or_raises_our_error(data: str | bytes) -> None:
    view = only_our_errors(parse_view, data)
    assert view is None or isinstance(view, ConnView)


# --- Host and Origin checks -------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped_lab() -> Lab:
    lab = Lab(lab_settings(Path("unused"), allowed_origins=("https://lab.example",)))
    lab.web_port = 8000
    return lab


HEADER_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda h, p: f"{h}:{p}", HOSTS, PORTS),
    st.builds(lambda s, h, p: f"{s}://{h}:{p}", st.sampled_from(SCHEMES), HOSTS, PORTS),
)


@FUZZ
@given(HEADER_TEXT)
@example("127.0.0.1:²")
@example("127.0.0.1:٨٠٠٠")
@example("[::1")
@example("[::1]x")
def test_split_host_never_raises(value: str) -> None:
    name, port = security.split_host(value)
    assert isinstance(name, str)
    assert port is None or (isinstance(port, int) and port >= 0)


@FUZZ_DOCS
@given(host=st.one_of(st.none(), HEADER_TEXT), origin=st.one_of(st.none(), HEADER_TEXT))
@example(host="127.0.0.1:٨٠٠٠", origin=None)
@example(host="127.0.0.1:8000", origin="http://127.0.0.1:٨٠٠٠")
def test_host_and_origin_checks_answer_a_bool(
    stopped_lab: Lab, host: str | None, origin: str | None
) -> None:
    allowed = security.host_allowed(stopped_lab.settings, host)
    assert allowed in (True, False)
    if allowed:
        # Only loopback names pass, written in ASCII.
        assert host is not None
        assert host.isascii()
        assert security.split_host(host)[0] in {"127.0.0.1", "localhost", "::1"}
    passes = security.origin_allowed(stopped_lab.settings, origin, host)
    assert passes in (True, False)
    if allowed and passes and origin is not None:
        assert origin.strip().isascii()
