"""Rendering songs to MP3 files on disk, in worker threads, cached by audio id and file name.

Completed tasks queue their files at background priority; a download of a file that is not
on disk yet jumps the queue. Each file is rendered once per cache directory, whichever task
or route asked for it first, so separate_vocal and split_stem of one song share the work.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Final

import soundfile as sf

from stemcat.sim.config import SimConfig
from stemcat.sim.synth import SYNTH_VERSION, SongAudio, SongPlan, plan_song, render_song

logger = logging.getLogger(__name__)

URGENT: Final[int] = 0
BACKGROUND: Final[int] = 1
_SONGS_KEPT_IN_MEMORY: Final[int] = 6

FileKey = tuple[str, str]  # (audio id, file name: a stem, "instrumental" or "mix")


def cache_fingerprint(config: SimConfig) -> str:
    """Directory name that changes whenever rendered audio would differ."""
    parts = (
        SYNTH_VERSION,
        config.seed,
        config.sample_rate,
        config.channels,
        config.min_duration_s,
        config.max_duration_s,
        config.mp3_compression_level,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class Renderer:
    """Owns the worker threads and the on-disk cache of rendered files."""

    def __init__(self, config: SimConfig, cache_root: Path) -> None:
        self._config = config
        self.directory = cache_root / cache_fingerprint(config)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue[tuple[int, int, FileKey | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._futures: dict[FileKey, Future[Path]] = {}
        self._started: set[FileKey] = set()
        self._plans: dict[str, SongPlan] = {}
        self._songs: OrderedDict[str, SongAudio] = OrderedDict()
        self._song_locks: dict[str, threading.Lock] = {}
        self._workers = [
            threading.Thread(target=self._work, name=f"suno-sim-render-{i}", daemon=True)
            for i in range(config.render_workers)
        ]
        for worker in self._workers:
            worker.start()

    def plan(self, audio_id: str) -> SongPlan:
        """The (cheap, cached) plan of a song: duration and instruments."""
        with self._lock:
            plan = self._plans.get(audio_id)
        if plan is None:
            cfg = self._config
            plan = plan_song(
                cfg.seed,
                audio_id,
                sample_rate=cfg.sample_rate,
                channels=cfg.channels,
                min_duration_s=cfg.min_duration_s,
                max_duration_s=cfg.max_duration_s,
            )
            with self._lock:
                self._plans[audio_id] = plan
        return plan

    def path_for(self, audio_id: str, name: str) -> Path:
        return self.directory / audio_id / f"{name}.mp3"

    def request(self, audio_id: str, name: str, *, priority: int = URGENT) -> Future[Path]:
        """A future of the file's path; queues the render unless it is on disk or already queued."""
        key = (audio_id, name)
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = Future()
                self._futures[key] = future
                path = self.path_for(audio_id, name)
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

    def _render_file(self, audio_id: str, name: str) -> Path:
        song = self._song(audio_id)
        path = self.path_for(audio_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per process and thread: simulators may share one cache directory.
        partial = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.partial")
        sf.write(
            partial,
            song.file_signal(name),
            self._config.sample_rate,
            format="MP3",
            subtype="MPEG_LAYER_III",
            compression_level=self._config.mp3_compression_level,
        )
        os.replace(partial, path)
        return path

    def _song(self, audio_id: str) -> SongAudio:
        with self._lock:
            lock = self._song_locks.setdefault(audio_id, threading.Lock())
        with lock:
            with self._lock:
                song = self._songs.get(audio_id)
                if song is not None:
                    self._songs.move_to_end(audio_id)
                    return song
            song = render_song(self._config.seed, self.plan(audio_id))
            with self._lock:
                self._songs[audio_id] = song
                while len(self._songs) > _SONGS_KEPT_IN_MEMORY:
                    self._songs.popitem(last=False)
            return song
