"""Issue 3: budgets, the pre-flight balance check, dry-run fidelity, expiry, and concurrent runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from stemcat.catalog import Ledger, open_catalog
from stemcat.sim import make_tracks_manifest

from .conftest import run_flow

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_max_credits_caps_what_the_run_commits(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 6, tmp_path / "m.csv", types=("split_stem",))
    summary = run_flow(manifest, tmp_path / "data", sim.base_url, max_credits=12)
    assert summary["exit_code"] == 3 and summary["stop_reason"].startswith("budget")
    assert sum(c.credits for c in sim.ledger()) == summary["credits_committed"] == 10


def test_run_the_balance_cannot_pay_for_is_refused_before_any_charge(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 4, tmp_path / "m.csv", types=("split_stem",))
    sim.set_balance(12)
    summary = run_flow(manifest, tmp_path / "data", sim.base_url)
    assert summary["exit_code"] == 3 and "--allow-partial" in summary["error"]
    assert sim.ledger() == []
    partial = run_flow(manifest, tmp_path / "data", sim.base_url, allow_partial=True)
    assert partial["exit_code"] == 3 and sum(c.credits for c in sim.ledger()) == 10


def test_dry_run_plan_matches_what_the_real_run_then_charges(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 7, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    data_dir = tmp_path / "data"
    plan = run_flow(manifest, data_dir, sim.base_url, dry_run=True)
    assert sim.ledger() == [] and plan["exit_code"] == 0
    real = run_flow(manifest, data_dir, sim.base_url)
    charged = Counter()
    for charge in sim.ledger():
        charged[charge.type] += charge.credits
    assert dict(charged) == plan["plan"]["credits_by_type"]
    assert real["credits_committed"] == sum(charged.values())


def test_lost_files_are_fetched_again_for_free_and_expired_ones_need_a_flag(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 2, tmp_path / "m.csv", types=("separate_vocal",))
    data_dir = tmp_path / "data"
    assert run_flow(manifest, data_dir, sim.base_url)["exit_code"] == 0
    stems = sorted((data_dir / "stems").rglob("*.mp3"))
    stems[0].unlink()
    stems[1].write_bytes(b"corrupt")
    again = run_flow(manifest, data_dir, sim.base_url)
    assert again["exit_code"] == 0 and again["counts"]["stems_downloaded"] == 2 and len(sim.ledger()) == 2

    sim.advance_clock(15 * 24 * 3600)
    stems[0].unlink()
    expired = run_flow(manifest, data_dir, sim.base_url)
    assert expired["exit_code"] == 1 and expired["counts"]["expired"] == 1 and len(sim.ledger()) == 2
    assert expired["counts"]["expired_credits"] == 1
    dry = run_flow(manifest, data_dir, sim.base_url, dry_run=True)
    assert dry["plan"]["skipped_cost"] == {"expired": 1}
    redo = run_flow(manifest, data_dir, sim.base_url, resubmit_expired=True)
    assert redo["exit_code"] == 0 and len(sim.ledger()) == 3
    assert stems[0].is_file()


def test_resubmit_unknown_pays_again_only_for_the_unknown(sim, tmp_path):
    from stemcat.sim import FaultSpec

    manifest = make_tracks_manifest(sim, 3, tmp_path / "m.csv", types=("separate_vocal",))
    target = manifest.read_text().splitlines()[1].split(",")[1]
    sim.inject(FaultSpec(route="generate", code=500, match=target))  # not executed, but the client can't know
    data_dir = tmp_path / "data"
    assert run_flow(manifest, data_dir, sim.base_url)["counts"]["unknown"] == 1
    redo = run_flow(manifest, data_dir, sim.base_url, resubmit_unknown=True)
    assert redo["exit_code"] == 0 and redo["counts"]["submitted"] == 1
    assert Counter(c.audio_id for c in sim.ledger())[target] == 1 and len(sim.ledger()) == 3


def test_spend_report_sets_ledger_spend_beside_the_balance_change(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 3, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    data_dir = tmp_path / "data"
    summary = run_flow(manifest, data_dir, sim.base_url)
    con = open_catalog(data_dir)
    credits, delta, difference = con.execute(
        "SELECT credits, balance_delta, difference FROM spend_by_run WHERE run_id = ?", [summary["run_id"]]
    ).fetchone()
    assert credits == 7 and delta == -7 and difference == 0


def test_two_concurrent_runs_on_overlapping_manifests_never_pay_twice(sim, tmp_path):
    from prefect.settings import get_current_settings

    manifest = make_tracks_manifest(sim, 16, tmp_path / "all.csv", types=("separate_vocal", "split_stem"))
    lines = manifest.read_text().splitlines()
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("\n".join([lines[0], *lines[1:13]]) + "\n")
    second.write_text("\n".join([lines[0], *reversed(lines[5:17])]) + "\n")
    data_dir = tmp_path / "data"
    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url), "STEMCAT_DATA_DIR": str(data_dir)}
    args = ["--base-url", sim.base_url, "--rate-limit", "500", "--rate-window", "1", "--poll-initial", "0.2",
            "--poll-max", "0.5", "--batch-size", "3"]
    procs = [subprocess.Popen([sys.executable, "-m", "stemcat", "run", str(m), *args], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for m in (first, second)]
    outputs = [p.communicate(timeout=240)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    per_key = Counter((c.audio_id, c.type) for c in sim.ledger())
    assert len(per_key) == 16 and max(per_key.values()) == 1
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        jobs = ledger.jobs_by_status(["downloaded"])
    finally:
        ledger.close()
    assert len(jobs) == 16
    con = open_catalog(data_dir)
    assert con.execute("SELECT count(*), count(DISTINCT (job_id, stem)) FROM stems").fetchone()[0] == \
        con.execute("SELECT count(DISTINCT (job_id, stem)) FROM stems").fetchone()[0]
    assert con.execute("SELECT sum(credits) FROM spend").fetchone()[0] == sum(c.credits for c in sim.ledger())
