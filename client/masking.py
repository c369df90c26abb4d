"""Keep bearer material out of messages and logs.

Stem URLs are bearer links for 14 days and the API key is a bearer token, so both are
masked wherever text leaves the client: exception messages and log records (ours and
those of httpx/httpcore, which log full URLs at INFO).
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit

_URL_PATTERN = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>()\[\]{}]+")
_BEARER_PATTERN = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_KEPT_NAME_CHARS = 4
_REDACTED = "***"
# Scrubbing a very short "secret" (a test key like "k") would mangle every message;
# real keys are far longer than this.
_MIN_SECRET_CHARS = 8
_MASK_MARK = "…"
_ALREADY_MASKED = re.compile(r"^[^/]+://[^/?#]+/…(?:/[^/…?#]{0,4}…[^/?#…]*)?$")

# Loggers that may print request URLs; filters on a parent logger do not apply to records
# logged on its children, so every emitting logger is listed.
_URL_LOGGING_LOGGERS = (
    "stemcat.client",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def mask_url(url: str) -> str:
    """`https://host/…/abcd…mp3`: keep scheme and host, drop query, credentials and most of the path."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme or not host:
        return "<url>"
    netloc = f"{host}:{port}" if port else host
    last_segment = parts.path.rsplit("/", 1)[-1]
    name, dot, extension = last_segment.rpartition(".")
    if not dot:
        name, extension = last_segment, ""
    if not name:
        return f"{parts.scheme}://{netloc}/{_MASK_MARK}"
    return f"{parts.scheme}://{netloc}/{_MASK_MARK}/{name[:_KEPT_NAME_CHARS]}{_MASK_MARK}{extension}"


def mask_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask every URL, bearer token and listed secret inside free text."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, _REDACTED)
    text = _BEARER_PATTERN.sub(lambda m: m.group(1) + _REDACTED, text)
    return _URL_PATTERN.sub(lambda m: _mask_unless_masked(m.group(0)), text)


def _mask_unless_masked(url: str) -> str:
    # Masking is applied at several layers; a second pass must not shorten it further.
    return url if _ALREADY_MASKED.match(url) else mask_url(url)


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with URLs and registered secrets masked."""

    def __init__(self) -> None:
        super().__init__("stemcat.client.masking")
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add_secret(self, secret: str) -> None:
        with self._lock:
            if len(secret) >= _MIN_SECRET_CHARS and secret not in self._secrets:
                self._secrets = (*self._secrets, secret)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the emitter's bug; pass it through unmasked
            return True
        record.msg = mask_text(message, self._secrets)
        record.args = None
        return True

    def __repr__(self) -> str:
        return f"<MaskingFilter secrets={len(self._secrets)}>"


_FILTER = MaskingFilter()


def install_log_masking(secret: str | None = None) -> MaskingFilter:
    """Attach the process-wide masking filter to the HTTP loggers (idempotent)."""
    if secret:
        _FILTER.add_secret(secret)
    for name in _URL_LOGGING_LOGGERS:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
    return _FILTER
