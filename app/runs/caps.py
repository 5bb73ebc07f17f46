"""The per-run caps a spec is checked against before it runs.

Theory of operation: a cap holds in one of two places. What a spec says in advance is
checked here, before anything is sent, and refused naming the field: how long the run
sends (warm-up and duration together, and the ramp-up), the rate of an open-loop schedule
(``rate``, ``burst``, UDP ``bulk``), the bytes a ``count`` may take, the size of one
message. What only the run itself shows (the pace of ``pingpong`` and TCP ``bulk``, how long
a count takes, the bytes of a duration) is held while it goes: the engine charges every
write to the run's :class:`~app.runs.budget.Budget` (paced to the rate caps, stopped within
one write of the byte cap) and ends sending at the duration cap
(:func:`app.runs.engine.execute`). The concurrent-run cap is the run manager's.
"""

from __future__ import annotations

from app.errors import SpecError
from app.runs.spec import RunSpec
from app.settings import Settings


def check_run_caps(spec: RunSpec, settings: Settings) -> None:
    """Refuse ``spec`` if what it says in advance exceeds one of the caps of ``settings``.

    Raises:
        SpecError: Naming the field at fault.
    """
    s = settings
    check_time(spec, s.max_run_duration)
    if spec.connections > s.max_run_connections:
        raise SpecError(f"connections: at most {s.max_run_connections} per run", "connections")
    check_rate(spec, s.max_run_rate, s.max_run_bitrate)
    if spec.count is not None and spec.count * spec.largest_size > s.max_run_bytes:
        raise SpecError(f"count: at most {s.max_run_bytes:g} bytes per run", "count")
    raw = spec.payload.raw() if spec.pattern == "packet" else None
    if raw is not None and (len(raw) > s.max_run_bytes or len(raw) * 8 > s.max_run_bitrate):
        limit = min(s.max_run_bytes, s.max_run_bitrate / 8)
        raise SpecError(f"payload: at most {limit:g} bytes here", "payload")


def check_time(spec: RunSpec, cap: float) -> None:
    """The duration cap covers all the time a run sends: warm-up and duration together,
    and the ramp-up (the last connection starts then). A count run on a schedule (rate,
    burst, UDP bulk) must fit in the cap; one that sets its own pace is stopped there."""
    duration = spec.effective_duration
    if duration is not None and spec.warmup + duration > cap:
        field = "duration" if duration > cap else "warmup"
        raise SpecError(f"{field}: warmup and duration together at most {cap:g} s per run", field)
    if spec.warmup > cap:
        raise SpecError(f"warmup: at most {cap:g} s per run", "warmup")
    if spec.ramp_up > cap:
        raise SpecError(f"ramp_up: at most {cap:g} s per run", "ramp_up")
    length = schedule_length(spec)
    if length is not None and length > cap:
        raise SpecError(
            f"count: sending it takes {length:g} s on this schedule; at most {cap:g} s per run",
            "count",
        )


def schedule_length(spec: RunSpec) -> float | None:
    """Seconds from the start to the last message of a count run on a schedule (counted
    from the start of the warm-up, which is part of the count); ``None`` otherwise."""
    if spec.count is None:
        return None
    per_flow = -(-spec.count // spec.connections)  # the largest quota (app.runs.engine)
    if spec.pattern == "burst":
        return (-(-per_flow // spec.burst) - 1) * spec.interval
    rate = spec.message_rate
    return None if rate is None else spec.count / rate


def check_rate(spec: RunSpec, max_rate: float, max_bitrate: float) -> None:
    """The rate caps, for the schedules known in advance (pingpong and TCP bulk are paced
    to them as they run). One message is at most a second of the bit-rate cap, so that the
    pacing holds from the first write on."""
    if spec.largest_size * 8 > max_bitrate:
        raise SpecError(f"size: at most {max_bitrate / 8:g} bytes per message here", "size")
    if spec.pattern == "burst":
        # On average connections x burst per interval, and a whole burst at once: at most
        # a second's worth of the caps, also when bursts come more often than every second.
        per_second = spec.connections * spec.burst / min(spec.interval, 1.0)
        if per_second > max_rate or per_second * spec.mean_size * 8 > max_bitrate:
            raise SpecError(
                "burst: connections x burst, per interval and per second, at most "
                f"{max_rate:g} messages and {max_bitrate:g} bit",
                "burst",
            )
        return
    rate = spec.message_rate
    if rate is not None and rate > max_rate:
        raise SpecError(f"rate: at most {max_rate:g} messages/s per run", "rate")
    if rate is not None and rate * spec.mean_size * 8 > max_bitrate:
        raise SpecError(f"bitrate: at most {max_bitrate:g} bit/s per run", "bitrate")


def check_mesh_caps(settings: Settings) -> None:
    """Mesh mode's probes count against the run caps as one run that never ends: one UDP
    and one TCP flow per peer, for as many peers as it measures at most (``max_peers``),
    each at ``rate`` probes a second of ``size`` bytes.

    Raises:
        SpecError: Their rate or bit rate together exceeds a cap (field ``mesh.rate``).
    """
    mesh = settings.mesh
    if not mesh.enabled:
        return
    per_second = 2 * mesh.rate * mesh.max_peers
    if per_second > settings.max_run_rate or per_second * mesh.size * 8 > settings.max_run_bitrate:
        raise SpecError(
            f"mesh.rate: 2 flows x {mesh.max_peers} peers x {mesh.rate:g}/s exceeds the run caps "
            f"({settings.max_run_rate:g} msg/s, {settings.max_run_bitrate:g} bit/s)",
            "mesh.rate",
        )
