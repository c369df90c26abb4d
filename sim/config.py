"""Simulator configuration and fault-injection specs (typed, JSON-serialisable)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FaultRoute = Literal["generate", "record_info", "credit", "generation", "file", "callback"]
CallbackInfoKey = Literal["vocal_removal_info", "vocal_separation_info"]
SongKind = Literal["synthetic", "realistic"]
Mp3Bitrate = Literal[96, 112, 128, 160, 192, 224, 256, 320]  # MPEG-1 layer III rates in the 128-192 neighbourhood

FOURTEEN_DAYS_S = 14 * 24 * 3600.0


class RealisticSongs(BaseModel):
    """The small set of full-length songs that `songs="realistic"` serves (44.1 kHz stereo, CBR MP3).

    The set does not depend on the simulator's seed, so every simulator and benchmark shares one cache.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(default=4, ge=1, le=8)  # distinct songs; tracks map onto them by audio id
    duration_s: float = Field(default=180.0, ge=1.0, le=600.0)  # tests shorten it: encoding dominates
    bitrate_kbps: Mp3Bitrate = 128  # 13 files of 3 minutes at 128 kbps: ~37 MB, like a real split_stem job


class SimConfig(BaseModel):
    """Everything that shapes one simulator instance; times are sim seconds unless noted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    sample_rate: int = Field(default=16000, ge=8000, le=48000)
    channels: int = Field(default=1, ge=1, le=2)
    min_duration_s: float = Field(default=3.0, gt=0)
    max_duration_s: float = Field(default=6.0, gt=0)
    processing_s: tuple[float, float] = (0.2, 0.6)
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    failure_error_code: int = 500  # errorCode of failure_rate failures (451 = source download failed)
    initial_credits: int = 10_000
    rate_limit: int | None = Field(default=20, ge=1)  # per API key; None disables
    rate_window_s: float = Field(default=10.0, gt=0)  # real seconds
    rate_limit_as_json: bool = False  # True: 430 as HTTP 200 + JSON code
    api_keys: frozenset[str] | None = None  # None: any non-empty bearer token
    url_ttl_s: float | None = Field(default=None, gt=0)
    retention_s: float = Field(default=FOURTEEN_DAYS_S, gt=0)
    callback_attempts: int = Field(default=3, ge=1)
    callback_timeout_s: float = Field(default=15.0, gt=0)  # real seconds
    callback_retry_wait_s: float = Field(default=0.3, ge=0)  # real seconds between attempts
    callback_info_key: CallbackInfoKey = "vocal_removal_info"
    duplicate_callbacks: bool = False
    origin_data: bool = False  # also emit the reseller `originData` list in record-info
    clock_speed: float = Field(default=1.0, gt=0)
    cache_dir: Path | None = None
    render_workers: int = Field(default=2, ge=1)
    prerender: bool = True  # render a task's files when it completes; False: only on first download
    mp3_compression_level: float = Field(default=0.0, ge=0.0, le=1.0)
    # "realistic": every track is one of a few cached full-length songs (see RealisticSongs); sample_rate,
    # channels, min/max_duration_s and mp3_compression_level then describe nothing that is served.
    songs: SongKind = "synthetic"
    realistic: RealisticSongs = RealisticSongs()

    @field_validator("processing_s")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if low < 0 or high < low:
            raise ValueError("processing_s must be (low, high) with 0 <= low <= high")
        return value

    @model_validator(mode="after")
    def _durations_ordered(self) -> SimConfig:
        if self.max_duration_s < self.min_duration_s:
            raise ValueError("max_duration_s must be >= min_duration_s")
        return self


class FaultSpec(BaseModel):
    """One injected misbehaviour, applied to the next `times` matching requests of `route`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    route: FaultRoute
    code: int | None = None  # None: answer normally (after delay_s)
    as_json: bool = False  # True: HTTP 200 with the code in the JSON envelope
    times: int = 1  # -1 = forever
    delay_s: float = Field(default=0.0, ge=0.0)  # real seconds
    after_accept: bool = False  # generate only: create and charge the task, then misbehave
    truncate_at: int | None = Field(default=None, ge=0)  # file only: bytes sent before the connection closes
    retry_after: float | None = Field(default=None, ge=0.0)
    match: str | None = None  # substring of the request subject (path, query, taskId, audioId)
    stems_listed: int | None = Field(default=None, ge=0)  # record_info, callback: a SUCCESS lists its first N stems

    @model_validator(mode="after")
    def _consistent(self) -> FaultSpec:
        if self.times == 0 or self.times < -1:
            raise ValueError("times must be positive or -1 (forever)")
        if self.after_accept and self.route != "generate":
            raise ValueError("after_accept applies to the generate route only")
        if self.truncate_at is not None and self.route != "file":
            raise ValueError("truncate_at applies to the file route only")
        if self.stems_listed is not None and self.route not in ("record_info", "callback"):
            raise ValueError("stems_listed applies to the record_info and callback routes only")
        if self.route == "callback" and (self.stems_listed is None or self.code is not None or self.delay_s):
            raise ValueError("the callback route takes stems_listed only")
        if self.code is not None and not 100 <= self.code <= 599:
            raise ValueError("code must be an HTTP-like status code")
        return self
