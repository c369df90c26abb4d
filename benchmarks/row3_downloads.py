"""Row 3: stem download throughput of the client against raw httpx streaming of the same files.

The files are real simulator stems (CD-quality stereo MP3s), separated once through the
simulator, then downloaded in separate processes by each side (see
`benchmarks.download_runner`). A broken transfer is also checked once (not timed): the
simulator cuts a download half-way and the client must resume it with a Range request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.environment import BENCH_API_KEY, BenchEnv
from benchmarks.simulation import big_songs, warm_render_cache
from benchmarks.table import Row, ratio
from stemcat.client import GenerateRequest, NoLimiter, SeparationType, SunoClient
from stemcat.sim import FaultSpec, SimServer

CONCURRENCY = 8


async def _separate(base_url: str, songs: list[tuple[str, str]]) -> list[str]:
    """Submit and await every song's separation; return the stem URLs."""
    async with SunoClient(api_key=BENCH_API_KEY, base_url=base_url, limiter=NoLimiter()) as client:
        task_ids = [await client.submit(GenerateRequest(task_id=t, audio_id=a, type=SeparationType.SEPARATE_VOCAL,
                                                        callback_url="http://127.0.0.1:9/callback"))
                    for t, a in songs]
        urls: list[str] = []
        for task_id in task_ids:
            while True:
                record = await client.record_info(task_id)
                if record.stem_urls:
                    urls.extend(record.stem_urls.values())
                    break
                await asyncio.sleep(0.05)
    return urls


async def _check_resume(base_url: str, url: str, size: int, dest: Path) -> bool:
    """True when a transfer cut half-way is completed by a Range request into the same file."""
    async with SunoClient(api_key=BENCH_API_KEY, base_url=base_url, limiter=NoLimiter(),
                          backoff_initial_s=0.0, backoff_max_s=0.0) as client:
        result = await client.download(url, dest, max_bytes=size * 2)
    return result.resumed and result.bytes == size


def measure(env: BenchEnv, *, songs: int, seconds: float, rounds: int) -> list[Row]:
    config = big_songs(env.cache_dir, seconds=seconds)
    warm_render_cache(config, songs)
    where = env.scratch("downloads")
    with SimServer(config, port=0) as sim:
        tracks = sim.create_tracks(songs)
        urls = asyncio.run(_separate(sim.base_url, [(t.music_task_id, t.audio_id) for t in tracks]))
        (where / "urls.json").write_text(json.dumps(urls))
        results = {}
        for impl in ("raw", "client"):
            results[impl] = env.run_module("benchmarks.download_runner", [
                "--impl", impl, "--urls", str(where / "urls.json"), "--dest", str(where / impl),
                "--rounds", str(rounds), "--concurrency", str(CONCURRENCY),
            ], out=where / f"{impl}.json", timeout_s=600)
        first = sim.cache_dir / tracks[0].audio_id / "vocals.mp3"
        size = first.stat().st_size
        vocals_url = next(u for u in urls if "Vocals" in u)
        sim.inject(FaultSpec(route="file", truncate_at=size // 2, match=urlsplit(vocals_url).path))
        resumed = asyncio.run(_check_resume(sim.base_url, vocals_url, size, where / "resume.part"))
        resumed = resumed and hashlib.sha256((where / "resume.part").read_bytes()).hexdigest() == \
            hashlib.sha256(first.read_bytes()).hexdigest()
    mb = {impl: r["bytes"] / 1e6 for impl, r in results.items()}
    speed = {impl: mb[impl] / results[impl]["seconds"] for impl in results}
    file_mb = sum(mb.values()) / 2 / rounds / len(urls)
    return [Row(
        "3", "stem download throughput · peak RSS",
        f"{speed['client']:.3g} MB/s · {results['client']['peak_rss_mb']:.0f} MB",
        f"{speed['raw']:.3g} MB/s · {results['raw']['peak_rss_mb']:.0f} MB (raw httpx stream)",
        f"{ratio(speed['client'], speed['raw'])} speed",
        f"{len(urls)} files of {file_mb:.2g} MB avg × {rounds} rounds, {CONCURRENCY} concurrent, loopback; "
        f"client hashes and fsyncs every file; Range resume after a cut at 50%: {'ok' if resumed else 'FAILED'}",
    )]
