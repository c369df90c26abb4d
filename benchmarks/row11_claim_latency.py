"""Row 11: how long the ledger's `claim` takes, p50 and p99, on SQLite and on PostgreSQL.

`claim` is what stands between a run and a paid request: the intent row and its spend row,
committed and durable before the submit leaves (`catalog/ledger/claims.py`). Each call is
timed on its own in a process of its own (`benchmarks.claim_runner`), on a fresh ledger per
case, in three cases per backend:

* one process, every claim a new key (the one-machine run);
* two processes at once on disjoint keys: both take the write path every time, so each waits
  for the other's commits (two workers on disjoint shards of one ledger);
* two processes at once on the same keys in the same order: they race for every key, one wins
  it and the other is refused (overlapping manifests); the refusal usually takes the fast path
  (the key is already claimed: a read, no write lock).

SQLite (the embedded default: WAL, `synchronous=FULL`, a file in the data directory) is the
baseline; PostgreSQL runs durable (fsync and synchronous_commit on, see `pg_cluster`) on loopback.
A run's hot path sends its claims through the group-committing writer, so under load several
claims share one commit; this row is the latency of one claim in its own transaction.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import BenchEnv
from benchmarks.pg_cluster import NO_SERVER, Cluster
from benchmarks.table import Row

START_TIMEOUT_S = 60.0  # for every process to open and warm up its ledger


@dataclass(frozen=True)
class Latencies:
    """Every timed call of one case, in milliseconds, all processes together."""

    ms: list[float]
    won: int
    calls: int
    wall_s: float = 0.0  # the slowest process's timed calls, start to end

    @property
    def per_s(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    def cell(self) -> str:
        return f"p50 {self.quantile(0.5):.2f} ms, p99 {self.quantile(0.99):.2f} ms ({self.per_s:,.0f} claims/s)"


def quantile_ms(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile (no interpolation: p99 of 1,000 calls is the 990th fastest)."""
    return Latencies(list(values), 0, len(values)).quantile(q)


def _run_case(env: BenchEnv, where: Path, ledger: str, prefixes: list[str], keys: int) -> Latencies:
    go = where / "go"
    procs = []
    for index, prefix in enumerate(prefixes):
        out = where / f"claims-{index}.json"
        procs.append((env.start_module("benchmarks.claim_runner", [
            "--ledger", ledger, "--keys", str(keys), "--prefix", prefix, "--ready", str(where / f"ready-{index}"),
            "--go", str(go), "--out", str(out)], log=out.with_suffix(".log")), out))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all((where / f"ready-{index}").exists() for index in range(len(prefixes))):
        if time.monotonic() > deadline or any(proc.poll() is not None for proc, _ in procs):
            break  # reported below, from the processes' exit status and logs
        time.sleep(0.01)
    go.touch()
    ms: list[float] = []
    won = 0
    wall_s = 0.0
    for proc, out in procs:
        try:
            code = proc.wait(timeout=120 + keys * 0.5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"benchmarks.claim_runner did not finish (log: {out.with_suffix('.log')})") from None
        if code != 0 or not out.exists():
            raise RuntimeError(f"benchmarks.claim_runner failed ({code}):\n"
                               f"{out.with_suffix('.log').read_text(errors='replace')[-3000:]}")
        result = json.loads(out.read_text())
        ms += [s * 1000 for s in result["latencies_s"]]
        won += result["won"]
        wall_s = max(wall_s, result["wall_s"])
    return Latencies(ms, won, len(ms), wall_s)


CASES = (("one process", ["a"]), ("2 processes, disjoint keys", ["a", "b"]), ("2 processes, same keys", ["a", "a"]))


def measure_backend(env: BenchEnv, keys: int, new_ledger: LedgerFactory) -> list[tuple[str, Latencies]]:
    results = []
    for label, prefixes in CASES:
        where = env.scratch(f"claims-{label.replace(' ', '-').replace(',', '')}")
        results.append((label, _run_case(env, where, new_ledger(where), prefixes, keys)))
    for label, latencies in results:
        expected = keys if label.endswith("same keys") else latencies.calls
        if latencies.won != expected:  # the race must still give every key exactly one owner
            raise RuntimeError(f"{label}: {latencies.won} claims won, expected {expected}")
    return results


class LedgerFactory:
    """A fresh ledger per case: a new data directory (SQLite) or a new database (PostgreSQL)."""

    def __init__(self, cluster: Cluster | None) -> None:
        self._cluster = cluster

    def __call__(self, where: Path) -> str:
        if self._cluster is None:
            data = where / "data"
            data.mkdir()
            return str(data)
        return self._cluster.database()


def _cells(results: list[tuple[str, Latencies]]) -> str:
    return " · ".join(f"{label}: {latencies.cell()}" for label, latencies in results)


def _ratios(postgres: list[tuple[str, Latencies]], sqlite: list[tuple[str, Latencies]]) -> str:
    parts = []
    for (label, pg), (_, lite) in zip(postgres, sqlite, strict=True):
        parts.append(f"{label}: p50 {pg.quantile(0.5) / lite.quantile(0.5):.2f}×, "
                     f"p99 {pg.quantile(0.99) / lite.quantile(0.99):.2f}×")
    return " · ".join(parts)


def _load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def measure(env: BenchEnv, *, keys: int) -> list[Row]:
    load_before = _load()
    sqlite = measure_backend(env, keys, LedgerFactory(None))
    common = (f"{keys} claims per process, each a new key, timed one by one (`time.perf_counter`) after "
              "warm-up; nearest-rank quantiles over every call of the case; claims/s = every call ÷ the slowest "
              "process's time; the 2-process cases start at one instant; a fresh ledger per case; same keys: "
              "every key won exactly once")
    rows = [Row("11a", "`claim` latency (intent + spend row committed before the paid request): SQLite ledger",
                _cells(sqlite), baseline="the embedded default", ratio="—",
                conditions=f"{common}; WAL, synchronous=FULL, a file in the data directory")]
    cluster = env.postgres()
    if cluster is None:
        rows.append(Row("11b", "`claim` latency: PostgreSQL ledger", f"not measured: {NO_SERVER}"))
        return rows
    postgres = measure_backend(env, keys, LedgerFactory(cluster))
    rows.append(Row("11b", "`claim` latency (intent + spend row committed before the paid request): PostgreSQL "
                           "ledger", _cells(postgres), baseline="SQLite (row 11a, same invocation)",
                    ratio=_ratios(postgres, sqlite),
                    conditions=f"{common}; {cluster.describe}; one write lock per ledger (advisory), unique key "
                               f"`INSERT … ON CONFLICT DO NOTHING`; load average {load_before} before, "
                               f"{_load()} after"))
    return rows
