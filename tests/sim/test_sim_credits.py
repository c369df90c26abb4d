"""Credits are charged at submit acceptance, every time, and refused (429, no charge) when short."""

from __future__ import annotations

import hashlib

from .simtest_support import CREDIT, GENERATE, SimFactory, api_client, submit, submit_body


def test_each_accepted_submit_is_charged_and_ledgered_without_dedupe(make_sim: SimFactory) -> None:
    sim = make_sim(initial_credits=100)
    track = sim.create_tracks(1)[0]
    with api_client(sim, key="alpha") as client:
        first = submit(client, track, "separate_vocal")
        second = submit(client, track, "separate_vocal")  # same song again: charged again
        third = submit(client, track, "split_stem")
        balance = client.get(CREDIT).json()["data"]
    assert balance == 100 - 1 - 1 - 5 == sim.balance()
    ledger = sim.ledger()
    assert [c.separation_task_id for c in ledger] == [first, second, third]
    assert [c.credits for c in ledger] == [1, 1, 5]
    assert [c.type for c in ledger] == ["separate_vocal", "separate_vocal", "split_stem"]
    assert {c.audio_id for c in ledger} == {track.audio_id}
    assert {c.music_task_id for c in ledger} == {track.music_task_id}
    assert {c.api_key_hash for c in ledger} == {hashlib.sha256(b"alpha").hexdigest()[:16]}
    assert ledger[0].at <= ledger[1].at <= ledger[2].at


def test_short_balance_answers_429_and_charges_nothing(make_sim: SimFactory) -> None:
    sim = make_sim(initial_credits=4)
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        refused = client.post(GENERATE, json=submit_body(track, "split_stem"))
        accepted = client.post(GENERATE, json=submit_body(track, "separate_vocal"))
    assert refused.status_code == 429 and refused.json()["code"] == 429
    assert accepted.status_code == 200
    assert sim.balance() == 3
    assert [c.type for c in sim.ledger()] == ["separate_vocal"]
    assert len(sim.tasks()) == 1


def test_set_balance_is_seen_by_the_credit_route(make_sim: SimFactory) -> None:
    sim = make_sim()
    sim.set_balance(7)
    with api_client(sim) as client:
        assert client.get(CREDIT).json()["data"] == 7


def test_unknown_ids_and_bad_bodies_are_400_and_free(make_sim: SimFactory) -> None:
    sim = make_sim(initial_credits=10)
    track = sim.create_tracks(1)[0]
    bad_bodies = [
        {**submit_body(track, "separate_vocal"), "audioId": "not-a-variation"},
        {**submit_body(track, "separate_vocal"), "taskId": "0" * 32},
        {**submit_body(track, "separate_vocal"), "type": "karaoke"},
        {key: value for key, value in submit_body(track, "separate_vocal").items() if key != "callBackUrl"},
        {**submit_body(track, "separate_vocal"), "callBackUrl": "ftp://127.0.0.1/x"},
    ]
    with api_client(sim) as client:
        answers = [client.post(GENERATE, json=body) for body in bad_bodies]
        not_json = client.post(GENERATE, content=b"{not json", headers={"Content-Type": "application/json"})
    assert [a.status_code for a in answers] == [400] * len(bad_bodies)
    assert not_json.status_code == 400
    assert all(a.json()["code"] == 400 for a in answers)
    assert sim.ledger() == [] and sim.balance() == 10


def test_missing_or_unknown_key_is_401(make_sim: SimFactory) -> None:
    sim = make_sim(api_keys=frozenset({"good"}))
    track = sim.create_tracks(1)[0]
    with api_client(sim, key="bad") as wrong, api_client(sim, key="good") as right:
        assert wrong.get(CREDIT).status_code == 401
        assert wrong.post(GENERATE, json=submit_body(track, "separate_vocal")).status_code == 401
        no_key = wrong.get(CREDIT, headers={"Authorization": ""})
        assert no_key.status_code == 401 and no_key.json()["code"] == 401
        assert right.get(CREDIT).status_code == 200
    assert sim.ledger() == []
