"""The yardstick: a plain asyncio + httpx script making the calls a stemcat run makes.

Same calls, same limits, same concurrency as the flow: a balance read, then for each manifest
row a paid submit, polls with per-job back-off until the task ends, every stem streamed to a
file; a balance read at the end. Like the flow, it gives the API a live callback URL (a minimal
sink that answers 200 and drops the body), so the simulator, which shares the machine, does the
same work for both sides. No Prefect, no ledger, no catalog, no decoding: what is left is the
irreducible work, so `flow time / baseline time` is what orchestration and bookkeeping cost.
It imports nothing from stemcat on purpose (only the benchmark's /proc memory reader).

`python -m benchmarks.baseline --manifest m.csv --base-url URL --dest DIR --out result.json`
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import httpx

from benchmarks.memory import peak_rss_mb

SUBMIT = "/api/v1/vocal-removal/generate"
RECORD_INFO = "/api/v1/vocal-removal/record-info"
CREDIT = "/api/v1/generate/credit"
TERMINAL_FAILURES = {"CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED"}
CHUNK = 256 * 1024


class Pacer:
    """At most `limit` calls in any `window_s` (with a 2% guard), evenly spaced, FIFO."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window = limit, window_s * 1.02
        self.spacing = self.window / limit
        self.sent: deque[float] = deque(maxlen=limit)
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            at = now
            if self.sent:
                at = max(at, self.sent[-1] + self.spacing)
            if len(self.sent) == self.limit:
                at = max(at, self.sent[0] + self.window)
            if at > now:
                await asyncio.sleep(at - now)
            self.sent.append(max(at, time.monotonic()))


async def _answer_callbacks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive: read each request (headers, then Content-Length bytes), answer 200."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class Script:
    def __init__(self, args: argparse.Namespace, http: httpx.AsyncClient, files: httpx.AsyncClient,
                 callback_url: str) -> None:
        self.args = args
        self.http = http
        self.files = files
        self.callback_url = callback_url
        self.pacer = Pacer(args.rate_limit, args.rate_window)
        self.downloads = asyncio.Semaphore(args.download_concurrency)
        self.counts: Counter[str] = Counter()

    async def api(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for _attempt in range(5):
            await self.pacer.wait()
            response = await self.http.request(method, path, **kwargs)
            body = response.json()
            code = body.get("code", response.status_code) if response.status_code == 200 else response.status_code
            if code in (405, 430, 455, 500):
                self.counts[f"retry_{code}"] += 1
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if code != 200:
                raise RuntimeError(f"{method} {path} answered {code}")
            return body["data"]
        raise RuntimeError(f"{method} {path} kept failing")

    async def download(self, url: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        async with self.downloads, self.files.stream("GET", url) as response:
            response.raise_for_status()
            with dest.open("wb") as handle:
                async for chunk in response.aiter_bytes(CHUNK):
                    handle.write(chunk)
                    self.counts["bytes"] += len(chunk)
        self.counts["stems"] += 1

    async def job(self, row: dict[str, str]) -> None:
        body = {"taskId": row["task_id"], "audioId": row["audio_id"], "type": row.get("type") or "separate_vocal",
                "callBackUrl": self.callback_url}
        task_id = (await self.api("POST", SUBMIT, json=body))["taskId"]
        delay = self.args.poll_initial
        while True:
            await asyncio.sleep(delay)
            record = await self.api("GET", RECORD_INFO, params={"taskId": task_id})
            flag = record.get("successFlag")
            if flag in TERMINAL_FAILURES:
                self.counts["failed"] += 1
                return
            if flag in ("SUCCESS", "CALLBACK_EXCEPTION") and record.get("response"):
                break
            delay = min(delay * self.args.poll_factor, self.args.poll_max)
        urls = {k.removesuffix("Url"): v for k, v in record["response"].items()
                if v and k.endswith("Url") and k != "originUrl"}
        folder = Path(self.args.dest) / body["audioId"] / body["type"]
        await asyncio.gather(*(self.download(url, folder / f"{name}.mp3") for name, url in urls.items()))
        self.counts["done"] += 1

    async def run(self) -> None:
        await self.api("GET", CREDIT)
        in_flight = asyncio.Semaphore(self.args.in_flight)
        running: set[asyncio.Task[None]] = set()
        with open(self.args.manifest, newline="") as handle:
            for row in csv.DictReader(handle):  # streamed, never the whole file in memory
                await in_flight.acquire()
                task = asyncio.create_task(self.job(row))
                running.add(task)
                task.add_done_callback(lambda t: (running.discard(t), in_flight.release()))
        await asyncio.gather(*running)
        await self.api("GET", CREDIT)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {os.environ['SUNO_API_KEY']}"}
    # The same connection limits as stemcat's client: a small pool for the (rate-limited) API
    # calls, and one pool for stem files sized to the downloads in flight.
    api_limits = httpx.Limits(max_connections=args.api_connections, max_keepalive_connections=args.api_connections)
    file_limits = httpx.Limits(max_connections=args.download_concurrency,
                               max_keepalive_connections=args.download_concurrency)
    started = time.perf_counter()
    sink = await asyncio.start_server(_answer_callbacks, "127.0.0.1", 0)
    callback_url = f"http://127.0.0.1:{sink.sockets[0].getsockname()[1]}/callback"
    async with (
        sink,
        httpx.AsyncClient(base_url=args.base_url, headers=headers, limits=api_limits, timeout=30) as http,
        httpx.AsyncClient(limits=file_limits, timeout=30) as files,
    ):
        script = Script(args, http, files, callback_url)
        await script.run()
    return {"wall_s": time.perf_counter() - started, "counts": dict(script.counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rate-limit", type=int, default=20)
    parser.add_argument("--rate-window", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=200, help="jobs in flight (the flow: batches x batch size)")
    parser.add_argument("--download-concurrency", type=int, default=8)
    parser.add_argument("--api-connections", type=int, default=4, help="API connection pool (stemcat's default)")
    parser.add_argument("--poll-initial", type=float, default=10.0)
    parser.add_argument("--poll-factor", type=float, default=1.5)
    parser.add_argument("--poll-max", type=float, default=60.0)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    result["peak_rss_mb"] = peak_rss_mb()
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
