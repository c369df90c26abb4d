"""Receive the API's completion callbacks: verify, store durably, hand the payload to the waiting job.

A callback's URL carries the job's idempotency token and an HMAC of it (only the API has seen
that URL, so a stranger cannot forge one); anything else is refused before it is read. The
payload is stored in the ledger before it is answered (so a restart can match a late callback
to an intent whose taskId was never stored), then handed to the run's waiting job, which uses
it in place of a poll when it names the job's own taskId (`tasks.separation.polling`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stemcat.catalog import Ledger, LedgerBusyError, LedgerUnavailableError, LedgerWriter
from stemcat.catalog.atomic_files import creating_if_absent
from stemcat.services.body_limit import BodyLimit
from stemcat.services.serving import LoopbackServer

log = logging.getLogger(__name__)

SECRET_FILE = "callback.secret"
STOP_TIMEOUT_S = 5


def load_secret(data_dir: Path) -> bytes:
    """The data directory's callback secret, created once with owner-only permissions."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        # Durable before any URL signed with it leaves; a concurrent creator's secret wins.
        with creating_if_absent(path) as temp:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def sign(secret: bytes, token: str) -> str:
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()[:32]


def callback_url(base_url: str, secret: bytes, token: str) -> str:
    """The `callBackUrl` for one job: the token is a path segment, the signature a query value."""
    return f"{base_url.rstrip('/')}/callback/{token}?sig={sign(secret, token)}"


def _task_id_and_code(payload: dict[str, Any]) -> tuple[str | None, int | None]:
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    task_id = data.get("task_id") or data.get("taskId")
    code = payload.get("code")
    return (str(task_id) if task_id else None, code if isinstance(code, int) else None)


class CallbackHub:
    """Hands verified callbacks to in-process waiters and wakes them (`notify` is thread-safe).

    The latest payload of each token is kept until its job forgets it, also when it arrives
    before the job started waiting (a fast separation can call back before the submit returned);
    at most `MAX_KEPT` tokens are kept, the oldest dropped first.
    """

    MAX_KEPT = 10_000

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._payloads: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def event(self, token: str) -> asyncio.Event:
        event = self._events.setdefault(token, asyncio.Event())
        if token in self._payloads:
            event.set()
        return event

    def payload(self, token: str) -> dict[str, Any] | None:
        """The latest callback body received for `token`, if any."""
        return self._payloads.get(token)

    def discard(self, token: str) -> None:
        """Drop `token`'s payload (it was used, or it did not name the job's task)."""
        self._payloads.pop(token, None)

    def forget(self, token: str) -> None:
        self._events.pop(token, None)
        self._payloads.pop(token, None)

    def notify(self, token: str, payload: dict[str, Any] | None = None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._set, token, payload)

    def _set(self, token: str, payload: dict[str, Any] | None = None) -> None:
        if payload is not None:
            self._payloads[token] = payload
            self._payloads.move_to_end(token)
            while len(self._payloads) > self.MAX_KEPT:
                self._payloads.popitem(last=False)
        event = self._events.get(token)
        if event is not None:
            event.set()


StoreCallback = Callable[[str, str | None, int | None, dict[str, Any]], Awaitable[None]]


OnCallback = Callable[[str, dict[str, Any]], None]


def build_app(store: StoreCallback, secret: bytes, on_callback: OnCallback | None = None) -> Starlette:
    """`store(token, task_id, code, payload)` makes the callback durable before it is answered."""

    async def receive(request: Request) -> JSONResponse:
        token = request.path_params["token"]
        if not hmac.compare_digest(sign(secret, token), request.query_params.get("sig", "")):
            return JSONResponse({"code": 401, "msg": "bad signature"}, status_code=401)
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"code": 400, "msg": "body is not JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"code": 400, "msg": "body is not a JSON object"}, status_code=400)
        task_id, code = _task_id_and_code(payload)
        try:
            await store(token, task_id, code, payload)
        except (LedgerUnavailableError, LedgerBusyError) as error:
            # Not stored, so not acknowledged: a 503 makes the API send it again, and a ledger
            # server that is down for a moment is an expected outcome (one line, no traceback).
            log.warning("callback for job %s not stored, answered 503: %s", token, error)
            return JSONResponse({"code": 503, "msg": "ledger unavailable, retry"}, status_code=503,
                                headers={"Retry-After": "1"})
        if on_callback is not None:
            on_callback(token, payload)
        return JSONResponse({"code": 200, "msg": "ok"})

    return Starlette(routes=[Route("/callback/{token}", receive, methods=["POST"])], middleware=[Middleware(BodyLimit)])


def _store_in(ledger: Ledger, writer: LedgerWriter | None) -> StoreCallback:
    """Record callbacks through the run's group-committing writer (on the run's loop), else directly.

    The receiver may serve on the run's own loop (then the write is awaited as is) or on a
    thread of its own (then the write is handed over to the run's loop).
    """
    if writer is None:
        async def store_directly(token: str, task_id: str | None, code: int | None, payload: dict[str, Any]) -> None:
            await asyncio.to_thread(ledger.record_callback, token, task_id, code, payload)

        return store_directly
    run_loop = asyncio.get_running_loop()

    async def store_via_writer(token: str, task_id: str | None, code: int | None, payload: dict[str, Any]) -> None:
        write = writer.write(Ledger.record_callback, token, task_id, code, payload)
        if asyncio.get_running_loop() is run_loop:
            await write
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(write, run_loop))

    return store_via_writer


class CallbackReceiver:
    """The callback service (port 0 picks a free port).

    `with` serves on a background thread (the long-lived `stemcat callbacks` receiver);
    `async with` serves on the running loop, as a run does: a thread of its own would compete
    with the run's loop for the GIL on every callback, and hand every write over between loops.
    """

    def __init__(self, ledger: Ledger, secret: bytes, *, host: str = "127.0.0.1", port: int = 0,
                 hub: CallbackHub | None = None, writer: LedgerWriter | None = None) -> None:
        self.hub = hub or CallbackHub()
        self._ledger, self._secret, self._writer = ledger, secret, writer
        self._host, self._port = host, port
        self._service: LoopbackServer | None = None

    def _build(self) -> LoopbackServer:
        app = build_app(_store_in(self._ledger, self._writer), self._secret, self.hub.notify)
        self._service = LoopbackServer(app, host=self._host, port=self._port, name="stemcat-callbacks",
                                       stop_timeout_s=STOP_TIMEOUT_S)
        return self._service

    @property
    def base_url(self) -> str:
        if self._service is None:
            raise RuntimeError("the callback receiver is not running")
        return self._service.base_url

    def start(self) -> CallbackReceiver:
        self._build().start()
        return self

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> CallbackReceiver:
        await self._build().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._service is not None:
            # The loop keeps running meanwhile: a callback arriving now still commits its record.
            await self._service.__aexit__(*exc)
