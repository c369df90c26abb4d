"""Serving file bytes: single byte-range requests (206/416) and deliberately truncated bodies."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_RANGE: Final[re.Pattern[str]] = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
MP3_MEDIA_TYPE: Final[str] = "audio/mpeg"


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte range [start, end]."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class UnsatisfiableRange(ValueError):
    """The Range header names no byte of the file (answer 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range a Range header asks for; None means send the whole file.

    Malformed or multi-range headers are ignored (RFC 9110 allows answering 200).
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise UnsatisfiableRange(header)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise UnsatisfiableRange(header)
    return ByteRange(start, min(end, size - 1))


def file_response(data: bytes, range_header: str | None, *, head: bool = False) -> Response:
    """200 with the whole file, 206 with the requested range, or 416."""
    size = len(data)
    headers = {"Accept-Ranges": "bytes"}
    try:
        byte_range = parse_range(range_header, size)
    except UnsatisfiableRange:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if byte_range is None:
        body, status = data, 200
    else:
        body, status = data[byte_range.start : byte_range.end + 1], 206
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    if head:
        headers["Content-Length"] = str(len(body))
        return Response(status_code=status, headers=headers, media_type=MP3_MEDIA_TYPE)
    return Response(content=body, status_code=status, headers=headers, media_type=MP3_MEDIA_TYPE)


class TruncatedResponse(Response):
    """Announces the full Content-Length, sends only the first bytes, then drops the connection."""

    def __init__(self, full: Response, keep_bytes: int) -> None:
        super().__init__(content=full.body, status_code=full.status_code, headers=dict(full.headers))
        self._keep = keep_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        # more_body=True and then returning leaves the response incomplete: the server closes the connection.
        TRUNCATION_FILTER.expect_one()
        await send({"type": "http.response.body", "body": bytes(self.body[: self._keep]), "more_body": True})


class IntentionalTruncationFilter(logging.Filter):
    """Drops uvicorn's error line for responses this module cut short on purpose (and only those)."""

    _MESSAGE: Final[str] = "ASGI callable returned without completing response"

    def __init__(self) -> None:
        super().__init__()
        self._pending = 0
        self._lock = threading.Lock()

    def expect_one(self) -> None:
        with self._lock:
            self._pending += 1

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self._MESSAGE):
            return True
        with self._lock:
            if self._pending > 0:
                self._pending -= 1
                return False
        return True


TRUNCATION_FILTER: Final[IntentionalTruncationFilter] = IntentionalTruncationFilter()


def install_truncation_filter() -> None:
    """Attach the filter to uvicorn's error logger once per process."""
    logger = logging.getLogger("uvicorn.error")
    if TRUNCATION_FILTER not in logger.filters:
        logger.addFilter(TRUNCATION_FILTER)
