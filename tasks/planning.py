"""Decide, without any I/O, what a run does for one (audio_id, type) given the ledger.

This is the heart of "never pay twice": only `SUBMIT` spends credits, and it is
chosen only when nothing for that key was ever sent (or the API said it did not
execute it), or when the user explicitly forces it for that state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    if policy.force or status is None or status == "not_submitted":
        return Action.SUBMIT
    if status == "intent":
        return Action.RECONCILE
    if status in ("submitted", "incomplete"):  # incomplete: a free re-read may list the missing stems
        return Action.POLL
    if status in ("succeeded", "downloaded"):
        return Action.DOWNLOAD
    if status == "unknown":
        return Action.SUBMIT if policy.unknown else Action.SKIP_UNKNOWN
    if status == "failed":
        return Action.SUBMIT if policy.failed else Action.SKIP_FAILED
    if status == "expired":
        return Action.SUBMIT if policy.expired else Action.SKIP_EXPIRED
    raise ValueError(f"unknown job status {status!r}")


def needs_force(status: str | None, policy: ResubmitPolicy) -> bool:
    """True when submitting this key requires a new attempt beside an existing paid one."""
    return status not in (None, "not_submitted") and decide(status, policy) is Action.SUBMIT


def next_poll_delay(previous_s: float | None, *, initial_s: float, factor: float, max_s: float) -> float:
    """Per-job poll back-off: start at `initial_s`, grow by `factor`, never beyond `max_s`."""
    if previous_s is None:
        return min(initial_s, max_s)
    return min(previous_s * factor, max_s)


def rate_limited_seconds(requests: int, *, limit: int, window_s: float) -> float:
    """Least wall time `requests` calls take at `limit` per `window_s` (paced evenly)."""
    if requests <= 0:
        return 0.0
    return requests * window_s / limit
