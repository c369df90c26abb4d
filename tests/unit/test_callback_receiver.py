"""The run's callback receiver served on the run's own loop, over real loopback HTTP (ledger on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from stemcat.catalog import Ledger, LedgerWriter
from stemcat.services.callbacks import CallbackReceiver, callback_url
from tests.servers.ledgers import LedgerTarget


async def test_on_the_runs_loop_a_callback_is_stored_and_wakes_its_waiter(ledger_target: LedgerTarget) -> None:
    ledger = ledger_target.ledger()
    writes = LedgerWriter(ledger.reopen(busy_timeout_s=0.0))
    secret = b"s" * 32
    sigint_before = signal.getsignal(signal.SIGINT)
    try:
        async with CallbackReceiver(ledger, secret, writer=writes) as receiver:
            # uvicorn would otherwise take SIGINT over while it serves on the main thread
            assert signal.getsignal(signal.SIGINT) is sigint_before
            receiver.hub.bind(asyncio.get_running_loop())
            base_url = receiver.base_url
            woken = receiver.hub.event("job-1")
            payload = {"code": 200, "msg": "ok", "data": {"task_id": "remote-1"}}
            async with httpx.AsyncClient() as http:
                good = await http.post(callback_url(receiver.base_url, secret, "job-1"), json=payload)
                forged = await http.post(f"{receiver.base_url}/callback/job-1?sig=0000", json=payload)
            async with asyncio.timeout(2):
                await woken.wait()
        assert good.status_code == 200
        assert forged.status_code == 401
        stored = ledger.callbacks_for_token("job-1")
        assert [(c["remote_task_id"], c["code"], c["payload"]) for c in stored] == [("remote-1", 200, payload)]
        # stopped: nothing listens on its port any more
        async with httpx.AsyncClient() as http:
            try:
                await http.post(callback_url(base_url, secret, "job-2"), json=payload)
                still_listening = True
            except httpx.ConnectError:
                still_listening = False
        assert not still_listening
        assert signal.getsignal(signal.SIGINT) is sigint_before
    finally:
        await writes.drain()
        writes.close()
        ledger.close()


async def test_the_receiver_refuses_an_oversized_body_and_stores_nothing(ledger_target: LedgerTarget) -> None:
    ledger = ledger_target.ledger()
    writes = LedgerWriter(ledger.reopen(busy_timeout_s=0.0))
    secret = b"s" * 32
    huge = {"code": 200, "msg": "ok", "data": {"task_id": "remote-1", "pad": "x" * (1024 * 1024)}}
    try:
        async with CallbackReceiver(ledger, secret, writer=writes) as receiver:
            receiver.hub.bind(asyncio.get_running_loop())
            async with httpx.AsyncClient() as http:
                refused = await http.post(callback_url(receiver.base_url, secret, "job-1"), json=huge)
        assert refused.status_code == 413
        assert ledger.callbacks_for_token("job-1") == []
    finally:
        await writes.drain()
        writes.close()
        ledger.close()


def test_a_callback_arriving_while_the_ledger_server_is_down_is_refused_with_503_then_stored(
    tmp_path: Path, postgres_server, postgres_url: str, caplog
) -> None:
    """`stemcat callbacks serve` outlives a PostgreSQL restart: no traceback, a 503 the API retries."""
    ledger = Ledger.open(tmp_path, postgres_url)
    secret = b"s" * 32
    payload = {"code": 200, "msg": "ok", "data": {"task_id": "remote-1"}}
    try:
        with CallbackReceiver(ledger, secret) as receiver:
            url = callback_url(receiver.base_url, secret, "job-1")
            postgres_server.stop("immediate")
            try:
                refused = httpx.post(url, json=payload, timeout=30)
            finally:
                postgres_server.start()
            accepted = httpx.post(url, json=payload, timeout=30)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert accepted.status_code == 200
        assert [c["remote_task_id"] for c in ledger.callbacks_for_token("job-1")] == ["remote-1"]
        warnings = [r for r in caplog.records if "not stored, answered 503" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].exc_info is None
    finally:
        ledger.close()
