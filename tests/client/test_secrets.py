"""The API key and stem URLs never leak: exceptions, reprs, pickles and log records.

Part of this runs over real loopback HTTP so httpx's and httpcore's own logging is covered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import pickle
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from stemcat.client import (
    GenerateRequest,
    NoLimiter,
    SeparationType,
    SubmitOutcomeUnknown,
    SunoClient,
    Unauthorized,
    mask_url,
)
from stemcat.client.masking import mask_text
from tests.client.conftest import API_KEY, ScriptedApi, envelope

STEM_ID = "0b7e2a8c-1f5d-4b0e-9a51-7c1e2f3a4b01"
STEM_PATH = f"/s/{STEM_ID}_Vocals.mp3"
AUDIO = bytes(range(256)) * 64
REQUEST = GenerateRequest(task_id="t1", audio_id="a1", type=SeparationType.SEPARATE_VOCAL, callback_url="https://cb/x")


def _leaks(text: str) -> list[str]:
    return [secret for secret in (API_KEY, STEM_ID, "sig=") if secret in text]


def test_mask_url_keeps_host_only() -> None:
    masked = mask_url(f"https://file.aiquickdraw.com{STEM_PATH}?sig=abc&exp=1")
    assert masked == "https://file.aiquickdraw.com/…/0b7e…mp3"
    assert mask_url("not a url") == "<url>"


def test_mask_text_handles_keys_bearer_headers_and_urls() -> None:
    text = f"Authorization: Bearer {API_KEY} url=https://h{STEM_PATH}?sig=1 raw={API_KEY}"
    assert _leaks(mask_text(text, (API_KEY,))) == []


def test_client_repr_hides_the_key() -> None:
    client = SunoClient(API_KEY, "https://api.test")
    assert API_KEY not in repr(client)
    assert API_KEY not in repr(vars(client))


async def test_key_echoed_by_the_server_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    echo = httpx.Response(401, json={"code": 401, "msg": f"bad key {API_KEY}"})
    api = ScriptedApi({"/api/v1/generate/credit": [echo]})
    caplog.set_level(logging.DEBUG)
    async with SunoClient(API_KEY, "https://api.test", transport=api.transport, limiter=NoLimiter()) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.credits()
    assert _leaks(str(caught.value)) == [] and _leaks(repr(caught.value)) == []
    assert API_KEY.encode() not in pickle.dumps(caught.value)
    assert all(_leaks(record.getMessage()) == [] for record in caplog.records)


# --- real loopback HTTP ----------------------------------------------------------------


@dataclass
class LoopbackServer:
    """A tiny HTTP/1.1 server with hand-written answers, to exercise real sockets."""

    port: int = 0
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    file_answers: int = 0
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode().split("\r\n")
                method, target, _ = request_line.split(" ")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, value in (line.split(":", 1) for line in header_lines if ":" in line)
                }
                self.seen_headers.append(headers)
                if int(headers.get("content-length", "0")):
                    await reader.readexactly(int(headers["content-length"]))
                if not await self.answer(method, target, headers, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, method: str, target: str, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        path = target.split("?", 1)[0]
        if path == "/api/v1/vocal-removal/generate":
            await self.shutting_down.wait()  # never answers in time: an ambiguous submit
            return False
        if path == "/api/v1/vocal-removal/record-info":
            data = {
                "taskId": "t1",
                "successFlag": "SUCCESS",
                "response": {"vocalUrl": f"{self.base_url}{STEM_PATH}?sig=s3cr3t", "instrumentalUrl": None},
            }
            self.write(writer, 200, json.dumps(envelope(data)).encode(), {"Content-Type": "application/json"})
            return True
        if path == STEM_PATH:
            self.file_answers += 1
            start = int(headers["range"].removeprefix("bytes=").rstrip("-")) if "range" in headers else 0
            if self.file_answers == 1:
                # Promise the whole file, send half, hang up.
                writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(AUDIO)}\r\n\r\n".encode())
                writer.write(AUDIO[: len(AUDIO) // 2])
                await writer.drain()
                return False
            rest = AUDIO[start:]
            extra = {"Content-Range": f"bytes {start}-{len(AUDIO) - 1}/{len(AUDIO)}"} if start else {}
            self.write(writer, 206 if start else 200, rest, extra)
            return True
        self.write(writer, 404, b"{}", {})
        return True

    @staticmethod
    def write(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


@pytest.fixture
async def loopback() -> AsyncIterator[LoopbackServer]:
    server = LoopbackServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server
        server.shutting_down.set()
        await asyncio.sleep(0.05)  # let handlers finish before the loop closes


@pytest.fixture
def real_client(loopback: LoopbackServer) -> Callable[[], SunoClient]:
    async def no_sleep(_seconds: float) -> None:
        return None

    return lambda: SunoClient(
        API_KEY,
        loopback.base_url,
        limiter=NoLimiter(),
        timeout=httpx.Timeout(0.5, connect=0.5),
        sleep=no_sleep,
    )


async def test_nothing_leaks_over_real_http(
    loopback: LoopbackServer, real_client: Callable[[], SunoClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dest = tmp_path / "vocals.mp3.part"
    async with real_client() as client:
        record = await client.record_info("t1")
        (url,) = record.stem_urls.values()
        result = await client.download(url, dest, max_bytes=1 << 20)
        with pytest.raises(SubmitOutcomeUnknown) as caught:
            await client.submit(REQUEST)

    # The real socket cut the first body short; the second request resumed it.
    assert dest.read_bytes() == AUDIO
    assert result.resumed and result.sha256 == hashlib.sha256(AUDIO).hexdigest()
    file_requests = [h for h in loopback.seen_headers if "range" in h or h.get("accept-encoding") == "identity"]
    assert file_requests and all("authorization" not in h for h in file_requests)
    assert loopback.seen_headers[0]["authorization"] == f"Bearer {API_KEY}"

    error = caught.value
    for text in (str(error), repr(error), str(error.cause), repr(error.cause)):
        assert _leaks(text) == [], text
    assert API_KEY.encode() not in pickle.dumps(error)

    messages = [record.getMessage() for record in caplog.records]
    assert any(record.name == "httpx" for record in caplog.records)  # httpx did log requests
    assert any(record.name.startswith("httpcore") for record in caplog.records)
    leaking = [message for message in messages if _leaks(message)]
    assert leaking == []
