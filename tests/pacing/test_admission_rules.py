"""The pure admission rules every store shares: spacing, window, slow-down, pause, revocation."""

from __future__ import annotations

import bisect
import math

import pytest

from stemcat.client.ratelimit.rules import (
    CLOCK_JUMP_S,
    AdmissionBook,
    PacingParams,
    PacingState,
    after_pause,
    after_successes,
    after_throttle,
    budget_id,
    plan_slots,
    plan_stamped_slots,
)

PARAMS = PacingParams(limit=20, window_s=10.0)


def busiest_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered))


def test_planned_slots_are_evenly_spaced_and_never_overfill_a_window() -> None:
    times = plan_slots([], PacingState(), 100.0, PARAMS, 200)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[0] == 100.0
    assert min(gaps) == pytest.approx(PARAMS.guarded_window / PARAMS.limit)
    assert busiest_window(times, PARAMS.window_s) <= PARAMS.limit
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 0.97 * PARAMS.nominal_rate <= rate <= PARAMS.nominal_rate


def test_a_burst_in_the_history_pushes_the_next_slot_past_the_window() -> None:
    burst = [50.0 + 0.001 * i for i in range(20)]  # an admitted burst (e.g. by another client)
    (slot,) = plan_slots(burst, PacingState(), 50.1, PARAMS, 1)
    assert slot == pytest.approx(50.0 + PARAMS.guarded_window)


def test_throttle_halves_once_per_window_and_honours_retry_after() -> None:
    state = after_throttle(PacingState(), 10.0, 3.0, PARAMS)
    assert state.factor == 0.5 and state.not_before == 13.0 and state.throttles == 1
    again = after_throttle(state, 11.0, None, PARAMS)  # same event, reported by a call in flight
    assert again.factor == 0.5 and again.not_before == 13.0 and again.throttles == 2
    later = after_throttle(again, 10.0 + PARAMS.window_s, None, PARAMS)
    assert later.factor == 0.25
    (slot,) = plan_slots([], state, 10.0, PARAMS, 1)
    assert slot == 13.0
    slots = plan_slots([], state, 20.0, PARAMS, 2)
    assert slots[1] - slots[0] == pytest.approx(2 * PARAMS.nominal_spacing)


def test_successes_recover_gradually_up_to_full_rate() -> None:
    slow = PacingState(factor=0.125)
    one = after_successes(slow, 1, PARAMS)
    assert 0.125 < one.factor < 0.25
    assert after_successes(slow, 1000, PARAMS).factor == 1.0


def test_pause_sets_not_before() -> None:
    state = after_pause(PacingState(), 5.0, 30.0)
    assert state.not_before == 35.0 and state.pauses == 1
    assert plan_slots([], state, 6.0, PARAMS, 1) == [35.0]


def test_book_revokes_future_slots_on_throttle_and_never_reuses_tickets() -> None:
    book = AdmissionBook()
    first = book.reserve(0.0, PARAMS, 5)
    assert [s.wait_s for s in first.slots][:2] == [0.0, pytest.approx(PARAMS.nominal_spacing)]
    book.throttle(0.0, 2.0, PARAMS)
    tickets = [s.ticket for s in first.slots]
    assert book.claim(tickets) == {tickets[0]}  # due now: may be on the wire, kept
    again = book.reserve(0.0, PARAMS, 1)
    assert again.slots[0].wait_s == pytest.approx(2.0)
    assert again.slots[0].ticket not in tickets
    assert again.factor == 0.5


def test_a_cold_first_slot_counts_as_late_for_the_slots_after_it() -> None:
    planned = plan_stamped_slots([], PacingState(), 0.0, PARAMS, PARAMS.limit + 1, first_margin_s=0.5)
    (first_due, first_stamp), *rest = planned
    assert (first_due, first_stamp) == (0.0, 0.5)  # due at once, logged as if it arrived 0.5 s later
    assert rest[0][0] == pytest.approx(0.5 + PARAMS.nominal_spacing)
    assert planned[-1][0] == pytest.approx(0.5 + PARAMS.guarded_window)  # its window starts late too


def test_a_late_arrival_moves_its_admission_and_pushes_back_the_slot_a_window_later() -> None:
    params = PacingParams(limit=3, window_s=1.0)
    book = AdmissionBook()
    first, second, third = book.reserve(0.0, params, 3).slots
    book.arrived_late([first.ticket], now=0.4)  # its request was answered 0.4 s after its slot
    (fourth,) = book.reserve(0.0, params, 1).slots
    # Three admissions now sit in [second's slot, 0.4 + …]: the fourth waits a window after the
    # second, where it would have waited only a window after the first (1.1 s).
    assert fourth.wait_s == pytest.approx(second.wait_s + params.guarded_window)
    assert book.claim([first.ticket, second.ticket, third.ticket]) == {first.ticket, second.ticket, third.ticket}


def test_book_release_returns_only_future_slots() -> None:
    book = AdmissionBook()
    slots = book.reserve(0.0, PARAMS, 3).slots
    book.release([s.ticket for s in slots], now=0.0)
    assert book.claim([s.ticket for s in slots]) == {slots[0].ticket}
    assert book.reserve(0.0, PARAMS, 1).slots[0].wait_s == pytest.approx(PARAMS.nominal_spacing)


def test_book_prunes_old_entries_but_keeps_the_last_limit() -> None:
    book = AdmissionBook()
    for step in range(100):
        book.reserve(step * 100.0, PARAMS, 1)
    assert book.size == PARAMS.limit


def test_book_forgets_a_log_from_a_clock_that_went_back() -> None:
    book = AdmissionBook()
    book.reserve(CLOCK_JUMP_S * 3, PARAMS, 20)
    assert book.reserve(0.0, PARAMS, 1).slots[0].wait_s == 0.0


def test_budget_id_names_key_and_url_without_revealing_the_key() -> None:
    key = "sk-very-secret-key"
    one = budget_id("https://api.sunoapi.org/", key)
    assert one == budget_id(" https://API.sunoapi.org", key)
    assert one != budget_id("https://api.sunoapi.org", key + "x")
    assert one != budget_id("http://127.0.0.1:8765", key)
    assert key not in one and len(one) == 32


@pytest.mark.parametrize("limit, window", [(0, 1.0), (1, 0.0), (1, -1.0), (1, math.inf)])
def test_params_refuse_nonsense(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        PacingParams(limit, window)
