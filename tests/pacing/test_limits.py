"""`make_limiter`: which store a run's `rate_store` setting picks, the per-key default, and that every
command on the key (a client built without a limiter) shares the store a run uses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stemcat.client import SunoClient
from stemcat.client.ratelimit import (
    HttpAdmissionStore,
    MemoryAdmissionStore,
    SharedLimiter,
    SqliteAdmissionStore,
    default_store_path,
    open_admission_store,
)
from stemcat.settings import load_settings
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


async def test_stemcat_analyze_shares_the_budget_of_a_run_on_the_same_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `stemcat analyze` builds its client without a limiter (flows/analyze.py): that client must
    # pace on the key's store a run uses, not on a budget of its own.
    from stemcat.flows.analyze import _mix_client

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    base_url = "http://127.0.0.1:9"
    run = make_limiter(options(tmp_path, None, base_url))
    async with _mix_client(True, base_url) as client:
        assert client is not None
        analysis = client.limiter
        own, shared = store_of(analysis), store_of(run)
        assert isinstance(own, SqliteAdmissionStore) and isinstance(shared, SqliteAdmissionStore)
        assert own.path == shared.path
        await run.acquire()
        started = time.monotonic()
        await analysis.acquire()
        waited = time.monotonic() - started
    await run.aclose()
    # On a budget of its own the analysis would have been admitted at once; on the shared one
    # it waits for the spacing after the run's (cold, so logged half a second late) admission.
    assert waited >= 0.5


def test_every_client_follows_the_rate_store_setting_a_run_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    monkeypatch.setenv("STEMCAT_RATE_STORE", f"sqlite://{tmp_path}/shared.sqlite")
    run = make_limiter(options(tmp_path, load_settings().rate_store))
    client = SunoClient(base_url="http://127.0.0.1:9")
    shared = store_of(run)
    assert isinstance(shared, SqliteAdmissionStore) and shared.path == tmp_path / "shared.sqlite"
    own = store_of(client.limiter)
    assert isinstance(own, SqliteAdmissionStore) and own.path == shared.path
