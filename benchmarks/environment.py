"""Where a benchmark session runs: scratch directories, an isolated rate store, one Prefect server.

Every subprocess (flow runs, the baseline, download runners) gets the same environment: the
benchmark's Prefect API, a state directory of its own (so the per-key rate budgets never touch
the user's), quiet logging and a throwaway API key (the simulator accepts any).
The Prefect server is the one `stemcat run` would start on its own (the ephemeral server),
started once here so its 10–15 s start-up is not charged to every run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from benchmarks.pg_cluster import Cluster, start_cluster

ROOT = Path(__file__).resolve().parents[1]
BENCH_API_KEY = "bench-key-not-secret"
_PREFECT_START_TIMEOUT_S = 120.0


def default_cache_dir() -> Path:
    """Rendered simulator audio survives between benchmark sessions here (rendering is the slow part)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stemcat-bench"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BenchEnv:
    """Scratch space and a Prefect server for one session; a context manager."""

    def __init__(self, *, workdir: Path | None = None, cache_dir: Path | None = None, keep: bool = False) -> None:
        self.root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="stemcat-bench-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.cache_dir = cache_dir or default_cache_dir()
        self.keep = keep or workdir is not None
        self.prefect_start_s = 0.0
        self._prefect: subprocess.Popen[bytes] | None = None
        self._counter = 0
        self.env: dict[str, str] = {}
        self._postgres: Cluster | None = None
        self._postgres_started = False
        self._resources = contextlib.ExitStack()

    def __enter__(self) -> Self:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        prefect_home = self.root / "prefect"
        prefect_home.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "SUNO_API_KEY": BENCH_API_KEY,
            "XDG_STATE_HOME": str(self.root / "state"),
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "ERROR",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.env.pop("PREFECT_API_URL", None)
        self._start_prefect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._resources.close()
        if self._prefect is not None:
            self._prefect.terminate()
            try:
                self._prefect.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._prefect.kill()
                self._prefect.wait()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _start_prefect(self) -> None:
        import prefect

        port = _free_port()
        started = time.perf_counter()
        self._prefect = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on"],
            env={**self.env, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        api_url = f"http://127.0.0.1:{port}/api"
        deadline = started + _PREFECT_START_TIMEOUT_S
        while True:
            if self._prefect.poll() is not None:
                raise RuntimeError("the Prefect server exited during start-up")
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError("the Prefect server did not start")
            time.sleep(0.2)
        self.prefect_start_s = time.perf_counter() - started
        self.env["PREFECT_API_URL"] = api_url

    def prefect_cpu_s(self) -> float | None:
        """CPU-seconds the Prefect server process has used so far (from /proc; None where unreadable)."""
        if self._prefect is None:
            return None
        try:
            fields = Path(f"/proc/{self._prefect.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def postgres(self) -> Cluster | None:
        """The session's PostgreSQL server (started on first use, for rows 10 and 11), or None where none can run."""
        if not self._postgres_started:
            self._postgres_started = True
            self._postgres = self._resources.enter_context(start_cluster())
        return self._postgres

    def scratch(self, name: str) -> Path:
        """A new, empty directory for one measurement."""
        self._counter += 1
        path = self.root / f"{self._counter:02d}-{name}"
        path.mkdir(parents=True)
        return path

    def start_module(self, module: str, args: list[str], *, log: Path) -> subprocess.Popen[bytes]:
        """Start `python -m module args` in the session's environment; output goes to `log`."""
        handle = log.open("wb")
        try:
            return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=self.env,
                                    stdout=handle, stderr=subprocess.STDOUT)
        finally:
            handle.close()

    def run_module(self, module: str, args: list[str], *, out: Path, timeout_s: float) -> dict[str, Any]:
        """Run `python -m module args --out out` to completion and return the JSON it wrote."""
        log = out.with_suffix(".log")
        proc = self.start_module(module, [*args, "--out", str(out)], log=log)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{module} did not finish in {timeout_s:.0f} s (log: {log})") from None
        if code != 0 or not out.exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{module} failed with exit status {code}:\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    def run_flow(self, params: dict[str, Any], *, where: Path, timeout_s: float) -> dict[str, Any]:
        """One `separate_manifest` run in its own process (see `benchmarks.flow_runner`)."""
        params_file = where / "flow-params.json"
        params_file.write_text(json.dumps(params))
        return self.run_module("benchmarks.flow_runner", ["--params", str(params_file)],
                               out=where / "flow-result.json", timeout_s=timeout_s)

    def start_flow(self, params: dict[str, Any], *, where: Path) -> subprocess.Popen[bytes]:
        """A flow run in the background (for runs stopped after a fixed time)."""
        params_file = where / "flow-params.json"
        params_file.write_text(json.dumps(params))
        return self.start_module("benchmarks.flow_runner",
                                 ["--params", str(params_file), "--out", str(where / "flow-result.json")],
                                 log=where / "flow.log")
