"""Resumable, capped streaming of one stem file to a temporary path.

Stem URLs may live on third-party hosts, so no credentials are ever sent with them.
The caller passes a `.part` path, and renames it into place once this returns.

Stem URLs come from the API (or a callback): they must not make this machine fetch from itself
or its network. `HostGuard` resolves every hop's host and refuses the URL before connecting when
any address is loopback, private, link-local or otherwise not global; the client turns the guard
off only when its API base URL is itself on loopback (the simulator serves its files there).
The name is resolved again when connecting: a DNS answer that changes in between is not caught.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx
from tenacity import AsyncRetrying

from stemcat.client.errors import (
    DownloadError,
    DownloadExpired,
    DownloadFailed,
    DownloadTooLarge,
    DownloadTruncated,
    ErrorPolicy,
    UnsafeURL,
)
from stemcat.client.masking import mask_url
from stemcat.client.transport_errors import describe, sanitized

logger = logging.getLogger("stemcat.client")

_EXPIRED_STATUSES = frozenset({403, 404, 410})
_RANGE_NOT_SATISFIABLE = 416
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)
_HASH_BLOCK = 1024 * 1024
_MAX_REDIRECTS = 5

# Lends a client for one attempt (its connection is the borrower's until the body is read).
LendClient = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]
# Resolves (host, port) to the addresses a connection could go to; raises OSError when it cannot.
Resolver = Callable[[str, int], Awaitable[list[str]]]
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (what httpx would connect to)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback_host(host: str | None) -> bool:
    """An IP literal on loopback, or the name `localhost` (no DNS: used for the API base URL)."""
    if not host:
        return False
    address = _ip_literal(host)
    if address is not None:
        return address.is_loopback
    name = host.lower().rstrip(".")
    return name in _LOOPBACK_NAMES or name.endswith(".localhost")


def is_public_address(address: str) -> bool:
    """Global unicast only: not loopback, private, link-local, shared, reserved, multicast or unspecified."""
    ip = _ip_literal(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class HostGuard:
    """Refuses a download URL whose host is, or resolves to, any non-public address: before connecting."""

    def __init__(self, resolver: Resolver | None = resolve_host) -> None:
        # None: IP literals only (a test transport never resolves names, so there is nothing to vet).
        self._resolver = resolver

    async def check(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        literal = _ip_literal(host)
        if literal is not None:
            addresses = [str(literal)]
        elif self._resolver is None:
            return
        else:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                addresses = await self._resolver(host, port)
            except OSError as exc:
                raise DownloadFailed(
                    f"Could not resolve the file host ({type(exc).__name__})", endpoint=mask_url(url)
                ) from None
            if not addresses:
                raise DownloadFailed("The file host resolved to no address", endpoint=mask_url(url))
        refused = [address for address in addresses if not is_public_address(address)]
        if refused:
            raise UnsafeURL(
                f"Refusing a download from a loopback, private or link-local address ({', '.join(refused)})",
                endpoint=mask_url(url),
            )


@dataclass(frozen=True)
class DownloadResult:
    """What landed in `dest`: its size, its sha256 (hex), and whether an earlier partial was reused."""

    bytes: int
    sha256: str
    resumed: bool


@dataclass(frozen=True)
class ContentRange:
    start: int | None
    end: int | None
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """`bytes 100-199/1000`, `bytes */1000` or `bytes 0-9/*`; None when absent or malformed."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None
    start, end, total = match.groups()
    return ContentRange(
        start=int(start) if start is not None else None,
        end=int(end) if end is not None else None,
        total=int(total) if total != "*" else None,
    )


def check_download_url(url: str) -> None:
    """Only absolute http(s) URLs with a host, and no embedded credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise UnsafeURL("Refusing an unparseable download URL", endpoint="<url>") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeURL(f"Refusing to download a {parts.scheme or 'scheme-less'} URL", endpoint=mask_url(url))
    if parts.username or parts.password or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeURL("Refusing a download URL with credentials or control characters", endpoint=mask_url(url))


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("Content-Length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body exactly as served, as it arrives: an encoded body is stored as is, never decompressed.

    No re-chunking: httpx's chunker holds bytes back until a chunk is full, and those
    bytes would be lost (not resumable) if the connection drops.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        # Same bytes as aiter_raw, but also works for bodies a test transport pre-loaded.
        return response.aiter_bytes()
    return response.aiter_raw()


def _hash_file(dest: Path) -> tuple[int, Any]:
    """Size and running sha256 of what a partial file already holds (the resume path only)."""
    digest = hashlib.sha256()
    size = 0
    with open(dest, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest


def _fsync_file(dest: Path) -> None:
    with open(dest, "rb+") as handle:
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class _Plan:
    """How to write the body of one response."""

    append: bool
    expected_total: int | None


class _Transfer:
    """One download call: repeated attempts against the same `.part` file."""

    def __init__(
        self,
        lend: LendClient,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        chunk_size: int,
        guard: HostGuard | None,
    ) -> None:
        self._lend = lend
        self._guard = guard
        self._url = url
        self._dest = dest
        self._max_bytes = max_bytes
        self._chunk_size = chunk_size
        self.resumed = False
        # The sha256 is taken as the bytes stream past (a re-read of the file would cost a
        # second pass and a worker-thread hop per stem); a resume hashes the existing prefix first.
        self.digest = hashlib.sha256()
        self.size = 0

    def _error(
        self,
        kind: type[DownloadError],
        message: str,
        *,
        code: int | None = None,
        policy: ErrorPolicy | None = None,
    ) -> DownloadError:
        return kind(message, endpoint=mask_url(self._url), code=code, policy=policy)

    async def attempt(self) -> None:
        try:
            existing = self._dest.stat().st_size
        except FileNotFoundError:
            existing = 0
        if existing:
            self.size, self.digest = await asyncio.to_thread(_hash_file, self._dest)
            existing = self.size
        else:
            self.size, self.digest = 0, hashlib.sha256()
        headers = {"Accept-Encoding": "identity"}
        if existing:
            headers["Range"] = f"bytes={existing}-"
        url = self._url
        try:
            async with self._lend() as http:
                return await self._follow(http, url, headers, existing)
        except httpx.RequestError as exc:
            raise self._error(DownloadFailed, f"Network failure: {describe(exc)}") from sanitized(exc)

    async def _follow(self, http: httpx.AsyncClient, url: str, headers: dict[str, str], existing: int) -> None:
        # Redirects are followed by hand so every hop passes the same URL and address checks.
        for _hop in range(_MAX_REDIRECTS + 1):
            if self._guard is not None:
                await self._guard.check(url)
            request = http.build_request("GET", url, headers=headers)
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    check_download_url(url)
                    continue
                plan = self._plan(response, existing)
                if plan is not None:
                    await self._write_body(response, plan, existing)
                return
            finally:
                await response.aclose()
        raise self._error(DownloadFailed, "Too many redirects", policy=ErrorPolicy.ITEM)

    def _plan(self, response: httpx.Response, existing: int) -> _Plan | None:
        """Decide how to write the body; None when the file is already complete."""
        status = response.status_code
        if status in _EXPIRED_STATUSES:
            raise self._error(DownloadExpired, f"Stem URL answered {status}", code=status)
        if status == _RANGE_NOT_SATISFIABLE and existing:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is not None and content_range.total == existing:
                self.resumed = True
                return None
            self._dest.unlink(missing_ok=True)
            raise self._error(DownloadFailed, "Partial file does not match the remote file; restarting")
        if status >= 500 or status == 429:
            raise self._error(DownloadFailed, f"File host answered {status}", code=status)
        if status == 206:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range.start != existing:
                self._dest.unlink(missing_ok=True)
                raise self._error(DownloadFailed, "Unexpected Content-Range; restarting from zero")
            length = _content_length(response)
            total = content_range.total
            if total is None and length is not None:
                total = existing + length
            self.resumed = self.resumed or existing > 0
            return self._checked(_Plan(append=existing > 0, expected_total=total))
        if status == 200:
            self.resumed = False
            return self._checked(_Plan(append=False, expected_total=_content_length(response)))
        raise self._error(DownloadFailed, f"File host answered {status}", code=status, policy=ErrorPolicy.ITEM)

    def _checked(self, plan: _Plan) -> _Plan:
        if plan.expected_total is not None and plan.expected_total > self._max_bytes:
            self._dest.unlink(missing_ok=True)
            raise self._error(
                DownloadTooLarge,
                f"Declared size {plan.expected_total} bytes exceeds the cap of {self._max_bytes}",
            )
        return plan

    def _open(self, append: bool) -> BinaryIO:
        mode = "ab" if append else "wb"
        try:
            return open(self._dest, mode, buffering=self._chunk_size)
        except FileNotFoundError:  # the first file of its folder: a mkdir per stem would cost more
            self._dest.parent.mkdir(parents=True, exist_ok=True)
            return open(self._dest, mode, buffering=self._chunk_size)

    async def _write_body(self, response: httpx.Response, plan: _Plan, existing: int) -> None:
        written = existing if plan.append else 0
        if not plan.append:
            self.size, self.digest = 0, hashlib.sha256()
        too_large = False
        # The write buffer is flushed when the file closes, also when the body breaks off.
        with self._open(plan.append) as handle:
            async for chunk in _raw_chunks(response):
                written += len(chunk)
                if written > self._max_bytes:
                    too_large = True
                    break
                handle.write(chunk)
                self.digest.update(chunk)
                self.size = written
        if too_large:
            self._dest.unlink(missing_ok=True)
            raise self._error(DownloadTooLarge, f"Body exceeds the cap of {self._max_bytes} bytes")
        if plan.expected_total is not None and written < plan.expected_total:
            raise self._error(DownloadTruncated, f"Body ended at {written} of {plan.expected_total} bytes")


async def download_to_file(
    lend: LendClient,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    chunk_size: int,
    expected_bytes: int | None,
    retrying: Callable[[], AsyncRetrying],
    fsync: bool = True,
    guard: HostGuard | None = None,
) -> DownloadResult:
    """Stream `url` into `dest`, resuming a partial file; see `SunoClient.download`.

    With a `guard`, every hop's host is vetted before anything connects to it.
    """
    check_download_url(url)
    if max_bytes <= 0 or chunk_size <= 0:
        raise ValueError("max_bytes and chunk_size must be positive")
    transfer = _Transfer(lend, url, dest, max_bytes=max_bytes, chunk_size=chunk_size, guard=guard)
    await retrying()(transfer.attempt)
    size, sha256 = transfer.size, transfer.digest.hexdigest()
    if fsync:
        await asyncio.to_thread(_fsync_file, dest)
    if expected_bytes is not None and size != expected_bytes:
        if size < expected_bytes:
            raise DownloadTruncated(f"File has {size} of the expected {expected_bytes} bytes", endpoint=mask_url(url))
        dest.unlink(missing_ok=True)
        raise DownloadFailed(
            f"File has {size} bytes, more than the expected {expected_bytes}",
            endpoint=mask_url(url),
            policy=ErrorPolicy.ITEM,
        )
    logger.debug("downloaded %s: %d bytes (resumed=%s)", mask_url(url), size, transfer.resumed)
    return DownloadResult(bytes=size, sha256=sha256, resumed=transfer.resumed)
