"""JSON bodies of every API answer and callback, shaped as the contract files (pure functions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from stemcat.sim.stems import INSTRUMENTAL, RESPONSE_FIELD_ORDER, STEM_FIELDS, stems_of
from stemcat.sim.tracks import MODEL_NAME, MusicTask

JsonDict = dict[str, Any]

ERROR_MESSAGES: Final[dict[int, str]] = {
    400: "Invalid parameters",
    401: "Unauthorized: missing or invalid API key",
    403: "Forbidden: bad file signature",
    404: "Invalid request method or path",
    405: "Rate limit exceeded",
    410: "File URL expired",
    413: "Theme or prompt too long",
    429: "Insufficient credits",
    430: "call frequency too high",
    451: "Download Failed - Unable to download source audio file",
    455: "System maintenance",
    500: "Server error",
}
_SUCCESS_CALLBACK_MSG: Final[dict[str, str]] = {
    "separate_vocal": "vocal Removal generated successfully.",
    "split_stem": "vocal separation generated successfully.",
}


def envelope(code: int, msg: str, data: Any) -> JsonDict:
    return {"code": code, "msg": msg, "data": data}


def error_body(code: int, detail: str | None = None) -> JsonDict:
    """The `{code,msg,data:null}` answer for a documented (or simulator-specific) error code."""
    return envelope(code, detail or ERROR_MESSAGES.get(code, "Error"), None)


def generate_response(task_id: str) -> JsonDict:
    return envelope(200, "success", {"taskId": task_id})


def credit_response(balance: int) -> JsonDict:
    return envelope(200, "success", balance)


def separation_response(
    stem_urls: Mapping[str, str],
    origin_url: str,
    *,
    origin_data: bool = False,
    duration_s: float = 0.0,
) -> JsonDict:
    """record-info `response`: every stem field present, null where `stem_urls` has no file."""
    response: JsonDict = {}
    if origin_data:
        response["id"] = None
    response["originUrl"] = origin_url
    if origin_data:
        response["originData"] = [
            {"duration": duration_s, "audio_url": url, "stem_type_group_name": _group_name(name), "id": _file_id(url)}
            for name, url in stem_urls.items()
        ]
    response[INSTRUMENTAL.camel] = stem_urls.get("instrumental")
    for field in RESPONSE_FIELD_ORDER:
        response[field.camel] = stem_urls.get(field.stem)
        if origin_data and field.stem == "guitar":
            response["pianoUrl"] = None  # the reseller variant carries this extra slot
    return response


def _group_name(name: str) -> str:
    return INSTRUMENTAL.file_label if name == "instrumental" else STEM_FIELDS[name].file_label.replace("_", " ")


def _file_id(url: str) -> str:
    return url.rstrip("/").split("/")[-2].split(".")[-1]


def with_stems_listed(body: JsonDict, keep: int) -> JsonDict:
    """A record-info envelope whose SUCCESS lists only its first `keep` stem URLs (the others null)."""
    data = body.get("data") or {}
    response = data.get("response")
    if data.get("successFlag") != "SUCCESS" or not isinstance(response, dict):
        return body
    trimmed = dict(response)
    listed = [k for k, v in trimmed.items() if k.endswith("Url") and k != "originUrl" and v]
    for key in listed[keep:]:
        trimmed[key] = None
    trimmed.pop("originData", None)
    return {**body, "data": {**data, "response": trimmed}}


def callback_with_stems_listed(body: JsonDict, info_key: str, keep: int) -> JsonDict:
    """A success callback that lists only its first `keep` stem URLs (the others left out)."""
    data = body.get("data") or {}
    info = data.get(info_key)
    if not isinstance(info, dict):
        return body
    listed = [k for k in info if k.endswith("_url") and k != "origin_url"]
    trimmed = {k: v for k, v in info.items() if k not in listed[keep:]}
    return {**body, "data": {**data, info_key: trimmed}}


def record_info(
    *,
    task_id: str,
    audio_id: str,
    callback_url: str,
    music_index: int,
    create_ms: int,
    complete_ms: int | None,
    success_flag: str,
    response: JsonDict | None,
    error_code: int | None,
    error_message: str | None,
) -> JsonDict:
    """Envelope of `GET /api/v1/vocal-removal/record-info`."""
    return envelope(
        200,
        "success",
        {
            "taskId": task_id,
            "musicId": audio_id,
            "callbackUrl": callback_url,
            "musicIndex": music_index,
            "completeTime": complete_ms,
            "response": response,
            "successFlag": success_flag,
            "createTime": create_ms,
            "errorCode": error_code,
            "errorMessage": error_message,
        },
    )


def success_callback(
    task_id: str, separation_type: str, stem_urls: Mapping[str, str], origin_url: str, info_key: str
) -> JsonDict:
    """Callback body of a finished separation (snake_case fields, only this type's stems)."""
    info: JsonDict
    if separation_type == "separate_vocal":
        info = {
            INSTRUMENTAL.snake: stem_urls["instrumental"],
            "origin_url": origin_url,
            STEM_FIELDS["vocals"].snake: stem_urls["vocals"],
        }
    else:
        info = {"origin_url": origin_url}
        info.update({STEM_FIELDS[stem].snake: stem_urls[stem] for stem in stems_of("split_stem")})
    return envelope(200, _SUCCESS_CALLBACK_MSG[separation_type], {"task_id": task_id, info_key: info})


def failure_callback(task_id: str, code: int, message: str, info_key: str) -> JsonDict:
    return envelope(code, message, {"task_id": task_id, info_key: None})


def generation_record_info(
    music: MusicTask, audio_urls: Mapping[str, str], durations_s: Mapping[str, float], base_url: str
) -> JsonDict:
    """Envelope of `GET /api/v1/generate/record-info` for a music-generation task."""
    created = datetime.fromtimestamp(music.created_epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    param = {
        "prompt": music.prompt,
        "style": music.genre,
        "title": music.title,
        "customMode": True,
        "instrumental": False,
        "model": "V3_5",
    }
    suno_data = [
        {
            "id": audio.audio_id,
            "audioUrl": audio_urls[audio.audio_id],
            "streamAudioUrl": audio_urls[audio.audio_id],
            "imageUrl": f"{base_url}/images/{audio.audio_id}.jpeg",
            "prompt": music.prompt,
            "modelName": MODEL_NAME,
            "title": music.title,
            "tags": music.tags,
            "createTime": created,
            "duration": round(durations_s[audio.audio_id], 2),
        }
        for audio in music.audios
    ]
    data = {
        "taskId": music.task_id,
        "parentMusicId": "",
        "param": json.dumps(param),
        "response": {"taskId": music.task_id, "sunoData": suno_data},
        "status": "SUCCESS",
        "type": "GENERATE",
        "errorCode": None,
        "errorMessage": None,
    }
    return envelope(200, "success", data)
