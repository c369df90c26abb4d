"""The middle tier: the separation steps against a scripted API (httpx.MockTransport) and a temporary ledger.

No server, no Prefect, no sleeping on real back-off: each test runs in milliseconds. `Harness`
builds a `RunContext` whose client talks to a `ScriptedApi`; `ok_submit`, `record` and
`stem_files` script the answers the contract fixtures document.
"""

from __future__ import annotations

import asyncio
import copy
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def api() -> ScriptedApi:
    return ScriptedApi()


@pytest.fixture
async def harness(api: ScriptedApi, tmp_path: Path) -> AsyncIterator[Harness]:
    options = RunOptions(data_dir=tmp_path / "data", base_url=BASE_URL, poll_initial_s=0.01, poll_max_s=0.05,
                         job_timeout_s=5.0)
    options.data_dir.mkdir(parents=True)
    ledger = Ledger(options.data_dir / "ledger.sqlite")
    writes = LedgerWriter.open(ledger.path)
    client = SunoClient(API_KEY, BASE_URL, limiter=NoLimiter(), transport=api.transport, sleep=SleepLog(),
                        max_read_attempts=2)
    hub = CallbackHub()
    async with client:
        hub.bind(asyncio.get_running_loop())
        ctx = RunContext(run_id=RUN_ID, options=options, ledger=ledger, client=client, secret=SECRET,
                         callback_base=CALLBACK_BASE, hub=hub, writes=writes)
        ledger.start_run(RUN_ID, flow_run_id="", manifest="m.csv", params={}, balance_before=None)
        try:
            yield Harness(api, ctx)
        finally:
            await writes.drain()
            writes.close()
            ledger.close()
