"""``--storage``: where stems and the published catalog are kept, checked before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stemcat.catalog.storage import Storage, StorageConfigError, check_storage_url, open_storage
from stemcat.cli.common import fail
from stemcat.settings import Settings

StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Where stems and the published catalog are kept: a local path or s3://bucket/prefix, credentials "
        "from the AWS_* variables \\[env STEMCAT_STORAGE_URL]; unset: the data directory.",
    ),
]


def resolve_storage_url(value: str | None, settings: Settings) -> str | None:
    """The storage URL to pass on (None: the data directory); a bad one, or s3fs missing, exits 2 in one line."""
    url = value or settings.storage_url
    if not url:
        return None
    try:
        check_storage_url(url)
        open_storage(url)  # s3://… without s3fs installed fails here, not mid-run
    except StorageConfigError as error:
        fail(str(error))
    return url


def storage_or_exit(value: str | None, settings: Settings, data_dir: Path) -> Storage | None:
    """The opened storage for a reading command (None: the data directory itself)."""
    url = resolve_storage_url(value, settings)
    try:
        return open_storage(url, data_dir)
    except StorageConfigError as error:
        fail(str(error))
