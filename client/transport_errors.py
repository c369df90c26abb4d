"""Classify httpx failures without letting request details (headers, full URLs) escape."""

from __future__ import annotations

import httpx

from stemcat.client.masking import mask_text

# Failures raised before any byte of the request reached the server.
_UNSENT_FAILURES: tuple[type[httpx.RequestError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


def provably_unsent(error: httpx.RequestError) -> bool:
    """True when the request cannot have reached the server (so a paid call was not executed)."""
    return isinstance(error, _UNSENT_FAILURES)


def describe(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """`ReadTimeout: timed out`, masked."""
    text = str(error).strip()
    name = type(error).__name__
    return mask_text(f"{name}: {text}" if text else name, secrets)


def sanitized(error: httpx.RequestError, secrets: tuple[str, ...] = ()) -> BaseException:
    """A copy without the attached request, whose headers carry the API key."""
    message = mask_text(str(error), secrets)
    try:
        return type(error)(message)
    except TypeError:
        return RuntimeError(describe(error, secrets))
