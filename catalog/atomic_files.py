"""Crash-safe file replacement: write a temp file in the target directory, fsync, rename, fsync the directory.

Also the one checksum of a file at rest (`sha256_file`), which downloads, analysis and export verify against.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def temp_path_for(target: Path) -> Path:
    """A unique hidden sibling of ``target`` (same filesystem, so the rename is atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(written: Path, target: Path) -> None:
    """Make a finished file ``target`` durably: fsync it, rename it over ``target``, fsync the directory.

    ``written`` must be on the same filesystem (a sibling, e.g. from ``temp_path_for``).
    """
    fsync_file(written)
    os.replace(written, target)
    fsync_dir(target.parent)


@contextmanager
def replacing(target: Path, *, sync_dir: bool = True) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``target``, on any error it is removed.

    A reader of ``target`` sees the old complete file or the new complete file, never a part.
    ``sync_dir=False`` leaves the directory's fsync to a caller that writes many files into one
    directory and syncs it once at the end.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(target)
    try:
        yield temp
        if sync_dir:
            move_into_place(temp, target)
        else:
            fsync_file(temp)
            os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


@contextmanager
def creating_if_absent(target: Path) -> Iterator[Path]:
    """Like ``replacing`` but never overwrites: if ``target`` exists (or appears meanwhile) it is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(target)
    try:
        yield temp
        fsync_file(temp)
        # link() fails if the name exists, so a concurrent writer's complete file always wins.
        with contextlib.suppress(FileExistsError):
            os.link(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(target.parent)


def sweep_stale_temps(targets: Iterable[Path], *, older_than_s: float = 3600.0) -> int:
    """Remove the temp files (made by ``temp_path_for``) that killed writers left next to ``targets``.

    Only files old enough that no live writer can still be filling them are touched; returns the count.
    """
    cutoff = time.time() - older_than_s
    removed = 0
    for target in targets:
        if not target.parent.is_dir():
            continue
        for candidate in target.parent.glob(f".{glob.escape(target.name)}.*.tmp*"):
            with contextlib.suppress(FileNotFoundError):
                if candidate.stat().st_mtime < cutoff:
                    candidate.unlink()
                    removed += 1
    return removed
