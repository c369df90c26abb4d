"""``OUT/metadata.parquet``: one row per track and file (the mixture and each stem), schema declared once."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stemcat.tasks.export.audio import landing
from stemcat.tasks.export.plan import MIXTURE, group_silence
from stemcat.tasks.export.records import ExportedTrack, StemQuality
from stemcat.tasks.export.state import ExportState

METADATA_FILENAME = "metadata.parquet"

_FIELDS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("track_key", pa.string(), False, "Sample key: the folder name and the WebDataset key (the audio id)."),
    ("split", pa.string(), False, "Dataset split (stable hash of task_id, or pinned by the manifest)."),
    ("role", pa.string(), False, "'mixture' or 'stem'."),
    ("stem", pa.string(), False, "File name without extension: mixture, vocals, drums, ..., other."),
    ("path", pa.string(), False, "Audio file path relative to the export root."),
    ("format", pa.string(), False, "mp3, wav or flac."),
    ("bytes", pa.int64(), False, "File size in bytes."),
    ("sha256", pa.string(), False, "SHA-256 of the file, hex."),
    ("frames", pa.int64(), False, "Decoded length in samples per channel."),
    ("duration_s", pa.float64(), False, "frames / sample_rate."),
    ("sample_rate", pa.int64(), False, "Sample rate in Hz."),
    ("channels", pa.int64(), False, "Number of channels."),
    ("method", pa.string(), False, "link or copy (the downloaded MP3 as is) or encoded (decoded, summed, converted)."),
    ("source_stems", pa.list_(pa.string()), False, "Catalog stems summed into this file ('mix' = original mix)."),
    ("clipped_samples", pa.int64(), False, "Samples clipped to full scale while encoding."),
    ("silent", pa.bool_(), True, "Catalog's silence flag (a group is silent when all its parts are); NULL = unknown."),
    ("peak_dbfs", pa.float64(), True, "Source stem's sample peak in dBFS (single-stem files only)."),
    ("rms_dbfs", pa.float64(), True, "Source stem's RMS level in dBFS (single-stem files only)."),
    ("lufs", pa.float64(), True, "Source stem's integrated loudness in LUFS (single-stem files only)."),
    ("clipped_fraction", pa.float64(), True, "Source stem's fraction of clipped samples (single-stem files only)."),
    ("duration_diff_s", pa.float64(), True, "Source stem's duration minus the mix's (single-stem files only)."),
    ("mixture_source", pa.string(), False, "mix_file (the original mix) or sum_of_stems."),
    ("audio_id", pa.string(), False, "Suno audio id (one variation of a generation)."),
    ("task_id", pa.string(), False, "Music-generation task id; decides the split."),
    ("job_id", pa.string(), False, "Catalog job whose stems were used."),
    ("separation_type", pa.string(), False, "separate_vocal or split_stem."),
    ("title", pa.string(), True, "Song title."),
    ("tags", pa.string(), True, "Style tags from the manifest or the API."),
    ("model_name", pa.string(), True, "Generation model."),
    ("manifest_metadata", pa.string(), True, "JSON object of the manifest's extra columns."),
    ("pinned_split", pa.string(), True, "Split the manifest pinned, if any."),
    ("track_duration_s", pa.float64(), True, "Duration of the song in the catalog."),
    ("reconstruction_snr_db", pa.float64(), True, "How well the stems add up to the original mix, in dB."),
    ("low_snr", pa.bool_(), True, "True when the reconstruction SNR is below the analysis threshold."),
    ("shard", pa.string(), True, "WebDataset tar holding this file, relative to the export root."),
    ("shard_member", pa.string(), True, "Member name inside the shard: {key}.{stem}.{ext}."),
    ("exported_at", pa.timestamp("us", tz="UTC"), False, "When the track was written."),
)

METADATA_SCHEMA = pa.schema(
    [pa.field(name, dtype, nullable=nullable, metadata={"description": doc}) for name, dtype, nullable, doc in _FIELDS],
    metadata={"description": "stemcat export: one row per track and audio file"},
)


def _quality(track: ExportedTrack, parts: tuple[str, ...]) -> StemQuality:
    if len(parts) != 1:
        return StemQuality()
    return track.info.stem_quality.get(parts[0], StemQuality())


def track_rows(track: ExportedTrack) -> list[dict[str, Any]]:
    """The metadata rows of one exported track, the mixture first."""
    info = track.info
    rows = []
    for file in track.files:
        quality = _quality(track, file.parts)
        extension = PurePosixPath(file.path).suffix.lstrip(".")
        is_mixture = file.name == MIXTURE
        rows.append({
            "track_key": track.key, "split": track.split, "role": "mixture" if is_mixture else "stem",
            "stem": file.name, "path": file.path, "format": extension, "bytes": file.bytes, "sha256": file.sha256,
            "frames": file.frames, "duration_s": file.frames / file.sample_rate, "sample_rate": file.sample_rate,
            "channels": file.channels, "method": file.method, "source_stems": list(file.parts),
            "clipped_samples": file.clipped_samples,
            "silent": None if is_mixture else group_silence(file.parts, info.stem_quality),
            "peak_dbfs": quality.peak_dbfs, "rms_dbfs": quality.rms_dbfs, "lufs": quality.lufs,
            "clipped_fraction": quality.clipped_fraction, "duration_diff_s": quality.duration_diff_s,
            "mixture_source": track.mixture_source, "audio_id": info.audio_id, "task_id": info.task_id,
            "job_id": info.job_id, "separation_type": info.separation_type, "title": info.title, "tags": info.tags,
            "model_name": info.model_name, "manifest_metadata": info.manifest_metadata,
            "pinned_split": info.pinned_split, "track_duration_s": info.duration_s,
            "reconstruction_snr_db": info.reconstruction_snr_db, "low_snr": info.low_snr,
            "shard": track.shard, "shard_member": f"{track.key}.{file.name}.{extension}" if track.shard else None,
            "exported_at": round(track.exported_at * 1_000_000),
        })
    return rows


def metadata_table(tracks: Iterable[ExportedTrack]) -> pa.Table:
    ordered = sorted(tracks, key=lambda t: (t.split, t.key))
    rows = [row for track in ordered for row in track_rows(track)]
    columns = {name: [row[name] for row in rows] for name in METADATA_SCHEMA.names}
    arrays = []
    for field in METADATA_SCHEMA:
        values = columns[field.name]
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=METADATA_SCHEMA)


def write_metadata(out_dir: Path, state: ExportState) -> Path:
    """Rewrite ``metadata.parquet`` from the export manifest, atomically."""
    final = out_dir / METADATA_FILENAME
    with landing(final) as temp:
        pq.write_table(metadata_table(state.tracks.values()), temp, compression="zstd")
    return final
