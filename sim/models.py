"""Typed records the simulator hands to tests and to other processes (via /admin)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from stemcat.sim.stems import SeparationType


class SimTrack(BaseModel):
    """One audio variation of a music-generation task: what a manifest row names."""

    model_config = ConfigDict(frozen=True)

    music_task_id: str
    audio_id: str
    music_index: int
    title: str
    tags: str
    genre: str
    duration_s: float
    audio_url: str


class Charge(BaseModel):
    """One paid submit, as the simulator's ledger recorded it."""

    model_config = ConfigDict(frozen=True)

    at: int  # epoch ms on the sim clock
    api_key_hash: str
    separation_task_id: str
    music_task_id: str
    audio_id: str
    type: SeparationType
    credits: int


class TrackTruth(BaseModel):
    """What a correct download of this song's stems must look like."""

    model_config = ConfigDict(frozen=True)

    audio_id: str
    duration_s: float
    frames: int
    sample_rate: int
    channels: int
    instruments: list[str]  # stems with sound
    silent_stems: list[str]  # of the 12 split_stem stems
    stem_duration_s: dict[str, float]  # every stem, plus `instrumental` and `mix`


class SeparationTaskView(BaseModel):
    """A separation task's state, for tests and the admin API."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    music_task_id: str
    audio_id: str
    type: SeparationType
    success_flag: str
    api_key_hash: str
    callback_url: str
    created_at: int  # epoch ms
    complete_at: int  # epoch ms, scheduled completion
    error_code: int | None
    callback_status: str  # pending | delivering | delivered | failed | skipped
    callback_attempts: int
    callbacks_delivered: int


class SimStats(BaseModel):
    """Request counters since the simulator started."""

    requests_by_route: dict[str, int]
    requests_by_status: dict[str, int]
    requests_by_route_and_status: dict[str, dict[str, int]]
    rate_limited: int  # number of 430 answers
    max_requests_in_window: int  # over all keys
    max_requests_in_window_by_key: dict[str, int]
    rate_limit: int | None
    rate_window_s: float
    callbacks_sent: int
    callbacks_failed: int
