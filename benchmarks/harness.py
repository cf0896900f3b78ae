"""Shared machinery: servers in child processes, timed child runs, inputs, sampling.

Every figure is measured on this machine in the same run as the figures it is
compared with, so the ratios hold even when the machine is shared and noisy.
Every server listens on 127.0.0.1 only, and every child process is bounded
in time: a run that overstays its limit is killed and reported as a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import APPKEY, TOKEN
from ocr_async.emulator import find_free_port, make_png

HOST = "127.0.0.1"
#: imageUrl may only name ports 80, 443 and 10000-12000: every server here
#: takes a port in that range, so the emulator can fetch URLs from itself.
PORTS = (10000, 12000)
#: The longest any one child run may take before it is killed.
CHILD_TIMEOUT = 900.0
_SUMMARY = re.compile(r"([0-9.]+) images/s over ([0-9.]+) s")
T = TypeVar("T")


def child_env() -> dict[str, str]:
    """The environment of every client run: the benchmark's credentials."""
    return dict(os.environ, NHN_OCR_TOKEN=TOKEN, NHN_OCR_APPKEY=APPKEY)


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, OS, Python."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), "
        f"{memory:.0f} GiB; {platform.platform()}; "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _get_json(url: str, *, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.02)


@contextlib.contextmanager
def _server(argv: Sequence[str], health_url: str, what: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(health_url, process, what)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Stats:
    """The emulator's counters that the benchmarks read."""

    requests: int
    answered_ok: int
    rate_limited: int


@dataclass(frozen=True)
class Emulator:
    """``ocr-async serve`` running in a child process."""

    base_url: str
    pid: int

    def stats(self) -> Stats:
        """The counters now."""
        raw = _get_json(f"{self.base_url}/_emulator/stats")
        return Stats(int(raw["requests"]), int(raw["answered_ok"]), int(raw["rate_limited"]))

    def reset(self) -> None:
        """Zero the counters and refill the quota."""
        _get_json(f"{self.base_url}/_emulator/reset", method="POST")

    def cpu_seconds(self) -> float:
        """CPU the emulator has used so far."""
        return cpu_seconds(self.pid)


@contextlib.contextmanager
def emulator_process(*extra: str) -> Iterator[Emulator]:
    """``ocr-async serve`` in a child process on a free port in :data:`PORTS`."""
    port = find_free_port(*PORTS, host=HOST)
    base_url = f"http://{HOST}:{port}"
    # The fallback engine unless asked otherwise: serve's default (auto) would
    # load a real OCR engine, and the figures measure the client, not OCR.
    engine = [] if "--engine" in extra else ["--engine", "embedded"]
    argv = [sys.executable, "-m", "ocr_async", "serve", "--port", str(port), *engine, *extra]
    with _server(argv, f"{base_url}/healthz", "the emulator") as process:
        yield Emulator(base_url, process.pid)


@contextlib.contextmanager
def stub_process(record: Path) -> Iterator[str]:
    """:mod:`benchmarks.stub` in a child process; yields its base URL."""
    port = find_free_port(*PORTS, host=HOST)
    base_url = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "benchmarks.stub", str(port), str(record)]
    with _server(argv, f"{base_url}/healthz", "the stub server"):
        yield base_url


def time_to_first_request(argv: Sequence[str], record: Path, timeout: float = 30.0) -> float:
    """Seconds from starting ``argv`` to the stub's first OCR call, then stop it.

    Both ends read CLOCK_MONOTONIC (``time.monotonic``), which every process
    on the machine shares. The child is killed once the call has arrived.
    """
    record.unlink(missing_ok=True)
    started = time.monotonic()
    process = subprocess.Popen(
        list(argv), env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not record.exists():
            if process.poll() is not None:
                raise RuntimeError(f"{argv[:4]} exited {process.returncode} before any request")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{argv[:4]} sent nothing in {timeout:.0f} s")
            time.sleep(0.005)
        return float(record.read_text(encoding="ascii")) - started
    finally:
        process.kill()
        process.wait()


# --- nginx in front of the emulator -----------------------------------------------------

#: What the API answers over its call limit, always in an HTTP 200.
RATE_LIMITED_ENVELOPE = (
    '{"header":{"isSuccessful":false,"resultCode":4000006,"resultMessage":'
    '"Api call limit exceeded, If you need to adjust the limit, please contact '
    'customer service."}}'
)
_NGINX_CONF = """\
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    access_log off;
{http}
}}
"""
_LIMITER_HTTP = """\
    # One line per OCR call: PASSED, REJECTED (or DELAYED without nodelay).
    log_format limit '$limit_req_status';
    limit_req_zone $server_name zone=ocr:1m rate={rate}r/s;
    upstream emulator {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen {host}:{port};
        server_name ocr;
        client_max_body_size 6m;
        location /v1.1/ {{
            access_log {prefix}/calls.log limit;
            limit_req zone=ocr{burst};
            limit_req_status 429;
            error_page 429 = @limited;
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location @limited {{
            access_log {prefix}/calls.log limit;
            default_type application/json;
            return 200 '{envelope}';
        }}
        location = /healthz {{
            return 200 'ok';
        }}
    }}"""
_STATIC_HTTP = """\
    # One line per OCR call, the method alone.
    log_format calls '$request_method';
    # The default closes a connection after 1,000 requests: the clients
    # would then measure reconnecting, which the API does not ask of them.
    keepalive_requests 1000000;
    server {{
        listen {host}:{port};
        client_max_body_size 6m;
        location ~ ^/v1\\.1/appkeys/[^/]+/general$ {{
            access_log {prefix}/calls.log calls;
            if ($request_method != POST) {{
                return 405;
            }}
            default_type application/json;
            return 200 '{envelope}';
        }}
        location = /healthz {{
            return 200 'ok';
        }}
    }}"""


def _installed(name: str) -> str:
    """The path of a Debian server binary, or a clear error saying how to install it."""
    binary = shutil.which(name) or f"/usr/sbin/{name}"
    if not os.path.exists(binary):
        raise RuntimeError(f"{name} is not installed (Debian: apt-get install {name})")
    return binary


@dataclass(frozen=True)
class Nginx:
    """nginx in a child process: its URL and its log of OCR calls, one line each."""

    base_url: str
    log: Path

    def calls(self) -> tuple[int, int]:
        """(calls seen, calls refused with 4000006) from the access log."""
        lines = self.log.read_text(encoding="ascii").split()
        return len(lines), sum(line == "REJECTED" for line in lines)


@contextlib.contextmanager
def _nginx(http: str, **values: str) -> Iterator[Nginx]:
    """nginx running the ``http`` block (a template) in its own temporary prefix.

    The template is filled with ``values`` and with ``prefix``, ``host``
    and ``port``; it logs each OCR call to ``{prefix}/calls.log``, which is
    unbuffered, so it is complete as soon as the client has finished.
    """
    binary = _installed("nginx")
    with tempfile.TemporaryDirectory(prefix="ocr-async-nginx-") as prefix:
        port = find_free_port(*PORTS, host=HOST)
        conf = Path(prefix, "nginx.conf")
        block = http.format(prefix=prefix, host=HOST, port=port, **values)
        conf.write_text(_NGINX_CONF.format(prefix=prefix, http=block))
        Path(prefix, "calls.log").touch()
        argv = [binary, "-p", prefix, "-c", str(conf), "-g", "daemon off;"]
        base_url = f"http://{HOST}:{port}"
        with _server(argv, f"{base_url}/healthz", "nginx"):
            yield Nginx(base_url, Path(prefix, "calls.log"))


@contextlib.contextmanager
def nginx_process(upstream: str, rate: float, burst: int) -> Iterator[Nginx]:
    """nginx limiting OCR calls to ``rate`` per second, ``burst`` extra at once (nodelay).

    Over-limit calls get the 4000006 envelope in an HTTP 200, as the API
    answers them. Its own prefix and config in a temporary directory, gone
    when the block ends: read :meth:`Nginx.calls` inside it.
    """
    with _nginx(
        _LIMITER_HTTP,
        upstream=upstream.removeprefix("http://"),
        rate=f"{rate:g}",
        burst=f" burst={burst} nodelay" if burst else "",
        envelope=RATE_LIMITED_ENVELOPE,
    ) as nginx:
        yield nginx


@contextlib.contextmanager
def static_nginx_process(envelope: str) -> Iterator[Nginx]:
    """nginx answering every POST to ``/v1.1/appkeys/{k}/general`` with ``envelope``.

    A server that costs next to nothing: the request body is read and
    dropped, and the same bytes go back every time. ``envelope`` must hold
    no single quote (it sits in an nginx string).
    """
    if "'" in envelope:
        raise ValueError("the envelope may not hold a single quote")
    with _nginx(_STATIC_HTTP, envelope=envelope) as nginx:
        yield nginx


# --- HAProxy in front of the emulator ---------------------------------------------------

_HAPROXY_CONF = """\
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    option http-keep-alive
frontend ocr
    bind {host}:{port}
    # A health check must not count against the quota: answer it first.
    http-request return status 200 content-type text/plain string ok if {{ path /healthz }}
    # HAProxy's documented rate limit: every call of a client counts in a
    # sliding one-second rate, refused ones too, read before the answer.
    stick-table type ip size 1k expire 10s store http_req_rate(1s)
    http-request track-sc0 src
    {refuse}
    default_backend emulator
backend emulator
    http-reuse always
    server emulator {upstream} maxconn 1024
"""


@contextlib.contextmanager
def haproxy_process(upstream: str, rate: int) -> Iterator[str]:
    """HAProxy refusing OCR calls over ``rate`` a second (``http_req_rate(1s)``); yields its URL.

    Over-limit calls get the 4000006 envelope in an HTTP 200, as the API
    answers them. Its config lives in a temporary directory, gone when the
    block ends.
    """
    binary = _installed("haproxy")
    with tempfile.TemporaryDirectory(prefix="ocr-async-haproxy-") as prefix:
        port = find_free_port(*PORTS, host=HOST)
        conf = Path(prefix, "haproxy.cfg")
        conf.write_text(
            _HAPROXY_CONF.format(
                host=HOST,
                port=port,
                upstream=upstream.removeprefix("http://"),
                refuse=(
                    "http-request return status 200 content-type application/json "
                    f"string '{RATE_LIMITED_ENVELOPE}' if {{ sc_http_req_rate(0) gt {rate} }}"
                ),
            )
        )
        base_url = f"http://{HOST}:{port}"
        with _server([binary, "-db", "-f", str(conf)], f"{base_url}/healthz", "haproxy"):
            yield base_url


# --- child runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    """One measured child process."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stderr: str
    #: User plus system CPU seconds of the child and its threads, start-up included.
    cpu_s: float = 0.0

    def summary(self) -> tuple[float, float]:
        """(images/s, seconds) as the run's closing line says: start-up excluded.

        ocr-async and the Python peers all print ``N images/s over S s``,
        timed from the start of their work, after interpreter start-up.
        """
        match = _SUMMARY.search(self.stderr)
        if match is None:
            raise ValueError(f"no summary in: {self.stderr[-500:]}")
        return float(match.group(1)), float(match.group(2))


def run_child(
    argv: Sequence[str], *, stdout: Path | None = None, timeout: float = CHILD_TIMEOUT
) -> ChildRun:
    """Run a command to its end: wall time and the peak RSS of that child alone.

    The peak is the kernel's high-water mark of the child's own memory
    (``VmHWM``), read every :data:`_POLL` seconds while it runs. Not
    ``ru_maxrss``: that survives ``exec`` and so starts at the size of the
    forking parent, which here holds matplotlib. stderr goes to a file, not
    a pipe, so a chatty child can never block on a full pipe. A child still
    running after ``timeout`` seconds is killed and the run fails.

    The CPU is what ``getrusage(RUSAGE_CHILDREN)`` gained while this child
    ran: the kernel adds a child's time there when it is reaped, and nothing
    else is reaped meanwhile (the servers outlive every run).
    """
    cpu_before = _children_cpu()
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(tempfile.TemporaryFile())
        out = stack.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        peak_kib = 0
        while (code := process.poll()) is None:
            peak_kib = max(peak_kib, _high_water_kib(process.pid))
            if time.perf_counter() - started > timeout:
                process.kill()
                process.wait()
                raise RuntimeError(f"{argv[:4]} ran over {timeout:.0f} s and was killed")
            time.sleep(_POLL)
        wall = time.perf_counter() - started
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if code not in (0, 1):
        raise RuntimeError(f"{argv[:4]} exited {code}: {text[-2000:]}")
    return ChildRun(wall, peak_kib / 1024, code, text, _children_cpu() - cpu_before)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: Seconds between two looks at a running child (its exit and its memory).
_POLL = 0.02


def _high_water_kib(pid: int) -> int:
    """The process's peak resident set so far (``VmHWM``), in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ocr_async_run(base_url: str, output: Path, *args: str) -> list[str]:
    """The argv of an ``ocr-async run`` against ``base_url``, writing ``output``."""
    return [
        sys.executable, "-m", "ocr_async", "run", "--base-url", base_url,
        "-o", str(output), "--overwrite", *args,
    ]  # fmt: skip


def peer_run(kind: str, base_url: str, paths: Path, output: Path, concurrency: int) -> list[str]:
    """The argv of a Python peer (:mod:`benchmarks.peers`)."""
    return [
        sys.executable, "-m", "benchmarks.peers", kind, base_url,
        str(paths), str(output), str(concurrency),
    ]  # fmt: skip


@dataclass(frozen=True, order=True)
class Measurement:
    """One timed run. Ordered by ``rate``, so a median is a real run."""

    #: images/s from the start of the work (interpreter start-up excluded).
    rate: float
    #: images/s over the whole process, start-up included.
    wall_rate: float
    #: Emulator CPU per call during the run, in milliseconds.
    server_cpu_ms: float


def measure(
    emulator: Emulator,
    count: int,
    argv: Sequence[str],
    *,
    summary: bool = True,
    stdout: Path | None = None,
) -> Measurement:
    """Run one client over ``count`` images; check that every one got its answer.

    ``summary``: the client prints ``N images/s over S s`` (ocr-async and the
    Python peers); otherwise (curl) the rate is over the whole process.
    """
    emulator.reset()
    cpu = emulator.cpu_seconds()
    run = run_child(argv, stdout=stdout)
    cpu = emulator.cpu_seconds() - cpu
    stats = emulator.stats()
    if stats.answered_ok != count:
        raise RuntimeError(f"{argv[:5]}: {stats.answered_ok} of {count} answered ok")
    wall_rate = count / run.wall_s
    rate = run.summary()[0] if summary else wall_rate
    return Measurement(rate, wall_rate, 1000 * cpu / max(stats.requests, 1))


def in_turns(
    contenders: dict[str, Callable[[], T]], repeats: int, *, once: Iterable[str] = ()
) -> dict[str, list[T]]:
    """Every run of each contender, the contenders measured in turns ``repeats`` times.

    Turns (A, B, A, B ...) rather than blocks (A, A, B, B) spread the
    machine's drift over every contender alike. Those named in ``once`` are
    measured in the first turn only (slow references far from the others).
    """
    results: dict[str, list[T]] = {name: [] for name in contenders}
    skip = frozenset(once)
    for turn in range(repeats):
        for name, run in contenders.items():
            if turn == 0 or name not in skip:
                results[name].append(run())
    return results


def interleaved(
    contenders: dict[str, Callable[[], Measurement]], repeats: int, *, once: Iterable[str] = ()
) -> dict[str, Measurement]:
    """Each contender's median run, measured :func:`in_turns`.

    The median is a real run (the lower middle one for an even count).
    """
    results = in_turns(contenders, repeats, once=once)
    return {name: statistics.median_low(runs) for name, runs in results.items()}


# --- sampling the emulator over time ----------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The emulator's counters at ``t`` seconds after sampling began."""

    t: float
    stats: Stats


@dataclass
class Sampler:
    """Reads the emulator's counters every ``interval`` seconds in a thread."""

    emulator: Emulator
    interval: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        started = time.monotonic()
        while True:
            self.samples.append(Sample(time.monotonic() - started, self.emulator.stats()))
            if self._stop.wait(self.interval):
                self.samples.append(Sample(time.monotonic() - started, self.emulator.stats()))
                return


@contextlib.contextmanager
def sampling(emulator: Emulator, interval: float = 0.5) -> Iterator[Sampler]:
    """Sample the emulator's counters for the duration of the block."""
    sampler = Sampler(emulator, interval)
    thread = threading.Thread(target=sampler._loop, name="stats-sampler", daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler._stop.set()
        thread.join(10)


# --- inputs -----------------------------------------------------------------------------


def make_image_folder(root: Path, count: int) -> Path:
    """``count`` small PNGs, each with its own embedded text, 1,000 per subfolder."""
    for n in range(count):
        folder = root / f"d{n // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{n:06d}.png").write_bytes(make_png(f"bench {n}"))
    return root


#: ext4 allows 65,000 links to one inode.
_LINKS_PER_FILE = 50_000


def make_linked_folder(root: Path, count: int) -> Path:
    """One flat folder of ``count`` PNG names, hard links to a few real files.

    Much faster to create than ``count`` files (100,000 in about 2 s), and the
    same to a client that lists the folder and reads the files.
    """
    root.mkdir(parents=True)
    sources: list[Path] = []
    for n in range(count):
        if n % _LINKS_PER_FILE == 0:
            sources.append(root.parent / f"{root.name}-source{len(sources)}.png")
            sources[-1].write_bytes(make_png(f"start-up {len(sources)}"))
        os.link(sources[-1], root / f"img{n:06d}.png")
    return root


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    """Write one item a line."""
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(f"{line}\n")
    return path


def image_paths(folder: Path) -> list[str]:
    """The PNG files under ``folder``, sorted, as ocr-async walks them."""
    return sorted(str(path) for path in folder.rglob("*.png"))
