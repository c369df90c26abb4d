"""Fetch every stem of a separated job: streamed, verified, atomic.

A stem lands at `DATA_DIR/stems/{audio_id}/{type}/{stem}.mp3` only after it was
streamed to a `.part` file under a byte cap, fsynced, decoded end to end and
hashed; the rename is the commit. A stem already on disk is kept when its sha256
still matches the ledger, and fetched again for free when it is lost or corrupt.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from catalog import StemRow
from suno_client import DownloadExpired, SunoError
from tasks.audio import UndecodableAudio, probe, sha256_file
from tasks.context import RunContext
from tasks.paths import UnsafePathPart, stem_relpath
from tasks.progress import reporter
from tasks.separation import store_record

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 3
LOCK_POLL_S = 0.05


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stem_is_intact(data_dir: Path, stem: StemRow) -> bool:
    """A downloaded stem whose file is still there with the recorded sha256."""
    if stem.status != "downloaded" or not stem.path or not stem.sha256:
        return False
    path = data_dir / stem.path
    return path.is_file() and path.stat().st_size == stem.bytes and sha256_file(path) == stem.sha256


async def _refresh_url(ctx: RunContext, job_id: str, stem_name: str) -> str | None:
    """Ask record-info (free) for fresh URLs; returns the stem's new URL if it changed."""
    job = await asyncio.to_thread(ctx.ledger.get_job, job_id)
    if job is None or job.remote_task_id is None:
        return None
    try:
        record = await ctx.client.record_info(job.remote_task_id)
    except SunoError as error:
        log.warning("refreshing URLs of job %s failed: %s", job_id, error)
        return None
    await store_record(ctx, job_id, record)
    return next((url for stem, url in record.stem_urls.items() if str(stem) == stem_name), None)


async def download_stem(ctx: RunContext, stem: StemRow) -> str:
    """Download one stem; returns its final stem status."""
    data_dir = ctx.options.data_dir
    try:
        relpath = stem_relpath(stem.audio_id, stem.separation_type, stem.stem)
    except UnsafePathPart as error:
        await asyncio.to_thread(ctx.ledger.mark_stem, stem.job_id, stem.stem, "failed", str(error))
        return "failed"
    if await asyncio.to_thread(stem_is_intact, data_dir, stem):
        return "downloaded"
    final = data_dir / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    # Another run may be fetching the same stem: one writer per file, then the other sees it intact.
    lock = data_dir / "locks" / "stems" / f"{stem.audio_id}.{stem.separation_type}.{stem.stem}.lock"
    async with _file_lock(lock):
        current = next((s for s in await asyncio.to_thread(ctx.ledger.stems_for_job, stem.job_id)
                        if s.stem == stem.stem), stem)
        if await asyncio.to_thread(stem_is_intact, data_dir, current):
            return "downloaded"
        return await _fetch_stem(ctx, current, relpath, final)


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive flock, waited for without holding a worker thread.

    Blocking flock calls in `to_thread` could fill both processes' executors with
    waiters while the lock holders need a thread to finish: a cross-process deadlock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(LOCK_POLL_S)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


async def _fetch_stem(ctx: RunContext, stem: StemRow, relpath: Path, final: Path) -> str:
    part = final.with_name(final.name + ".part")
    url = stem.url
    refreshed = False
    expired = False
    last_error = "no URL"
    for _attempt in range(DOWNLOAD_ATTEMPTS):
        if not url:
            break
        try:
            async with ctx.download_slots:
                result = await ctx.client.download(url, part, max_bytes=ctx.options.max_download_bytes)
        except DownloadExpired as error:
            last_error, expired = str(error), True
            if refreshed:
                break
            refreshed = True
            new_url = await _refresh_url(ctx, stem.job_id, stem.stem)
            if new_url is None or new_url == url:
                break
            url, expired = new_url, False
            part.unlink(missing_ok=True)
            continue
        except SunoError as error:
            last_error = str(error)
            continue
        try:
            facts = await asyncio.to_thread(probe, part)
        except UndecodableAudio as error:
            last_error = str(error)
            part.unlink(missing_ok=True)
            continue
        os.replace(part, final)
        await asyncio.to_thread(_fsync_dir, final.parent)
        await asyncio.to_thread(
            ctx.ledger.record_stem_download, stem.job_id, stem.stem, path=str(relpath), bytes=result.bytes,
            sha256=result.sha256, duration_s=facts.duration_s, sample_rate=facts.sample_rate, channels=facts.channels,
        )
        ctx.counts["stems_downloaded"] += 1
        ctx.counts["bytes_downloaded"] += result.bytes
        return "downloaded"
    if not url and stem.url_expires_at is not None and stem.url_expires_at < time.time():
        expired = True
    status = "expired" if expired else "failed"
    await asyncio.to_thread(ctx.ledger.mark_stem, stem.job_id, stem.stem, status, last_error)
    return status


async def download_job(ctx: RunContext, job_id: str) -> str:
    """Download all stems of one job and settle the job's status."""
    stems = await asyncio.to_thread(ctx.ledger.stems_for_job, job_id)
    if not stems:
        return "failed"
    statuses = await asyncio.gather(*(download_stem(ctx, stem) for stem in stems))
    if all(s == "downloaded" for s in statuses):
        await asyncio.to_thread(ctx.ledger.mark_status, job_id, "downloaded")
        ctx.counts["downloaded"] += 1
        reporter().advance("downloaded")
        return "downloaded"
    if "expired" in statuses:
        await asyncio.to_thread(ctx.ledger.mark_status, job_id, "expired", "stem URLs expired before download")
        ctx.counts["expired"] += 1
        # Re-separating is the only way back, and it is paid: say what it would cost.
        job = await asyncio.to_thread(ctx.ledger.get_job, job_id)
        ctx.counts["expired_credits"] += job.credits if job else 0
        return "expired"
    ctx.counts["download_failed"] += 1
    return "failed"


@task(name="download-batch", cache_policy=NONE, retries=0)
async def download_batch(ctx: RunContext, job_ids: list[str]) -> dict[str, str]:
    """Download (or verify) every stem of a batch's separated jobs."""
    statuses = await asyncio.gather(*(download_job(ctx, job_id) for job_id in job_ids))
    return dict(zip(job_ids, statuses, strict=True))
