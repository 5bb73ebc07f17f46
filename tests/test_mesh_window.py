"""The mesh's parts without sockets: a probe flow's window figures, its schedule, the
[mesh] settings, the caps, and the addresses probes never go to."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from app.errors import SpecError
from app.mesh.config import MeshSettings, mesh_settings, parse_dns_name
from app.mesh.probes import ProbeTargetError, Schedule, decode, encode, resolve
from app.mesh.window import ProbeWindow, percentile
from app.runs.caps import check_mesh_caps
from app.settings import Settings, load_settings


def test_answered_and_lost_probes_give_loss_and_round_trip_percentiles() -> None:
    window = ProbeWindow(window=30, timeout=2)
    for seq in range(100):
        window.sent(seq, seq * 0.1)
        if seq % 10 != 0:  # every tenth probe never comes back
            window.reply(seq, seq * 0.1 + 0.001 * (1 + seq % 3))
    window.expire(100 * 0.1 + 3)
    figures = window.figures(tcp=False)
    assert figures["sent"] == 100 and figures["received"] == 90 and figures["lost"] == 10
    assert figures["loss_pct"] == 10.0
    assert figures["rtt_p50_ms"] == pytest.approx(2.0)
    assert figures["rtt_p99_ms"] == pytest.approx(3.0)
    assert figures["retransmits"] is None


def test_duplicates_and_reordering_are_counted_and_a_late_echo_stays_lost() -> None:
    window = ProbeWindow(window=30, timeout=1)
    for seq in range(4):
        window.sent(seq, 0.0)
    window.reply(1, 0.1)
    window.reply(0, 0.2)  # after 1: reordered
    window.reply(0, 0.3)  # again: a duplicate
    window.reply(2, 0.4)
    window.expire(5.0)  # 3 is lost
    window.reply(3, 5.1)  # too late: still lost
    figures = window.figures(tcp=False)
    assert (figures["received"], figures["lost"]) == (3, 1)
    assert (figures["duplicates"], figures["reordered"]) == (1, 1)
    assert window.late == 1


def test_jitter_follows_rfc_3550_over_consecutive_round_trips() -> None:
    window = ProbeWindow(window=30, timeout=2)
    rtts = [0.010, 0.012, 0.011, 0.015]
    jitter = 0.0
    for seq, rtt in enumerate(rtts):
        window.sent(seq, float(seq))
        window.reply(seq, seq + rtt)
        if seq:
            jitter += (abs(rtt - rtts[seq - 1]) - jitter) / 16
    assert window.figures(tcp=False)["jitter_ms"] == pytest.approx(jitter * 1000, abs=1e-3)


def test_figures_cover_only_the_window_and_retransmits_grow_within_it() -> None:
    window = ProbeWindow(window=10, timeout=2)
    window.sent(0, 0.0)
    window.expire(3.0)  # lost at t=3
    window.retransmits(0.0, 5)
    window.retransmits(4.0, 7)
    for seq in range(1, 6):
        window.sent(seq, 10.0 + seq)
        window.reply(seq, 10.0 + seq + 0.001)
    window.retransmits(15.0, 9)
    window.expire(15.0)
    figures = window.figures(tcp=True)
    assert figures["lost"] == 0 and figures["received"] == 5
    # From the last sample before the window (t=4: 7) to now (9).
    assert figures["retransmits"] == 2


def test_an_overdue_probe_is_seen_before_it_is_counted_lost() -> None:
    window = ProbeWindow(window=10, timeout=2)
    window.sent(0, 1.0)
    assert window.overdue_since(2.0) is None
    assert window.overdue_since(3.5) == 1.0


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0


def test_a_probe_is_its_flows_only() -> None:
    data = encode(7, 42, 64)
    assert len(data) == 64
    assert decode(data, 7) == 42
    assert decode(data, 8) is None
    assert decode(b"SLMP", 7) is None


def test_mesh_settings_from_a_table_and_refusals_name_the_key() -> None:
    mesh = mesh_settings(
        MeshSettings(), {"enabled": True, "rate": 2, "window": 60, "name": "n1"}, "config"
    )
    assert (mesh.enabled, mesh.rate, mesh.window, mesh.name) == (True, 2.0, 60.0, "n1")
    for values, field in (
        ({"rate": 0}, "mesh.rate"),
        ({"rate": 1000}, "mesh.rate"),
        ({"rate": "nan"}, "mesh.rate"),
        ({"port": 1.5}, "mesh.port"),
        ({"name": "a/b"}, "mesh.name"),
        ({"peers_dns": [1]}, "mesh.peers_dns"),
        ({"surprise": 1}, "mesh.surprise"),
    ):
        with pytest.raises(SpecError) as caught:
            mesh_settings(MeshSettings(), values, "config")
        assert caught.value.field == field, values


def test_a_dns_name_with_and_without_a_port() -> None:
    assert parse_dns_name("socketlab-mesh.lab.svc.cluster.local") == (
        "socketlab-mesh.lab.svc.cluster.local",
        8000,
    )
    assert parse_dns_name("mesh:8080") == ("mesh", 8080)
    for bad in ("", ":80", "mesh:0", "a/b:80"):
        with pytest.raises(SpecError):
            parse_dns_name(bad)


def test_the_mesh_counts_against_the_run_caps() -> None:
    mesh = MeshSettings(enabled=True, rate=5, max_peers=64)
    check_mesh_caps(Settings(mesh=mesh))
    with pytest.raises(SpecError) as caught:
        check_mesh_caps(Settings(mesh=mesh, max_run_rate=100))  # 2 x 64 x 5 = 640/s
    assert caught.value.field == "mesh.rate"
    with pytest.raises(SpecError):
        check_mesh_caps(Settings(mesh=mesh, max_run_bitrate=10_000))
    check_mesh_caps(Settings(mesh=MeshSettings(rate=5), max_run_rate=1))  # not enabled


def test_the_config_files_mesh_table_and_flags_over_it(tmp_path: Path) -> None:
    config = tmp_path / "lab.toml"
    config.write_text(
        '[mesh]\nenabled = true\nrate = 2\nwindow = 20\npeers_dns = ["mesh.test:8000"]\n'
    )
    settings = load_settings(config=str(config), data=str(tmp_path), mesh={"rate": "4"})
    mesh = settings.mesh
    assert (mesh.enabled, mesh.rate, mesh.window, mesh.peers_dns) == (
        True,
        4.0,
        20.0,
        ("mesh.test:8000",),
    )
    config.write_text("mesh = 3\n")
    with pytest.raises(SpecError):
        load_settings(config=str(config), data=str(tmp_path))


async def test_a_late_schedule_skips_the_probes_it_missed(autojump_clock: trio.abc.Clock) -> None:
    schedule = Schedule(0.1)
    start = trio.current_time()
    await schedule.wait()
    await trio.sleep(1.05)  # a stalled loop: ten probes' times pass
    times = []
    for _ in range(3):
        await schedule.wait()
        times.append(trio.current_time() - start)
    # The next slot of the grid, then one a period: never a burst to catch up.
    assert times == pytest.approx([1.1, 1.2, 1.3])


async def test_probes_never_go_to_an_always_denied_address() -> None:
    for host in ("169.254.1.1", "0.0.0.1", "224.0.0.1", "ff02::1"):
        with pytest.raises(ProbeTargetError):
            await resolve(host, 9101, socket.SOCK_DGRAM)
    family, address = await resolve("127.0.0.1", 9101, socket.SOCK_DGRAM)
    assert (family, address) == (socket.AF_INET, ("127.0.0.1", 9101))
