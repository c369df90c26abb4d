"""Download a list of stem URLs a few times over and report MB/s and peak RSS, as JSON.

`--impl client`: `SunoClient.download`, as a run uses it (pooled keep-alive connections, chunked
streaming to a `.part` file under a byte cap, Range resume, sha256 and fsync of every file).
`--impl raw`: bare `httpx` streaming into a file and nothing else, the yardstick.
Both with the same number of concurrent downloads; every round writes fresh files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.memory import peak_rss_mb

CHUNK = 256 * 1024
MAX_BYTES = 200 * 1024 * 1024


async def client_round(urls: list[str], dest: Path, concurrency: int) -> int:
    from stemcat.client import NoLimiter, SunoClient

    slots = asyncio.Semaphore(concurrency)
    async with SunoClient(api_key="bench", base_url="http://127.0.0.1:9", limiter=NoLimiter()) as client:

        async def one(index: int, url: str) -> int:
            async with slots:
                result = await client.download(url, dest / f"{index}.mp3.part", max_bytes=MAX_BYTES)
            return result.bytes

        return sum(await asyncio.gather(*(one(i, url) for i, url in enumerate(urls))))


async def raw_round(urls: list[str], dest: Path, concurrency: int) -> int:
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def one(index: int, url: str) -> int:
            size = 0
            async with slots, http.stream("GET", url) as response:
                response.raise_for_status()
                with (dest / f"{index}.mp3").open("wb") as handle:
                    async for chunk in response.aiter_bytes(CHUNK):
                        handle.write(chunk)
                        size += len(chunk)
            return size

        return sum(await asyncio.gather(*(one(i, url) for i, url in enumerate(urls))))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    urls = json.loads(Path(args.urls).read_text())
    download = client_round if args.impl == "client" else raw_round
    total_bytes = 0
    seconds = 0.0
    for round_index in range(args.rounds):
        dest = Path(args.dest) / f"round-{round_index}"
        dest.mkdir(parents=True)
        started = time.perf_counter()
        total_bytes += await download(urls, dest, args.concurrency)
        seconds += time.perf_counter() - started
        shutil.rmtree(dest)  # the next round writes fresh files, from the page cache's point of view too
    return {"bytes": total_bytes, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("client", "raw"), required=True)
    parser.add_argument("--urls", required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    result["peak_rss_mb"] = peak_rss_mb()
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
