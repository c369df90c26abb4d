"""Read a manifest of generated tracks in chunks, validating every row.

A manifest is CSV, JSONL or Parquet with `task_id` (the music-generation task),
optional `audio_id` (one audio variation; absent means "every variation of the
task"), optional `type` (`separate_vocal` / `split_stem`), optional `title`,
`tags` and `split`, and any other columns, kept as track metadata. Bad rows never
stop the good ones: each becomes a `Reject` with its line number and the reason.
Reading is chunked so a million-row manifest never sits in memory at once.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from stemcat.tasks.paths import KNOWN_TYPES, UnsafePathPart, check_id

KNOWN_COLUMNS = ("task_id", "audio_id", "type", "title", "tags", "split")
TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
_SNIFF_BYTES = 64 * 1024
_CONTROL = frozenset(range(32)) - {9, 10, 12, 13}
SPLIT_NAMES = frozenset({"train", "valid", "test"})


class ManifestError(Exception):
    """The manifest as a whole cannot be read (missing file, unknown format, no task_id column)."""


class ManifestRow(BaseModel):
    """One validated manifest row; `line` is 1-based as a person counts lines in the file."""

    model_config = ConfigDict(frozen=True)

    line: int
    task_id: str
    audio_id: str | None = None
    separation_type: str
    title: str | None = None
    tags: str | None = None
    split: str | None = None
    metadata: dict[str, Any] = {}

    @field_validator("task_id")
    @classmethod
    def _task_id_safe(cls, value: str) -> str:
        return check_id(value, "task_id")

    @field_validator("audio_id")
    @classmethod
    def _audio_id_safe(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "audio_id")

    @field_validator("separation_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in KNOWN_TYPES:
            raise ValueError(f"unknown type {value!r} (expected one of {sorted(KNOWN_TYPES)})")
        return value

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str | None) -> str | None:
        if value is not None and value not in SPLIT_NAMES:
            raise ValueError(f"unknown split {value!r} (expected one of {sorted(SPLIT_NAMES)})")
        return value


@dataclass(frozen=True)
class Reject:
    """A manifest row set aside, with why."""

    line: int
    reason: str
    raw: dict[str, Any]


@dataclass
class ManifestChunk:
    rows: list[ManifestRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip())


def _clean(value: Any) -> Any:
    if _blank(value):
        return None
    return value.strip() if isinstance(value, str) else value


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "row"
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return f"{where}: {message}"
    return str(error)


class _DuplicateFilter:
    """Remembers row keys by a 64-bit digest in an open-addressing table: 12 bytes a slot, 24–48 a row.

    A dict of Python ints costs about 100 bytes a row: a fifth of the 500 MB a million-row
    `--dry-run` may use. Digest 0 marks an empty slot (a real 0 is stored as 1).
    """

    _MAX_LOAD = 0.5

    def __init__(self, capacity: int = 1 << 14) -> None:
        self._digests = array("Q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        self._size = 0

    def first_line(self, key: tuple[str | None, ...], line: int) -> int | None:
        text = "\x1f".join(k or "" for k in key).encode()
        digest = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest()) or 1
        slot = self._slot_of(digest)
        if self._digests[slot]:
            return self._lines[slot]
        self._digests[slot] = digest
        self._lines[slot] = line
        self._size += 1
        if self._size > self._MAX_LOAD * len(self._digests):
            self._grow()
        return None

    def _slot_of(self, digest: int) -> int:
        """Where `digest` is, or the empty slot where it belongs (linear probing)."""
        digests = self._digests
        mask = len(digests) - 1
        slot = digest & mask
        while digests[slot] and digests[slot] != digest:
            slot = (slot + 1) & mask
        return slot

    def _grow(self) -> None:
        old = zip(self._digests, self._lines, strict=True)
        capacity = 2 * len(self._digests)
        self._digests = array("Q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        for digest, line in old:
            if digest:
                slot = self._slot_of(digest)
                self._digests[slot] = digest
                self._lines[slot] = line


def validate_record(raw: dict[str, Any], line: int, default_type: str | None) -> ManifestRow:
    """Build a `ManifestRow` from one raw record or raise with a reason a person can act on."""
    values = {k: _clean(v) for k, v in raw.items()}
    task_id = values.get("task_id")
    if task_id is None:
        raise ValueError("task_id: missing")
    separation_type = values.get("type") or default_type
    if separation_type is None:
        raise ValueError("type: missing (no per-row type and no --type default)")
    metadata = {k: v for k, v in values.items() if k not in KNOWN_COLUMNS and v is not None}
    return ManifestRow(
        line=line,
        task_id=str(task_id),
        audio_id=None if values.get("audio_id") is None else str(values["audio_id"]),
        separation_type=str(separation_type),
        title=None if values.get("title") is None else str(values["title"]),
        tags=None if values.get("tags") is None else str(values["tags"]),
        split=None if values.get("split") is None else str(values["split"]),
        metadata=metadata,
    )


def check_manifest_file(path: Path) -> None:
    """Refuse, in one line and without parsing it, a manifest that cannot be read at all.

    Missing, a directory, an unknown suffix, unreadable, empty (0 bytes), or not what its
    suffix says (binary data in a CSV/JSONL file, a Parquet file without its magic bytes).
    A text file with some undecodable bytes passes: those rows are rejected one by one.
    """
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    if not path.is_file():
        raise ManifestError(f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES | PARQUET_SUFFIXES:
        raise ManifestError(f"{path}: unknown manifest format {suffix!r} (use .csv, .jsonl or .parquet)")
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as error:
        raise ManifestError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not head:
        raise ManifestError(f"{path}: the manifest is empty (0 bytes)")
    if suffix in PARQUET_SUFFIXES:
        if not head.startswith(b"PAR1"):
            raise ManifestError(f"{path}: not a Parquet file")
        return
    controls = sum(1 for byte in head if byte in _CONTROL)
    if b"\0" in head or controls > len(head) // 100:
        raise ManifestError(f"{path}: not a text file (binary data); a {suffix} manifest must be UTF-8 text")


def _not_utf8(text: str) -> str | None:
    """Why text read with surrogateescape is not UTF-8 (its first undecodable byte), or None."""
    bad = next((c for c in text if "\udc80" <= c <= "\udcff"), None)
    return None if bad is None else f"not valid UTF-8 (byte 0x{ord(bad) - 0xDC00:02x})"


def _undecodable(record: dict[str, Any]) -> str | None:
    for column, value in record.items():
        for text in (column, value):
            if isinstance(text, str) and (reason := _not_utf8(text)):
                return f"{reason} in column {_clean_name(column)!r}"
    return None


def _clean_name(column: Any) -> str:
    return str(column).encode("utf-8", "replace").decode()[:40]


def _records(path: Path, chunk_rows: int) -> Iterator[list[tuple[int, dict[str, Any] | str]]]:
    """Yield lists of (line, record) where record is a dict, or a string saying why it is unreadable."""
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        import pandas as pd

        sep = "\t" if suffix == ".tsv" else ","
        try:
            # Undecodable bytes become lone surrogates: their rows are rejected, the rest proceed.
            reader = pd.read_csv(path, sep=sep, dtype=object, keep_default_na=False, chunksize=chunk_rows,
                                 encoding="utf-8", encoding_errors="surrogateescape")
            line = 2  # line 1 is the header
            for frame in reader:
                if "task_id" not in frame.columns:
                    raise ManifestError(f"{path}: no 'task_id' column (columns: {list(frame.columns)})")
                records = frame.to_dict(orient="records")
                yield [(line + i, _undecodable(rec) or rec) for i, rec in enumerate(records)]
                line += len(records)
        except pd.errors.EmptyDataError:
            return
        except pd.errors.ParserError as error:
            raise ManifestError(f"{path}: not a readable CSV ({error})") from error
    elif suffix in {".jsonl", ".ndjson"}:
        batch: list[tuple[int, dict[str, Any] | str]] = []
        with path.open(encoding="utf-8", errors="surrogateescape") as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                bad = _not_utf8(text)
                if bad is not None:
                    batch.append((line, bad))
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as error:
                    batch.append((line, f"not valid JSON ({error.msg})"))
                else:
                    batch.append((line, record if isinstance(record, dict) else "not a JSON object"))
                if len(batch) >= chunk_rows:
                    yield batch
                    batch = []
        if batch:
            yield batch
    elif suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        if "task_id" not in parquet.schema_arrow.names:
            raise ManifestError(f"{path}: no 'task_id' column (columns: {parquet.schema_arrow.names})")
        line = 1  # Parquet has no lines: row number, 1-based
        for record_batch in parquet.iter_batches(batch_size=chunk_rows):
            records = record_batch.to_pylist()
            yield [(line + i, rec) for i, rec in enumerate(records)]
            line += len(records)
    else:
        raise ManifestError(f"{path}: unknown manifest format {suffix!r} (use .csv, .jsonl or .parquet)")


def iter_manifest(path: Path, *, default_type: str | None, chunk_rows: int = 10_000) -> Iterator[ManifestChunk]:
    """Validate the manifest chunk by chunk; duplicates are rejected naming the first line."""
    check_manifest_file(path)
    duplicates = _DuplicateFilter()
    for records in _records(path, chunk_rows):
        chunk = ManifestChunk()
        for line, record in records:
            if isinstance(record, str):
                chunk.rejects.append(Reject(line, record, {}))
                continue
            try:
                row = validate_record(record, line, default_type)
            except (ValidationError, ValueError, UnsafePathPart) as error:
                chunk.rejects.append(Reject(line, _reason(error), _jsonable(record)))
                continue
            earlier = duplicates.first_line((row.task_id, row.audio_id, row.separation_type), line)
            if earlier is not None:
                chunk.rejects.append(Reject(line, f"duplicate of line {earlier}", _jsonable(record)))
                continue
            chunk.rows.append(row)
        yield chunk


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(record, default=str))
