"""stemcat's benchmark suite: `python -m benchmarks` (or `make bench`) prints one markdown table.

Rows (each measured in the same invocation, see README.md):
1. sustained request rate at the documented cap, 430s received, two runs sharing a key;
2. end-to-end tracks/s and peak RSS against a plain asyncio + httpx baseline;
3. stem download throughput against raw httpx streaming;
4. `--dry-run` time and peak RSS on a million-row manifest;
5. spend-report query time over a million stem rows.
"""
