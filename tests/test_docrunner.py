"""Tests for tests/docrunner.py: how blocks are read and console output is matched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docrunner import extract_blocks, kind, output_matches


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        pytest.param(["a", "b"], ["a", "b"], True, id="same"),
        pytest.param(["a"], ["a", "b"], False, id="extra-line"),
        pytest.param(["a ... z"], ["a to z"], True, id="wildcard-in-a-line"),
        pytest.param(["a ... z"], ["a to y"], False, id="wildcard-end-differs"),
        pytest.param(["a", "...", "z"], ["a", "1", "2", "z"], True, id="wildcard-lines"),
        pytest.param(["a", "...", "z"], ["a", "z"], True, id="wildcard-no-lines"),
        pytest.param(["..."], [], True, id="only-wildcard"),
        pytest.param(["a.b"], ["axb"], False, id="dot-is-literal"),
    ],
)
def test_output_matches_with_wildcards(
    expected: list[str], actual: list[str], matches: bool
) -> None:
    assert output_matches(expected, actual) is matches


def test_markers_apply_to_the_next_block_only(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "<!-- not-run: needs a real account -->\n"
        "```sh\nocr-async run a.png\n```\n\n"
        "<!-- setup: touch a.png -->\n\n"
        "Text between the marker and its block cancels it.\n\n"
        "```console\n$ ocr-async --version\n```\n"
        "```json\n{}\n```\n"
        "```text\nshown only\n```\n",
        encoding="utf-8",
    )
    blocks = extract_blocks(doc)
    assert [(b.line, b.language, b.marker) for b in blocks] == [
        (2, "sh", ("not-run", "needs a real account")),
        (10, "console", None),
        (13, "json", None),
        (16, "text", None),
    ]
    assert [kind(b) for b in blocks] == ["not-run", "run", "json", "shown"]


def test_default_markers_apply_to_blocks_without_their_own(tmp_path: Path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(
        "```sh\npip install x\n```\n<!-- excerpt: examples/a.py -->\n```python\npip install\n```\n",
        encoding="utf-8",
    )
    defaults = [(re.compile(r"^pip install", re.MULTILINE), "not-run: installs packages")]
    assert [b.marker for b in extract_blocks(doc, defaults)] == [
        ("not-run", "installs packages"),
        ("excerpt", "examples/a.py"),
    ]
    assert [b.marker for b in extract_blocks(doc)] == [None, ("excerpt", "examples/a.py")]
