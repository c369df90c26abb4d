"""Async client for the Suno separation API: the `SunoClient` class, its calls and its one request.

The submit is paid, so it is re-sent only when the request provably was not executed;
everything else (reads, downloads) is retried with jittered back-off. All API calls of a
key share one `RequestLimiter`; by default the key's budget in its per-key store, which every
other command and run on the key shares too (see `stemcat.client.ratelimit`).

The class holds the connections, the limiter and the typed endpoint methods; the paid submit's
re-send and "maybe accepted" rules are in `stemcat.client.submit`, the retry rules for reads and
downloads in `stemcat.client.retrying`, and the settings, auth and capped body read in
`stemcat.client.wire`. The names this module has always exported are still importable here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying

from stemcat.client.backoff import JitteredBackoff, parse_retry_after
from stemcat.client.connections import LentConnections
from stemcat.client.download import (
    DownloadResult,
    HostGuard,
    Resolver,
    download_to_file,
    is_loopback_host,
    resolve_host,
)
from stemcat.client.endpoints import CREDIT_PATH, GENERATION_RECORD_PATH, RECORD_INFO_PATH, SUBMIT_PATH
from stemcat.client.envelope import check_envelope
from stemcat.client.errors import ConfigurationError, GaveUpWaiting, Maintenance, Throttled, TransportFailure
from stemcat.client.masking import install_log_masking
from stemcat.client.models import (
    GenerateRequest,
    GenerationRecord,
    SeparationRecord,
    parse_credit_balance,
)
from stemcat.client.ratelimit import RequestLimiter, SharedLimiter, limiter_for_key, rate_store_from_env
from stemcat.client.retrying import (
    Sleep,
    is_retryable_download_error,
    is_retryable_read_error,
    retrying,
)
from stemcat.client.submit import BeforeSend, SubmitReceipt, is_retryable_submit_error, submit_once
from stemcat.client.transport_errors import describe, provably_unsent, sanitized
from stemcat.client.wire import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_TIMEOUT,
    MAX_API_BODY_BYTES,
    USER_AGENT,
    BearerAuth,
    read_capped,
    resolve_base_url,
)

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "DEFAULT_TIMEOUT", "BeforeSend", "Sleep", "SubmitReceipt", "SunoClient"]

logger = logging.getLogger("stemcat.client")


class SunoClient:
    """One long-lived connection pool to the API (and to stem file hosts); use `async with`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        limiter: RequestLimiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_read_attempts: int = 6,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_connections: int = 4,
        max_download_connections: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        resolver: Resolver | None = None,
    ) -> None:
        key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
        if not key:
            raise ConfigurationError(f"No API key: set {API_KEY_ENV} or pass api_key")
        if max_read_attempts < 1:
            raise ValueError("max_read_attempts must be at least 1")
        if backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        self.base_url = resolve_base_url(base_url)
        # Stem hosts must be public, unless the API itself is on loopback (the simulator). A custom
        # transport decides where names go, so without a `resolver` only IP literals are vetted then.
        self._host_guard: HostGuard | None = None
        if not is_loopback_host(urlsplit(self.base_url).hostname):
            self._host_guard = HostGuard(resolver or (None if transport is not None else resolve_host))
        self._auth = BearerAuth(key)
        install_log_masking(key)
        # A limiter of its own is on the key's shared budget (as a run's is), and closed with the client.
        self._own_limiter: SharedLimiter | None = None
        if limiter is None:
            limiter = self._own_limiter = limiter_for_key(self.base_url, key, store=rate_store_from_env())
        self._limiter: RequestLimiter = limiter
        self._max_attempts = max_read_attempts
        self._backoff = JitteredBackoff(backoff_initial_s, backoff_max_s)
        self._maintenance_pause_s = backoff_max_s
        self._sleep = sleep
        # API requests sent, by endpoint path (retries included; file downloads are not API requests).
        self.requests_sent: Counter[str] = Counter()
        # Each API request borrows one of `max_connections` single-connection clients, and
        # stem files get clients of their own (no base URL and no key near file hosts): see
        # `stemcat.client.connections` for why not one pooled client each.

        def clients_for(base_url: str) -> Callable[[httpx.Limits, ssl.SSLContext | None], httpx.AsyncClient]:
            def make(limits: httpx.Limits, tls: ssl.SSLContext | None) -> httpx.AsyncClient:
                return httpx.AsyncClient(
                    base_url=base_url, timeout=timeout, limits=limits, follow_redirects=False,
                    headers={"User-Agent": USER_AGENT}, transport=transport,
                    **({} if tls is None else {"verify": tls}),
                )

            return make

        custom = transport is not None
        self._api = LentConnections(max_connections, clients_for(self.base_url), shared_transport=custom)
        self._files = LentConnections(max_download_connections, clients_for(""), shared_transport=custom)

    @property
    def limiter(self) -> RequestLimiter:
        return self._limiter

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._files.aclose()
        if self._own_limiter is not None:
            await self._own_limiter.aclose()

    def __repr__(self) -> str:
        return f"SunoClient(base_url={self.base_url!r}, limiter={self._limiter!r})"

    # --- API calls -------------------------------------------------------------------------

    async def submit(
        self, request: GenerateRequest, *, before_send: BeforeSend | None = None, receipt: SubmitReceipt | None = None
    ) -> str:
        """PAID. Ask for a separation and return its taskId.

        Re-sent only after a connect failure or a 405/430/455 (not executed). Any other
        failure after sending raises `SubmitOutcomeUnknown`: record the job as unknown,
        never resubmit it.

        `before_send` is awaited once, after the rate limiter admitted the first attempt and
        just before the request leaves: the place to record a durable intent, so that time
        spent waiting for the limiter never counts as "maybe sent". Whatever it raises
        propagates and nothing is sent.

        `receipt`, when given, is kept current: if the call is stopped by anything (a
        cancellation while it waits out a Retry-After included), `receipt.not_executed` says
        whether the API can have run it.
        """
        body = request.to_wire()
        pending = [before_send] if before_send is not None else []
        progress = receipt if receipt is not None else SubmitReceipt()

        send = partial(self._call, "POST", SUBMIT_PATH, None)

        async def attempt() -> str:
            return await submit_once(send, body, pending, progress)

        return await self._retrying(is_retryable_submit_error)(attempt)

    async def record_info(self, task_id: str) -> SeparationRecord:
        """Status and stem URLs of a separation task."""
        envelope = await self._read(RECORD_INFO_PATH, {"taskId": _require_id(task_id)})
        return SeparationRecord.from_envelope(envelope)

    async def credits(self, *, max_wait_s: float | None = None) -> int:
        """The key's remaining credit balance.

        With `max_wait_s`, gives up (`GaveUpWaiting`) rather than wait longer than that in all,
        for the limiter, a Retry-After or retries: a closing read must not hold a stopping run.
        """
        if max_wait_s is None:
            return parse_credit_balance(await self._read(CREDIT_PATH, None))
        try:
            async with asyncio.timeout(max_wait_s):
                envelope = await self._read(CREDIT_PATH, None)
        except TimeoutError:
            raise GaveUpWaiting(
                f"No credit balance within {max_wait_s:g} s (rate limit, Retry-After or retries)",
                endpoint=CREDIT_PATH,
            ) from None
        return parse_credit_balance(envelope)

    async def generation_record(self, task_id: str) -> GenerationRecord:
        """Details of a music-generation task, listing its audio variations."""
        envelope = await self._read(GENERATION_RECORD_PATH, {"taskId": _require_id(task_id)})
        return GenerationRecord.from_envelope(envelope)

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        chunk_size: int = 256 * 1024,
        expected_bytes: int | None = None,
        fsync: bool = True,
    ) -> DownloadResult:
        """Stream a stem file into `dest` (a `.part` path), resuming bytes already there.

        No Authorization header is sent: file URLs may be on third-party hosts, and a host that is
        (or resolves to) a loopback, private or link-local address is refused before any connection,
        unless the API base URL is itself on loopback. The sha256 is
        of the bytes on disk. With `fsync=False` the caller forces the file to disk itself
        (for instance outside a concurrency slot, together with its other file work).
        """
        return await download_to_file(
            self._files.client,
            url,
            Path(dest),
            max_bytes=max_bytes,
            chunk_size=chunk_size,
            expected_bytes=expected_bytes,
            retrying=lambda: self._retrying(is_retryable_download_error),
            fsync=fsync,
            guard=self._host_guard,
        )

    # --- plumbing --------------------------------------------------------------------------

    def _retrying(self, should_retry: Callable[[BaseException], bool]) -> AsyncRetrying:
        return retrying(should_retry, max_attempts=self._max_attempts, backoff=self._backoff, sleep=self._sleep)

    async def _read(self, path: str, params: dict[str, str] | None) -> dict[str, Any]:
        return await self._retrying(is_retryable_read_error)(self._call, "GET", path, params, None)

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json_body: dict[str, str] | None,
        before_send: list[BeforeSend] | None = None,
        receipt: SubmitReceipt | None = None,
    ) -> dict[str, Any]:
        """One rate-limited API request; raises the mapped `SunoError` for any failure."""
        await self._limiter.acquire()
        try:
            async with self._api.client() as http:
                while before_send:  # a paid request's intent is recorded once it is next to leave
                    await before_send.pop()()
                self.requests_sent[path] += 1
                if receipt is not None:
                    receipt.attempts += 1
                    receipt.in_flight = True
                async with http.stream(
                    method,
                    path,
                    params=params,
                    json=json_body,
                    auth=self._auth,
                    headers={"Accept": "application/json"},
                ) as response:
                    body = await read_capped(response, MAX_API_BODY_BYTES)
        except httpx.RequestError as exc:
            if receipt is not None:
                receipt.in_flight = False  # `request_sent` says whether it may have arrived
            logger.debug("%s %s failed: %s", method, path, describe(exc, self._auth.secrets))
            raise TransportFailure(
                f"Network failure: {describe(exc, self._auth.secrets)}",
                request_sent=not provably_unsent(exc),
                endpoint=path,
            ) from sanitized(exc, self._auth.secrets)
        if receipt is not None:
            receipt.in_flight = False  # answered; what the answer means is the caller's to say
        logger.debug("%s %s -> HTTP %d", method, path, response.status_code)
        try:
            envelope = check_envelope(
                response.status_code,
                body,
                endpoint=path,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                secrets=self._auth.secrets,
            )
        except Throttled as exc:
            self._limiter.throttled(exc.retry_after)
            raise
        except Maintenance as exc:
            self._limiter.paused(exc.retry_after or self._maintenance_pause_s)
            raise
        self._limiter.succeeded()
        return envelope


def _require_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not task_id.strip():
        raise ValueError("task_id must be a non-empty string")
    return task_id.strip()
