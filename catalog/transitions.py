"""The job life cycle and what each status change writes to the credit ledger (pure logic).

    intent        -> submitted | not_submitted | unknown
    unknown       -> submitted | not_submitted | succeeded | failed | incomplete   (reconciliation)
    not_submitted -> submitted                                        (late proof that it ran)
    submitted     -> succeeded | failed | incomplete
    failed        -> succeeded | incomplete
    incomplete    -> succeeded        (a later status answer lists every documented stem; a free read)
    succeeded, downloaded, expired -> one another (downloaded only once every stem is), or incomplete
                                      (a re-read finds documented stems missing, e.g. recorded by an older stemcat)

``incomplete``: the API reported the task finished (SUCCESS) but listed fewer stems than its type
documents; the job's row names the missing ones. It is paid for and blocks a new claim like any
finished job; a later run polls it again (free) instead of submitting.

A job is *charged* in every state except ``not_submitted``. The spend rows of a job always sum to
its credits while it is charged and to zero while it is not, whichever path it took.
"""

from __future__ import annotations

from stemcat.catalog.models import JobStatus, SpendEvent

S = JobStatus

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.INTENT: frozenset({S.SUBMITTED, S.NOT_SUBMITTED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.SUBMITTED, S.NOT_SUBMITTED, S.SUCCEEDED, S.FAILED, S.INCOMPLETE}),
    S.NOT_SUBMITTED: frozenset({S.SUBMITTED}),
    S.SUBMITTED: frozenset({S.SUCCEEDED, S.FAILED, S.INCOMPLETE}),
    S.FAILED: frozenset({S.SUCCEEDED, S.INCOMPLETE}),
    S.INCOMPLETE: frozenset({S.SUCCEEDED}),
    # Once results exist, files may be fetched, go missing, or outlive their links in any order.
    S.SUCCEEDED: frozenset({S.DOWNLOADED, S.EXPIRED, S.INCOMPLETE}),
    S.DOWNLOADED: frozenset({S.SUCCEEDED, S.EXPIRED, S.INCOMPLETE}),
    S.EXPIRED: frozenset({S.SUCCEEDED, S.DOWNLOADED, S.INCOMPLETE}),
}

# Before the API's task id is known; a submit outcome may still move the job.
PRE_SUBMISSION: frozenset[JobStatus] = frozenset({S.INTENT, S.UNKNOWN, S.NOT_SUBMITTED})

# Statuses in which a job blocks a new claim of the same (audio_id, separation_type).
BLOCKING: frozenset[JobStatus] = frozenset(set(JobStatus) - {S.NOT_SUBMITTED})


def is_allowed(old: JobStatus, new: JobStatus) -> bool:
    """Whether the life cycle allows going from ``old`` to ``new`` (staying put is always allowed)."""
    return old == new or new in ALLOWED_TRANSITIONS[old]


def is_charged(status: JobStatus) -> bool:
    """Whether a job in this status counts as paid for (conservatively: unknown counts)."""
    return status != S.NOT_SUBMITTED


def spend_effect(old: JobStatus, new: JobStatus, credits: int) -> tuple[SpendEvent, int] | None:
    """The spend row a status change must write, as (event, signed credits), or None."""
    if old == new:
        return None
    if is_charged(old) and not is_charged(new):
        return (SpendEvent.REJECTED, -credits)
    if not is_charged(old) and is_charged(new):
        # The API ran a request it had refused: the credits are committed again.
        return (SpendEvent.ACCEPTED, credits)
    if old == S.INTENT and new == S.UNKNOWN:
        return (SpendEvent.AMBIGUOUS, 0)
    if old in (S.INTENT, S.UNKNOWN) and new == S.SUBMITTED:
        return (SpendEvent.ACCEPTED, 0)
    return None
