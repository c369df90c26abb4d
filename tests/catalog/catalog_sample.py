"""A small, fully known ledger for report, snapshot and example-query tests.

Two runs on two UTC days (2025-03-01 and 2025-03-02):

run r1 (balance 100 -> 93, ledger 7: consistent)
    a1 split_stem      5  succeeded; vocals downloaded (180 s, silent), drums downloaded (180 s,
                          clipped), bass failed "HTTP 403"; analysed without a mix (no SNR, no error)
    a2 separate_vocal  1  downloaded; vocals + instrumental, 120 s each; analysed like a1
    a3 separate_vocal  1  not_submitted (430) -> refunded
    a4 separate_vocal  1  unknown ("read timeout")
run r2 (balance 93 -> 86, ledger 6: one credit unexplained)
    a3 separate_vocal  1  attempt 2, failed (GENERATE_AUDIO_FAILED, 500)
    a5 split_stem      5  succeeded; vocals pending (link expires in 1 day), drums pending
                          (10 days), bass expired "link expired"
two manifest rows rejected in r1 ("missing audio_id").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stemcat.catalog import JobQualityRow, Ledger, RejectRow, StemQualityRow, TrackRow

DAY1 = datetime(2025, 3, 1, 23, 0, tzinfo=UTC).timestamp()
DAY2 = datetime(2025, 3, 2, 0, 30, tzinfo=UTC).timestamp()

SECRET_URL_PART = "s3cr3t-bearer-path"

# The stems were measured but not the job against its mix: no SNR, and no problem reported.
NO_JOB_QUALITY = JobQualityRow(reconstruction_snr_db=None, mix_path=None, mix_duration_s=None, low_snr=None)


@dataclass
class ManualClock:
    """A clock the test moves by hand."""

    now: float

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@dataclass(frozen=True)
class Sample:
    ledger: Ledger
    clock: ManualClock
    job_ids: dict[str, str]


def _url(name: str) -> str:
    return f"https://file.example.test/s/{SECRET_URL_PART}/{name}.mp3"


def build_sample(data_dir: Path, open_ledger: Callable[..., Ledger] | None = None) -> Sample:
    """Write the sample ledger under ``data_dir`` (or where ``open_ledger(clock=...)`` puts it) and return it open."""
    clock = ManualClock(DAY1)
    led = open_ledger(clock=clock) if open_ledger is not None else Ledger(data_dir / "ledger.sqlite", clock=clock)
    ids: dict[str, str] = {}
    real_now = time.time()

    led.start_run("r1", flow_run_id="f1", manifest="songs.csv", params={"max_credits": 50}, balance_before=100)
    led.upsert_tracks(
        [
            TrackRow(audio_id="a1", task_id="t1", title="One", split="train", duration_s=180.0),
            TrackRow(audio_id="a2", task_id="t1", title="Two", split="train", duration_s=120.0),
            TrackRow(audio_id="a3", task_id="t2", title="Three", split="test", duration_s=200.0),
            TrackRow(audio_id="a4", task_id="t2", title="Four", split="test", duration_s=90.0),
            TrackRow(audio_id="a5", task_id="t3", title="Five", split="train", duration_s=150.0),
        ]
    )
    led.add_rejects(
        [
            RejectRow(run_id="r1", manifest="songs.csv", line=7, reason="missing audio_id", raw={"title": "x"}),
            RejectRow(run_id="r1", manifest="songs.csv", line=9, reason="missing audio_id", raw={"title": "y"}),
        ]
    )

    a1 = led.claim("a1", "t1", "split_stem", 5, "r1")
    assert a1 is not None
    ids["a1"] = a1.job_id
    led.mark_submitted(a1.job_id, "remote-a1")
    led.mark_succeeded(
        a1.job_id,
        success_flag="SUCCESS",
        completed_at=DAY1 + 60,
        origin_url=None,
        stems=[(stem, _url(f"a1-{stem}"), real_now + 14 * 86400) for stem in ("vocals", "drums", "bass")],
    )
    led.record_stem_download(
        a1.job_id, "vocals", path="stems/a1/split_stem/vocals.mp3", bytes=1000, sha256="aa",
        duration_s=180.0, sample_rate=44100, channels=2,
    )
    led.record_stem_download(
        a1.job_id, "drums", path="stems/a1/split_stem/drums.mp3", bytes=1000, sha256="bb",
        duration_s=180.0, sample_rate=44100, channels=2,
    )
    led.record_analysis(
        a1.job_id,
        NO_JOB_QUALITY,
        [
            StemQualityRow(stem="vocals", peak_dbfs=-80.0, rms_dbfs=-95.0, lufs=-90.0, clipped_fraction=0.0,
                           silent=True),
            StemQualityRow(stem="drums", peak_dbfs=0.0, rms_dbfs=-9.0, lufs=-8.0, clipped_fraction=0.02,
                           silent=False),
        ],
    )
    led.mark_stem(a1.job_id, "bass", "failed", "HTTP 403")

    a2 = led.claim("a2", "t1", "separate_vocal", 1, "r1")
    assert a2 is not None
    ids["a2"] = a2.job_id
    led.mark_submitted(a2.job_id, "remote-a2")
    led.mark_succeeded(
        a2.job_id,
        success_flag="SUCCESS",
        completed_at=DAY1 + 90,
        origin_url="https://cdn.example.test/a2.mp3",
        stems=[(stem, _url(f"a2-{stem}"), real_now + 14 * 86400) for stem in ("vocals", "instrumental")],
    )
    for stem in ("vocals", "instrumental"):
        led.record_stem_download(
            a2.job_id, stem, path=f"stems/a2/separate_vocal/{stem}.mp3", bytes=500, sha256="cc",
            duration_s=120.0, sample_rate=44100, channels=2,
        )
    led.mark_status(a2.job_id, "downloaded")
    led.record_analysis(
        a2.job_id,
        NO_JOB_QUALITY,
        [StemQualityRow(stem=stem, peak_dbfs=-1.0, rms_dbfs=-14.0, lufs=-14.0, clipped_fraction=0.0, silent=False)
         for stem in ("vocals", "instrumental")],
    )

    a3 = led.claim("a3", "t2", "separate_vocal", 1, "r1")
    assert a3 is not None
    ids["a3"] = a3.job_id
    led.mark_not_submitted(a3.job_id, 430, "430 call frequency too high")

    a4 = led.claim("a4", "t2", "separate_vocal", 1, "r1")
    assert a4 is not None
    ids["a4"] = a4.job_id
    led.mark_unknown(a4.job_id, "read timeout")
    led.record_callback(
        a1.job_id, "remote-a1", 200,
        {"code": 200, "data": {"task_id": "remote-a1", "vocal_removal_info": {"vocal_url": _url("cb-vocals")}}},
    )
    led.finish_run("r1", status="partial", exit_code=1, balance_after=93, summary={"ok": True}, counts={"rows": 6})

    clock.now = DAY2
    led.start_run("r2", flow_run_id="f2", manifest="songs.csv", params={}, balance_before=93)
    a3b = led.claim("a3", "t2", "separate_vocal", 1, "r2")
    assert a3b is not None
    ids["a3#2"] = a3b.job_id
    led.mark_submitted(a3b.job_id, "remote-a3")
    led.mark_failed(a3b.job_id, success_flag="GENERATE_AUDIO_FAILED", error_code=500, error="separation failed")

    a5 = led.claim("a5", "t3", "split_stem", 5, "r2")
    assert a5 is not None
    ids["a5"] = a5.job_id
    led.mark_submitted(a5.job_id, "remote-a5")
    led.mark_succeeded(
        a5.job_id,
        success_flag="SUCCESS",
        completed_at=None,
        origin_url=None,
        stems=[
            ("vocals", _url("a5-vocals"), real_now + 1 * 86400),
            ("drums", _url("a5-drums"), real_now + 10 * 86400),
            ("bass", _url("a5-bass"), real_now - 3600),
        ],
    )
    led.mark_stem(a5.job_id, "bass", "expired", "link expired")
    led.finish_run("r2", status="completed", exit_code=0, balance_after=86, summary={}, counts={})
    return Sample(ledger=led, clock=clock, job_ids=ids)
