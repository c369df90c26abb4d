"""`make_limiter`: which store a run's `rate_store` setting picks, the per-key default, and that every
command on the key (a client built without a limiter) shares the store a run uses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stemcat.client import SunoClient
from stemcat.client.ratelimit import (
    MemoryAdmissionStore,
    SharedLimiter,
    SqliteAdmissionStore,
    budget_id,
    default_store_path,
    open_admission_store,
    run_rate_store,
)
from stemcat.settings import load_settings
from stemcat.tasks.context import RunOptions
from stemcat.tasks.limits import make_limiter

KEY = "sk-limits-test-key"


def options(tmp_path: Path, rate_store: str | None, base_url: str = "http://127.0.0.1:9",
            ledger_url: str | None = None) -> RunOptions:
    return RunOptions(data_dir=tmp_path / "data", base_url=base_url, rate_limit=7, rate_window_s=3.0,
                      rate_store=rate_store, ledger_url=ledger_url)


def postgres_store_class() -> type:
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    from stemcat.client.ratelimit.stores.postgres import PostgresAdmissionStore

    return PostgresAdmissionStore


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
    PostgresAdmissionStore = postgres_store_class()  # noqa: N806
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    assert isinstance(store_of(make_limiter(options(tmp_path, "memory"))), MemoryAdmissionStore)
    postgres = store_of(make_limiter(options(tmp_path, "postgresql://rate@db.lan:5432/stemcat")))
    assert isinstance(postgres, PostgresAdmissionStore) and postgres.url == "postgresql://rate@db.lan:5432/stemcat"
    assert postgres.budget == budget_id("http://127.0.0.1:9", KEY)
    by_url = store_of(make_limiter(options(tmp_path, f"sqlite://{tmp_path}/r.sqlite")))
    by_path = store_of(make_limiter(options(tmp_path, str(tmp_path / "r.sqlite"))))
    assert isinstance(by_url, SqliteAdmissionStore) and isinstance(by_path, SqliteAdmissionStore)
    assert by_url.path == by_path.path == tmp_path / "r.sqlite"
    for unknown in ("redis://somewhere", "http://pacer.lan:8790"):
        with pytest.raises(ValueError, match="unknown rate store"):
            make_limiter(options(tmp_path, unknown))


def test_a_postgres_ledger_holds_the_budget_unless_a_rate_store_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    PostgresAdmissionStore = postgres_store_class()  # noqa: N806
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    ledger = "postgresql://stemcat@db.lan:5432/stemcat"
    same_db = store_of(make_limiter(options(tmp_path, None, ledger_url=ledger)))
    assert isinstance(same_db, PostgresAdmissionStore) and same_db.url == ledger
    assert isinstance(store_of(make_limiter(options(tmp_path, "memory", ledger_url=ledger))), MemoryAdmissionStore)
    by_host = store_of(make_limiter(options(tmp_path, None, ledger_url=None)))  # a SQLite ledger: per-host file
    assert isinstance(by_host, SqliteAdmissionStore) and by_host.path == default_store_path("http://127.0.0.1:9", KEY)
    assert run_rate_store(None, "postgres://h/db") == "postgres://h/db"
    assert run_rate_store("  ", ledger) == ledger
    assert run_rate_store(None, f"{tmp_path}/ledger.sqlite") is None


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


def test_a_client_follows_a_postgres_ledger_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    PostgresAdmissionStore = postgres_store_class()  # noqa: N806
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    monkeypatch.delenv("STEMCAT_RATE_STORE", raising=False)
    monkeypatch.setenv("STEMCAT_LEDGER_URL", "postgresql://stemcat@db.lan/stemcat")
    own = store_of(SunoClient(base_url="http://127.0.0.1:9").limiter)
    assert isinstance(own, PostgresAdmissionStore) and own.url == "postgresql://stemcat@db.lan/stemcat"


def test_postgres_urls_are_shown_without_their_password() -> None:
    postgres_store_class()
    from stemcat.client.ratelimit.stores.postgres import _masked

    assert _masked("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert _masked("postgresql://u@h/db?sslmode=require&password=s3cret") == (
        "postgresql://u@h/db?sslmode=require&password=***")
    store = open_admission_store("postgresql://u:s3cret@h/db", base_url="http://x", api_key=KEY)
    assert "s3cret" not in repr(store)
