"""Lent single-connection clients: the wire limit and keep-alive reuse, over real loopback sockets."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from stemcat.client.connections import LentConnections


class CountingServer:
    """HTTP/1.1 keep-alive on 127.0.0.1: notes each connection's port and how many requests overlap."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.ports: set[int] = set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.ports.add(writer.get_extra_info("peername")[1])
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                await asyncio.sleep(self.hold_s)
                self.in_flight -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _client(limits: httpx.Limits, tls: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(limits=limits, **({} if tls is None else {"verify": tls}))


async def test_requests_share_size_connections_and_never_exceed_them() -> None:
    server = CountingServer(hold_s=0.02)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
    lent = LentConnections(3, _client)
    try:
        async def fetch() -> int:
            async with lent.client() as http:
                return (await http.get(url)).status_code

        statuses = await asyncio.gather(*(fetch() for _ in range(24)))
    finally:
        await lent.aclose()
        listener.close()
        await listener.wait_closed()
    assert statuses == [200] * 24
    assert server.requests == 24
    assert server.most_in_flight == 3  # the limit was reached, and never passed
    assert len(server.ports) == 3  # kept alive: three connections carried all 24 requests
    assert lent.idle == 3


async def test_a_borrowed_client_comes_back_when_the_borrower_fails() -> None:
    lent = LentConnections(1, _client)
    try:
        with pytest.raises(RuntimeError):
            async with lent.client():
                raise RuntimeError("borrower failed")
        assert lent.idle == 1
        async with asyncio.timeout(1):
            async with lent.client():
                assert lent.idle == 0
    finally:
        await lent.aclose()


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LentConnections(0, _client)
