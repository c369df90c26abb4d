"""The manifest reader's duplicate filter: exact across table growth, and small (a million rows fit the budget)."""

from __future__ import annotations

import tracemalloc

from stemcat.tasks.manifest import _DuplicateFilter


def key(i: int) -> tuple[str, str, str]:
    return (f"{i:032x}", f"audio-{i}", "separate_vocal")


def test_duplicates_name_their_first_line_across_growth() -> None:
    seen = _DuplicateFilter(capacity=8)  # grows many times
    for i in range(5_000):
        assert seen.first_line(key(i), i + 2) is None
    assert seen.first_line(key(0), 9_999) == 2
    assert seen.first_line(key(4_321), 9_999) == 4_323
    assert seen.first_line((f"{1:032x}", "audio-1", "split_stem"), 10_000) is None  # another type is another key
    assert seen.first_line((f"{1:032x}", None, "split_stem"), 10_001) is None


def test_a_hundred_thousand_rows_cost_a_few_megabytes() -> None:
    tracemalloc.start()
    try:
        seen = _DuplicateFilter()
        for i in range(100_000):
            seen.first_line(key(i), i)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 100_000 * 50  # a dict of Python ints held ~100 bytes a row
