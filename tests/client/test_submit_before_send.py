"""`submit(before_send=...)` runs once, after admission, before the request leaves."""

import asyncio

import httpx
import pytest

from stemcat.client import GenerateRequest, NoLimiter, SeparationType, SunoClient


def _request():
    return GenerateRequest(task_id="t1", audio_id="a1", type=SeparationType.SPLIT_STEM,
                           callback_url="http://127.0.0.1:1/cb")


async def _no_sleep(_seconds):
    return None


async def test_hook_runs_once_before_the_first_send_even_when_retried():
    events = []

    def handler(request: httpx.Request) -> httpx.Response:
        events.append("sent")
        if events.count("sent") == 1:
            return httpx.Response(430, json={"code": 430, "msg": "too frequent"})
        return httpx.Response(200, json={"code": 200, "msg": "ok", "data": {"taskId": "remote1"}})

    async def hook():
        events.append("claimed")

    async with SunoClient("key-123456789", "http://api.test", transport=httpx.MockTransport(handler),
                          sleep=_no_sleep) as client:
        assert await client.submit(_request(), before_send=hook) == "remote1"
    assert events == ["claimed", "sent", "sent"]


async def test_a_failing_hook_sends_nothing():
    sent = []

    class Refused(Exception):
        pass

    async def hook():
        raise Refused

    def handler(request):
        sent.append(request)
        return httpx.Response(200, json={"code": 200, "data": {"taskId": "x"}})

    async with SunoClient("key-123456789", "http://api.test", transport=httpx.MockTransport(handler),
                          sleep=_no_sleep) as client:
        with pytest.raises(Refused):
            await client.submit(_request(), before_send=hook)
    assert sent == []


async def test_api_requests_wait_for_a_connection_before_httpx_and_a_paid_one_claims_just_before_it_leaves():
    in_flight = 0
    peak = 0
    events = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        events.append(("sent", request.url.path))
        await asyncio.sleep(0.01)
        in_flight -= 1
        if request.method == "POST":
            return httpx.Response(200, json={"code": 200, "msg": "ok", "data": {"taskId": "remote1"}})
        return httpx.Response(200, json={"code": 200, "msg": "ok", "data": 5})

    async def hook():
        events.append(("claimed", None))

    async with SunoClient("key-123456789", "http://api.test", transport=httpx.MockTransport(handler),
                          max_connections=2, limiter=NoLimiter(), sleep=_no_sleep) as client:
        reads = [client.credits() for _ in range(6)]
        await asyncio.gather(*reads, client.submit(_request(), before_send=hook))
    assert peak == 2  # never more requests at httpx than connections: no queue in httpcore's pool
    claimed = events.index(("claimed", None))
    assert events[claimed + 1] == ("sent", "/api/v1/vocal-removal/generate")
