"""Tests for ocr_async.emulator.state: the settings it refuses and the counters' reset."""

from __future__ import annotations

from typing import Any

import pytest

from ocr_async.emulator import EmulatorConfig, EmulatorStats


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"latency": -1.0}, "latency"),
        ({"download_timeout": 0.0}, "download_timeout"),
        ({"quota_rps": 0.0}, "quota_rps"),
        ({"quota_rps": 1.0, "quota_burst": 0}, "quota_burst"),
        ({"quota_rps": 1.0, "quota_kind": "leaky"}, "quota_kind"),
        ({"quota_rps": 1.0, "quota_kind": "window", "quota_burst": 2}, "quota_burst"),
        ({"quota_schedule": ((5.0, 1.0),)}, "starts at 0"),
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmulatorConfig(**kwargs)


def test_stats_reset_keeps_the_calls_still_running() -> None:
    stats = EmulatorStats(requests=5, in_flight=2, peak_in_flight=7, tokens_issued=1)
    stats.by_code[0] = 5
    stats.faults["drop"] = 1
    stats.reset()
    assert stats.to_json() == {**EmulatorStats().to_json(), "in_flight": 2, "peak_in_flight": 2}
