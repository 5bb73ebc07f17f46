"""Where a socketlab server's time goes under load: py-spy samples while netbench drives it.

Usage::

    python -m bench.profile 'udp://127.0.0.1:0?mode=echo' udp-pingpong --flows 10 --size 64
    python -m bench.profile 'tcp://127.0.0.1:0?mode=sink' tcp-bulk --size 131072
    python -m bench.profile --fire 'tcp://127.0.0.1:{port}' --conns 100 --size 64

The first form starts ``socketlab serve`` with the one listener (pinned to the server CPU),
runs ``netbench LOAD ... --host 127.0.0.1 --port PORT`` on the load CPU and
samples the server; ``--fire`` profiles the client instead: a C echo server is started
and ``socketlab fire URL OPTIONS`` (``{port}`` is the echo's port) is sampled. Prints each
function's own time and its inclusive time, as shares of the samples, and keeps the raw
stacks (``--out``, flame-graph input for ``flamegraph.pl`` or speedscope).

Needs py-spy (``pip install -e '.[bench]'``) and the right to trace the process (root or
``ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import harness
from bench.harness import NB, SOCKETLAB, log


def summarize(raw: Path, top: int = 25) -> list[str]:
    """Own and inclusive time per function from py-spy's raw (collapsed) stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * n / total:5.1f} %  {f}" for f, n in incl.most_common(top)]
    return out


def record(pid: int, seconds: float, out: Path, rate: int = 250) -> None:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [pyspy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate)]
    subprocess.run(
        [*argv, "-f", "raw", "-o", str(out), "--nonblocking"],
        check=True,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("target", help="listener URL (port 0), or with --fire a run URL")
    parser.add_argument(
        "load", nargs=argparse.REMAINDER, help="netbench command and options (fire's with --fire)"
    )
    parser.add_argument("--fire", action="store_true", help="profile `socketlab fire`")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, help="raw stacks (default: a temporary file)")
    args = parser.parse_args(argv)
    harness.build_tools()
    workdir = Path(tempfile.mkdtemp(prefix="socketlab-profile-"))
    out = args.out or workdir / "stacks.txt"
    duration = str(args.seconds + 4)
    if args.fire:
        port = harness.free_port(udp=True)
        srv = harness.start_ref(
            "echo", [str(NB), "echo-server", "--port", str(port), "--udp"], port, workdir
        )
        try:
            cmd = [str(SOCKETLAB), "fire", args.target.format(port=port), *args.load]
            cmd += ["--duration", duration]
            p = harness.start_load(cmd)
            time.sleep(3.0)  # the CLI's imports and the run's start are not the hot path
            record(p.pid, args.seconds, out)
            harness.finish(p, timeout=args.seconds + 60)
        finally:
            harness.stop_ref(srv)
    else:
        lab = harness.start_lab("profiled", [args.target], workdir, workdir / "data")
        try:
            port = lab.ports[harness.listener_key(args.target)]
            load = [str(NB), *args.load, "--host", "127.0.0.1", "--port", str(port)]
            p = harness.start_load([*load, "--duration", duration])
            time.sleep(1.0)
            record(lab.pid, args.seconds, out)
            stdout, _ = harness.finish(p, timeout=args.seconds + 60)
            log(stdout.strip())
        finally:
            lab.stop()
    log("\n".join(summarize(out)))
    log(f"raw stacks: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
