"""One telemetry model for every collector (StatsD, InfluxDB line protocol, Graphite, syslog).

:mod:`.points` holds the two shapes every parser produces: a :class:`~.points.Point` (a named,
tagged set of field values at a time) and a :class:`~.points.LogRecord` (one syslog message).
The stores that keep them with a bounded history live beside it.
"""
