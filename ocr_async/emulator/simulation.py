"""Rate control on virtual time: clients, a limiter, no waiting.

A discrete-event simulation of what ``ocr-async run`` does against a quota:
each client process has one :class:`~ocr_async.limits.RateController`
shared by its workers; a worker takes an image, acquires a ticket, the call
crosses to the limiter (a model from :mod:`.limiters`), which decides at
once; an accepted call answers after ``latency``, a refused one after
``reject_latency``; a refused call goes back through the controller. Time
is an event loop's virtual clock (:class:`VirtualTimeLoop`), so a minute of
64 workers runs in a fraction of a second and the outcome depends only on
the seed. ``tests/test_limits.py`` asserts on these runs, and
``python -m benchmarks.limiters --sweep`` prints the figures that chose the
controller's constants (``--simulate``: the benchmark's matrix, simulated).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import selectors
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ocr_async.emulator.limiters import Limiter
from ocr_async.limits import RateController

__all__ = [
    "Send",
    "Simulation",
    "VirtualTimeLoop",
    "run_virtual",
    "simulate",
]

T = TypeVar("T")


class _JumpingSelector(selectors.SelectSelector):
    """Never waits: a select() with a timeout moves the virtual clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is set")
        self._vloop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, starting at 0.0.

    Its selector never blocks: when every task waits, it moves the clock to
    the next timer. So ``asyncio.sleep`` costs no real time, and time moves
    exactly when nothing else can run.
    """

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        """The virtual clock."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock on."""
        self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a fresh :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


@dataclass(frozen=True, slots=True)
class Send:
    """One call as the limiter saw it: when, whether it passed, from which client."""

    t: float
    accepted: bool
    client: int = 0


@dataclass(slots=True)
class Simulation:
    """What a :func:`simulate` run did: every call, and each client's controller."""

    controllers: list[RateController]
    sends: list[Send] = field(default_factory=list)
    #: When each client's last image was answered (the run's end for that client).
    finished: list[float] = field(default_factory=list)

    @property
    def controller(self) -> RateController:
        """The first client's controller."""
        return self.controllers[0]

    @property
    def elapsed(self) -> float:
        """When the last image of any client was answered."""
        return max(self.finished)

    def _window(self, start: float, end: float, client: int | None) -> list[Send]:
        times = [s.t for s in self.sends]
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
        return [s for s in self.sends[lo:hi] if client is None or s.client == client]

    def accepted(self, start: float, end: float, client: int | None = None) -> int:
        """Calls let through in [start, end), by the time the limiter saw them."""
        return sum(s.accepted for s in self._window(start, end, client))

    def goodput(self, start: float, end: float, client: int | None = None) -> float:
        """Calls let through per second in [start, end)."""
        return self.accepted(start, end, client) / (end - start)

    def refused(self, start: float = 0.0, end: float = math.inf) -> int:
        """Calls refused in [start, end)."""
        return sum(not s.accepted for s in self._window(start, end, None))

    def reject_share(self, start: float = 0.0, end: float = math.inf) -> float:
        """Refused calls over all calls in [start, end)."""
        window = self._window(start, end, None)
        return sum(not s.accepted for s in window) / max(len(window), 1)

    def first_refusal(self) -> float:
        """When the first call was refused."""
        return next(s.t for s in self.sends if not s.accepted)

    def time_to_reach(self, since: float, rate: float, *, window: float = 1.0) -> float:
        """Seconds after ``since`` until a ``window`` of calls let through first averages ``rate``.

        The window is centred on the moment returned; ``inf`` if never.
        """
        t = since + window / 2
        end = self.sends[-1].t if self.sends else since
        while t + window / 2 <= end:
            if self.goodput(t - window / 2, t + window / 2) >= rate:
                return t - since
            t += 0.05
        return math.inf


LimiterFactory = Callable[[Callable[[], float]], Limiter]


def simulate(
    limiter: LimiterFactory,
    *,
    images: int | None = None,
    duration: float = math.inf,
    clients: int = 1,
    workers: int = 64,
    latency: tuple[float, float] = (0.3, 0.7),
    reject_latency: tuple[float, float] = (0.002, 0.006),
    transit: tuple[float, float] = (0.0, 0.0),
    seed: int = 1,
    controller: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    starts: Sequence[float] = (),
) -> Simulation:
    """Run ``clients`` processes of ``workers`` each against one limiter.

    ``limiter`` makes the limiter from the virtual clock. Each client has
    ``images`` to do (then the run ends when all are answered) or works
    until ``duration``. ``latency`` (uniform, seconds) is how long an
    accepted call takes to answer; ``reject_latency`` a refused one (the
    API refuses without running the engine); ``transit`` the time from a
    ticket to the limiter's decision (the client's event loop and the
    network: the jitter a strict limiter sees). ``controller`` holds the
    :class:`RateController` keyword arguments, one mapping for all clients
    or one per client. ``starts`` delays each client's first call (seconds).
    """
    if images is None and math.isinf(duration):
        raise ValueError("give images or a finite duration")
    options: list[Mapping[str, Any]]
    if controller is None:
        options = [{}] * clients
    elif isinstance(controller, Mapping):
        options = [controller] * clients
    else:
        options = list(controller)
        if len(options) != clients:
            raise ValueError("one controller mapping per client")

    async def main() -> Simulation:
        clock = asyncio.get_running_loop().time
        model = limiter(clock)
        controllers = [RateController(clock=clock, **opts) for opts in options]
        sim = Simulation(controllers, finished=[0.0] * clients)
        rng = random.Random(seed)

        async def worker(client: int, todo: list[int]) -> None:
            controller = controllers[client]
            if client < len(starts):
                await asyncio.sleep(starts[client])
            while clock() < duration and todo[0] != 0:
                todo[0] -= 1
                while True:  # one image: refused calls go back through acquire()
                    ticket = await controller.acquire()
                    if transit[1] > 0:
                        await asyncio.sleep(rng.uniform(*transit))
                    accepted = model.admit()
                    sim.sends.append(Send(clock(), accepted, client))
                    if accepted:
                        await asyncio.sleep(rng.uniform(*latency))
                        controller.on_success(ticket)
                        sim.finished[client] = max(sim.finished[client], clock())
                        break
                    await asyncio.sleep(rng.uniform(*reject_latency))
                    controller.on_throttled(ticket)

        tasks = []
        for client in range(clients):
            todo = [-1 if images is None else images]
            tasks += [worker(client, todo) for _ in range(workers)]
        await asyncio.gather(*tasks)
        return sim

    return run_virtual(main())
