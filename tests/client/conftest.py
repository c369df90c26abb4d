"""Scripted fakes for the client tests: an API behind httpx.MockTransport, a fake clock."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stemcat.client import NoLimiter, RequestLimiter, SunoClient

CONTRACT_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "contract"
API_KEY = "sk-test-5ecret-Key-0123456789"
BASE_URL = "https://api.test"

Reply = httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]


def load_contract(name: str) -> Any:
    return json.loads((CONTRACT_DIR / name).read_text())


def envelope(data: Any = None, code: int = 200, msg: str = "success") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


class ScriptedApi:
    """Answers each path with its scripted replies in order; the last reply repeats."""

    def __init__(self, script: dict[str, Iterable[Reply]] | None = None) -> None:
        self._replies: dict[str, deque[Reply]] = defaultdict(deque)
        self.requests: list[httpx.Request] = []
        for path, replies in (script or {}).items():
            self.on(path, *replies)

    def on(self, path: str, *replies: Reply) -> ScriptedApi:
        self._replies[path].extend(replies)
        return self

    def calls(self, path: str) -> int:
        return sum(1 for request in self.requests if request.url.path == path)

    def requests_to(self, path: str) -> list[httpx.Request]:
        return [request for request in self.requests if request.url.path == path]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self._replies.get(request.url.path)
        if not queue:
            return httpx.Response(404, json={"code": 404, "msg": f"no script for {request.url.path}"})
        reply = queue.popleft() if len(queue) > 1 else queue[0]
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


class ChunkStream(httpx.AsyncByteStream):
    """A response body delivered in chunks, optionally failing after them like a dropped connection."""

    def __init__(self, chunks: Iterable[bytes], fail_with: BaseException | None = None) -> None:
        self._chunks = list(chunks)
        self._fail_with = fail_with
        self.delivered = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.delivered += 1
            yield chunk
        if self._fail_with is not None:
            raise self._fail_with


PUBLIC_ADDRESS = "93.184.216.34"


class FakeResolver:
    """Name → addresses without DNS; any other name resolves to one public address."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = names or {}
        self.looked_up: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.looked_up.append(host)
        addresses = self.names.get(host, [PUBLIC_ADDRESS])
        if not addresses:
            raise OSError(f"cannot resolve {host}")
        return addresses


class SleepLog:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class FakeClock:
    """Monotonic time that only moves when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is


@pytest.fixture
def sleep_log() -> SleepLog:
    return SleepLog()


@pytest.fixture
def make_client(sleep_log: SleepLog) -> Callable[..., SunoClient]:
    def build(api: ScriptedApi, *, limiter: RequestLimiter | None = None, **options: Any) -> SunoClient:
        return SunoClient(
            API_KEY,
            BASE_URL,
            limiter=limiter if limiter is not None else NoLimiter(),
            transport=api.transport,
            sleep=sleep_log,
            **{"resolver": FakeResolver(), **options},
        )

    return build
