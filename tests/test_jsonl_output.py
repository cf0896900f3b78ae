from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ocr_async.models import Endpoint, ErrorInfo, Record
from ocr_async.outputs import jsonl as sink_module
from ocr_async.outputs.jsonl import (
    JsonlSink,
    OutputExistsError,
    OutputLock,
    OutputLockError,
    encode_record,
)


def record(source: str, ok: bool = True, text: str | None = "hello") -> Record:
    return Record(
        source=source,
        ok=ok,
        endpoint=Endpoint.GENERAL,
        attempts=1,
        elapsed_ms=12.345,
        text=text if ok else None,
        result={"fileType": "png"} if ok else None,
        error=None if ok else ErrorInfo(4000003, "INVALID_FILE_TYPE", True, False),
    )


def test_encode_record_is_one_compact_utf8_line() -> None:
    line = encode_record(record("스캔.png", text="안녕 세계"))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert "안녕 세계".encode() in line  # readable, not \uXXXX
    assert json.loads(line) == {
        "source": "스캔.png",
        "ok": True,
        "endpoint": "general",
        "attempts": 1,
        "elapsed_ms": 12.3,
        "text": "안녕 세계",
        "result": {"fileType": "png"},
        "error": None,
        "transform": None,
    }


def test_encode_record_with_lone_surrogate_writes_a_replacement_character() -> None:
    # jq refuses a lone surrogate even escaped ("\\udcff"): it is no character.
    line = encode_record(record("bad\udcff.png"))
    assert strict_loads(line)["source"] == "bad\ufffd.png"


async def test_writes_every_record_in_order_and_flushes(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with JsonlSink(str(out)) as sink:
        for n in range(200):
            await sink.write(record(f"{n}.png", ok=n % 7 != 0))
    lines = out.read_bytes().splitlines()
    assert len(lines) == 200
    assert [json.loads(line)["source"] for line in lines] == [f"{n}.png" for n in range(200)]
    assert sink.written == 200


async def test_records_reach_the_file_before_close(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    await sink.open()
    try:
        await sink.write(record("a.png"))
        for _ in range(500):  # let the writer task and its thread run
            if out.read_bytes():
                break
            await asyncio.sleep(0.001)
        assert json.loads(out.read_bytes())["source"] == "a.png"
    finally:
        await sink.close()


async def test_refuses_to_clobber_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        await JsonlSink(str(out)).open()
    assert out.read_text() == "precious\n"


async def test_overwrite_and_append(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    async with JsonlSink(str(out), overwrite=True) as sink:
        await sink.write(record("a.png"))
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["a.png"]
    async with JsonlSink(str(out), append=True) as sink:
        await sink.write(record("b.png"))
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["a.png", "b.png"]


async def test_unwritable_location_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await JsonlSink(str(tmp_path / "no" / "such" / "dir.jsonl")).open()


async def test_write_before_open_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        await JsonlSink(str(tmp_path / "x.jsonl")).write(record("a.png"))


async def test_writer_failure_surfaces_on_next_write(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "x.jsonl"))
    await sink.open()

    class Broken:
        def write(self, data: bytes, /) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            return None

        def close(self) -> None:
            return None

        def fileno(self) -> int:
            return -1

    real = sink._handle
    sink._handle = Broken()
    await sink.write(record("a.png"))

    async def keep_writing() -> None:
        for _ in range(5000):  # the failure comes back from a worker thread
            await asyncio.sleep(0.001)
            await sink.write(record("b.png"))

    with pytest.raises(OSError, match="No space"):
        await keep_writing()
    sink._handle = real
    assert real is not None
    real.close()


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting what is handed to its threads."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.calls: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        # to_thread wraps the call in a context copy: name what it runs.
        inner = args[0] if args and callable(args[0]) else fn
        self.calls.append(getattr(inner, "__name__", repr(inner)))
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
async def executor() -> CountingExecutor:
    """The running loop's default executor, counting what it runs."""
    counting = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(counting)
    return counting


async def test_a_batch_of_records_costs_one_thread_hop(
    tmp_path: Path, executor: CountingExecutor
) -> None:
    # A hop is the event loop's dearest step after the request itself:
    # a batch is written and flushed in one, not one for each.
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    await sink.open()
    opened = len(executor.calls)
    text = "x" * 2000  # 50 of them are over 64 KiB: not written on the event loop
    for n in range(50):  # all queued before the writer task first runs
        await sink.write(record(f"{n}.png", text=text))
    await sink.close()
    assert sink.written == 50
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 50
    # The batch, then closing the file.
    assert len(executor.calls) - opened == 2, executor.calls[opened:]


async def test_a_small_batch_to_a_file_is_written_on_the_event_loop(
    tmp_path: Path, executor: CountingExecutor
) -> None:
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    await sink.open()
    opened = len(executor.calls)
    for n in range(50):
        await sink.write(record(f"{n}.png"))
    await sink.close()
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 50
    assert len(executor.calls) - opened == 1, executor.calls[opened:]  # closing the file


async def test_one_slow_small_write_sends_every_later_batch_to_a_thread(
    tmp_path: Path, executor: CountingExecutor
) -> None:
    ticks = iter([0.0, 0.01])  # the first write takes 10 ms
    sink = JsonlSink(str(tmp_path / "out.jsonl"), clock=lambda: next(ticks))
    await sink.open()
    opened = len(executor.calls)
    await sink.write(record("a.png"))
    await asyncio.sleep(0.01)  # the writer task writes it, on the loop
    assert executor.calls[opened:] == []
    await sink.write(record("b.png"))
    await sink.close()
    assert len(executor.calls) - opened == 2, executor.calls[opened:]  # b, and closing
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
async def test_a_fifo_is_always_written_from_a_thread(
    tmp_path: Path, executor: CountingExecutor
) -> None:
    # Its reader may be slow: a write could block the event loop.
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    sink = JsonlSink(str(fifo), overwrite=True)
    await sink.open()
    opened = len(executor.calls)
    await sink.write(record("a.png"))
    await sink.close()
    await asyncio.to_thread(reader.join, 5)
    assert got
    assert got[0].count(b"\n") == 1
    assert len(executor.calls) - opened >= 2, executor.calls[opened:]  # the batch, closing


# --- one run at a time on one output ----------------------------------------------


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_a_second_sink_on_the_same_output_is_refused_at_once(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(out)
    async with JsonlSink(str(out)) as first:
        await first.write(record("a.png"))
        assert (tmp_path / "out.jsonl.lock").read_text() == f"ocr-async pid {os.getpid()}\n"
        for second in (
            JsonlSink(str(out), overwrite=True),
            JsonlSink(str(out), append=True),
            JsonlSink(str(link), overwrite=True),  # another spelling of the same file
        ):
            with pytest.raises(
                OutputLockError, match=rf"is in use by another ocr-async run \(pid {os.getpid()}\)"
            ) as refused:
                await second.open()
            assert second.path in str(refused.value)
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["a.png"]
    assert listing(tmp_path) == ["link.jsonl", "out.jsonl"]
    async with JsonlSink(str(out), append=True) as later:  # free again once closed
        await later.write(record("b.png"))
    assert len(out.read_text().splitlines()) == 2


async def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.lock").write_text("ocr-async pid 999999999\n")  # kill -9 leaves this
    async with JsonlSink(str(out)) as sink:
        await sink.write(record("a.png"))
    assert listing(tmp_path) == ["out.jsonl"]


async def test_a_lock_file_that_is_not_ours_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    theirs = tmp_path / "out.jsonl.lock"
    theirs.write_text("someone's notes\n")
    with pytest.raises(OutputLockError, match="is not an ocr-async lock file"):
        await JsonlSink(str(out)).open()
    assert theirs.read_text() == "someone's notes\n"
    assert not out.exists()


async def test_a_refused_open_releases_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    lock = OutputLock(str(out))
    lock.acquire()
    with pytest.raises(OutputExistsError):
        await JsonlSink(str(out), lock=lock).open()
    assert not lock.held
    assert listing(tmp_path) == ["out.jsonl"]


def test_stdout_and_pipes_take_no_lock(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in ("-", str(fifo)):
        lock = OutputLock(path)
        lock.acquire()
        assert not lock.held
    assert listing(tmp_path) == ["pipe"]


async def test_a_big_record_is_encoded_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The big record's encoding is held until the event loop has run
    # something else: off the loop that happens; on it, never.
    big = record("big.png", text="word " * 100_000)
    encoding = threading.Event()
    loop_ran = threading.Event()
    order: list[str] = []
    real_encode = sink_module.encode_record

    def held_encode(rec: Record) -> bytes:
        if rec.source == "big.png":
            encoding.set()
            loop_ran.wait(timeout=5)
            order.append("encoded")
        return real_encode(rec)

    monkeypatch.setattr(sink_module, "encode_record", held_encode)
    async with JsonlSink(str(tmp_path / "out.jsonl")) as sink:
        writing = asyncio.create_task(sink.write(big))
        assert await asyncio.to_thread(encoding.wait, 10)
        order.append("loop ran")
        loop_ran.set()
        await writing
    assert order == ["loop ran", "encoded"]
    assert json.loads((tmp_path / "out.jsonl").read_bytes())["text"] == big.text


# --- strict JSON (RFC 8259), whatever the server sent --------------------------------------


def strict_loads(line: bytes) -> Any:
    """Parse as RFC 8259 does: UTF-8 only, no NaN or Infinity, no lone surrogate."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    text = line.decode("utf-8")  # strict: raises on anything that is not UTF-8
    if re.search(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])", text) or re.search(
        r"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]", text
    ):
        raise ValueError("not JSON: a lone surrogate escape")
    return json.loads(text, parse_constant=refuse)


HOSTILE_RESULTS = [
    pytest.param({"conf": math.nan}, {"conf": None}, id="nan"),
    pytest.param({"x": math.inf, "y": -math.inf}, {"x": None, "y": None}, id="infinity"),
    pytest.param({"v": "a\ud800b"}, {"v": "a\ufffdb"}, id="lone-high-surrogate"),
    pytest.param({"v": "\udc80"}, {"v": "\ufffd"}, id="lone-low-surrogate"),
    pytest.param({"v": "\udc00\ud800"}, {"v": "\ufffd\ufffd"}, id="reversed-pair"),
    pytest.param({"v": "\ud83d\ude00"}, {"v": "\U0001f600"}, id="split-pair-joined"),
    pytest.param({"k\ud800": [math.nan, "ok"]}, {"k\ufffd": [None, "ok"]}, id="in-keys-and-lists"),
    pytest.param({"v": "한국어 ✓"}, {"v": "한국어 ✓"}, id="plain-unicode-kept"),
]


@pytest.mark.parametrize(("result", "written"), HOSTILE_RESULTS)
def test_every_line_is_strict_json(result: dict[str, Any], written: dict[str, Any]) -> None:
    rec = record("a.png", text="\ud800 text")
    rec = Record(**{**{f: getattr(rec, f) for f in rec.__dataclass_fields__}, "result": result})
    line = encode_record(rec)
    document = strict_loads(line)
    assert document["result"] == written
    assert document["text"] == "\ufffd text"
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_jq_reads_every_hostile_line(tmp_path: Path) -> None:
    lines = [encode_record({"result": p.values[0]}) for p in HOSTILE_RESULTS]
    out = tmp_path / "lines.jsonl"
    out.write_bytes(b"".join(lines))
    done = subprocess.run(["jq", "-c", "."], input=out.read_bytes(), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == len(lines)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_reads_every_hostile_line(tmp_path: Path) -> None:
    out = tmp_path / "lines.jsonl"
    out.write_bytes(b"".join(encode_record({"result": p.values[0]}) for p in HOSTILE_RESULTS))
    script = (
        "const lines = require('fs').readFileSync(process.argv[1], 'utf8').trim().split('\\n');"
        "lines.forEach(l => JSON.parse(l)); console.log(lines.length);"
    )
    done = subprocess.run(["node", "-e", script, str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(HOSTILE_RESULTS))
