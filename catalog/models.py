"""Typed rows and status vocabularies of the ledger (timestamps are float epoch seconds, UTC)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from stemcat.catalog.jsoncols import to_json_object_text


class JobStatus(StrEnum):
    """Life cycle of one paid separation attempt (see ``catalog.transitions``)."""

    INTENT = "intent"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    NOT_SUBMITTED = "not_submitted"
    DOWNLOADED = "downloaded"
    EXPIRED = "expired"
    INCOMPLETE = "incomplete"  # finished, but its answer lacked stems its type documents


class StemStatus(StrEnum):
    """State of one stem file of a job."""

    PENDING = "pending"
    DOWNLOADED = "downloaded"
    FAILED = "failed"
    EXPIRED = "expired"


class SpendEvent(StrEnum):
    """Kinds of rows in the credit ledger; ``SUM(credits)`` over them is the credits committed."""

    INTENT = "intent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    AMBIGUOUS = "ambiguous"


class RunStatus(StrEnum):
    """Outcome of one ``stemcat run``."""

    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    DRY_RUN = "dry_run"


def _require_text(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One paid separation attempt; ``job_id`` is also the idempotency token sent in the callback URL."""

    job_id: str
    audio_id: str
    task_id: str
    separation_type: str
    attempt: int
    status: JobStatus
    credits: int
    run_id: str | None
    remote_task_id: str | None
    created_at: float
    submitted_at: float | None
    completed_at: float | None
    updated_at: float
    success_flag: str | None
    error_code: int | None
    error: str | None
    poll_count: int
    next_poll_at: float | None
    origin_url: str | None
    reconstruction_snr_db: float | None = None
    mix_path: str | None = None
    mix_sha256: str | None = None
    mix_duration_s: float | None = None
    low_snr: bool | None = None
    analyzed_at: float | None = None
    analysis_error: str | None = None
    missing_stems: str | None = None

    @property
    def missing(self) -> list[str]:
        """Documented stems the API's answer did not list (while ``incomplete``)."""
        return [name for name in (self.missing_stems or "").split(",") if name]

    @property
    def key(self) -> tuple[str, str]:
        """The (audio_id, separation_type) pair this attempt belongs to."""
        return (self.audio_id, self.separation_type)


@dataclass(frozen=True, slots=True, kw_only=True)
class StemRow:
    """One stem of a job: where to fetch it, where it was saved, and what it sounds like."""

    job_id: str
    audio_id: str
    separation_type: str
    stem: str
    # A bearer link for 14 days: kept out of repr so it does not end up in logs.
    url: str | None = None
    url_expires_at: float | None = None
    status: StemStatus = StemStatus.PENDING
    path: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    downloaded_at: float | None = None
    error: str | None = None
    peak_dbfs: float | None = None
    rms_dbfs: float | None = None
    lufs: float | None = None
    clipped_fraction: float | None = None
    silent: bool | None = None
    duration_diff_s: float | None = None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{item.name}={getattr(self, item.name)!r}" for item in fields(self) if item.name != "url"
        )
        return f"StemRow({shown}, url=<hidden>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class StemQualityRow:
    """The analysis of one downloaded stem, as stored in its ``stems`` row."""

    stem: str
    peak_dbfs: float | None
    rms_dbfs: float | None
    lufs: float | None
    clipped_fraction: float | None
    silent: bool | None
    duration_diff_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQualityRow:
    """The analysis of one job's stem set against its mix, as stored in its ``jobs`` row."""

    reconstruction_snr_db: float | None
    mix_path: str | None
    mix_duration_s: float | None
    low_snr: bool | None
    analysis_error: str | None = None
    mix_sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackRow:
    """One source song from a manifest; ``metadata`` holds the manifest's extra columns as a JSON object."""

    audio_id: str
    task_id: str | None = None
    title: str | None = None
    tags: str | None = None
    duration_s: float | None = None
    source_url: str | None = None
    model_name: str | None = None
    split: str | None = None
    metadata: str | Mapping[str, Any] | None = None
    manifest: str | None = None
    line: int | None = None
    first_seen_at: float | None = None
    updated_at: float | None = None

    def __post_init__(self) -> None:
        _require_text(self.audio_id, "audio_id")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError(f"duration_s must not be negative, got {self.duration_s!r}")
        # Normalised once so the ledger always stores canonical JSON text.
        object.__setattr__(self, "metadata", to_json_object_text(self.metadata, what="metadata"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectRow:
    """A manifest row that was refused, with the reason and the row itself as JSON."""

    reason: str
    run_id: str | None = None
    manifest: str | None = None
    line: int | None = None
    raw: str | Mapping[str, Any] | None = None
    at: float | None = None

    def __post_init__(self) -> None:
        _require_text(self.reason, "reason")
        object.__setattr__(self, "raw", _raw_row_text(self.raw))


def _raw_row_text(raw: str | Mapping[str, Any] | None) -> str | None:
    """A rejected row as JSON text; a line that is not JSON is kept as a JSON string."""
    if raw is None or not isinstance(raw, str):
        return to_json_object_text(raw, what="raw")
    try:
        json.loads(raw)
    except json.JSONDecodeError:
        return json.dumps(raw, ensure_ascii=False)
    return raw
