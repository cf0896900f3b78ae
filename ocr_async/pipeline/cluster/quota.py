"""SchedulerStore: the quota a Dask run's workers share, kept on the scheduler.

A worker's membership of the shared quota is the same
:class:`~ocr_async.shared_quota.SharedQuota` as over Redis (heartbeat,
demand, its part of the group's schedule, a refusal measured for the group
by :func:`~ocr_async.shared_quota.group_cut`, losing and rejoining the
store); only the store differs. This one keeps the group in the
scheduler's :class:`~ocr_async.pipeline.cluster.board.QuotaBoard`, called
through ``Client.run_on_scheduler``: every call runs to the end on the
scheduler's event loop (atomic, as a Lua script is on Redis), on its one
clock. It has no news channel: members hear of others' cuts and of members
joining or leaving at their next heartbeat.

A call that fails or takes longer than :data:`CALL_TIMEOUT` is a store
lost: the controller carries on alone from its last share (warned once in
the worker's log) and the member tries to rejoin, as over Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ocr_async.pipeline.cluster.board import GroupReply, board_beat, board_cut, board_leave
from ocr_async.shared_quota import GroupState

__all__ = ["CALL_TIMEOUT", "SchedulerCall", "SchedulerStore"]

#: Runs a function on the scheduler: ``Client.run_on_scheduler``.
SchedulerCall = Callable[..., Awaitable[Any]]

#: A call to the scheduler slower than this has failed. Wider than Redis's
#: second: the scheduler is also scheduling, and may be busy.
CALL_TIMEOUT: Final = 5.0


class SchedulerStore:
    """A group's schedule on the Dask scheduler: a :class:`~ocr_async.shared_quota.QuotaStore`.

    ``call`` runs a function on the scheduler (``Client.run_on_scheduler``
    of the worker's client; the tests call the board directly); ``key``
    names the group (the app key, hashed: :func:`~ocr_async.shared_quota.store_key`);
    ``address`` is the scheduler's, for messages.
    """

    hint: Final = "is the Dask scheduler running?"

    def __init__(
        self, call: SchedulerCall, key: str, *, address: str = "the Dask scheduler"
    ) -> None:
        self._call = call
        self._key = key
        self._address = address

    def __repr__(self) -> str:
        return f"SchedulerStore({self._address!r})"

    @property
    def key(self) -> str:
        """The group's name on the board."""
        return self._key

    @property
    def name(self) -> str:
        """The scheduler's address."""
        return self._address

    async def open(self) -> None:
        """Nothing to open: the worker's Dask client is connected."""

    async def beat(
        self, member: str, *, lease: float, want: float, initial: float, margin: float, hold: float
    ) -> GroupState:
        """:func:`~ocr_async.pipeline.cluster.board.board_beat`."""
        reply: GroupReply = await self._ask(
            board_beat, self._key, member, want, lease, initial, margin, hold
        )
        return GroupState(*reply)

    async def cut(
        self, member: str, *, known_epoch: int, estimate: float, hold: float, margin: float
    ) -> GroupState:
        """:func:`~ocr_async.pipeline.cluster.board.board_cut`."""
        reply: GroupReply = await self._ask(
            board_cut, self._key, member, known_epoch, estimate, hold, margin
        )
        return GroupState(*reply)

    async def leave(self, member: str) -> None:
        """:func:`~ocr_async.pipeline.cluster.board.board_leave`."""
        await self._ask(board_leave, self._key, member)

    async def subscribe(self) -> None:
        """None: the board pushes nothing; the heartbeat keeps the members in step."""

    async def aclose(self) -> None:
        """Nothing to close: the worker's Dask client is the worker's."""

    async def _ask(self, function: Callable[..., Any], *args: Any) -> Any:
        # Whatever a lost or stalled scheduler raises is the store lost: an
        # OSError, as SharedQuota expects of a store.
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                return await self._call(function, *args)
        except OSError:
            raise
        except Exception as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
