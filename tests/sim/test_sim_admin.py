"""The /admin routes through AdminClient, manifests, and the `python -m stemcat.sim serve` entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from stemcat.sim import AdminClient, FaultSpec, SimServer, make_tracks_manifest

from .simtest_support import CREDIT, api_client, submit


def test_admin_client_drives_a_running_simulator(sim: SimServer) -> None:
    with AdminClient(sim.base_url) as admin:
        assert admin.health()
        tracks = admin.create_tracks(3)
        assert len(tracks) == 3 and tracks[0].music_task_id == tracks[1].music_task_id != tracks[2].music_task_id
        truth = admin.truth(tracks[0].audio_id)
        assert truth == sim.truth(tracks[0].audio_id)
        admin.set_balance(50)
        assert admin.balance() == 50 == sim.balance()
        with api_client(sim) as client:
            task_id = submit(client, tracks[0], "split_stem")
            fault_id = admin.inject(FaultSpec(route="credit", code=455, as_json=True))
            assert fault_id > 0
            assert client.get(CREDIT).json()["code"] == 455
            admin.inject(FaultSpec(route="credit", code=500, times=-1))
            admin.clear_faults()
            assert client.get(CREDIT).status_code == 200
        assert [c.separation_task_id for c in admin.ledger()][-1] == task_id
        assert admin.balance() == 45
        assert task_id in {t.task_id for t in admin.tasks()}
        before = sim.now()
        assert admin.advance_clock(3600) >= before + 3600
        stats = admin.stats()
        assert stats.requests_by_route["credit"] >= 2 and stats.requests_by_status["200"] >= 1


def test_admin_rejects_bad_input(sim: SimServer) -> None:
    with AdminClient(sim.base_url) as admin:
        with pytest.raises(httpx.HTTPStatusError) as unknown:
            admin.truth("no-such-audio")
        with pytest.raises(httpx.HTTPStatusError) as negative:
            admin.advance_clock(-5)
    assert unknown.value.response.status_code == 404
    assert negative.value.response.status_code == 400
    with httpx.Client(base_url=sim.base_url) as raw:
        bad_fault = raw.post("/admin/faults", json={"route": "file", "after_accept": True})
        bad_types = raw.post("/admin/tracks", json={"n": 2, "types": ["karaoke"]})
        typed = raw.post("/admin/tracks", json={"n": 3, "types": ["separate_vocal", "split_stem"]}).json()
    assert bad_fault.status_code == 400 and bad_types.status_code == 400
    assert [row["type"] for row in typed] == ["separate_vocal", "split_stem", "separate_vocal"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_formats(sim: SimServer, tmp_path: Path, fmt: str) -> None:
    path = make_tracks_manifest(sim, 5, tmp_path / f"tracks.{fmt}", types=("separate_vocal", "split_stem"))
    frame = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[fmt](path)
    assert list(frame.columns) == ["task_id", "audio_id", "type", "title", "tags", "genre"]
    assert len(frame) == 5 and frame["audio_id"].is_unique
    assert list(frame["type"]) == ["separate_vocal", "split_stem"] * 2 + ["separate_vocal"]
    for row in frame.itertuples():
        assert sim.truth(str(row.audio_id)).duration_s > 0
    assert frame["task_id"].nunique() == 3


def test_manifest_from_another_process_through_the_admin_client(sim: SimServer, tmp_path: Path) -> None:
    with AdminClient(sim.base_url) as admin:
        path = make_tracks_manifest(admin, 2, tmp_path / "remote.csv", types=("split_stem",))
    frame = pd.read_csv(path)
    assert [sim.truth(a).audio_id for a in frame["audio_id"]] == list(frame["audio_id"])


def test_manifest_without_audio_ids_has_one_row_per_music_task(sim: SimServer, tmp_path: Path) -> None:
    path = make_tracks_manifest(sim, 6, tmp_path / "tasks.csv", types=("split_stem",), with_audio_id=False)
    frame = pd.read_csv(path)
    assert "audio_id" not in frame.columns
    assert len(frame) == 3 and frame["task_id"].is_unique and set(frame["type"]) == {"split_stem"}


def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    command = [sys.executable, "-m", "stemcat.sim", "serve", "--port", "0", "--tracks", "4", "--manifest", str(manifest),
               "--seed", "3", "--rate-limit", "0", "--processing", "0.05", "0.1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parents[2])
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        base_url = first_line.strip().rsplit(" ", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:"), first_line
        assert str(manifest) in process.stdout.readline()
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        with AdminClient(base_url) as admin:
            assert admin.health()
            assert admin.truth(rows[0]["audio_id"]).sample_rate == 16000
        assert len(rows) == 4
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
    assert code == 0
