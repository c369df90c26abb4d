"""Writing one cache file exactly once, even when several processes share the cache directory."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_once(path: Path, write: Callable[[Path], None]) -> bool:
    """Make `path` with `write(temp_path)` unless it exists; True when this call wrote it.

    The file appears complete or not at all (temp file, fsync, rename). A lock file beside it makes
    a second process wait for the first one's render instead of encoding the same audio again.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(f".{path.name}.lock")):
        if path.exists():  # another process finished it while we waited
            return False
        # Unique per process and thread, so a killed writer's leftover never collides with a live one.
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            write(partial)
            _fsync(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    # No fsync of the folder: a rename lost in a crash only means rendering the file again.
    return True


def copy_once(source: Path, path: Path) -> bool:
    """`write_once` of a byte copy of `source` (cheaper than encoding identical audio again)."""

    def copy(partial: Path) -> None:
        partial.write_bytes(source.read_bytes())

    return write_once(path, copy)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    # flock is tied to this open file: the kernel releases it if the process dies mid-render.
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync(path: Path) -> None:
    # Before the rename: otherwise a crash can leave a complete-looking name over missing data.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
