"""Callbacks: delivered to a loopback receiver, retried, CALLBACK_EXCEPTION when they cannot be."""

from __future__ import annotations

from .simtest_support import (
    SimFactory,
    api_client,
    callback_receiver,
    record_info,
    submit,
    wait_callback_settled,
)


def test_callback_carries_the_same_urls_as_record_info(make_sim: SimFactory) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    with callback_receiver() as receiver, api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal", receiver.url)
        wait_callback_settled(sim, task_id)
        data = record_info(client, task_id)["data"]
    info = receiver.bodies[0]["data"]["vocal_removal_info"]
    assert data["successFlag"] == "SUCCESS"
    assert info["vocal_url"] == data["response"]["vocalUrl"]
    assert info["instrumental_url"] == data["response"]["instrumentalUrl"]
    assert info["origin_url"] == track.audio_url
    task = sim.tasks()[0]
    assert (task.callback_status, task.callback_attempts, task.callbacks_delivered) == ("delivered", 1, 1)


def test_vocal_separation_info_key_when_configured(make_sim: SimFactory) -> None:
    sim = make_sim(callback_info_key="vocal_separation_info")
    track = sim.create_tracks(1)[0]
    with callback_receiver() as receiver, api_client(sim) as client:
        wait_callback_settled(sim, submit(client, track, "split_stem", receiver.url))
    data = receiver.bodies[0]["data"]
    assert "vocal_separation_info" in data and "vocal_removal_info" not in data
    assert len([k for k in data["vocal_separation_info"] if k != "origin_url"]) == 12


def test_failing_receiver_is_retried_then_callback_exception_keeps_urls(make_sim: SimFactory) -> None:
    sim = make_sim(callback_attempts=3)
    track = sim.create_tracks(1)[0]
    with callback_receiver(status=500) as receiver, api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal", receiver.url)
        wait_callback_settled(sim, task_id)
        data = record_info(client, task_id)["data"]
    assert receiver.hits == 3
    assert data["successFlag"] == "CALLBACK_EXCEPTION"
    assert data["response"]["vocalUrl"] and data["response"]["instrumentalUrl"]
    with api_client(sim) as again:
        assert again.get(data["response"]["vocalUrl"]).status_code == 200
    assert sim.stats().callbacks_failed == 1


def test_non_loopback_callback_is_never_sent(make_sim: SimFactory) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal", "https://api.example.com/callback")
        wait_callback_settled(sim, task_id)
        data = record_info(client, task_id)["data"]
    task = sim.tasks()[0]
    assert task.callback_attempts == 0 and task.callback_status == "failed"
    assert data["successFlag"] == "CALLBACK_EXCEPTION" and data["response"]["vocalUrl"]


def test_duplicate_callbacks_when_enabled(make_sim: SimFactory) -> None:
    sim = make_sim(duplicate_callbacks=True)
    track = sim.create_tracks(1)[0]
    with callback_receiver() as receiver, api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal", receiver.url)
        wait_callback_settled(sim, task_id)
    assert len(receiver.bodies) == 2 and receiver.bodies[0] == receiver.bodies[1]
    assert sim.tasks()[0].callbacks_delivered == 2


def test_failed_task_callback_keeps_its_failure_flag(make_sim: SimFactory) -> None:
    sim = make_sim(failure_rate=1.0)
    track = sim.create_tracks(1)[0]
    with callback_receiver(status=500) as receiver, api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal", receiver.url)
        wait_callback_settled(sim, task_id)
        data = record_info(client, task_id)["data"]
    assert receiver.hits == sim.config.callback_attempts
    assert data["successFlag"] in ("GENERATE_AUDIO_FAILED", "CREATE_TASK_FAILED")
