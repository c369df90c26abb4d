"""The benchmark suite still runs end to end at its smallest size (not timed: the numbers mean nothing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.table import Row, render_markdown

ROOT = Path(__file__).resolve().parents[2]
ROW_LINE = re.compile(r"^\| (\d)([a-h]?) \| ")

pytestmark = pytest.mark.slow


def test_quick_suite_prints_a_table_with_all_nine_rows(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = out.read_text()
    assert table in proc.stdout
    groups = {match.group(1) for line in table.splitlines() if (match := ROW_LINE.match(line))}
    assert groups == {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
    assert "FAILED" not in table
    assert "Machine:" in table


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
