"""HTTP handlers of the simulated Suno API (`/api/v1/...`) and of the file URLs."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from stemcat.sim import payloads
from stemcat.sim.config import FaultRoute, FaultSpec
from stemcat.sim.files import TruncatedResponse, file_response
from stemcat.sim.ratelimit import retry_after_header
from stemcat.sim.runtime import FileRefusal, SimRuntime
from stemcat.sim.state import SubmitRequest
from stemcat.sim.stems import SEPARATION_TYPES, SeparationType

GENERATE_PATH: Final[str] = "/api/v1/vocal-removal/generate"
RECORD_INFO_PATH: Final[str] = "/api/v1/vocal-removal/record-info"
CREDIT_PATH: Final[str] = "/api/v1/generate/credit"
GENERATION_PATH: Final[str] = "/api/v1/generate/record-info"
SOURCE_DOWNLOAD_FAILED: Final[int] = 451


def api_key_hash(key: str) -> str:
    """Short stable digest that names a key in the ledger without revealing it."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def error_response(
    code: int, *, as_json: bool = False, detail: str | None = None, retry_after: str | None = None
) -> JSONResponse:
    """A documented error, as the HTTP status or (as_json) as the JSON code of an HTTP 200."""
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return JSONResponse(payloads.error_body(code, detail), status_code=200 if as_json else code, headers=headers)


def _fault_response(fault: FaultSpec) -> JSONResponse | None:
    if fault.code is None:
        return None
    retry_after = f"{fault.retry_after:g}" if fault.retry_after is not None else None
    return error_response(fault.code, as_json=fault.as_json, retry_after=retry_after)


def _bearer_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class ApiHandlers:
    """The API routes of one runtime."""

    def __init__(self, runtime: SimRuntime) -> None:
        self._rt = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route(GENERATE_PATH, self.generate, methods=["POST"]),
            Route(RECORD_INFO_PATH, self.record_info, methods=["GET"]),
            Route(CREDIT_PATH, self.credit, methods=["GET"]),
            Route(GENERATION_PATH, self.generation_record_info, methods=["GET"]),
            Route("/files/{token}/{filename}", self.file, methods=["GET", "HEAD"]),
        ]

    def _gate(self, request: Request, route: FaultRoute, subject: str) -> tuple[Response | None, str, FaultSpec | None]:
        """Auth, then the rate limit, then fault lookup: what every /api/v1 request passes."""
        cfg = self._rt.config
        key = _bearer_key(request)
        if key is None or (cfg.api_keys is not None and key not in cfg.api_keys):
            return error_response(401), "", None
        key_hash = api_key_hash(key)
        decision = self._rt.limiter.check(key_hash)
        if not decision.admitted:
            refusal = error_response(
                430, as_json=cfg.rate_limit_as_json, retry_after=retry_after_header(decision.retry_after_s)
            )
            return refusal, key_hash, None
        return None, key_hash, self._rt.faults.take(route, subject)

    async def _refusal_for_read(self, request: Request, route: FaultRoute) -> Response | None:
        """Gate a read-only route, applying its fault (delay, then the code if any)."""
        refusal, _ = await self._gate_read(request, route)
        return refusal

    async def _gate_read(self, request: Request, route: FaultRoute) -> tuple[Response | None, FaultSpec | None]:
        refusal, _, fault = self._gate(request, route, f"{request.url.path}?{request.url.query}")
        if refusal is None and fault is not None:
            await asyncio.sleep(fault.delay_s)
            refusal = _fault_response(fault)
        return refusal, fault

    async def generate(self, request: Request) -> Response:
        body = await _json_object(request)
        subject = " ".join([request.url.path, *(str(body.get(k, "")) for k in ("taskId", "audioId", "type"))])
        refusal, key_hash, fault = self._gate(request, "generate", subject)
        if refusal is not None:
            return refusal
        forced_failure = fault.code if fault is not None and fault.code == SOURCE_DOWNLOAD_FAILED else None
        answers_before_accept = fault is not None and not fault.after_accept and forced_failure is None
        if fault is not None and answers_before_accept:
            await asyncio.sleep(fault.delay_s)
            early = _fault_response(fault)
            if early is not None:
                return early
        submit = _submit_request(body, key_hash)
        if isinstance(submit, str):
            return error_response(400, detail=f"Invalid parameters: {submit}")
        outcome = self._rt.state.submit(submit, forced_failure_code=forced_failure)
        if outcome.task is None:
            return error_response(outcome.error_code or 500, detail=outcome.error_msg)
        if fault is not None and not answers_before_accept:
            await asyncio.sleep(fault.delay_s)
            if forced_failure is None:
                late = _fault_response(fault)
                if late is not None:
                    return late
        return JSONResponse(payloads.generate_response(outcome.task.task_id))

    async def record_info(self, request: Request) -> Response:
        task_id = request.query_params.get("taskId", "")
        refusal, fault = await self._gate_read(request, "record_info")
        if refusal is not None:
            return refusal
        if not task_id:
            return error_response(400, detail="Invalid parameters: taskId is required")
        body = self._rt.record_info(task_id)
        if body is None:
            return error_response(400, detail="Invalid parameters: taskId not found")
        if fault is not None and fault.stems_listed is not None:
            body = payloads.with_stems_listed(body, fault.stems_listed)
        return JSONResponse(body)

    async def credit(self, request: Request) -> Response:
        refusal = await self._refusal_for_read(request, "credit")
        if refusal is not None:
            return refusal
        return JSONResponse(payloads.credit_response(self._rt.state.balance()))

    async def generation_record_info(self, request: Request) -> Response:
        task_id = request.query_params.get("taskId", "")
        refusal = await self._refusal_for_read(request, "generation")
        if refusal is not None:
            return refusal
        if not task_id:
            return error_response(400, detail="Invalid parameters: taskId is required")
        body = self._rt.generation_record_info(task_id)
        if body is None:
            return error_response(400, detail="Invalid parameters: taskId not found")
        return JSONResponse(body)

    async def file(self, request: Request) -> Response:
        """Stem and mix downloads: no API key (the signed URL is the credential), no rate limit."""
        fault = self._rt.faults.take("file", request.url.path)
        if fault is not None:
            await asyncio.sleep(fault.delay_s)
            failed = _fault_response(fault)
            if failed is not None:
                return failed
        filename = request.path_params["filename"]
        if not filename.endswith(".mp3"):
            return error_response(404, detail="no such file")
        target = self._rt.resolve_file(request.path_params["token"], filename.removesuffix(".mp3"))
        if isinstance(target, FileRefusal):
            return error_response(target.status, detail=target.reason)
        path = await self._rt.file_path(target)
        data = await asyncio.to_thread(path.read_bytes)
        response = file_response(data, request.headers.get("range"), head=request.method == "HEAD")
        truncate_at = fault.truncate_at if fault is not None and request.method != "HEAD" else None
        if truncate_at is not None and truncate_at < len(response.body):
            return TruncatedResponse(response, truncate_at)
        return response


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        parsed = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _submit_request(body: dict[str, Any], key_hash: str) -> SubmitRequest | str:
    """The submit, or what is wrong with the body."""
    for field in ("taskId", "audioId", "type", "callBackUrl"):
        value = body.get(field)
        if not isinstance(value, str) or not value.strip():
            return f"{field} is required"
    separation_type: str = body["type"]
    if separation_type not in SEPARATION_TYPES:
        return f"type must be one of {', '.join(SEPARATION_TYPES)}"
    callback_url: str = body["callBackUrl"]
    if not callback_url.startswith(("http://", "https://")):
        return "callBackUrl must be an http(s) URL"
    typed: SeparationType = "split_stem" if separation_type == "split_stem" else "separate_vocal"
    return SubmitRequest(
        music_task_id=body["taskId"],
        audio_id=body["audioId"],
        type=typed,
        callback_url=callback_url,
        api_key_hash=key_hash,
    )
