"""`make_limiter`: which store a run's `rate_store` setting picks, and the per-key default."""

from __future__ import annotations

from pathlib import Path

import pytest

from stemcat.client.ratelimit.stores.http import HttpAdmissionStore
from stemcat.client.ratelimit.stores.sqlite import SqliteAdmissionStore
from stemcat.client.ratelimit import MemoryAdmissionStore, SharedLimiter, default_store_path, open_admission_store
from stemcat.tasks.context import RunOptions
from stemcat.tasks.limits import make_limiter

KEY = "sk-limits-test-key"


def options(tmp_path: Path, rate_store: str | None, base_url: str = "http://127.0.0.1:9") -> RunOptions:
    return RunOptions(data_dir=tmp_path / "data", base_url=base_url, rate_limit=7, rate_window_s=3.0,
                      rate_store=rate_store)


def store_of(limiter: object) -> object:
    assert isinstance(limiter, SharedLimiter)
    return limiter._store  # noqa: SLF001 - which store was chosen is the behaviour under test


def test_default_is_a_per_key_file_in_the_state_dir_shared_across_data_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    one = store_of(make_limiter(options(tmp_path / "a", None)))
    two = store_of(make_limiter(options(tmp_path / "b", None)))
    other_key = open_admission_store(None, base_url="http://127.0.0.1:9", api_key=KEY + "2")
    assert isinstance(one, SqliteAdmissionStore) and isinstance(two, SqliteAdmissionStore)
    assert one.path == two.path == default_store_path("http://127.0.0.1:9", KEY)
    assert one.path.parent == tmp_path / "state" / "stemcat"
    assert isinstance(other_key, SqliteAdmissionStore) and other_key.path != one.path
    assert KEY not in str(one.path)


def test_explicit_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    assert isinstance(store_of(make_limiter(options(tmp_path, "memory"))), MemoryAdmissionStore)
    pacer = store_of(make_limiter(options(tmp_path, "http://pacer.lan:8790/")))
    assert isinstance(pacer, HttpAdmissionStore) and pacer.base_url == "http://pacer.lan:8790"
    by_url = store_of(make_limiter(options(tmp_path, f"sqlite://{tmp_path}/r.sqlite")))
    by_path = store_of(make_limiter(options(tmp_path, str(tmp_path / "r.sqlite"))))
    assert isinstance(by_url, SqliteAdmissionStore) and isinstance(by_path, SqliteAdmissionStore)
    assert by_url.path == by_path.path == tmp_path / "r.sqlite"
    with pytest.raises(ValueError, match="unknown rate store"):
        make_limiter(options(tmp_path, "redis://somewhere"))


def test_limiter_runs_at_the_configured_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    limiter = make_limiter(options(tmp_path, "memory"))
    assert isinstance(limiter, SharedLimiter)
    assert limiter.nominal_rate == pytest.approx(7 / 3.0)
