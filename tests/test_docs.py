"""Every example in docs/*.md and README.md is run, and the docs keep up with the code.

How each block is run, and the markers that change it, is told in
tests/docrunner.py; the tests here choose the blocks and check the rest of
the docs against the code: flags, environment variables, exit codes, links
and the record schema.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docrunner import (
    COMMAND_TIMEOUT,
    ROOT,
    RUN_LANGUAGES,
    SHOWN_LANGUAGES,
    Block,
    World,
    extract_blocks,
    kind,
    open_world,
    run_block,
)

from ocr_async import auth, cli, options

DOCS = ROOT / "docs"
SCHEMA_PATH = DOCS / "record.schema.json"
USER_GUIDE = DOCS / "user-guide.md"
DOC_FILES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

#: Blocks that may be marked not-run, in all the docs and the README together.
MAX_NOT_RUN = 8

# README.md is not ours to mark: the markers its blocks need are kept here,
# each applied to the README blocks whose text the pattern finds, unless
# the block carries a marker of its own. An entry that no longer finds its
# block (the README was fixed or marked) does nothing and can be deleted.
README_MARKERS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"^pip install -e '?\.(\[\w+\])?'? && ocr-async demo", re.MULTILINE),
        "not-run: the Quick start installs the package; .ci/run runs it verbatim",
    ),
    (
        re.compile(r"--urls urls\.txt --output out\.jsonl\b|python -m ocr_async run \.\.\."),
        "not-run: pending a README fix: the third command reuses out.jsonl without "
        "--overwrite (exit 2), and 'python -m ocr_async run ...' is a placeholder",
    ),
    (
        re.compile(r"^pip install -e '\.\[test\]'$", re.MULTILINE),
        "not-run: development commands, which .ci/run runs",
    ),
    (
        re.compile(r"\Aocr-async report scans\.jsonl --html review\.html"),
        "setup: ocr-async run scans/ --output scans.jsonl",
    ),
]


# --- reading the docs ----------------------------------------------------------------

ALL_BLOCKS = [
    block
    for path in DOC_FILES
    for block in extract_blocks(path, README_MARKERS if path.name == "README.md" else ())
]
RUN_BLOCKS = [block for block in ALL_BLOCKS if kind(block) == "run"]
JSON_BLOCKS = [block for block in ALL_BLOCKS if kind(block) == "json"]
EXCERPT_BLOCKS = [block for block in ALL_BLOCKS if kind(block) == "excerpt"]
NOT_RUN_BLOCKS = [block for block in ALL_BLOCKS if kind(block) == "not-run"]


def _ids(blocks: list[Block]) -> list[str]:
    return [block.id for block in blocks]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with open_world(tmp_path_factory.mktemp("docs"), SCHEMA_PATH) as started:
        yield started


# --- the examples run ------------------------------------------------------------------


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=_ids(RUN_BLOCKS))
def test_example_runs(block: Block, world: World, tmp_path: Path) -> None:
    run_block(block, world, tmp_path)


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=_ids(JSON_BLOCKS))
def test_json_example_is_valid(block: Block, world: World) -> None:
    document = json.loads(block.text)
    if isinstance(document, dict) and "source" in document:
        assert world.validate_line(json.dumps(document), block.id)


@pytest.mark.parametrize("block", EXCERPT_BLOCKS, ids=_ids(EXCERPT_BLOCKS))
def test_excerpt_matches_its_file(block: Block) -> None:
    assert block.marker is not None
    source = ROOT / block.marker[1]
    assert source.is_file(), f"{block.id}: no file {block.marker[1]}"
    wanted = [line.rstrip() for line in block.lines]
    have = [line.rstrip() for line in source.read_text(encoding="utf-8").splitlines()]
    found = any(have[i : i + len(wanted)] == wanted for i in range(len(have) - len(wanted) + 1))
    assert found, f"{block.id}: the excerpt is not (or no longer) in {block.marker[1]}"


def test_every_block_has_a_known_language_or_marker() -> None:
    known = RUN_LANGUAGES | SHOWN_LANGUAGES | {"json"}
    unknown = [block.id for block in ALL_BLOCKS if block.language not in known]
    assert unknown == [], f"blocks without a known language: {unknown}"


def test_not_run_blocks_are_few_and_say_why() -> None:
    assert len(NOT_RUN_BLOCKS) <= MAX_NOT_RUN, _ids(NOT_RUN_BLOCKS)
    for block in NOT_RUN_BLOCKS:
        assert block.marker is not None
        assert len(block.marker[1]) > 10, f"{block.id}: say why the block is not run"


def test_most_examples_run() -> None:
    checked = len(RUN_BLOCKS) + len(JSON_BLOCKS) + len(EXCERPT_BLOCKS)
    assert checked >= 4 * len(NOT_RUN_BLOCKS)


# --- the docs keep up with the code --------------------------------------------------------


def _help(command: str) -> str:
    parser = cli.build_parser()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(_Capture()) as captured:
        parser.parse_args([command, "--help"])
    return captured.text


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _mentioned(flag: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


@pytest.mark.parametrize("command", ["run", "verify", "serve", "report", "demo"])
def test_every_flag_in_help_is_in_the_user_guide(command: str) -> None:
    guide = USER_GUIDE.read_text(encoding="utf-8")
    flags = set(_FLAG.findall(_help(command))) - {"-h", "--help"}
    assert flags, f"no flags found in 'ocr-async {command} --help'"
    missing = sorted(flag for flag in flags if not _mentioned(flag, guide))
    assert missing == [], f"'ocr-async {command}' flags missing from user-guide.md: {missing}"


def test_the_run_help_of_the_installed_command_is_covered() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "ocr_async", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=True,
    )
    guide = USER_GUIDE.read_text(encoding="utf-8")
    flags = set(_FLAG.findall(process.stdout)) - {"-h", "--help"}
    assert len(flags) > 15
    assert sorted(flag for flag in flags if not _mentioned(flag, guide)) == []


def test_every_long_flag_in_the_user_guide_exists() -> None:
    known = {"--help", "--version"}
    for command in ("run", "verify", "serve", "report", "demo"):
        known |= set(_FLAG.findall(_help(command)))
    guide = USER_GUIDE.read_text(encoding="utf-8")
    # Flags of other tools in the guide's examples are not ours to check.
    ours = "\n".join(line for line in guide.splitlines() if not line.lstrip().startswith("pip "))
    unknown = sorted(set(re.findall(r"(?<![\w-])--[a-z][\w-]*", ours)) - known)
    assert unknown == [], f"user-guide.md names flags that do not exist: {unknown}"


def test_every_environment_variable_is_in_the_user_guide() -> None:
    guide = USER_GUIDE.read_text(encoding="utf-8")
    named = {
        auth.TOKEN_ENV,
        auth.TOKEN_FILE_ENV,
        auth.UAK_ID_ENV,
        auth.UAK_SECRET_ENV,
        auth.OAUTH_URL_ENV,
        options.BASE_URL_ENV,
        options.APPKEY_ENV,
    }
    # Also any NHN_* name the package reads that the list above does not know yet.
    for path in (ROOT / "ocr_async").rglob("*.py"):
        named |= set(re.findall(r"\"(NHN_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    missing = sorted(name for name in named if f"`{name}`" not in guide)
    assert missing == [], f"environment variables missing from user-guide.md: {missing}"


def test_every_exit_code_is_in_the_user_guide() -> None:
    guide = USER_GUIDE.read_text(encoding="utf-8")
    missing = [code.value for code in cli.ExitCode if f"\n| {code.value} |" not in guide]
    assert missing == [], f"exit codes missing from the user guide's table: {missing}"


def _slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (found := re.match(r"#{1,6}\s+(.*)", line)):
            slug = _slug(found.group(1))
            base, n = slug, 1
            while slug in anchors:
                slug = f"{base}-{n}"
                n += 1
            anchors.add(slug)
    return anchors


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_links_between_pages_resolve(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    broken: list[str] = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an outside address: not checked offline
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(target)
            continue
        if anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert broken == [], f"{path.name}: broken links: {broken}"


def test_the_schema_accepts_real_records_and_refuses_wrong_ones(world: World) -> None:
    good: dict[str, Any] = {
        "source": "a.png",
        "ok": True,
        "endpoint": "general",
        "attempts": 1,
        "elapsed_ms": 1.5,
        "text": "",
        "result": {"fileType": "png", "listOfInferTexts": [], "future": {"kept": True}},
        "error": None,
        "transform": {"endpoint_chosen": "cropping", "aspect_ratio": 4.0, "note": "x"},
    }
    failed: dict[str, Any] = {
        **good,
        "ok": False,
        "attempts": 0,
        "text": None,
        "result": None,
        "error": {"code": "not_found", "message": "m", "local": True, "retryable": False},
        "transform": None,
    }
    validator = world.validator
    assert validator.is_valid(good)
    assert validator.is_valid(failed)
    wrong: list[dict[str, Any]] = [
        {**good, "error": failed["error"]},  # ok with an error
        {**failed, "error": None},  # a failure without one
        {**good, "endpoint": "other"},
        {**good, "extra": 1},
        {key: value for key, value in good.items() if key != "transform"},
        {**failed, "error": {**failed["error"], "code": "Not A Code"}},
        {**good, "attempts": 0},
    ]
    for document in wrong:
        assert not validator.is_valid(document), document


def test_examples_left_records_to_validate(world: World) -> None:
    """Runs after the examples (file order): they must have produced records."""
    if world.records_validated == 0:
        pytest.skip("no example ran in this session (a -k selection)")
    assert world.records_validated >= 20
