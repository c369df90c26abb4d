"""Turn an API answer into its JSON envelope, or into the error its codes mean.

Codes arrive either as the HTTP status or as the JSON `code` of an HTTP 200, so both are
checked. This module is pure: it sees bytes and numbers, never the network.
"""

from __future__ import annotations

import json
from typing import Any

from stemcat.client.errors import ResponseFormatError, error_for_code
from stemcat.client.masking import mask_text

_SUCCESS_CODE = 200
_MAX_MESSAGE_CHARS = 300


def json_code(payload: object) -> int | None:
    """The envelope's `code` as an int, if it has a usable one."""
    if not isinstance(payload, dict):
        return None
    code = payload.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return None


def server_message(payload: object, secrets: tuple[str, ...] = ()) -> str:
    """The envelope's `msg`, masked and shortened so it is safe to put in an error."""
    if not isinstance(payload, dict):
        return ""
    message = payload.get("msg", payload.get("message"))
    if not isinstance(message, str):
        return ""
    return mask_text(message.strip(), secrets)[:_MAX_MESSAGE_CHARS]


def decode_json(body: bytes) -> object:
    """The parsed body, or None when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def check_envelope(
    status_code: int,
    body: bytes,
    *,
    endpoint: str,
    retry_after: float | None = None,
    secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The envelope of a successful answer; raises the mapped `SunoError` otherwise."""
    payload = decode_json(body)
    code = json_code(payload)
    message = server_message(payload, secrets)
    if not 200 <= status_code < 300:
        # A JSON error code is more specific than the HTTP status (e.g. HTTP 503 carrying 455).
        effective = code if code is not None and code != _SUCCESS_CODE else status_code
        raise error_for_code(
            effective,
            endpoint=endpoint,
            message=message or f"HTTP {status_code}",
            retry_after=retry_after,
        )
    if not isinstance(payload, dict):
        raise ResponseFormatError(
            f"Malformed response: HTTP {status_code} body is not a JSON object", endpoint=endpoint
        )
    if code is not None and code != _SUCCESS_CODE:
        raise error_for_code(code, endpoint=endpoint, message=message, retry_after=retry_after)
    return payload
