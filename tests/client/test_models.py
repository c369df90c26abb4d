"""Every contract payload parses into its model; malformed ones fail clearly."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from stemcat.client import (
    STEMS_BY_TYPE,
    CallbackPayload,
    GenerateRequest,
    GenerationRecord,
    OriginStem,
    ResponseFormatError,
    SeparationRecord,
    SeparationType,
    SourceDownloadFailed,
    Stem,
    SuccessFlag,
    TooFrequent,
    parse_credit_balance,
)
from stemcat.client.models import parse_submitted_task_id
from tests.client.conftest import CONTRACT_DIR, load_contract

# Every JSON file of the contract must be claimed here, so a new fixture cannot go untested.
PARSERS: dict[str, Callable[[Any], object]] = {
    "callback_failed.json": CallbackPayload.parse,
    "callback_separate_vocal.json": CallbackPayload.parse,
    "callback_separation_info_variant.json": CallbackPayload.parse,
    "callback_split_stem.json": CallbackPayload.parse,
    "credit_response.json": parse_credit_balance,
    "generate_record_info.json": GenerationRecord.from_envelope,
    "generate_request.json": lambda body: GenerateRequest(
        task_id=body["taskId"], audio_id=body["audioId"], type=body["type"], callback_url=body["callBackUrl"]
    ),
    "generate_response.json": parse_submitted_task_id,
    "record_info_failed.json": SeparationRecord.from_envelope,
    "record_info_pending.json": SeparationRecord.from_envelope,
    "record_info_separate_vocal.json": SeparationRecord.from_envelope,
    "record_info_split_stem.json": SeparationRecord.from_envelope,
    "record_info_with_origin_data.json": SeparationRecord.from_envelope,
}


def test_every_contract_file_has_a_parser() -> None:
    assert {path.name for path in CONTRACT_DIR.glob("*.json")} == set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_contract_file_parses(name: str) -> None:
    assert PARSERS[name](load_contract(name)) is not None


def _with_unknown_fields(value: Any) -> Any:
    if isinstance(value, dict):
        widened = {key: _with_unknown_fields(item) for key, item in value.items()}
        widened["someFutureField"] = {"nested": [1, 2]}
        return widened
    if isinstance(value, list):
        return [_with_unknown_fields(item) for item in value]
    return value


@pytest.mark.parametrize("name", sorted(n for n in PARSERS if n != "generate_request.json"))
def test_unknown_fields_are_tolerated(name: str) -> None:
    original = load_contract(name)
    assert PARSERS[name](_with_unknown_fields(original)) == PARSERS[name](original)


def test_generate_request_wire_format_matches_contract() -> None:
    body = load_contract("generate_request.json")
    request = GenerateRequest(
        task_id=body["taskId"],
        audio_id=body["audioId"],
        type=SeparationType.SEPARATE_VOCAL,
        callback_url=body["callBackUrl"],
    )
    assert request.to_wire() == body


@pytest.mark.parametrize(
    "fields",
    [
        {"task_id": "", "audio_id": "a", "type": "split_stem", "callback_url": "https://x/cb"},
        {"task_id": "t", "audio_id": "a", "type": "karaoke", "callback_url": "https://x/cb"},
        {"task_id": "t", "audio_id": "a", "type": "split_stem", "callback_url": "ftp://x/cb"},
    ],
)
def test_generate_request_rejects_bad_input(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        GenerateRequest.model_validate(fields)


def test_separate_vocal_record() -> None:
    record = SeparationRecord.from_envelope(load_contract("record_info_separate_vocal.json"))
    assert record.task_id == "3e63b4cc88d52611159371f6af5571e7"
    assert record.music_id == "376c687e-d439-42c1-b1e4-bcb43b095ec2"
    assert record.music_index == 0
    assert record.success_flag is SuccessFlag.SUCCESS
    assert set(record.stem_urls) == set(STEMS_BY_TYPE[SeparationType.SEPARATE_VOCAL])
    assert record.stem_urls[Stem.VOCALS].endswith("_Vocals.mp3")
    assert record.origin_url is None
    assert record.create_time == datetime(2025, 7, 29, 9, 54, 14, tzinfo=UTC)
    assert record.complete_time == datetime(2025, 7, 29, 9, 55, 37, tzinfo=UTC)


def test_split_stem_record_has_twelve_stems_and_no_instrumental() -> None:
    record = SeparationRecord.from_envelope(load_contract("record_info_split_stem.json"))
    assert set(record.stem_urls) == set(STEMS_BY_TYPE[SeparationType.SPLIT_STEM])
    assert len(record.stem_urls) == 12
    assert Stem.INSTRUMENTAL not in record.stem_urls
    assert record.origin_url is None  # "" in the payload


def test_pending_and_failed_records() -> None:
    pending = SeparationRecord.from_envelope(load_contract("record_info_pending.json"))
    assert pending.success_flag is SuccessFlag.PENDING
    assert not pending.success_flag.is_terminal
    assert pending.stem_urls == {}
    assert pending.complete_time is None

    failed = SeparationRecord.from_envelope(load_contract("record_info_failed.json"))
    assert failed.success_flag.is_failure
    assert failed.error_code == 500
    assert failed.error_message == "separation failed, please try again later"
    assert failed.stem_urls == {}


def test_reseller_variant_keeps_origin_data_and_ignores_piano(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="stemcat.client"):
        record = SeparationRecord.from_envelope(load_contract("record_info_with_origin_data.json"))
    assert set(record.stem_urls) == {Stem.VOCALS, Stem.INSTRUMENTAL}
    assert record.origin_data == [
        OriginStem(
            id="3d7021c9-fa8b-4eda-91d1-3b9297ddb172",
            audio_url="https://example001.mp3",
            stem_type_group_name="Vocals",
            duration=245.6,
        ),
        OriginStem(
            id="d92a13bf-c6f4-4ade-bb47-f69738435528",
            audio_url="https://example002.mp3",
            stem_type_group_name="Instrumental",
            duration=245.6,
        ),
    ]
    assert any("pianoUrl" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("flag", "terminal", "failure", "results"),
    [
        (SuccessFlag.PENDING, False, False, False),
        (SuccessFlag.SUCCESS, True, False, True),
        (SuccessFlag.CREATE_TASK_FAILED, True, True, False),
        (SuccessFlag.GENERATE_AUDIO_FAILED, True, True, False),
        (SuccessFlag.CALLBACK_EXCEPTION, True, False, True),
    ],
)
def test_success_flag_properties(flag: SuccessFlag, terminal: bool, failure: bool, results: bool) -> None:
    assert (flag.is_terminal, flag.is_failure, flag.has_results) == (terminal, failure, results)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1753782854000, datetime(2025, 7, 29, 9, 54, 14, tzinfo=UTC)),
        ("1753782854000", datetime(2025, 7, 29, 9, 54, 14, tzinfo=UTC)),
        ("2025-07-29T11:54:14+02:00", datetime(2025, 7, 29, 9, 54, 14, tzinfo=UTC)),
        ("2025-07-29 09:54:14", datetime(2025, 7, 29, 9, 54, 14, tzinfo=UTC)),
        (None, None),
    ],
)
def test_times_become_utc(raw: object, expected: datetime | None) -> None:
    body = load_contract("record_info_pending.json")
    body["data"]["createTime"] = raw
    assert SeparationRecord.from_envelope(body).create_time == expected


def test_callbacks() -> None:
    vocal = CallbackPayload.parse(load_contract("callback_separate_vocal.json"))
    assert vocal.is_success
    assert vocal.task_id == "5e72d367bdfbe44785e28d72cb1697c7"
    assert set(vocal.stem_urls) == {Stem.VOCALS, Stem.INSTRUMENTAL}
    assert vocal.origin_url == "https://cdn1.suno.ai/549fc4b2-294f-44ea-a35b-419687b07ab9.mp3"

    variant = CallbackPayload.parse(load_contract("callback_separation_info_variant.json"))
    assert set(variant.stem_urls) == {Stem.VOCALS, Stem.INSTRUMENTAL}
    assert variant.origin_url is None

    split = CallbackPayload.parse(load_contract("callback_split_stem.json"))
    assert set(split.stem_urls) == set(STEMS_BY_TYPE[SeparationType.SPLIT_STEM])

    failed = CallbackPayload.parse(load_contract("callback_failed.json"))
    assert (failed.code, failed.is_success, failed.stem_urls) == (451, False, {})
    assert failed.task_id == "7a1b2c3d4e5f60718293a4b5c6d7e8f9"


def test_generation_record_lists_audio_variations() -> None:
    record = GenerationRecord.from_envelope(load_contract("generate_record_info.json"))
    assert record.task_id == "5c79****be8e"
    assert record.status == "SUCCESS"
    assert [audio.id for audio in record.audios] == ["e231****-****-****-****-****8cadc7dc", "8551****662c"]
    first = record.audios[0]
    assert first.duration_s == pytest.approx(198.44)
    assert first.model_name == "chirp-v3-5"
    assert first.audio_url == "https://example.cn/****.mp3"
    assert first.create_time == datetime(2025, 1, 1, tzinfo=UTC)


def test_generation_record_while_pending_has_no_audios() -> None:
    body = load_contract("generate_record_info.json")
    body["data"]["response"] = None
    body["data"]["status"] = "PENDING"
    assert GenerationRecord.from_envelope(body).audios == []


def test_credit_balance() -> None:
    assert parse_credit_balance(load_contract("credit_response.json")) == 100


@pytest.mark.parametrize("data", [None, "100", 1.5, True, {"credits": 1}])
def test_credit_balance_must_be_an_integer(data: object) -> None:
    with pytest.raises(ResponseFormatError, match=r"'data'.*/api/v1/generate/credit"):
        parse_credit_balance({"code": 200, "msg": "success", "data": data})


def _drop(body: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("name", "path", "field", "endpoint"),
    [
        ("record_info_separate_vocal.json", ("data", "taskId"), "data.taskId", "/api/v1/vocal-removal/record-info"),
        ("record_info_pending.json", ("data", "successFlag"), "data.successFlag", "/api/v1/vocal-removal/record-info"),
        ("record_info_pending.json", ("data",), "data", "/api/v1/vocal-removal/record-info"),
        ("generate_record_info.json", ("data", "status"), "data.status", "/api/v1/generate/record-info"),
        (
            "generate_record_info.json",
            ("data", "response", "sunoData", 1, "id"),
            "data.response.sunoData.1.id",
            "/api/v1/generate/record-info",
        ),
        ("callback_split_stem.json", ("data", "task_id"), "data.task_id", "callback"),
        ("callback_failed.json", ("code",), "code", "callback"),
        ("generate_response.json", ("data", "taskId"), "data.taskId", "/api/v1/vocal-removal/generate"),
        ("credit_response.json", ("data",), "data", "/api/v1/generate/credit"),
    ],
)
def test_missing_required_field_names_field_and_endpoint(
    name: str, path: tuple[str | int, ...], field: str, endpoint: str
) -> None:
    with pytest.raises(ResponseFormatError) as caught:
        PARSERS[name](_drop(load_contract(name), path))
    message = str(caught.value)
    assert f"'{field}'" in message
    assert endpoint in message
    assert caught.value.endpoint == endpoint


def test_format_errors_do_not_echo_bearer_urls() -> None:
    body = load_contract("record_info_with_origin_data.json")
    body["data"]["response"]["originData"][0]["id"] = {"not": "a string"}
    body["data"]["response"]["originData"][0]["audio_url"] = "https://secret.example/bearer/token123.mp3"
    with pytest.raises(ResponseFormatError) as caught:
        SeparationRecord.from_envelope(body)
    assert "data.response.originData.0.id" in str(caught.value)
    assert "token123" not in str(caught.value)


@pytest.mark.parametrize("body", [None, [], "text", {"code": 200, "msg": "success", "data": "nope"}])
def test_non_object_bodies_are_format_errors(body: object) -> None:
    with pytest.raises(ResponseFormatError):
        SeparationRecord.from_envelope(body)


def test_envelope_error_codes_raise_their_error() -> None:
    with pytest.raises(TooFrequent):
        SeparationRecord.from_envelope({"code": 430, "msg": "call frequency too high", "data": None})
    with pytest.raises(SourceDownloadFailed):
        GenerationRecord.from_envelope({"code": 451, "msg": "download failed", "data": None})


def test_null_and_empty_urls_are_dropped() -> None:
    body = load_contract("record_info_separate_vocal.json")
    body["data"]["response"]["vocalUrl"] = "  "
    record = SeparationRecord.from_envelope(body)
    assert set(record.stem_urls) == {Stem.INSTRUMENTAL}
