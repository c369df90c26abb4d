"""Checks of a run's inputs that need neither Prefect nor the API: each answers in a fraction of a second.

The CLI runs them before it starts Prefect, so a typo costs one line and exit status 2, and
nothing is created or charged. The flow meets the same conditions again (a deployment has no
CLI in front of it) and ends Failed with the same reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from stemcat.exit_codes import ExitCode
from stemcat.tasks.manifest import ManifestError, check_manifest_file
from stemcat.tasks.paths import KNOWN_TYPES


class PreflightError(ValueError):
    """An input the run cannot start with; the message is one line naming it."""

    exit_code = ExitCode.BAD_CONFIG


def check_run_inputs(manifest: Path, data_dir: Path, separation_type: str | None) -> None:
    """Refuse an unknown type, an unreadable manifest or a data directory that cannot be written."""
    if separation_type is not None and separation_type not in KNOWN_TYPES:
        raise PreflightError(f"unknown --type {separation_type!r}: choose {' or '.join(sorted(KNOWN_TYPES))}")
    try:
        check_manifest_file(manifest)
    except ManifestError as error:
        raise PreflightError(str(error)) from None
    check_writable_dir(data_dir)


def check_writable_dir(path: Path) -> None:
    """The data directory, or the nearest folder it would be created in, must be a writable directory."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise PreflightError(f"data directory {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} cannot be written to create it)"
        raise PreflightError(f"data directory {path} is not writable{where}")
