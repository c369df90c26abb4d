"""Cap the size of a request body before an ASGI app sees it (413 beyond the cap).

The cap is enforced on the bytes as they arrive, not on what `Content-Length` claims: a
declared length over the cap is refused at once without reading, and a body that grows past
the cap (chunked, or longer than declared) is refused as soon as it does. The body is read
here, up to the cap, and handed to the app whole, so the app never holds more than the cap.

Use: `Starlette(routes=..., middleware=[Middleware(BodyLimit)])`, or wrap any ASGI app:
`BodyLimit(app, max_bytes=...)`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A callback is a few KB of JSON (a dozen stem URLs); this leaves room for any documented variant.
DEFAULT_MAX_BODY_BYTES = 256 * 1024


class BodyTooLarge(Exception):
    """The request body went past the cap."""


async def read_body_capped(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, read message by message; None when the client went away.

    Raises `BodyTooLarge` as soon as more than `max_bytes` arrived (the rest is never read).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"request body larger than {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, max_bytes: int) -> None:
    body = json.dumps({"code": 413, "msg": f"request body larger than {max_bytes} bytes"}).encode()
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: HTTP requests whose body exceeds `max_bytes` get 413 and never reach the app."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, self.max_bytes)
            return
        try:
            body = await read_body_capped(receive, self.max_bytes)
        except BodyTooLarge:
            await _refuse(send, self.max_bytes)
            return
        if body is None:  # the client went away: nobody to answer
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then whatever comes next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
