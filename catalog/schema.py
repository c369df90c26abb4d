"""The one declaration of every ledger table: SQLite DDL and the Parquet (pyarrow) schema derive from it.

Each column has a kind that fixes both sides: ``timestamp`` is REAL epoch seconds in SQLite and
``timestamp[us, tz=UTC]`` in Parquet; ``bool`` is INTEGER 0/1 in SQLite and ``bool`` in Parquet.
Columns with ``exported=False`` stay in SQLite only (bearer links); JSON columns marked
``mask_urls_on_export`` are exported with every URL reduced to its host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import pyarrow as pa

from stemcat.catalog.models import JobStatus, RunStatus, SpendEvent, StemStatus

ColumnKind = Literal["text", "integer", "real", "timestamp", "bool"]

SCHEMA_VERSION = 3  # 2: quality analysis columns (added to an older ledger by ALTER TABLE); 3: incomplete jobs

# SQLite function the ledger registers on its export connections (see catalog.jsoncols.mask_urls_in_json_text).
MASK_URLS_SQL_FUNCTION = "stemcat_mask_urls"

_SQLITE_TYPES: dict[ColumnKind, str] = {
    "text": "TEXT",
    "integer": "INTEGER",
    "real": "REAL",
    "timestamp": "REAL",
    "bool": "INTEGER",
}

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "text": pa.string(),
    "integer": pa.int64(),
    "real": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "bool": pa.bool_(),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its kind, a one-line description, and how it is constrained and exported."""

    name: str
    kind: ColumnKind
    doc: str
    not_null: bool = False
    constraint: str = ""
    exported: bool = True
    mask_urls_on_export: bool = False

    @property
    def sqlite_type(self) -> str:
        return _SQLITE_TYPES[self.kind]

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind]

    def ddl(self) -> str:
        parts = [_quote(self.name), self.sqlite_type]
        if self.not_null:
            parts.append("NOT NULL")
        if self.constraint:
            parts.append(self.constraint)
        return " ".join(parts)

    def arrow_field(self) -> pa.Field:
        return pa.field(
            self.name, self.arrow_type, nullable=not self.not_null, metadata={"description": self.doc}
        )

    def export_expression(self) -> str:
        """SQLite expression that yields the value in the form the Parquet writer expects."""
        if self.kind == "timestamp":
            # Integer microseconds, so pyarrow can cast straight to timestamp[us].
            return f"CAST(ROUND({_quote(self.name)} * 1000000.0) AS INTEGER)"
        if self.mask_urls_on_export:
            return f"{MASK_URLS_SQL_FUNCTION}({_quote(self.name)})"
        return _quote(self.name)


@dataclass(frozen=True, slots=True)
class Table:
    """One ledger table; ``exported`` tables get a Parquet snapshot and a DuckDB view."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    constraints: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    exported: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def export_columns(self) -> tuple[Column, ...]:
        return tuple(column for column in self.columns if column.exported)

    def arrow_schema(self) -> pa.Schema:
        """The explicit Parquet schema of this table's snapshot."""
        return pa.schema(
            [column.arrow_field() for column in self.export_columns],
            metadata={"table": self.name, "description": self.doc},
        )

    def ddl(self) -> list[str]:
        body = ",\n  ".join([column.ddl() for column in self.columns] + list(self.constraints))
        statements = [f"CREATE TABLE IF NOT EXISTS {_quote(self.name)} (\n  {body}\n)"]
        for index_columns in self.indexes:
            index_name = _quote(f"ix_{self.name}_{'_'.join(index_columns)}")
            column_list = ", ".join(_quote(name) for name in index_columns)
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {index_name} ON {_quote(self.name)} ({column_list})"
            )
        return statements

    def export_select(self) -> str:
        """SELECT that streams this table's exported columns in a stable order."""
        expressions = ", ".join(column.export_expression() for column in self.export_columns)
        order = ", ".join(_quote(name) for name in self._order_columns())
        return f"SELECT {expressions} FROM {_quote(self.name)} ORDER BY {order}"

    def _order_columns(self) -> tuple[str, ...]:
        for column in self.columns:
            if "PRIMARY KEY" in column.constraint:
                return (column.name,)
        for constraint in self.constraints:
            if constraint.startswith("PRIMARY KEY"):
                inside = constraint[constraint.index("(") + 1 : constraint.rindex(")")]
                return tuple(name.strip() for name in inside.split(","))
        return ("rowid",)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _one_of(column: str, values: Iterable[StrEnum]) -> str:
    allowed = ", ".join(f"'{value.value}'" for value in values)
    return f"CHECK ({_quote(column)} IN ({allowed}))"


TRACKS = Table(
    name="tracks",
    doc="Source songs named by manifests, with the API's details.",
    columns=(
        Column("audio_id", "text", "Suno audio id of the song (one variation of a generation task).", True, "PRIMARY KEY"),
        Column("task_id", "text", "Music-generation task id the audio belongs to."),
        Column("title", "text", "Song title."),
        Column("tags", "text", "Style tags as the API reports them."),
        Column("duration_s", "real", "Duration of the mix in seconds, as the API reports it."),
        Column("source_url", "text", "URL of the mix audio (audioUrl); may be NULL."),
        Column("model_name", "text", "Generation model name, e.g. chirp-v3-5."),
        Column("split", "text", "Dataset split pinned by the manifest, or NULL."),
        Column("metadata", "text", "JSON object of the manifest's extra columns."),
        Column("manifest", "text", "Path of the manifest that last named this song."),
        Column("line", "integer", "Line of the manifest that last named this song."),
        Column("first_seen_at", "timestamp", "When the song was first recorded.", True),
        Column("updated_at", "timestamp", "When the song's row last changed.", True),
    ),
    indexes=(("task_id",),),
)

JOBS = Table(
    name="jobs",
    doc="One row per paid separation attempt.",
    columns=(
        Column("job_id", "text", "Client-generated idempotency token (uuid4 hex), also in the callback URL.", True, "PRIMARY KEY"),
        Column("audio_id", "text", "Audio id that was separated.", True),
        Column("task_id", "text", "Music-generation task id sent with the request.", True),
        Column("separation_type", "text", "separate_vocal or split_stem.", True),
        Column("attempt", "integer", "1 for the first attempt; each forced or retried submission adds one.", True),
        Column("status", "text", "Job state: " + ", ".join(s.value for s in JobStatus) + ".", True, _one_of("status", JobStatus)),
        Column("credits", "integer", "Credits this attempt costs if executed.", True),
        Column("run_id", "text", "Run that claimed the attempt."),
        Column("remote_task_id", "text", "Separation task id returned by the API, once known."),
        Column("created_at", "timestamp", "When the intent was committed (before the paid request).", True),
        Column("submitted_at", "timestamp", "When the API's task id became known."),
        Column("completed_at", "timestamp", "When the remote task finished (API time when given)."),
        Column("updated_at", "timestamp", "When the row last changed.", True),
        Column("success_flag", "text", "Last successFlag reported by the API."),
        Column("error_code", "integer", "Last error code from the API (HTTP status or JSON code)."),
        Column("error", "text", "Last error message, if any."),
        Column("poll_count", "integer", "How many times the status was polled.", True),
        Column("next_poll_at", "timestamp", "When the status should next be polled."),
        Column("origin_url", "text", "URL of the source mix the API separated, if reported."),
        Column("reconstruction_snr_db", "real",
               "How well the stems add back up to the mix, dB: 10·log10(mix energy / residual energy)."),
        Column("mix_path", "text", "Downloaded mix, relative to the data directory (NULL until fetched)."),
        Column("mix_duration_s", "real", "Decoded duration of the mix in seconds."),
        Column("low_snr", "bool", "True when reconstruction_snr_db is below the analysis's min_snr_db."),
        Column("analyzed_at", "timestamp", "When the stems were last analysed."),
        Column("analysis_error", "text", "Why the last analysis was incomplete (e.g. no mix), if it was."),
        Column("missing_stems", "text",
               "Stems the job's type documents that its finished answer did not list, comma-separated (incomplete)."),
    ),
    constraints=("UNIQUE (audio_id, separation_type, attempt)",),
    indexes=(("status",), ("run_id",), ("remote_task_id",)),
)

STEMS = Table(
    name="stems",
    doc="Stem files of each job: where they came from, where they are, and their quality.",
    columns=(
        Column("job_id", "text", "Job that produced the stem.", True, "REFERENCES jobs (job_id)"),
        Column("audio_id", "text", "Audio id of the source song.", True),
        Column("separation_type", "text", "separate_vocal or split_stem.", True),
        Column("stem", "text", "Stem name, e.g. vocals, instrumental, drums.", True),
        Column("url", "text", "Download link (a bearer link for 14 days; never exported).", exported=False),
        Column("url_expires_at", "timestamp", "When the download link expires."),
        Column("status", "text", "Stem state: " + ", ".join(s.value for s in StemStatus) + ".", True, _one_of("status", StemStatus)),
        Column("path", "text", "File path relative to the data directory, once downloaded."),
        Column("bytes", "integer", "File size in bytes."),
        Column("sha256", "text", "SHA-256 of the file, hex."),
        Column("duration_s", "real", "Decoded duration in seconds."),
        Column("sample_rate", "integer", "Sample rate in Hz."),
        Column("channels", "integer", "Number of audio channels."),
        Column("downloaded_at", "timestamp", "When the file was downloaded and verified."),
        Column("error", "text", "Last download or analysis error, if any."),
        Column("peak_dbfs", "real", "Sample peak in dBFS, floored at -120 (NULL until analysed)."),
        Column("rms_dbfs", "real", "RMS level over all channels in dBFS, floored at -120 (NULL until analysed)."),
        Column("lufs", "real", "Integrated loudness (ITU-R BS.1770-4), LUFS; -70 when all below the absolute gate."),
        Column("clipped_fraction", "real", "Fraction of samples at full scale, |x| >= 0.999 (NULL until analysed)."),
        Column("silent", "bool", "True when the peak is below the silence threshold (NULL until analysed)."),
        Column("duration_diff_s", "real", "Stem duration minus mix duration, seconds (NULL without a mix)."),
    ),
    constraints=("PRIMARY KEY (job_id, stem)",),
    indexes=(("audio_id",), ("status",)),
)

SPEND = Table(
    name="spend",
    doc="Credit ledger: SUM(credits) is the credits committed.",
    columns=(
        Column("spend_id", "integer", "Row id, increasing.", True, "PRIMARY KEY AUTOINCREMENT"),
        Column("at", "timestamp", "When the event was recorded.", True),
        Column("run_id", "text", "Run the job belongs to."),
        Column("job_id", "text", "Job the credits are for.", True, "REFERENCES jobs (job_id)"),
        Column("audio_id", "text", "Audio id of the job.", True),
        Column("separation_type", "text", "separate_vocal or split_stem.", True),
        Column("credits", "integer", "Signed credits: +cost on intent, -cost when rejected, 0 otherwise.", True),
        Column("event", "text", "Event: " + ", ".join(e.value for e in SpendEvent) + ".", True, _one_of("event", SpendEvent)),
    ),
    indexes=(("run_id",), ("job_id",)),
)

RUNS = Table(
    name="runs",
    doc="One row per stemcat run, with its counts and the balance it observed.",
    columns=(
        Column("run_id", "text", "Run id.", True, "PRIMARY KEY"),
        Column("flow_run_id", "text", "Prefect flow run id, if any."),
        Column("started_at", "timestamp", "When the run started.", True),
        Column("ended_at", "timestamp", "When the run finished."),
        Column("manifest", "text", "Manifest path the run read."),
        Column("status", "text", "Run state: " + ", ".join(s.value for s in RunStatus) + ".", True, _one_of("status", RunStatus)),
        Column("exit_code", "integer", "Process exit code of the run."),
        Column("credits_spent", "integer", "Credits the ledger committed for this run."),
        Column("balance_before", "integer", "Credit balance observed at the start."),
        Column("balance_after", "integer", "Credit balance observed at the end."),
        Column("balance_delta", "integer", "balance_after - balance_before (negative when credits were used)."),
        Column("n_rows", "integer", "Manifest rows read."),
        Column("n_rejected", "integer", "Manifest rows rejected."),
        Column("n_skipped", "integer", "Rows skipped because they were already done or in flight."),
        Column("n_submitted", "integer", "Separation requests submitted."),
        Column("n_downloaded", "integer", "Jobs fully downloaded."),
        Column("n_failed", "integer", "Jobs or downloads that failed."),
        Column("params", "text", "Run parameters as JSON (secrets redacted)."),
        Column("summary", "text", "Run summary as JSON."),
    ),
)

CALLBACKS = Table(
    name="callbacks",
    doc="Callbacks received from the API (payload URLs are masked in the export).",
    columns=(
        Column("id", "integer", "Row id, increasing.", True, "PRIMARY KEY AUTOINCREMENT"),
        Column("token", "text", "Job id taken from the callback URL."),
        Column("remote_task_id", "text", "Separation task id named by the callback."),
        Column("code", "integer", "Code in the callback body."),
        Column("received_at", "timestamp", "When the callback arrived.", True),
        Column("payload", "text", "Callback body as JSON (URLs masked in the export).", mask_urls_on_export=True),
    ),
    indexes=(("token",),),
)

REJECTS = Table(
    name="rejects",
    doc="Manifest rows that were refused, and why.",
    columns=(
        Column("run_id", "text", "Run that read the row."),
        Column("manifest", "text", "Manifest path."),
        Column("line", "integer", "Line number in the manifest."),
        Column("reason", "text", "Why the row was rejected.", True),
        Column("raw", "text", "The row as JSON."),
        Column("at", "timestamp", "When the row was rejected.", True),
    ),
    indexes=(("run_id",),),
)

TABLES: dict[str, Table] = {
    table.name: table for table in (TRACKS, JOBS, STEMS, SPEND, RUNS, CALLBACKS, REJECTS)
}

CATALOG_TABLES: tuple[str, ...] = tuple(name for name, table in TABLES.items() if table.exported)


def arrow_schema(table: str) -> pa.Schema:
    """The declared Parquet schema of a public table."""
    return TABLES[table].arrow_schema()


def sqlite_ddl() -> list[str]:
    """Every CREATE statement of the ledger, in dependency order."""
    return [statement for table in TABLES.values() for statement in table.ddl()]
