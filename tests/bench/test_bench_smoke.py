"""The benchmark suite still runs end to end at its smallest size (not timed: the numbers mean nothing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.table import Row, render_markdown

ROOT = Path(__file__).resolve().parents[2]
ROW_LINE = re.compile(r"^\| (\d+)([a-h]?) \| ")

pytestmark = pytest.mark.slow


# The audio rows (CPU) beside the rest (mostly waiting on a rate cap or a server): the suite's
# wall time on 2 cores is about the longer half instead of the sum.
HALVES = (("6", "7", "9"), ("1", "2", "3", "4", "5", "8", "10", "11"))


def test_quick_suite_prints_a_table_with_every_row(tmp_path: Path) -> None:
    procs = []
    for number, rows in enumerate(HALVES):
        out = tmp_path / f"table-{number}.md"
        only = [arg for row in rows for arg in ("--only", row)]
        command = [sys.executable, "-m", "benchmarks", "--quick", *only, "--cache-dir", str(tmp_path / "cache"),
                   "--out", str(out)]
        procs.append((out, subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True)))
    groups: set[str] = set()
    for out, proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
        table = out.read_text()
        assert table in stdout
        assert "FAILED" not in table
        assert "Machine:" in table
        groups |= {match.group(1) for line in table.splitlines() if (match := ROW_LINE.match(line))}
    assert groups == {str(row) for row in range(1, 12)}


def test_table_rendering_escapes_cells_and_groups_sub_rows() -> None:
    rows = [Row("2b", "a | b", "1"), Row("5", "m", "2", conditions="x\ny")]
    text = render_markdown(rows)
    assert text.splitlines()[2] == "| 2b | a \\| b | 1 | — | — |  |"
    assert "x y" in text
    assert [row.group for row in rows] == ["2", "5"]


def test_sustained_rate_skips_the_first_window_and_counts_on_arrival() -> None:
    from benchmarks.row1_pacing import Cap, sustained
    from benchmarks.simulation import CounterSample

    cap = Cap(20, 10.0)
    # Idle for 5 s, then 2 requests a second (one submit, one poll) for 60 s.
    samples = [CounterSample(at=float(t), api_requests=max(0, 2 * (t - 5)), submits=max(0, t - 5), polls=0,
                             refused_430=0) for t in range(0, 66)]
    result = sustained(samples, cap, refused=0, max_in_window=20)
    assert result.seconds == 49.0  # from one window after the first request (t=6 → 16) to the end (t=65)
    assert result.api_rate == 2.0 and result.submit_rate == 1.0


def test_worker_manifests_are_disjoint_shards_or_each_key_in_two() -> None:
    from benchmarks.row10_workers import manifests

    rows = [f"r{i}" for i in range(9)]
    shards = manifests(rows, 4, overlap=False)
    assert shards == [["r0", "r4", "r8"], ["r1", "r5"], ["r2", "r6"], ["r3", "r7"]]
    overlapping = manifests(rows, 4, overlap=True)
    assert overlapping[0] == ["r0", "r1", "r4", "r5", "r8"]  # its shard interleaved with the next one's
    assert overlapping[3] == ["r3", "r0", "r7", "r4", "r8"]
    for row in rows:
        assert sum(row in part for part in overlapping) == 2
    assert all(len(set(part)) == len(part) for part in overlapping)
    assert manifests(rows, 1, overlap=True) == [rows]  # one worker: nothing to overlap with
    assert sorted(sum(manifests(rows, 2, overlap=True), [])) == sorted(rows * 2)


def test_finished_rate_starts_one_window_after_the_first_request() -> None:
    from benchmarks.row10_workers import finished_rate

    # First request at t=0; a burst of 10 finished by t=2, then one a second from t=11 to t=60.
    samples = [(float(t), 0 if t < 2 else 10 if t < 11 else min(60, 10 + t - 10)) for t in range(0, 65)]
    rate, start, end, steady = finished_rate(samples, 0.0, 10.0, 60)
    assert steady and (start, end) == (10.0, 60.0)
    assert rate == 1.0  # the burst before one window is not counted
    rate, start, end, steady = finished_rate([(0.0, 0), (0.5, 1), (1.0, 2)], 0.0, 10.0, 2)
    assert not steady and rate == 2.0 and (start, end) == (0.0, 1.0)  # shorter than a window: the whole run


def test_claim_latency_quantiles_are_nearest_rank() -> None:
    from benchmarks.row11_claim_latency import quantile_ms

    values = [float(v) for v in range(1, 1001)]
    assert quantile_ms(values, 0.5) == 500.0
    assert quantile_ms(values, 0.99) == 990.0
    assert quantile_ms([3.0], 0.99) == 3.0
