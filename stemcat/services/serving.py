"""Serve an ASGI app on loopback with uvicorn and return once it accepts connections.

Two ways to run it: ``with`` (or ``start()``/``stop()``) serves on a daemon thread, for a
long-lived service or a test's simulator; ``async with`` serves on the running event loop,
as a run's callback receiver does (a thread of its own would compete with the run's loop
for the GIL on every request). The listening socket is bound here, before uvicorn starts,
so port 0 picks a free port that is known at once, and it is bound as TCP: asyncio sets
TCP_NODELAY on accepted sockets only when the listening socket says so, and without it a
keep-alive answer can wait ~40 ms for Nagle's algorithm.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import uvicorn

STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


class ServiceStartError(RuntimeError):
    """The service could not bind its port or did not start listening in time."""


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # On the caller's loop (the main thread) uvicorn would take over SIGINT and SIGTERM and
        # hold a Ctrl-C back until it stopped: the host process keeps its own signal handling.
        yield


def bind_loopback(host: str, port: int) -> socket.socket:
    """A bound TCP socket (not yet listening) for ``host:port``; port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ServiceStartError(f"cannot bind {host}:{port}: {error}") from error
    return sock


class LoopbackServer:
    """One ASGI app served by uvicorn on ``host:port``; ``base_url`` is valid once started.

    Extra keyword arguments go to ``uvicorn.Config`` (e.g. ``lifespan="on"``, ``http="h11"``).
    An app that must know its own URL is set after ``bind()``: ``server.app = build(server.base_url)``.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "stemcat-service",
                 startup_timeout_s: float = STARTUP_TIMEOUT_S, stop_timeout_s: float = STOP_TIMEOUT_S,
                 before_start: Callable[[], None] | None = None, **config: Any) -> None:
        self.app = app
        self._host = host
        self._requested_port = port
        self._name = name
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._config = {"log_config": None, "log_level": "warning", "access_log": False, "lifespan": "off",
                        "timeout_graceful_shutdown": stop_timeout_s, **config}
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._serving: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def bind(self) -> Self:
        """Take the port now (``base_url`` becomes valid); serving starts with ``start`` or ``async with``."""
        if self._socket is None:
            self._socket = bind_loopback(self._host, self._requested_port)
            self.port = self._socket.getsockname()[1]
        return self

    def _prepare(self) -> uvicorn.Server:
        if self.app is None:
            raise ServiceStartError(f"{self._name} has no app to serve")
        self.bind()
        self._server = _QuietServer(uvicorn.Config(self.app, host=self._host, port=self.port, **self._config))
        return self._server

    # -- on a thread of its own ----------------------------------------------------------------
    def start(self) -> Self:
        """Serve on a daemon thread; returns once the server listens."""
        if self._server is not None:
            return self
        server = self._prepare()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self._socket]},
                                        name=f"{self._name}-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServiceStartError(f"{self._name} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop a threaded server (its in-flight requests get the graceful timeout)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._stop_timeout_s * 2)
        self._close_socket()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- on the running loop -------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        server = self._prepare()
        self._serving = asyncio.create_task(server.serve(sockets=[self._socket]), name=self._name)
        deadline = time.monotonic() + self._startup_timeout_s
        while not server.started:
            if self._serving.done() or time.monotonic() > deadline:
                self._serving.cancel()
                self._close_socket()
                raise ServiceStartError(f"{self._name} did not start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._serving is None or self._server is None:
            return
        self._server.should_exit = True
        # The loop keeps running meanwhile: a request arriving now is still answered.
        done, _ = await asyncio.wait({self._serving}, timeout=self._stop_timeout_s * 2)
        if not done:
            self._serving.cancel()
        self._close_socket()
        self._serving = self._server = None

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
