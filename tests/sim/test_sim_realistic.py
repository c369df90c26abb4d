"""Realistic songs: 44.1 kHz stereo CBR MP3 stems of a few cached songs, the mix their sum, served over HTTP.

Encoding dominates (about 4 CPU-s per 3-minute stereo file), so the set is rendered once per session
at a shortened duration; the 3-minute shape is checked on one file of the cheapest song.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemcat.sim import RealisticSongs, SimConfig, SimServer, realistic_song_files
from stemcat.sim import sources
from stemcat.sim.cli import _parser, config_from_args
from stemcat.sim.render import Renderer
from stemcat.sim.songs import realistic_plan, song_name
from stemcat.sim.stems import INSTRUMENT_STEMS, STEM_FIELDS

from .conftest import FAST
from .simtest_support import api_client, decode, snr_db, submit, wait_finished

SHORT = RealisticSongs(count=2, duration_s=6.0)  # pop and ballad: between them all 12 stems sound
SongFiles = list[dict[str, Path]]


@pytest.fixture(scope="session")
def song_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("realistic-songs")


@pytest.fixture(scope="session")
def short_set(song_cache: Path) -> SongFiles:
    return realistic_song_files(song_cache, SHORT)


def _kbps(path: Path) -> float:
    return path.stat().st_size * 8 / sf.info(str(path)).duration / 1000


def test_the_helper_returns_the_split_stem_files_of_every_song(short_set: SongFiles) -> None:
    assert len(short_set) == SHORT.count
    for index, song in enumerate(short_set):
        assert list(song) == [*INSTRUMENT_STEMS, "mix"]
        assert {path.parent.name for path in song.values()} == {song_name(index)}
        for path in song.values():
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.format) == (44100, 2, "MP3")
            assert info.frames == round(SHORT.duration_s * 44100)
            assert abs(_kbps(path) - SHORT.bitrate_kbps) < 4


def test_absent_instruments_are_digital_silence_and_present_ones_sound(short_set: SongFiles) -> None:
    for index, song in enumerate(short_set):
        plan = realistic_plan(SHORT, index)
        assert plan.silent_stems  # every song lacks something
        for stem in INSTRUMENT_STEMS:
            samples, _ = sf.read(song[stem], dtype="float32")
            rms_dbfs = 10 * np.log10(float(np.mean(samples.astype(np.float64) ** 2)) + 1e-30)
            if stem in plan.silent_stems:
                assert np.max(np.abs(samples)) == 0, stem
            else:
                assert rms_dbfs > -45, (stem, rms_dbfs)
    sounding = {stem for index in range(SHORT.count) for stem in realistic_plan(SHORT, index).instruments}
    assert sounding == set(INSTRUMENT_STEMS)


def test_the_mix_is_the_sum_of_the_stems(short_set: SongFiles) -> None:
    for song in short_set:
        mix, _ = sf.read(song["mix"], dtype="float64")
        stems = sum(sf.read(song[stem], dtype="float64")[0] for stem in INSTRUMENT_STEMS)
        assert 0.5 < np.max(np.abs(mix)) <= 1.0
        assert snr_db(mix, stems) > 18  # the pipeline flags < 12 dB


def test_a_second_call_encodes_nothing(short_set: SongFiles, song_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {path: path.stat().st_mtime_ns for song in short_set for path in song.values()}

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendered again")

    monkeypatch.setattr(sources, "encode_cbr_mp3", refuse)
    monkeypatch.setattr(sources, "render_realistic", refuse)
    again = realistic_song_files(song_cache, SHORT)
    assert again == short_set
    assert {path: path.stat().st_mtime_ns for song in again for path in song.values()} == before


def test_renderers_sharing_a_cache_encode_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RealisticSongs(count=1, duration_s=1.0)
    encoded: list[Path] = []
    real_encode = sources.encode_cbr_mp3

    def counting(path: Path, blocks: Iterable[np.ndarray], **kwargs: int) -> None:
        encoded.append(path)
        real_encode(path, blocks, **kwargs)

    monkeypatch.setattr(sources, "encode_cbr_mp3", counting)
    results: list[SongFiles] = []
    # Two helpers are two Renderers: only the cache's file locks keep them from encoding twice.
    threads = [threading.Thread(target=lambda: results.append(realistic_song_files(tmp_path, spec))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2 and results[0] == results[1]
    sounding = len(realistic_plan(spec, 0).instruments) + 1  # + mix; silent stems are copies of one silence
    assert len(encoded) == sounding + 1
    assert not [p for p in tmp_path.rglob("*.partial")]


def test_served_jobs_have_realistic_files(song_cache: Path, short_set: SongFiles) -> None:
    config = SimConfig(**{**FAST, "prerender": True}, songs="realistic", realistic=SHORT, cache_dir=song_cache)
    with SimServer(config) as sim:
        tracks = sim.create_tracks(12)
        folders = {sim.runtime.renderer.path_for(t.audio_id, "mix").parent.name for t in tracks}
        folders_in_order = [song_name(i) for i in range(SHORT.count)]
        assert folders == set(folders_in_order)  # many tracks, few songs
        track = tracks[0]
        folder = sim.runtime.renderer.path_for(track.audio_id, "mix").parent.name
        served_song = short_set[folders_in_order.index(folder)]
        truth = sim.truth(track.audio_id)
        assert track.duration_s == truth.duration_s == SHORT.duration_s
        assert (truth.sample_rate, truth.channels) == (44100, 2)
        with api_client(sim) as client:
            response = wait_finished(client, submit(client, track, "split_stem"))["data"]["response"]
            urls = {stem: response[field.camel] for stem, field in STEM_FIELDS.items()}
            urls["mix"] = response["originUrl"]
            files = {name: client.get(url) for name, url in urls.items()}
            vocal = wait_finished(client, submit(client, track, "separate_vocal"))["data"]["response"]
            pair = [decode(client.get(vocal[key]).content)[0] for key in ("vocalUrl", "instrumentalUrl", "originUrl")]
    assert len(files) == 13
    vocals, instrumental, mix = pair
    assert vocals.shape == instrumental.shape == mix.shape == (truth.frames, 2)
    assert snr_db(mix, vocals + instrumental) > 18
    for name, answer in files.items():
        assert answer.status_code == 200
        assert answer.content == served_song[name].read_bytes()
        samples, rate = decode(answer.content)
        assert rate == 44100 and samples.shape == (truth.frames, 2)
        assert (np.max(np.abs(samples)) == 0) == (name in truth.silent_stems)


def test_a_full_length_file_is_three_minutes_of_128_kbps_stereo(tmp_path: Path) -> None:
    spec = RealisticSongs(count=3)  # song 2 (rock) has the fewest instruments: the cheapest to synthesize
    plan = realistic_plan(spec, 2)
    assert plan.frames == 180 * 44100 and "bass" in plan.instruments
    renderer = Renderer(SimConfig(songs="realistic", realistic=spec, render_workers=1), tmp_path)
    try:
        path = renderer.request_file(song_name(2), "bass").result(timeout=120)
    finally:
        renderer.close()
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, 180 * 44100)
    assert abs(_kbps(path) - 128) < 2
    assert 2_800_000 < os.path.getsize(path) < 2_960_000  # x13 files: ~37 MB, like a real split_stem job


def test_the_cli_switch() -> None:
    args = _parser().parse_args(["serve", "--songs", "realistic", "--song-count", "3", "--song-duration", "60"])
    config = config_from_args(args)
    assert config.songs == "realistic"
    assert config.realistic == RealisticSongs(count=3, duration_s=60.0, bitrate_kbps=128)
    assert config_from_args(_parser().parse_args(["serve"])).songs == "synthetic"
