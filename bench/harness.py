"""Process plumbing of the benchmark: build the tools, start servers, run load generators.

Every server runs pinned to ``SERVER_CPU`` and every load generator to ``LOAD_CPU`` (with
``taskset``), as in the reference measurements of netbench's README, so a server and its load
never share a CPU. The harness itself only waits on child processes.

Resource handling: every child process is kept as a ``Popen`` handle in ``_live`` and ended
by its own PID (SIGINT/SIGTERM, then SIGKILL) when it is stopped or when the harness exits.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BUILD = BENCH / ".build"
NETBENCH_DIR = Path(
    os.environ.get("SOCKETLAB_NETBENCH_DIR") or REPO.parent / "shared" / "tools" / "netbench"
)
REF = NETBENCH_DIR / "ref"
NB = BUILD / "netbench"
STATSD_BLAST = BUILD / "statsd_blast"
REFVENV = BUILD / "refvenv"
REFPY = REFVENV / "bin" / "python"
# The socketlab under test: the project's own venv (``make bench`` installs it).
SOCKETLAB = Path(sys.executable).parent / "socketlab"
LABPY = sys.executable
SERVER_CPU, LOAD_CPU = "1", "0"
UVLOOP_VERSION = "0.23.0"


class Skip(Exception):
    """A measurement cannot run here (a feature is missing); the message says why."""


def log(line: str) -> None:
    print(line, flush=True)


# --- setup -------------------------------------------------------------------------------


def _stale(target: Path, source: Path) -> bool:
    return not target.exists() or target.stat().st_mtime < source.stat().st_mtime


def build_tools() -> None:
    """Compile netbench and the StatsD blaster into bench/.build when missing or stale."""
    BUILD.mkdir(parents=True, exist_ok=True)
    for target, source in (
        (NB, NETBENCH_DIR / "netbench.c"),
        (STATSD_BLAST, BENCH / "statsd_blast.c"),
    ):
        if not source.exists():
            raise SystemExit(f"bench: {source} not found (set SOCKETLAB_NETBENCH_DIR)")
        if _stale(target, source):
            cc = os.environ.get("CC", "gcc")
            subprocess.run(
                [cc, "-O2", "-Wall", "-Wextra", "-o", str(target), str(source)], check=True
            )
            log(f"built {target.relative_to(REPO)}")


def ensure_refvenv() -> None:
    """A venv with trio (the version socketlab runs on) and uvloop for the reference servers."""
    trio_version = metadata.version("trio")
    probe = "import trio, uvloop; print(trio.__version__)"
    if REFPY.exists():
        out = subprocess.run([str(REFPY), "-c", probe], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == trio_version:
            return
    log(f"creating {REFVENV.relative_to(REPO)} (trio {trio_version}, uvloop {UVLOOP_VERSION})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(REFVENV)], check=True)
    subprocess.run(
        [
            str(REFPY),
            "-m",
            "pip",
            "install",
            "-q",
            f"trio=={trio_version}",
            f"uvloop=={UVLOOP_VERSION}",
        ],
        check=True,
    )


def use_revision(rev: str) -> str:
    """Run socketlab from ``rev``'s committed app/ (exported into bench/.build/rev-SHA).

    The export goes first on PYTHONPATH of every child, ahead of the editable install of the
    working tree; dependencies are the venv's. Returns the full commit id.
    """
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = BUILD / f"rev-{sha[:12]}"
    if not (dest / "app").is_dir():
        tmp = BUILD / f"rev-{sha[:12]}.tmp"
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", sha, "app", "templates", "static"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        build = tmp / "app/native/build.py"
        if build.exists():  # the compiled fast paths are not in git: built for the export
            subprocess.run([sys.executable, str(build)], check=True, stdout=subprocess.DEVNULL)
        tmp.rename(dest)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(dest), os.environ.get("PYTHONPATH", "")) if p
    )
    log(f"socketlab from {rev} = {sha[:10]}")
    return sha


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port(udp: bool = False) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (netbench's --udp binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


# --- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_busy() -> dict[str, float]:
    """Seconds each CPU spent running processes (user, nice, system), from /proc/stat.

    Interrupt and softirq time is left out: on loopback most of it is the network stack
    working for the load generator and the server, and it is charged to no process.
    """
    tick = os.sysconf("SC_CLK_TCK")
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name != "cpu":
                n = [int(v) for v in vals[:8]]
                busy[name[3:]] = (n[0] + n[1] + n[2]) / tick
    return busy


def others_cpu() -> dict[tuple[str, str], int]:
    """CPU ticks used so far by each process that is neither the harness nor its child.

    Keyed by (pid, start time), read from /proc/PID/stat: the same precise accounting as
    :func:`cpu_seconds`. See :func:`others_cpu_seconds` for the difference of two of these.
    """
    me = os.getpid()
    ticks = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid: a server, load generator or helper of ours
            continue
        ticks[(entry.name, fields[19])] = int(fields[11]) + int(fields[12])
    return ticks


def others_cpu_seconds(before: dict[tuple[str, str], int]) -> float:
    """CPU seconds other processes used since ``before`` (an :func:`others_cpu` snapshot).

    A process that started meanwhile counts whole; one that ended meanwhile is not seen
    (its last moments are missed, which :func:`wait_quiet` makes up for beforehand).
    """
    total = 0
    for key, now in others_cpu().items():
        total += now - before.get(key, 0)
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def udp_drops(port: int) -> int | None:
    """The kernel's drop counter of the UDP socket bound to ``port`` (/proc/net/udp)."""
    hexport = f"{port:04X}"
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1].endswith(":" + hexport):
                return int(cols[-1])
    return None


# --- processes -----------------------------------------------------------------------------

_live: list[subprocess.Popen[str]] = []


def _end(p: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in _live:
        _live.remove(p)


atexit.register(lambda: [_end(p, signal.SIGKILL, 5) for p in list(_live)])


def parse_kv(line: str) -> dict[str, Any]:
    """netbench's final line ``tool k=v k=v`` as a dict (numbers as floats)."""
    words = line.split()
    kv: dict[str, Any] = {"tool": words[0]}
    for tok in words[1:]:
        k, _, v = tok.partition("=")
        try:
            kv[k] = float(v)
        except ValueError:
            kv[k] = v
    return kv


def last_kv(text: str) -> dict[str, Any] | None:
    lines = [line for line in text.splitlines() if "=" in line]
    return parse_kv(lines[-1]) if lines else None


class Server:
    """A server process pinned to the server CPU; stdout is collected by a reader thread."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        logdir: Path,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.cmd = ["taskset", "-c", SERVER_CPU, *argv]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.log_path = logdir / f"{name}.log"
        logdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self._log.write(f"$ {' '.join(self.cmd)}\n")
        self._log.flush()
        full_env = dict(os.environ, **(env or {}))
        self.p = subprocess.Popen(
            self.cmd,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=full_env,
        )
        _live.append(self.p)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.p.pid

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait for a stdout line matching ``pattern``; raises Skip when the server died."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                if self.p.poll() is not None:
                    raise Skip(f"{self.name} exited ({self.p.returncode}): {self.last_error()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no line matching {pattern!r}")
                self._cond.wait(min(left, 0.2))

    def last_error(self) -> str:
        try:
            tail = self.log_path.read_text().strip().splitlines()
        except OSError:
            return "?"
        errors = [line.strip(" |") for line in tail if re.search(r"\w(Error|Exception): ", line)]
        return errors[-1] if errors else (tail[-1].strip() if tail else "?")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """End the process (by its PID) and return what it printed on stdout."""
        _end(self.p, sig)
        self._reader.join(timeout=5)
        self._log.close()
        return "\n".join(self.lines)


def wait_ready(port: int, udp: bool = False, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if udp:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(0.2)
                    s.sendto(b"probe-probe", ("127.0.0.1", port))
                    s.recv(100)
            else:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready")


def start_ref(name: str, argv: list[str], port: int, logdir: Path, udp: bool = False) -> Server:
    srv = Server(name, argv, logdir)
    try:
        wait_ready(port, udp)
    except RuntimeError:
        srv.stop(signal.SIGKILL)
        raise
    time.sleep(0.3)
    return srv


def stop_ref(srv: Server) -> str:
    """C servers print their totals on SIGINT; the Python ones simply end on SIGTERM."""
    return srv.stop(signal.SIGINT if srv.cmd[3] == str(NB) else signal.SIGTERM)


@dataclass
class Lab:
    """A running ``socketlab serve`` with its listeners' ports and the web port."""

    server: Server
    web_port: int
    ports: dict[str, int] = field(default_factory=dict)  # "tcp:echo" -> port
    token: str | None = None

    @property
    def pid(self) -> int:
        return self.server.pid

    def stop(self) -> None:
        self.server.stop(signal.SIGTERM)

    def get(self, path: str, timeout: float = 10.0) -> tuple[float, int, Any]:
        """GET ``path`` on the web port: (seconds, status, parsed JSON or text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=timeout)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - t0
        finally:
            conn.close()
        try:
            doc: Any = json.loads(body)
        except ValueError:
            doc = body.decode("utf-8", "replace")
        return elapsed, resp.status, doc


def listener_key(url: str) -> str:
    """``tcp://127.0.0.1:0?mode=echo`` -> ``tcp:echo``."""
    mode = re.search(r"mode=(\w+)", url)
    return f"{url.split(':', 1)[0]}:{mode.group(1) if mode else 'echo'}"


def start_lab(name: str, listen: list[str], logdir: Path, datadir: Path) -> Lab:
    """Start socketlab with ``listen`` URLs (port 0); raises Skip when it refuses them."""
    datadir.mkdir(parents=True, exist_ok=True)
    argv = [str(SOCKETLAB), "serve", "--web", "127.0.0.1:0", "--no-auth", "--data", str(datadir)]
    for url in listen:
        argv += ["--listen", url]
    argv += ["--log-level", "warning"]
    srv = Server(name, argv, logdir)
    try:
        m = srv.wait_line(r"dashboard: http://[^ ]*:(\d+)/", timeout=30)
        web_port = int(m.group(1))
        lab = Lab(srv, web_port)
        for line in srv.lines:
            for proto, port, mode in re.findall(r"(tcp|udp)://[^ ,]*:(\d+)\?mode=(\w+)", line):
                lab.ports[f"{proto}:{mode}"] = int(port)
        for url in listen:
            key = listener_key(url)
            if key not in lab.ports:
                raise Skip(f"socketlab did not report a {key} listener")
    except BaseException:
        srv.stop(signal.SIGKILL)
        raise
    time.sleep(0.3)
    return lab


def run_load(
    argv: list[str],
    server_pid: int | None = None,
    timeout: float = 180.0,
    json_out: bool = False,
) -> dict[str, Any]:
    """Run a load generator on the load CPU; parse its final ``k=v`` line (or JSON)."""
    cmd = ["taskset", "-c", LOAD_CPU, *argv]
    c0 = cpu_seconds(server_pid) if server_pid else None
    busy0 = cpu_busy()
    others0 = others_cpu()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.time() - t0
    busy1 = cpu_busy()
    others_s = others_cpu_seconds(others0)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_cpu_s = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    res: dict[str, Any]
    if json_out:
        try:
            res = {"doc": json.loads(r.stdout)}
        except ValueError:
            res = {"error": (r.stderr or r.stdout)[-500:]}
    else:
        res = last_kv(r.stdout) or {"error": r.stderr[-500:]}
    res["rc"] = r.returncode
    res["wall_s"] = wall
    res["load_cpu_busy_pct"] = 100 * (busy1[LOAD_CPU] - busy0[LOAD_CPU]) / wall
    res["load_cpu_s"] = load_cpu_s
    res["load_cpu_pct"] = 100 * load_cpu_s / wall
    res["others_on_load_cpu_pct"] = res["load_cpu_busy_pct"] - res["load_cpu_pct"]
    res["server_cpu_busy_pct"] = 100 * (busy1[SERVER_CPU] - busy0[SERVER_CPU]) / wall
    if server_pid and c0 is not None:
        res["server_cpu_s"] = cpu_seconds(server_pid) - c0
        res["server_cpu_pct"] = 100 * res["server_cpu_s"] / wall
        # Whatever else ran on the server's CPU meanwhile (other processes of the machine).
        res["others_on_server_cpu_pct"] = res["server_cpu_busy_pct"] - res["server_cpu_pct"]
    # Percent of one CPU that other processes used meanwhile; both CPUs are ours, so any of
    # it came out of the server's or the load generator's time.
    res["others_pct"] = 100 * others_s / wall
    res["cmd"] = " ".join(cmd)
    return res


# Other processes of the machine (tests, builds) share these CPUs. A measurement during which
# they took more than this share of the server or load CPU is repeated (the least disturbed
# attempt is kept, and every record says how disturbed it was).
MAX_OTHERS_PCT = 10.0
ATTEMPTS = 2
QUIET_WAIT_S = 5.0


def _all_busy() -> float:
    """Seconds all CPUs spent on anything but idle and iowait (kernel work included)."""
    with open("/proc/stat") as f:
        n = [int(v) for v in f.readline().split()[1:9]]
    return (sum(n) - n[3] - n[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float = QUIET_WAIT_S, busy_pct: float = 15.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine is quiet: < ``busy_pct`` % of a CPU.

    Called before a load starts, while the server under test is idle: whatever keeps the
    CPUs busy then (including short-lived processes and their kernel work, which the
    per-process count of :func:`others_cpu_seconds` misses) is someone else's.
    Returns the seconds waited.
    """
    t0 = time.monotonic()
    while True:
        b0 = _all_busy()
        time.sleep(0.5)
        used = 100 * (_all_busy() - b0) / 0.5
        waited = time.monotonic() - t0
        if used <= busy_pct or waited >= max_wait:
            return waited


def measure(
    argv: list[str], server_pid: int | None, timeout: float = 180.0, json_out: bool = False
) -> dict[str, Any]:
    """:func:`run_load` after a quiet moment, repeated when other processes disturbed it."""
    best: dict[str, Any] | None = None
    for attempt in range(1, ATTEMPTS + 1):
        waited = wait_quiet()
        res = run_load(argv, server_pid, timeout, json_out)
        res.update(attempt=attempt, quiet_wait_s=round(waited, 2), loadavg=os.getloadavg()[0])
        if best is None or res.get("others_pct", 0) < best.get("others_pct", 0):
            best = res
        if res.get("error") or res.get("others_pct", 0) <= MAX_OTHERS_PCT or attempt == ATTEMPTS:
            break
        log(
            f"  (other processes took {res['others_pct']:.0f}% of a CPU: "
            f"measuring again, attempt {attempt + 1}/{ATTEMPTS})"
        )
    assert best is not None
    return best


def start_load(argv: list[str], stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start a load process on the load CPU without waiting (kept for stopping by PID)."""
    p = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, *argv],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    _live.append(p)
    return p


def finish(p: subprocess.Popen[str], timeout: float = 180.0) -> tuple[str, str]:
    """Wait for a process started by :func:`start_load` and return (stdout, stderr)."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(p, signal.SIGKILL)
        out, err = p.communicate()
    if p in _live:
        _live.remove(p)
    return out or "", err or ""


def interrupt(p: subprocess.Popen[str], timeout: float = 15.0) -> tuple[str, str]:
    """Ask a helper started by :func:`start_load` to finish (SIGINT) and collect its output."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGINT)
    return finish(p, timeout)


def socketlab_fire_help() -> str:
    r = subprocess.run(
        [str(SOCKETLAB), "fire", "--help"], capture_output=True, text=True, check=False
    )
    return r.stdout


def fire_summary(res: dict[str, Any]) -> dict[str, Any]:
    """Flatten ``socketlab fire --json`` into rate/latency keys like netbench's."""
    doc = res.get("doc")
    if not isinstance(doc, dict):
        return {"error": res.get("error", "no JSON"), "rc": res.get("rc")}
    s = doc.get("summary") or {}
    rtt = s.get("rtt_ms") or {}
    elapsed = s.get("elapsed") or (doc.get("ended_at") or 0) - (doc.get("started_at") or 0)
    received = s.get("received", 0)
    out = {
        "status": doc.get("status"),
        "sent": s.get("sent"),
        "rtt_total": received,
        "bytes_sent": s.get("bytes_sent"),
        "bytes_received": s.get("bytes_received"),
        "elapsed": elapsed,
        "rtt_per_s": s.get("msgs_per_s") or (received / elapsed if elapsed else 0.0),
        "sent_per_s": s.get("sent_per_s"),
        "bits_per_s": s.get("bits_per_s"),
        "p50_us": rtt["p50"] * 1000 if rtt.get("p50") is not None else None,
        "p99_us": rtt["p99"] * 1000 if rtt.get("p99") is not None else None,
        "lost": s.get("lost"),
        "late": s.get("late"),
        "errors": s.get("errors"),
        "errors_by_kind": s.get("errors_by_kind"),
        "bottleneck": s.get("bottleneck"),
    }
    return out
