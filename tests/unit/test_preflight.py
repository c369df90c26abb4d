"""Fast, one-line refusals before Prefect starts: exit status 2, one line naming what is wrong, nothing created."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stemcat.client import TransportFailure
from stemcat.exit_codes import ExitCode
from stemcat.flows.separate import read_balance
from stemcat.tasks.context import RunAborted

# Every case in one fresh process (imports counted once); Prefect must never be imported.
SCRIPT = textwrap.dedent("""
    import contextlib, io, json, os, sys, time
    from stemcat.cli.app import app

    results = []
    for case in json.loads(sys.argv[1]):
        os.environ.update(case["env"])
        err = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stderr(err):
            try:
                app(case["args"], prog_name="stemcat")
            except SystemExit as exit:
                code = exit.code
        results.append({"code": code, "stderr": err.getvalue(), "s": time.perf_counter() - started})
        for name in case["env"]:
            del os.environ[name]
    print(json.dumps({"results": results, "prefect_imported": "prefect" in sys.modules}))
""")


def _cases(tmp_path: Path) -> list[tuple[dict, str]]:
    good = tmp_path / "good.csv"
    good.write_text("task_id,audio_id\nt1,a1\n")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "random.csv").write_bytes(os.urandom(4096) + b"\0")
    (tmp_path / "a-file").write_text("x")
    data = str(tmp_path / "data")
    run = ["run", "--data-dir", data]
    return [
        ({"env": {"STEMCAT_RATE_LIMIT": "abc"}, "args": [*run, str(good)]}, "STEMCAT_RATE_LIMIT='abc'"),
        ({"env": {"STEMCAT_POLL_SHARE": "2"}, "args": [*run, str(good)]}, "STEMCAT_POLL_SHARE='2'"),
        ({"env": {}, "args": [*run, str(good), "--type", "stems"]}, "choose separate_vocal or split_stem"),
        ({"env": {}, "args": [*run, str(tmp_path / "missing.csv")]}, "manifest not found"),
        ({"env": {}, "args": [*run, str(tmp_path / "empty.csv")]}, "empty (0 bytes)"),
        ({"env": {}, "args": [*run, str(tmp_path / "random.csv")]}, "not a text file"),
        ({"env": {}, "args": [*run, str(tmp_path)]}, "not a file"),
        ({"env": {}, "args": ["run", "--data-dir", str(tmp_path / "a-file" / "data"), str(good)]},
         f"data directory {tmp_path / 'a-file' / 'data'}"),
    ]


def test_bad_inputs_are_refused_in_one_line_before_prefect_starts(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps([c for c, _ in cases])], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SUNO_API_KEY": "k"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for (case, expected), result in zip(cases, report["results"], strict=True):
        assert result["code"] == ExitCode.BAD_CONFIG, (case, result)
        assert result["stderr"].count("\n") == 1 and expected in result["stderr"], (case, result)
        assert "Traceback" not in result["stderr"]
    assert not report["prefect_imported"]
    assert not (tmp_path / "data").exists()


def test_an_unwritable_data_directory_is_named(tmp_path: Path) -> None:
    from stemcat.flows.preflight import PreflightError, check_writable_dir

    if os.geteuid() == 0:
        # Root writes through permission bits; /proc/1 is a directory the kernel refuses even to root.
        locked = Path("/proc/1")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
    with pytest.raises(PreflightError, match=f"data directory {locked / 'data'} is not writable"):
        check_writable_dir(locked / "data")
    assert not (locked / "data").exists()


def test_version() -> None:
    from typer.testing import CliRunner

    from stemcat.cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("stemcat ")


class _Unreachable:
    def __init__(self, sent: bool) -> None:
        self.sent = sent

    async def credits(self, max_wait_s: float | None = None) -> int:
        raise TransportFailure("Network failure: ConnectError", request_sent=self.sent, endpoint="/credit")


def test_a_balance_read_that_cannot_reach_the_api_stops_the_run_before_any_claim() -> None:
    with pytest.raises(RunAborted, match="cannot reach the API") as raised:
        asyncio.run(read_balance.fn(_Unreachable(sent=False)))
    assert raised.value.exit_code == ExitCode.BAD_CONFIG
    assert asyncio.run(read_balance.fn(_Unreachable(sent=True))) is None  # reached, no answer: run on


@pytest.mark.parametrize("overrides,reason", [
    ({"manifest": "missing.csv"}, "manifest not found"),
    ({"rate_limit": 0}, "bad parameter rate_limit"),
    ({"separation_type": "stems"}, "unknown --type 'stems'"),
])
def test_a_deployment_run_meets_the_same_checks_and_creates_nothing(tmp_path: Path, overrides, reason) -> None:
    from stemcat.flows.separate import run_separation

    good = tmp_path / "good.csv"
    good.write_text("task_id,audio_id\nt1,a1\n")
    params = {"manifest": str(good), "data_dir": str(tmp_path / "data"), "base_url": "http://127.0.0.1:9"}
    summary = asyncio.run(run_separation(orchestrate=False, **{**params, **overrides}))
    assert summary["exit_code"] == ExitCode.BAD_CONFIG and reason in summary["error"]
    assert not (tmp_path / "data").exists()
