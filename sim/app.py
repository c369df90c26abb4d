"""The Starlette application: routes, JSON 404s, request statistics and the completion loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stemcat.sim import payloads
from stemcat.sim.admin_api import AdminHandlers
from stemcat.sim.api import CREDIT_PATH, GENERATE_PATH, GENERATION_PATH, RECORD_INFO_PATH, ApiHandlers
from stemcat.sim.runtime import SimRuntime

_ROUTE_NAMES: Final[dict[str, str]] = {
    GENERATE_PATH: "generate",
    RECORD_INFO_PATH: "record_info",
    CREDIT_PATH: "credit",
    GENERATION_PATH: "generation",
}


def route_name(path: str) -> str:
    """Name under which a request is counted in the stats."""
    if path in _ROUTE_NAMES:
        return _ROUTE_NAMES[path]
    if path.startswith("/files/"):
        return "file"
    if path.startswith("/admin/"):
        return "admin"
    return "unknown"


class _CountRequests:
    """ASGI middleware: tally each answered request by route and status."""

    def __init__(self, app: ASGIApp, runtime: SimRuntime) -> None:
        self._app = app
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        name = route_name(scope["path"])

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._runtime.stats.record(name, int(message["status"]))
            await send(message)

        await self._app(scope, receive, counting_send)


async def _not_found(request: Request, exc: Exception) -> Response:
    # The API documents 404 for both an unknown path and a wrong method.
    return JSONResponse(payloads.error_body(404), status_code=404)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(payloads.error_body(500), status_code=500)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status in (404, 405):
        return await _not_found(request, exc)
    return JSONResponse(payloads.error_body(status), status_code=status)


def build_app(runtime: SimRuntime) -> Starlette:
    """An ASGI app serving the simulated API, the files and the admin routes of `runtime`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # trust_env=False: no proxy from the environment may carry a callback off this machine.
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
            loop_task = asyncio.create_task(runtime.run_completion_loop(client))
            try:
                yield
            finally:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
                await runtime.cancel_callbacks()

    app = Starlette(
        routes=[*ApiHandlers(runtime).routes(), *AdminHandlers(runtime).routes()],
        exception_handlers={HTTPException: _http_error, 500: _server_error},
        lifespan=lifespan,
    )
    app.add_middleware(_CountRequests, runtime=runtime)
    return app
