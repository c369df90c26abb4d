"""Code → error mapping, policies, messages, and the envelope check (pure)."""

from __future__ import annotations

import json
import pickle

import pytest

from stemcat import client
from stemcat.client import (
    EndpointNotFound,
    ErrorPolicy,
    InsufficientCredits,
    InvalidRequest,
    Maintenance,
    PayloadTooLarge,
    RateLimited,
    ResponseFormatError,
    ServerError,
    SourceDownloadFailed,
    SubmitOutcomeUnknown,
    SunoError,
    Throttled,
    TooFrequent,
    TransportFailure,
    Unauthorized,
    UnexpectedStatus,
    error_for_code,
)
from stemcat.client import errors as errors_module
from stemcat.client.envelope import check_envelope

ENDPOINT = "/api/v1/vocal-removal/record-info"

CODE_TABLE: list[tuple[int, type[SunoError], ErrorPolicy]] = [
    (400, InvalidRequest, ErrorPolicy.ITEM),
    (401, Unauthorized, ErrorPolicy.RUN),
    (404, EndpointNotFound, ErrorPolicy.ITEM),
    (405, RateLimited, ErrorPolicy.RETRY),
    (413, PayloadTooLarge, ErrorPolicy.ITEM),
    (429, InsufficientCredits, ErrorPolicy.STOP_SUBMITS),
    (430, TooFrequent, ErrorPolicy.RETRY),
    (451, SourceDownloadFailed, ErrorPolicy.ITEM),
    (455, Maintenance, ErrorPolicy.PAUSE),
    (500, ServerError, ErrorPolicy.RETRY),
    (502, ServerError, ErrorPolicy.RETRY),
    (503, ServerError, ErrorPolicy.RETRY),
    (418, UnexpectedStatus, ErrorPolicy.ITEM),
    (302, UnexpectedStatus, ErrorPolicy.ITEM),
]


@pytest.mark.parametrize(("code", "kind", "policy"), CODE_TABLE)
def test_error_for_code(code: int, kind: type[SunoError], policy: ErrorPolicy) -> None:
    error = error_for_code(code, endpoint=ENDPOINT, message="boom", retry_after=2.5)
    assert type(error) is kind
    assert error.policy is policy
    assert (error.code, error.endpoint, error.retry_after) == (code, ENDPOINT, 2.5)
    assert ENDPOINT in str(error) and "boom" in str(error)


def test_throttles_share_a_base() -> None:
    assert issubclass(RateLimited, Throttled) and issubclass(TooFrequent, Throttled)
    assert not issubclass(Maintenance, Throttled)


@pytest.mark.parametrize(("code", "kind", "policy"), CODE_TABLE)
def test_code_as_http_status(code: int, kind: type[SunoError], policy: ErrorPolicy) -> None:
    with pytest.raises(kind) as caught:
        check_envelope(code, b'{"msg": "nope"}', endpoint=ENDPOINT)
    assert caught.value.code == code


@pytest.mark.parametrize(("code", "kind", "policy"), [row for row in CODE_TABLE if row[0] >= 400])
def test_code_as_json_code_with_http_200(code: int, kind: type[SunoError], policy: ErrorPolicy) -> None:
    body = json.dumps({"code": code, "msg": "nope", "data": None}).encode()
    with pytest.raises(kind) as caught:
        check_envelope(200, body, endpoint=ENDPOINT, retry_after=4.0)
    assert caught.value.code == code
    assert caught.value.retry_after == 4.0


def test_json_code_is_more_specific_than_the_http_status() -> None:
    with pytest.raises(Maintenance):
        check_envelope(503, b'{"code": 455, "msg": "maintenance"}', endpoint=ENDPOINT)


def test_success_envelope_is_returned() -> None:
    assert check_envelope(200, b'{"code": 200, "msg": "success", "data": 5}', endpoint=ENDPOINT)["data"] == 5


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b"[1, 2]", b""])
def test_http_200_without_an_object_is_a_format_error(body: bytes) -> None:
    with pytest.raises(ResponseFormatError):
        check_envelope(200, body, endpoint=ENDPOINT)


def test_non_json_error_body_still_maps_the_status() -> None:
    with pytest.raises(ServerError, match="HTTP 500"):
        check_envelope(500, b"Internal Server Error", endpoint=ENDPOINT)


def test_server_messages_are_scrubbed() -> None:
    body = json.dumps({"code": 401, "msg": "bad token sk-LEAKED-KEY-123 https://h/a/b/secret-path.mp3?sig=x"}).encode()
    with pytest.raises(Unauthorized) as caught:
        check_envelope(200, body, endpoint=ENDPOINT, secrets=("sk-LEAKED-KEY-123",))
    assert "sk-LEAKED-KEY-123" not in str(caught.value)
    assert "secret-path" not in str(caught.value) and "sig=x" not in str(caught.value)


def test_messages_say_what_to_do() -> None:
    assert "SUNO_API_KEY" in str(error_for_code(401, endpoint=ENDPOINT))
    assert "stop submitting" in str(error_for_code(429, endpoint=ENDPOINT)).lower()
    unknown = SubmitOutcomeUnknown("timed out", endpoint="/api/v1/vocal-removal/generate")
    assert "never resubmit" in str(unknown).lower()


@pytest.mark.parametrize(
    "error",
    [
        error_for_code(430, endpoint=ENDPOINT, message="slow down", retry_after=3.0),
        TransportFailure("ReadTimeout", request_sent=False, endpoint=ENDPOINT),
        SubmitOutcomeUnknown("timed out", cause=ServerError("x", code=500), endpoint=ENDPOINT),
        SourceDownloadFailed("x", policy=ErrorPolicy.RETRY),
    ],
)
def test_errors_survive_pickling(error: SunoError) -> None:
    # Prefect pickles task failures; attributes and text must come back unchanged.
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is type(error)
    assert str(restored) == str(error)
    assert vars(restored).keys() == vars(error).keys()
    assert restored.policy is error.policy
    assert (restored.code, restored.retry_after) == (error.code, error.retry_after)


def test_hierarchy_docstring_draws_every_error() -> None:
    doc = errors_module.__doc__ or ""
    exported = [
        name
        for name in client.__all__
        if isinstance(getattr(client, name), type) and issubclass(getattr(client, name), SunoError)
    ]
    assert len(exported) > 20
    missing = [name for name in exported if name not in doc]
    assert missing == []
