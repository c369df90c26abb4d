"""`SimServer`: the simulator as a real HTTP server on loopback, run by uvicorn in a background thread."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from stemcat.sim.app import build_app
from stemcat.sim.config import FaultSpec, SimConfig
from stemcat.sim.files import install_truncation_filter
from stemcat.sim.models import Charge, SeparationTaskView, SimStats, SimTrack, TrackTruth
from stemcat.sim.render import default_song_cache
from stemcat.sim.runtime import SimRuntime

_STARTUP_TIMEOUT_S = 15.0


class SimServerError(RuntimeError):
    """The simulator could not start (port taken, startup crash)."""


class SimServer:
    """A running simulator. Use as a context manager; `base_url` is valid once started."""

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimConfig()
        self._host = host
        self._requested_port = port
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._runtime: SimRuntime | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Self:
        """Bind, start serving and return once the server accepts connections."""
        if self._server is not None:
            return self
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket says TCP, and without it every keep-alive answer waits ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise SimServerError(f"cannot bind {self._host}:{self._requested_port}: {exc}") from exc
        self._socket = sock
        self.port = sock.getsockname()[1]
        if self.config.cache_dir is not None:
            cache_root = Path(self.config.cache_dir)
        elif self.config.songs == "realistic":
            cache_root = default_song_cache()  # minutes to render: keep them for the next simulator
        else:
            self._tempdir = tempfile.TemporaryDirectory(prefix="suno-sim-")
            cache_root = Path(self._tempdir.name)
        self._runtime = SimRuntime(self.config, self.base_url, cache_root)
        uv_config = uvicorn.Config(
            build_app(self._runtime),
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        install_truncation_filter()
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"suno-sim-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SimServerError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, stop the render workers and remove the temporary cache."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._runtime is not None:
            self._runtime.close()
        if self._socket is not None:
            self._socket.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
        self._server = self._thread = self._runtime = self._socket = self._tempdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests use ------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def runtime(self) -> SimRuntime:
        if self._runtime is None:
            raise SimServerError("the simulator is not running")
        return self._runtime

    @property
    def cache_dir(self) -> Path:
        """Where rendered files of this configuration live."""
        return self.runtime.renderer.directory

    def create_tracks(self, n: int = 20) -> list[SimTrack]:
        """Create music tasks for n tracks (audio variations, two per task) and return the n tracks."""
        return self.runtime.create_tracks(n)

    def ledger(self) -> list[Charge]:
        return self.runtime.ledger()

    def truth(self, audio_id: str) -> TrackTruth:
        truth = self.runtime.truth(audio_id)
        if truth is None:
            raise KeyError(audio_id)
        return truth

    def advance_clock(self, seconds: float) -> float:
        """Move the sim clock forward; returns the new sim time in seconds."""
        return self.runtime.advance_clock(seconds)

    def now(self) -> float:
        return self.runtime.clock.now()

    def set_balance(self, credits: int) -> None:
        self.runtime.state.set_balance(credits)

    def balance(self) -> int:
        return self.runtime.state.balance()

    def inject(self, fault: FaultSpec) -> int:
        """Activate a fault; returns its id."""
        return self.runtime.inject(fault)

    def clear_faults(self) -> None:
        self.runtime.faults.clear()

    def tasks(self) -> list[SeparationTaskView]:
        return self.runtime.task_views()

    def stats(self) -> SimStats:
        return self.runtime.stats_snapshot()
