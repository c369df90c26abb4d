"""Typed records an export passes between its steps and keeps in its manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

MixtureSource = Literal["mix_file", "sum_of_stems"]
WriteMethod = Literal["link", "copy", "encoded"]


class StemQuality(BaseModel):
    """The catalog's analysis of one downloaded stem (every figure NULL until analysed)."""

    model_config = ConfigDict(frozen=True)

    peak_dbfs: float | None = None
    rms_dbfs: float | None = None
    lufs: float | None = None
    clipped_fraction: float | None = None
    silent: bool | None = None
    duration_diff_s: float | None = None


class SourceStem(BaseModel):
    """A downloaded stem file in DATA_DIR, as the catalog vouches for it."""

    model_config = ConfigDict(frozen=True)

    stem: str
    path: str
    sha256: str
    bytes: int
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


class MixFile(BaseModel):
    """The original mix the analysis downloaded, when the catalog holds its checksum."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str


class TrackInfo(BaseModel):
    """Descriptive facts about a track, copied from the catalog into the dataset's metadata."""

    model_config = ConfigDict(frozen=True)

    audio_id: str
    task_id: str
    job_id: str
    separation_type: str
    title: str | None = None
    tags: str | None = None
    model_name: str | None = None
    manifest_metadata: str | None = None
    pinned_split: str | None = None
    duration_s: float | None = None
    reconstruction_snr_db: float | None = None
    low_snr: bool | None = None
    stem_quality: dict[str, StemQuality] = {}


class Candidate(BaseModel):
    """A fully downloaded separation of one song, with the track-level filters already evaluated."""

    model_config = ConfigDict(frozen=True)

    info: TrackInfo
    stems: tuple[SourceStem, ...]
    mix: MixFile | None = None
    passes_duration: bool = True
    passes_snr: bool = True
    passes_tags: bool = True

    @property
    def key(self) -> str:
        """The sample key in the dataset: the audio id (letters, digits, '-', '_'; never a dot)."""
        return self.info.audio_id


class ExportedFile(BaseModel):
    """One audio file the export wrote, with what it was made from."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    bytes: int
    sha256: str
    frames: int
    sample_rate: int
    channels: int
    method: WriteMethod
    parts: tuple[str, ...]
    clipped_samples: int = 0


class ExportedTrack(BaseModel):
    """A track in the dataset: where its files are, and the catalog facts they came with."""

    key: str
    split: str
    mixture_source: MixtureSource
    files: tuple[ExportedFile, ...]
    source_sha256: dict[str, str]
    info: TrackInfo
    exported_at: float
    shard: str | None = None


class Refusal(BaseModel):
    """A track the export would not write, and why (for the report and the next run)."""

    model_config = ConfigDict(frozen=True)

    key: str
    reason: str


class ShardRecord(BaseModel):
    """One WebDataset tar file: which samples it holds and its checksum."""

    model_config = ConfigDict(frozen=True)

    path: str
    split: str
    index: int
    bytes: int
    sha256: str
    track_keys: tuple[str, ...]  # not `keys`: Prefect would take a model with .keys for a mapping
    members: int
