"""The pacer: a tiny HTTP service that holds API keys' rate budgets for runs on several machines.

Run it once, where every machine can reach it (`stemcat pacer serve --host 0.0.0.0 --port 8790`,
or `python -m stemcat.client.ratelimit.pacer_service`), and point each run at it with
`rate_store="http://host:8790"`. It decides admissions with the same pure rules as every
other store (`stemcat.client.ratelimit.rules`), one request at a time on its event loop.

It keeps budgets in memory. After a restart it admits nothing for one window of each
budget, so admissions granted by the previous instance still count. It learns only hashes
(`budget_id`), never a key; still, anyone who can reach it can slow a budget down, so
bind it to a trusted network.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stemcat.client.ratelimit.base import Clock
from stemcat.client.ratelimit.rules import AdmissionBook, PacingParams, PacingState
from stemcat.client.ratelimit.stores.http import (
    API_PREFIX,
    BUDGET_ID_PATTERN,
    ClaimReply,
    LateBody,
    PauseBody,
    RecoverBody,
    ReserveBody,
    ReserveReply,
    SlotReply,
    StateReply,
    ThrottleBody,
    TicketsBody,
)

BodyT = TypeVar("BodyT", bound=BaseModel)
DEFAULT_PORT = 8790
_BUDGET = re.compile(BUDGET_ID_PATTERN)


class _BadRequest(Exception):
    pass


class Pacer:
    """Every budget the service holds, on one clock."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        # Tickets of a previous instance must not match this one's: start from the wall clock.
        self._first_ticket = time.time_ns() // 1000
        self._books: dict[str, AdmissionBook] = {}

    def book(self, budget: str, params: PacingParams | None = None) -> AdmissionBook:
        found = self._books.get(budget)
        if found is None:
            window = params.guarded_window if params is not None else 0.0
            found = AdmissionBook(not_before=self._started + window, first_ticket=self._first_ticket)
            self._books[budget] = found
        return found

    def now(self) -> float:
        return self._clock()

    def state_reply(self, state: PacingState) -> StateReply:
        return StateReply(
            factor=state.factor, paused_for_s=max(0.0, state.not_before - self.now()),
            throttles=state.throttles, pauses=state.pauses,
        )


async def _body(request: Request, model: type[BodyT]) -> BodyT:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        raise _BadRequest(error.errors()[0].get("msg", "invalid body")) from None


def _budget(request: Request) -> str:
    budget = str(request.path_params["budget"])
    if not _BUDGET.fullmatch(budget):
        raise _BadRequest("budget must be a hex id")
    return budget


def create_app(pacer: Pacer | None = None) -> Starlette:
    """The pacer's ASGI app (serve it with uvicorn, or mount it in tests)."""
    state = pacer or Pacer()

    async def reserve(request: Request) -> JSONResponse:
        body = await _body(request, ReserveBody)
        params = body.params()
        book = state.book(_budget(request), params)
        reservation = book.reserve(state.now(), params, body.count, first_margin_s=body.first_margin_s)
        slots = [SlotReply(ticket=s.ticket, wait_s=s.wait_s) for s in reservation.slots]
        return _json(ReserveReply(slots=slots, factor=reservation.factor))

    async def claim(request: Request) -> JSONResponse:
        body = await _body(request, TicketsBody)
        return _json(ClaimReply(valid=sorted(state.book(_budget(request)).claim(body.tickets))))

    async def release(request: Request) -> JSONResponse:
        body = await _body(request, TicketsBody)
        state.book(_budget(request)).release(body.tickets, state.now())
        return _json(ClaimReply(valid=[]))

    async def late(request: Request) -> JSONResponse:
        body = await _body(request, LateBody)
        state.book(_budget(request)).arrived_late(body.tickets, state.now(), body.ages_s)
        return _json(ClaimReply(valid=[]))

    async def throttle(request: Request) -> JSONResponse:
        body = await _body(request, ThrottleBody)
        params = body.params()
        book = state.book(_budget(request), params)
        return _json(state.state_reply(book.throttle(state.now(), body.retry_after, params)))

    async def pause(request: Request) -> JSONResponse:
        body = await _body(request, PauseBody)
        return _json(state.state_reply(state.book(_budget(request)).pause(state.now(), body.seconds)))

    async def recover(request: Request) -> JSONResponse:
        body = await _body(request, RecoverBody)
        params = body.params()
        return _json(state.state_reply(state.book(_budget(request), params).recover(body.successes, params)))

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def bad_request(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    actions = {"reserve": reserve, "claim": claim, "release": release, "late": late, "throttle": throttle,
               "pause": pause, "recover": recover}
    routes = [Route(f"{API_PREFIX}/{{budget}}/{name}", handler, methods=["POST"]) for name, handler in actions.items()]
    routes.append(Route("/healthz", health, methods=["GET"]))
    return Starlette(routes=routes, exception_handlers={_BadRequest: bad_request})


def _json(reply: BaseModel) -> JSONResponse:
    return JSONResponse(reply.model_dump(mode="json"))


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the pacer until interrupted."""
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="warning", access_log=False, lifespan="off")


@contextlib.contextmanager
def running_pacer(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """A pacer on a background thread for tests and benchmarks; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(create_app(), log_config=None, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="stemcat-pacer", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the pacer did not start")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stemcat.client.ratelimit.pacer_service", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (a trusted network only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    serve(args.host, args.port)
    return 0


if __name__ == "__main__":  # pragma: no cover - command line entry
    raise SystemExit(main())
