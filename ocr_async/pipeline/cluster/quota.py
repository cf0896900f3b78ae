"""ClusterQuota: a Dask worker's membership of the quota shared through the scheduler.

The member side of :mod:`ocr_async.pipeline.cluster.board`'s
:class:`~ocr_async.pipeline.cluster.board.QuotaBoard`, as
:class:`~ocr_async.shared_quota.SharedQuota` is the member side of its Redis
store, and the same :class:`~ocr_async.limits.QuotaCoordinator` to the
worker's rate controller: it heartbeats once a :data:`HEARTBEAT` with its
demand and paces the controller at its part of the group's schedule
(:meth:`RateController.follow <ocr_async.limits.RateController.follow>`);
a refusal measured here is scaled up to the group and applied once per
epoch. No request waits for the scheduler.

A call to the scheduler that fails or takes longer than
:data:`CALL_TIMEOUT` detaches the member: the controller carries on alone
from its last share (warned once in the worker's log), and the next
heartbeat tries again, rejoining as soon as the scheduler answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ocr_async.errors import ConfigurationError
from ocr_async.limits import INITIAL_RATE, MARGIN, MIN_HOLD, MIN_RATE, Cut, RateController, Share
from ocr_async.pipeline.cluster.board import GroupReply, board_beat, board_cut, board_leave

__all__ = ["CALL_TIMEOUT", "HEARTBEAT", "LEASE", "ClusterQuota", "SchedulerCall"]

log = logging.getLogger(__name__)

#: Runs a function on the scheduler: ``Client.run_on_scheduler``.
SchedulerCall = Callable[..., Awaitable[Any]]

#: Seconds between heartbeats (as over Redis).
HEARTBEAT: Final = 1.0
#: Seconds a lease lasts unrenewed: three heartbeats.
LEASE: Final = 3.0
#: A call to the scheduler slower than this has failed. Wider than Redis's
#: second: the scheduler is also scheduling, and may be busy.
CALL_TIMEOUT: Final = 5.0
# A member whose workers queued for at least this share of its tickets could
# use more than it has; one that did not is given what it used, times this.
_QUEUED_SHARE: Final = 0.5
_HEADROOM: Final = 1.5


class ClusterQuota:
    """One worker process's membership of the quota of ``key``, kept on the scheduler.

    ``call`` runs a function on the scheduler (``Client.run_on_scheduler``
    of the worker's client; the tests call the board directly). ``key``
    names the group: the app key, hashed. Use from one event loop.
    """

    def __init__(
        self,
        call: SchedulerCall,
        key: str,
        *,
        member: str | None = None,
        heartbeat: float = HEARTBEAT,
        lease: float = LEASE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._call = call
        self._key = key
        self._member = member or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._heartbeat = heartbeat
        self._lease = lease
        self._clock = clock
        self._sleep = sleep
        self._controller: RateController | None = None
        self._task: asyncio.Task[None] | None = None
        self._cuts: set[asyncio.Task[None]] = set()
        self._reply: GroupReply | None = None
        self._offset = 0.0  # the scheduler's clock minus this one
        self._epoch = 0
        self._last_beat = 0.0
        self._last_sent = 0
        self._last_queued = 0
        self._lost = False
        self._closed = False

    def __repr__(self) -> str:
        return f"ClusterQuota(member={self._member!r})"

    @property
    def member(self) -> str:
        """The name of this process in the group."""
        return self._member

    @property
    def sharing(self) -> bool:
        """Whether the controller follows the group's schedule now."""
        return self._controller is not None and self._controller.coordinator is self

    @property
    def members(self) -> int:
        """Members holding a lease at the last answer."""
        return self._reply[7] if self._reply is not None else 0

    @property
    def fraction(self) -> float:
        """The part of the group's rate this member paces at, as last heard."""
        return self._reply[6] if self._reply is not None else 0.0

    @property
    def quota_estimate(self) -> float | None:
        """The group's measured quota as last heard, in calls/s."""
        return self._reply[5] if self._reply is not None else None

    async def start(self, controller: RateController) -> None:
        """Join the group; ``controller`` paces at this member's part from now on.

        Raises what the scheduler call raises when it cannot be reached, and
        :class:`ConfigurationError` for a fixed-rate controller.
        """
        if self._controller is not None:
            raise RuntimeError("this ClusterQuota has already started")
        if controller.fixed_rps is not None:
            raise ConfigurationError("a shared quota needs the adaptive rate controller, not rps")
        self._controller = controller
        reply = await self._beat(join=True)
        self._epoch = reply[1]
        controller.coordinator = self
        self._follow(reply, event=False)
        self._task = asyncio.create_task(self._run(), name=f"cluster-quota {self._member}")

    async def close(self) -> None:
        """Leave the group (the share goes to the others at once). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, *self._cuts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._controller is not None and self._controller.coordinator is self:
            self._controller.coordinator = None
        if self._reply is not None and not self._lost:
            # If this fails, the lease lapses on its own.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CALL_TIMEOUT):
                    await self._call(board_leave, self._key, self._member)

    # -- QuotaCoordinator -----------------------------------------------------------

    def on_cut(self, cut: Cut) -> None:
        """Send this member's measurement to the group, in the background."""
        if not self.sharing or self.fraction <= 0:
            return
        fraction = self.fraction
        # The measurement is of this member's calls, its fraction of the
        # whole when the limiter is saturated; the hold's calls are the
        # group's (as in ocr_async.shared_quota).
        estimate = max(cut.estimate / fraction, MIN_RATE)
        hold = max(cut.hold_seconds, cut.hold_calls * fraction / cut.hold_rate)
        task = asyncio.create_task(self._report_cut(estimate, hold))
        self._cuts.add(task)
        task.add_done_callback(self._cuts.discard)

    # -- internals ----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            await self._sleep(self._heartbeat)
            try:
                reply = await self._beat(join=self._lost)
            except Exception as exc:  # any failure: pace alone, try again
                self._lose(exc)
                continue
            event = reply[1] > self._epoch and not self._cuts
            if self._lost:
                self._lost = False
                assert self._controller is not None
                self._controller.coordinator = self
                log.info("cluster quota: the scheduler answers again; sharing the quota again")
            self._follow(reply, event=event)

    def _lose(self, exc: BaseException) -> None:
        if self._lost or self._controller is None:
            return
        self._lost = True
        if self._controller.coordinator is self:
            self._controller.coordinator = None
        log.warning(
            "cluster quota: the scheduler did not answer (%s); carrying on with this "
            "worker's own rate control from %.1f calls/s",
            type(exc).__name__,
            self._controller.current_rate,
        )

    def _want(self, now: float, join: bool) -> float:
        controller = self._controller
        assert controller is not None
        sent, queued = controller.sent - self._last_sent, controller.queued - self._last_queued
        self._last_sent, self._last_queued = controller.sent, controller.queued
        elapsed, self._last_beat = now - self._last_beat, now
        if join or controller.waiting > 0 or (sent > 0 and queued >= _QUEUED_SHARE * sent):
            return -1.0
        return _HEADROOM * sent / elapsed if elapsed > 0 else 0.0

    async def _beat(self, *, join: bool) -> GroupReply:
        sent_at = self._clock()
        async with asyncio.timeout(CALL_TIMEOUT):
            reply: GroupReply = await self._call(
                board_beat,
                self._key,
                self._member,
                self._want(sent_at, join),
                self._lease,
                INITIAL_RATE,
                MARGIN,
                MIN_HOLD,
            )
        return self._answered(reply, sent_at)

    async def _report_cut(self, estimate: float, hold: float) -> None:
        sent_at = self._clock()
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                reply: GroupReply = await self._call(
                    board_cut, self._key, self._member, self._epoch, estimate, hold, MARGIN
                )
        except Exception as exc:  # the heartbeat tries again
            self._lose(exc)
            return
        if self.sharing:
            # Applied or not, this controller already opened an epoch for the
            # burst: the group's answer is the same event, not a new one.
            self._follow(self._answered(reply, sent_at), event=False)

    def _answered(self, reply: GroupReply, sent_at: float) -> GroupReply:
        # Half the round trip is the error of this offset.
        self._offset = reply[0] - (sent_at + self._clock()) / 2
        return reply

    def _follow(self, reply: GroupReply, *, event: bool) -> None:
        self._reply = reply
        _, epoch, slow, base, since, estimate, fraction, _, _ = reply
        self._epoch = max(self._epoch, epoch)
        controller = self._controller
        if controller is None or controller.coordinator is not self:
            return
        controller.follow(
            Share(
                base=max(fraction * base, MIN_RATE),
                since=since - self._offset,
                slow_start=slow,
                estimate=None if estimate is None else max(fraction * estimate, MIN_RATE),
            ),
            event=event,
        )
