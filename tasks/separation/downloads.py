"""Fetch every stem of a separated job: streamed, verified, atomic.

A stem lands at `DATA_DIR/stems/{audio_id}/{type}/{stem}.mp3` only after it was
streamed (and hashed) to a `.part` file under a byte cap, decoded end to end and
fsynced; the rename is the commit. A stem already on disk is kept when its sha256
still matches the ledger, and fetched again for free when it is lost or corrupt.

With a storage (`--storage`, e.g. `s3://bucket/prefix`) the verified file is then uploaded
to the same key there, and only then is the stem recorded as downloaded; the storage copy is
the one that counts (`stem_is_intact`), so another host with its own data directory finds the
stem stored and fetches nothing. The local file stays as this worker's cache for the analysis.
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

from stemcat.catalog import JobStatus, Ledger, StemRow, StemStatus
from stemcat.catalog.atomic_files import move_into_place, sha256_file
from stemcat.catalog.storage import Storage, StorageError
from stemcat.client import DownloadExpired, SunoError
from stemcat.tasks.analysis.checks import StemCheck
from stemcat.tasks.analysis.decode import UndecodableAudio
from stemcat.tasks.analysis.pool import WorkerDied
from stemcat.tasks.context import RunContext
from stemcat.tasks.paths import UnsafePathPart, stem_relpath
from stemcat.tasks.separation.polling import store_record
from stemcat.tasks.separation.progress import reporter

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 3
LOCK_POLL_S = 0.05


def stem_is_intact(data_dir: Path, stem: StemRow, storage: Storage | None = None) -> bool:
    """A downloaded stem whose file is still there with the recorded sha256 (in `storage` when there is one)."""
    if stem.status != StemStatus.DOWNLOADED or not stem.path or not stem.sha256:
        return False
    if storage is not None:
        try:
            return storage.is_intact(stem.path, size=stem.bytes or 0, sha256=stem.sha256)
        except StorageError as error:  # unreachable storage: fetch again rather than trust it
            log.warning("checking stem %s in %s failed: %s", stem.path, storage.url, error)
            return False
    path = data_dir / stem.path
    return path.is_file() and path.stat().st_size == stem.bytes and sha256_file(path) == stem.sha256


async def _refresh_url(ctx: RunContext, job_id: str, stem_name: str) -> str | None:
    """Ask record-info (free) for fresh URLs; returns the stem's new URL if it changed."""
    job = await ctx.writes.read(Ledger.get_job, job_id)
    if job is None or job.remote_task_id is None:
        return None
    try:
        record = await ctx.client.record_info(job.remote_task_id)
    except SunoError as error:
        log.warning("refreshing URLs of job %s failed: %s", job_id, error)
        return None
    await store_record(ctx, job_id, record)
    return next((url for stem, url in record.stem_urls.items() if str(stem) == stem_name), None)


async def _current_rows(ctx: RunContext, job_id: str) -> dict[str, tuple[StemRow, bool]]:
    """The job's stems as the ledger has them now (another run may have fetched some), and which are intact."""
    rows = await ctx.writes.read(Ledger.stems_for_job, job_id)
    if not any(row.status == StemStatus.DOWNLOADED for row in rows):  # nothing on disk to check
        return {row.stem: (row, False) for row in rows}
    data_dir, storage = ctx.options.data_dir, ctx.storage
    intact = await asyncio.to_thread(lambda: [stem_is_intact(data_dir, row, storage) for row in rows])
    return {row.stem: (row, ok) for row, ok in zip(rows, intact, strict=True)}


def _place_stem(part: Path, final: Path) -> None:
    """Move a verified file into place durably (one worker-thread hop)."""
    move_into_place(part, final)


async def download_stems(ctx: RunContext, stems: list[StemRow]) -> list[str]:
    """Download the stems of one job (or verify them on disk); returns each stem's final status, in order."""
    data_dir, storage = ctx.options.data_dir, ctx.storage
    statuses: dict[str, str] = {}
    wanted: list[tuple[StemRow, Path]] = []
    for stem in stems:
        try:
            wanted.append((stem, stem_relpath(stem.audio_id, stem.separation_type, stem.stem)))
        except UnsafePathPart as error:
            await ctx.writes.write(Ledger.mark_stem, stem.job_id, stem.stem, StemStatus.FAILED, str(error))
            statuses[stem.stem] = StemStatus.FAILED
    # Only stems the ledger calls downloaded can be intact on disk: fresh jobs skip the file checks.
    if wanted and all(stem.status == StemStatus.DOWNLOADED for stem, _ in wanted):
        intact = await asyncio.to_thread(lambda: [stem_is_intact(data_dir, stem, storage) for stem, _ in wanted])
        if all(intact):
            statuses.update((stem.stem, StemStatus.DOWNLOADED) for stem, _ in wanted)
            wanted = []
    if wanted:
        first = wanted[0][0]
        # Another run may be fetching the same job: one writer per job, then the other sees its files intact.
        lock = data_dir / "locks" / "stems" / f"{first.audio_id}.{first.separation_type}.lock"
        async with _file_lock(lock):
            current = await _current_rows(ctx, first.job_id)
            # Each stem is decoded once: verification, and the job's analysis when the run analyses.
            check = StemCheck(ctx, first.job_id, first.audio_id, [stem.stem for stem, _ in wanted],
                              complete=len(wanted) == len(stems))
            settled = await asyncio.gather(*(
                _settle_stem(ctx, *current.get(stem.stem, (stem, False)), relpath, check) for stem, relpath in wanted
            ))
            statuses.update(zip((stem.stem for stem, _ in wanted), settled, strict=True))
            await check.finish(statuses)
    return [statuses[stem.stem] for stem in stems]


async def _settle_stem(ctx: RunContext, stem: StemRow, intact: bool, relpath: Path, check: StemCheck) -> str:
    try:
        if intact:
            return StemStatus.DOWNLOADED
        return await _fetch_stem(ctx, stem, relpath, ctx.options.data_dir / relpath, check)
    finally:
        check.withdraw(stem.stem)


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except FileNotFoundError:  # first lock of this data directory
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_CREAT | os.O_RDWR, 0o644)


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive flock, waited for without holding a worker thread.

    Blocking flock calls in `to_thread` could fill both processes' executors with
    waiters while the lock holders need a thread to finish: a cross-process deadlock.
    """
    fd = _open_lock_file(path)
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


async def _fetch_stem(ctx: RunContext, stem: StemRow, relpath: Path, final: Path, check: StemCheck) -> str:
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
                # Forced to disk after the slot is given back: an fsync can take milliseconds,
                # and a slot held through it is a transfer not happening.
                result = await ctx.client.download(url, part, max_bytes=ctx.options.max_download_bytes, fsync=False)
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
            facts = await check.verify(stem.stem, part)
            await asyncio.to_thread(_place_stem, part, final)
        except (UndecodableAudio, WorkerDied) as error:
            last_error = str(error)
            part.unlink(missing_ok=True)
            continue
        if ctx.storage is not None:
            try:  # stored whole and verified before the ledger calls it downloaded
                await asyncio.to_thread(ctx.storage.put_file, final, relpath.as_posix(), sha256=result.sha256)
            except StorageError as error:
                last_error = str(error)
                break  # the API's copy is fine; a later run uploads again
            ctx.counts["stems_stored"] += 1
        await ctx.writes.write(
            Ledger.record_stem_download, stem.job_id, stem.stem, path=str(relpath), bytes=result.bytes,
            sha256=result.sha256, duration_s=facts.duration_s, sample_rate=facts.sample_rate, channels=facts.channels,
        )
        ctx.counts["stems_downloaded"] += 1
        ctx.counts["bytes_downloaded"] += result.bytes
        return StemStatus.DOWNLOADED
    if not url and stem.url_expires_at is not None and stem.url_expires_at < time.time():
        expired = True
    status = StemStatus.EXPIRED if expired else StemStatus.FAILED
    await ctx.writes.write(Ledger.mark_stem, stem.job_id, stem.stem, status, last_error)
    return status


async def download_job(ctx: RunContext, job_id: str) -> str:
    """Download all stems of one job and settle the job's status."""
    stems = await ctx.writes.read(Ledger.stems_for_job, job_id)
    if not stems:
        return JobStatus.FAILED
    statuses = await download_stems(ctx, stems)
    if all(s == StemStatus.DOWNLOADED for s in statuses):
        await ctx.writes.write(Ledger.mark_status, job_id, JobStatus.DOWNLOADED)
        ctx.counts["downloaded"] += 1
        reporter().advance("downloaded")
        return JobStatus.DOWNLOADED
    if StemStatus.EXPIRED in statuses:
        await ctx.writes.write(Ledger.mark_status, job_id, JobStatus.EXPIRED, "stem URLs expired before download")
        ctx.counts["expired"] += 1
        # Re-separating is the only way back, and it is paid: say what it would cost.
        job = await ctx.writes.read(Ledger.get_job, job_id)
        ctx.counts["expired_credits"] += job.credits if job else 0
        return JobStatus.EXPIRED
    ctx.counts["download_failed"] += 1
    return JobStatus.FAILED
