"""`SimServer`: the simulator as a real HTTP server on loopback, run by uvicorn in a background thread."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from stemcat.services.serving import LoopbackServer, ServiceStartError
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
        self._service: LoopbackServer | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Self:
        """Bind, start serving and return once the server accepts connections."""
        if self._service is not None:
            return self
        service = LoopbackServer(None, host=self._host, port=self._requested_port, name="suno-sim",
                                 startup_timeout_s=_STARTUP_TIMEOUT_S, stop_timeout_s=2,
                                 loop="asyncio", http="h11", ws="none", lifespan="on")
        try:  # bound first: the runtime needs the base URL (file links, callbacks) before serving
            self.port = service.bind().port
        except ServiceStartError as exc:
            raise SimServerError(str(exc)) from exc
        self._service = service
        if self.config.cache_dir is not None:
            cache_root = Path(self.config.cache_dir)
        elif self.config.songs == "realistic":
            cache_root = default_song_cache()  # minutes to render: keep them for the next simulator
        else:
            self._tempdir = tempfile.TemporaryDirectory(prefix="suno-sim-")
            cache_root = Path(self._tempdir.name)
        self._runtime = SimRuntime(self.config, self.base_url, cache_root)
        install_truncation_filter()
        service.app = build_app(self._runtime)
        try:
            self._service.start()
        except ServiceStartError as exc:
            self.stop()
            raise SimServerError(f"the simulator did not start: {exc}") from exc
        return self

    def stop(self) -> None:
        """Stop serving, stop the render workers and remove the temporary cache."""
        if self._service is not None:
            self._service.stop()
        if self._runtime is not None:
            self._runtime.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
        self._service = self._runtime = self._tempdir = None

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
