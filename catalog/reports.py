"""Ready-made reports over an open catalog connection (see ``open_catalog``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

SpendGrouping = Literal["day", "week", "run", "type", "tag"]

# Trusted view names and their orderings: the only text that reaches the SQL below.
_SPEND_QUERIES: dict[str, str] = {
    "day": "SELECT * FROM spend_by_day ORDER BY day, separation_type",
    "week": "SELECT * FROM spend_by_week ORDER BY week, separation_type",
    "run": "SELECT * FROM spend_by_run ORDER BY started_at NULLS LAST, run_id",
    "type": "SELECT * FROM spend_by_type ORDER BY separation_type",
    "tag": "SELECT * FROM spend_by_tag ORDER BY credits DESC, tag, separation_type",
}


def spend_report(con: duckdb.DuckDBPyConnection, by: SpendGrouping = "day") -> pd.DataFrame:
    """Credits committed per UTC day or ISO week, per run (with the balance check), per type, or per tag."""
    try:
        sql = _SPEND_QUERIES[by]
    except KeyError:
        raise ValueError(f"by must be one of {', '.join(_SPEND_QUERIES)}, got {by!r}") from None
    return con.execute(sql).df()


def stems_report(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Stem counts, downloads, hours and silent stems per separation type and stem."""
    return con.execute("SELECT * FROM stems_summary ORDER BY separation_type, stem").df()


def quality_report(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per type and stem: how many were analysed and silent, loudness, peaks, clipping, length differences."""
    return con.execute("SELECT * FROM quality_by_stem ORDER BY separation_type, stem").df()


def track_quality_report(con: duckdb.DuckDBPyConnection, *, low_snr_only: bool = False) -> pd.DataFrame:
    """Per analysed job: reconstruction SNR, the low-SNR flag, silent stems and the largest length difference."""
    where = " WHERE low_snr" if low_snr_only else ""
    return con.execute(
        f"SELECT * FROM track_quality{where} ORDER BY reconstruction_snr_db NULLS FIRST, audio_id, separation_type"
    ).df()


def failures_report(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Failed jobs and stems, rejected manifest rows and quality problems, counted by reason."""
    return con.execute("SELECT * FROM failures_by_reason ORDER BY n DESC, source, status, reason").df()


def expiring_report(con: duckdb.DuckDBPyConnection, days: float = 3.0) -> pd.DataFrame:
    """Stems not downloaded yet whose links expire within ``days`` days, soonest first."""
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    return con.execute(
        "SELECT * FROM expiring_stems WHERE days_left <= ? ORDER BY days_left, audio_id, stem", [float(days)]
    ).df()


def usable_report(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Credits per minute of usable (downloaded, non-silent) stem audio, per type and in all."""
    return con.execute(
        "SELECT * FROM credits_per_usable_minute ORDER BY separation_type = 'all', separation_type"
    ).df()


def run_sql(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Run a user's query; values belong in ``params`` (``?`` placeholders), never in the text."""
    return con.execute(sql, params).df() if params is not None else con.execute(sql).df()
