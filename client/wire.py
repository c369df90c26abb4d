"""What one API exchange puts on and reads off the wire: the client's settings, key and body cap.

Split from `stemcat.client.client` so the class there holds only the calls: here are the
environment names and defaults it resolves, the base-URL check, the bearer auth that keeps
the key out of reprs (and lists what must be scrubbed), and the capped body read that stops
a runaway answer before it fills memory.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from urllib.parse import urlsplit

import httpx

from stemcat.client.endpoints import DEFAULT_BASE_URL
from stemcat.client.errors import ConfigurationError, ResponseFormatError

API_KEY_ENV = "SUNO_API_KEY"
BASE_URL_ENV = "SUNO_BASE_URL"
MAX_API_BODY_BYTES = 1024 * 1024
USER_AGENT = "stemcat-suno-client/0.1"
DEFAULT_TIMEOUT = httpx.Timeout(30, connect=10)


class BearerAuth(httpx.Auth):
    """Adds the key to API requests only; never shown by repr."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must be scrubbed from any text leaving the client."""
        return (self._api_key,)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def __repr__(self) -> str:
        return "<BearerAuth ***>"


def resolve_base_url(base_url: str | None) -> str:
    """The API base URL: the argument, else the environment, else the default; http(s) with a host."""
    resolved = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    try:
        parts = urlsplit(resolved)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigurationError(f"{BASE_URL_ENV} must be an http(s) URL with a host")
    return resolved


async def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The whole body, or `ResponseFormatError` as soon as it grows past `cap` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise ResponseFormatError(
                f"Malformed response: body larger than {cap} bytes", endpoint=response.request.url.path
            )
        chunks.append(chunk)
    return b"".join(chunks)
