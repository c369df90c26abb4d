"""A finished separation lacking documented stems is `incomplete`, names them, and completes on a later read.

The behaviour runs on both ledger backends; each backend's in-place upgrade of an older ledger has a test.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stemcat.catalog import Ledger
from stemcat.catalog.errors import CatalogError
from stemcat.catalog.migrations import widen_check_constraints
from stemcat.catalog.models import JobStatus
from stemcat.catalog.schema import SCHEMA_VERSION
from stemcat.catalog.transitions import is_allowed, is_charged, spend_effect

DOCUMENTED = {"split_stem": ("vocals", "drums", "bass", "guitar"), "separate_vocal": ("vocals", "instrumental")}


def _links(*names: str) -> list[tuple[str, str, float | None]]:
    return [(name, f"https://files.example/{name}.mp3", None) for name in names]


@pytest.fixture
def ledger(ledger_target):
    led = ledger_target.ledger()
    led.start_run("r1", flow_run_id=None, manifest="m.csv", params={}, balance_before=None)
    yield led
    led.close()


def _submitted(ledger: Ledger) -> str:
    job = ledger.claim("a1", "t1", "split_stem", 5, "r1")
    assert job is not None
    ledger.mark_submitted(job.job_id, "remote-1")
    return job.job_id


def test_a_success_missing_documented_stems_is_incomplete_and_names_them(ledger: Ledger) -> None:
    job_id = _submitted(ledger)
    status = ledger.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                                   stems=_links("vocals", "bass"), documented_stems=DOCUMENTED)
    assert status is JobStatus.INCOMPLETE
    job = ledger.get_job(job_id)
    assert job.status == "incomplete" and job.missing == ["drums", "guitar"]
    assert [s.stem for s in ledger.stems_for_job(job_id)] == ["bass", "vocals"]  # links kept
    assert ledger.spend_total("r1") == 5  # paid for, like any finished job
    assert ledger.claim("a1", "t1", "split_stem", 5, "r1") is None  # blocks a new (paid) claim


def test_a_later_full_answer_completes_it_and_a_partial_one_keeps_what_is_known(ledger: Ledger) -> None:
    job_id = _submitted(ledger)
    ledger.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                          stems=_links("vocals"), documented_stems=DOCUMENTED)
    # Another partial answer: the stems known from before count.
    assert ledger.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                                 stems=_links("drums", "bass"), documented_stems=DOCUMENTED) is JobStatus.INCOMPLETE
    assert ledger.get_job(job_id).missing == ["guitar"]
    assert ledger.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                                 stems=_links(*DOCUMENTED["split_stem"]),
                                 documented_stems=DOCUMENTED) is JobStatus.SUCCEEDED
    job = ledger.get_job(job_id)
    assert job.status == "succeeded" and job.missing == [] and job.error is None
    assert ledger.spend_total("r1") == 5


def test_a_success_listing_no_stem_at_all_is_incomplete(ledger: Ledger) -> None:
    job_id = _submitted(ledger)
    assert ledger.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None, stems=[],
                                 documented_stems=DOCUMENTED) is JobStatus.INCOMPLETE
    assert ledger.get_job(job_id).missing == list(DOCUMENTED["split_stem"])


def test_incomplete_in_the_life_cycle() -> None:
    S = JobStatus
    assert is_charged(S.INCOMPLETE)
    assert is_allowed(S.SUBMITTED, S.INCOMPLETE) and is_allowed(S.UNKNOWN, S.INCOMPLETE)
    assert is_allowed(S.INCOMPLETE, S.SUCCEEDED) and not is_allowed(S.INCOMPLETE, S.DOWNLOADED)
    assert spend_effect(S.SUBMITTED, S.INCOMPLETE, 5) is None and spend_effect(S.UNKNOWN, S.INCOMPLETE, 5) is None


def test_an_older_ledger_learns_the_new_status(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    con = sqlite3.connect(path, isolation_level=None)
    # As an older stemcat left it: no `incomplete` in the status CHECK, an older schema version.
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
    con.execute("BEGIN IMMEDIATE")
    version = con.execute("PRAGMA schema_version").fetchone()[0]
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'jobs'", (sql.replace(", 'incomplete'", ""),))
    con.execute(f"PRAGMA schema_version = {version + 1}")
    con.execute("PRAGMA writable_schema = OFF")
    con.execute("COMMIT")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    con.close()
    ledger = Ledger(path)
    try:
        ledger.start_run("r1", flow_run_id=None, manifest=None, params={}, balance_before=None)
        job_id = _submitted(ledger)
        ledger.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                              stems=_links("vocals"), documented_stems=DOCUMENTED)
        assert ledger.get_job(job_id).status == "incomplete"
    finally:
        ledger.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_a_check_constraint_is_never_narrowed(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    con.execute("""CREATE TABLE jobs (job_id TEXT, status TEXT CHECK ("status" IN ('intent', 'gone')))""")
    with pytest.raises(CatalogError, match="narrowed"):
        widen_check_constraints(con)
    con.close()


def test_an_older_postgres_ledger_learns_the_new_status(postgres_url: str) -> None:
    import psycopg

    from stemcat.catalog.ledger.postgres_backend import PostgresBackend
    from stemcat.catalog.migrations import POSTGRES_MIGRATIONS_TABLE

    Ledger(backend=PostgresBackend(postgres_url)).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:  # as an older stemcat left it
        (name,) = con.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'jobs'::regclass AND contype = 'c'"
                              " AND pg_get_constraintdef(oid) LIKE '%intent%'").fetchone()
        con.execute(f'ALTER TABLE jobs DROP CONSTRAINT "{name}"')
        con.execute(f"""ALTER TABLE jobs ADD CONSTRAINT "{name}" CHECK ("status" IN ('intent', 'submitted', """
                    "'succeeded', 'failed', 'unknown', 'not_submitted', 'downloaded', 'expired'))")
        con.execute(f"DELETE FROM {POSTGRES_MIGRATIONS_TABLE} WHERE version = {SCHEMA_VERSION}")
    ledger = Ledger(backend=PostgresBackend(postgres_url))
    try:
        ledger.start_run("r1", flow_run_id=None, manifest=None, params={}, balance_before=None)
        job_id = _submitted(ledger)
        ledger.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                              stems=_links("vocals"), documented_stems=DOCUMENTED)
        assert ledger.get_job(job_id).status == "incomplete"
    finally:
        ledger.close()
