"""The one plot: calls accepted and refused per second under a quota, per client."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a benchmark machine

import matplotlib.pyplot as plt

from benchmarks.harness import Sample


def _rates(samples: Sequence[Sample]) -> tuple[list[float], list[float], list[float]]:
    """Per interval: mid-time, accepted calls/s, refused calls/s."""
    times: list[float] = []
    accepted: list[float] = []
    refused: list[float] = []
    for before, after in itertools.pairwise(samples):
        span = after.t - before.t
        if span <= 0:
            continue
        calls = after.stats.requests - before.stats.requests
        limited = after.stats.rate_limited - before.stats.rate_limited
        times.append((before.t + after.t) / 2)
        accepted.append((calls - limited) / span)
        refused.append(limited / span)
    return times, accepted, refused


def plot_rates(
    runs: Mapping[str, Sequence[Sample]],
    quota: float | Sequence[tuple[float, float]],
    path: Path,
    title: str,
) -> None:
    """Two panels over time, one line per client: calls let through, and calls refused.

    ``quota`` is one rate, or a schedule of (seconds, rate) steps.
    """
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for label, samples in runs.items():
        times, accepted, refused = _rates(samples)
        top.plot(times, accepted, label=label, linewidth=1.4)
        bottom.plot(times, refused, label=label, linewidth=1.4)
    if isinstance(quota, int | float):
        top.axhline(quota, color="black", linestyle="--", linewidth=1, label=f"quota {quota:g}/s")
    else:
        end = max((s.t for samples in runs.values() for s in samples), default=quota[-1][0])
        xs = [at for at, _ in quota] + [max(end, quota[-1][0])]
        ys = [rate for _, rate in quota] + [quota[-1][1]]
        top.step(xs, ys, where="post", color="black", linestyle="--", linewidth=1, label="quota")
    top.set_ylabel("calls let through per s")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right", fontsize="small")
    top.set_title(title)
    bottom.set_ylabel("calls refused (4000006) per s")
    bottom.set_xlabel("seconds since the run started")
    bottom.set_ylim(bottom=0)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
