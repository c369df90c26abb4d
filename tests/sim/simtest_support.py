"""Helpers shared by the simulator tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import soundfile as sf

from stemcat.sim import SimServer, SimTrack

SimFactory = Callable[..., SimServer]
CONTRACT_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "contract"
API_KEY = "test-key-1"
GENERATE = "/api/v1/vocal-removal/generate"
RECORD_INFO = "/api/v1/vocal-removal/record-info"
CREDIT = "/api/v1/generate/credit"
GENERATION = "/api/v1/generate/record-info"


def contract(name: str) -> Any:
    return json.loads((CONTRACT_DIR / name).read_text())


def shape(value: Any) -> Any:
    """Keys of a JSON value, recursively (lists by the shape of their first element); leaves become None."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def assert_same_keys(actual: Any, expected: Any, where: str = "$") -> None:
    """Same keys at every level where both sides are objects; lists compared element-wise by shape."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        assert set(actual) == set(expected), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_same_keys(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list):
        assert actual, f"{where}: expected a non-empty list"
        for index, item in enumerate(actual):
            assert_same_keys(item, expected[0], f"{where}[{index}]")
    elif isinstance(expected, dict) or isinstance(actual, dict):
        raise AssertionError(f"{where}: {type(actual).__name__} where contract has {type(expected).__name__}")


def api_client(sim: SimServer, key: str = API_KEY) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=20, trust_env=False)


def submit_body(track: SimTrack, separation_type: str, callback_url: str = "http://127.0.0.1:9/cb") -> dict[str, str]:
    return {"taskId": track.music_task_id, "audioId": track.audio_id, "type": separation_type, "callBackUrl": callback_url}


def submit(client: httpx.Client, track: SimTrack, separation_type: str, callback_url: str = "http://127.0.0.1:9/cb") -> str:
    response = client.post(GENERATE, json=submit_body(track, separation_type, callback_url))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 200, body
    return str(body["data"]["taskId"])


def record_info(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(RECORD_INFO, params={"taskId": task_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step_s)


def wait_finished(client: httpx.Client, task_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """record-info once the task left PENDING."""
    result: dict[str, Any] = {}

    def done() -> bool:
        result.update(record_info(client, task_id))
        return bool(result["data"]["successFlag"] != "PENDING")

    wait_until(done, timeout_s)
    return result


def wait_callback_settled(sim: SimServer, task_id: str, timeout_s: float = 10.0) -> None:
    def settled() -> bool:
        task = next(t for t in sim.tasks() if t.task_id == task_id)
        return task.callback_status in ("delivered", "failed")

    wait_until(settled, timeout_s)


def decode(data: bytes) -> tuple[npt.NDArray[np.float64], int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float64")
    return samples, rate


def snr_db(reference: npt.NDArray[np.float64], estimate: npt.NDArray[np.float64]) -> float:
    noise = float(np.sum((reference - estimate) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


@dataclass
class CallbackReceiver:
    """A tiny HTTP server on loopback that records POSTed JSON bodies."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    status: int = 200


@contextmanager
def callback_receiver(status: int = 200) -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver(url="", status=status)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            with lock:
                receiver.hits += 1
                if receiver.status < 300:
                    receiver.bodies.append(body)
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook?secret=s3"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
