"""One decode per downloaded file: a job's new stems verified, and measured, in one pass.

The download step (``tasks.separation.downloads``) calls ``StemCheck.verify`` for each stem it streamed to a
``.part`` file, and ``withdraw`` for each stem it gives up on or finds already on disk. When the
run analyses (``RunOptions.analyze``), the first ``verify`` of each stem waits until every stem of
the job has arrived or been withdrawn; one pass in a worker process then decodes them together
with the song's mix (fetched meanwhile, free): that pass is each stem's verification (frames,
rate, channels) and the job's analysis, stored by ``finish`` once the stems are recorded. A stem
that does not decode fails alone, with its reason; the others are unaffected. With
``--no-analyze`` each stem is verified alone as it arrives (a decode without meters).

A stem downloaded again after a failed decode is verified alone, and a job whose stems were not
all in the pass (some already on disk) is left to the batch's analysis step, which decodes it
again: the one case where a file is decoded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from pathlib import Path

from stemcat.catalog import Ledger
from stemcat.tasks.analysis.analyzer import analysis_rows, count_analysis
from stemcat.tasks.analysis.decode import AudioFacts, JobDecode, JobRequest, decode_job
from stemcat.tasks.analysis.metrics import QualityThresholds
from stemcat.tasks.analysis.pool import AnalysisPool, shared_pool
from stemcat.tasks.context import RunContext
from stemcat.tasks.separation.mixes import MixOutcome, candidate_urls, ensure_mix

log = logging.getLogger(__name__)

_MIXES: weakref.WeakKeyDictionary[RunContext, dict[str, asyncio.Task[MixOutcome]]] = weakref.WeakKeyDictionary()


class StemCheck:
    """The verification (and, when the run analyses, the measurement) of one job's new stems."""

    def __init__(self, ctx: RunContext, job_id: str, audio_id: str, stems: list[str], *, complete: bool,
                 pool: AnalysisPool | None = None) -> None:
        self._ctx = ctx
        self._job_id = job_id
        self._pool = pool if pool is not None else shared_pool(ctx.options.analysis_workers)
        self._thresholds = QualityThresholds() if ctx.options.analyze else None
        self._waiting = set(stems)
        self._stems = set(stems)
        self._complete = complete
        self._parts: dict[str, Path] = {}
        self._result: asyncio.Future[JobDecode] = asyncio.get_running_loop().create_future()
        self._pass: asyncio.Task[None] | None = None
        self._alone = False  # some stem was verified on its own: the job's pass is not the whole job
        self._audio_id = audio_id
        self._mix: asyncio.Task[MixOutcome] | None = None  # fetched from the first stem's arrival on

    async def verify(self, stem: str, part: Path) -> AudioFacts:
        """Decode ``part`` (with the job's other stems when measuring); ``UndecodableAudio`` if it fails."""
        if self._thresholds is None or self._pass is not None or stem not in self._waiting:
            self._alone = self._alone or self._thresholds is not None
            result = await self._pool.run(decode_job, JobRequest({stem: part}))
            return result.stems[stem].require()
        if self._mix is None:
            self._mix = _mix_task(self._ctx, self._job_id, self._audio_id)
        self._parts[stem] = part
        self._waiting.discard(stem)
        self._start_when_ready()
        result = await asyncio.shield(self._result)
        return result.stems[stem].require()

    def withdraw(self, stem: str) -> None:
        """This stem will not be verified here (on disk already, or its download gave up)."""
        if stem in self._waiting:
            self._waiting.discard(stem)
            self._start_when_ready()

    def _start_when_ready(self) -> None:
        if self._waiting or self._pass is not None or not self._parts:
            return
        self._pass = asyncio.create_task(self._run_pass(), name=f"stem-check-{self._job_id}")

    async def _run_pass(self) -> None:
        try:
            mix = await self._mix_path()
            result = await self._pool.run(decode_job, JobRequest(dict(self._parts), mix, self._thresholds))
        except asyncio.CancelledError:
            self._result.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - every waiter must hear how the pass ended
            self._result.set_exception(error)
            return
        self._result.set_result(result)

    async def _mix_path(self) -> Path | None:
        if self._mix is None:
            return None
        outcome = await asyncio.shield(self._mix)
        return None if outcome.relpath is None else self._ctx.options.data_dir / outcome.relpath

    async def finish(self, statuses: dict[str, str]) -> bool:
        """Store the job's analysis when the pass measured all of it; True when it did."""
        if self._pass is None or self._thresholds is None:
            return False
        with contextlib.suppress(Exception):
            await asyncio.shield(self._pass)
        if not self._result.done() or self._result.exception() is not None:
            return False
        result = self._result.result()
        whole = (self._complete and not self._alone and set(self._parts) == self._stems
                 and all(statuses.get(stem) == "downloaded" for stem in self._stems))
        if not whole or result.metrics is None or any(c.facts is None for c in result.stems.values()):
            return False
        data_dir = self._ctx.options.data_dir
        mix_path = None if result.mix is None else result.mix.path
        outcome = await asyncio.shield(self._mix) if self._mix is not None else None
        problem = None if outcome is None else outcome.problem
        if result.mix is not None and result.mix.facts is None and mix_path is not None:
            # A damaged mix is dropped (it is free to fetch again); the stems were measured in the same pass.
            mix_path.unlink(missing_ok=True)
            problem, mix_path = f"mix unreadable, removed: {mix_path.name}: {result.mix.problem}", None
        job_row, stem_rows = analysis_rows(data_dir, result.metrics, mix_path, problem or result.metrics.snr_problem,
                                           self._thresholds, complete=True)
        await self._ctx.writes.write(Ledger.record_analysis, self._job_id, job_row, stem_rows)
        count_analysis(self._ctx.counts, job_row, stem_rows)
        return True


def _mix_task(ctx: RunContext, job_id: str, audio_id: str) -> asyncio.Task[MixOutcome]:
    """The song's mix fetch, started once per run and song while its stems download."""
    tasks = _MIXES.setdefault(ctx, {})
    task = tasks.get(audio_id)
    if task is None:
        task = tasks[audio_id] = asyncio.create_task(_fetch_mix(ctx, job_id, audio_id), name=f"mix-{audio_id}")
        # Shared only while in flight: a later job of the song finds the file on disk (ensure_mix reuses it).
        task.add_done_callback(lambda _: tasks.pop(audio_id, None))
    return task


async def _fetch_mix(ctx: RunContext, job_id: str, audio_id: str) -> MixOutcome:
    try:
        job = await ctx.writes.read(Ledger.get_job, job_id)
        track = await ctx.writes.read(Ledger.track, audio_id)
        urls = candidate_urls([None if job is None else job.origin_url], None if track is None else track.source_url)
        task_id = track.task_id if track and track.task_id else (None if job is None else job.task_id)
        return await ensure_mix(ctx.client, ctx.options.data_dir, audio_id, urls, task_id=task_id,
                                max_bytes=ctx.options.max_download_bytes)
    except Exception as error:  # noqa: BLE001 - no mix means no SNR, never a failed download
        log.warning("fetching the mix of %s failed: %s", audio_id, error)
        return MixOutcome(None, f"mix not fetched: {error}")
