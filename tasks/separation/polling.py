"""Awaiting one submitted job until it ends: its callback when one comes, polls when it does not.

Requests are the scarce resource, so a job costs one submit plus, ideally, nothing more with
callbacks and one poll without. A callback whose URL signature verified (the receiver refuses
any other) and whose taskId is the job's own is as good as a record-info answer: its stem URLs
settle the job and no poll is sent. Polls are for jobs whose callback does not come, and their
first one is timed from the separation latencies seen so far (`poll_timing`), so that most
jobs are finished when it arrives; a fixed `--poll-initial` overrides the estimate.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from datetime import timedelta
from typing import Any

from stemcat.catalog import JobStatus, Ledger
from stemcat.client import STEMS_BY_TYPE, CallbackPayload, SeparationRecord, SunoError, SuccessFlag
from stemcat.client.ratelimit import polling
from stemcat.tasks.context import RunContext, RunOptions
from stemcat.tasks.separation.poll_timing import HISTORY, PROBE_INITIAL_S, LatencyEstimator, next_poll_delay
from stemcat.tasks.separation.progress import reporter
from stemcat.tasks.separation.submit import abort_if_run_fatal

log = logging.getLogger(__name__)

URL_RETENTION = timedelta(days=14)


def _expiry(record: SeparationRecord) -> float:
    completed = record.complete_time.timestamp() if record.complete_time else time.time()
    return completed + URL_RETENTION.total_seconds()


async def store_record(ctx: RunContext, job_id: str, record: SeparationRecord) -> str | None:
    """Write a terminal record-info answer to the ledger; returns the new status or None if pending."""
    flag = record.success_flag
    if flag.has_results and (record.stem_urls or flag is SuccessFlag.SUCCESS):
        expires = _expiry(record)
        status = await ctx.writes.write(
            Ledger.mark_succeeded, job_id, success_flag=str(flag),
            completed_at=record.complete_time.timestamp() if record.complete_time else None,
            origin_url=record.origin_url,
            stems=[(str(stem), url, expires) for stem, url in record.stem_urls.items()],
            documented_stems=STEMS_BY_TYPE,
        )
        if status == JobStatus.INCOMPLETE:  # finished without every documented stem: a later run re-reads it
            job = await ctx.writes.read(Ledger.get_job, job_id)
            log.warning("job %s finished without stems %s (recorded incomplete; a later run re-reads it for free)",
                        job_id, ", ".join(job.missing) if job else "?")
            return JobStatus.INCOMPLETE
        return JobStatus.SUCCEEDED
    if flag.is_terminal:
        await ctx.writes.write(
            Ledger.mark_failed, job_id, success_flag=str(flag), error_code=record.error_code,
            error=record.error_message or f"{flag} without stem URLs",
        )
        return JobStatus.FAILED
    return None


async def store_callback(ctx: RunContext, job_id: str, remote_task_id: str, payload: dict[str, Any]) -> str | None:
    """Settle a job from a verified callback that names its own task; None when it cannot (then poll).

    A callback for another taskId, or one that cannot be read, changes nothing.
    """
    try:
        callback = CallbackPayload.parse(payload)
    except SunoError as error:
        log.warning("callback for job %s ignored: %s", job_id, error)
        ctx.counts["callbacks_unreadable"] += 1
        return None
    if callback.task_id != remote_task_id:
        ctx.counts["callbacks_mismatched"] += 1
        return None
    now = time.time()
    if callback.is_success and callback.stem_urls:
        expires = now + URL_RETENTION.total_seconds()
        status = await ctx.writes.write(
            Ledger.mark_succeeded, job_id, success_flag=str(SuccessFlag.SUCCESS), completed_at=now,
            origin_url=callback.origin_url,
            stems=[(str(stem), url, expires) for stem, url in callback.stem_urls.items()],
            documented_stems=STEMS_BY_TYPE,
        )
        # A callback lacking documented stems settles nothing: record-info has the last word.
        return None if status == JobStatus.INCOMPLETE else JobStatus.SUCCEEDED
    if not callback.is_success:
        await ctx.writes.write(Ledger.mark_failed, job_id, success_flag=None, error_code=callback.code,
                               error=callback.msg or f"callback code {callback.code}")
        return JobStatus.FAILED
    return None  # success without stem URLs: ask record-info


class PollTimer:
    """One run's poll timing: latencies by type (seeded from the ledger), the probe, the fixed override."""

    def __init__(self, options: RunOptions) -> None:
        self.callbacks_seen = False  # a verified callback came: polls become the fallback for missing ones
        self.fixed_initial_s = options.poll_initial_s
        self.factor = options.poll_factor
        self.max_s = options.poll_max_s
        self.estimator = LatencyEstimator()
        self._learned: dict[str, asyncio.Event] = {}
        self._seeded: set[str] = set()

    async def seed(self, ctx: RunContext, separation_type: str) -> None:
        """Read the ledger's latest latencies of a type, once per run."""
        if self.fixed_initial_s is not None or separation_type in self._seeded:
            return
        self._seeded.add(separation_type)
        latencies = await ctx.writes.read(Ledger.recent_latencies, separation_type, HISTORY)
        self.estimator.seed(separation_type, latencies)
        if self.estimator.known(separation_type):
            self._wake(separation_type)

    def learned(self, separation_type: str) -> asyncio.Event:
        """Set when something new is known about a type (an estimate, or a probe gave up)."""
        return self._learned.setdefault(separation_type, asyncio.Event())

    def _wake(self, separation_type: str) -> None:
        self._learned.pop(separation_type, asyncio.Event()).set()

    def first_delay(self, separation_type: str) -> float | None:
        """Seconds after its submit a job's first poll is due; None while nothing is known."""
        if self.fixed_initial_s is not None:
            return min(self.fixed_initial_s, self.max_s)
        estimate = self.estimator.first_poll_after(separation_type, callbacks=self.callbacks_seen)
        return None if estimate is None else min(estimate, self.max_s)

    def retry_delay(self, separation_type: str, previous_s: float | None) -> float:
        if self.fixed_initial_s is not None:
            return next_poll_delay(previous_s, initial_s=self.fixed_initial_s, factor=self.factor, max_s=self.max_s)
        return self.estimator.retry_delay(separation_type, previous_s, factor=self.factor, max_s=self.max_s)

    def claim_probe(self, separation_type: str) -> bool:
        return self.fixed_initial_s is None and not self.callbacks_seen and self.estimator.claim_probe(separation_type)

    def saw_callback(self) -> None:
        """A callback settled a job: from now on every job waits for its own before polling."""
        if not self.callbacks_seen:
            self.callbacks_seen = True
            for separation_type in list(self._learned):
                self._wake(separation_type)

    def observe(self, separation_type: str, latency_s: float) -> None:
        self.estimator.observe(separation_type, latency_s)
        self._wake(separation_type)

    def release_probe(self, separation_type: str) -> None:
        if not self.estimator.known(separation_type):
            self.estimator.release_probe(separation_type)
            self._wake(separation_type)


_timers: weakref.WeakKeyDictionary[RunContext, PollTimer] = weakref.WeakKeyDictionary()


def poll_timer(ctx: RunContext) -> PollTimer:
    """The run's `PollTimer` (kept beside the run's context, created on first use)."""
    timer = _timers.get(ctx)
    if timer is None:
        timer = _timers[ctx] = PollTimer(ctx.options)
    return timer


def _latency(record: SeparationRecord, waited_s: float) -> float:
    """How long the separation took: the API's own times when it gives both, else our wait (an upper bound)."""
    if record.create_time is not None and record.complete_time is not None:
        return (record.complete_time - record.create_time).total_seconds()
    return waited_s


async def _stored_callback(ctx: RunContext, job_id: str) -> dict[str, Any] | None:
    """With a receiver elsewhere (`--callback-url`), the newest callback it stored for this job."""
    if not ctx.options.callback_url:
        return None
    callbacks = await ctx.writes.read(Ledger.callbacks_for_token, job_id)
    return callbacks[-1]["payload"] if callbacks else None


async def await_one(ctx: RunContext, job_id: str, *, first_poll_now: bool, remote_task_id: str | None = None,
                    separation_type: str | None = None) -> str:
    """Wait for one job's callback or poll it, with per-job timing, until it ends or times out.

    `remote_task_id` and `separation_type` save reading the job back when the caller has just
    stored it. A fresh submit (`first_poll_now=False`) also teaches the run its latency.
    """
    if remote_task_id is None or separation_type is None:
        job = await ctx.writes.read(Ledger.get_job, job_id)
        if job is None or job.remote_task_id is None:
            return "missing"
        remote_task_id, separation_type = job.remote_task_id, job.separation_type
    timer = poll_timer(ctx)
    await timer.seed(ctx, separation_type)
    started = time.monotonic()
    deadline = started + ctx.options.job_timeout_s
    fresh = not first_poll_now
    probing = False
    polled = first_poll_now  # after the first poll, the back-off decides; before it, the timer does
    due: float | None = started
    previous: float | None = None  # the last wait between polls, for the back-off
    event = ctx.hub.event(job_id)
    try:
        while True:
            payload = ctx.hub.payload(job_id)
            if payload is not None:
                ctx.hub.discard(job_id)
                status = await store_callback(ctx, job_id, remote_task_id, payload)
                if status is not None:
                    timer.saw_callback()
                    if fresh and status == JobStatus.SUCCEEDED:
                        timer.observe(separation_type, time.monotonic() - started)
                    return _finished(ctx, status)
            if not polled:  # re-timed on every wake: the estimate, or whether callbacks come, may have changed
                first = timer.first_delay(separation_type)
                if first is None and (probing or timer.claim_probe(separation_type)):
                    probing, first = True, PROBE_INITIAL_S
                due = None if first is None else started + first
                if timer.fixed_initial_s is not None:
                    previous = first
            if due is not None:
                due = min(due, deadline)  # one last poll when the job's time is up
            now = time.monotonic()
            if due is None or now < due:
                if now >= deadline:
                    ctx.counts["timed_out"] += 1
                    return "timed_out"
                until = min(deadline, due if due is not None else now + ctx.options.poll_max_s)
                waits = [event.wait()] + ([] if polled else [timer.learned(separation_type).wait()])
                await _first_of(waits, timeout=max(0.0, until - now))
                event.clear()
                if due is None and time.monotonic() >= until:
                    polled, due = True, time.monotonic()  # nothing learned in time: poll on our own
                continue
            polled = True
            payload = await _stored_callback(ctx, job_id)
            if payload is not None:
                status = await store_callback(ctx, job_id, remote_task_id, payload)
                if status is not None:
                    timer.saw_callback()
                    return _finished(ctx, status)
            try:
                with polling():  # polls yield to submits under the shared budget's poll share
                    record = await ctx.client.record_info(remote_task_id)
            except SunoError as error:
                abort_if_run_fatal(error)
                log.warning("polling job %s failed: %s (it stays submitted)", job_id, error)
                ctx.counts["poll_error"] += 1
                return "poll_error"
            status = await store_record(ctx, job_id, record)
            if status is not None:
                if fresh and status == JobStatus.SUCCEEDED:
                    timer.observe(separation_type, _latency(record, time.monotonic() - started))
                return _finished(ctx, status)
            previous = timer.retry_delay(separation_type, previous)
            due = time.monotonic() + previous
            await ctx.writes.write(Ledger.mark_polled, job_id, time.time() + previous)
            if time.monotonic() >= deadline:
                ctx.counts["timed_out"] += 1
                return "timed_out"
    finally:
        ctx.hub.forget(job_id)
        if probing:
            timer.release_probe(separation_type)


def _finished(ctx: RunContext, status: str) -> str:
    ctx.counts[status] += 1
    reporter().advance("separated")
    return status


async def _first_of(waits: list[Any], *, timeout: float) -> None:
    """Return when the first of `waits` (coroutines) completes or `timeout` passes; cancel the rest."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
