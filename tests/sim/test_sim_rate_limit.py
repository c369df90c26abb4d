"""Per-key sliding-window rate limit on real time: 430 with Retry-After, and the stats that show it."""

from __future__ import annotations

import time

from .simtest_support import CREDIT, GENERATE, SimFactory, api_client, submit_body


def test_requests_over_the_window_get_430_with_retry_after(make_sim: SimFactory) -> None:
    sim = make_sim(rate_limit=5, rate_window_s=1.0)
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        answers = [client.get(CREDIT) for _ in range(4)]
        answers.append(client.post(GENERATE, json=submit_body(track, "separate_vocal")))  # submits count too
        refused = client.get(CREDIT)
        refused_submit = client.post(GENERATE, json=submit_body(track, "separate_vocal"))
        time.sleep(1.05)
        after_window = client.get(CREDIT)
    assert [a.status_code for a in answers] == [200] * 5
    assert refused.status_code == 430
    assert refused.json() == {"code": 430, "msg": "call frequency too high", "data": None}
    assert refused.headers["Retry-After"] == "1"
    assert refused_submit.status_code == 430
    assert after_window.status_code == 200
    assert len(sim.ledger()) == 1  # a refused submit is not charged
    stats = sim.stats()
    assert stats.rate_limited == 2
    assert stats.max_requests_in_window == 7
    assert stats.requests_by_route_and_status["credit"] == {"200": 5, "430": 1}


def test_keys_are_limited_separately(make_sim: SimFactory) -> None:
    sim = make_sim(rate_limit=3, rate_window_s=1.0)
    with api_client(sim, key="a") as first, api_client(sim, key="b") as second:
        first_codes = [first.get(CREDIT).status_code for _ in range(4)]
        second_codes = [second.get(CREDIT).status_code for _ in range(3)]
    assert first_codes == [200, 200, 200, 430]
    assert second_codes == [200, 200, 200]
    assert sorted(sim.stats().max_requests_in_window_by_key.values()) == [3, 4]


def test_rate_limit_can_answer_as_json_code(make_sim: SimFactory) -> None:
    sim = make_sim(rate_limit=1, rate_window_s=1.0, rate_limit_as_json=True)
    with api_client(sim) as client:
        client.get(CREDIT)
        refused = client.get(CREDIT)
    assert refused.status_code == 200 and refused.json()["code"] == 430


def test_no_limit_when_disabled(make_sim: SimFactory) -> None:
    sim = make_sim(rate_limit=None)
    with api_client(sim) as client:
        codes = {client.get(CREDIT).status_code for _ in range(30)}
    assert codes == {200}
    assert sim.stats().max_requests_in_window == 30
