"""`/admin/...` routes: drive and inspect a running simulator from another process (JSON, no auth)."""

from __future__ import annotations

import json
from itertools import cycle
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from stemcat.sim.config import FaultSpec
from stemcat.sim.runtime import SimRuntime
from stemcat.sim.stems import SeparationType

ModelT = TypeVar("ModelT", bound=BaseModel)


class AdvanceClockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0)


class BalanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credits: int


class CreateTracksBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=0, le=100_000)
    types: list[SeparationType] | None = Field(default=None, min_length=1)


def _bad_request(detail: str) -> JSONResponse:
    return JSONResponse({"code": 400, "msg": detail, "data": None}, status_code=400)


async def _parse(request: Request, model: type[ModelT]) -> ModelT | JSONResponse:
    try:
        return model.model_validate(json.loads(await request.body() or b"{}"))
    except (json.JSONDecodeError, ValidationError) as exc:
        return _bad_request(str(exc))


class AdminHandlers:
    """Admin routes of one runtime."""

    def __init__(self, runtime: SimRuntime) -> None:
        self._rt = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/health", self.health, methods=["GET"]),
            Route("/admin/config", self.config, methods=["GET"]),
            Route("/admin/ledger", self.ledger, methods=["GET"]),
            Route("/admin/truth", self.truth, methods=["GET"]),
            Route("/admin/clock/advance", self.advance_clock, methods=["POST"]),
            Route("/admin/clock", self.clock, methods=["GET"]),
            Route("/admin/balance", self.balance, methods=["GET", "POST"]),
            Route("/admin/tracks", self.create_tracks, methods=["POST"]),
            Route("/admin/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route("/admin/tasks", self.tasks, methods=["GET"]),
            Route("/admin/stats", self.stats, methods=["GET"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "base_url": self._rt.base_url})

    async def config(self, request: Request) -> Response:
        return JSONResponse(self._rt.config.model_dump(mode="json"))

    async def ledger(self, request: Request) -> Response:
        return JSONResponse([charge.model_dump(mode="json") for charge in self._rt.ledger()])

    async def truth(self, request: Request) -> Response:
        truth = self._rt.truth(request.query_params.get("audioId", ""))
        if truth is None:
            return JSONResponse({"code": 404, "msg": "unknown audioId", "data": None}, status_code=404)
        return JSONResponse(truth.model_dump(mode="json"))

    async def clock(self, request: Request) -> Response:
        return JSONResponse({"now_s": self._rt.clock.now(), "epoch_ms": self._rt.clock.epoch_ms()})

    async def advance_clock(self, request: Request) -> Response:
        body = await _parse(request, AdvanceClockBody)
        if isinstance(body, JSONResponse):
            return body
        now = self._rt.advance_clock(body.seconds)
        return JSONResponse({"now_s": now, "epoch_ms": self._rt.clock.epoch_ms(now)})

    async def balance(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _parse(request, BalanceBody)
            if isinstance(body, JSONResponse):
                return body
            self._rt.state.set_balance(body.credits)
        return JSONResponse({"credits": self._rt.state.balance()})

    async def create_tracks(self, request: Request) -> Response:
        body = await _parse(request, CreateTracksBody)
        if isinstance(body, JSONResponse):
            return body
        tracks = self._rt.create_tracks(body.n)
        rows: list[dict[str, Any]] = [track.model_dump(mode="json") for track in tracks]
        if body.types:
            for row, separation_type in zip(rows, cycle(body.types)):
                row["type"] = separation_type
        return JSONResponse(rows)

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self._rt.faults.clear()
            return JSONResponse({"cleared": True})
        if request.method == "GET":
            return JSONResponse(self._rt.faults.active())
        spec = await _parse(request, FaultSpec)
        if isinstance(spec, JSONResponse):
            return spec
        return JSONResponse({"id": self._rt.inject(spec)})

    async def tasks(self, request: Request) -> Response:
        return JSONResponse([view.model_dump(mode="json") for view in self._rt.task_views()])

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self._rt.stats_snapshot().model_dump(mode="json"))
