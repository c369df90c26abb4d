"""A fixed set of keep-alive connections, each in an httpx client of its own, lent one request at a time.

httpcore's pool walks every connection it holds on each request and each response close, and
asks every idle one whether its socket went away (a `select` and anyio's whole extra-attribute
table per connection): with eight download connections that walk cost more loop time than the
download it served. A client of one connection lent to one borrower at a time keeps the same
limit (at most `size` requests on the wire) and the same keep-alive reuse, and each request
only looks at its own connection. Borrowers queue here, first come first served.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx


class LentConnections:
    """`size` single-connection clients; `async with lent.client() as http:` borrows one."""

    def __init__(
        self,
        size: int,
        make_client: Callable[[httpx.Limits, ssl.SSLContext | None], httpx.AsyncClient],
        *,
        shared_transport: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("need at least one connection")
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        if shared_transport:
            # A caller's own transport (a test double, a proxy) is one pool already: lend one
            # client `size` times, so the wire limit still holds.
            shared = make_client(httpx.Limits(max_connections=size, max_keepalive_connections=size), None)
            self._clients, lent = [shared], [shared] * size
        else:
            # One TLS context for all: building one per client costs tens of milliseconds each.
            context = httpx.create_ssl_context()
            one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            self._clients = lent = [make_client(one, context) for _ in range(size)]
        for client in lent:
            self._idle.put_nowait(client)

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        # LIFO: the connection used last is the one most likely still open.
        http = await self._idle.get()
        try:
            yield http
        finally:
            self._idle.put_nowait(http)

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    async def aclose(self) -> None:
        for http in self._clients:
            await http.aclose()
