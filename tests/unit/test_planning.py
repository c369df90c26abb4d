import pytest

from stemcat.tasks.separation.actions import Action, ResubmitPolicy, decide, needs_force
from stemcat.tasks.separation.planning import rate_limited_seconds
from stemcat.tasks.separation.poll_timing import next_poll_delay


@pytest.mark.parametrize(
    "status,action",
    [
        (None, Action.SUBMIT),
        ("not_submitted", Action.SUBMIT),
        ("intent", Action.RECONCILE),
        ("submitted", Action.POLL),
        ("succeeded", Action.DOWNLOAD),
        ("downloaded", Action.DOWNLOAD),
        ("unknown", Action.SKIP_UNKNOWN),
        ("failed", Action.SKIP_FAILED),
        ("expired", Action.SKIP_EXPIRED),
    ],
)
def test_default_policy_never_pays_twice(status, action):
    assert decide(status) is action
    assert not needs_force(status, ResubmitPolicy())


@pytest.mark.parametrize("flag,status", [("unknown", "unknown"), ("failed", "failed"), ("expired", "expired")])
def test_explicit_flags_allow_paying_again_only_for_their_state(flag, status):
    policy = ResubmitPolicy(**{flag: True})
    assert decide(status, policy) is Action.SUBMIT and needs_force(status, policy)
    assert decide("downloaded", policy) is Action.DOWNLOAD


def test_force_resubmits_everything():
    assert decide("downloaded", ResubmitPolicy(force=True)) is Action.SUBMIT


def test_unknown_status_is_an_error():
    with pytest.raises(ValueError):
        decide("weird")


def test_poll_backoff_grows_to_the_cap():
    delays, d = [], None
    for _ in range(6):
        d = next_poll_delay(d, initial_s=2, factor=2, max_s=10)
        delays.append(d)
    assert delays == [2, 4, 8, 10, 10, 10]


def test_rate_limited_time():
    assert rate_limited_seconds(40, limit=20, window_s=10) == 20
    assert rate_limited_seconds(0, limit=20, window_s=10) == 0
