"""Stopping mid-call: a cancelled submit says whether it can have run; a bounded read gives up in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from stemcat.client import (
    GaveUpWaiting,
    GenerateRequest,
    SeparationType,
    SharedLimiter,
    SubmitReceipt,
    SunoClient,
)
from tests.client.conftest import API_KEY, BASE_URL, ScriptedApi, envelope

SUBMIT = "/api/v1/vocal-removal/generate"
CREDIT = "/api/v1/generate/credit"
REQUEST = GenerateRequest(
    task_id="5c79be8e", audio_id="e231-8cadc7dc", type=SeparationType.SPLIT_STEM, callback_url="https://cb.test/h/tok"
)
TOO_FREQUENT_600 = httpx.Response(430, json=envelope(None, 430, "call frequency too high"),
                                  headers={"Retry-After": "600"})
ACCEPTED = httpx.Response(200, json=envelope({"taskId": "t-1"}))


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


@asynccontextmanager
async def _client(api: ScriptedApi, *, sleep: Callable[[float], object] = asyncio.sleep) -> AsyncIterator[SunoClient]:
    # The real limiter on real time: a 430 makes it hold the key for the whole Retry-After.
    limiter = SharedLimiter()
    try:
        async with SunoClient(API_KEY, BASE_URL, limiter=limiter, transport=api.transport, sleep=sleep) as client:
            yield client
    finally:
        await limiter.aclose()


async def _cancel_when(task: asyncio.Task[object], ready: Callable[[], bool]) -> float:
    while not ready():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # now waiting (Retry-After back-off, limiter, or the answer)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - started


@pytest.mark.parametrize("waits_in", ["retry-after back-off", "limiter"])
async def test_a_submit_cancelled_while_waiting_out_a_430_stops_at_once_and_was_not_executed(waits_in: str) -> None:
    api = ScriptedApi({SUBMIT: [TOO_FREQUENT_600, ACCEPTED]})
    receipt = SubmitReceipt()
    # With the back-off sleep skipped, the wait is the limiter's (the 430 paused the key for 600 s).
    async with _client(api, sleep=_no_sleep if waits_in == "limiter" else asyncio.sleep) as client:
        submit = asyncio.create_task(client.submit(REQUEST, receipt=receipt))
        took = await _cancel_when(submit, lambda: api.calls(SUBMIT) == 1)
    assert took < 1.0
    assert api.calls(SUBMIT) == 1
    assert receipt.not_executed and receipt.attempts == 1
    assert receipt.refusal is not None and receipt.refusal.code == 430


async def test_a_submit_cancelled_while_its_request_is_on_the_wire_may_have_run() -> None:
    arrived = asyncio.Event()

    async def never_answers(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    api = ScriptedApi({SUBMIT: [never_answers]})
    receipt = SubmitReceipt()
    async with _client(api) as client:
        submit = asyncio.create_task(client.submit(REQUEST, receipt=receipt))
        await _cancel_when(submit, arrived.is_set)
    assert receipt.in_flight and not receipt.not_executed


async def test_an_accepted_submit_is_not_reported_unexecuted() -> None:
    receipt = SubmitReceipt()
    async with _client(ScriptedApi({SUBMIT: [ACCEPTED]})) as client:
        assert await client.submit(REQUEST, receipt=receipt) == "t-1"
    assert not receipt.not_executed and receipt.attempts == 1


@pytest.mark.parametrize("real_backoff", [True, False], ids=["retry-after back-off", "limiter"])
async def test_a_bounded_balance_read_gives_up_instead_of_waiting_out_a_retry_after(real_backoff: bool) -> None:
    api = ScriptedApi({CREDIT: [TOO_FREQUENT_600, httpx.Response(200, json=envelope(100))]})
    async with _client(api, sleep=asyncio.sleep if real_backoff else _no_sleep) as client:
        started = time.monotonic()
        with pytest.raises(GaveUpWaiting):
            await client.credits(max_wait_s=0.3)
        assert time.monotonic() - started < 1.5
    assert api.calls(CREDIT) == 1
