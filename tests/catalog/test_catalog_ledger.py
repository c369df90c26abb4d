"""The ledger's behaviour: claims, the job life cycle, spend, stems, runs, tracks and callbacks,
on SQLite and on PostgreSQL (``ledger_target``)."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from stemcat.catalog import (
    InvalidTransitionError,
    JobQualityRow,
    JobStatus,
    Ledger,
    LedgerClosedError,
    RejectRow,
    StemQualityRow,
    StemStatus,
    TrackRow,
    UnknownJobError,
    UnknownRunError,
)
from tests.catalog.catalog_sample import ManualClock
from tests.catalog.conftest import LedgerTarget


@pytest.fixture
def led(ledger_target: LedgerTarget) -> Iterator[Ledger]:
    ledger = ledger_target.ledger(clock=ManualClock(1_700_000_000.0))
    ledger.target = ledger_target  # type: ignore[attr-defined] # the tests' way in from outside
    yield ledger
    ledger.close()


def _spend_rows(led: Ledger, job_id: str) -> list[tuple[str, int]]:
    return led.target.query(  # type: ignore[attr-defined]
        "SELECT event, credits FROM spend WHERE job_id = ? ORDER BY spend_id", (job_id,)
    )


def test_new_ledger_is_wal_with_full_sync_and_all_tables(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "ledger.sqlite"
    with Ledger(path):
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        con.close()
    assert {"tracks", "jobs", "stems", "spend", "runs", "callbacks", "rejects"} <= tables
    # Reopening an existing ledger keeps its data and schema.
    with Ledger(path) as again:
        assert again.spend_total() == 0


def test_claim_creates_intent_and_spend_before_returning(led: Ledger) -> None:
    job = led.claim("a1", "t1", "separate_vocal", 1, "r1")
    assert job is not None
    assert job.status == JobStatus.INTENT
    assert job.attempt == 1
    assert len(job.job_id) == 32 and int(job.job_id, 16) >= 0
    # Visible to an independent connection: the commit happened before claim returned.
    assert _spend_rows(led, job.job_id) == [("intent", 1)]
    assert led.get_job(job.job_id) == job


def test_second_claim_of_same_key_is_refused_in_every_blocking_state(led: Ledger) -> None:
    job = led.claim("a1", "t1", "split_stem", 5, "r1")
    assert job is not None
    assert led.claim("a1", "t1", "split_stem", 5, "r2") is None
    led.mark_unknown(job.job_id, "timeout")
    assert led.claim("a1", "t1", "split_stem", 5, "r2") is None
    # Another separation type of the same audio is a different key.
    assert led.claim("a1", "t1", "separate_vocal", 1, "r1") is not None


def test_force_creates_next_attempt(led: Ledger) -> None:
    first = led.claim("a1", "t1", "separate_vocal", 1, "r1")
    assert first is not None
    led.mark_submitted(first.job_id, "rt-1")
    led.mark_failed(first.job_id, success_flag="GENERATE_AUDIO_FAILED", error_code=500, error="boom")
    assert led.claim("a1", "t1", "separate_vocal", 1, "r2") is None
    second = led.claim("a1", "t1", "separate_vocal", 1, "r2", force=True)
    assert second is not None
    assert second.attempt == 2
    assert second.job_id != first.job_id
    assert led.latest_jobs([("a1", "separate_vocal")])[("a1", "separate_vocal")].job_id == second.job_id
    assert led.spend_total() == 2


def test_not_submitted_is_refunded_and_can_be_claimed_again(led: Ledger) -> None:
    first = led.claim("a1", "t1", "split_stem", 5, "r1")
    assert first is not None
    assert led.mark_not_submitted(first.job_id, 430, "call frequency too high") is True
    assert _spend_rows(led, first.job_id) == [("intent", 5), ("rejected", -5)]
    assert led.spend_total("r1") == 0
    stored = led.get_job(first.job_id)
    assert stored is not None and stored.status == JobStatus.NOT_SUBMITTED and stored.error_code == 430
    again = led.claim("a1", "t1", "split_stem", 5, "r2")
    assert again is not None and again.attempt == 2
    assert led.spend_total() == 5
    assert led.spend_total("r2") == 5


def test_spend_events_for_accept_and_ambiguous(led: Ledger) -> None:
    accepted = led.claim("a1", "t1", "separate_vocal", 1, "r1")
    ambiguous = led.claim("a2", "t1", "separate_vocal", 1, "r1")
    assert accepted is not None and ambiguous is not None
    assert led.mark_submitted(accepted.job_id, "rt-a") is True
    assert led.mark_unknown(ambiguous.job_id, "read timeout") is True
    assert _spend_rows(led, accepted.job_id) == [("intent", 1), ("accepted", 0)]
    assert _spend_rows(led, ambiguous.job_id) == [("intent", 1), ("ambiguous", 0)]
    assert led.spend_total("r1") == 2
    # Reconciliation from a callback: unknown -> submitted, the intent stands.
    assert led.mark_submitted(ambiguous.job_id, "rt-b") is True
    assert _spend_rows(led, ambiguous.job_id) == [("intent", 1), ("ambiguous", 0), ("accepted", 0)]
    job = led.get_job(ambiguous.job_id)
    assert job is not None and job.status == JobStatus.SUBMITTED and job.remote_task_id == "rt-b"


def test_late_proof_of_execution_restores_the_credits(led: Ledger) -> None:
    job = led.claim("a1", "t1", "split_stem", 5, "r1")
    assert job is not None
    led.mark_not_submitted(job.job_id, 455, "maintenance")
    assert led.spend_total() == 0
    assert led.mark_submitted(job.job_id, "rt-late") is True
    assert led.spend_total() == 5


def test_submit_outcomes_never_override_evidence_that_the_task_ran(led: Ledger) -> None:
    job = led.claim("a1", "t1", "separate_vocal", 1, "r1")
    assert job is not None
    # The callback arrives before the POST's answer.
    assert led.mark_submitted(job.job_id, "rt-1") is True
    led.mark_succeeded(job.job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                       stems=[("vocals", "https://x.test/v.mp3", None)])
    assert led.mark_submitted(job.job_id, "rt-1") is False
    assert led.mark_unknown(job.job_id, "late timeout") is False
    assert led.mark_not_submitted(job.job_id, 430, "late 430") is False
    stored = led.get_job(job.job_id)
    assert stored is not None and stored.status == JobStatus.SUCCEEDED
    assert led.spend_total() == 1
    with pytest.raises(InvalidTransitionError):
        led.mark_submitted(job.job_id, "rt-other")


def test_disallowed_transitions_raise_and_change_nothing(led: Ledger) -> None:
    job = led.claim("a1", "t1", "separate_vocal", 1, "r1")
    assert job is not None
    with pytest.raises(InvalidTransitionError):
        led.mark_succeeded(job.job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                           stems=[("vocals", "https://x.test/v.mp3", None)])
    with pytest.raises(InvalidTransitionError):
        led.mark_status(job.job_id, "downloaded")
    with pytest.raises(InvalidTransitionError):
        led.mark_failed(job.job_id, success_flag="CREATE_TASK_FAILED", error_code=None, error=None)
    assert led.get_job(job.job_id) == job
    assert led.stems_for_job(job.job_id) == []
    with pytest.raises(UnknownJobError):
        led.mark_submitted("no-such-job", "rt")
    with pytest.raises(ValueError):
        led.mark_status(job.job_id, "not-a-status")


def test_mark_polled_counts_and_schedules(led: Ledger) -> None:
    job = led.claim("a1", "t1", "separate_vocal", 1, "r1")
    assert job is not None
    led.mark_submitted(job.job_id, "rt")
    led.mark_polled(job.job_id, 123.0)
    led.mark_polled(job.job_id, 456.0)
    stored = led.get_job(job.job_id)
    assert stored is not None and stored.poll_count == 2 and stored.next_poll_at == 456.0


def _succeeded_job(led: Ledger) -> str:
    job = led.claim("a1", "t1", "separate_vocal", 1, "r1")
    assert job is not None
    led.mark_submitted(job.job_id, "rt")
    led.mark_succeeded(
        job.job_id, success_flag="SUCCESS", completed_at=1_700_000_100.0, origin_url="https://cdn.test/a1.mp3",
        stems=[("vocals", "https://x.test/v1.mp3", 10.0), ("instrumental", "https://x.test/i1.mp3", 10.0)],
    )
    return job.job_id


def test_stems_flow_from_pending_to_downloaded_job(led: Ledger) -> None:
    job_id = _succeeded_job(led)
    stems = {stem.stem: stem for stem in led.stems_for_job(job_id)}
    assert set(stems) == {"vocals", "instrumental"}
    assert all(stem.status == StemStatus.PENDING for stem in stems.values())
    assert stems["vocals"].url == "https://x.test/v1.mp3"
    assert "x.test" not in repr(stems["vocals"])
    assert led.record_stem_download(job_id, "vocals", path="stems/a1/vocals.mp3", bytes=10, sha256="ab",
                                    duration_s=1.5, sample_rate=44100, channels=2) is False
    with pytest.raises(InvalidTransitionError):
        led.mark_status(job_id, "downloaded")
    assert led.record_stem_download(job_id, "instrumental", path="stems/a1/inst.mp3", bytes=12, sha256="cd",
                                    duration_s=1.5, sample_rate=44100, channels=2) is True
    assert led.mark_status(job_id, "downloaded") is True
    assert led.mark_status(job_id, "downloaded") is False
    job = led.get_job(job_id)
    assert job is not None and job.status == JobStatus.DOWNLOADED
    assert job.completed_at == 1_700_000_100.0 and job.origin_url == "https://cdn.test/a1.mp3"


def test_fresh_urls_keep_downloaded_files(led: Ledger) -> None:
    job_id = _succeeded_job(led)
    led.record_stem_download(job_id, "vocals", path="stems/a1/vocals.mp3", bytes=10, sha256="ab",
                             duration_s=1.0, sample_rate=44100, channels=2)
    led.mark_stem(job_id, "instrumental", "expired", "link expired")
    led.mark_status(job_id, "expired", "stem URLs expired before download")
    led.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                       stems=[("vocals", "https://x.test/v2.mp3", 20.0), ("instrumental", "https://x.test/i2.mp3", 20.0)])
    stems = {stem.stem: stem for stem in led.stems_for_job(job_id)}
    assert stems["vocals"].status == StemStatus.DOWNLOADED
    assert (stems["vocals"].path, stems["vocals"].sha256, stems["vocals"].url) == (
        "stems/a1/vocals.mp3", "ab", "https://x.test/v2.mp3")
    assert stems["instrumental"].status == StemStatus.PENDING and stems["instrumental"].error is None
    assert stems["instrumental"].url_expires_at == 20.0
    job = led.get_job(job_id)
    assert job is not None and job.status == JobStatus.SUCCEEDED and job.completed_at == 1_700_000_100.0


def test_refreshing_a_downloaded_job_keeps_it_downloaded(led: Ledger) -> None:
    job_id = _succeeded_job(led)
    for stem in ("vocals", "instrumental"):
        led.record_stem_download(job_id, stem, path=f"s/{stem}.mp3", bytes=1, sha256="x",
                                 duration_s=1.0, sample_rate=44100, channels=1)
    led.mark_status(job_id, "downloaded")
    led.mark_succeeded(job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                       stems=[("vocals", "https://x.test/v3.mp3", 30.0), ("instrumental", "https://x.test/i3.mp3", 30.0)])
    job = led.get_job(job_id)
    assert job is not None and job.status == JobStatus.DOWNLOADED


def test_stem_quality_and_validation(led: Ledger) -> None:
    job_id = _succeeded_job(led)
    led.record_analysis(
        job_id,
        JobQualityRow(reconstruction_snr_db=None, mix_path=None, mix_duration_s=None, low_snr=None),
        [StemQualityRow(stem="vocals", peak_dbfs=-1.0, rms_dbfs=-20.0, lufs=-18.0, clipped_fraction=0.0,
                        silent=False)],
    )
    vocals = next(stem for stem in led.stems_for_job(job_id) if stem.stem == "vocals")
    assert (vocals.peak_dbfs, vocals.lufs, vocals.silent) == (-1.0, -18.0, False)
    with pytest.raises(ValueError):
        led.record_stem_download(job_id, "vocals", path="/etc/passwd", bytes=1, sha256="x",
                                 duration_s=None, sample_rate=None, channels=None)
    with pytest.raises(ValueError):
        led.record_stem_download(job_id, "vocals", path="stems/../../x", bytes=1, sha256="x",
                                 duration_s=None, sample_rate=None, channels=None)
    with pytest.raises(UnknownJobError):
        led.mark_stem(job_id, "drums", "failed", "no such stem")
    with pytest.raises(ValueError):
        led.mark_stem(job_id, "vocals", "downloaded")


def test_jobs_by_status_filters_and_limits(led: Ledger) -> None:
    jobs = [led.claim(f"a{i}", "t", "separate_vocal", 1, "r1" if i < 3 else "r2") for i in range(5)]
    assert all(job is not None for job in jobs)
    led.mark_unknown(jobs[0].job_id, "x")  # type: ignore[union-attr]
    intents = led.jobs_by_status(["intent"])
    assert [job.audio_id for job in intents] == ["a1", "a2", "a3", "a4"]
    assert [job.audio_id for job in led.jobs_by_status(["intent", "unknown"], run_id="r1")] == ["a0", "a1", "a2"]
    assert len(led.jobs_by_status(["intent"], limit=2)) == 2
    assert led.jobs_by_status([]) == []


def test_latest_jobs_batches_over_many_keys(led: Ledger) -> None:
    keys = [(f"a{i:04d}", "separate_vocal") for i in range(1203)]
    for audio_id, kind in keys[::6]:
        job = led.claim(audio_id, "t", kind, 1, "r1")
        assert job is not None
    forced = led.claim("a0000", "t", "separate_vocal", 1, "r1", force=True)
    assert forced is not None
    latest = led.latest_jobs(keys + [("missing", "split_stem")])
    assert set(latest) == set(keys[::6])
    assert latest[("a0000", "separate_vocal")].attempt == 2


def test_runs_record_spend_and_balance_delta(led: Ledger) -> None:
    led.start_run("r1", flow_run_id="fr", manifest="m.csv",
                  params={"max_credits": 9, "api_key": "sk-live-123", "nested": {"Authorization": "Bearer x"}},
                  balance_before=50)
    for audio_id in ("a1", "a2"):
        job = led.claim(audio_id, "t", "split_stem", 5, "r1")
        assert job is not None
    led.finish_run("r1", status="completed", exit_code=0, balance_after=40, summary={"note": "ok"},
                   counts={"rows": 3, "n_submitted": 2, "bytes_downloaded": 99})
    run = led.target.records("SELECT * FROM runs WHERE run_id = 'r1'")[0]  # type: ignore[attr-defined]
    assert (run["status"], run["credits_spent"], run["balance_delta"]) == ("completed", 10, -10)
    assert (run["n_rows"], run["n_submitted"], run["n_failed"]) == (3, 2, None)
    params = json.loads(run["params"])
    assert params["max_credits"] == 9
    assert "sk-live-123" not in run["params"] and "Bearer" not in run["params"]
    with pytest.raises(ValueError):
        led.start_run("r1", flow_run_id=None, manifest=None, params={}, balance_before=None)
    with pytest.raises(UnknownRunError):
        led.finish_run("nope", status="failed", exit_code=1, balance_after=None, summary={}, counts={})
    with pytest.raises(ValueError):
        led.finish_run("r1", status="weird", exit_code=1, balance_after=None, summary={}, counts={})


def test_tracks_upsert_keeps_first_seen_and_lists_by_task(led: Ledger) -> None:
    led.upsert_tracks([TrackRow(audio_id="a1", task_id="t1", title="Old", metadata={"mood": "calm"}),
                       TrackRow(audio_id="a2", task_id="t1")])
    query = led.target.query  # type: ignore[attr-defined]
    first_seen = query("SELECT first_seen_at FROM tracks WHERE audio_id = 'a1'")[0][0]
    led.upsert_tracks([TrackRow(audio_id="a1", task_id="t1", title="New", metadata='{"mood": "dark"}')])
    title, first_seen_again, updated, metadata = query(
        "SELECT title, first_seen_at, updated_at, metadata FROM tracks WHERE audio_id = 'a1'")[0]
    assert (title, first_seen_again) == ("New", first_seen)
    assert updated > first_seen
    assert json.loads(metadata) == {"mood": "dark"}
    by_task = led.tracks_for_tasks(["t1", "t-unknown"])
    assert list(by_task) == ["t1"]
    assert [track.audio_id for track in by_task["t1"]] == ["a1", "a2"]
    with pytest.raises(ValueError):
        TrackRow(audio_id="a3", metadata="[1, 2]")
    with pytest.raises(ValueError):
        TrackRow(audio_id="")


def test_rejects_and_callbacks_are_kept(led: Ledger) -> None:
    led.add_rejects([RejectRow(reason="bad type", run_id="r1", manifest="m.csv", line=4, raw={"type": "x"}),
                     RejectRow(reason="unparsable", line=5, raw="not json, a raw line")])
    raws = [json.loads(row[0]) for row in led.target.query("SELECT raw FROM rejects ORDER BY line")]  # type: ignore[attr-defined]
    assert raws == [{"type": "x"}, "not json, a raw line"]
    payload = {"code": 200, "data": {"task_id": "rt"}}
    led.record_callback("tok", "rt", 200, payload)
    led.record_callback("tok", "rt", 200, payload)
    led.record_callback("other", None, 451, {"code": 451})
    received = led.callbacks_for_token("tok")
    assert [cb["payload"] for cb in received] == [payload, payload]
    assert received[0]["remote_task_id"] == "rt" and received[0]["id"] < received[1]["id"]


def test_claim_validates_its_inputs(led: Ledger) -> None:
    with pytest.raises(ValueError):
        led.claim("a1", "t1", "separate_vocal", 0, "r1")
    with pytest.raises(ValueError):
        led.claim("", "t1", "separate_vocal", 1, "r1")
    with pytest.raises(ValueError):
        led.claim("a1", "t1", "separate_vocal", True, "r1")  # type: ignore[arg-type]


def test_closed_ledger_refuses_work(ledger_target: LedgerTarget) -> None:
    led = ledger_target.ledger()
    led.close()
    led.close()
    with pytest.raises(LedgerClosedError):
        led.claim("a1", "t1", "separate_vocal", 1, "r1")


def test_claim_is_exactly_once_across_threads(ledger_target: LedgerTarget) -> None:
    shared = ledger_target.ledger()
    own = [ledger_target.ledger() for _ in range(3)]
    keys = [(f"a{i}", "split_stem") for i in range(50)]
    ledgers = [shared] * 5 + own
    start = threading.Barrier(len(ledgers))
    claimed: list[tuple[str, str]] = []
    claimed_lock = threading.Lock()
    errors: list[BaseException] = []

    def race(ledger: Ledger, seed: int) -> None:
        order = keys[:]
        random.Random(seed).shuffle(order)
        try:
            start.wait()
            for audio_id, kind in order:
                job = ledger.claim(audio_id, "t", kind, 5, f"run-{seed}")
                if job is not None:
                    with claimed_lock:
                        claimed.append(job.key)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(ledger, seed)) for seed, ledger in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert Counter(claimed) == Counter(keys)
    assert shared.spend_total() == 50 * 5
    assert len(shared.latest_jobs(keys)) == 50
    for ledger in own:
        ledger.close()
    shared.close()
