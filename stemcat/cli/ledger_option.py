"""``--ledger-url``: the option every command that opens the ledger takes, and how its value travels."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from stemcat.catalog.ledger.urls import is_postgres_url, masked_url, split_password
from stemcat.settings import Settings

LedgerUrlOption = Annotated[
    str | None,
    typer.Option(
        "--ledger-url",
        help="PostgreSQL ledger shared by several hosts, postgresql://user@host:port/db "
        "\\[env STEMCAT_LEDGER_URL]; unset: ledger.sqlite in the data directory.",
    ),
]


def resolve_ledger_url(value: str | None, settings: Settings) -> str | None:
    """The ledger URL to pass on, without its password (None: SQLite in the data directory).

    Flow parameters are stored by Prefect, so a password in the URL is handed to libpq through
    this process's ``PGPASSWORD`` instead (``~/.pgpass`` works as well).
    """
    url = value or settings.ledger_url
    if not url:
        return None
    if not is_postgres_url(url):
        raise typer.BadParameter(f"expected postgresql://user@host:port/database, got {masked_url(url)}",
                                 param_hint="--ledger-url")
    bare, password = split_password(url)
    if password is not None:
        os.environ["PGPASSWORD"] = password
    return bare
