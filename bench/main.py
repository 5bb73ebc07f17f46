"""``make bench``: build the tools, run the selected sections, write report.md and raw.jsonl.

Usage: python bench/run.py [--sections abcdefghij] [--reps 3] [--duration 10] [--quick]
                           [--out DIR]

Sections: a TCP echo, b UDP echo, c TCP sink, d client side, e 10k idle connections,
f dashboard under load, g StatsD intake (100,000 and 300,000/s), h accuracy of socketlab
fire, i event loop stalls (ReDoS lines, StatsD flood, a 2.4 M-sample flush), j counters at
full speed against netbench's. report.md opens with the goals of issue 20 (bench/goals.py).
Results go to bench/results/<timestamp>/ (git ignores it).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench import clients, counts, dashboard, harness, report, servers, stalls
from bench.common import Context
from bench.harness import REPO, log

SECTIONS: dict[str, Callable[[Context], None]] = {
    "a": servers.section_a,
    "b": servers.section_b,
    "c": servers.section_c,
    "d": clients.section_d,
    "e": servers.section_e,
    "f": dashboard.section_f,
    "g": dashboard.section_g,
    "h": clients.section_h,
    "i": stalls.section_i,
    "j": counts.section_j,
}


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return r.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _fast_paths() -> str:
    """What the socketlab children run compiled (app.native), asked of a child with their
    environment (PYTHONPATH may point at an exported revision)."""
    code = "from app import native; print(native.describe())"
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    return r.stdout.strip() or f"fast paths: unknown ({r.stderr.strip()[-200:]})"


def header(args: argparse.Namespace, started: float) -> list[str]:
    if getattr(args, "commit", None):
        code = f"{args.commit[:10]} (--rev {args.rev}: the committed code, not the working tree)"
    else:
        dirty = " + uncommitted changes in app/" if _git("status", "--porcelain", "app") else ""
        code = f"{_git('rev-parse', '--short', 'HEAD')}{dirty} (working tree)"
    return [
        "# socketlab benchmark",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}, "
        f"took {(time.time() - started) / 60:.1f} min",
        f"- socketlab: {code}",
        f"- machine: {os.cpu_count()} CPUs ({_cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, trio {metadata.version('trio')}, "
        f"uvloop {harness.UVLOOP_VERSION} (reference venv)",
        f"- servers pinned to CPU {harness.SERVER_CPU}, load generators to CPU "
        f"{harness.LOAD_CPU}; 64 B messages unless said; {args.reps} rep(s) of "
        f"{args.duration:g} s; medians over reps; ratios are medians of per-rep ratios",
        f"- {_fast_paths()}",
        f"- sections: {args.sections}; raw figures: raw.jsonl beside this file",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sections", default="".join(SECTIONS), help="letters of the sections to run"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (medians are taken)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 rep of 3 s")
    parser.add_argument(
        "--only",
        help="comma-separated servers/clients to measure (e.g. socketlab,trio); default all",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=harness.ATTEMPTS,
        help="measure again (up to this many times in all) when other processes took more "
        f"than --max-others %% of a CPU meanwhile (default {harness.ATTEMPTS})",
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=harness.MAX_OTHERS_PCT,
        help=f"see --attempts (default {harness.MAX_OTHERS_PCT:g})",
    )
    parser.add_argument(
        "--rev",
        help="benchmark socketlab as committed at this git revision (e.g. HEAD) instead of "
        "the working tree, which others may be editing",
    )
    parser.add_argument("--out", type=Path, help="results folder (default bench/results/<ts>)")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.duration = 1, 3.0
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(
            f"unknown section(s) {''.join(sorted(unknown))}; pick from {''.join(SECTIONS)}"
        )
    if (os.cpu_count() or 1) < 2:
        log("bench: needs 2 CPUs (server and load generator on different CPUs)")
        return 2
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    outdir = args.out or REPO / "bench" / "results" / stamp
    outdir.mkdir(parents=True, exist_ok=True)
    harness.ATTEMPTS, harness.MAX_OTHERS_PCT = max(1, args.attempts), args.max_others
    if args.rev:
        args.commit = harness.use_revision(args.rev)
    harness.build_tools()
    harness.ensure_refvenv()
    nofile = harness.raise_fd_limit()
    if "e" in args.sections and nofile < servers.IDLE + 100:
        log(f"bench: file descriptor limit {nofile} is too low for section e")
    only = set(args.only.split(",")) if args.only else None
    ctx = Context(reps=args.reps, duration=args.duration, outdir=outdir, only=only)
    log(f"bench: sections {args.sections}, {args.reps} rep(s) of {args.duration:g} s -> {outdir}")
    sections = [s for s in SECTIONS if s in args.sections]
    try:
        for s in sections:
            t0 = time.time()
            try:
                SECTIONS[s](ctx)
            except harness.Skip as exc:
                ctx.skip(s, "section", str(exc))
            except Exception as exc:  # one broken section must not cost the others
                ctx.emit({"section": s, "what": "section", "skipped": f"failed: {exc!r}"})
                log(f"[{s}] FAILED: {exc!r} (logs in {ctx.logdir})")
            log(f"[{s}] done in {time.time() - t0:.0f} s")
    finally:
        text = report.render(ctx.records, sections, header(args, started))
        (outdir / "report.md").write_text(text)
        log(f"bench: wrote {outdir / 'report.md'}")
        sys.stdout.write(text)
    return 0
