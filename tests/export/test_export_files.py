"""Writing tracks, shards, metadata and the datasheet from a synthetic catalog (no Prefect server needed)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from stemcat.tasks.export.audio import AudioTarget
from stemcat.tasks.export.metadata import METADATA_SCHEMA
from stemcat.tasks.export.options import ExportOptions, build_options
from stemcat.tasks.export.plan import TrackPlan
from stemcat.tasks.export.records import MixFile
from stemcat.tasks.export.splits import SplitRequest, assign_splits
from stemcat.tasks.export.state import ExportState, load_state, missing_files, new_state, save_state
from stemcat.tasks.export.steps import BatchResult, finish, plan_shards, select, shard, write_batch
from tests.export.catalog_builder import SongSpec, add_songs, stem_names

SONGS = [
    SongSpec("a0", "t0", "separate_vocal"),
    SongSpec("a1", "t0", "split_stem", silent=frozenset({"brass", "fx"})),
    SongSpec("a2", "t1", "split_stem", silent=frozenset({"woodwinds"}), duration_s=0.7, tags="jazz, calm"),
    SongSpec("a3", "t1", "separate_vocal", duration_s=0.7, tags="jazz, calm"),
    SongSpec("a4", "t2", "split_stem", sample_rate=22050, channels=2, split="test"),
    SongSpec("a5", "t3", "split_stem", duration_s=1.3, silent=frozenset({"vocals", "backing_vocals"})),
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("export-catalog")
    add_songs(data_dir, SONGS)
    return data_dir


def export(data_dir: Path, out_dir: Path, options: ExportOptions, state: ExportState | None = None) -> tuple[
        ExportState, BatchResult]:
    """What the flow does, step by step, without Prefect."""
    state = state or new_state(options.fingerprint())
    redo = frozenset(k for k, t in state.tracks.items() if missing_files(out_dir, t))
    screening = select(data_dir, options, state.exported_jobs(), redo)
    requests = [SplitRequest(c.key, c.info.task_id, c.info.pinned_split) for c, _ in screening.to_write]
    splits = assign_splits(requests, options.ratios, state.task_splits()).splits
    plans = [TrackPlan(c, state.tracks[c.key].split if c.key in state.tracks else splits[c.key], outputs)
             for c, outputs in screening.to_write]
    result = write_batch(plans, data_dir, out_dir, AudioTarget(options.format, options.sample_rate, options.channels))
    for track in result.written:
        state.add(track)
    if options.shards:
        for job in plan_shards(state, out_dir, int(options.shard_size_mb * 1024 * 1024)):
            record = shard(job, out_dir).record
            assert record is not None
            state.mark_sharded(record)
    save_state(out_dir, state)
    finish(out_dir, data_dir, state, options, "stemcat export test")
    return state, result


def _decoded(path: Path) -> np.ndarray:
    data, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return data


def test_wav_export_metadata_loads_in_pandas_and_duckdb_and_every_file_reads_back(catalog, tmp_path):
    out = tmp_path / "out"
    options = build_options(audio_format="wav", sample_rate=22050, channels=2, exclude_silent=True)
    state, result = export(catalog, out, options)
    assert not result.refused and len(state.tracks) == len(SONGS)

    frame = pd.read_parquet(out / "metadata.parquet")
    assert list(frame.columns) == METADATA_SCHEMA.names
    with duckdb.connect() as con:
        counted = con.execute("SELECT count(*), count(DISTINCT track_key) FROM read_parquet(?)",
                              [str(out / "metadata.parquet")]).fetchone()
    assert counted == (len(frame), len(SONGS))
    for row in frame.itertuples():
        path = out / row.path
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames) == (22050, 2, row.frames)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256
        assert _decoded(path).shape == (row.frames, 2)
        assert row.path == f"{row.split}/{row.track_key}/{row.stem}.wav"

    written = {(r.track_key, r.stem) for r in frame.itertuples()}
    for song in SONGS:
        expected = {"mixture"} | (set(stem_names(song.separation_type)) - song.silent)
        assert {stem for key, stem in written if key == song.audio_id} == expected, song.audio_id
    assert frame.loc[frame.track_key == "a4", "split"].unique().tolist() == ["test"]  # pinned
    assert frame.groupby("task_id").split.nunique().max() == 1
    seconds = frame[frame.stem == "mixture"].set_index("track_key").duration_s
    assert seconds["a5"] == pytest.approx(1.3, abs=1e-3) and seconds["a2"] == pytest.approx(0.7, abs=1e-3)
    sheet = (out / "README.md").read_text()
    assert "stemcat export test" in sheet and "left out" in sheet and (out / "hours_per_stem.png").stat().st_size


def test_rollup_is_the_sample_aligned_sum_of_the_remaining_stems(catalog, tmp_path):
    out = tmp_path / "out"
    state, result = export(catalog, out, build_options(audio_format="wav", rollup4=True))
    assert not result.refused
    assert set(state.tracks) == {s.audio_id for s in SONGS if s.separation_type == "split_stem"}
    tolerance = 2.5 / 32768  # 16-bit quantisation of the sum, plus the MP3 decoder's rounding
    for song in SONGS:
        if song.separation_type != "split_stem":
            continue
        track = state.tracks[song.audio_id]
        folder = out / track.split / song.audio_id
        sources = {stem: _decoded(catalog / "stems" / song.audio_id / "split_stem" / f"{stem}.mp3")
                   for stem in stem_names("split_stem")}
        other_parts = [s for s in sources if s not in ("vocals", "drums", "bass")]
        assert len(other_parts) == 9
        other = _decoded(folder / "other.wav")
        assert other.shape == sources["vocals"].shape
        np.testing.assert_allclose(other, sum(sources[p] for p in other_parts), atol=tolerance)
        np.testing.assert_allclose(_decoded(folder / "mixture.wav"), sum(sources.values()), atol=tolerance)
        np.testing.assert_allclose(_decoded(folder / "drums.wav"), sources["drums"], atol=tolerance)
        files = {f.name: f for f in track.files}
        assert set(files) == {"mixture", "vocals", "drums", "bass", "other"}
        assert files["other"].parts == tuple(other_parts)


def test_mp3_export_hard_links_stems_and_encodes_the_mixture(catalog, tmp_path):
    out = tmp_path / "out"
    state, _ = export(catalog, out, build_options())
    track = state.tracks["a1"]
    vocals = next(f for f in track.files if f.name == "vocals")
    source = catalog / "stems" / "a1" / "split_stem" / "vocals.mp3"
    assert vocals.method == "link" and (out / vocals.path).stat().st_ino == source.stat().st_ino
    mixture = next(f for f in track.files if f.name == "mixture")
    assert mixture.method == "encoded" and mixture.parts == tuple(stem_names("split_stem"))
    assert sf.info(str(out / mixture.path)).format == "MP3"
    assert track.mixture_source == "sum_of_stems"


def test_a_corrupted_source_refuses_the_track_and_the_rest_is_exported(catalog, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(catalog, data)
    victim = data / "stems" / "a2" / "split_stem" / "guitar.mp3"
    payload = bytearray(victim.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    victim.write_bytes(bytes(payload))
    out = tmp_path / "out"
    state, result = export(data, out, build_options(audio_format="flac"))
    assert [r.key for r in result.refused] == ["a2"]
    assert "sha256" in result.refused[0].reason and "guitar" in result.refused[0].reason
    assert "a2" not in state.tracks and len(state.tracks) == len(SONGS) - 1
    assert not list(out.glob("*/a2/*.flac"))
    assert "a2" not in set(pd.read_parquet(out / "metadata.parquet").track_key)


def test_the_mix_file_is_used_only_when_its_checksum_matches(catalog, tmp_path):
    options = build_options(audio_format="wav")
    screening = select(catalog, options, {}, frozenset())
    candidate, outputs = next((c, o) for c, o in screening.to_write if c.key == "a0")
    mix = catalog / "mixes" / "a0.mp3"
    mix.parent.mkdir(exist_ok=True)
    tone = 0.1 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)[:, None]
    sf.write(mix, tone, 16000, format="MP3", subtype="MPEG_LAYER_III")
    good = MixFile(path="mixes/a0.mp3", sha256=hashlib.sha256(mix.read_bytes()).hexdigest())
    bad = MixFile(path="mixes/a0.mp3", sha256="0" * 64)
    target = AudioTarget(options.format)
    for mixfile, expected in ((good, "mix_file"), (bad, "sum_of_stems")):
        plan = TrackPlan(candidate.model_copy(update={"mix": mixfile}), "train", outputs)
        out = tmp_path / expected
        result = write_batch([plan], catalog, out, target)
        track = result.written[0]
        assert track.mixture_source == expected
        mixture = _decoded(out / "train" / "a0" / "mixture.wav")
        if expected == "mix_file":
            np.testing.assert_allclose(mixture, _decoded(mix), atol=2 / 32768)
            assert track.source_sha256["mix"] == good.sha256


def test_a_downloaded_mix_is_the_mixture_verified_by_its_checksum(tmp_path):
    data = tmp_path / "data"
    add_songs(data, [SongSpec("m0", "tm", "separate_vocal", mix=True)])
    mix = data / "mixes" / "m0.mp3"
    digest = hashlib.sha256(mix.read_bytes()).hexdigest()
    (candidate, _), = select(data, build_options(), {}, frozenset()).to_write
    assert candidate.mix == MixFile(path="mixes/m0.mp3", sha256=digest)  # the ledger's mix_sha256, read back
    out = tmp_path / "out"
    state, _ = export(data, out, build_options())  # mp3: the mix itself, linked or copied
    track = state.tracks["m0"]
    mixture = next(f for f in track.files if f.name == "mixture")
    assert track.mixture_source == "mix_file" and mixture.method != "encoded"
    assert mixture.sha256 == digest == hashlib.sha256((out / mixture.path).read_bytes()).hexdigest()


def test_shards_follow_the_webdataset_convention_and_match_the_layout(catalog, tmp_path):
    out = tmp_path / "out"
    state, _ = export(catalog, out, build_options(audio_format="flac", shards=True, shard_size_mb=0.05))
    assert state.shards and all(t.shard for t in state.tracks.values())
    seen: dict[str, set[str]] = {}
    for record in state.shards:
        path = out / record.path
        assert path.stat().st_size == record.bytes
        assert record.bytes <= 0.05 * 1024 * 1024 or len(record.track_keys) == 1
        with tarfile.open(path) as archive:
            names = archive.getnames()
            assert len(names) == record.members
            for name in names:
                key, _, rest = name.partition(".")
                seen.setdefault(key, set()).add(rest)
                assert state.tracks[key].split == record.split
                data = archive.extractfile(name).read()  # type: ignore[union-attr]
                if rest == "json":
                    assert json.loads(data)["key"] == key
                else:
                    stem = rest.removesuffix(".flac")
                    file = next(f for f in state.tracks[key].files if f.name == stem)
                    assert hashlib.sha256(data).hexdigest() == file.sha256
    for key, track in state.tracks.items():
        assert seen[key] == {f"{f.name}.flac" for f in track.files} | {"json"}
    frame = pd.read_parquet(out / "metadata.parquet")
    assert frame.shard.notna().all() and (frame.shard_member == frame.track_key + "." + frame.stem + ".flac").all()


def test_state_round_trips_and_notices_missing_files(catalog, tmp_path):
    out = tmp_path / "out"
    state, _ = export(catalog, out, build_options(types=["separate_vocal"]))
    loaded = load_state(out)
    assert loaded is not None and loaded.tracks == state.tracks
    track = loaded.tracks["a0"]
    assert missing_files(out, track) == []
    (out / track.files[1].path).unlink()
    assert missing_files(out, track) == [track.files[1].path]
    again, result = export(catalog, out, build_options(types=["separate_vocal"]), state=loaded)
    assert [t.key for t in result.written] == ["a0"] and again.tracks["a0"].split == track.split
    assert missing_files(out, again.tracks["a0"]) == []


def test_sums_beyond_full_scale_are_clipped_and_counted_not_wrapped(tmp_path):
    from stemcat.tasks.export.audio import AudioHeader, encode

    loud = 0.8 * np.ones((4000, 1))
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.wav"
        sf.write(path, loud, 8000, subtype="FLOAT")
        paths.append(path)
    written = encode(paths, AudioHeader(4000, 8000, 1), 4000, AudioTarget(build_options(audio_format="wav").format),
                     tmp_path / "out" / "sum.wav")
    decoded_sum = _decoded(tmp_path / "out" / "sum.wav")
    assert written.clipped_samples == 4000 and written.frames == 4000
    assert decoded_sum.min() > 0.99  # 1.6 clipped to full scale; wrapped around it would be negative
