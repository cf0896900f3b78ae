"""Tests for ocr_async.wording: the shared wording of run summaries."""

from __future__ import annotations

from collections import Counter

import pytest

from ocr_async.wording import counted, outcome_lines, skip_lines


@pytest.mark.parametrize(
    ("count", "word", "plural", "text"),
    [
        pytest.param(0, "record", None, "0 records", id="zero"),
        pytest.param(1, "record", None, "1 record", id="one"),
        pytest.param(2, "record", None, "2 records", id="two"),
        pytest.param(1, "retry", "retries", "1 retry", id="one-irregular"),
        pytest.param(3, "retry", "retries", "3 retries", id="irregular"),
    ],
)
def test_counted_puts_the_noun_in_the_right_number(
    count: int, word: str, plural: str | None, text: str
) -> None:
    assert counted(count, word, plural) == text


def test_outcome_lines_name_failures_by_code_only_when_some_failed() -> None:
    assert outcome_lines(2, Counter(), "2 retries") == ["2 records: 2 ok, 0 failed; 2 retries"]
    failed = Counter({"timeout": 1, "4000003": 2})
    assert outcome_lines(7, failed, "a", "b") == [
        "10 records: 7 ok, 3 failed; a; b",
        "failed by code: 4000003 x2, timeout x1",
    ]
    assert outcome_lines(1, {}) == ["1 record: 1 ok, 0 failed"]


def test_a_run_and_its_dry_run_name_what_they_skip_alike() -> None:
    assert skip_lines("skipped", 1, 0, 3) == [
        "skipped 1 non-image file found in folders",
        "skipped 3 inputs already done by an earlier run",
    ]
    assert skip_lines("would skip", 0, 2, 0) == ["would skip 2 duplicate inputs (sent once)"]
    assert skip_lines("skipped", 0, 0, 0) == []
