"""The middle tier: the separation steps against a scripted API (httpx.MockTransport) and a temporary ledger.

No API server, no Prefect, no sleeping on real back-off: each test runs in milliseconds. `Harness`
builds a `RunContext` whose client talks to a `ScriptedApi`; `ok_submit`, `record` and
`stem_files` script the answers the contract fixtures document. The ledger is `ledger_target`'s:
every test runs once on SQLite and once on a fresh PostgreSQL database, opened as a run opens it.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import soundfile as sf

from stemcat.catalog import Ledger, LedgerWriter
from stemcat.client import NoLimiter, SunoClient
from stemcat.services.callbacks import CallbackHub
from stemcat.tasks.context import RunContext, RunOptions, WorkItem
from stemcat.tasks.separation.actions import Action
from tests.client.conftest import API_KEY, BASE_URL, ScriptedApi, SleepLog, envelope, load_contract
from tests.servers.ledgers import LedgerTarget

SUBMIT = "/api/v1/vocal-removal/generate"
RECORD_INFO = "/api/v1/vocal-removal/record-info"
CREDIT = "/api/v1/generate/credit"
FILES = "https://files.test/v"
CALLBACK_BASE = "http://127.0.0.1:9"
SECRET = b"test-secret"
RUN_ID = "run-steps"


def wav_bytes(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A short stereo WAV: any format the verification decodes will do for a stem file."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((int(seconds * rate), 2), dtype="float32"), rate, format="WAV")
    return buffer.getvalue()


def ok_submit(task_id: str) -> httpx.Response:
    return httpx.Response(200, json=envelope({"taskId": task_id}))


def record(task_id: str, flag: str = "SUCCESS", *, created_ms: int = 1_753_782_854_000,
           latency_ms: int = 500) -> httpx.Response:
    """A record-info answer; with SUCCESS, vocal and instrumental URLs under FILES/{task_id}/."""
    body = copy.deepcopy(load_contract("record_info_separate_vocal.json"))
    data = body["data"]
    data.update(taskId=task_id, successFlag=flag, createTime=created_ms)
    if flag == "SUCCESS":
        data["completeTime"] = created_ms + latency_ms
        data["response"].update(vocalUrl=f"{FILES}/{task_id}/vocals.mp3",
                                instrumentalUrl=f"{FILES}/{task_id}/instrumental.mp3")
    else:
        data["completeTime"] = None
        data["response"] = None
    return httpx.Response(200, json=body)


def callback_payload(task_id: str) -> dict[str, Any]:
    body = copy.deepcopy(load_contract("callback_separate_vocal.json"))
    body["data"]["task_id"] = task_id
    info = body["data"]["vocal_removal_info"]
    info.update(vocal_url=f"{FILES}/{task_id}/vocals.mp3", instrumental_url=f"{FILES}/{task_id}/instrumental.mp3")
    return body


def stem_files(api: ScriptedApi, task_id: str) -> None:
    audio = wav_bytes()
    for stem in ("vocals", "instrumental"):
        api.on(f"/v/{task_id}/{stem}.mp3", httpx.Response(200, content=audio))


def item(n: int = 1, action: Action = Action.SUBMIT, **fields: Any) -> WorkItem:
    return WorkItem(audio_id=f"audio-{n}", task_id=f"task-{n}", separation_type="separate_vocal",
                    action=action.value, **fields)


class Harness:
    """A run's context over a scripted API and a fresh ledger."""

    def __init__(self, api: ScriptedApi, ctx: RunContext) -> None:
        self.api = api
        self.ctx = ctx

    @property
    def ledger(self) -> Ledger:
        return self.ctx.ledger

    def requests(self) -> dict[str, int]:
        return {path: self.api.calls(path) for path in (SUBMIT, RECORD_INFO, CREDIT)}

    def job(self, audio_id: str = "audio-1") -> Any:
        return self.ledger.latest_jobs([(audio_id, "separate_vocal")])[(audio_id, "separate_vocal")]


@asynccontextmanager
async def open_harness(api: ScriptedApi, target: LedgerTarget, *, run_id: str = RUN_ID,
                       **options: Any) -> AsyncIterator[Harness]:
    """A run context over `api` and the ledger of `target` (its data directory holds the stems);
    `options` override `RunOptions`. The ledger and its group-commit writer are opened as a run opens them."""
    settings = dict(poll_initial_s=0.01, poll_max_s=0.05, job_timeout_s=5.0) | options
    run_options = RunOptions(data_dir=target.data_dir, base_url=BASE_URL, ledger_url=target.url, **settings)
    target.data_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.open(run_options.data_dir, run_options.ledger_url)
    writes = LedgerWriter(ledger.reopen(busy_timeout_s=0.0))
    client = SunoClient(API_KEY, BASE_URL, limiter=NoLimiter(), transport=api.transport, sleep=SleepLog(),
                        max_read_attempts=2)
    hub = CallbackHub()
    async with client:
        hub.bind(asyncio.get_running_loop())
        ctx = RunContext(run_id=run_id, options=run_options, ledger=ledger, client=client, secret=SECRET,
                         callback_base=CALLBACK_BASE, hub=hub, writes=writes)
        ledger.start_run(run_id, flow_run_id="", manifest="m.csv", params={}, balance_before=None)
        try:
            yield Harness(api, ctx)
        finally:
            await writes.drain()
            writes.close()
            ledger.close()


@pytest.fixture
def api() -> ScriptedApi:
    return ScriptedApi()


@pytest.fixture
async def harness(api: ScriptedApi, ledger_target: LedgerTarget) -> AsyncIterator[Harness]:
    async with open_harness(api, ledger_target) as opened:
        yield opened


class FakeSeparations:
    """A scripted API whose separations take `latency_s`: record-info says PENDING until then.

    With `hub`, each job's callback is delivered to it (as the receiver would) when its
    separation ends. Counts the requests it answers by path, like the real client would send them.
    """

    def __init__(self, latency_s: float, hub: Any = None) -> None:
        self.latency_s = latency_s
        self.hub = hub
        self.started: dict[str, float] = {}
        self.started_wall: dict[str, float] = {}
        self.api = ScriptedApi()
        self.api.on(SUBMIT, self._submit)
        self.api.on(RECORD_INFO, self._record)

    def _submit(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        task_id = f"remote-{len(self.started) + 1}"
        self.started[task_id] = time.monotonic()
        self.started_wall[task_id] = time.time()
        if self.hub is not None:
            token = urlsplit(body["callBackUrl"]).path.rsplit("/", 1)[-1]
            asyncio.get_running_loop().call_later(self.latency_s, self.hub.notify, token, callback_payload(task_id))
        return ok_submit(task_id)

    def _record(self, request: httpx.Request) -> httpx.Response:
        task_id = request.url.params["taskId"]
        elapsed = time.monotonic() - self.started[task_id]
        if elapsed < self.latency_s:
            return record(task_id, "PENDING")
        return record(task_id, created_ms=int(self.started_wall[task_id] * 1000), latency_ms=int(self.latency_s * 1000))
