"""Downloaded stems decode to the truth's duration and sum back to the mix."""

from __future__ import annotations

import numpy as np
import pytest

from stemcat.sim import SimServer
from stemcat.sim.stems import INSTRUMENT_STEMS, STEM_FIELDS

from .simtest_support import SimFactory, api_client, decode, snr_db, submit, wait_finished, wait_until


def _download_stems(sim: SimServer, separation_type: str) -> tuple[str, dict[str, np.ndarray], np.ndarray, int]:
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        response = wait_finished(client, submit(client, track, separation_type))["data"]["response"]
        urls = {name: response[field.camel] for name, field in STEM_FIELDS.items() if response[field.camel]}
        if response["instrumentalUrl"]:
            urls["instrumental"] = response["instrumentalUrl"]
        stems = {}
        for name, url in urls.items():
            answer = client.get(url)
            assert answer.status_code == 200 and answer.headers["content-type"] == "audio/mpeg"
            assert int(answer.headers["content-length"]) == len(answer.content)
            stems[name], rate = decode(answer.content)
        mix, mix_rate = decode(client.get(response["originUrl"]).content)
    assert rate == mix_rate == sim.config.sample_rate
    return track.audio_id, stems, mix, rate


def test_split_stem_files_sum_to_the_mix_and_match_the_truth(sim: SimServer) -> None:
    audio_id, stems, mix, rate = _download_stems(sim, "split_stem")
    truth = sim.truth(audio_id)
    assert set(stems) == set(INSTRUMENT_STEMS)
    for name, samples in stems.items():
        assert abs(len(samples) / rate - truth.stem_duration_s[name]) < 0.05
        assert samples.shape == mix.shape
        assert (np.max(np.abs(samples)) == 0) == (name in truth.silent_stems)
    assert abs(len(mix) / rate - truth.duration_s) < 0.05
    assert snr_db(mix, sum(stems.values())) > 15
    assert set(truth.instruments) | set(truth.silent_stems) == set(INSTRUMENT_STEMS)


def test_separate_vocal_files_sum_to_the_mix(sim: SimServer) -> None:
    audio_id, stems, mix, rate = _download_stems(sim, "separate_vocal")
    truth = sim.truth(audio_id)
    assert set(stems) == {"vocals", "instrumental"}
    assert abs(len(stems["instrumental"]) / rate - truth.duration_s) < 0.05
    assert snr_db(mix, stems["vocals"] + stems["instrumental"]) > 15
    assert np.max(np.abs(stems["instrumental"])) > 0  # every song has an accompaniment


def test_a_wrong_sum_is_detected(sim: SimServer) -> None:
    _, stems, mix, _ = _download_stems(sim, "separate_vocal")
    assert snr_db(mix, stems["instrumental"]) < 15 or np.max(np.abs(stems["vocals"])) == 0


@pytest.mark.parametrize("channels", [2])
def test_stereo_files(make_sim: SimFactory, channels: int) -> None:
    sim = make_sim(channels=channels, sample_rate=22050)
    audio_id, stems, mix, rate = _download_stems(sim, "separate_vocal")
    assert mix.ndim == 2 and mix.shape[1] == channels and rate == 22050
    assert sim.truth(audio_id).channels == channels
    assert snr_db(mix, stems["vocals"] + stems["instrumental"]) > 15


def test_durations_vary_within_the_configured_range(sim: SimServer) -> None:
    tracks = sim.create_tracks(8)
    durations = [sim.truth(t.audio_id).duration_s for t in tracks]
    assert all(sim.config.min_duration_s <= d <= sim.config.max_duration_s for d in durations)
    assert len(set(durations)) == len(durations)
    assert [t.duration_s for t in tracks] == durations


def test_renders_are_cached_and_shared_between_types(make_sim: SimFactory) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        vocal = wait_finished(client, submit(client, track, "separate_vocal"))["data"]["response"]["vocalUrl"]
        split = wait_finished(client, submit(client, track, "split_stem"))["data"]["response"]["vocalUrl"]
        assert vocal != split  # each task hands out its own URLs
        assert client.get(vocal).content == client.get(split).content
    rendered = sorted(p.name for p in (sim.cache_dir / track.audio_id).glob("*.mp3"))
    assert rendered.count("vocals.mp3") == 1


def test_prerender_renders_a_completed_tasks_files_before_any_download(make_sim: SimFactory) -> None:
    sim = make_sim(prerender=True)
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        wait_finished(client, submit(client, track, "split_stem"))
    folder = sim.cache_dir / track.audio_id
    wait_until(lambda: len(list(folder.glob("*.mp3"))) == len(INSTRUMENT_STEMS), timeout_s=20)
    assert sorted(p.stem for p in folder.glob("*.mp3")) == sorted(INSTRUMENT_STEMS)
