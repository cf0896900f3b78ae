"""Tests for ocr_async.emulator.faults and how the emulator acts faults out.

Pure decisions are checked without a server; every kind is then driven on
purpose against a real emulator on an ephemeral port and observed with a
raw aiohttp client; finally the real OcrClient runs a batch through a
faulty emulator and must still recognize every image.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ocr_async.client import OcrClient
from ocr_async.emulator import (
    EmulatorConfig,
    FaultKind,
    FaultPlan,
    RunningEmulator,
    make_png,
    parse_fault_kinds,
    running_emulator,
)
from ocr_async.emulator import faults as faults_module
from ocr_async.errors import (
    HttpStatusError,
    MalformedResponseError,
    RequestTimeoutError,
    ServerFailureError,
    TemporarilyUnavailableError,
)
from ocr_async.models import Endpoint
from ocr_async.protocol import AUTH_HEADER, PreparedRequest, build_file_request, parse_response
from ocr_async.retry import RetryPolicy

TOKEN = "fault-token"
APPKEY = "fault-appkey"
ALL_BUT_SLOW = tuple(kind for kind in FaultKind if kind is not FaultKind.SLOW)
# What observe() reports for each kind; None (no fault) reads as "ok".
OBSERVED = {
    None: "ok",
    FaultKind.DROP: "drop",
    FaultKind.HTTP_502_HTML: "502",
    FaultKind.TRUNCATED_JSON: "truncated",
    FaultKind.CUT_JSON: "cut",
    FaultKind.UNAVAILABLE: "unavailable",
    FaultKind.UNKNOWN: "unknown",
}


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


@asynccontextmanager
async def faulty(plan: FaultPlan, **config: object) -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(faults=plan, **config)) as emu:  # type: ignore[arg-type]
        yield emu


def ocr_request(emu: RunningEmulator, text: str = "hello fault") -> PreparedRequest:
    return build_file_request(
        base_url=emu.base_url,
        appkey=APPKEY,
        token=TOKEN,
        endpoint=Endpoint.GENERAL,
        image=make_png(text),
        max_bytes=10**7,
    )


def post(
    session: aiohttp.ClientSession, prepared: PreparedRequest, **options: Any
) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
    return session.post(prepared.url, data=prepared.body, headers=dict(prepared.headers), **options)


async def read(session: aiohttp.ClientSession, prepared: PreparedRequest, **options: Any) -> bytes:
    async with post(session, prepared, **options) as response:
        return await response.read()


async def healthy_answer() -> bytes:
    """The answer of an emulator without faults to the same request."""
    async with running_emulator() as healthy, aiohttp.ClientSession() as session:
        return await read(session, ocr_request(healthy))


async def observe(session: aiohttp.ClientSession, prepared: PreparedRequest) -> str:
    """What a plain HTTP client sees: which fault, or "ok"."""
    try:
        async with post(session, prepared) as response:
            if response.status == 502:
                return "502"
            body = await response.read()
    except aiohttp.ClientPayloadError:
        return "truncated"
    except aiohttp.ServerDisconnectedError:
        return "drop"
    try:
        code = json.loads(body)["header"]["resultCode"]
    except ValueError:
        return "cut"
    return {0: "ok", 5000503: "unavailable", -1: "unknown"}[code]


async def wait_idle(emu: RunningEmulator) -> None:
    """Until no OCR call is being handled (a slow one notices its client left)."""
    for _ in range(200):
        if emu.stats.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the emulator is still handling a call")


# --- parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        pytest.param("drop", (FaultKind.DROP,), id="one"),
        pytest.param("drop,502", (FaultKind.DROP, FaultKind.HTTP_502_HTML), id="two"),
        pytest.param(
            " Truncated , CUT ", (FaultKind.TRUNCATED_JSON, FaultKind.CUT_JSON), id="case-space"
        ),
        pytest.param(
            "http-502-html,truncated_json,torn",
            (FaultKind.HTTP_502_HTML, FaultKind.TRUNCATED_JSON),
            id="names-and-aliases",
        ),
        pytest.param("-1,5000503", (FaultKind.UNKNOWN, FaultKind.UNAVAILABLE), id="codes"),
        pytest.param("slow,drop,slow", (FaultKind.SLOW, FaultKind.DROP), id="repeats-dropped"),
        pytest.param("all", tuple(FaultKind), id="all"),
        pytest.param("slow,all", (FaultKind.SLOW, *ALL_BUT_SLOW), id="all-after-one"),
    ],
)
def test_parse_fault_kinds(text: str, kinds: tuple[FaultKind, ...]) -> None:
    assert parse_fault_kinds(text) == kinds


@pytest.mark.parametrize("text", ["", " , ", "nope", "drop,teapot", "503"])
def test_parse_fault_kinds_names_the_choices(text: str) -> None:
    with pytest.raises(ValueError, match="choose from drop, 502, truncated, cut") as raised:
        parse_fault_kinds(text)
    assert "or all" in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"rate": -0.01}, "between 0 and 1", id="negative"),
        pytest.param({"rate": 1.01}, "between 0 and 1", id="over-one"),
        pytest.param({"rate": float("nan")}, "between 0 and 1", id="nan"),
        pytest.param({"rate": 0.1, "kinds": ()}, "at least one", id="no-kinds"),
        pytest.param({"rate": 0.1, "kinds": ("drop",)}, "FaultKind", id="strings"),
        pytest.param({"rate": 0.1, "slow_seconds": -1.0}, "slow_seconds", id="slow"),
    ],
)
def test_fault_plan_refuses_nonsense(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultPlan(**kwargs)  # type: ignore[arg-type]


# --- decisions (pure) --------------------------------------------------------------


def test_same_seed_same_sequence() -> None:
    first = [FaultPlan(rate=0.3, seed=42).decide(n) for n in range(1, 201)]
    again = [FaultPlan(rate=0.3, seed=42).decide(n) for n in range(1, 201)]
    other = [FaultPlan(rate=0.3, seed=43).decide(n) for n in range(1, 201)]
    assert first == again
    assert first != other
    assert {kind for kind in first if kind is not None} == set(FaultKind)
    # Asking out of order changes nothing: call n's fate is its own.
    plan = FaultPlan(rate=0.3, seed=42)
    assert [plan.decide(n) for n in range(200, 0, -1)] == first[::-1]


def test_sequence_does_not_depend_on_the_process() -> None:
    # faults.py needs only the standard library: load it alone, which is fast.
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('faults', sys.argv[1])\n"
        "faults = importlib.util.module_from_spec(spec)\n"
        "sys.modules['faults'] = faults\n"
        "spec.loader.exec_module(faults)\n"
        "p = faults.FaultPlan(rate=0.3, seed=7)\n"
        "print(','.join(k.value if k else '-' for k in map(p.decide, range(1, 101))))\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code, str(Path(faults_module.__file__ or ""))],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        for hash_seed in ("0", "12345")
    }
    plan = FaultPlan(rate=0.3, seed=7)
    here = ",".join(k.value if k else "-" for k in map(plan.decide, range(1, 101)))
    assert runs == {here}


@pytest.mark.parametrize("rate", [0.02, 0.15, 0.5, 0.9])
def test_rate_is_the_share_of_faulted_calls(rate: float) -> None:
    plan = FaultPlan(rate=rate, seed=2026)
    faulted = sum(plan.decide(n) is not None for n in range(1, 2001))
    # Four binomial standard deviations: a wrong rate fails, chance does not.
    tolerance = 4 * (2000 * rate * (1 - rate)) ** 0.5
    assert abs(faulted - 2000 * rate) <= tolerance


def test_kinds_are_equally_likely_and_only_those_asked_for() -> None:
    counts = Counter(FaultPlan(rate=1.0, seed=5).decide(n) for n in range(1, 2001))
    assert set(counts) == set(FaultKind)
    expected = 2000 / len(FaultKind)
    assert all(abs(n - expected) <= 4 * (expected**0.5) for n in counts.values())
    two = FaultPlan(rate=1.0, seed=5, kinds=(FaultKind.DROP, FaultKind.SLOW))
    assert {two.decide(n) for n in range(1, 501)} == {FaultKind.DROP, FaultKind.SLOW}


def test_rate_zero_and_one() -> None:
    assert all(FaultPlan(rate=0.0, seed=1).decide(n) is None for n in range(1, 501))
    assert all(FaultPlan(rate=1.0, seed=1).decide(n) is not None for n in range(1, 501))


def test_raising_the_rate_only_adds_faults() -> None:
    low = FaultPlan(rate=0.1, seed=9)
    high = FaultPlan(rate=0.2, seed=9)
    low_faults = {n: low.decide(n) for n in range(1, 1001) if low.decide(n) is not None}
    assert low_faults
    assert all(high.decide(n) is kind for n, kind in low_faults.items())
    assert sum(high.decide(n) is not None for n in range(1, 1001)) > len(low_faults)


# --- each kind against the real emulator --------------------------------------------


async def test_drop_closes_the_connection_unanswered() -> None:
    async with faulty(FaultPlan(rate=1.0, kinds=(FaultKind.DROP,))) as emu:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await read(session, ocr_request(emu))
        stats = emu.stats
        assert stats.requests == 1
        assert stats.faults == {"drop": 1}
        assert stats.by_code == {}
        assert stats.answered_ok == 0
        assert stats.bytes_received > 0  # the request was read before hanging up


async def test_502_is_a_gateways_html_page() -> None:
    async with (
        faulty(FaultPlan(rate=1.0, kinds=(FaultKind.HTTP_502_HTML,))) as emu,
        aiohttp.ClientSession() as session,
        post(session, ocr_request(emu)) as response,
    ):
        assert response.status == 502
        assert response.content_type == "text/html"
        body = await response.read()
    assert b"<title>502 Bad Gateway</title>" in body
    with pytest.raises(HttpStatusError) as raised:
        parse_response(502, body)
    assert raised.value.retryable
    assert emu.stats.faults == {"502": 1}
    assert emu.stats.answered_ok == 0
    assert emu.stats.by_code == {}


async def test_truncated_promises_the_whole_answer_and_tears_it() -> None:
    full = await healthy_answer()
    received: list[bytes] = []

    async def read_in_chunks(response: aiohttp.ClientResponse) -> None:
        async for chunk in response.content.iter_any():
            received.append(chunk)

    async with (
        faulty(FaultPlan(rate=1.0, kinds=(FaultKind.TRUNCATED_JSON,))) as emu,
        aiohttp.ClientSession() as session,
    ):
        async with post(session, ocr_request(emu)) as response:
            assert response.status == 200
            assert response.content_length == len(full)
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_in_chunks(response)
        assert b"".join(received) == full[: len(full) // 2]
        with pytest.raises(aiohttp.ClientPayloadError):  # as read() meets it
            await read(session, ocr_request(emu))
    assert emu.stats.faults == {"truncated": 2}
    assert emu.stats.answered_ok == 0
    assert emu.stats.by_code == {}


async def test_cut_json_is_complete_http_but_not_json() -> None:
    full = await healthy_answer()
    async with (
        faulty(FaultPlan(rate=1.0, kinds=(FaultKind.CUT_JSON,))) as emu,
        aiohttp.ClientSession() as session,
        post(session, ocr_request(emu)) as response,
    ):
        assert response.status == 200
        body = await response.read()
        assert response.content_length == len(body)
    assert body == full[: len(full) // 2]
    with pytest.raises(MalformedResponseError):
        parse_response(200, body)
    assert emu.stats.faults == {"cut": 1}
    assert emu.stats.answered_ok == 0


@pytest.mark.parametrize(
    ("kind", "code", "error"),
    [
        pytest.param(FaultKind.UNAVAILABLE, 5000503, TemporarilyUnavailableError, id="5000503"),
        pytest.param(FaultKind.UNKNOWN, -1, ServerFailureError, id="minus-one"),
    ],
)
async def test_envelope_faults(kind: FaultKind, code: int, error: type[Exception]) -> None:
    async with (
        faulty(FaultPlan(rate=1.0, kinds=(kind,))) as emu,
        aiohttp.ClientSession() as session,
        post(session, ocr_request(emu)) as response,
    ):
        assert response.status == 200
        body = await response.read()
    assert json.loads(body)["header"]["resultCode"] == code
    with pytest.raises(error):
        parse_response(200, body)
    assert emu.stats.faults == {kind.value: 1}
    assert emu.stats.by_code == {code: 1}
    assert emu.stats.answered_ok == 0


async def test_slow_outlasts_a_short_client_timeout_and_stops_when_it_leaves() -> None:
    plan = FaultPlan(rate=1.0, kinds=(FaultKind.SLOW,), slow_seconds=30.0)
    async with faulty(plan) as emu, aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await read(session, ocr_request(emu), timeout=aiohttp.ClientTimeout(total=0.2))
        await wait_idle(emu)
        # The handler gave up with its client, not after 30 s.
        assert loop.time() - started < 3.0
        assert emu.stats.faults == {"slow": 1}
        assert emu.stats.disconnected == 1
        assert emu.stats.answered_ok == 0
        assert emu.stats.by_code == {}


async def test_slow_still_answers_a_patient_client() -> None:
    plan = FaultPlan(rate=1.0, kinds=(FaultKind.SLOW,), slow_seconds=0.05)
    async with faulty(plan) as emu, aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await observe(session, ocr_request(emu)) == "ok"
        assert loop.time() - started >= 0.05
    assert emu.stats.answered_ok == 1
    assert emu.stats.by_code == {0: 1}


async def test_faults_follow_the_plan_call_by_call_and_replay_after_reset() -> None:
    plan = FaultPlan(rate=0.5, seed=11, kinds=ALL_BUT_SLOW)
    expected = [OBSERVED[plan.decide(n)] for n in range(1, 41)]
    assert len(set(expected)) == len(OBSERVED)  # every kind shows up, and "ok"
    async with faulty(plan) as emu, aiohttp.ClientSession() as session:
        seen = [await observe(session, ocr_request(emu)) for _ in range(40)]
        assert seen == expected
        stats = emu.stats
        assert stats.requests == 40
        assert stats.answered_ok == expected.count("ok")
        assert stats.faults == {
            kind.value: n for kind, n in Counter(map(plan.decide, range(1, 41))).items() if kind
        }
        assert stats.by_code == {
            code: n
            for code, n in {
                0: expected.count("ok"),
                5000503: expected.count("unavailable"),
                -1: expected.count("unknown"),
            }.items()
            if n
        }
        async with session.post(emu.url("/_emulator/reset")) as r:
            served = await r.json()
        assert served["faults"] == {}
        assert served["answered_ok"] == 0
        assert [await observe(session, ocr_request(emu)) for _ in range(40)] == expected


async def test_faults_come_after_auth_and_the_call_hook() -> None:
    def hook(n: int) -> int | None:
        return 4000001 if n == 1 else None

    plan = FaultPlan(rate=1.0, kinds=(FaultKind.DROP,))
    config = EmulatorConfig(faults=plan, fault=hook, tokens=frozenset({TOKEN}))
    async with running_emulator(config) as emu, aiohttp.ClientSession() as session:
        bad_token = ocr_request(emu)
        headers = {**bad_token.headers, AUTH_HEADER: "Bearer wrong"}
        async with session.post(bad_token.url, data=bad_token.body, headers=headers) as r:
            assert (await r.json())["header"]["resultCode"] == 4010006
        async with post(session, ocr_request(emu)) as r:
            assert (await r.json())["header"]["resultCode"] == 4000001  # the hook wins call 1
        assert await observe(session, ocr_request(emu)) == "drop"  # call 2
    assert emu.stats.faults == {"drop": 1}
    assert emu.stats.by_code == {4010006: 1, 4000001: 1}


async def test_stats_route_serves_fault_counters() -> None:
    async with (
        faulty(FaultPlan(rate=1.0, kinds=(FaultKind.CUT_JSON,))) as emu,
        aiohttp.ClientSession() as session,
    ):
        assert await observe(session, ocr_request(emu)) == "cut"
        async with session.get(emu.url("/_emulator/stats")) as r:
            served = await r.json()
    assert served["faults"] == {"cut": 1}
    assert served["requests"] == 1
    assert served["answered_ok"] == 0


# --- the real client through a faulty emulator -----------------------------------------


async def test_client_recognizes_every_image_through_random_faults() -> None:
    plan = FaultPlan(rate=0.15, seed=20261124, kinds=ALL_BUT_SLOW)
    retry = RetryPolicy(max_attempts=8, initial_wait=0, max_wait=0, jitter=0)
    images = {n: make_png(f"img {n}") for n in range(300)}
    async with faulty(plan) as emu:
        async with OcrClient(
            appkey=APPKEY,
            token=TOKEN,
            base_url=emu.base_url,
            concurrency=16,
            retry=retry,
            sleep=no_sleep,
            timeout=10,
        ) as client:
            results = await asyncio.gather(*(client.recognize(images[n]) for n in images))
        stats = emu.stats
    assert [r.text for r in results] == [f"img {n}" for n in images]
    faults = sum(stats.faults.values())
    assert set(stats.faults) == {kind.value for kind in ALL_BUT_SLOW}
    assert 20 <= faults <= 90  # about 15 % of ~350 calls
    # Each fault cost exactly one more request; nothing else failed.
    assert stats.requests == len(images) + faults
    assert sum(r.attempts for r in results) == stats.requests
    # Every success the emulator counts was seen by the client, once per image.
    assert stats.answered_ok == len(images)
    assert stats.by_code == {
        0: len(images),
        5000503: stats.faults["unavailable"],
        -1: stats.faults["unknown"],
    }


def first_seed(
    pattern: list[FaultKind | None], *, rate: float, kinds: tuple[FaultKind, ...]
) -> int:
    """The smallest seed whose plan starts with ``pattern`` (calls 1, 2, ...)."""
    for seed in range(10_000):
        plan = FaultPlan(rate=rate, seed=seed, kinds=kinds)
        if [plan.decide(n) for n in range(1, len(pattern) + 1)] == pattern:
            return seed
    raise AssertionError("no seed found")


async def test_client_times_out_on_a_slow_answer_and_retries() -> None:
    kinds = (FaultKind.SLOW,)
    seed = first_seed([FaultKind.SLOW, None], rate=0.5, kinds=kinds)
    plan = FaultPlan(rate=0.5, seed=seed, kinds=kinds, slow_seconds=2.0)
    retry = RetryPolicy(max_attempts=3, initial_wait=0, max_wait=0, jitter=0)
    async with faulty(plan) as emu:
        async with OcrClient(
            appkey=APPKEY,
            token=TOKEN,
            base_url=emu.base_url,
            retry=retry,
            sleep=no_sleep,
            timeout=0.3,
        ) as client:
            recognition = await client.recognize(make_png("patience"))
        assert recognition.text == "patience"
        assert recognition.attempts == 2
        await wait_idle(emu)
        assert emu.stats.faults == {"slow": 1}
        assert emu.stats.disconnected == 1
        assert emu.stats.answered_ok == 1


async def test_client_gives_up_after_every_attempt_times_out() -> None:
    plan = FaultPlan(rate=1.0, kinds=(FaultKind.SLOW,), slow_seconds=2.0)
    retry = RetryPolicy(max_attempts=2, initial_wait=0, max_wait=0, jitter=0)
    async with faulty(plan) as emu:
        async with OcrClient(
            appkey=APPKEY,
            token=TOKEN,
            base_url=emu.base_url,
            retry=retry,
            sleep=no_sleep,
            timeout=0.3,
        ) as client:
            with pytest.raises(RequestTimeoutError) as raised:
                await client.recognize(make_png("never"))
        assert raised.value.attempts == 2
        await wait_idle(emu)
        assert emu.stats.faults == {"slow": 2}
        assert emu.stats.answered_ok == 0
