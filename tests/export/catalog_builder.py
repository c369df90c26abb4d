"""A small synthetic catalog with real MP3 stems, built through the Ledger's public API.

Each stem is a quiet sine at its own frequency (silent stems are all zeros), so sums never
clip and every figure a test checks can be computed from the spec alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from stemcat.catalog import JobQualityRow, Ledger, StemQualityRow, TrackRow, write_snapshots
from stemcat.client import STEMS_BY_TYPE, SeparationType

AMPLITUDE = 0.05
CREDITS = {"separate_vocal": 1, "split_stem": 5}


@dataclass(frozen=True)
class SongSpec:
    audio_id: str
    task_id: str
    separation_type: str = "split_stem"
    silent: frozenset[str] = frozenset()
    duration_s: float = 1.0
    sample_rate: int = 16000
    channels: int = 1
    tags: str = "pop, calm"
    split: str | None = None
    metadata: dict[str, str] = field(default_factory=lambda: {"genre": "pop"})
    snr_db: float | None = None
    mix: bool = False  # a downloaded mix (the stems' sum) analysed with its checksum, at mixes/{audio_id}.mp3


def stem_names(separation_type: str) -> list[str]:
    return [str(s) for s in STEMS_BY_TYPE[SeparationType(separation_type)]]


def stem_signal(spec: SongSpec, stem: str) -> np.ndarray:
    frames = round(spec.duration_s * spec.sample_rate)
    if stem in spec.silent:
        return np.zeros((frames, spec.channels))
    frequency = 110.0 * (1 + stem_names(spec.separation_type).index(stem))
    t = np.arange(frames) / spec.sample_rate
    tone = AMPLITUDE * np.sin(2 * np.pi * frequency * t)
    return np.repeat(tone[:, None], spec.channels, axis=1)


def add_songs(data_dir: Path, songs: list[SongSpec], run_id: str = "build") -> None:
    """Record the songs as fully downloaded separations and publish the Parquet snapshots."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with Ledger(data_dir / "ledger.sqlite") as ledger:
        ledger.upsert_tracks([
            TrackRow(audio_id=s.audio_id, task_id=s.task_id, title=f"Song {s.audio_id}", tags=s.tags,
                     duration_s=s.duration_s, split=s.split, metadata=s.metadata) for s in songs
        ])
        for song in songs:
            job = ledger.claim(song.audio_id, song.task_id, song.separation_type, CREDITS[song.separation_type], run_id)
            if job is None:
                raise RuntimeError(f"{song.audio_id} was already claimed")
            ledger.mark_submitted(job.job_id, f"remote-{song.audio_id}")
            names = stem_names(song.separation_type)
            ledger.mark_succeeded(job.job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                                  stems=[(n, f"https://files.example.test/{song.audio_id}/{n}.mp3", None)
                                         for n in names])
            measured = []
            for name in names:
                relative = Path("stems") / song.audio_id / song.separation_type / f"{name}.mp3"
                path = data_dir / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, stem_signal(song, name), song.sample_rate, format="MP3", subtype="MPEG_LAYER_III")
                payload = path.read_bytes()
                ledger.record_stem_download(
                    job.job_id, name, path=relative.as_posix(), bytes=len(payload),
                    sha256=hashlib.sha256(payload).hexdigest(), duration_s=song.duration_s,
                    sample_rate=song.sample_rate, channels=song.channels,
                )
                silent = name in song.silent
                measured.append(StemQualityRow(stem=name, peak_dbfs=-120.0 if silent else -26.0, rms_dbfs=None,
                                               lufs=None, clipped_fraction=0.0, silent=silent))
            ledger.mark_status(job.job_id, "downloaded")
            # Stems measured, the job not against its mix (no SNR) unless the song has one.
            ledger.record_analysis(job.job_id, _job_quality(data_dir, song), measured)
        write_snapshots(ledger, data_dir)


def _job_quality(data_dir: Path, song: SongSpec) -> JobQualityRow:
    if not song.mix:
        return JobQualityRow(reconstruction_snr_db=None, mix_path=None, mix_duration_s=None, low_snr=None)
    relative = Path("mixes") / f"{song.audio_id}.mp3"
    path = data_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    mix = sum(stem_signal(song, name) for name in stem_names(song.separation_type))
    sf.write(path, mix, song.sample_rate, format="MP3", subtype="MPEG_LAYER_III")
    return JobQualityRow(reconstruction_snr_db=40.0, mix_path=relative.as_posix(),
                         mix_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), mix_duration_s=song.duration_s,
                         low_snr=False)
