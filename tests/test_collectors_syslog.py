"""The syslog collector fed by real clients through real sockets: Python's
``logging.handlers.SysLogHandler`` (UDP and TCP) and util-linux ``logger`` (UDP, TCP with
newline framing and with octet counting; RFC 3164 and RFC 5424 with structured data)."""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import socket

import pytest
import trio

from app.telemetry.points import FACILITIES
from tests.collector_fixtures import WAIT, collector, recording, send_tcp
from tests.helpers import wait_for
from tests.listener_fixtures import open_manager

needs_logger = pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger")


def _handler(port: int, socktype: int, *, with_header: bool) -> logging.handlers.SysLogHandler:
    handler = logging.handlers.SysLogHandler(
        address=("127.0.0.1", port),
        facility=logging.handlers.SysLogHandler.LOG_LOCAL3,
        socktype=socktype,  # type: ignore[arg-type]
    )
    if with_header:
        # An RFC 3164 header as a daemon writes it: timestamp, host, tag[pid].
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s labhost myapp[%(process)d]: %(message)s", datefmt="%b %d %H:%M:%S"
            )
        )
    else:
        handler.ident = "myapp: "
    return handler


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
@pytest.mark.parametrize("with_header", [True, False])
async def test_python_syslog_handler_messages_arrive_with_facility_severity_host_app(
    protocol: str, with_header: bool
) -> None:
    async with open_manager() as manager:
        listener = await collector(manager, f"{protocol}://127.0.0.1:0?mode=syslog")
        mode, _, logs = recording(listener)
        assert logs is not None
        socktype = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM

        def emit() -> None:
            handler = _handler(listener.port, socktype, with_header=with_header)
            log = logging.getLogger(f"collector-test-{protocol}-{with_header}")
            log.propagate = False
            log.setLevel(logging.DEBUG)
            log.addHandler(handler)
            try:
                log.warning("disk %s is %d%% full", "/var", 91)
                log.error("a message: with a colon, and [brackets]")
                log.debug("quiet")
            finally:
                log.removeHandler(handler)
                handler.close()

        await trio.to_thread.run_sync(emit)
        await wait_for(lambda: mode.received == 3, WAIT)
        assert mode.bad_lines == 0
        records = logs.records
        assert [FACILITIES[r.facility] for r in records] == ["local3"] * 3
        assert [r.severity for r in records] == [4, 3, 7]
        assert [r.message for r in records] == [
            "disk /var is 91% full",
            "a message: with a colon, and [brackets]",
            "quiet",
        ]
        assert {r.app for r in records} == {"myapp"}
        assert {r.host for r in records} == {"labhost" if with_header else None}
        counts = mode.telemetry()["by_severity"]
        assert (counts["warning"], counts["err"], counts["debug"]) == (1, 1, 1)


async def _logger(*args: str) -> None:
    await trio.run_process(["logger", *args], capture_stdout=True, capture_stderr=True)


@needs_logger
@pytest.mark.parametrize(
    ("protocol", "flags"),
    [
        ("udp", ["-d"]),
        ("tcp", ["-T"]),  # newline framing
        ("tcp", ["-T", "--octet-count"]),
    ],
)
@pytest.mark.parametrize("rfc", ["--rfc5424", "--rfc3164"])
async def test_util_linux_logger_messages_arrive_with_every_header_field(
    protocol: str, flags: list[str], rfc: str
) -> None:
    async with open_manager() as manager:
        listener = await collector(manager, f"{protocol}://127.0.0.1:0?mode=syslog")
        mode, _, logs = recording(listener)
        assert logs is not None
        port = str(listener.port)
        common = ["-n", "127.0.0.1", "-P", port, *flags, rfc, "-t", "labapp", "--id=4242"]
        structured: list[str] = []
        if rfc == "--rfc5424":
            structured = [
                "--msgid",
                "ID47",
                "--sd-id",
                "zoo@32473",
                "--sd-param",
                'tiger="hungry"',
                "--sd-param",
                r'quote="say \"hi\" \] \\ ok"',
            ]
        await _logger(*common, "-p", "local4.err", *structured, "first message")
        await _logger(*common, "-p", "mail.info", "second: message")
        await wait_for(lambda: mode.received == 2, WAIT)
        assert mode.bad_lines == 0
        first, second = logs.records
        assert (FACILITIES[first.facility], first.severity) == ("local4", 3)
        assert (FACILITIES[second.facility], second.severity) == ("mail", 6)
        assert first.app == second.app == "labapp"
        assert first.procid == second.procid == "4242"
        assert first.message == "first message" and second.message == "second: message"
        short = socket.gethostname().split(".")[0]
        assert first.host is not None and first.host.split(".")[0] == short
        assert first.format == rfc.strip("-")
        if rfc == "--rfc5424":
            assert first.msgid == "ID47"
            assert first.structured["zoo@32473"] == {
                "tiger": "hungry",
                "quote": 'say "hi" ] \\ ok',
            }
            assert first.time is not None


async def test_syslog_tcp_framing_error_ends_the_connection_counted_bad() -> None:
    async with open_manager() as manager:
        listener = await collector(manager, "tcp://127.0.0.1:0?mode=syslog")
        mode, _, logs = recording(listener)
        assert logs is not None
        good = b"<13>1 - - - - - - fine"
        await send_tcp(listener.port, b"%d %s8x <13>broken" % (len(good), good))
        await wait_for(lambda: mode.bad_lines == 1, WAIT)
        assert mode.received == 1
        assert listener.errors == 0
