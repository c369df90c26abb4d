"""Rendering songs to MP3 files on disk, in worker threads, cached by song folder and file name.

Completed tasks queue their files at background priority; a download of a file that is not
on disk yet jumps the queue. Each file is rendered once per cache directory, whichever task
or route asked for it first, so separate_vocal and split_stem of one song share the work (and,
with realistic songs, every track that plays the same song). What a file contains comes from a
`SongSource` (sources.py); writing it once, atomically, across processes from diskcache.py.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Final

from stemcat.sim.config import RealisticSongs, SimConfig
from stemcat.sim.songs import song_name
from stemcat.sim.sources import make_source, realistic_fingerprint, synthetic_fingerprint
from stemcat.sim.stems import INSTRUMENT_STEMS
from stemcat.sim.synth import SongPlan

logger = logging.getLogger(__name__)

URGENT: Final[int] = 0
BACKGROUND: Final[int] = 1

FileKey = tuple[str, str]  # (cache folder: an audio id or a realistic song, file name: a stem, "instrumental" or "mix")


def cache_fingerprint(config: SimConfig) -> str:
    """Directory name (under the cache root) that changes whenever rendered audio would differ."""
    if config.songs == "realistic":
        return realistic_fingerprint(config.realistic)
    return synthetic_fingerprint(config)


def default_song_cache() -> Path:
    """Where realistic songs live when no cache_dir is given: they cost minutes to render, so they persist."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stemcat" / "sim"


class Renderer:
    """Owns the worker threads and the on-disk cache of rendered files."""

    def __init__(self, config: SimConfig, cache_root: Path) -> None:
        self._config = config
        self._source = make_source(config, cache_root)
        self.directory = self._source.directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue[tuple[int, int, FileKey | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._futures: dict[FileKey, Future[Path]] = {}
        self._started: set[FileKey] = set()
        self._workers = [
            threading.Thread(target=self._work, name=f"suno-sim-render-{i}", daemon=True)
            for i in range(config.render_workers)
        ]
        for worker in self._workers:
            worker.start()

    def plan(self, audio_id: str) -> SongPlan:
        """The (cheap, cached) plan of a song: duration and instruments."""
        return self._source.plan(audio_id)

    def path_for(self, audio_id: str, name: str) -> Path:
        return self._path(self._source.folder(audio_id), name)

    def _path(self, folder: str, name: str) -> Path:
        return self.directory / folder / f"{name}.mp3"

    def request(self, audio_id: str, name: str, *, priority: int = URGENT) -> Future[Path]:
        """A future of the file's path; queues the render unless it is on disk or already queued."""
        return self.request_file(self._source.folder(audio_id), name, priority=priority)

    def request_file(self, folder: str, name: str, *, priority: int = URGENT) -> Future[Path]:
        """`request` by cache folder (an audio id, or a realistic song's name)."""
        key = (folder, name)
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = Future()
                self._futures[key] = future
                path = self._path(*key)
                if path.exists():
                    self._started.add(key)
                    future.set_result(path)
                    return future
            elif future.done() or key in self._started or priority != URGENT:
                return future
            # Queued before at background priority, or new: (re)queue; workers skip duplicates.
            self._queue.put((priority, next(self._order), key))
            return future

    def close(self) -> None:
        """Stop the workers; unrendered requests are cancelled."""
        for _ in self._workers:
            self._queue.put((-1, next(self._order), None))
        for worker in self._workers:
            worker.join(timeout=10)
        with self._lock:
            for future in self._futures.values():
                future.cancel()

    def _work(self) -> None:
        while True:
            _, _, key = self._queue.get()
            if key is None:
                return
            with self._lock:
                if key in self._started:
                    continue
                self._started.add(key)
                future = self._futures[key]
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._render_file(*key))
            except Exception as exc:  # a failed render must reach the waiting download, not kill the worker
                logger.exception("rendering %s/%s failed", *key)
                future.set_exception(exc)

    def _render_file(self, folder: str, name: str) -> Path:
        path = self._path(folder, name)
        self._source.render(folder, name, path)
        return path


SPLIT_STEM_FILES: Final[tuple[str, ...]] = (*INSTRUMENT_STEMS, "mix")


def realistic_song_files(
    cache_dir: Path | None = None, spec: RealisticSongs | None = None, *, workers: int = 2
) -> list[dict[str, Path]]:
    """Paths of the realistic song set's files, rendering what is missing first (minutes when cold).

    One dict per song, in song order: the 12 split_stem stems and `mix` -> MP3 path. The same files
    a `songs="realistic"` simulator with this cache_dir serves; default cache: `default_song_cache()`.
    """
    spec = spec or RealisticSongs()
    config = SimConfig(songs="realistic", realistic=spec, render_workers=workers, prerender=False)
    renderer = Renderer(config, cache_dir if cache_dir is not None else default_song_cache())
    try:
        # Audio ids are hashed onto songs, so address each song's folder directly.
        songs = [
            {name: renderer.request_file(song_name(index), name) for name in SPLIT_STEM_FILES}
            for index in range(spec.count)
        ]
        futures = [future for song in songs for future in song.values()]
        wait(futures)
        return [{name: future.result() for name, future in song.items()} for song in songs]
    finally:
        renderer.close()
