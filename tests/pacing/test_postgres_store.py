"""The PostgreSQL rate store on its own: its log stays small, a lost connection is replaced, an
unreachable server is a `RateStoreUnavailable`. (Two users sharing it: `test_shared_budget`.)"""

from __future__ import annotations

import asyncio
import socket

import pytest

from stemcat.client import RateStoreUnavailable
from stemcat.client.ratelimit.rules import PacingParams

from .conftest import busiest_window

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
from stemcat.client.ratelimit.stores.postgres import PostgresAdmissionStore  # noqa: E402

BUDGET = "c" * 32


async def _rows(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as con:
        (count,) = await (await con.execute("SELECT count(*) FROM rate_admissions")).fetchone() or (0,)
    return int(count)


async def test_the_log_keeps_only_what_the_rules_can_still_read(postgres_url: str) -> None:
    store = PostgresAdmissionStore(postgres_url, BUDGET)
    try:
        params = PacingParams(limit=3, window_s=1.0)
        await store.reserve(params, 6)
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            await admin.execute("UPDATE rate_admissions SET at = at - 100")  # as if made long ago
        (slot,) = (await store.reserve(params, 1)).slots
        assert slot.wait_s == 0.0  # long ago: nothing in the window
        assert await _rows(postgres_url) == params.limit  # the newest `limit`, the new one included
    finally:
        await store.aclose()


async def test_a_lost_connection_is_replaced(postgres_url: str) -> None:
    store = PostgresAdmissionStore(postgres_url, BUDGET)
    try:
        params = PacingParams(limit=5, window_s=1.0)
        (first,) = (await store.reserve(params, 1)).slots
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = 'stemcat-rate-store'")
        (second,) = (await store.reserve(params, 1)).slots  # on a new connection, same budget
        assert second.ticket > first.ticket
        assert await store.claim([first.ticket, second.ticket]) == {first.ticket, second.ticket}
    finally:
        await store.aclose()


async def test_an_unreachable_server_is_a_rate_store_unavailable() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = PostgresAdmissionStore(f"postgresql://u:s3cret@127.0.0.1:{port}/db", BUDGET, connect_timeout_s=1)
    with pytest.raises(RateStoreUnavailable) as caught:
        await store.reserve(PacingParams(limit=5, window_s=1.0), 1)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
    await store.aclose()


async def test_concurrent_reservations_keep_every_window_even_on_a_repeatable_read_database(
    postgres_url: str,
) -> None:

    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        database = postgres_url.rsplit("/", 1)[1]
        await admin.execute(f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'repeatable read'")
    stores = [PostgresAdmissionStore(postgres_url, BUDGET) for _ in range(4)]
    params = PacingParams(limit=5, window_s=1.0)
    try:
        await asyncio.gather(*(store.reserve(params, 1) for store in stores for _ in range(6)))
    finally:
        for store in stores:
            await store.aclose()
    async with await psycopg.AsyncConnection.connect(postgres_url) as con:
        logged = [at for (at,) in await (await con.execute("SELECT at FROM rate_admissions ORDER BY at")).fetchall()]
    assert len(logged) == 24
    assert busiest_window(logged, params.guarded_window - 1e-6) <= params.limit
    assert min(b - a for a, b in zip(logged, logged[1:], strict=False)) >= params.nominal_spacing - 1e-6
