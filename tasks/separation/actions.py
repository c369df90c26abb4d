"""Decide, without any I/O, what a run does for one (audio_id, type) given its latest job status.

This is the heart of "never pay twice": only `SUBMIT` spends credits, and it is
chosen only when nothing for that key was ever sent (or the API said it did not
execute it), or when the user explicitly forces it for that state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stemcat.catalog.models import JobStatus


class Action(StrEnum):
    SUBMIT = "submit"          # pay for a new separation
    POLL = "poll"              # submitted earlier: ask record-info (free)
    DOWNLOAD = "download"      # separated: fetch or verify the stems (free)
    RECONCILE = "reconcile"    # an intent with no taskId: settle it before anything else
    SKIP_UNKNOWN = "skip_unknown"    # may have been charged; resubmit only when forced
    SKIP_FAILED = "skip_failed"      # the API reported a failure; resubmit only when forced
    SKIP_EXPIRED = "skip_expired"    # stems expired before download; re-separate only when forced


@dataclass(frozen=True)
class ResubmitPolicy:
    """Which paid-for-but-unusable states the user explicitly allows to be paid for again."""

    unknown: bool = False
    failed: bool = False
    expired: bool = False
    force: bool = False  # everything, even finished jobs


PAID_ACTIONS = frozenset({Action.SUBMIT})


def decide(status: str | None, policy: ResubmitPolicy = ResubmitPolicy()) -> Action:
    """The action for a key whose latest job has `status` (None: never seen)."""
    if policy.force or status is None or status == JobStatus.NOT_SUBMITTED:
        return Action.SUBMIT
    if status == JobStatus.INTENT:
        return Action.RECONCILE
    if status in (JobStatus.SUBMITTED, JobStatus.INCOMPLETE):  # incomplete: a free re-read may list the rest
        return Action.POLL
    if status in (JobStatus.SUCCEEDED, JobStatus.DOWNLOADED):
        return Action.DOWNLOAD
    if status == JobStatus.UNKNOWN:
        return Action.SUBMIT if policy.unknown else Action.SKIP_UNKNOWN
    if status == JobStatus.FAILED:
        return Action.SUBMIT if policy.failed else Action.SKIP_FAILED
    if status == JobStatus.EXPIRED:
        return Action.SUBMIT if policy.expired else Action.SKIP_EXPIRED
    raise ValueError(f"unknown job status {status!r}")


def needs_force(status: str | None, policy: ResubmitPolicy) -> bool:
    """True when submitting this key requires a new attempt beside an existing paid one."""
    return status not in (None, JobStatus.NOT_SUBMITTED) and decide(status, policy) is Action.SUBMIT
