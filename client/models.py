"""Typed views of the API's requests, responses and callbacks.

Each public model is built from the documented JSON envelope (`{"code", "msg", "data"}`)
by a `from_envelope`/`parse` classmethod. Unknown fields are ignored; a missing required
field raises `ResponseFormatError` naming the field and the endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from stemcat.client.endpoints import (
    CALLBACK_ENDPOINT,
    CREDIT_PATH,
    GENERATION_RECORD_PATH,
    RECORD_INFO_PATH,
    SUBMIT_PATH,
)
from stemcat.client.errors import ResponseFormatError, error_for_code
from stemcat.client.masking import mask_text
from stemcat.client.stems import SeparationType, Stem, stem_urls_from_fields

_SUCCESS_CODE = 200
_ModelT = TypeVar("_ModelT", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _alias(*names: str) -> Any:
    return Field(validation_alias=AliasChoices(*names))


def _optional_alias(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class GenerateRequest(_Model):
    """Body of the paid `POST /api/v1/vocal-removal/generate`."""

    task_id: str = Field(min_length=1, description="the music-generation taskId")
    audio_id: str = Field(min_length=1, description="the audio variation id (sunoData[].id)")
    type: SeparationType
    callback_url: str = Field(min_length=1)

    @field_validator("callback_url")
    @classmethod
    def _http_callback(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http(s) URL")
        return value

    def to_wire(self) -> dict[str, str]:
        """The JSON body, with the API's camelCase names."""
        return {
            "taskId": self.task_id,
            "audioId": self.audio_id,
            "type": self.type.value,
            "callBackUrl": self.callback_url,
        }


class SuccessFlag(StrEnum):
    """`successFlag` of a separation task."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    CREATE_TASK_FAILED = "CREATE_TASK_FAILED"
    GENERATE_AUDIO_FAILED = "GENERATE_AUDIO_FAILED"
    CALLBACK_EXCEPTION = "CALLBACK_EXCEPTION"

    @property
    def is_terminal(self) -> bool:
        return self is not SuccessFlag.PENDING

    @property
    def is_failure(self) -> bool:
        return self in (SuccessFlag.CREATE_TASK_FAILED, SuccessFlag.GENERATE_AUDIO_FAILED)

    @property
    def has_results(self) -> bool:
        """The separation ran; stem URLs may be present (the callback failing does not lose them)."""
        return self in (SuccessFlag.SUCCESS, SuccessFlag.CALLBACK_EXCEPTION)


def _utc_from_api_time(value: object) -> datetime | None:
    """Epoch milliseconds (number or digit string) or an ISO-like string; naive means UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a time must be epoch milliseconds or a date string")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise ValueError("a time must be epoch milliseconds or a date string")


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class OriginStem(_Model):
    """One entry of the reseller variant's `originData` list."""

    id: str
    audio_url: str | None = _optional_alias("audio_url", "audioUrl")
    stem_type_group_name: str | None = _optional_alias("stem_type_group_name", "stemTypeGroupName")
    duration: float | None = None


class SeparationRecord(_Model):
    """A separation task as `GET /api/v1/vocal-removal/record-info` reports it."""

    ENDPOINT: ClassVar[str] = RECORD_INFO_PATH

    task_id: str = _alias("taskId", "task_id")
    music_id: str | None = _optional_alias("musicId", "music_id")
    callback_url: str | None = _optional_alias("callbackUrl", "callBackUrl", "callback_url")
    music_index: int | None = _optional_alias("musicIndex", "music_index")
    success_flag: SuccessFlag = _alias("successFlag", "success_flag")
    create_time: datetime | None = _optional_alias("createTime", "create_time")
    complete_time: datetime | None = _optional_alias("completeTime", "complete_time")
    error_code: int | None = _optional_alias("errorCode", "error_code")
    error_message: str | None = _optional_alias("errorMessage", "error_message")
    stem_urls: dict[Stem, str] = Field(default_factory=dict)
    origin_url: str | None = None
    origin_data: list[OriginStem] | None = None

    @field_validator("create_time", "complete_time", mode="before")
    @classmethod
    def _api_time(cls, value: object) -> datetime | None:
        return _utc_from_api_time(value)

    @classmethod
    def from_envelope(cls, envelope: object) -> Self:
        """Parse the full record-info JSON envelope."""
        data = _success_data(envelope, cls.ENDPOINT)
        response = data.get("response")
        if response is not None and not isinstance(response, dict):
            raise _format_error(cls.ENDPOINT, "data.response", "must be an object or null")
        fields = dict(data)
        fields.pop("stem_urls", None)
        if response:
            fields["stem_urls"] = stem_urls_from_fields(response)
            fields["origin_url"] = _blank_to_none(response.get("originUrl", response.get("origin_url")))
            fields["origin_data"] = response.get("originData", response.get("origin_data"))
        return _validate(cls, fields, cls.ENDPOINT, "data", {"origin_data": "response.originData"})


class CallbackPayload(_Model):
    """The JSON the service POSTs to `callBackUrl` once a separation completes or fails."""

    ENDPOINT: ClassVar[str] = CALLBACK_ENDPOINT

    code: int
    msg: str = ""
    task_id: str
    stem_urls: dict[Stem, str] = Field(default_factory=dict)
    origin_url: str | None = None

    @property
    def is_success(self) -> bool:
        return self.code == _SUCCESS_CODE

    @classmethod
    def parse(cls, payload: object) -> Self:
        """Parse a callback body; accepts `vocal_removal_info` and `vocal_separation_info`."""
        envelope = _require_object(payload, cls.ENDPOINT, "body")
        data = _require_object(envelope.get("data"), cls.ENDPOINT, "data")
        info = data.get("vocal_removal_info", data.get("vocal_separation_info"))
        if info is not None and not isinstance(info, dict):
            raise _format_error(cls.ENDPOINT, "data.vocal_removal_info", "must be an object or null")
        fields: dict[str, object] = {
            "code": envelope.get("code"),
            "msg": envelope.get("msg") or "",
            "task_id": data.get("task_id", data.get("taskId")),
        }
        if info:
            fields["stem_urls"] = stem_urls_from_fields(info)
            fields["origin_url"] = _blank_to_none(info.get("origin_url", info.get("originUrl")))
        present = {key: value for key, value in fields.items() if value is not None}
        return _validate(cls, present, cls.ENDPOINT, "", {"task_id": "data.task_id"})


class AudioVariation(_Model):
    """One audio variation of a music-generation task (`sunoData[]`); `id` is the audioId."""

    id: str
    audio_url: str | None = _optional_alias("audioUrl", "audio_url")
    stream_audio_url: str | None = _optional_alias("streamAudioUrl", "stream_audio_url")
    image_url: str | None = _optional_alias("imageUrl", "image_url")
    title: str | None = None
    tags: str | None = None
    prompt: str | None = None
    model_name: str | None = _optional_alias("modelName", "model_name")
    duration_s: float | None = _optional_alias("duration", "duration_s")
    create_time: datetime | None = _optional_alias("createTime", "create_time")

    @field_validator("create_time", mode="before")
    @classmethod
    def _api_time(cls, value: object) -> datetime | None:
        return _utc_from_api_time(value)


class GenerationRecord(_Model):
    """A music-generation task as `GET /api/v1/generate/record-info` reports it."""

    ENDPOINT: ClassVar[str] = GENERATION_RECORD_PATH

    task_id: str = _alias("taskId", "task_id")
    status: str
    audios: list[AudioVariation] = Field(default_factory=list)
    error_code: int | None = _optional_alias("errorCode", "error_code")
    error_message: str | None = _optional_alias("errorMessage", "error_message")

    @classmethod
    def from_envelope(cls, envelope: object) -> Self:
        """Parse the full generation record-info JSON envelope."""
        data = _success_data(envelope, cls.ENDPOINT)
        response = data.get("response")
        if response is not None and not isinstance(response, dict):
            raise _format_error(cls.ENDPOINT, "data.response", "must be an object or null")
        fields = dict(data)
        fields["audios"] = (response or {}).get("sunoData") or []
        return _validate(cls, fields, cls.ENDPOINT, "data", {"audios": "response.sunoData"})


def parse_credit_balance(envelope: object) -> int:
    """The remaining credits from `GET /api/v1/generate/credit` (`data` is an integer)."""
    body = _require_object(envelope, CREDIT_PATH, "body")
    _raise_for_code(body, CREDIT_PATH)
    data = body.get("data")
    if isinstance(data, bool) or not isinstance(data, int | float) or int(data) != data:
        raise _format_error(CREDIT_PATH, "data", "must be an integer credit balance")
    return int(data)


def parse_submitted_task_id(envelope: object) -> str:
    """The separation taskId from the answer to the paid submit."""
    data = _success_data(envelope, SUBMIT_PATH)
    task_id = data.get("taskId", data.get("task_id"))
    if not isinstance(task_id, str) or not task_id.strip():
        raise _format_error(SUBMIT_PATH, "data.taskId", "is missing or empty")
    return task_id.strip()


def _require_object(value: object, endpoint: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        shown = "null" if value is None else type(value).__name__
        raise _format_error(endpoint, where, f"must be a JSON object, got {shown}")
    return value


def _raise_for_code(envelope: object, endpoint: str) -> None:
    if not isinstance(envelope, dict):
        return
    code = envelope.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and code != _SUCCESS_CODE:
        message = envelope.get("msg")
        raise error_for_code(code, endpoint=endpoint, message=mask_text(message) if isinstance(message, str) else "")


def _success_data(envelope: object, endpoint: str) -> dict[str, Any]:
    body = _require_object(envelope, endpoint, "body")
    _raise_for_code(body, endpoint)
    return _require_object(body.get("data"), endpoint, "data")


def _format_error(endpoint: str, field: str, problem: str) -> ResponseFormatError:
    return ResponseFormatError(f"Malformed response: field '{field}' {problem}", endpoint=endpoint)


def _validate(
    model: type[_ModelT],
    fields: dict[str, Any],
    endpoint: str,
    prefix: str,
    wire_names: dict[str, str] | None = None,
) -> _ModelT:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        # Report location and reason only: the rejected input may hold bearer URLs.
        first = exc.errors()[0]
        parts = [str(part) for part in first["loc"]]
        if parts and wire_names:
            parts[0] = wire_names.get(parts[0], parts[0])
        location = ".".join(part for part in (prefix, *parts) if part)
        problem = "is missing" if first["type"] == "missing" else f"is invalid ({first['msg']})"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise _format_error(endpoint, location, problem + more) from None
