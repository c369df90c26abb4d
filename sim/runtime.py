"""One running simulator: state, clock, limiter, faults, renderer and the completion loop.

The HTTP app and `SimServer` both drive a `SimRuntime`; it holds no HTTP specifics beyond
building payload dictionaries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx

from stemcat.sim import payloads
from stemcat.sim.callbacks import deliver
from stemcat.sim.clock import SimClock
from stemcat.sim.config import FaultSpec, SimConfig
from stemcat.sim.faults import FaultBook
from stemcat.sim.models import Charge, SeparationTaskView, SimStats, SimTrack, TrackTruth
from stemcat.sim.ratelimit import SlidingWindowLimiter
from stemcat.sim.render import BACKGROUND, URGENT, Renderer
from stemcat.sim.signing import NO_EXPIRY, verify
from stemcat.sim.state import SeparationTask, SimState
from stemcat.sim.stats import RequestStats
from stemcat.sim.stems import INSTRUMENT_STEMS, STEMS_BY_LABEL, stems_of
from stemcat.sim.tracks import AUDIOS_PER_MUSIC_TASK, MusicTask
from stemcat.sim.urls import MIX_REF_PREFIX, TASK_REF_PREFIX, FileUrls

logger = logging.getLogger(__name__)

COMPLETION_POLL_S: Final[float] = 0.05


@dataclass(frozen=True)
class FileTarget:
    """A file request that resolved to something we can serve."""

    audio_id: str
    name: str


@dataclass(frozen=True)
class FileRefusal:
    """A file request we must refuse, with its status and reason."""

    status: Literal[403, 404, 410]
    reason: str


class SimRuntime:
    """Everything one simulator instance knows and does, independent of HTTP."""

    def __init__(self, config: SimConfig, base_url: str, cache_root: Path) -> None:
        self.config = config
        self.base_url = base_url
        self.clock = SimClock(config.clock_speed)
        self.state = SimState(config, self.clock)
        self.limiter = SlidingWindowLimiter(config.rate_limit, config.rate_window_s)
        self.faults = FaultBook()
        self.stats = RequestStats()
        self.renderer = Renderer(config, cache_root)
        self._secret = secrets.token_bytes(32)
        self.urls = FileUrls(base_url=base_url, secret=self._secret, clock=self.clock, ttl_s=config.url_ttl_s)
        self._callback_tasks: set[asyncio.Task[None]] = set()

    # -- tracks and truth --------------------------------------------------------------
    def create_tracks(self, n: int) -> list[SimTrack]:
        """Create music tasks for `n` tracks (two variations per task) and return exactly `n` tracks."""
        if n < 0:
            raise ValueError("n must be >= 0")
        music_tasks = self.state.create_music_tasks(math.ceil(n / AUDIOS_PER_MUSIC_TASK))
        tracks = [self._track(music, audio.audio_id) for music in music_tasks for audio in music.audios]
        return tracks[:n]

    def _track(self, music: MusicTask, audio_id: str) -> SimTrack:
        audio = next(a for a in music.audios if a.audio_id == audio_id)
        return SimTrack(
            music_task_id=music.task_id,
            audio_id=audio_id,
            music_index=audio.music_index,
            title=music.title,
            tags=music.tags,
            genre=music.genre,
            duration_s=self.renderer.plan(audio_id).duration_s,
            audio_url=self.urls.mix_url(audio_id),
        )

    def truth(self, audio_id: str) -> TrackTruth | None:
        if self.state.audio(audio_id) is None:
            return None
        plan = self.renderer.plan(audio_id)
        names = (*INSTRUMENT_STEMS, "instrumental", "mix")
        return TrackTruth(
            audio_id=audio_id,
            duration_s=plan.duration_s,
            frames=plan.frames,
            sample_rate=plan.sample_rate,
            channels=plan.channels,
            instruments=list(plan.instruments),
            silent_stems=list(plan.silent_stems),
            stem_duration_s={name: plan.duration_s for name in names},
        )

    # -- admin operations ----------------------------------------------------------------
    def advance_clock(self, seconds: float) -> float:
        return self.clock.advance(seconds)

    def inject(self, spec: FaultSpec) -> int:
        return self.faults.inject(spec)

    def ledger(self) -> list[Charge]:
        return self.state.ledger()

    def task_views(self) -> list[SeparationTaskView]:
        now = self.clock.now()
        return [self._view(task, now) for task in self.state.tasks()]

    def _view(self, task: SeparationTask, now: float) -> SeparationTaskView:
        return SeparationTaskView(
            task_id=task.task_id,
            music_task_id=task.music_task_id,
            audio_id=task.audio_id,
            type=task.type,
            success_flag=task.success_flag(now),
            api_key_hash=task.api_key_hash,
            callback_url=task.callback_url,
            created_at=self.clock.epoch_ms(task.created_s),
            complete_at=self.clock.epoch_ms(task.complete_s),
            error_code=task.failure.code if task.failure else None,
            callback_status=task.callback_status,
            callback_attempts=task.callback_attempts,
            callbacks_delivered=task.callbacks_delivered,
        )

    def stats_snapshot(self) -> SimStats:
        by_route, by_status, by_route_status = self.stats.snapshot()
        per_key = self.limiter.max_seen_in_window()
        return SimStats(
            requests_by_route=by_route,
            requests_by_status=by_status,
            requests_by_route_and_status=by_route_status,
            rate_limited=by_status.get("430", 0),
            max_requests_in_window=max(per_key.values(), default=0),
            max_requests_in_window_by_key=per_key,
            rate_limit=self.config.rate_limit,
            rate_window_s=self.config.rate_window_s,
            callbacks_sent=self.stats.callbacks_sent,
            callbacks_failed=self.stats.callbacks_failed,
        )

    # -- API payloads --------------------------------------------------------------------
    def record_info(self, task_id: str) -> dict[str, Any] | None:
        """record-info envelope of a separation task, evaluating completion on the spot."""
        task = self.state.task(task_id)
        if task is None:
            return None
        now = self.clock.now()
        complete = task.is_complete(now)
        response = None
        if task.has_files(now):
            response = payloads.separation_response(
                self._stem_urls(task),
                self.urls.mix_url(task.audio_id),
                origin_data=self.config.origin_data,
                duration_s=self.renderer.plan(task.audio_id).duration_s,
            )
        failure = task.failure if complete else None
        return payloads.record_info(
            task_id=task.task_id,
            audio_id=task.audio_id,
            callback_url=task.callback_url,
            music_index=task.music_index,
            create_ms=self.clock.epoch_ms(task.created_s),
            complete_ms=self.clock.epoch_ms(task.complete_s) if complete else None,
            success_flag=task.success_flag(now),
            response=response,
            error_code=failure.code if failure else None,
            error_message=failure.message if failure else None,
        )

    def generation_record_info(self, music_task_id: str) -> dict[str, Any] | None:
        music = self.state.music_task(music_task_id)
        if music is None:
            return None
        ids = [audio.audio_id for audio in music.audios]
        return payloads.generation_record_info(
            music,
            {audio_id: self.urls.mix_url(audio_id) for audio_id in ids},
            {audio_id: self.renderer.plan(audio_id).duration_s for audio_id in ids},
            self.base_url,
        )

    def _stem_urls(self, task: SeparationTask) -> dict[str, str]:
        return {name: self.urls.stem_url(task.task_id, name) for name in stems_of(task.type)}

    def callback_payload(self, task: SeparationTask) -> dict[str, Any]:
        key = self.config.callback_info_key
        if task.failure is not None:
            return payloads.failure_callback(task.task_id, task.failure.code, task.failure.message, key)
        body = payloads.success_callback(
            task.task_id, task.type, self._stem_urls(task), self.urls.mix_url(task.audio_id), key
        )
        fault = self.faults.take("callback", task.task_id)
        if fault is not None and fault.stems_listed is not None:
            body = payloads.callback_with_stems_listed(body, key, fault.stems_listed)
        return body

    # -- files ---------------------------------------------------------------------------
    def resolve_file(self, segment: str, label: str) -> FileTarget | FileRefusal:
        """Check a file URL's signature, retention and expiry; say which file it names."""
        name = STEMS_BY_LABEL.get(label)
        token = verify(self._secret, segment, label)
        if name is None or token is None:
            return FileRefusal(403, "bad file signature")
        now = self.clock.now()
        if token.ref.startswith(MIX_REF_PREFIX):
            audio_id = token.ref[len(MIX_REF_PREFIX) :]
            if name != "mix" or self.state.audio(audio_id) is None:
                return FileRefusal(404, "no such file")
            return FileTarget(audio_id=audio_id, name=name)
        task = self.state.task(token.ref[len(TASK_REF_PREFIX) :]) if token.ref.startswith(TASK_REF_PREFIX) else None
        if task is None or name not in stems_of(task.type) or not task.has_files(now):
            return FileRefusal(404, "no such file")
        if now >= task.complete_s + self.config.retention_s:
            return FileRefusal(404, "expired")
        if token.expires_epoch_s != NO_EXPIRY and self.clock.epoch_ms(now) / 1000 > token.expires_epoch_s:
            return FileRefusal(410, "url expired")
        return FileTarget(audio_id=task.audio_id, name=name)

    async def file_path(self, target: FileTarget) -> Path:
        """Path of the rendered file, rendering it first (off the event loop) if needed."""
        return await asyncio.wrap_future(self.renderer.request(target.audio_id, target.name, priority=URGENT))

    # -- completion loop -----------------------------------------------------------------
    async def run_completion_loop(self, client: httpx.AsyncClient) -> None:
        """Notice completed tasks: queue their renders and send their callbacks. Runs until cancelled."""
        while True:
            for task in self.state.take_newly_completed(self.clock.now()):
                if task.failure is None and self.config.prerender:
                    for name in stems_of(task.type):
                        self.renderer.request(task.audio_id, name, priority=BACKGROUND)
                job = asyncio.create_task(self._send_callback(client, task))
                self._callback_tasks.add(job)
                job.add_done_callback(self._callback_tasks.discard)
            await asyncio.sleep(COMPLETION_POLL_S)

    async def _send_callback(self, client: httpx.AsyncClient, task: SeparationTask) -> None:
        cfg = self.config
        sends = 2 if cfg.duplicate_callbacks else 1
        attempts = delivered = 0
        for _ in range(sends):
            result = await deliver(
                client,
                task.callback_url,
                self.callback_payload(task),
                attempts=cfg.callback_attempts,
                wait_s=cfg.callback_retry_wait_s,
                timeout_s=cfg.callback_timeout_s,
            )
            attempts += result.attempts
            delivered += int(result.delivered)
            self.stats.record_callback(delivered=result.delivered)
            if not result.delivered:
                break
        self.state.record_callback(task.task_id, attempts=attempts, delivered=delivered)

    async def cancel_callbacks(self) -> None:
        """Stop callback deliveries still in flight (server shutdown)."""
        pending = list(self._callback_tasks)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def close(self) -> None:
        self.renderer.close()
