"""JSON-valued columns: canonical encoding, secret redaction and URL masking (pure functions)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

JsonObject = Mapping[str, Any]

REDACTED = "<redacted>"

# Key names whose values must never be persisted (run params are stored verbatim otherwise).
_SECRET_KEY = re.compile(r"(api[_-]?key|apikey|secret|password|passwd|token|authori[sz]ation|bearer|credential)", re.I)


def to_json_object_text(value: str | JsonObject | None, *, what: str) -> str | None:
    """Encode a JSON object (or validate already-encoded text) for a TEXT column; None stays NULL."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what} is not valid JSON: {exc}") from exc
        if decoded is None:
            return None
        if not isinstance(decoded, dict):
            raise ValueError(f"{what} must be a JSON object, got {type(decoded).__name__}")
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping or JSON text, got {type(value).__name__}")
    return json.dumps(dict(value), sort_keys=True, ensure_ascii=False, default=str)


def redact_secrets(value: Any) -> Any:
    """Return a copy of a JSON-like value with the values of secret-looking keys replaced."""
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if _SECRET_KEY.search(str(key)) else redact_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(item) for item in value]
    return value


def mask_url(url: str) -> str:
    """Keep the scheme and host of a URL, drop the path and query (the bearer part)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/{REDACTED}"


def mask_urls(value: Any) -> Any:
    """Return a copy of a JSON-like value with every http(s) URL string masked."""
    if isinstance(value, Mapping):
        return {str(key): mask_urls(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_urls(item) for item in value]
    if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
        return mask_url(value)
    return value


def mask_urls_in_json_text(text: str | None) -> str | None:
    """Mask the URLs inside stored JSON text; text that is not JSON is dropped rather than leaked."""
    if text is None:
        return None
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return json.dumps(REDACTED)
    return json.dumps(mask_urls(decoded), sort_keys=True, ensure_ascii=False)
