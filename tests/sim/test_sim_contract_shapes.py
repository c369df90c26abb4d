"""Every route's JSON and every callback has the keys of the matching contract file."""

from __future__ import annotations

import pytest

from stemcat.sim import FaultSpec, SimServer

from .simtest_support import (
    CREDIT,
    GENERATE,
    GENERATION,
    SimFactory,
    api_client,
    assert_same_keys,
    callback_receiver,
    contract,
    record_info,
    submit,
    submit_body,
    wait_callback_settled,
    wait_finished,
)


def test_shape_helper_rejects_a_missing_key() -> None:
    with pytest.raises(AssertionError):
        assert_same_keys({"code": 200, "msg": "x"}, contract("credit_response.json"))


def test_generate_and_credit_shapes(sim: SimServer) -> None:
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        answer = client.post(GENERATE, json=submit_body(track, "separate_vocal")).json()
        credit = client.get(CREDIT).json()
    assert_same_keys(answer, contract("generate_response.json"))
    assert_same_keys(credit, contract("credit_response.json"))
    assert isinstance(credit["data"], int)


def test_record_info_pending_then_separate_vocal(sim: SimServer) -> None:
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal")
        pending = record_info(client, task_id)
        done = wait_finished(client, task_id)
    assert_same_keys(pending, contract("record_info_pending.json"))
    assert pending["data"]["successFlag"] == "PENDING" and pending["data"]["response"] is None
    assert_same_keys(done, contract("record_info_separate_vocal.json"))
    data = done["data"]
    assert data["successFlag"] in ("SUCCESS", "CALLBACK_EXCEPTION")
    assert data["musicId"] == track.audio_id and data["taskId"] == task_id
    assert data["completeTime"] >= data["createTime"] > 1_600_000_000_000  # epoch ms
    response = data["response"]
    assert response["vocalUrl"] and response["instrumentalUrl"]
    assert response["originUrl"] == track.audio_url
    assert [k for k, v in response.items() if v is None] == [
        k for k in contract("record_info_separate_vocal.json")["data"]["response"] if k.endswith("Url")
        and k not in ("originUrl", "instrumentalUrl", "vocalUrl")
    ]


def test_record_info_split_stem(sim: SimServer) -> None:
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        done = wait_finished(client, submit(client, track, "split_stem"))
    assert_same_keys(done, contract("record_info_split_stem.json"))
    response = done["data"]["response"]
    assert response["instrumentalUrl"] is None
    stem_urls = {k: v for k, v in response.items() if k not in ("originUrl", "instrumentalUrl")}
    assert len(stem_urls) == 12 and all(isinstance(v, str) and v.endswith(".mp3") for v in stem_urls.values())


def test_record_info_failed(make_sim: SimFactory) -> None:
    sim = make_sim(failure_rate=1.0)
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        done = wait_finished(client, submit(client, track, "separate_vocal"))
    assert_same_keys(done, contract("record_info_failed.json"))
    data = done["data"]
    assert data["successFlag"] in ("GENERATE_AUDIO_FAILED", "CREATE_TASK_FAILED")
    assert data["response"] is None and data["errorCode"] == 500 and data["errorMessage"]


def test_record_info_origin_data_variant(make_sim: SimFactory) -> None:
    sim = make_sim(origin_data=True)
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        done = wait_finished(client, submit(client, track, "separate_vocal"))
    assert_same_keys(done, contract("record_info_with_origin_data.json"))
    groups = {item["stem_type_group_name"] for item in done["data"]["response"]["originData"]}
    assert groups == {"Vocals", "Instrumental"}


def test_generation_record_info_lists_both_variations(sim: SimServer) -> None:
    first, second = sim.create_tracks(2)
    assert first.music_task_id == second.music_task_id
    with api_client(sim) as client:
        body = client.get(GENERATION, params={"taskId": first.music_task_id}).json()
    assert_same_keys(body, contract("generate_record_info.json"))
    suno_data = body["data"]["response"]["sunoData"]
    assert [item["id"] for item in suno_data] == [first.audio_id, second.audio_id]
    assert suno_data[0]["audioUrl"] == first.audio_url
    assert abs(suno_data[1]["duration"] - second.duration_s) < 0.01
    assert suno_data[0]["title"] == first.title and suno_data[0]["tags"] == first.tags


@pytest.mark.parametrize(
    ("info_key", "separation_type", "fixture"),
    [
        ("vocal_removal_info", "separate_vocal", "callback_separate_vocal.json"),
        ("vocal_removal_info", "split_stem", "callback_split_stem.json"),
        ("vocal_separation_info", "separate_vocal", "callback_separation_info_variant.json"),
    ],
)
def test_success_callback_shapes(make_sim: SimFactory, info_key: str, separation_type: str, fixture: str) -> None:
    sim = make_sim(callback_info_key=info_key)
    track = sim.create_tracks(1)[0]
    with callback_receiver() as receiver, api_client(sim) as client:
        task_id = submit(client, track, separation_type, receiver.url)
        wait_callback_settled(sim, task_id)
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert_same_keys(body, contract(fixture))
    assert body["data"]["task_id"] == task_id


def test_failed_callback_shape_for_source_download_failure(make_sim: SimFactory) -> None:
    sim = make_sim()
    sim.inject(FaultSpec(route="generate", code=451))
    track = sim.create_tracks(1)[0]
    with callback_receiver() as receiver, api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal", receiver.url)
        wait_callback_settled(sim, task_id)
        data = record_info(client, task_id)["data"]
    assert_same_keys(receiver.bodies[0], contract("callback_failed.json"))
    assert receiver.bodies[0]["code"] == 451 and receiver.bodies[0]["data"]["vocal_removal_info"] is None
    assert data["successFlag"] == "GENERATE_AUDIO_FAILED" and data["errorCode"] == 451
