"""Free reads: retried with jittered back-off, Retry-After honoured, limiter informed."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from tenacity import RetryCallState

from stemcat.client import (
    ConfigurationError,
    EndpointNotFound,
    ErrorPolicy,
    InsufficientCredits,
    InvalidRequest,
    Maintenance,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    SharedLimiter,
    SourceDownloadFailed,
    Stem,
    SuccessFlag,
    SunoClient,
    SunoError,
    TooFrequent,
    TransportFailure,
    Unauthorized,
    UnexpectedStatus,
)
from stemcat.client.backoff import JitteredBackoff, backoff_ceiling, parse_retry_after
from tests.client.conftest import FakeClock, ScriptedApi, SleepLog, envelope, load_contract

RECORD = "/api/v1/vocal-removal/record-info"
CREDIT = "/api/v1/generate/credit"
GENERATION = "/api/v1/generate/record-info"
PENDING = httpx.Response(200, json=load_contract("record_info_pending.json"))
DONE = httpx.Response(200, json=load_contract("record_info_split_stem.json"))

MakeClient = Callable[..., SunoClient]


async def test_record_info_polls_pending_then_success(make_client: MakeClient) -> None:
    api = ScriptedApi({RECORD: [PENDING, DONE]})
    async with make_client(api) as client:
        first = await client.record_info("e649edb7abfd759285bd41a47a634b10")
        second = await client.record_info("e649edb7abfd759285bd41a47a634b10")
    assert first.success_flag is SuccessFlag.PENDING
    assert second.success_flag is SuccessFlag.SUCCESS and len(second.stem_urls) == 12
    assert Stem.DRUMS in second.stem_urls
    assert [r.url.params["taskId"] for r in api.requests] == ["e649edb7abfd759285bd41a47a634b10"] * 2
    assert all(r.method == "GET" for r in api.requests)


async def test_credits_and_generation_record(make_client: MakeClient) -> None:
    api = ScriptedApi(
        {
            CREDIT: [httpx.Response(200, json=load_contract("credit_response.json"))],
            GENERATION: [httpx.Response(200, json=load_contract("generate_record_info.json"))],
        }
    )
    async with make_client(api) as client:
        assert await client.credits() == 100
        record = await client.generation_record("5c79****be8e")
    assert len(record.audios) == 2
    assert api.requests[1].url.params["taskId"] == "5c79****be8e"


CODES: list[tuple[int, type[SunoError]]] = [
    (400, InvalidRequest),
    (401, Unauthorized),
    (404, EndpointNotFound),
    (405, RateLimited),
    (413, PayloadTooLarge),
    (429, InsufficientCredits),
    (430, TooFrequent),
    (451, SourceDownloadFailed),
    (455, Maintenance),
    (500, ServerError),
    (503, ServerError),
    (418, UnexpectedStatus),
]


@pytest.mark.parametrize(("code", "kind"), CODES)
@pytest.mark.parametrize("carrier", ["http-status", "json-code"])
async def test_every_code_maps_through_the_client(
    make_client: MakeClient, sleep_log: SleepLog, code: int, kind: type[SunoError], carrier: str
) -> None:
    status = code if carrier == "http-status" else 200
    api = ScriptedApi({RECORD: [httpx.Response(status, json={"code": code, "msg": "x", "data": None})]})
    async with make_client(api, max_read_attempts=3) as client:
        with pytest.raises(kind) as caught:
            await client.record_info("t1")
    assert caught.value.code == code
    assert caught.value.endpoint == RECORD
    retried = kind.policy in (ErrorPolicy.RETRY, ErrorPolicy.PAUSE)
    assert api.calls(RECORD) == (3 if retried else 1)
    assert len(sleep_log.sleeps) == (2 if retried else 0)


async def test_server_errors_back_off_exponentially_with_full_jitter(
    make_client: MakeClient, sleep_log: SleepLog
) -> None:
    failure = httpx.Response(500, json={"code": 500, "msg": "oops"})
    api = ScriptedApi({RECORD: [failure] * 5 + [DONE]})
    async with make_client(api, max_read_attempts=6, backoff_initial_s=1.0, backoff_max_s=4.0) as client:
        record = await client.record_info("t1")
    assert record.success_flag is SuccessFlag.SUCCESS
    assert api.calls(RECORD) == 6
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(sleep_log.sleeps) == len(ceilings)
    assert all(0.0 <= slept <= ceiling for slept, ceiling in zip(sleep_log.sleeps, ceilings, strict=True))


async def test_transport_errors_on_reads_are_retried(make_client: MakeClient, sleep_log: SleepLog) -> None:
    api = ScriptedApi({RECORD: [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset"), DONE]})
    async with make_client(api) as client:
        assert (await client.record_info("t1")).success_flag is SuccessFlag.SUCCESS
    assert api.calls(RECORD) == 3


async def test_transport_errors_exhaust_into_transport_failure(make_client: MakeClient) -> None:
    api = ScriptedApi({CREDIT: [httpx.ConnectError("refused")]})
    async with make_client(api, max_read_attempts=2) as client:
        with pytest.raises(TransportFailure) as caught:
            await client.credits()
    assert api.calls(CREDIT) == 2
    assert caught.value.policy is ErrorPolicy.RETRY


async def test_retry_after_seconds_is_honoured(make_client: MakeClient, sleep_log: SleepLog) -> None:
    throttled = httpx.Response(430, headers={"Retry-After": "7"}, json={"code": 430, "msg": "slow"})
    api = ScriptedApi({RECORD: [throttled, DONE]})
    async with make_client(api) as client:
        await client.record_info("t1")
    assert sleep_log.sleeps == [7.0]


async def test_retry_after_http_date_is_honoured(make_client: MakeClient, sleep_log: SleepLog) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    throttled = httpx.Response(503, headers={"Retry-After": when}, text="busy")
    api = ScriptedApi({RECORD: [throttled, DONE]})
    async with make_client(api) as client:
        await client.record_info("t1")
    (slept,) = sleep_log.sleeps
    assert 117.0 <= slept <= 121.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("999999", 900.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date_relative_to_now() -> None:
    now = datetime(2025, 7, 29, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Tue, 29 Jul 2025 09:00:30 GMT", now=now) == 30.0


class _TopOfRange(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def _state_after(attempt: int, error: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_backoff_doubles_up_to_its_cap() -> None:
    wait = JitteredBackoff(0.5, 30.0, rng=_TopOfRange())
    error = ServerError("x", code=500)
    assert [wait(_state_after(n, error)) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_ceiling(3, 0.5, 30.0) == 2.0


def test_backoff_never_undercuts_retry_after() -> None:
    wait = JitteredBackoff(0.5, 30.0, rng=_TopOfRange())
    assert wait(_state_after(1, TooFrequent("x", code=430, retry_after=9.0))) == 9.0


async def test_limiter_is_informed_of_throttles_pauses_and_successes(sleep_log: SleepLog) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(None, 20, 10.0, clock=clock, sleep=clock.sleep)
    nominal = limiter.current_rate
    api = ScriptedApi(
        {
            RECORD: [httpx.Response(200, json=envelope(None, code=430, msg="too frequent")), DONE],
            CREDIT: [httpx.Response(200, json=envelope(None, code=455, msg="maintenance"))],
        }
    )
    client = SunoClient(
        "k",
        "https://api.test",
        limiter=limiter,
        transport=api.transport,
        sleep=sleep_log,
        max_read_attempts=2,
        backoff_max_s=25.0,
    )
    async with client:
        await client.record_info("t1")
        assert limiter.throttle_count == 1
        assert limiter.current_rate == pytest.approx(nominal * (0.5 + 1 / 16))  # halved, then one success
        before = clock.now
        with pytest.raises(Maintenance):
            await client.credits()
    assert limiter.pause_count == 2
    # Without Retry-After a 455 pauses every caller for backoff_max_s.
    assert clock.now - before >= 25.0
    assert limiter.admitted == api.calls(RECORD) + api.calls(CREDIT) == 4


def test_missing_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUNO_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SUNO_API_KEY") as caught:
        SunoClient()
    assert caught.value.policy is ErrorPolicy.RUN


async def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNO_API_KEY", "env-key")
    monkeypatch.setenv("SUNO_BASE_URL", "http://127.0.0.1:8123/prefix/")
    api = ScriptedApi({"/prefix/api/v1/generate/credit": [httpx.Response(200, json=envelope(3))]})
    async with SunoClient(transport=api.transport) as client:
        assert await client.credits() == 3
    assert api.requests[0].headers["Authorization"] == "Bearer env-key"


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUNO_BASE_URL", raising=False)
    assert SunoClient("k").base_url == "https://api.sunoapi.org"


@pytest.mark.parametrize("base_url", ["ftp://api.test", "api.test", "http://"])
def test_bad_base_url_is_a_configuration_error(base_url: str) -> None:
    with pytest.raises(ConfigurationError):
        SunoClient("k", base_url)


async def test_api_redirects_are_not_followed(make_client: MakeClient) -> None:
    api = ScriptedApi({CREDIT: [httpx.Response(302, headers={"Location": "https://evil.test/steal"})]})
    async with make_client(api) as client:
        with pytest.raises(UnexpectedStatus):
            await client.credits()
    assert [r.url.host for r in api.requests] == ["api.test"]


@pytest.mark.parametrize("task_id", ["", "   "])
async def test_empty_task_id_is_rejected_before_any_request(make_client: MakeClient, task_id: str) -> None:
    api = ScriptedApi()
    async with make_client(api) as client:
        with pytest.raises(ValueError):
            await client.record_info(task_id)
    assert api.requests == []
