"""Analyse downloaded jobs: levels, loudness, silence, and how well stems add back up to the mix.

Per song, the mix is fetched once (free, see ``tasks.separation.mixes``); then each of its separations is
measured in one streaming pass over its stems and the mix (``decode``) in a worker
process (``pool``), and stored in one ledger transaction. Never pays for anything and never downloads a stem
from the API; with a storage (``--storage``), a stem stored there but not in this data directory (another
host downloaded it) is fetched from the storage first, verified by its sha256.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from enum import StrEnum
from pathlib import Path

from stemcat.catalog import Job, JobQualityRow, Ledger, StemQualityRow, StemRow, StemStatus
from stemcat.catalog.atomic_files import sha256_file
from stemcat.catalog.storage import Storage, StorageError
from stemcat.client import SunoClient
from stemcat.tasks.analysis.decode import JobRequest, decode_job
from stemcat.tasks.analysis.metrics import JobMetrics, QualityThresholds
from stemcat.tasks.analysis.pool import AnalysisPool, WorkerDied, shared_pool
from stemcat.tasks.separation.mixes import candidate_urls, ensure_mix

log = logging.getLogger(__name__)

DEFAULT_MAX_MIX_BYTES = 200 * 1024 * 1024


class AnalysisOutcome(StrEnum):
    """What happened to one job's analysis."""

    ANALYSED = "analysed"  # stems measured and compared with the mix
    LOW_SNR = "low_snr"  # analysed, and the stems do not add back up to the mix
    NO_MIX = "no_mix"  # stems measured; no mix to compare with (or not every stem is on disk)
    FAILED = "failed"  # a file would not decode: nothing stored but the reason
    SKIPPED = "skipped"  # unknown job, or none of its stems is on disk


class Analyzer:
    """Everything an analysis needs: the ledger, where files live, the (free) client, thresholds, counters.

    A plain class, like ``RunContext``, so Prefect does not walk into it when it records task inputs.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        data_dir: Path,
        client: SunoClient | None,
        thresholds: QualityThresholds | None = None,
        max_download_bytes: int = DEFAULT_MAX_MIX_BYTES,
        counts: Counter[str] | None = None,
        pool: AnalysisPool | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.storage = storage
        self.ledger = ledger
        self.data_dir = Path(data_dir)
        self.client = client
        self.thresholds = thresholds or QualityThresholds()
        self.max_download_bytes = max_download_bytes
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.pool = pool if pool is not None else shared_pool()

    async def analyse(self, job_ids: list[str]) -> dict[str, AnalysisOutcome]:
        """Analyse the given jobs, songs concurrently, each song's mix fetched once."""
        jobs = await asyncio.to_thread(_load_jobs, self.ledger, job_ids)
        by_song: dict[str, list[Job]] = {}
        for job in jobs:
            by_song.setdefault(job.audio_id, []).append(job)
        outcomes = dict.fromkeys(job_ids, AnalysisOutcome.SKIPPED)
        for song_outcomes in await asyncio.gather(*(self._analyse_song(group) for group in by_song.values())):
            outcomes.update(song_outcomes)
        return outcomes

    async def _analyse_song(self, jobs: list[Job]) -> dict[str, AnalysisOutcome]:
        audio_id = jobs[0].audio_id
        track = await asyncio.to_thread(self.ledger.track, audio_id)
        urls = candidate_urls((job.origin_url for job in jobs), track.source_url if track else None)
        mix = await ensure_mix(
            self.client, self.data_dir, audio_id, urls,
            task_id=(track.task_id if track and track.task_id else jobs[0].task_id),
            max_bytes=self.max_download_bytes,
        )
        mix_path = None if mix.relpath is None else self.data_dir / mix.relpath
        outcomes: dict[str, AnalysisOutcome] = {}
        for job in jobs:
            outcomes[job.job_id] = await self._analyse_job(job, mix_path, mix.problem)
        return outcomes

    async def _analyse_job(self, job: Job, mix_path: Path | None, mix_problem: str | None) -> AnalysisOutcome:
        stems = await asyncio.to_thread(self.ledger.stems_for_job, job.job_id)
        if self.storage is not None:
            await asyncio.to_thread(_fetch_missing, self.storage, self.data_dir, stems)
        on_disk = {stem.stem: path for stem in stems if (path := _file_on_disk(self.data_dir, stem)) is not None}
        if not on_disk:
            return AnalysisOutcome.SKIPPED
        # One pass decodes every stem and the mix once, in a worker process: it verifies them and measures them.
        try:
            result = await self.pool.run(decode_job, JobRequest(on_disk, mix_path, self.thresholds))
        except WorkerDied as error:
            return await self._record_failure(job, str(error))
        failed = [check for name, check in result.stems.items() if check.facts is None]
        if failed:
            return await self._record_failure(job, "; ".join(f"{c.path.name}: {c.problem}" for c in failed))
        metrics = result.metrics
        if metrics is None:  # cannot happen: thresholds were given
            raise RuntimeError("a measuring pass returned no metrics")
        if mix_path is not None and result.mix is not None and result.mix.facts is None:
            # A damaged mix is dropped (it is free to fetch again); the stems were measured in the same pass.
            mix_path.unlink(missing_ok=True)
            mix_path, mix_problem = None, f"mix unreadable, removed: {result.mix.path.name}: {result.mix.problem}"
        problem = mix_problem or metrics.snr_problem
        complete = len(on_disk) == len(stems)
        if not complete:
            problem = "not every stem is on disk: " + ", ".join(sorted({s.stem for s in stems} - set(on_disk)))
        job_row, stem_rows = analysis_rows(self.data_dir, metrics, mix_path, problem, self.thresholds,
                                           complete=complete)
        await asyncio.to_thread(self.ledger.record_analysis, job.job_id, job_row, stem_rows)
        return count_analysis(self.counts, job_row, stem_rows)

    async def _record_failure(self, job: Job, reason: str) -> AnalysisOutcome:
        log.warning("analysis of job %s failed: %s", job.job_id, reason)
        failed = JobQualityRow(
            reconstruction_snr_db=None, mix_path=None, mix_duration_s=None, low_snr=None, analysis_error=reason
        )
        await asyncio.to_thread(self.ledger.record_analysis, job.job_id, failed, [])
        self.counts["analysis_failed"] += 1
        return AnalysisOutcome.FAILED


def _load_jobs(ledger: Ledger, job_ids: list[str]) -> list[Job]:
    return [job for job in (ledger.get_job(job_id) for job_id in dict.fromkeys(job_ids)) if job is not None]


def _fetch_missing(storage: Storage, data_dir: Path, stems: list[StemRow]) -> None:
    """Bring downloaded stems that are not in this data directory over from the storage (verified)."""
    for stem in stems:
        if stem.status == StemStatus.DOWNLOADED and stem.path and stem.sha256 and not (data_dir / stem.path).is_file():
            try:
                storage.fetch(stem.path, data_dir / stem.path, sha256=stem.sha256)
            except StorageError as error:  # measured without it; the job's row says which stem was missing
                log.warning("fetching stem %s from %s failed: %s", stem.path, storage.url, error)


def _file_on_disk(data_dir: Path, stem: StemRow) -> Path | None:
    """The stem's file when it is downloaded and still there."""
    if stem.status != StemStatus.DOWNLOADED or not stem.path:
        return None
    path = data_dir / stem.path
    return path if path.is_file() else None


def analysis_rows(
    data_dir: Path,
    metrics: JobMetrics,
    mix_path: Path | None,
    problem: str | None,
    thresholds: QualityThresholds,
    *,
    complete: bool,
) -> tuple[JobQualityRow, list[StemQualityRow]]:
    """The ledger rows of one measured job (``complete``: every stem of the job was measured)."""
    job_row = _job_quality(data_dir, metrics, mix_path, problem, thresholds, complete=complete)
    return job_row, [_stem_quality(name, metrics) for name in metrics.stems]


def count_analysis(counts: Counter[str], job_row: JobQualityRow, stem_rows: list[StemQualityRow]) -> AnalysisOutcome:
    """Count a stored analysis in the run's counters and say what it came to."""
    counts["stems_analysed"] += len(stem_rows)
    counts["silent_stems"] += sum(bool(row.silent) for row in stem_rows)
    if job_row.low_snr:
        counts["low_snr"] += 1
        return AnalysisOutcome.LOW_SNR
    if job_row.reconstruction_snr_db is None:
        counts["analysis_incomplete"] += 1
        return AnalysisOutcome.NO_MIX
    return AnalysisOutcome.ANALYSED


def _job_quality(
    data_dir: Path,
    metrics: JobMetrics,
    mix_path: Path | None,
    problem: str | None,
    thresholds: QualityThresholds,
    *,
    complete: bool,
) -> JobQualityRow:
    snr = metrics.reconstruction_snr_db if complete else None
    return JobQualityRow(
        reconstruction_snr_db=snr,
        mix_path=None if mix_path is None else str(mix_path.relative_to(data_dir)),
        mix_sha256=None if mix_path is None else sha256_file(mix_path),
        mix_duration_s=None if metrics.mix is None else metrics.mix.duration_s,
        low_snr=None if snr is None else snr < thresholds.min_snr_db,
        analysis_error=problem if snr is None else None,
    )


def _stem_quality(name: str, metrics: JobMetrics) -> StemQualityRow:
    stem = metrics.stems[name]
    return StemQualityRow(
        stem=name,
        peak_dbfs=stem.peak_dbfs,
        rms_dbfs=stem.rms_dbfs,
        lufs=stem.lufs,
        clipped_fraction=stem.clipped_fraction,
        silent=stem.silent,
        duration_diff_s=metrics.duration_diff_s(name),
    )
