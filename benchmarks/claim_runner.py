"""Time the ledger's `claim` in this process, one call at a time; report every latency as JSON.

`python -m benchmarks.claim_runner --ledger DIR_OR_URL --keys 1000 --prefix a --ready R --go G --out result.json`

The ledger is the SQLite file in DIR, or the PostgreSQL database URL names. Each call claims a
new (audio_id, separate_vocal) key, one transaction, as a run does right before a paid submit
(committed, durable, when `claim` returns). The ledger is opened and warmed up (connection, schema
check, a few claims on keys of its own) before the clock starts; then the process creates the file
`--ready` and starts the timed calls when the file `--go` appears, so processes started together
contend from the same instant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from stemcat.catalog import Ledger
from stemcat.catalog.ledger.urls import is_postgres_url

WARM_UP_CLAIMS = 10


def open_ledger(where: str) -> Ledger:
    return Ledger.open(Path("."), where) if is_postgres_url(where) else Ledger(Path(where) / "ledger.sqlite")


def time_claims(ledger: Ledger, keys: list[str], run_id: str) -> tuple[list[float], int]:
    """Seconds per `claim` call, in order, and how many of them won their key."""
    latencies = []
    won = 0
    for audio_id in keys:
        started = time.perf_counter()
        job = ledger.claim(audio_id, f"task-{audio_id}", "separate_vocal", 1, run_id)
        latencies.append(time.perf_counter() - started)
        won += job is not None
    return latencies, won


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", required=True, help="data directory (SQLite) or postgresql:// URL")
    parser.add_argument("--keys", type=int, required=True, help="claims to time")
    parser.add_argument("--prefix", required=True, help="audio ids are PREFIX-0 … (same prefix: same keys)")
    parser.add_argument("--ready", type=Path, required=True, help="created once the ledger is open and warm")
    parser.add_argument("--go", type=Path, required=True, help="the timed claims start when this file exists")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ledger = open_ledger(args.ledger)
    run_id = f"claims-{args.prefix}-{time.time_ns()}"
    time_claims(ledger, [f"warm-{run_id}-{i}" for i in range(WARM_UP_CLAIMS)], run_id)
    args.ready.touch()
    while not args.go.exists():
        time.sleep(0.001)
    began = time.perf_counter()
    latencies, won = time_claims(ledger, [f"{args.prefix}-{i}" for i in range(args.keys)], run_id)
    wall_s = time.perf_counter() - began
    ledger.close()
    Path(args.out).write_text(json.dumps({"latencies_s": latencies, "won": won, "wall_s": wall_s}))


if __name__ == "__main__":
    main()
