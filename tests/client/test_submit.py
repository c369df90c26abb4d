"""The paid submit: re-sent only when the request provably was not executed."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from stemcat.client import (
    EndpointNotFound,
    GenerateRequest,
    InsufficientCredits,
    InvalidRequest,
    Maintenance,
    PayloadTooLarge,
    ResponseFormatError,
    SeparationType,
    ServerError,
    SharedLimiter,
    SubmitOutcomeUnknown,
    SunoClient,
    SunoError,
    TooFrequent,
    TransportFailure,
    Unauthorized,
)
from tests.client.conftest import API_KEY, FakeClock, ScriptedApi, SleepLog, envelope, load_contract

SUBMIT = "/api/v1/vocal-removal/generate"
REQUEST = GenerateRequest(
    task_id="5c79be8e", audio_id="e231-8cadc7dc", type=SeparationType.SPLIT_STEM, callback_url="https://cb.test/h/tok"
)
ACCEPTED = httpx.Response(200, json=load_contract("generate_response.json"))
TASK_ID = "5e72d367bdfbe44785e28d72cb1697c7"

MakeClient = Callable[..., SunoClient]


async def test_submit_sends_the_documented_body_with_the_key(make_client: MakeClient) -> None:
    api = ScriptedApi({SUBMIT: [ACCEPTED]})
    async with make_client(api) as client:
        assert await client.submit(REQUEST) == TASK_ID
    (sent,) = api.requests
    assert sent.method == "POST"
    assert sent.url == "https://api.test/api/v1/vocal-removal/generate"
    assert json.loads(sent.content) == {
        "taskId": "5c79be8e",
        "audioId": "e231-8cadc7dc",
        "type": "split_stem",
        "callBackUrl": "https://cb.test/h/tok",
    }
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"


AMBIGUOUS = [
    pytest.param(httpx.ReadTimeout("timed out"), TransportFailure, id="read-timeout"),
    pytest.param(httpx.RemoteProtocolError("Server disconnected"), TransportFailure, id="disconnect-after-send"),
    pytest.param(httpx.ReadError("Connection reset by peer"), TransportFailure, id="connection-reset"),
    pytest.param(httpx.WriteTimeout("write timed out"), TransportFailure, id="write-timeout"),
    pytest.param(httpx.Response(500, json={"code": 500, "msg": "oops"}), ServerError, id="http-500"),
    pytest.param(httpx.Response(502, text="Bad Gateway"), ServerError, id="http-502"),
    pytest.param(httpx.Response(200, json=envelope(None, code=500, msg="oops")), ServerError, id="json-500"),
    pytest.param(httpx.Response(200, json=envelope({})), ResponseFormatError, id="200-without-taskId"),
    pytest.param(httpx.Response(200, text="<html>ok</html>"), ResponseFormatError, id="200-not-json"),
]


@pytest.mark.parametrize(("reply", "cause_kind"), AMBIGUOUS)
async def test_ambiguous_outcomes_are_never_resent(
    make_client: MakeClient, sleep_log: SleepLog, reply: object, cause_kind: type[SunoError]
) -> None:
    api = ScriptedApi({SUBMIT: [reply, ACCEPTED]})  # type: ignore[list-item]
    async with make_client(api) as client:
        with pytest.raises(SubmitOutcomeUnknown) as caught:
            await client.submit(REQUEST)
    assert api.calls(SUBMIT) == 1
    assert sleep_log.sleeps == []
    assert caught.value.endpoint == SUBMIT
    assert isinstance(caught.value.cause, cause_kind)


async def test_read_timeout_cause_is_a_transport_failure_that_reached_the_server(make_client: MakeClient) -> None:
    api = ScriptedApi({SUBMIT: [httpx.ReadTimeout("timed out")]})
    async with make_client(api) as client:
        with pytest.raises(SubmitOutcomeUnknown) as caught:
            await client.submit(REQUEST)
    assert isinstance(caught.value.cause, TransportFailure)
    assert caught.value.cause.request_sent


@pytest.mark.parametrize(
    "not_executed",
    [
        pytest.param(httpx.Response(430, json={"code": 430, "msg": "call frequency too high"}), id="http-430"),
        pytest.param(httpx.Response(200, json=envelope(None, code=430, msg="too frequent")), id="json-430"),
        pytest.param(httpx.Response(405, json={"code": 405, "msg": "rate limit"}), id="http-405"),
        pytest.param(httpx.Response(200, json=envelope(None, code=455, msg="maintenance")), id="json-455"),
        pytest.param(httpx.ConnectError("Connection refused"), id="connect-error"),
        pytest.param(httpx.ConnectTimeout("connect timed out"), id="connect-timeout"),
        pytest.param(httpx.PoolTimeout("no free connection"), id="pool-timeout"),
    ],
)
async def test_not_executed_outcomes_are_retried(
    make_client: MakeClient, sleep_log: SleepLog, not_executed: object
) -> None:
    api = ScriptedApi({SUBMIT: [not_executed, not_executed, ACCEPTED]})  # type: ignore[list-item]
    async with make_client(api) as client:
        assert await client.submit(REQUEST) == TASK_ID
    assert api.calls(SUBMIT) == 3
    assert len(sleep_log.sleeps) == 2


async def test_connect_errors_exhaust_into_a_safe_transport_failure(make_client: MakeClient) -> None:
    api = ScriptedApi({SUBMIT: [httpx.ConnectError("Connection refused")]})
    async with make_client(api, max_read_attempts=3) as client:
        with pytest.raises(TransportFailure) as caught:
            await client.submit(REQUEST)
    assert api.calls(SUBMIT) == 3
    assert caught.value.request_sent is False


async def test_persistent_throttling_raises_the_throttle_after_bounded_attempts(make_client: MakeClient) -> None:
    api = ScriptedApi({SUBMIT: [httpx.Response(430, json={"code": 430, "msg": "slow"})]})
    async with make_client(api, max_read_attempts=4) as client:
        with pytest.raises(TooFrequent):
            await client.submit(REQUEST)
    assert api.calls(SUBMIT) == 4


async def test_submit_honours_retry_after_and_slows_the_limiter(sleep_log: SleepLog) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(None, 20, 10.0, clock=clock, sleep=clock.sleep)
    api = ScriptedApi(
        {SUBMIT: [httpx.Response(430, headers={"Retry-After": "12"}, json={"code": 430, "msg": "slow"}), ACCEPTED]}
    )
    client = SunoClient(API_KEY, "https://api.test", limiter=limiter, transport=api.transport, sleep=sleep_log)
    async with client:
        start = clock.now
        assert await client.submit(REQUEST) == TASK_ID
    assert sleep_log.sleeps == [12.0]
    assert limiter.throttle_count == 1
    assert limiter.admitted == 2
    # The limiter itself holds the next admission until Retry-After has passed.
    assert clock.now - start >= 12.0


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (400, InvalidRequest),
        (401, Unauthorized),
        (404, EndpointNotFound),
        (413, PayloadTooLarge),
        (429, InsufficientCredits),
    ],
)
@pytest.mark.parametrize("carrier", ["http-status", "json-code"])
async def test_final_answers_are_raised_at_once(
    make_client: MakeClient, sleep_log: SleepLog, code: int, kind: type[SunoError], carrier: str
) -> None:
    status = code if carrier == "http-status" else 200
    api = ScriptedApi({SUBMIT: [httpx.Response(status, json={"code": code, "msg": "no"}), ACCEPTED]})
    async with make_client(api) as client:
        with pytest.raises(kind):
            await client.submit(REQUEST)
    assert api.calls(SUBMIT) == 1
    assert sleep_log.sleeps == []


async def test_maintenance_on_submit_pauses_the_limiter(sleep_log: SleepLog) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(None, 20, 10.0, clock=clock, sleep=clock.sleep)
    api = ScriptedApi({SUBMIT: [httpx.Response(455, headers={"Retry-After": "40"}, json={"code": 455}), ACCEPTED]})
    client = SunoClient(API_KEY, "https://api.test", limiter=limiter, transport=api.transport, sleep=sleep_log)
    async with client:
        start = clock.now
        assert await client.submit(REQUEST) == TASK_ID
    assert limiter.pause_count == 1
    assert clock.now - start >= 40.0


async def test_maintenance_exhausted_keeps_its_pause_policy(make_client: MakeClient) -> None:
    api = ScriptedApi({SUBMIT: [httpx.Response(200, json=envelope(None, code=455, msg="maintenance"))]})
    async with make_client(api, max_read_attempts=2) as client:
        with pytest.raises(Maintenance):
            await client.submit(REQUEST)
    assert api.calls(SUBMIT) == 2
