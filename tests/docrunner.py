"""The runner of the docs' examples: blocks read from Markdown, run in a sandbox.

tests/test_docs.py runs every block of docs/*.md and README.md with it.

How a fenced block is treated, by its language:

- ``python``: run as a script (``python block.py``) in a fresh copy of a
  sandbox folder that holds the files the examples name (``scans/``,
  ``urls.txt``, ``scan.png`` ...), with ``NHN_OCR_BASE_URL``,
  ``NHN_OCR_APPKEY`` and ``NHN_OCR_TOKEN`` pointing at an emulator. It must
  exit 0.
- ``sh``: each command line (``\\`` continuations joined) runs in bash in the
  same sandbox, in order, and must exit 0 unless its comment says ``exits N``.
- ``console``: ``$ `` lines are commands; the lines after one are its
  expected output (standard output and error together). ``...`` inside a line
  matches any text, and a line that is only ``...`` matches any number of
  lines. A non-zero exit must be shown by a following ``echo $?``.
- ``json``: must parse; an object with ``source`` and ``ok`` is validated as
  a record.
- ``text`` and ``jsonl`` show output or syntax and are not run.

An HTML comment right before a block changes that:

- ``<!-- not-run: REASON -->``: not run (counted and capped below);
- ``<!-- excerpt: PATH -->``: the block must appear verbatim in PATH, a file
  that another test runs (``tests/test_examples.py``);
- ``<!-- run-with: pytest -->``: the block is a test module, run by pytest;
- ``<!-- env: uak -->``: run against an emulator that accepts only tokens
  issued from a User Access Key given in ``NHN_UAK_ID``/``NHN_UAK_SECRET``;
- ``<!-- setup: COMMAND -->``: run COMMAND in the sandbox first (for a block
  that continues from the one before it).

A few substitutions make examples runnable here: ``https://images.example.com``
becomes a loopback image host (on a port the API allows for ``imageUrl``);
``ocr-async serve`` gets a free ``--port`` and is stopped with Ctrl-C once it
says it is serving; and the README's Python example, which relies on the
library's default host, gets that default pointed at the emulator. Every
process started here can reach loopback addresses only (a ``sitecustomize``
refuses anything else), so no example can touch the network.

Every JSONL record that a block leaves in its sandbox, and every record
printed on standard output, is validated against docs/record.schema.json.

The pieces: :func:`extract_blocks` reads the blocks, :func:`open_world`
starts the servers and builds the sandbox template, :func:`run_block` runs
one block in a fresh sandbox and fails (``assert``) where the doc is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from aiohttp import web

from ocr_async.emulator import (
    EmulatorConfig,
    RunningEmulator,
    find_free_port,
    make_jpeg,
    make_png,
    running_emulator,
)

ROOT = Path(__file__).resolve().parent.parent

APPKEY = "docs-appkey"
TOKEN = "docs-token"
UAK_ID = "docs-uak-id"
UAK_SECRET = "docs-uak-secret"
IMAGE_HOST_PLACEHOLDER = "https://images.example.com"
COMMAND_TIMEOUT = 60.0

RUN_LANGUAGES = frozenset({"python", "sh", "console"})
SHOWN_LANGUAGES = frozenset({"text", "jsonl"})

#: A marker for the blocks whose text a pattern finds, for files whose
#: blocks cannot carry their own (see :func:`extract_blocks`).
DefaultMarkers = Sequence[tuple[re.Pattern[str], str]]


# --- reading the docs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block and the marker before it."""

    path: Path
    line: int
    language: str
    text: str
    #: ("not-run", reason), ("excerpt", path), ("run-with", "pytest"), ("env", "uak"),
    #: ("setup", command run first)
    marker: tuple[str, str] | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"^<!--\s*(not-run|excerpt|run-with|env|setup)\s*:\s*(.*?)\s*-->$")


def extract_blocks(path: Path, default_markers: DefaultMarkers = ()) -> list[Block]:
    """The fenced blocks of a Markdown file, with their markers.

    A block without a marker of its own takes the first of
    ``default_markers`` whose pattern finds its text (``"kind: value"``).
    """
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    marker: tuple[str, str] | None = None
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        found = _MARKER.match(stripped)
        if found:
            marker = (found.group(1), found.group(2))
            index += 1
            continue
        opening = _FENCE.match(line)
        if opening is None:
            if stripped:
                marker = None  # a marker applies to the very next block only
            index += 1
            continue
        fence = opening.group("fence")
        body: list[str] = []
        start = index + 1
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        text = "\n".join(body) + "\n"
        if marker is None:
            for pattern, wanted in default_markers:
                if pattern.search(text):
                    kind, _, value = wanted.partition(": ")
                    marker = (kind, value)
                    break
        blocks.append(Block(path, start, opening.group("info").lower(), text, marker))
        marker = None
    return blocks


def kind(block: Block) -> str:
    """``run``, ``json``, ``excerpt``, ``not-run`` or ``shown``: what the tests do with a block."""
    if block.marker is not None and block.marker[0] in ("not-run", "excerpt"):
        return block.marker[0]
    if block.language in RUN_LANGUAGES:
        return "run"
    if block.language == "json":
        return "json"
    return "shown"


# --- the world the examples run in -----------------------------------------------------


class Services:
    """The emulators and an image host, served from a thread of their own.

    The tests here are synchronous (they wait on subprocesses), so the
    servers get their own event loop.
    """

    def __init__(self, hosted: Path) -> None:
        self._hosted = hosted
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self.emulator: RunningEmulator
        self.uak_emulator: RunningEmulator
        self.image_host = ""

    def __enter__(self) -> Services:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stack.aclose(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        stack = self._stack
        # Any app key and token: the README's example passes "..." for both.
        self.emulator = await stack.enter_async_context(running_emulator(EmulatorConfig()))
        # Only tokens issued from the User Access Key: proves the OAuth path is taken.
        uak_config = EmulatorConfig(uak={UAK_ID: UAK_SECRET})
        self.uak_emulator = await stack.enter_async_context(running_emulator(uak_config))
        app = web.Application()
        app.router.add_static("/", self._hosted)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        port = find_free_port(10000, 12000)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.image_host = f"http://127.0.0.1:{port}"


SCAN_TEXTS = {
    "scans/p1.png": "stella artois\nbelgium",
    "scans/p2.png": "invoice 2026-11",
    "scans/p3.jpg": "page three",
    "scans/box1/p4.png": "receipt total 12,000",
}

# Lets examples reach this machine only: a forgotten base URL fails at once
# instead of calling the real API.
NETWORK_GUARD = """\
import ipaddress
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _check(host):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return
    name = host.strip("[]").split("%")[0].lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return
    try:
        if ipaddress.ip_address(name).is_loopback:
            return
    except ValueError:
        pass
    raise OSError(f"docs test: only loopback addresses may be reached, not {host!r}")


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address[0])
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address[0])
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host is not None:
        _check(host)
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = getaddrinfo
"""

# The README's example relies on the library's default host: point that
# default at the emulator (only for README blocks).
README_PRELUDE = """\
import os
import runpy
import sys

from ocr_async.client import OcrClient

OcrClient.__init__.__kwdefaults__["base_url"] = os.environ["NHN_OCR_BASE_URL"]
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def _write_sandbox(root: Path, hosted: Path, image_host: str) -> None:
    for name, text in SCAN_TEXTS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_jpeg(text) if name.endswith(".jpg") else make_png(text))
        shutil.copy(path, hosted / path.name)
    (root / "scans" / "box1" / "notes.txt").write_text("not an image\n")
    (root / "scan.png").write_bytes(make_png("hello world"))
    (root / "a.png").write_bytes(make_png("first page"))
    (root / "b.jpg").write_bytes(make_jpeg("second page"))
    (root / "bad").mkdir()
    (root / "bad" / "empty.png").write_bytes(b"")
    (root / "bad" / "notes.png").write_text("a text file named like an image\n")
    (root / "bad" / "good.png").write_bytes(make_png("good"))
    (root / "token.txt").write_text(TOKEN + "\n")
    hosted_names = ["p1.png", "p2.png", "p3.jpg"]
    (root / "urls.txt").write_text(
        "# scans on the image host\n\n" + "".join(f"{image_host}/{name}\n" for name in hosted_names)
    )
    signature = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=0f1e2d3c"
    (root / "signed-urls.txt").write_text(
        "".join(f"{image_host}/{name}?{signature}\n" for name in hosted_names)
    )
    _write_mixed(root / "mixed")
    _write_archive(root / "archive")


def _write_mixed(folder: Path) -> None:
    """Files for --convert --shrink --endpoint auto (needs Pillow, in the test extra)."""
    from PIL import Image

    folder.mkdir()
    pages = [Image.new("L", (200, 100), color) for color in (255, 200, 150)]
    pages[0].save(folder / "letter.tiff", save_all=True, append_images=pages[1:])
    Image.new("RGB", (120, 80), "white").save(folder / "photo.bmp")
    (folder / "receipt.png").write_bytes(make_png("total 12,000", width=100, height=400))
    # About 6 MB of noise: over the 5 MB limit until --shrink re-encodes it.
    noise = Image.frombytes("RGB", (1500, 1400), os.urandom(1500 * 1400 * 3))
    noise.save(folder / "big.png", compress_level=1)


def _write_archive(folder: Path) -> None:
    """Scans to digitize: PDFs (the 'pdf' extra), a 2-page TIFF and a photo."""
    from pdfs import text_pdf
    from PIL import Image

    folder.mkdir()
    report = [("P", "Annual report 2026"), ("L", "연간 보고서"), ("P", "Appendix")]
    (folder / "report.pdf").write_bytes(text_pdf(report))
    (folder / "memo.pdf").write_bytes(text_pdf([("P", "Memo to all staff")]))
    pages = [Image.new("L", (300, 200), color) for color in (255, 230)]
    pages[0].save(folder / "letter.tiff", save_all=True, append_images=pages[1:])
    (folder / "photo.png").write_bytes(make_png("a photo caption"))


@dataclass(slots=True)
class World:
    """What a block needs to run: servers, the sandbox template, the environment."""

    services: Services
    template: Path
    guard: Path
    validator: jsonschema.Draft202012Validator
    records_validated: int = 0

    def environment(self, uak: bool) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("NHN_", "PYTEST_"))
        }
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(self.guard), env.get("PYTHONPATH", "")) if part
        )
        env["NHN_OCR_APPKEY"] = APPKEY
        if uak:
            emulator = self.services.uak_emulator
            env["NHN_UAK_ID"] = UAK_ID
            env["NHN_UAK_SECRET"] = UAK_SECRET
            env["NHN_OAUTH_URL"] = emulator.base_url
        else:
            emulator = self.services.emulator
            env["NHN_OCR_TOKEN"] = TOKEN
        env["NHN_OCR_BASE_URL"] = emulator.base_url
        env["COLUMNS"] = "100"
        return env

    def sandbox(self, tmp_path: Path) -> Path:
        target = tmp_path / "work"
        shutil.copytree(self.template, target, symlinks=True)
        return target

    def validate_line(self, line: str, where: str) -> bool:
        """Validate ``line`` if it is a record; True when it was one."""
        try:
            document = json.loads(line)
        except ValueError:
            return False
        # A record has at least these two; a jq projection such as {source, text} is not one.
        if not isinstance(document, dict) or "source" not in document or "ok" not in document:
            return False
        errors = sorted(self.validator.iter_errors(document), key=str)
        assert not errors, f"{where}: record does not match the schema: {errors[0].message}"
        self.records_validated += 1
        return True

    def validate_sandbox(self, sandbox: Path) -> int:
        count = 0
        for path in sorted(sandbox.rglob("*.jsonl")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                count += self.validate_line(line, f"{path.relative_to(sandbox)}:{number}")
        return count


@contextlib.contextmanager
def open_world(base: Path, schema_path: Path) -> Iterator[World]:
    """Servers running and a sandbox template built under ``base``, until the block ends."""
    hosted = base / "hosted"
    hosted.mkdir()
    guard = base / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    with Services(hosted) as services:
        template = base / "template"
        template.mkdir()
        _write_sandbox(template, hosted, services.image_host)
        yield World(services, template, guard, validator)


# --- running blocks ----------------------------------------------------------------------


def _substitute(text: str, world: World) -> str:
    return text.replace(IMAGE_HOST_PLACEHOLDER, world.services.image_host)


def _shell_commands(block: Block) -> list[str]:
    """The commands of an ``sh`` block, continuations joined; comments and blanks dropped."""
    commands: list[str] = []
    pending = ""
    for line in block.lines:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    assert not pending, f"{block.id}: a continuation line ends the block"
    return commands


_EXPECTED_EXIT = re.compile(r"#.*\bexits?\s+(\d+)")


def _expected_exit(command: str) -> int:
    found = _EXPECTED_EXIT.search(command)
    return int(found.group(1)) if found else 0


@dataclass(slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _run_command(command: str, sandbox: Path, env: dict[str, str], *, merge: bool) -> Ran:
    if re.match(r"\s*ocr-async serve\b", command):
        return _run_serve(command, sandbox, env)
    process = subprocess.run(
        ["bash", "-c", command],
        cwd=sandbox,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        timeout=COMMAND_TIMEOUT,
        text=True,
        check=False,
    )
    return Ran(process.returncode, process.stdout, process.stderr or "")


def _run_serve(command: str, sandbox: Path, env: dict[str, str]) -> Ran:
    """``ocr-async serve`` on a free port until it says it serves, then Ctrl-C."""
    command = command.split("#", 1)[0]
    port = str(find_free_port(10000, 12000))
    if re.search(r"--port\s+\d+", command):
        command = re.sub(r"--port\s+\d+", f"--port {port}", command)
    else:
        command += f" --port {port}"
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=sandbox,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        banner = process.stderr.readline()  # the emulator prints one line when ready
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"127.0.0.1:{port}" in banner, f"serve did not start: {banner}{stderr}"
    # Ctrl-C is how the emulator stops: 130 is its clean exit.
    return Ran(0 if process.returncode == 130 else process.returncode, stdout, banner + stderr)


def _check_no_traceback(block: Block, command: str, ran: Ran) -> None:
    output = ran.stdout + ran.stderr
    assert "Traceback (most recent call last)" not in output, (
        f"{block.id}: {command!r} crashed:\n{output[-3000:]}"
    )


def _validate_stdout(world: World, block: Block, ran: Ran) -> None:
    for line in ran.stdout.splitlines():
        if line.startswith("{"):
            world.validate_line(line, f"{block.id} (stdout)")


def _refuse_installs(block: Block, command: str) -> None:
    # Installing would change the environment every other test runs in.
    assert not re.match(r"\s*(sudo\s+)?(pip|pip3|apt-get|apt)\s+install\b", command), (
        f"{block.id}: {command!r} installs packages: mark the block <!-- not-run: ... -->"
    )


def run_sh(block: Block, world: World, sandbox: Path, env: dict[str, str]) -> None:
    for command in _shell_commands(block):
        _refuse_installs(block, command)
        command = _substitute(command, world)
        ran = _run_command(command, sandbox, env, merge=False)
        _check_no_traceback(block, command, ran)
        expected = _expected_exit(command)
        assert ran.returncode == expected, (
            f"{block.id}: {command!r} exited {ran.returncode}, expected {expected}\n"
            f"stdout:\n{ran.stdout[-2000:]}\nstderr:\n{ran.stderr[-2000:]}"
        )
        _validate_stdout(world, block, ran)


@dataclass(slots=True)
class ConsoleStep:
    command: str
    expected: list[str]


def _console_steps(block: Block) -> list[ConsoleStep]:
    steps: list[ConsoleStep] = []
    continuing = False
    for line in block.lines:
        if continuing:
            steps[-1].command += "\n" + line.removeprefix("> ")
            continuing = line.rstrip().endswith("\\")
        elif line.startswith("$ "):
            steps.append(ConsoleStep(line[2:], []))
            continuing = line.rstrip().endswith("\\")
        else:
            assert steps, f"{block.id}: output before the first '$ ' command"
            steps[-1].expected.append(line.rstrip())
    return steps


def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")) + r"\Z")


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` lines match ``expected`` with ``...`` wildcards (see the docstring)."""
    patterns = [None if line == "..." else _line_pattern(line) for line in expected]
    # reachable[j]: expected[:i] can match actual[:j]
    reachable = [True] + [False] * len(actual)
    for pattern in patterns:
        following = [False] * (len(actual) + 1)
        for j in range(len(actual) + 1):
            if pattern is None:
                following[j] = any(reachable[: j + 1])
            elif j > 0 and reachable[j - 1] and pattern.match(actual[j - 1]):
                following[j] = True
        reachable = following
    return reachable[len(actual)]


def run_console(block: Block, world: World, sandbox: Path, env: dict[str, str]) -> None:
    steps = _console_steps(block)
    previous = 0
    for index, step in enumerate(steps):
        _refuse_installs(block, step.command)
        command = _substitute(step.command, world)
        # '$?' in a command means the exit status of the one before, as in a terminal.
        ran = _run_command(f"(exit {previous}); {command}", sandbox, env, merge=True)
        _check_no_traceback(block, command, ran)
        acknowledged = index + 1 < len(steps) and steps[index + 1].command.strip() == "echo $?"
        expected_exit = _expected_exit(command)
        if not acknowledged:
            assert ran.returncode == expected_exit, (
                f"{block.id}: {command!r} exited {ran.returncode}:\n{ran.stdout[-3000:]}"
            )
        previous = ran.returncode
        actual = [line.rstrip() for line in ran.stdout.splitlines()]
        if step.expected:
            expected = [_substitute(line, world) for line in step.expected]
            assert output_matches(expected, actual), (
                f"{block.id}: output of {command!r} differs.\n"
                "expected:\n" + "\n".join(expected) + "\nactual:\n" + "\n".join(actual)
            )
        _validate_stdout(world, block, ran)


def run_python(block: Block, world: World, sandbox: Path, env: dict[str, str]) -> None:
    pytest_module = block.marker == ("run-with", "pytest")
    script = sandbox / ("test_doc_example.py" if pytest_module else "doc_example.py")
    script.write_text(_substitute(block.text, world), encoding="utf-8")
    if pytest_module:
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
    elif block.path.name == "README.md":
        (sandbox / "readme_prelude.py").write_text(README_PRELUDE)
        argv = [sys.executable, "readme_prelude.py", script.name]
    else:
        argv = [sys.executable, script.name]
    process = subprocess.run(
        argv,
        cwd=sandbox,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        text=True,
        check=False,
    )
    assert process.returncode == 0, (
        f"{block.id}: exited {process.returncode}\n"
        f"stdout:\n{process.stdout[-3000:]}\nstderr:\n{process.stderr[-3000:]}"
    )
    if pytest_module:
        assert re.search(r"\b\d+ passed\b", process.stdout), process.stdout
    script.unlink()
    _validate_stdout(world, block, Ran(process.returncode, process.stdout, process.stderr))


#: Programs the examples call besides ocr-async, python and coreutils.
OPTIONAL_TOOLS = ("jq",)


def run_block(block: Block, world: World, tmp_path: Path) -> None:
    """Run ``block`` in a fresh sandbox under ``tmp_path``; skip it if a tool it needs is absent."""
    for tool in OPTIONAL_TOOLS:
        calls = re.search(rf"(^|[|;&]\s*|\$ ){tool}\b", block.text, re.MULTILINE)
        if block.language != "python" and calls and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    sandbox = world.sandbox(tmp_path)
    env = world.environment(uak=block.marker == ("env", "uak"))
    if block.marker is not None and block.marker[0] == "setup":
        ran = _run_command(block.marker[1], sandbox, env, merge=True)
        assert ran.returncode == 0, f"{block.id}: setup failed:\n{ran.stdout}"
    if block.language == "python":
        run_python(block, world, sandbox, env)
    elif block.language == "sh":
        run_sh(block, world, sandbox, env)
    else:
        run_console(block, world, sandbox, env)
    world.validate_sandbox(sandbox)
    if block.marker == ("env", "uak"):
        assert world.services.uak_emulator.stats.tokens_issued >= 1
