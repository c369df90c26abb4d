"""The job life cycle's pure rules: every path keeps a job's spend equal to what it may have cost."""

from __future__ import annotations

from stemcat.catalog.models import JobStatus, SpendEvent
from stemcat.catalog.transitions import ALLOWED_TRANSITIONS, BLOCKING, is_allowed, is_charged, spend_effect

S = JobStatus


def _paths(start: JobStatus, depth: int) -> list[list[JobStatus]]:
    if depth == 0:
        return [[start]]
    paths = [[start]]
    for nxt in sorted(ALLOWED_TRANSITIONS[start]):
        paths.extend([start, *rest] for rest in _paths(nxt, depth - 1))
    return paths


def test_every_status_has_a_rule() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobStatus)


def test_spend_of_every_path_matches_the_charge_of_its_end() -> None:
    credits = 5
    paths = _paths(S.INTENT, 6)
    assert len(paths) > 100
    for path in paths:
        total = credits  # the intent row
        for old, new in zip(path, path[1:], strict=False):
            effect = spend_effect(old, new, credits)
            if effect is not None:
                total += effect[1]
        assert total == (credits if is_charged(path[-1]) else 0), path


def test_named_spend_events() -> None:
    assert spend_effect(S.INTENT, S.SUBMITTED, 5) == (SpendEvent.ACCEPTED, 0)
    assert spend_effect(S.INTENT, S.NOT_SUBMITTED, 5) == (SpendEvent.REJECTED, -5)
    assert spend_effect(S.INTENT, S.UNKNOWN, 5) == (SpendEvent.AMBIGUOUS, 0)
    assert spend_effect(S.UNKNOWN, S.SUBMITTED, 5) == (SpendEvent.ACCEPTED, 0)
    assert spend_effect(S.SUBMITTED, S.SUCCEEDED, 5) is None


def test_no_way_back_to_intent_and_no_unpaid_results() -> None:
    assert not any(S.INTENT in targets for targets in ALLOWED_TRANSITIONS.values())
    # Results only after the remote task is known.
    assert not is_allowed(S.INTENT, S.SUCCEEDED)
    assert not is_allowed(S.NOT_SUBMITTED, S.SUCCEEDED)
    assert not is_allowed(S.SUBMITTED, S.NOT_SUBMITTED)


def test_only_not_submitted_frees_a_key_for_a_new_claim() -> None:
    assert set(JobStatus) - BLOCKING == {S.NOT_SUBMITTED}
