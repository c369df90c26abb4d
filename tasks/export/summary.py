"""What an export run reports back (to the CLI and as the flow's return value)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from stemcat.exit_codes import ExitCode
from stemcat.tasks.export.records import Refusal


class ExportSummary(BaseModel):
    """Counts of one export run over one output directory."""

    out_dir: str
    data_dir: str
    tracks_total: int = 0
    added: int = 0
    rewritten: int = 0
    already_exported: int = 0
    refused: list[Refusal] = Field(default_factory=list)
    excluded: dict[str, int] = Field(default_factory=dict)
    silent_stems_left_out: int = 0
    notes: list[str] = Field(default_factory=list)
    files_written: int = 0
    bytes_written: int = 0
    shards_written: int = 0
    shard_bytes_written: int = 0
    credits_by_type: dict[str, int] = Field(default_factory=dict)
    metadata: str | None = None
    datasheet: str | None = None
    elapsed_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return ExitCode.INCOMPLETE if self.refused else ExitCode.OK  # refused: see `refused`
