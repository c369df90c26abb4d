"""What every command shares: reading the environment once, and failing in one line."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from stemcat.exit_codes import ExitCode
from stemcat.settings import Settings, SettingsError, load_settings


def fail(message: str, code: ExitCode = ExitCode.BAD_CONFIG) -> NoReturn:
    """One line on stderr (never wrapped, never a traceback), then the documented exit status."""
    typer.echo(f"stemcat: {message}", err=True)
    raise typer.Exit(int(code))


def settings() -> Settings:
    """The environment's settings, or exit 2 naming the variable that holds a bad value."""
    try:
        return load_settings()
    except SettingsError as error:
        fail(str(error))


def data_dir_or_default(value: Path | None) -> Path:
    return value if value is not None else settings().data_dir
