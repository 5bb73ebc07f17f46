"""Listener specs: the URL form, the JSON form, the config file, and errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import SpecError
from app.listeners.parse import parse_listener, parse_listener_url
from app.listeners.spec import ListenerSpec
from app.settings import load_settings


def test_a_plain_url_gets_the_defaults() -> None:
    spec = parse_listener_url("tcp://127.0.0.1:9000")
    assert (spec.protocol, spec.host, spec.port, spec.mode) == ("tcp", "127.0.0.1", 9000, "echo")
    assert spec.max_connections == 10_000
    assert spec.url == "tcp://127.0.0.1:9000?mode=echo"
    assert spec.options() == {}


@pytest.mark.parametrize(
    ("url", "field", "value"),
    [
        ("udp://h:1?delay=50ms", "delay", 0.05),
        ("udp://h:1?delay=0.05", "delay", 0.05),
        ("udp://h:1?jitter=2s", "jitter", 2.0),
        ("tcp://h:1?idle_timeout=1.5", "idle_timeout", 1.5),
        ("udp://h:1?loss=12.5", "loss", 12.5),
        ("udp://h:1?rcvbuf=1048576", "rcvbuf", 1_048_576),
        ("tcp://h:1?mode=sink&message_size=128", "message_size", 128),
        ("udp://h:1?mode=statsd&percentiles=50,99.9", "percentiles", (50.0, 99.9)),
        ("tcp://h:1?mode=respond&default_reply=%3F%5Cn", "default_reply", "?\\n"),
        ("tls://h:1?mode=respond&default_reply=x&framing=read", "framing", "read"),
    ],
)
def test_url_options_are_typed(url: str, field: str, value: object) -> None:
    assert getattr(parse_listener_url(url), field) == value


def test_the_url_form_round_trips() -> None:
    spec = parse_listener(
        "udp://[::1]:9000?mode=echo&delay=50ms&jitter=5ms&loss=1&duplicate=2&seed=4&rcvbuf=65536"
    )
    assert spec.host == "::1"
    assert spec.url.startswith("udp://[::1]:9000?mode=echo&")
    assert parse_listener(spec.url) == spec


def test_the_json_form_round_trips_rules_included() -> None:
    body = {
        "url": "tcp://127.0.0.1:0?mode=respond",
        "rules": [{"match": "exact", "pattern": "a", "reply": "b"}],
        "default_reply": "?",
    }
    spec = parse_listener(body)
    assert parse_listener(spec.to_dict()) == spec


def test_body_options_win_over_the_url_and_the_url_over_defaults() -> None:
    spec = parse_listener(
        {"url": "tcp://h:1?max_connections=5&idle_timeout=9", "max_connections": 7},
        defaults={"idle_timeout": 1, "max_message_size": 100},
    )
    assert (spec.max_connections, spec.idle_timeout, spec.max_message_size) == (7, 9.0, 100)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("sctp://h:1", "url"),
        ("tcp://h", "url"),
        ("tcp://:1", "url"),
        ("tcp://h:1/path", "url"),
        ("tcp://h:1?mode=nope", "mode"),
        ("tcp://h:1?max_connections=0", "max_connections"),
        ("tcp://h:1?max_connections=many", "max_connections"),
        ("tcp://h:1?idle_timeout=0", "idle_timeout"),
        ("tcp://h:1?idle_timeout=10minutes", "idle_timeout"),
        ("tcp://h:1?max_message_size=70000", "max_message_size"),
        ("tcp://h:1?loss=1", "loss"),
        ("udp://h:1?loss=-1", "loss"),
        ("udp://h:1?mode=sink&message_size=64", "message_size"),
        ("tcp://h:1?mode=statsd&delay=1", "delay"),
        ("tcp://h:1?mode=echo&flush_interval=1", "flush_interval"),
        ("tcp://h:1?cert=a.pem", "cert"),
        ("tls://h:1?cert=a.pem", "cert"),
        ("tcp://h:1?rules=x", "rules"),
        ("tcp://h:1?mode=respond", "rules"),
        ("udp://h:1?mode=statsd&percentiles=0", "percentiles"),
        ("tcp://h:1?whatever=1", "whatever"),
        ({"url": "tcp://h:1", "port": 5}, "port"),
        ({"mode": "echo"}, "url"),
        ({"url": "tcp://h:1?mode=respond", "rules": "nope"}, "rules"),
        ({"url": "tcp://h:1?mode=respond", "rules": [{"match": "exact"}]}, "rules.0.pattern"),
        (
            {
                "url": "tcp://h:1?mode=respond",
                "rules": [{"match": "x", "pattern": "a", "reply": ""}],
            },
            "rules.0.match",
        ),
        ({"url": "tcp://h:1?mode=respond", "default_reply": "{1}"}, "default_reply"),
    ],
)
def test_errors_name_the_option_at_fault(data: str | dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_listener(data)
    assert caught.value.field == field


def test_a_rules_file_fills_in_rules_and_default_reply(tmp_path: Path) -> None:
    (tmp_path / "rules.json").write_text(
        json.dumps(
            {
                "rules": [{"match": "prefix", "pattern": "GET", "reply": "OK\\n"}],
                "default_reply": "NO\\n",
            }
        )
    )
    spec = parse_listener("tcp://h:1?mode=respond&rules_file=rules.json", base_dir=tmp_path)
    assert spec.rules == ({"match": "prefix", "pattern": "GET", "reply": "OK\\n"},)
    assert spec.default_reply == "NO\\n"
    assert spec.build_responder().respond(b"GET /", 0.0) == b"OK\n"


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("bad.json", "{nope", "Expecting"),
        ("bad.toml", "rules = [", "rules file"),
        ("extra.json", '{"rules": [], "colour": "red"}', "unknown key 'colour'"),
        ("scalar.json", "3", "list of rules"),
    ],
)
def test_a_broken_rules_file_is_a_spec_error(
    tmp_path: Path, name: str, text: str, words: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as caught:
        parse_listener(f"udp://h:1?mode=respond&rules_file={name}", base_dir=tmp_path)
    assert caught.value.field == "rules_file"
    assert words in caught.value.message


def test_config_file_listeners_may_be_urls_or_tables(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(
        '[[rules]]\nmatch = "exact"\npattern = "PING"\nreply = "PONG"\n'
    )
    config = tmp_path / "socketlab.toml"
    config.write_text(
        "listen = [\n"
        '  "udp://127.0.0.1:8125?mode=statsd&flush_interval=5",\n'
        '  { url = "tcp://127.0.0.1:7000?mode=respond", rules_file = "rules.toml" },\n'
        '  { url = "udp://127.0.0.1:7001", loss = 5, delay = "20ms" },\n'
        "]\n"
    )
    settings = load_settings(config=str(config), environ={})
    statsd, respond, impaired = settings.listeners
    assert (statsd.mode, statsd.flush_interval) == ("statsd", 5.0)
    # A relative rules_file is found next to the config file, whatever the working folder.
    assert respond.rules == ({"match": "exact", "pattern": "PING", "reply": "PONG"},)
    assert (impaired.loss, impaired.delay) == (5.0, 0.02)


def test_config_file_listeners_as_an_array_of_tables(tmp_path: Path) -> None:
    config = tmp_path / "socketlab.toml"
    config.write_text(
        "[[listen]]\n"
        'url = "tcp://127.0.0.1:7000?mode=respond"\n'
        'default_reply = "hello\\\\n"\n'
        "[[listen.rules]]\n"
        'match = "regex"\n'
        'pattern = "^name=(\\\\w+)"\n'
        'reply = "hi {1}"\n'
    )
    (spec,) = load_settings(config=str(config), environ={}).listeners
    assert spec.build_responder().respond(b"name=ada", 0.0) == b"hi ada"
    assert spec.build_responder().respond(b"?", 0.0) == b"hello\n"


def test_a_bad_listener_in_the_config_file_names_the_option(tmp_path: Path) -> None:
    config = tmp_path / "socketlab.toml"
    config.write_text('listen = [{ url = "tcp://127.0.0.1:1", loss = 5 }]\n')
    with pytest.raises(SpecError) as caught:
        load_settings(config=str(config), environ={})
    assert caught.value.field == "loss"


def test_the_spec_is_immutable() -> None:
    spec = parse_listener_url("tcp://h:1")
    with pytest.raises(ValueError):
        spec.port = 2  # type: ignore[misc]
    assert isinstance(spec, ListenerSpec)


option_names = st.sampled_from(
    [
        "mode",
        "max_connections",
        "idle_timeout",
        "max_message_size",
        "delay",
        "jitter",
        "loss",
        "duplicate",
        "seed",
        "message_size",
        "rules",
        "rules_file",
        "default_reply",
        "encoding",
        "framing",
        "flush_interval",
        "max_keys",
        "percentiles",
        "rcvbuf",
        "cert",
        "key",
        "url",
        "other",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.text(max_size=60))
def test_any_url_parses_or_raises_spec_error(url: str) -> None:
    try:
        spec = parse_listener(url)
    except SpecError as exc:
        assert exc.message
    else:
        assert parse_listener(spec.url) == spec


@given(
    st.sampled_from(["tcp", "udp", "tls"]),
    st.dictionaries(option_names, json_values, max_size=4),
)
def test_any_json_body_parses_or_raises_spec_error(
    protocol: str, options: dict[str, object]
) -> None:
    body = {"url": f"{protocol}://127.0.0.1:0", **options}
    try:
        spec = parse_listener(body)
    except SpecError as exc:
        assert exc.field
    else:
        assert parse_listener(spec.to_dict()) == spec
