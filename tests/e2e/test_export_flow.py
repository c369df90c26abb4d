"""`export_dataset` over a catalog made by a real flow run against the simulator."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from stemcat.catalog import JobQualityRow, Ledger, StemQualityRow, open_catalog
from stemcat.flows.export import export_dataset
from stemcat.flows.outcome import summary_of_sync
from stemcat.sim import SimConfig, SimServer, make_tracks_manifest
from stemcat.tasks.export.options import ExportSettingsError
from stemcat.tasks.export.state import load_state
from stemcat.tasks.publish import publish

from .conftest import run_flow

pytestmark = pytest.mark.e2e

TRACKS = 12  # six generation tasks, two variations each; types alternate within a task


@pytest.fixture(scope="module")
def export_sim(render_cache: Path) -> Iterator[SimServer]:
    config = SimConfig(seed=23, processing_s=(0.1, 0.3), rate_limit=None, cache_dir=render_cache,
                       min_duration_s=1.0, max_duration_s=2.0)
    with SimServer(config, port=0) as server:
        yield server


def flag_silence_from_truth(sim: SimServer, data_dir: Path) -> None:
    """Store what the analysis would find (the simulator knows which instruments a song lacks)."""
    con = open_catalog(data_dir)
    rows = con.execute("SELECT job_id, audio_id, stem FROM stems WHERE status = 'downloaded'").fetchall()
    con.close()
    by_job: dict[str, list[StemQualityRow]] = {}
    for job_id, audio_id, stem in rows:
        silent = set(sim.truth(audio_id).silent_stems)
        flag = stem in silent if stem != "instrumental" else False
        by_job.setdefault(job_id, []).append(StemQualityRow(stem=stem, peak_dbfs=None, rms_dbfs=None, lufs=None,
                                                            clipped_fraction=None, silent=flag))
    with Ledger(data_dir / "ledger.sqlite") as ledger:
        for job_id, stems in by_job.items():
            job = ledger.get_job(job_id)
            assert job is not None
            # The job's own figures stay as the flow's analysis stored them.
            kept = JobQualityRow(reconstruction_snr_db=job.reconstruction_snr_db, mix_path=job.mix_path,
                                 mix_sha256=job.mix_sha256, mix_duration_s=job.mix_duration_s, low_snr=job.low_snr,
                                 analysis_error=job.analysis_error)
            ledger.record_analysis(job_id, kept, stems)
        publish(ledger, data_dir)


def build_catalog(sim: SimServer, data_dir: Path, manifest: Path, tracks: int) -> None:
    make_tracks_manifest(sim, tracks, manifest, types=("separate_vocal", "split_stem"))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0, summary
    flag_silence_from_truth(sim, data_dir)


@pytest.fixture(scope="module")
def catalog_dir(export_sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export-e2e")
    build_catalog(export_sim, root / "data", root / "m.csv", TRACKS)
    return root / "data"


def copy_catalog(catalog_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(catalog_dir, target, ignore=shutil.ignore_patterns("locks"))
    return target


def decoded(path: Path) -> np.ndarray:
    data, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return data


def file_identities(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.suffix in {".mp3", ".wav", ".flac", ".tar"}}


def test_layout_and_shards_with_silent_stems_left_out(export_sim, catalog_dir, tmp_path):
    out = tmp_path / "dataset"
    summary = export_dataset(out=str(out), data_dir=str(catalog_dir), audio_format="wav", sample_rate=22050,
                             channels=2, exclude_silent=True, shards=True, shard_size_mb=0.25)
    assert summary["exit_code"] == 0 and summary["tracks_total"] == TRACKS and not summary["refused"]
    assert summary["shards_written"] >= 2

    meta = pd.read_parquet(out / "metadata.parquet")
    with duckdb.connect() as con:
        by_duckdb = con.execute("SELECT track_key, stem, path, frames FROM read_parquet(?) ORDER BY path",
                                [str(out / "metadata.parquet")]).fetchall()
    assert sorted(meta[["track_key", "stem", "path", "frames"]].itertuples(index=False, name=None),
                  key=lambda r: r[2]) == by_duckdb
    for row in meta.itertuples():
        audio = decoded(out / row.path)
        assert audio.shape == (row.frames, 2)
        assert sf.info(str(out / row.path)).samplerate == 22050
        truth = export_sim.truth(row.audio_id)
        assert row.frames == -(-truth.frames * 22050 // truth.sample_rate)

    for key, group in meta.groupby("track_key"):
        truth = export_sim.truth(str(key))
        separation_type = group.separation_type.iloc[0]
        stems = set(group.stem) - {"mixture"}
        if separation_type == "split_stem":
            assert stems == set(truth.instruments), key  # exactly the stems with sound
        else:
            assert stems == {"instrumental"} | ({"vocals"} & set(truth.instruments)), key
    assert meta.groupby("task_id").split.nunique().max() == 1

    members: dict[str, bytes] = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        with tarfile.open(shard) as archive:
            for name in archive.getnames():
                members[name] = archive.extractfile(name).read()  # type: ignore[union-attr]
    for row in meta.itertuples():
        assert hashlib.sha256(members[row.shard_member]).hexdigest() == row.sha256
    assert {name for name in members if name.endswith(".json")} == {f"{k}.json" for k in meta.track_key.unique()}
    sheet = (out / "README.md").read_text()
    assert f"{TRACKS} tracks" in sheet and "stemcat export" in sheet and "hours_per_stem.png" in sheet


def test_rollup_other_is_the_sum_of_the_remaining_stems(export_sim, catalog_dir, tmp_path):
    out = tmp_path / "dataset"
    summary = export_dataset(out=str(out), data_dir=str(catalog_dir), audio_format="flac", rollup4=True)
    assert summary["exit_code"] == 0
    assert summary["tracks_total"] == TRACKS // 2
    assert summary["excluded"] == {"separate_vocal cannot be rolled up to 4 stems": TRACKS // 2}
    meta = pd.read_parquet(out / "metadata.parquet")
    for key in meta.track_key.unique():
        folder = out / meta.loc[meta.track_key == key, "split"].iloc[0] / key
        sources = {p.stem: decoded(p) for p in (catalog_dir / "stems" / key / "split_stem").glob("*.mp3")}
        others = [s for s in sources if s not in ("vocals", "drums", "bass")]
        np.testing.assert_allclose(decoded(folder / "other.flac"), sum(sources[s] for s in others), atol=3e-4)
        # The mixture is the downloaded mix (its checksum matched), not the stems' sum.
        np.testing.assert_allclose(decoded(folder / "mixture.flac"), decoded(catalog_dir / "mixes" / f"{key}.mp3"),
                                   atol=2 / 32768)


def test_second_export_after_adding_tracks_moves_and_touches_nothing(export_sim, catalog_dir, tmp_path):
    data_dir = copy_catalog(catalog_dir, tmp_path)
    out = tmp_path / "dataset"
    params = dict(out=str(out), data_dir=str(data_dir), exclude_silent=True, shards=True, shard_size_mb=0.5)
    first = export_dataset(**params)
    assert first["exit_code"] == 0 and first["added"] == TRACKS
    splits_before = {k: t.split for k, t in load_state(out).tracks.items()}  # type: ignore[union-attr]
    files_before = file_identities(out)
    linked = next(out.glob("*/*/drums.mp3"))  # only split_stem tracks have drums
    source = data_dir / "stems" / linked.parent.name / "split_stem" / "drums.mp3"
    assert linked.stat().st_ino == source.stat().st_ino  # same file system: a hard link, no copy
    for key, track in load_state(out).tracks.items():  # type: ignore[union-attr]
        # The analysis downloaded each song's mix: the mixture is that file, byte for byte.
        mixture = next(f for f in track.files if f.name == "mixture")
        mix_sha256 = hashlib.sha256((data_dir / "mixes" / f"{track.info.audio_id}.mp3").read_bytes()).hexdigest()
        assert track.mixture_source == "mix_file" and mixture.sha256 == mix_sha256, key
        assert hashlib.sha256((out / mixture.path).read_bytes()).hexdigest() == mix_sha256, key

    build_catalog(export_sim, data_dir, tmp_path / "more.csv", 6)
    second = export_dataset(**params)
    assert second["exit_code"] == 0 and second["added"] == 6 and second["already_exported"] == TRACKS
    state = load_state(out)
    assert state is not None and len(state.tracks) == TRACKS + 6
    assert {k: state.tracks[k].split for k in splits_before} == splits_before
    files_after = file_identities(out)
    assert {k: files_after[k] for k in files_before} == files_before
    assert len(files_after) > len(files_before)
    meta = pd.read_parquet(out / "metadata.parquet")
    assert meta.track_key.nunique() == TRACKS + 6 and meta.shard.notna().all()

    third = export_dataset(**params)
    assert third["added"] == 0 and third["files_written"] == 0 and third["shards_written"] == 0
    assert file_identities(out) == files_after
    with pytest.raises(ExportSettingsError, match="format"):
        export_dataset(**{**params, "audio_format": "wav"})
    with pytest.raises(ExportSettingsError, match="no catalog"):
        export_dataset(**{**params, "data_dir": str(tmp_path / "nowhere")})


def test_a_corrupted_source_file_is_refused_and_reported(export_sim, catalog_dir, tmp_path):
    data_dir = copy_catalog(catalog_dir, tmp_path)
    con = open_catalog(data_dir)
    audio_id, path = con.execute("SELECT audio_id, path FROM stems WHERE separation_type = 'split_stem' "
                                 "AND stem = 'drums' ORDER BY audio_id LIMIT 1").fetchone()
    con.close()
    victim = data_dir / path
    original = victim.read_bytes()
    victim.write_bytes(original[:-100] + bytes(100))
    out = tmp_path / "dataset"
    state = export_dataset(out=str(out), data_dir=str(data_dir), audio_format="wav", return_state=True)
    assert state.is_failed() and "1 tracks or shards refused" in state.message
    summary = summary_of_sync(state)
    assert summary["exit_code"] == 1
    assert [r["key"] for r in summary["refused"]] == [audio_id]
    assert "sha256" in summary["refused"][0]["reason"]
    assert summary["tracks_total"] == TRACKS - 1
    assert audio_id not in set(pd.read_parquet(out / "metadata.parquet").track_key)
    assert not (out / "train" / audio_id).exists() or not any((out / "train" / audio_id).glob("*.wav"))
    assert f"refused {audio_id}" in (out / "README.md").read_text()

    victim.write_bytes(original)
    repaired = export_dataset(out=str(out), data_dir=str(data_dir), audio_format="wav")
    assert repaired["exit_code"] == 0 and repaired["added"] == 1 and repaired["tracks_total"] == TRACKS
