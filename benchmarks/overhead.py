"""Client overhead against a server that costs nothing: CPU per image and rate (issue 10).

    python -m benchmarks.overhead                  # 3,000 images, 5 turns: about 3 minutes
    python -m benchmarks.overhead --quick          # 1,000 images, 2 turns: under a minute
    python -m benchmarks.overhead --profile DIR    # also one py-spy run of each, summarised
    python -m benchmarks.overhead --latency 0.1    # the API's regime: 800 images, 3 turns

The server is Debian's nginx on 127.0.0.1 answering every POST to
``/v1.1/appkeys/{k}/general`` with the same success envelope
(:data:`ENVELOPE`), so nearly all the CPU a run costs is the client's. The
clients, each a child process given the same small PNGs, ``C = 16``, run in
turns (A, B, C, ..., A, B, C, ...):

* ``aiohttp``: the bare loop of :mod:`benchmarks.peers` (semaphore and
  ``gather``, files read on the event loop, JSON parsed, a line written);
* ``aiohttp-thread``: the same with each file read in a worker thread, as
  ocr-async reads them;
* ``ocr-async run``: the command line on the folder, records to a file;
* ``ocr-async run --no-adapt``: the same without the rate controller, whose
  start-up climb (from 10 calls/s, doubling every 0.15 s) paces the first
  second of a run;
* ``recognize_many``: the library over the list of paths, records written
  by :func:`ocr_async.outputs.jsonl.encode_record`.

Each child runs under :mod:`benchmarks.worktime`, which reports the CPU it
used (user plus system, all threads) once its imports were done. Per image,
that is the *CPU per image*; the rate is the child's own ``N images/s``,
start-up excluded, as everywhere in these benchmarks. A run counts only when
the server saw exactly one call per image and every output line is a success.

``--latency S`` runs the same against the emulator (``ocr-async serve
--latency S``, its embedded engine) instead: the API's regime, where each
answer takes a while and the client is mostly idle, so every step of an
image runs on a cold event loop and thread pool. The emulator's own CPU is
not counted: only the client's is measured. docs/benchmarks.md gives the
latest figures and the profile.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import (
    Emulator,
    Nginx,
    emulator_process,
    image_paths,
    in_turns,
    machine,
    make_image_folder,
    ocr_async_run,
    peer_run,
    run_child,
    static_nginx_process,
    write_lines,
)
from benchmarks.peers import KINDS
from benchmarks.run import Row, Target, render

#: What nginx answers every call: the real shape of a success (API-FACTS.md,
#: "The real shape of ``result``"), one line of two words as the emulator
#: finds on these images, compact as the API sends it.
ENVELOPE = (
    '{"header":{"isSuccessful":true,"resultCode":0,"resultMessage":"SUCCESS"},'
    '"result":{"fileType":"png","resolution":"low","listOfInferTexts":[{"inferTexts":'
    '[{"value":"bench","conf":0.9987},{"value":"42","conf":0.9921}]}],'
    '"listOfBoundingBoxes":[{"boundingBoxes":['
    '{"x1":10,"y1":12,"x2":58,"y2":12,"x3":58,"y3":30,"x4":10,"y4":30},'
    '{"x1":64,"y1":12,"x2":90,"y2":12,"x3":90,"y3":30,"x4":64,"y4":30}]}]}}'
)
CONCURRENCY = 16
#: The targets of issue 10, against the bare loop.
CPU_TARGET = 1.2
RATE_TARGET = 0.9
REFERENCE = "aiohttp"
OURS = "ocr-async run"
#: The same without the adaptive rate controller: what its start-up costs.
NO_ADAPT = "ocr-async run --no-adapt"
#: :data:`benchmarks.worktime.LINE`, read back.
_WORK_CPU = re.compile(r"work CPU ([0-9.]+) s")


@dataclass(frozen=True)
class Run:
    """One client run over every image."""

    #: Images per second from the start of the work (start-up excluded).
    rate: float
    #: CPU per image in ms, imports and start-up excluded.
    cpu_ms: float
    #: CPU per image in ms over the whole process, start-up included.
    process_cpu_ms: float
    wall_s: float


def timed(argv: Sequence[str]) -> list[str]:
    """The same ``python -m MODULE ...`` command, under :mod:`benchmarks.worktime`.

    ``python -m ocr_async`` becomes ``ocr_async.cli``'s ``main`` (the
    package's ``__main__`` exits on import); a peer preloads the module its
    kind needs, so that importing it is not counted as work.
    """
    python, flag, module, *rest = argv
    if flag != "-m":
        raise ValueError(f"not a 'python -m' command: {argv[:3]}")
    preload: list[str] = []
    if module == "ocr_async":
        module = "ocr_async.cli"
    elif module == "benchmarks.peers":
        preload = ["--preload", KINDS[rest[0]]]
    return [python, "-m", "benchmarks.worktime", *preload, module, *rest]


def _answered_ok(line: str) -> bool:
    document = json.loads(line)
    if "ok" in document:  # an ocr-async record
        return document["ok"] is True
    header = document.get("answer", {}).get("header", {})  # a peer's line
    return header.get("isSuccessful") is True


#: The server a run is measured against.
Server = Nginx | Emulator


def _calls(server: Server) -> int:
    """OCR calls the server has seen so far."""
    return server.calls()[0] if isinstance(server, Nginx) else server.stats().requests


def measure(server: Server, argv: Sequence[str], count: int, out: Path) -> Run:
    """Run one client; check one call per image and a success line per image."""
    calls_before = _calls(server)
    run = run_child(argv)
    calls = _calls(server) - calls_before
    if calls != count:
        raise RuntimeError(f"{argv[3:6]}: the server saw {calls} calls for {count} images")
    lines = out.read_text(encoding="utf-8").splitlines()
    ok = sum(_answered_ok(line) for line in lines)
    if len(lines) != count or ok != count:
        raise RuntimeError(f"{argv[3:6]}: {len(lines)} lines, {ok} ok, for {count} images")
    work = _WORK_CPU.search(run.stderr)
    if work is None:
        raise RuntimeError(f"{argv[3:6]}: no CPU line in {run.stderr[-500:]}")
    per_image = 1000.0 / count
    return Run(
        run.summary()[0], float(work.group(1)) * per_image, run.cpu_s * per_image, run.wall_s
    )


def commands(base_url: str, folder: Path, paths: Path, out: Path) -> dict[str, list[str]]:
    """Every contender's command line, under :mod:`benchmarks.worktime`."""
    c = CONCURRENCY
    return {
        "aiohttp": timed(peer_run("aiohttp", base_url, paths, out, c)),
        "aiohttp-thread": timed(peer_run("aiohttp-thread", base_url, paths, out, c)),
        OURS: timed(ocr_async_run(base_url, out, "--concurrency", str(c), str(folder))),
        NO_ADAPT: timed(
            ocr_async_run(base_url, out, "--concurrency", str(c), "--no-adapt", str(folder))
        ),
        "recognize_many": timed(peer_run("library", base_url, paths, out, c)),
    }


# --- the table --------------------------------------------------------------------------


def _median(runs: Sequence[Run], key: Callable[[Run], float]) -> float:
    return statistics.median(key(run) for run in runs)


def _spread(runs: Sequence[Run], key: Callable[[Run], float], fmt: str) -> str:
    values = sorted(key(run) for run in runs)
    return f"{format(values[0], fmt)}-{format(values[-1], fmt)}"


#: The two measures of a row: (what, how to read it off a run, format, target).
_MEASURES: tuple[tuple[str, Callable[[Run], float], str, Target], ...] = (
    ("CPU ms per image", lambda r: r.cpu_ms, ".3f", Target("ratio", "<=", CPU_TARGET)),
    ("images/s", lambda r: r.rate, ".0f", Target("ratio", ">=", RATE_TARGET)),
)


def rows(
    results: dict[str, list[Run]], count: int, section: str = "overhead, static nginx"
) -> list[Row]:
    """CPU per image and rate of each contender against the bare loop.

    Medians over the turns; the note gives every run's range, and for CPU
    the whole process's figure (interpreter start-up and imports included).
    """
    reference = results[REFERENCE]
    setting = f"{count:,} PNGs, C={CONCURRENCY}"
    table: list[Row] = []
    for name, runs in results.items():
        if name == REFERENCE:
            continue
        for what, key, fmt, target in _MEASURES:
            note = f"runs {_spread(runs, key, fmt)} vs {_spread(reference, key, fmt)}"
            if what.startswith("CPU"):
                process = (_median(r, lambda x: x.process_cpu_ms) for r in (runs, reference))
                note += "; whole process {:.3f} vs {:.3f}".format(*process)
            table.append(
                Row(
                    section,
                    f"{name} vs bare aiohttp loop: {what} ({setting})",
                    _median(runs, key),
                    _median(reference, key),
                    (target,) if name == OURS else (),
                    note,
                )
            )
    return table


# --- profiles ---------------------------------------------------------------------------

#: Where a sample's innermost frame is, by its file as py-spy shows it
#: (relative to ``sys.path``): the first prefix that matches names its group.
_GROUPS: tuple[tuple[str, str], ...] = (
    ("ocr_async/", "ocr_async"),
    ("benchmarks/", "benchmarks"),
    ("tenacity/", "tenacity"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "yarl, multidict"),
    ("multidict/", "yarl, multidict"),
    ("aiofiles/", "aiofiles"),
    ("tqdm/", "tqdm"),
    ("json/", "json"),
    ("asyncio/", "asyncio"),
    ("selectors.py", "selectors (epoll)"),
    ("concurrent/", "threads (executor)"),
    ("threading.py", "threads (executor)"),
    ("logging/", "logging"),
    ("pathlib.py", "pathlib"),
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Profile:
    """py-spy's samples of one run's work (imports left out), by thread, group, function."""

    samples: int
    by_thread: Counter[str]
    self_time: Counter[str]
    total_time: Counter[str]
    groups: Counter[str]

    def summary(self, top: int = 25) -> str:
        """A few tables of shares, as text."""
        n = max(self.samples, 1)

        def table(title: str, counts: Counter[str], limit: int) -> list[str]:
            lines = [f"{title}:"]
            lines += [f"  {100 * c / n:5.1f} %  {name}" for name, c in counts.most_common(limit)]
            return lines

        out = [f"{self.samples} samples"]
        out += table("by thread", self.by_thread, 4)
        out += table("by where the innermost frame is", self.groups, 20)
        out += table("by function, self", self.self_time, top)
        out += table("by function, inclusive (ocr_async and benchmarks only)", self.total_time, top)
        return "\n".join(out)


def _group(file: str) -> str:
    for prefix, group in _GROUPS:
        if file.startswith(prefix) or f"/{prefix}" in file:
            return group
    return "other"


def read_profile(path: Path) -> Profile:
    """Read py-spy's ``--format raw --threads`` output (collapsed stacks).

    Samples taken while :mod:`benchmarks.worktime` imports are left out, as
    its CPU figure leaves them out. A thread started by ``threading`` is a
    worker thread; the one that runs ``main`` is the event loop's.
    """
    by_thread: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_FRAME.match(frame) for frame in stack.split(";")[1:]]
        parsed = [(m["function"], m["file"]) for m in frames if m is not None]
        if not parsed or any(
            fn == "main" and file == "benchmarks/worktime.py" and nxt[0] == "import_module"
            for (fn, file), nxt in itertools.pairwise(parsed)
        ):
            continue
        samples += count
        worker = any(fn.endswith("_bootstrap") and file == "threading.py" for fn, file in parsed)
        by_thread["worker threads" if worker else "main thread (event loop)"] += count
        function, file = parsed[-1]
        self_time[f"{function} ({file})"] += count
        groups[_group(file)] += count
        for name in {f"{fn} ({f})" for fn, f in parsed if _group(f) in ("ocr_async", "benchmarks")}:
            total_time[name] += count
    return Profile(samples, by_thread, self_time, total_time, groups)


def profile(name: str, argv: Sequence[str], out: Path, rate: int = 1000) -> Profile:
    """One run of ``argv`` under ``py-spy record``; its samples, summarised."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(binary):
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    raw = out.with_suffix(".txt")
    # --nonblocking: sampling does not stop the process, so it runs at speed.
    # --gil: only the thread holding the GIL is sampled, which is the Python
    # work; py-spy cannot tell a thread blocked on a lock or in epoll from
    # one that runs, so without it idle pool threads fill the profile.
    record = [
        binary, "record", "--nonblocking", "--gil", "--threads", "--rate", str(rate),
        "--format", "raw", "-o", str(raw), "--",
    ]  # fmt: skip
    run_child([*record, *argv])
    summary = read_profile(raw)
    out.with_suffix(".summary.txt").write_text(f"{name}\n{summary.summary()}\n", encoding="utf-8")
    return summary


# --- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Run the comparison and print the table (and the profiles with ``--profile``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 images, 2 turns")
    parser.add_argument("--images", type=int, help="images per run (default 3,000; quick 1,000)")
    parser.add_argument("--turns", type=int, help="turns (default 7; quick 2)")
    parser.add_argument(
        "--latency", type=float, metavar="S",
        help="against the emulator answering after S seconds instead of nginx "
        "(default 800 images, 3 turns)",
    )  # fmt: skip
    parser.add_argument(
        "--only", action="append", choices=["aiohttp-thread", OURS, NO_ADAPT, "recognize_many"],
        help="contenders besides the bare loop (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="also profile one run of each with py-spy"
    )
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args(argv)
    slow = args.latency is not None
    # (quick, full) images: a run at 100 ms a call does 16 in 0.1 s.
    sizes = (300, 800) if slow else (1000, 3000)
    count = args.images or sizes[0 if args.quick else 1]
    turns = args.turns or (2 if args.quick else 3 if slow else 7)
    if slow:
        section = f"overhead, emulator {args.latency * 1000:g} ms"
        server_process: contextlib.AbstractContextManager[Server] = emulator_process(
            "--latency", str(args.latency)
        )
    else:
        section, server_process = "overhead, static nginx", static_nginx_process(ENVELOPE)
    started = time.perf_counter()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ocr-async-overhead-") as scratch:
        root = Path(scratch)
        folder = make_image_folder(root / "images", count)
        paths = write_lines(root / "images.txt", image_paths(folder))
        out = root / "out.jsonl"
        with server_process as server:
            argvs = commands(server.base_url, folder, paths, out)
            chosen = {REFERENCE, *(args.only or argvs)}
            argvs = {name: argv for name, argv in argvs.items() if name in chosen}
            # One run of each first, not counted: the page cache, the
            # interpreter's bytecode caches and the server's first connections.
            for argv in argvs.values():
                measure(server, argv, count, out)
            results = in_turns(
                {name: _runner(server, argv, count, out) for name, argv in argvs.items()}, turns
            )
            profiles: dict[str, Profile] = {}
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for name, argv in argvs.items():
                    print(f"profiling {name} ...", file=sys.stderr, flush=True)
                    slug = re.sub(r"[^a-z0-9]+", "-", name.lower())
                    profiles[name] = profile(name, argv, args.profile / slug)
    elapsed = time.perf_counter() - started
    print(f"machine: {machine()}")
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load)}; after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{count:,} images, {turns} turns; {elapsed:.0f} s in all\n")
    print(render(rows(results, count, section)))
    for name, summary in profiles.items():
        print(f"\n## profile: {name}\n{summary.summary()}")
    if args.json:
        document = {name: [asdict(run) for run in runs] for name, runs in results.items()}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _runner(server: Server, argv: Sequence[str], count: int, out: Path) -> Callable[[], Run]:
    return lambda: measure(server, argv, count, out)


if __name__ == "__main__":
    main()
