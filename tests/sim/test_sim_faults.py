"""Fault injection: every documented code, as HTTP status and as JSON code, on each route."""

from __future__ import annotations

import time

import httpx
import pytest

from stemcat.sim import FaultSpec, SimServer

from .simtest_support import (
    CREDIT,
    GENERATE,
    GENERATION,
    RECORD_INFO,
    SimFactory,
    api_client,
    record_info,
    submit,
    submit_body,
    wait_finished,
)

DOCUMENTED_CODES = [400, 401, 404, 405, 413, 429, 430, 455, 500]


@pytest.mark.parametrize("as_json", [False, True], ids=["http", "json"])
@pytest.mark.parametrize("code", DOCUMENTED_CODES)
def test_generate_fault_answers_the_code_and_charges_nothing(sim: SimServer, code: int, as_json: bool) -> None:
    track = sim.create_tracks(1)[0]
    sim.inject(FaultSpec(route="generate", code=code, as_json=as_json, match=track.audio_id))
    charges_before = len(sim.ledger())
    with api_client(sim) as client:
        faulted = client.post(GENERATE, json=submit_body(track, "separate_vocal"))
        normal = client.post(GENERATE, json=submit_body(track, "separate_vocal"))  # times=1: used up
    assert faulted.status_code == (200 if as_json else code)
    assert faulted.json()["code"] == code and faulted.json()["data"] is None
    assert normal.status_code == 200 and normal.json()["code"] == 200
    assert len(sim.ledger()) == charges_before + 1


@pytest.mark.parametrize("as_json", [False, True], ids=["http", "json"])
@pytest.mark.parametrize(("route", "path"), [("record_info", RECORD_INFO), ("credit", CREDIT), ("generation", GENERATION)])
def test_read_route_faults(sim: SimServer, route: str, path: str, as_json: bool) -> None:
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal")
        params = {"taskId": track.music_task_id if route == "generation" else task_id}
        for code in DOCUMENTED_CODES:
            sim.inject(FaultSpec(route=route, code=code, as_json=as_json))  # type: ignore[arg-type]
            answer = client.get(path, params=params)
            assert answer.status_code == (200 if as_json else code)
            assert answer.json()["code"] == code
        assert client.get(path, params=params).json()["code"] == 200


def test_times_match_and_forever(sim: SimServer) -> None:
    target, other = sim.create_tracks(2)
    sim.inject(FaultSpec(route="generate", code=455, times=2, match=target.audio_id, retry_after=0.5))
    with api_client(sim) as client:
        untouched = client.post(GENERATE, json=submit_body(other, "separate_vocal"))
        hits = [client.post(GENERATE, json=submit_body(target, "separate_vocal")) for _ in range(3)]
        sim.inject(FaultSpec(route="credit", code=500, times=-1))
        forever = [client.get(CREDIT).status_code for _ in range(5)]
        sim.clear_faults()
        cleared = client.get(CREDIT).status_code
    assert untouched.status_code == 200
    assert [h.status_code for h in hits] == [455, 455, 200]
    assert hits[0].headers["Retry-After"] == "0.5"
    assert forever == [500] * 5 and cleared == 200


def test_delay_without_code_slows_a_normal_answer(sim: SimServer) -> None:
    sim.inject(FaultSpec(route="credit", delay_s=0.3))
    with api_client(sim) as client:
        started = time.monotonic()
        answer = client.get(CREDIT)
        elapsed = time.monotonic() - started
    assert answer.status_code == 200 and elapsed >= 0.3


@pytest.mark.parametrize("code", [500, None])
def test_after_accept_creates_and_charges_the_task_then_misbehaves(make_sim: SimFactory, code: int | None) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    sim.inject(FaultSpec(route="generate", code=code, after_accept=True, delay_s=0.6))
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer k"}, timeout=0.2) as client, \
            pytest.raises(httpx.ReadTimeout):
        client.post(GENERATE, json=submit_body(track, "split_stem"))
    assert [(c.audio_id, c.credits) for c in sim.ledger()] == [(track.audio_id, 5)]
    assert len(sim.tasks()) == 1  # the ambiguous submit really exists and completes
    task_id = sim.ledger()[0].separation_task_id
    with api_client(sim) as client:
        assert wait_finished(client, task_id)["data"]["successFlag"] in ("SUCCESS", "CALLBACK_EXCEPTION")


def test_after_accept_error_code_is_answered_after_the_charge(make_sim: SimFactory) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    sim.inject(FaultSpec(route="generate", code=500, after_accept=True))
    with api_client(sim) as client:
        answer = client.post(GENERATE, json=submit_body(track, "separate_vocal"))
    assert answer.status_code == 500
    assert len(sim.ledger()) == 1 and sim.balance() == sim.config.initial_credits - 1


def test_before_accept_delay_creates_nothing(make_sim: SimFactory) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    sim.inject(FaultSpec(route="generate", code=500, delay_s=0.5))
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer k"}, timeout=0.2) as client, \
            pytest.raises(httpx.ReadTimeout):
        client.post(GENERATE, json=submit_body(track, "separate_vocal"))
    time.sleep(0.4)
    assert sim.ledger() == [] and sim.tasks() == []


def test_451_fault_makes_an_accepted_task_fail_with_451(make_sim: SimFactory) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    sim.inject(FaultSpec(route="generate", code=451, match=track.audio_id))
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal")
        data = wait_finished(client, task_id)["data"]
    assert data["successFlag"] == "GENERATE_AUDIO_FAILED"
    assert data["errorCode"] == 451 and data["response"] is None
    assert len(sim.ledger()) == 1


def test_failure_rate_uses_the_configured_error_code(make_sim: SimFactory) -> None:
    sim = make_sim(failure_rate=1.0, failure_error_code=451)
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        data = wait_finished(client, submit(client, track, "split_stem"))["data"]
    assert data["errorCode"] == 451
    assert data["successFlag"] in ("GENERATE_AUDIO_FAILED", "CREATE_TASK_FAILED")


def test_unknown_paths_and_methods_are_json_404(sim: SimServer) -> None:
    with api_client(sim) as client:
        answers = [
            client.get("/api/v1/nothing-here"),
            client.get(GENERATE),
            client.delete(CREDIT),
            client.post(RECORD_INFO),
        ]
    assert [a.status_code for a in answers] == [404] * 4
    assert all(a.json()["code"] == 404 for a in answers)


def test_record_info_needs_a_known_task_id(sim: SimServer) -> None:
    with api_client(sim) as client:
        missing = client.get(RECORD_INFO)
        unknown = client.get(RECORD_INFO, params={"taskId": "f" * 32})
        unknown_music = client.get(GENERATION, params={"taskId": "f" * 32})
    assert (missing.status_code, unknown.status_code, unknown_music.status_code) == (400, 400, 400)


def test_record_info_is_lazy_on_the_sim_clock(make_sim: SimFactory) -> None:
    sim = make_sim(processing_s=(100.0, 100.0))
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal")
        assert record_info(client, task_id)["data"]["successFlag"] == "PENDING"
        sim.advance_clock(100.0)
        assert record_info(client, task_id)["data"]["successFlag"] in ("SUCCESS", "CALLBACK_EXCEPTION")
