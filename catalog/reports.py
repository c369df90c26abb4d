"""Ready-made reports over an open catalog connection (see ``open_catalog``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import duckdb
import pandas as pd

SpendGrouping = Literal["day", "type", "run"]

# Trusted view names and their orderings: the only text that reaches the SQL below.
_SPEND_QUERIES: dict[str, str] = {
    "day": "SELECT * FROM spend_by_day ORDER BY day, separation_type",
    "type": "SELECT * FROM spend_by_type ORDER BY separation_type",
    "run": "SELECT * FROM spend_by_run ORDER BY started_at NULLS LAST, run_id",
}


def spend_report(con: duckdb.DuckDBPyConnection, by: SpendGrouping = "day") -> pd.DataFrame:
    """Credits committed per UTC day, per separation type, or per run (with the balance check)."""
    try:
        sql = _SPEND_QUERIES[by]
    except KeyError:
        raise ValueError(f"by must be one of {', '.join(_SPEND_QUERIES)}, got {by!r}") from None
    return con.execute(sql).df()


def stems_report(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Stem counts, downloads, hours and silent stems per separation type and stem."""
    return con.execute("SELECT * FROM stems_summary ORDER BY separation_type, stem").df()


def run_sql(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Run a user's query; values belong in ``params`` (``?`` placeholders), never in the text."""
    return con.execute(sql, params).df() if params is not None else con.execute(sql).df()
