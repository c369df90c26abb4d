"""Which manifest rows one shard of a fanned-out run keeps.

A row belongs to shard ``stable_hash(key) % count`` where the key is its ``audio_id``, or its
``task_id`` when the row names a whole task. The hash is SHA-256, not Python's ``hash`` (salted
per process): every worker on every host must agree on the split without talking to the others.
The split only spreads work; it is not what keeps a row from being paid twice. Shards that
overlap (two manifests naming one track, a parent rerun with another shard count) are safe
because each job's claim is a unique ledger row committed before its paid request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stemcat.tasks.manifest import ManifestChunk, ManifestRow


class Shard(BaseModel):
    """Shard `index` of `count` (0-based)."""

    model_config = ConfigDict(frozen=True)
    index: int = Field(ge=0)
    count: int = Field(ge=1)

    @model_validator(mode="after")
    def _index_below_count(self) -> Shard:
        if self.index >= self.count:
            raise ValueError(f"shard_index must be below shard_count ({self.count}), got {self.index}")
        return self

    def keeps(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"


def shard_of(key: str, count: int) -> int:
    """The shard (0 ≤ shard < count) that owns `key`, the same on every host and Python process."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def row_key(row: ManifestRow) -> str:
    return row.audio_id or row.task_id


def raw_key(raw: Mapping[str, Any]) -> str:
    """A rejected row's key from what could be read of it, so one shard (not every shard) reports it."""
    for name in ("audio_id", "task_id"):
        value = raw.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if value is not None and not isinstance(value, str):
            return str(value)
    return ""


def sharded(chunks: Iterator[ManifestChunk], shard: Shard | None) -> Iterator[ManifestChunk]:
    """`chunks` with only the rows and rejects `shard` owns; all of them when `shard` is None."""
    if shard is None:
        yield from chunks
        return
    for chunk in chunks:
        kept = ManifestChunk(rows=[row for row in chunk.rows if shard.keeps(row_key(row))],
                             rejects=[reject for reject in chunk.rejects if shard.keeps(raw_key(reject.raw))])
        if kept.rows or kept.rejects:
            yield kept
