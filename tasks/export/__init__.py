"""Export the catalog as an ML dataset (`stemcat export OUT`).

Layout of OUT
-------------
``{split}/{track_key}/mixture.{ext}`` and one ``{stem}.{ext}`` per stem (MUSDB18-like; the key is
the audio id), ``metadata.parquet`` (one row per track and file), ``README.md`` (the datasheet)
with ``hours_per_stem.png``, optional ``shards/{split}/{split}-NNNNNN.tar`` (WebDataset:
``{key}.{stem}.{ext}`` and ``{key}.json`` members), and ``.stemcat-export.json``, the export
manifest that makes re-runs incremental.

Modules, pure first: ``splits`` (stable split by task id), ``options`` (validated settings),
``plan`` (filters and the files of each track), ``resample`` (block-wise channel and rate
conversion), ``records`` (typed records); then I/O: ``selection`` (catalog queries),
``audio`` (verify, link, encode), ``writer`` (one track), ``shards``, ``metadata``,
``datasheet``, ``state`` (the export manifest), and ``steps`` (the Prefect tasks the flow in
``flows/export.py`` runs).

Promises
--------
* A source file is read, linked or copied only after its size and SHA-256 match the catalog;
  a track with one bad stem is refused as a whole and reported, never half-written.
* A track's split depends only on its generation task id (or the manifest's pin), so the
  variations of one generation stay together and a later export never moves a track.
* Re-running adds tracks and shards and rewrites only ``metadata.parquet``, the datasheet and
  its chart; every audio file and shard already written is left untouched.
"""

from stemcat.tasks.export.options import AudioFormat, ExportOptions, ExportSettingsError, build_options
from stemcat.tasks.export.splits import assign_splits, parse_ratios, split_for

__all__ = [
    "AudioFormat",
    "ExportOptions",
    "ExportSettingsError",
    "assign_splits",
    "build_options",
    "parse_ratios",
    "split_for",
]
