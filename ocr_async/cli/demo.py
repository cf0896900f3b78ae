"""``ocr-async demo``: the product run end to end against the emulator.

The demo needs no account and no network: it starts the emulator in this
process on a loopback port, runs the real batch pipeline over the bundled
sample images twice (as files, then as URLs the emulator downloads), writes
the JSONL, and checks every record's text against the text each sample
holds.

Which engine reads the samples (``--engine``, default ``auto``; see
:mod:`ocr_async.emulator.engines`): with a real engine installed (the
``ocr`` extra, or Debian's tesseract) the emulator reads the **pixels** of
each sample; the text the samples also carry embedded is ignored, so what
the demo prints was really recognized. Without one, the deterministic
fallback answers with that embedded text, and the demo says so.

Words right (:func:`words_right`): the known text and the recognized text
of each image are cut into words at whitespace; each word is case-folded
and stripped of everything but letters and digits (``12,000원`` ->
``12000원``, ``Ltd.`` -> ``ltd``); words left empty are dropped. The words
right are the size of the multiset intersection (a known word that appears
twice must be read twice); extra words read cost nothing.

Exit 0 when every request succeeded (a sample without text answers
4000501, which counts as success) and:

* on the fallback, every record's text is exactly its sample's text;
* on a real engine, at least :data:`PASS_SHARE` (80%) of the known words
  are right, counting the words in the scripts the engine reads (rapidocr's
  model reads Latin letters and digits, not Hangul); the figure over all
  words is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Final

from ocr_async.cli.exits import ExitCode, UsageError
from ocr_async.client import OcrClient
from ocr_async.emulator import (
    SAMPLES,
    EmulatorConfig,
    RunningEmulator,
    find_free_port,
    iter_samples,
    running_emulator,
)
from ocr_async.emulator.engine import FallbackEngine, TextEngine, engine_name
from ocr_async.emulator.engines import engine_from_name
from ocr_async.models import ImageFile, ImageUrl, Record, SourceItem
from ocr_async.outputs.jsonl import JsonlSink, OutputExistsError
from ocr_async.pipeline.batch import BatchSummary, run_batch
from ocr_async.retry import RetryPolicy

__all__ = [
    "DEMO_APPKEY",
    "DEMO_TOKEN",
    "PASS_SHARE",
    "WordScore",
    "demo_command",
    "normalize_word",
    "script_of",
    "words_of",
    "words_right",
]

DEMO_APPKEY = "demo-appkey"
#: The emulator in the demo accepts only this token, so auth is exercised too.
DEMO_TOKEN = "demo-token"
#: The share of known words a real engine must get right for exit 0.
PASS_SHARE: Final = 0.8
#: Every script the samples are written in.
ALL_SCRIPTS: Final = frozenset({"latin", "hangul"})

# imageUrl may only name ports 80, 443 or 10000-12000 (the API guide), so the
# emulator, which also hosts the samples for URL mode, binds in that range.
_URL_PORTS = (10000, 12000)
# How much of each record's text a line of the report shows.
_SHOWN_CHARS: Final = 64


# --- words right -----------------------------------------------------------------


def normalize_word(word: str) -> str:
    """``word`` case-folded, with only its letters and digits kept."""
    return "".join(c for c in unicodedata.normalize("NFC", word).casefold() if c.isalnum())


def words_of(text: str) -> list[str]:
    """The normalized, non-empty words of ``text`` (split at whitespace)."""
    return [n for word in text.split() if (n := normalize_word(word))]


def script_of(word: str) -> str:
    """``hangul`` for a word with any Hangul in it, else ``latin``."""
    return "hangul" if any("HANGUL" in unicodedata.name(c, "") for c in word) else "latin"


class WordScore:
    """Known words and words right, in total and by script."""

    def __init__(self) -> None:
        self.known: Counter[str] = Counter()
        self.right: Counter[str] = Counter()

    def add(self, expected: str, recognized: str) -> tuple[int, int]:
        """Score one image; returns its ``(right, known)``."""
        known = Counter(words_of(expected))
        right = known & Counter(words_of(recognized))
        for word, n in known.items():
            self.known[script_of(word)] += n
        for word, n in right.items():
            self.right[script_of(word)] += n
        return right.total(), known.total()

    def share(self, scripts: Iterable[str] = ALL_SCRIPTS) -> tuple[int, int]:
        """``(right, known)`` over the words of ``scripts``."""
        chosen = set(scripts)
        right = sum(n for script, n in self.right.items() if script in chosen)
        known = sum(n for script, n in self.known.items() if script in chosen)
        return right, known


def words_right(expected: str, recognized: str) -> tuple[int, int]:
    """``(right, known)``: how many words of ``expected`` ``recognized`` has.

    See the module docstring for the matching rule.
    """
    return WordScore().add(expected, recognized)


def _figure(right: int, known: int) -> str:
    share = f" ({100 * right / known:.0f}%)" if known else ""
    return f"{right}/{known}{share}"


# --- the demo --------------------------------------------------------------------


async def _sample_items(emulator: RunningEmulator) -> AsyncIterator[SourceItem]:
    for path, _ in iter_samples():
        yield SourceItem(str(path), ImageFile(path))
    for path, _ in iter_samples():
        url = f"{emulator.base_url}/samples/{path.name}"
        yield SourceItem(url, ImageUrl(url))


def _expected_text(source: str) -> str:
    return SAMPLES[source.rsplit("/", 1)[-1]]


def _mean_conf(record: Record) -> float | None:
    # The recognition as the client parsed it: no second reading of ``result``.
    words = record.parsed.words if record.parsed is not None else ()
    confs = [word.conf for word in words if word.conf is not None]
    return sum(confs) / len(confs) if confs else None


def _report(record: Record, score: WordScore, exact: bool, out: list[str]) -> bool:
    """One line for ``record``; True when it is right (see :func:`demo_command`)."""
    expected = _expected_text(record.source)
    mode = "url " if "://" in record.source else "file"
    name = record.source.rsplit("/", 1)[-1]
    if not record.ok:
        out.append(f"  BAD {mode} {name:<20}        {record.error}")
        return False
    text = record.text or ""
    right, known = score.add(expected, text)
    good = text == expected if exact else True
    shown = text.replace("\n", " / ") or "(no text)"
    if len(shown) > _SHOWN_CHARS:
        shown = shown[: _SHOWN_CHARS - 3] + "..."
    conf = _mean_conf(record)
    conf_text = f" [conf {conf:.2f}]" if conf is not None and not exact else ""
    mark = "ok " if good and right == known else ("BAD" if exact else "~  ")
    out.append(f"  {mark} {mode} {name:<20} {right:>2}/{known:<2}  {shown}{conf_text}")
    return good


def _legend(exact: bool) -> str:
    """What the columns of :func:`_report`'s lines mean."""
    if exact:
        marks = "ok = the text is exactly the sample's, BAD = it is not, or the request failed"
        extra = ""
    else:
        marks = "ok = every known word read, ~ = some missed, BAD = the request failed"
        extra = "; [conf] = mean word confidence"
    return f"  ({marks}; file/url = how it was sent; N/M = known words read{extra})"


def _choose_engine(name: str) -> tuple[TextEngine, list[str]]:
    unavailable: list[str] = []
    return engine_from_name(name, embedded_first=False, unavailable=unavailable), unavailable


def _describe_engine(engine: TextEngine, unavailable: list[str]) -> str:
    if isinstance(engine, FallbackEngine):
        lines = [
            "engine: embedded (the deterministic fallback): each sample answers with the "
            "text it carries embedded, no recognition"
        ]
        lines += [f"  ({reason})" for reason in unavailable]
        lines.append(
            "  for real recognition: pip install 'ocr-async[ocr]' "
            "(or apt-get install tesseract-ocr tesseract-ocr-kor)"
        )
        return "\n".join(lines)
    languages = getattr(engine, "languages", None)
    detail = f" ({languages})" if isinstance(languages, str) else ""
    return (
        f"engine: {engine_name(engine)}{detail}: reads the pixels of each sample "
        "(the text they carry embedded is ignored)"
    )


def _scripts(engine: TextEngine) -> frozenset[str]:
    scripts = getattr(engine, "scripts", None)
    return frozenset(scripts) if isinstance(scripts, frozenset) else ALL_SCRIPTS


async def demo_command(args: argparse.Namespace) -> ExitCode:
    """Run the demo; 0 when the samples were read well enough (module docstring)."""
    engine, unavailable = _choose_engine(getattr(args, "engine", None) or "auto")
    exact = isinstance(engine, FallbackEngine)
    warm_up = getattr(engine, "warm_up", None)
    if callable(warm_up):
        await asyncio.to_thread(warm_up)  # load the models before the clock starts
    with tempfile.TemporaryDirectory(prefix="ocr-async-demo-") as scratch:
        output = args.output or str(Path(scratch) / "demo.jsonl")
        config = EmulatorConfig(tokens=frozenset({DEMO_TOKEN}), appkey=DEMO_APPKEY, engine=engine)
        async with running_emulator(config, port=find_free_port(*_URL_PORTS)) as emulator:
            print(f"ocr-async demo: emulator serving General OCR v1.1 at {emulator.base_url}")
            print(_describe_engine(engine, unavailable), flush=True)

            records: list[Record] = []
            try:
                async with (
                    OcrClient(
                        appkey=DEMO_APPKEY,
                        token=DEMO_TOKEN,
                        base_url=emulator.base_url,
                        concurrency=4,
                        retry=RetryPolicy(max_attempts=3),
                    ) as client,
                    JsonlSink(output) as sink,
                ):
                    summary: BatchSummary = await run_batch(
                        client,
                        _sample_items(emulator),
                        sink,
                        concurrency=4,
                        on_record=records.append,
                    )
            except OutputExistsError as exc:
                raise UsageError(str(exc)) from None
        lines: list[str] = []
        score = WordScore()
        good = sum(
            _report(record, score, exact, lines)
            for record in sorted(records, key=lambda r: r.source)
        )
        print(_legend(exact))
        print("\n".join(lines))
        print(summary.describe())
        passed = _verdict(engine, score, exact, good == len(SAMPLES) * 2)
        if args.output:
            print(f"records written to {output}")
        else:
            print("records were written to a temporary file; pass --output FILE to keep them")
        return ExitCode.OK if passed else ExitCode.SOME_FAILED


def _verdict(engine: TextEngine, score: WordScore, exact: bool, all_good: bool) -> bool:
    """Print the words-right figures; True when the demo passed."""
    right, known = score.share()
    print(f"words right: {_figure(right, known)} (case and punctuation ignored)")
    if exact:
        print(f"text matched the sample exactly for every record: {'yes' if all_good else 'no'}")
        return all_good
    scripts = _scripts(engine)
    if scripts != ALL_SCRIPTS:
        read_right, read_known = score.share(scripts)
        unread = ", ".join(sorted(ALL_SCRIPTS - scripts))
        print(
            f"words right in the scripts {engine_name(engine)} reads "
            f"({', '.join(sorted(scripts))}): {_figure(read_right, read_known)}; "
            f"its model does not read {unread}"
        )
        right, known = read_right, read_known
    passed = all_good and known > 0 and right >= PASS_SHARE * known
    print(f"{'passed' if passed else 'FAILED'}: at least {PASS_SHARE:.0%} of the words right")
    return passed
