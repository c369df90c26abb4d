"""Keep libmpg123's decoder messages off the terminal while soundfile decodes MP3.

libmpg123 prints notes such as ``Note: Illegal Audio-MPEG-Header ... Trying to resync...`` or
``[src/libmpg123/parse.c:...] error: ...`` with the C library's own stderr, i.e. straight to file
descriptor 2; libsndfile (1.2.2) exposes no switch to silence it, and Python's ``sys.stderr`` never
sees the bytes. ``quiet_native_stderr()`` points descriptor 2 at a capture file while decoding.
Threads decode at once: the first in redirects, the last out restores. Whatever else reached
descriptor 2 meanwhile (a log line from another thread, a traceback) is copied to the real stderr
when a decoder leaves; the decoder's own lines go to this module's logger at DEBUG.

Use it around the code that opens and reads an MP3::

    with quiet_native_stderr(), sf.SoundFile(path) as audio:
        for block in audio.blocks(...):
            ...
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

DECODER_LINE = re.compile(rb"^(Note: |Warning: |\[[^\]]*libmpg123[^\]]*\])")

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_capture_fd: int | None = None
_read_offset = 0
_pending = b""


def _forward(final: bool) -> list[bytes]:
    """Copy what reached the capture since the last call to the real stderr, except decoder lines (returned)."""
    global _read_offset, _pending
    assert _capture_fd is not None and _saved_fd is not None
    size = os.fstat(_capture_fd).st_size
    data = _pending + (os.pread(_capture_fd, size - _read_offset, _read_offset) if size > _read_offset else b"")
    _read_offset = max(size, _read_offset)
    if final:
        complete, _pending = data, b""
    else:  # a line still being written waits for the next call
        head, newline, _pending = data.rpartition(b"\n")
        complete = head + newline
    decoder = [line for line in complete.splitlines(keepends=True) if DECODER_LINE.match(line)]
    kept = b"".join(line for line in complete.splitlines(keepends=True) if not DECODER_LINE.match(line))
    if kept:
        os.write(_saved_fd, kept)
    return decoder


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Within the block, native writes to descriptor 2 are filtered: decoder chatter to DEBUG, the rest kept."""
    global _depth, _saved_fd, _capture_fd, _read_offset, _pending
    with _lock:
        if _depth == 0:
            _flush_python_stderr()
            try:
                saved = os.dup(2)
            except OSError:  # no stderr at all: nothing to keep quiet
                saved = None
            if saved is not None:
                capture = tempfile.TemporaryFile(prefix="stemcat-stderr-")
                _capture_fd = os.dup(capture.fileno())
                capture.close()
                _saved_fd, _read_offset, _pending = saved, 0, b""
                os.dup2(_capture_fd, 2)
        _depth += 1
    try:
        yield
    finally:
        decoder: list[bytes] = []
        with _lock:
            _depth -= 1
            if _saved_fd is not None:
                _flush_python_stderr()
                decoder = _forward(final=_depth == 0)
                if _depth == 0:
                    os.dup2(_saved_fd, 2)
                    os.close(_saved_fd)
                    os.close(_capture_fd)  # type: ignore[arg-type]
                    _saved_fd = _capture_fd = None
        for line in decoder:
            log.debug("decoder: %s", line.decode("utf-8", "replace").rstrip())
