"""What a Dask run keeps on the scheduler: the quota's shared schedule, and each run's mailbox.

Everything here runs inside the Dask scheduler process, called through
``Client.run_on_scheduler`` (the functions at the end, which take the
scheduler as ``dask_scheduler``). The scheduler runs each call to the end
on its one event loop, so every call is atomic, as a Lua script is on
Redis; and its clock is the one clock every member reads, as Redis
``TIME`` is for :mod:`ocr_async.shared_quota`.

Why the scheduler: it is the one process a Dask run cannot lose (without
it there is no run), while an actor lives on a worker and is lost with it.
A worker killed mid-run must cost the run its calls in flight, not its
quota coordinator.

**The quota** (:class:`QuotaBoard`) is the shared controller of
:mod:`ocr_async.shared_quota`, with the scheduler as its store: one global
schedule per app key (its estimate, epoch, and a rate held until a moment,
then climbing), members with leases and demands, the rate split max-min
fairly on those demands, a refusal's measurement applied once per epoch.
``beat``, ``cut`` and ``leave`` are those of the Lua scripts, written in
Python for this store; :class:`~ocr_async.pipeline.cluster.quota.SchedulerStore`
calls them for a worker's :class:`~ocr_async.shared_quota.SharedQuota`.
Groups are keyed by the app key's hash, so two runs on one key share one
quota, and a run started again within :data:`STATE_TTL` seconds starts
from the quota measured last.

**The mailbox** (:class:`Mailbox`) carries a run's records from the
workers to the machine that writes them. A worker delivers a record (or a
few, batched) to its run's mailbox; the driver collects them, waiting
(long-polling) when there are none. Each chunk of inputs keeps the set of
sources delivered for it, and a delivery of a source already delivered is
dropped atomically: when a chunk runs again after its worker died, it skips
what the first attempt delivered, and a late delivery of a worker thought
dead (a zombie) cannot give an input a second record. Records are opaque
bytes here (pickled by the worker, unpickled by the driver), so the
scheduler never reads them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ocr_async.limits import Share

__all__ = [
    "RUN_TTL",
    "STATE_TTL",
    "Delivery",
    "GroupReply",
    "Mailbox",
    "QuotaBoard",
    "RunStatus",
    "board_beat",
    "board_chunk_done",
    "board_close_run",
    "board_collect",
    "board_cut",
    "board_deliver",
    "board_finish_chunk",
    "board_leave",
    "board_open_run",
    "board_run_status",
    "board_stop_run",
]

#: Seconds a group's schedule is kept after its last call (as in Redis).
STATE_TTL: Final = 600.0
#: Seconds a run's mailbox is kept without a collect: a driver gone without
#: a word (its connection not yet dropped) lets its workers stop.
RUN_TTL: Final = 60.0
# The schedule never climbs past this, in calls/s (a guard, not a quota).
_MAX_RATE: Final = 1e6

#: What a delivery says back: go on; stop taking inputs (Ctrl-C on the
#: driver, or credentials refused); the run is gone (finished, or its
#: driver disconnected): stop at once.
RunStatus = Literal["run", "stop", "gone"]
#: One record on its way: its chunk, its key (its source, or a manifest row's id:
#: ``worker.key_of``), and the record pickled.
Delivery = tuple[int, str, bytes]
#: The schedule as the member reads it: Redis-style (now, epoch, slow start,
#: base, since, estimate or None, this member's fraction, members, flag).
GroupReply = tuple[float, int, bool, float, float, float | None, float, int, bool]


# -- the quota -----------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    epoch: int
    slow: bool
    base: float
    since: float
    estimate: float | None
    touched: float
    #: member -> when its lease lapses (scheduler time)
    leases: dict[str, float] = field(default_factory=dict)
    #: member -> its demand in calls/s, -1 for unbounded
    wants: dict[str, float] = field(default_factory=dict)

    def rate_at(self, t: float) -> float:
        return min(Share(self.base, self.since, self.slow, self.estimate).rate_at(t), _MAX_RATE)

    def expire(self, t: float) -> None:
        for member in [m for m, until in self.leases.items() if until <= t]:
            del self.leases[member]
            self.wants.pop(member, None)

    def part(self, member: str, rate: float) -> float:
        """The member's part of ``rate``, split max-min fairly on the demands."""
        bounded = sorted(w for w in self.wants.values() if w >= 0)
        left, n = rate, len(self.wants)
        for want in bounded:
            if want * n > left:
                break
            left -= want
            n -= 1
        level = left / n if n > 0 else math.inf
        mine = self.wants.get(member)
        if mine is None:
            return 0.0
        return level if mine < 0 else min(mine, level)

    def reply(self, member: str, t: float, flag: bool) -> GroupReply:
        rate = self.rate_at(t)
        give = self.part(member, rate)
        fraction = give / rate if rate > 0 else 0.0
        return (t, self.epoch, self.slow, self.base, self.since, self.estimate, fraction,
                len(self.wants), flag)  # fmt: skip


class QuotaBoard:
    """Every app key's shared schedule, in the scheduler (see the module docstring)."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}

    def beat(
        self,
        key: str,
        member: str,
        *,
        want: float,
        lease: float,
        initial: float,
        margin: float,
        hold: float,
        now: float,
    ) -> GroupReply:
        """Join or renew a lease and record the demand; the schedule and this member's part."""
        self._forget_idle(now)
        group = self._groups.get(key)
        if group is not None:
            group.expire(now)
        renewed = group is not None and member in group.leases
        if group is None:
            group = self._groups[key] = _Group(0, True, initial, now, None, now)
        elif not group.leases:
            # Everyone's lease lapsed: a new run. Keep what was measured,
            # but start its schedule again from now.
            if group.estimate is not None:
                group.slow, group.base = False, group.estimate * (1 - margin)
                group.since = now + hold
            else:
                group.slow, group.base, group.since = True, initial, now
        group.leases[member] = now + lease
        group.wants[member] = want
        group.touched = now
        bounded = sum(w for w in group.wants.values() if w >= 0)
        if all(w >= 0 for w in group.wants.values()) and now > group.since:
            # Nobody's workers queue at their pacer: a climb would build a
            # rate nobody uses. It stands still, at no more than twice what
            # is used.
            group.base = max(min(group.rate_at(now), 2 * bounded), group.base)
            group.since = now
        return group.reply(member, now, renewed)

    def cut(
        self,
        key: str,
        member: str,
        *,
        known_epoch: int,
        estimate: float,
        hold: float,
        margin: float,
        now: float,
    ) -> GroupReply:
        """A refusal's measurement, applied if the member's epoch is current; the schedule."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(known_epoch, True, estimate, now, None, now)
        applied = group.epoch == known_epoch
        if applied:
            group.epoch += 1
            group.estimate = estimate
            group.slow = False
            group.base = estimate * (1 - margin)
            group.since = now + hold
        group.touched = now
        return group.reply(member, now, applied)

    def leave(self, key: str, member: str) -> int:
        """Drop a member at once; the members left."""
        group = self._groups.get(key)
        if group is None:
            return 0
        group.leases.pop(member, None)
        group.wants.pop(member, None)
        return len(group.leases)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, g in self._groups.items() if now - g.touched > STATE_TTL]:
            del self._groups[key]


# -- the mailbox -----------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    #: The Dask client that opened the run (the driver): gone, the run is gone.
    client: str
    seen: float
    stopping: bool = False
    records: deque[tuple[int, bytes]] = field(default_factory=deque)
    #: chunk -> sources delivered for it (until the driver finishes the chunk)
    delivered: dict[int, set[str]] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Mailbox:
    """Every run's records on their way to its driver (see the module docstring)."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}

    def open(self, run: str, client: str, now: float) -> None:
        """A driver starts a run."""
        self._runs[run] = _Run(client, now)

    def close(self, run: str) -> None:
        """The run is over: its workers stop at their next look, late records are dropped."""
        state = self._runs.pop(run, None)
        if state is not None:
            state.arrived.set()  # a collect waiting returns

    def stop(self, run: str) -> None:
        """Ask the run's workers to take no new inputs (Ctrl-C, refused credentials)."""
        if run in self._runs:
            self._runs[run].stopping = True

    def status(self, run: str, clients: Any, now: float) -> RunStatus:
        """Whether the run goes on; ``clients``: the Dask clients connected now."""
        state = self._runs.get(run)
        if state is None:
            return "gone"
        if state.client not in clients or now - state.seen > RUN_TTL:
            # Its driver was killed or lost: nobody will write these records.
            self.close(run)
            return "gone"
        return "stop" if state.stopping else "run"

    def chunk_done(self, run: str, chunk: int) -> list[str]:
        """The sources already delivered for ``chunk``: what its next attempt skips."""
        state = self._runs.get(run)
        if state is None:
            return []
        return sorted(state.delivered.get(chunk, ()))

    def deliver(self, run: str, batch: list[Delivery]) -> RunStatus:
        """Take records for the driver, dropping any whose source its chunk already delivered."""
        state = self._runs.get(run)
        if state is None:
            return "gone"
        for chunk, source, blob in batch:
            if chunk in state.finished:
                continue  # a worker thought dead, late: the chunk is settled
            sources = state.delivered.setdefault(chunk, set())
            if source in sources:
                continue
            sources.add(source)
            state.records.append((chunk, blob))
        if state.records:
            state.arrived.set()
        return "stop" if state.stopping else "run"

    def finish_chunk(self, run: str, chunk: int) -> list[str]:
        """The driver has the chunk's outcome: the sources delivered for it, and forget them."""
        state = self._runs.get(run)
        if state is None:
            return []
        state.finished.add(chunk)
        return sorted(state.delivered.pop(chunk, ()))

    async def collect(
        self, run: str, wait: float, now: float, most: int
    ) -> list[tuple[int, bytes]]:
        """Up to ``most`` records, waiting up to ``wait`` seconds for the first."""
        state = self._runs.get(run)
        if state is None:
            return []
        state.seen = now
        if not state.records and wait > 0:
            state.arrived.clear()
            try:
                async with asyncio.timeout(wait):
                    await state.arrived.wait()
            except TimeoutError:
                pass
        return [state.records.popleft() for _ in range(min(most, len(state.records)))]


# -- the scheduler's entry points (Client.run_on_scheduler) ----------------------------

#: The one board and mailbox of this scheduler process.
QUOTAS = QuotaBoard()
MAILBOX = Mailbox()


def _clients(scheduler: Any) -> Any:
    return scheduler.clients if scheduler is not None else ()


def board_beat(
    key: str,
    member: str,
    want: float,
    lease: float,
    initial: float,
    margin: float,
    hold: float,
    dask_scheduler: Any = None,
) -> GroupReply:
    """:meth:`QuotaBoard.beat`, on the scheduler's clock."""
    return QUOTAS.beat(
        key, member, want=want, lease=lease, initial=initial, margin=margin, hold=hold,
        now=time.time(),
    )  # fmt: skip


def board_cut(
    key: str,
    member: str,
    known_epoch: int,
    estimate: float,
    hold: float,
    margin: float,
    dask_scheduler: Any = None,
) -> GroupReply:
    """:meth:`QuotaBoard.cut`, on the scheduler's clock."""
    return QUOTAS.cut(
        key, member, known_epoch=known_epoch, estimate=estimate, hold=hold, margin=margin,
        now=time.time(),
    )  # fmt: skip


def board_leave(key: str, member: str, dask_scheduler: Any = None) -> int:
    """:meth:`QuotaBoard.leave`."""
    return QUOTAS.leave(key, member)


def board_open_run(run: str, client: str, dask_scheduler: Any = None) -> None:
    """:meth:`Mailbox.open`."""
    MAILBOX.open(run, client, time.time())


def board_close_run(run: str, dask_scheduler: Any = None) -> None:
    """:meth:`Mailbox.close`."""
    MAILBOX.close(run)


def board_stop_run(run: str, dask_scheduler: Any = None) -> None:
    """:meth:`Mailbox.stop`."""
    MAILBOX.stop(run)


def board_run_status(run: str, dask_scheduler: Any = None) -> RunStatus:
    """:meth:`Mailbox.status`, against the clients connected to this scheduler."""
    return MAILBOX.status(run, _clients(dask_scheduler), time.time())


def board_chunk_done(run: str, chunk: int, dask_scheduler: Any = None) -> list[str]:
    """:meth:`Mailbox.chunk_done`."""
    return MAILBOX.chunk_done(run, chunk)


def board_deliver(run: str, batch: list[Delivery], dask_scheduler: Any = None) -> RunStatus:
    """:meth:`Mailbox.deliver`."""
    return MAILBOX.deliver(run, batch)


def board_finish_chunk(run: str, chunk: int, dask_scheduler: Any = None) -> list[str]:
    """:meth:`Mailbox.finish_chunk`."""
    return MAILBOX.finish_chunk(run, chunk)


async def board_collect(
    run: str, wait: float, most: int, dask_scheduler: Any = None
) -> list[tuple[int, bytes]]:
    """:meth:`Mailbox.collect`."""
    return await MAILBOX.collect(run, wait, time.time(), most)
