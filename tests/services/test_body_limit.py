"""The request-body cap: 413 past the cap, whatever Content-Length says; the app sees small bodies whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stemcat.services.body_limit import BodyLimit, BodyTooLarge, read_body_capped

CAP = 1000


def _app(seen: list[int]) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        seen.append(len(body))
        return JSONResponse({"bytes": len(body)})

    return Starlette(routes=[Route("/callback/{token}", echo, methods=["POST"])],
                     middleware=[Middleware(BodyLimit, max_bytes=CAP)])


async def _post(app: Starlette, content: bytes | AsyncIterator[bytes], headers: dict[str, str] | None = None
                ) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver") as http:
        return await http.post("/callback/tok", content=content, headers=headers)


async def _chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


async def test_a_body_within_the_cap_reaches_the_app_whole() -> None:
    seen: list[int] = []
    response = await _post(_app(seen), b"{" + b" " * (CAP - 2) + b"}")
    assert response.status_code == 200 and seen == [CAP]


async def test_a_declared_length_over_the_cap_is_refused_without_reaching_the_app() -> None:
    seen: list[int] = []
    response = await _post(_app(seen), b"x" * (CAP + 1))
    assert response.status_code == 413 and seen == []


@pytest.mark.parametrize("declared", [None, "10"], ids=["chunked", "false-content-length"])
async def test_a_streamed_body_growing_past_the_cap_is_refused(declared: str | None) -> None:
    seen: list[int] = []
    headers = {"Content-Length": declared} if declared else None
    response = await _post(_app(seen), _chunks(50, 100), headers)
    assert response.status_code == 413 and seen == []


async def test_reading_stops_at_the_first_chunk_past_the_cap() -> None:
    pulled = 0

    async def receive() -> dict[str, object]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 400, "more_body": True}

    with pytest.raises(BodyTooLarge):
        await read_body_capped(receive, CAP)
    assert pulled == 3
