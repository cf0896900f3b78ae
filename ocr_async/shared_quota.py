"""One quota shared by many processes: one adaptive controller, kept in Redis.

One app key has one call limit, but a web backend with several workers, two
teams' nightly jobs, or one job spread over machines all call it at once.
With a :class:`~ocr_async.limits.RateController` each, N processes probe the
quota N times over and refuse each other's calls. A :class:`SharedQuota`
makes every process that uses the same Redis and app key take part in one
controller:

* **One schedule, many pacers.** The shared controller's state is a few
  numbers in a Redis hash: the measured quota (``estimate``), the epoch,
  and the schedule of the *global* rate, ``G(t)``: a rate (``base``) held
  until a moment (``since``), then a climb from it, doubling every
  :data:`~ocr_async.limits.DOUBLING_TIME` in the start-up, along the probe's
  cubic after a hold, exactly as one controller climbs. Each member paces
  *locally* at its fraction of ``G(t)``: it is handed the schedule when it
  changes and once a heartbeat
  (:meth:`RateController.follow <ocr_async.limits.RateController.follow>`)
  and runs the curve itself in between, so no request waits for Redis and
  a probe climbs smoothly, not in heartbeat steps. The members climb
  together, so the group probes once, not once per member.
* **Refusals are measured where they happen, and cut once for all.** A
  member's controller measures the quota on its own calls, as alone (the
  accepted-call rate while refusals happen), and the coordinator measures
  the group from it (:func:`group_cut`): a probe's or the start-up's
  measurement scales up by the member's fraction (its part of a saturated
  limiter); a refusal at the hold is measured on the share of the *group's*
  calls let through since the last event, the other members' calls
  counting as let through, as one controller sending them all would
  measure it. Then the ``cut`` script applies it only if the epoch the
  member knew is still current. The other members' refusals of the same
  burst arrive with the old epoch: the script answers them with the cut
  already made, and they follow it (one burst is one event across
  processes).
* **News is pushed.** An applied cut is published, schedule and all, on
  the group's channel (Redis pub/sub), and every member follows it within
  a round trip, as an event: its own calls in flight are refused by the
  same burst, and fold into it. Until then, the members that were not
  refused kept climbing the probe, and their overshoot was refused as
  new events at the members that had cut (the schedule as measured: 80 %
  of a 200/s quota with the cut heard at the next heartbeat,
  docs/benchmarks.md). A member leaving, a lapsed lease, and a member
  joining or wanting more by over :data:`~ocr_async.limits.MARGIN` of the
  group's rate are published too, and every member asks for its part at
  once (with the demand it said last). Pub/sub delivers at most
  once: the heartbeat still answers the whole state, so a message lost
  while a connection was down costs at most a heartbeat.
* **Leases and demand.** Each member holds a lease of :data:`LEASE_TTL`
  seconds, renewed by a heartbeat every :data:`HEARTBEAT` seconds, which
  also reports its demand: *unbounded* when its workers queue at its pacer
  (it could use more), otherwise the rate it used, with half again as
  headroom (0 when idle). The ``beat`` script drops lapsed leases and splits
  ``G`` max-min fairly: members wanting less than an equal part get what
  they want, the rest share what is left equally. So a crashed member's
  share returns to the others once its lease lapses (within ``LEASE_TTL``
  plus a heartbeat: the first heartbeat of anyone after the lapse tells
  all), a new member gets its part when it joins (the others give theirs
  up as they hear of it), and idle members hold nothing
  (they pace at the floor, :data:`~ocr_async.limits.MIN_RATE`, and beat
  early, within a twentieth of a heartbeat, once work arrives). When no
  member wants more, the climb stands still, as one controller's does.
* **Times are Redis's.** Every lease and schedule time is Redis ``TIME``
  inside the scripts, so machines whose clocks disagree still agree; each
  member maps them onto its own monotonic clock by the offset measured at
  each heartbeat (half the round trip is the error).

The Lua scripts (registered with ``register_script``, run atomically by
Redis; :data:`BEAT`, :data:`CUT`, :data:`LEAVE`):

``beat``
    join or renew a lease, record demand, drop lapsed members, stop a climb
    nobody uses, start the schedule (fresh, or from the last estimate when a
    group whose leases all lapsed is joined again), and answer the schedule
    with this member's fraction; publish ``members`` when a lease lapsed,
    or this member's part grew (it joined, or wants more) by more than the
    margin of the group's rate.
``cut``
    a refusal's measurement: applied (new epoch, hold just under the
    estimate, probe after the hold) only if the member's epoch is current,
    and then published as ``cut`` with the schedule; answered with the
    schedule either way.
``leave``
    drop a member at once when it closes, so its share is not held until
    the lease lapses; publish ``members``.

Keys: ``ocr-async:quota:{H}:state|leases|wants``, ``H`` the first 16 hex
digits of the app key's SHA-256: two app keys on one Redis never mix, the
key itself is not written, and the braces keep the three keys in one
Redis Cluster slot. They expire :data:`STATE_TTL` seconds after the last
heartbeat. The channel is ``ocr-async:quota:{H}:events``; its messages are
JSON (``kind``, ``member``, and for a cut the schedule as the scripts
answer it).

**Failures.** Redis unreachable at :meth:`SharedQuota.start`:
:class:`SharedQuotaUnavailableError` (a :class:`~ocr_async.errors.ConfigurationError`,
so the CLI exits 2 with its message). Redis lost mid-run: the first failed
heartbeat or cut detaches the coordinator, and the controller carries on
alone from its last share (plain local control; no request ever waited for
Redis, so none is lost or failed); one warning is logged. Then up to
:data:`RECONNECTS` attempts to rejoin, :data:`HEARTBEAT` seconds apart and
doubling; a rejoin is logged, and after the last failure the run stays local.
A heartbeat that succeeds after a failed report of a cut rejoins too. The
channel is listened to again a heartbeat after it was lost, until then the
heartbeat alone keeps the member in step.

**Stores.** :class:`SharedQuota` is the member side only; what it calls
is a :class:`QuotaStore` (``beat``, ``cut``, ``leave``, and a news channel
if it has one). :class:`RedisStore` is the scripts and channel above; a
Dask run's workers keep their group on the scheduler instead
(:class:`~ocr_async.pipeline.cluster.quota.SchedulerStore`, the same rules
in Python, no channel), with the same member logic.

Needs redis-py: ``pip install 'ocr-async[cluster]'``. Use from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Final, Protocol
from urllib.parse import urlsplit, urlunsplit

from ocr_async.errors import ConfigurationError
from ocr_async.limits import (
    DOUBLING_TIME,
    INITIAL_RATE,
    MARGIN,
    MAX_CUT,
    MIN_HOLD,
    MIN_RATE,
    PROBE_TIME,
    Cut,
    RateController,
    Share,
    share_let_through,
)

try:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "ocr_async.shared_quota needs redis-py: pip install 'ocr-async[cluster]'"
    ) from exc

__all__ = [
    "BEAT",
    "CUT",
    "HEARTBEAT",
    "KEY_PREFIX",
    "LEASE_TTL",
    "LEAVE",
    "RECONNECTS",
    "STATE_TTL",
    "GroupState",
    "QuotaStore",
    "RedisStore",
    "SharedQuota",
    "SharedQuotaUnavailableError",
    "Subscription",
    "group_cut",
    "store_key",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Seconds between heartbeats: how soon a member hears of others' cuts and
#: of members joining or leaving.
HEARTBEAT: Final = 1.0
#: Seconds a lease lasts unrenewed: three heartbeats, so one late beat on a
#: busy machine does not drop a live member.
LEASE_TTL: Final = 3.0
#: Attempts to rejoin after the store was lost, HEARTBEAT seconds apart and
#: doubling (1 + 2 + 4 + 8 + 16: about half a minute), before staying local.
RECONNECTS: Final = 5
#: Seconds the store keeps a group's state after its last heartbeat: a run
#: started again within them begins from the quota measured last.
STATE_TTL: Final = 600
#: Every key starts with this.
KEY_PREFIX: Final = "ocr-async:quota"
#: A Redis command that takes longer than this has failed: the store is lost.
COMMAND_TIMEOUT: Final = 1.0
# A member whose workers queued for at least this share of its tickets
# could use more than it has.
_QUEUED_SHARE: Final = 0.5
# A member not held back by its pacer is given what it used times this.
_HEADROOM: Final = 1.5
# An idle member looks this many times a heartbeat for work arriving.
_IDLE_CHECKS: Final = 20
# The schedule never climbs past this, in calls/s (a guard, not a quota).
_MAX_RATE: Final = 1e6

# -- the Lua scripts ----------------------------------------------------------
# KEYS: 1 state (hash), 2 leases (sorted set: member -> expiry, Redis time),
# 3 wants (hash: member -> demand, -1 for unbounded). Numbers cross as
# strings: Redis turns a Lua number in a reply into an integer.

_PRELUDE: Final = f"""
local DOUBLING, PROBE, MAXR = {DOUBLING_TIME!r}, {PROBE_TIME!r}, {_MAX_RATE!r}
local function num(x) return string.format('%.17g', x) end
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function load()
  local v = redis.call('HMGET', KEYS[1], 'epoch', 'slow', 'base', 'since', 'estimate')
  if not v[1] then return nil end
  local est = false
  if v[5] and v[5] ~= '' then est = tonumber(v[5]) end
  return {{epoch = tonumber(v[1]), slow = tonumber(v[2]), base = tonumber(v[3]),
          since = tonumber(v[4]), estimate = est}}
end
local function save(st, ttl)
  local est = ''
  if st.estimate then est = num(st.estimate) end
  redis.call('HSET', KEYS[1], 'epoch', st.epoch, 'slow', st.slow, 'base', num(st.base),
             'since', num(st.since), 'estimate', est)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
end
local function rate_at(st, t)
  local x = t - st.since
  if x <= 0 then return st.base end
  if st.slow == 1 then return math.min(st.base * 2 ^ (x / DOUBLING), MAXR) end
  return math.min(st.base * (1 + (x / PROBE) ^ 3), MAXR)
end
local function expire_leases(t)
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', num(t))
  for _, m in ipairs(lapsed) do redis.call('HDEL', KEYS[3], m) end
  if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', num(t)) end
  return #lapsed
end
-- Tell every member at once: a cut (the schedule, for everyone to follow)
-- or a change of members (for everyone to ask for its part again).
local function publish(channel, kind, member, st, t)
  local message = {{kind = kind, member = member}}
  if st then
    local est = ''
    if st.estimate then est = num(st.estimate) end
    message.now, message.epoch, message.slow = num(t), st.epoch, st.slow
    message.base, message.since, message.estimate = num(st.base), num(st.since), est
  end
  redis.call('PUBLISH', channel, cjson.encode(message))
end
-- Max-min fair: members wanting less than an equal part of what is left get
-- what they want; the unbounded (-1) and the rest share the remainder.
-- Returns this member's part of g, the number of members, the sum of the
-- bounded wants and whether anyone is unbounded.
local function part(member, g)
  local raw = redis.call('HGETALL', KEYS[3])
  local bounded, unbounded, mine, total = {{}}, 0, nil, 0
  for i = 1, #raw, 2 do
    local w = tonumber(raw[i + 1])
    if raw[i] == member then mine = w end
    if w < 0 then unbounded = unbounded + 1 else
      table.insert(bounded, w)
      total = total + w
    end
  end
  table.sort(bounded)
  local left, n = g, #bounded + unbounded
  for _, w in ipairs(bounded) do
    if w * n > left then break end
    left = left - w
    n = n - 1
  end
  local level = math.huge
  if n > 0 then level = left / n end
  local give = 0
  if mine ~= nil then
    if mine < 0 then give = level else give = math.min(mine, level) end
  end
  return give, #raw / 2, total, unbounded > 0
end
local function reply(st, t, member, extra)
  local g = rate_at(st, t)
  local give, members = part(member, g)
  local est = ''
  if st.estimate then est = num(st.estimate) end
  return {{num(t), st.epoch, st.slow, num(st.base), num(st.since), est, num(give / g),
          members, extra}}
end
"""

#: ``beat``: ARGV member, lease seconds, want (-1 unbounded), initial rate,
#: margin, hold seconds, state TTL, channel.
BEAT: Final = (
    _PRELUDE
    + """
local member, ttl, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = now_s()
local lapsed = expire_leases(t)
local st = load()
local alive = redis.call('ZCARD', KEYS[2])
local renewed = redis.call('ZSCORE', KEYS[2], member) and 1 or 0
if not st then
  st = {epoch = 0, slow = 1, base = tonumber(ARGV[4]), since = t, estimate = false}
elseif alive == 0 then
  -- Everyone's lease lapsed: a new run. Keep what was measured, but start
  -- its schedule again from now.
  if st.estimate then
    st.slow, st.base, st.since = 0, st.estimate * (1 - tonumber(ARGV[5])), t + tonumber(ARGV[6])
  else
    st.slow, st.base, st.since = 1, tonumber(ARGV[4]), t
  end
end
local g = rate_at(st, t)
local before = part(member, g)
redis.call('ZADD', KEYS[2], num(t + ttl), member)
redis.call('HSET', KEYS[3], member, num(want))
local after, _, total, anyone_waits = part(member, g)
if not anyone_waits and t > st.since then
  -- Nobody's workers queue at their pacer: a climb would build a rate
  -- nobody uses. It stands still, at no more than twice what is used.
  st.base = math.max(math.min(rate_at(st, t), 2 * total), st.base)
  st.since = t
end
save(st, tonumber(ARGV[7]))
if lapsed > 0 or after - before > tonumber(ARGV[5]) * g then
  -- A lease lapsed, or a member joined or wants more, by more than the
  -- margin of the group's rate: everyone's part changes now, not at their
  -- next heartbeat (until then the newcomer's part would come on top of
  -- the others' and overshoot the margin). Smaller changes wait for the
  -- heartbeat: with many members, each would otherwise make all beat.
  publish(ARGV[8], 'members', member, nil, t)
end
return reply(st, t, member, renewed)
"""
)

#: ``cut``: ARGV member, the epoch the member knew, the quota it measured
#: (calls/s, for everyone), hold seconds, margin, state TTL, channel.
CUT: Final = (
    _PRELUDE
    + """
local member, known = ARGV[1], tonumber(ARGV[2])
local t = now_s()
local st = load()
if not st then
  st = {epoch = known, slow = 1, base = tonumber(ARGV[3]), since = t, estimate = false}
end
local applied = 0
if st.epoch == known then
  local estimate = tonumber(ARGV[3])
  st.epoch = st.epoch + 1
  st.estimate = estimate
  st.slow = 0
  st.base = estimate * (1 - tonumber(ARGV[5]))
  st.since = t + tonumber(ARGV[4])
  applied = 1
end
save(st, tonumber(ARGV[6]))
if applied == 1 then publish(ARGV[7], 'cut', member, st, t) end
return reply(st, t, member, applied)
"""
)

#: ``leave``: ARGV member, channel. Drops its lease and demand at once.
LEAVE: Final = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[2], cjson.encode({kind = 'members', member = ARGV[1]}))
return redis.call('ZCARD', KEYS[2])
"""

#: What a store raises when it cannot be reached: a :class:`QuotaStore` of
#: another kind raises an ``OSError`` (a ``ConnectionError``, a ``TimeoutError``).
_STORE_ERRORS: Final = (RedisError, OSError)


class SharedQuotaUnavailableError(ConfigurationError):
    """The shared quota's store cannot be reached at start: the run cannot share.

    The CLI maps it, as every :class:`~ocr_async.errors.ConfigurationError`,
    to exit code 2.
    """


def store_key(appkey: str) -> str:
    """The prefix of a group's keys: the app key hashed, in a cluster hash tag."""
    digest = hashlib.sha256(appkey.encode()).hexdigest()[:16]
    return f"{KEY_PREFIX}:{{{digest}}}"


def group_cut(cut: Cut, fraction: float) -> tuple[float, float]:
    """What one member's :class:`~ocr_async.limits.Cut` measured of the group.

    Returns the group's quota (calls/s) and how long its hold lasts
    (seconds). The member measured on its own calls, ``fraction`` of the
    group's when the limiter is saturated, so its measurement scales up by
    that fraction. A refusal at the hold is measured as one controller
    sending all the group's calls would measure it: on the share of calls
    let through since the last event, where the other members' calls since
    then count as let through (had one of theirs been refused, its report
    would have opened the event first). Measured on the member's own calls
    alone, a third of the sample with three members, the first refusals
    after the start-up left the group's quota 5 % low on average (and the
    probes' measure never raised it again: docs/benchmarks.md). The hold's
    calls are the group's too: at the group's hold rate they take a
    fraction of the time they would take this member alone.
    """
    rate = cut.refused_rate / fraction
    if cut.kind == "hold":
        share = share_let_through(cut.let_through / fraction, cut.refused)
        estimate = max(rate * share, rate * MAX_CUT, MIN_RATE)
    elif cut.kind == "start-up" and 0 < cut.estimate < cut.refused_rate:
        # The climb met the limit a call or two before the refused one, and
        # the member stepped back that many of its own calls: a step of its
        # own call-spacing, 1/fraction times the group's. One controller
        # sending the group's calls steps back as many of the group's calls,
        # a fraction of the time, and on a climb that doubles at a steady
        # pace the rate falls by the member's ratio to the power fraction.
        # Scaled as it was, three members measured the group's climb where
        # it stood three times as far back: 175 calls/s for a bucket of 200
        # refusing at 213 (docs/benchmarks.md).
        estimate = max(rate * (cut.estimate / cut.refused_rate) ** fraction, MIN_RATE)
    else:
        estimate = max(cut.estimate / fraction, MIN_RATE)
    return estimate, max(cut.hold_seconds, cut.hold_calls * fraction / cut.hold_rate)


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Subscription(Protocol):
    """A group's news channel, subscribed to (see :meth:`QuotaStore.subscribe`)."""

    async def get(self, timeout: float) -> str | bytes | None:
        """The next message, or None when none came within ``timeout`` seconds."""
        ...

    async def aclose(self) -> None:
        """Unsubscribe."""
        ...


class QuotaStore(Protocol):
    """Where one group's shared schedule is kept: the store side of :class:`SharedQuota`.

    Each call is atomic (a Lua script on Redis; one call on the Dask
    scheduler's event loop) and runs on the store's one clock. A store that
    cannot be reached raises ``RedisError`` or an ``OSError``. Two are
    built in: :class:`RedisStore`, and the Dask scheduler's
    (:class:`~ocr_async.pipeline.cluster.quota.SchedulerStore`).
    """

    @property
    def key(self) -> str:
        """The group's name in the store (see :func:`store_key`)."""
        ...

    @property
    def name(self) -> str:
        """Where the store is, for messages (no password)."""
        ...

    @property
    def hint(self) -> str:
        """What to do when the store cannot be reached at start."""
        ...

    async def open(self) -> None:
        """Get ready (connect, load the scripts); ConfigurationError for a bad address."""
        ...

    async def beat(
        self, member: str, *, lease: float, want: float, initial: float, margin: float, hold: float
    ) -> GroupState:
        """Join or renew ``member``'s lease with its demand; the schedule and its part."""
        ...

    async def cut(
        self, member: str, *, known_epoch: int, estimate: float, hold: float, margin: float
    ) -> GroupState:
        """A refusal's measurement, applied if ``known_epoch`` is current; the schedule."""
        ...

    async def leave(self, member: str) -> None:
        """Drop ``member`` at once."""
        ...

    async def subscribe(self) -> Subscription | None:
        """Listen to the group's news; None: this store has no channel (the heartbeat only)."""
        ...

    async def aclose(self) -> None:
        """Close what :meth:`open` opened."""
        ...


class RedisStore:
    """A group's schedule in Redis: the :data:`BEAT`, :data:`CUT` and :data:`LEAVE` scripts.

    ``client`` is a ``redis.asyncio.Redis`` to use instead of connecting to
    ``url`` (it is then not closed here).
    """

    hint: Final = "start Redis or run without a shared quota"

    def __init__(self, url: str, appkey: str, *, client: aioredis.Redis | None = None) -> None:
        if not appkey:
            raise ConfigurationError("a shared quota is keyed by the app key: none given")
        self._url = url
        self._key = store_key(appkey)
        self._keys = [f"{self._key}:state", f"{self._key}:leases", f"{self._key}:wants"]
        self._channel = f"{self._key}:events"
        self._owns_client = client is None
        self._redis: aioredis.Redis | None = client

    def __repr__(self) -> str:
        return f"RedisStore({self.name!r})"

    @property
    def key(self) -> str:
        """The prefix of this group's keys in Redis."""
        return self._key

    @property
    def name(self) -> str:
        """The URL without its password."""
        return _shown(self._url)

    async def open(self) -> None:
        """Connect (lazily: the first command does) and register the scripts."""
        if self._redis is None:
            try:
                self._redis = aioredis.Redis.from_url(
                    self._url,
                    decode_responses=True,
                    socket_timeout=COMMAND_TIMEOUT,
                    socket_connect_timeout=COMMAND_TIMEOUT,
                    # Our own reconnection is bounded and logged; redis-py's
                    # default of three retries with backoff would hide a lost
                    # store for seconds on every command.
                    retry=Retry(NoBackoff(), 1),
                )
            except ValueError as exc:
                message = f"bad shared-quota URL {self.name!r}: {exc}"
                raise ConfigurationError(message) from None
        self._beat_script = self._redis.register_script(BEAT)
        self._cut_script = self._redis.register_script(CUT)
        self._leave_script = self._redis.register_script(LEAVE)

    async def beat(
        self, member: str, *, lease: float, want: float, initial: float, margin: float, hold: float
    ) -> GroupState:
        """The ``beat`` script."""
        args = [member, repr(lease), repr(want), repr(initial), repr(margin), repr(hold)]
        raw = await self._beat_script(keys=self._keys, args=[*args, STATE_TTL, self._channel])
        return _parsed(raw)

    async def cut(
        self, member: str, *, known_epoch: int, estimate: float, hold: float, margin: float
    ) -> GroupState:
        """The ``cut`` script."""
        args = [member, str(known_epoch), repr(estimate), repr(hold), repr(margin)]
        raw = await self._cut_script(keys=self._keys, args=[*args, STATE_TTL, self._channel])
        return _parsed(raw)

    async def leave(self, member: str) -> None:
        """The ``leave`` script."""
        await self._leave_script(keys=self._keys, args=[member, self._channel])

    async def subscribe(self) -> Subscription:
        """The group's channel, subscribed to."""
        assert self._redis is not None
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
        except BaseException:
            await _RedisSubscription(pubsub).aclose()
            raise
        return _RedisSubscription(pubsub)

    async def aclose(self) -> None:
        """Close the connection, if it is this store's own."""
        if self._owns_client and self._redis is not None:
            await self._redis.aclose()
        self._redis = None


class _RedisSubscription:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def get(self, timeout: float) -> str | bytes | None:
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if message is None:
            return None
        data: str | bytes = message["data"]
        return data

    async def aclose(self) -> None:
        with contextlib.suppress(*_STORE_ERRORS):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped


def _parsed(raw: object) -> GroupState:
    if not isinstance(raw, list):
        raise RedisError(f"unexpected script reply {raw!r}")
    return GroupState.parse(raw)


@dataclass(frozen=True, slots=True)
class GroupState:
    """The shared schedule as a script answered it, for one member.

    Times are Redis's (seconds since the epoch): ``now`` when the script
    ran, ``since`` when the climb starts. ``base`` and ``estimate`` are for
    the whole group, in calls/s; ``fraction`` is this member's part of the
    global rate; ``flag`` is the script's own answer (``beat``: the lease was
    still held; ``cut``: the cut was applied).
    """

    now: float
    epoch: int
    slow_start: bool
    base: float
    since: float
    estimate: float | None
    fraction: float
    members: int
    flag: bool

    @classmethod
    def parse(cls, raw: Sequence[object]) -> GroupState:
        """Read a script's reply (strings and integers)."""
        now, epoch, slow, base, since, estimate, fraction, members, flag = raw
        return cls(
            now=float(str(now)),
            epoch=int(str(epoch)),
            slow_start=int(str(slow)) == 1,
            base=float(str(base)),
            since=float(str(since)),
            estimate=float(str(estimate)) if str(estimate) else None,
            fraction=float(str(fraction)),
            members=int(str(members)),
            flag=int(str(flag)) == 1,
        )

    def rate_at(self, t: float) -> float:
        """The global rate at Redis time ``t``, as the scripts compute it."""
        schedule = Share(self.base, self.since, self.slow_start, self.estimate)
        return min(schedule.rate_at(t), _MAX_RATE)


class SharedQuota:
    """One process's membership of a shared quota: over Redis, or any :class:`QuotaStore`.

    ::

        controller = RateController()
        shared = SharedQuota("redis://127.0.0.1:6379/0", appkey)
        await shared.start(controller)   # SharedQuotaUnavailableError if Redis is down
        try:
            ...                          # acquire / on_success / on_throttled
        finally:
            await shared.close()

    or ``async with shared.joined(controller): ...``. :meth:`start` joins
    the group and starts the heartbeat task; :meth:`close` leaves it (the
    share goes to the others at once) and closes the connection; the
    controller is left pacing alone. It implements
    :class:`~ocr_async.limits.QuotaCoordinator`.

    ``store`` is a Redis URL, with the ``appkey`` that names the group
    (:class:`RedisStore`), or a :class:`QuotaStore` already naming its group
    (a Dask run's workers share one on the scheduler). ``member`` names this
    process in the store (default: host, pid and a random suffix). ``clock``
    must be the controller's clock; ``sleep`` is what the heartbeat waits
    with. ``client`` is a ``redis.asyncio.Redis`` to use instead of
    connecting to the URL (it is then not closed here).
    """

    def __init__(
        self,
        store: str | QuotaStore,
        appkey: str = "",
        *,
        member: str | None = None,
        heartbeat: float = HEARTBEAT,
        lease: float = LEASE_TTL,
        reconnects: int = RECONNECTS,
        client: aioredis.Redis | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not (heartbeat > 0 and lease > heartbeat):
            raise ConfigurationError("the lease must outlast the heartbeat, and both be positive")
        if reconnects < 0:
            raise ConfigurationError("reconnects must not be negative")
        self._store: QuotaStore = (
            RedisStore(store, appkey, client=client) if isinstance(store, str) else store
        )
        self._member = member or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._heartbeat = heartbeat
        self._lease = lease
        self._reconnects = reconnects
        self._clock = clock
        self._sleep = sleep
        self._controller: RateController | None = None
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._cuts: set[asyncio.Task[None]] = set()
        # One beat at a time: the heartbeat's and those a change of members
        # asks for, so that an older answer never replaces a newer one.
        self._beating = asyncio.Lock()
        self._want_said = -1.0
        self._state: GroupState | None = None
        # Redis time minus this clock, measured at each answer.
        self._offset = 0.0
        self._epoch = 0
        self._last_beat = 0.0
        self._last_sent = 0
        self._last_queued = 0
        self._lost = False
        self._warned = False
        self._gave_up = False
        self._closed = False

    def __repr__(self) -> str:
        return f"SharedQuota({self._store.name!r}, member={self._member!r})"

    # -- what a caller reads ----------------------------------------------------

    @property
    def member(self) -> str:
        """The name of this process in the store."""
        return self._member

    @property
    def key(self) -> str:
        """The group's name in its store (in Redis, the prefix of its keys)."""
        return self._store.key

    @property
    def sharing(self) -> bool:
        """Whether the controller follows the shared schedule now (not lost, not closed)."""
        return self._controller is not None and self._controller.coordinator is self

    @property
    def lost(self) -> bool:
        """Whether the store was lost and the controller paces alone."""
        return self._lost

    @property
    def fraction(self) -> float:
        """The part of the global rate this member paces at, as last heard (0 before start)."""
        return self._state.fraction if self._state is not None else 0.0

    @property
    def members(self) -> int:
        """Members holding a lease at the last answer."""
        return self._state.members if self._state is not None else 0

    @property
    def epoch(self) -> int:
        """The group's epoch as last heard: its congestion events so far."""
        return self._epoch

    @property
    def quota_estimate(self) -> float | None:
        """The group's measured quota as last heard, in calls/s."""
        return self._state.estimate if self._state is not None else None

    def global_rate(self) -> float:
        """The group's rate now, by the last schedule heard (0 before start)."""
        if self._state is None:
            return 0.0
        return self._state.rate_at(self._clock() + self._offset)

    # -- lifecycle --------------------------------------------------------------

    async def start(self, controller: RateController) -> None:
        """Join the group and pace ``controller`` at this member's part; heartbeat from now.

        Raises :class:`SharedQuotaUnavailableError` when the store cannot be
        reached, and :class:`~ocr_async.errors.ConfigurationError` for a bad
        URL or a fixed-rate controller.
        """
        if self._controller is not None:
            raise RuntimeError("this SharedQuota has already started")
        if controller.fixed_rps is not None:
            raise ConfigurationError("a shared quota needs the adaptive rate controller, not --rps")
        store = self._store
        await store.open()
        self._controller = controller
        news: Subscription | None = None
        try:
            # Listening before joining, so that no member joining just after
            # this one goes unheard.
            news = await store.subscribe()
            state = await self._beat(join=True)
        except _STORE_ERRORS as exc:
            self._controller = None
            if news is not None:
                await news.aclose()
            await store.aclose()
            raise SharedQuotaUnavailableError(
                f"the shared quota's store at {store.name} cannot be reached "
                f"({type(exc).__name__}: {exc}); {store.hint}"
            ) from None
        self._epoch = state.epoch
        controller.coordinator = self
        self._follow(state, event=False)
        self._task = asyncio.create_task(self._run(), name=f"shared-quota {self._member}")
        if news is not None:
            self._listener = asyncio.create_task(
                self._listen(news), name=f"shared-quota {self._member} news"
            )
        log.info(
            "shared quota: joined %s as %s, one of %d; share %.0f%%",
            store.name,
            self._member,
            state.members,
            100 * state.fraction,
        )

    async def close(self) -> None:
        """Leave the group (the share goes to the others at once) and close the connection.

        The controller keeps pacing alone from its last share. Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, self._listener, *self._cuts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._controller is not None and self._controller.coordinator is self:
            self._controller.coordinator = None
        if self._state is not None and not self._lost:
            # If this fails, the lease lapses on its own within LEASE_TTL.
            with contextlib.suppress(*_STORE_ERRORS):
                await self._store.leave(self._member)
        await self._store.aclose()

    def joined(self, controller: RateController) -> _Joined:
        """``async with shared.joined(controller):`` :meth:`start`, then :meth:`close`."""
        return _Joined(self, controller)

    # -- QuotaCoordinator ---------------------------------------------------------

    def on_cut(self, cut: Cut) -> None:
        """Send this member's measurement to the group, in the background.

        The controller has already cut its own rate; the answer replaces it
        with the group's schedule. A member holding (almost) no share has
        measured nothing of the quota, and only cuts locally.
        """
        if not self.sharing or self._state is None or self._state.fraction <= 0:
            return
        estimate, hold = group_cut(cut, self._state.fraction)
        task = asyncio.create_task(self._report_cut(estimate, hold))
        self._cuts.add(task)
        task.add_done_callback(self._cuts.discard)

    # -- internals ----------------------------------------------------------------

    async def _next_beat(self) -> None:
        """Wait a heartbeat; less for a member holding no share whose workers now wait."""
        if self.fraction > 0:
            await self._sleep(self._heartbeat)
            return
        # An idle member paces at the floor: work arriving must not wait a
        # whole heartbeat for its share.
        step = self._heartbeat / _IDLE_CHECKS
        for _ in range(_IDLE_CHECKS):
            await self._sleep(step)
            if self._controller is not None and self._controller.waiting > 0:
                return

    async def _run(self) -> None:
        # Ends on close, not only when cancelled: redis-py turns a cancel that
        # meets a command in flight into ConnectionError, which must not send
        # a closing member off to rejoin (close() would wait for it forever).
        while not self._closed:
            await self._next_beat()
            try:
                state = await self._beat(join=False)
            except _STORE_ERRORS as exc:
                self._lose(exc)
                if not await self._rejoin():
                    self._gave_up = True
                    return
                continue
            if self._lost:
                # A cut's report or a pushed beat failed, but the store
                # answers again: follow the group again.
                self._regain(state)
            else:
                self._follow(state, event=state.epoch > self._epoch and not self._cuts)

    async def _rejoin(self) -> bool:
        wait = self._heartbeat
        for attempt in range(1, self._reconnects + 1):
            await self._sleep(wait)
            wait *= 2
            if self._closed:
                return False
            try:
                state = await self._beat(join=True)
            except _STORE_ERRORS as exc:
                log.debug("shared quota: rejoin attempt %d failed: %s", attempt, exc)
                continue
            if self._closed:
                return False
            self._regain(state)
            return True
        log.info(
            "shared quota: %s still unreachable after %d attempts; "
            "this process paces alone for the rest of the run",
            self._store.name,
            self._reconnects,
        )
        return False

    def _regain(self, state: GroupState) -> None:
        assert self._controller is not None
        self._lost = False
        self._controller.coordinator = self
        self._follow(state, event=state.epoch > self._epoch)
        log.info("shared quota: rejoined %s; sharing the quota again", self._store.name)

    async def _listen(self, news: Subscription | None) -> None:
        """Hear the group's news as it happens: cuts, and changes of members.

        Pub/sub is at most once: a message missed while the connection was
        down is made up by the next heartbeat, which answers the whole state.
        Lost, the channel is subscribed to again a heartbeat later, until
        the heartbeat task gives the store up, or the member closes.
        """
        while not (self._gave_up or self._closed):
            if news is None:
                await self._sleep(self._heartbeat)
                try:
                    news = await self._store.subscribe()
                except _STORE_ERRORS as exc:
                    log.debug("shared quota: cannot listen for the group's news: %s", exc)
                    continue
                if news is None:
                    return  # the store has no channel
            try:
                while not (self._gave_up or self._closed):
                    data = await news.get(self._heartbeat)
                    if data is not None:
                        await self._heard(data)
            except _STORE_ERRORS as exc:
                log.debug("shared quota: listening for the group's news failed: %s", exc)
            finally:
                await news.aclose()
            news = None

    async def _heard(self, data: str | bytes) -> None:
        """Act on one message of the channel (see the ``publish`` of the scripts)."""
        try:
            news = json.loads(data)
            epoch = int(news.get("epoch", 0))
        except (ValueError, TypeError, AttributeError):
            # Not ours (anyone may publish on a channel): the heartbeat is
            # the truth anyway.
            log.debug("shared quota: ignoring a message on %s: %.80r", self._store.name, data)
            return
        if news.get("member") == self._member or not self.sharing or self._state is None:
            return  # our own news came with the script's answer
        if news.get("kind") == "members":
            # Everyone's part changes: ask for ours now, with the demand we
            # last said (a fresh one over a few milliseconds would be noise).
            try:
                state = await self._beat(join=False, want=self._want_said)
            except _STORE_ERRORS as exc:
                self._lose(exc)  # the heartbeat task finds out too, and rejoins
                return
            if self.sharing:
                self._follow(state, event=state.epoch > self._epoch and not self._cuts)
        elif news.get("kind") == "cut" and epoch > self._epoch:
            known = self._state
            try:
                state = GroupState(
                    now=float(news["now"]),
                    epoch=epoch,
                    slow_start=int(news["slow"]) == 1,
                    base=float(news["base"]),
                    since=float(news["since"]),
                    estimate=float(news["estimate"]) if news["estimate"] else None,
                    fraction=known.fraction,
                    members=known.members,
                    flag=True,
                )
            except (KeyError, ValueError, TypeError):
                log.debug("shared quota: ignoring a bad cut on %s: %.80r", self._store.name, data)
                return
            # Another member's refusal opened this event: the calls this
            # one has in flight are refused by the same burst.
            self._follow(state, event=not self._cuts)

    def _lose(self, exc: BaseException) -> None:
        if self._lost or self._closed:
            return  # closing: a command cut short is no lost store
        self._lost = True
        assert self._controller is not None
        if self._controller.coordinator is self:
            self._controller.coordinator = None
        message = (
            "shared quota: lost the store at %s (%s); carrying on with this process's "
            "own rate control from %.1f calls/s"
        )
        args = (self._store.name, type(exc).__name__, self._controller.current_rate)
        if self._warned:
            log.info(message, *args)
        else:
            self._warned = True
            log.warning(message, *args)

    def _want(self, now: float, join: bool) -> float:
        """The demand of this member: -1 when its workers queue at the pacer, else what it used."""
        controller = self._controller
        assert controller is not None
        sent, queued = controller.sent - self._last_sent, controller.queued - self._last_queued
        self._last_sent, self._last_queued = controller.sent, controller.queued
        elapsed, self._last_beat = now - self._last_beat, now
        if join or controller.waiting > 0 or (sent > 0 and queued >= _QUEUED_SHARE * sent):
            return -1.0
        return _HEADROOM * sent / elapsed if elapsed > 0 else 0.0

    async def _beat(self, *, join: bool, want: float | None = None) -> GroupState:
        async with self._beating:
            sent_at = self._clock()
            if want is None:
                want = self._want_said = self._want(sent_at, join)
            state = await self._store.beat(
                self._member,
                lease=self._lease,
                want=want,
                initial=INITIAL_RATE,
                margin=MARGIN,
                hold=MIN_HOLD,
            )
            return self._answered(state, sent_at)

    async def _report_cut(self, estimate: float, hold_seconds: float) -> None:
        sent_at = self._clock()
        try:
            state = await self._store.cut(
                self._member,
                known_epoch=self._epoch,
                estimate=estimate,
                hold=hold_seconds,
                margin=MARGIN,
            )
        except _STORE_ERRORS as exc:
            self._lose(exc)  # the heartbeat task notices too, and tries to rejoin
            return
        state = self._answered(state, sent_at)
        if self.sharing:
            # Applied or not, this controller already opened an epoch for
            # the burst: the group's answer is the same event, not a new one.
            self._follow(state, event=False)

    def _answered(self, state: GroupState, sent_at: float) -> GroupState:
        # Half the round trip is the error of this offset.
        self._offset = state.now - (sent_at + self._clock()) / 2
        return state

    def _follow(self, state: GroupState, *, event: bool) -> None:
        known = self._state
        if known is not None and state.epoch < known.epoch:
            # An answer older than a cut already followed (pushed while the
            # script's answer was on its way): its part is new, its
            # schedule is not.
            state = replace(known, fraction=state.fraction, members=state.members)
            event = False
        self._state = state
        self._epoch = max(self._epoch, state.epoch)
        controller = self._controller
        if controller is None or controller.coordinator is not self:
            return
        fraction = state.fraction
        estimate = state.estimate
        controller.follow(
            Share(
                base=max(fraction * state.base, MIN_RATE),
                since=state.since - self._offset,
                slow_start=state.slow_start,
                estimate=None if estimate is None else max(fraction * estimate, MIN_RATE),
            ),
            event=event,
        )


class _Joined:
    """The async context manager of :meth:`SharedQuota.joined`."""

    def __init__(self, shared: SharedQuota, controller: RateController) -> None:
        self._shared = shared
        self._controller = controller

    async def __aenter__(self) -> SharedQuota:
        await self._shared.start(self._controller)
        return self._shared

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shared.close()
