"""The analysis task against a hand-built ledger (SQLite and PostgreSQL) and a scripted file host (httpx.MockTransport)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from stemcat.catalog import Ledger, TrackRow
from stemcat.client import NoLimiter, SunoClient
from stemcat.tasks.analysis.analyzer import AnalysisOutcome, Analyzer
from stemcat.tasks.separation.mixes import candidate_urls, mix_relpath
from stemcat.tasks.paths import UnsafePathPart
from stemcat.tasks.analysis.metrics import QualityThresholds
from tests.servers.ledgers import LedgerTarget

RATE = 16_000
ORIGIN = "https://cdn.test/origin/a1.mp3"
SOURCE = "https://cdn.test/source/a1.mp3"


def _mp3_bytes(tmp: Path, signal: np.ndarray) -> bytes:
    target = tmp / f"enc-{hashlib.sha1(signal.tobytes()).hexdigest()[:8]}.mp3"
    sf.write(target, signal, RATE, format="MP3", subtype="MPEG_LAYER_III")
    return target.read_bytes()


def _parts() -> dict[str, np.ndarray]:
    t = np.arange(RATE * 2) / RATE
    rng = np.random.default_rng(0)
    return {
        "vocals": 0.25 * np.sin(2 * np.pi * 330 * t),
        "drums": 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.5),
        "bass": 0.3 * np.sin(2 * np.pi * 55 * t),
        "brass": np.zeros(t.size),
    }


class FileHost:
    """Serves scripted files by URL and counts requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.generation: dict[str, object] | None = None
        self.requests: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        if request.url.path == "/api/v1/generate/record-info" and self.generation is not None:
            return httpx.Response(200, json={"code": 200, "msg": "success", "data": self.generation})
        body = self.files.get(str(request.url))
        if body is None:
            return httpx.Response(404, text="not found")
        return httpx.Response(200, content=body, headers={"Content-Length": str(len(body))})


@pytest.fixture
def host() -> FileHost:
    return FileHost()


@pytest.fixture
async def client(host: FileHost) -> AsyncIterator[SunoClient]:
    async with SunoClient(api_key="k-test", base_url="https://api.test", transport=httpx.MockTransport(host.handle),
                          limiter=NoLimiter(), max_read_attempts=1) as scripted:
        yield scripted


def _catalog(target: LedgerTarget, stems: dict[str, np.ndarray], *, origin_url: str | None, source_url: str | None,
             tmp: Path) -> tuple[Ledger, str]:
    """One downloaded split_stem job of song a1 whose stem files are the given signals."""
    data_dir = target.data_dir
    ledger = target.ledger()
    ledger.start_run("r1", flow_run_id=None, manifest="m.csv", params={}, balance_before=None)
    ledger.upsert_tracks([TrackRow(audio_id="a1", task_id="t1", source_url=source_url)])
    job = ledger.claim("a1", "t1", "split_stem", 5, "r1")
    assert job is not None
    ledger.mark_submitted(job.job_id, "remote-1")
    ledger.mark_succeeded(job.job_id, success_flag="SUCCESS", completed_at=None, origin_url=origin_url,
                          stems=[(name, f"https://files.test/{name}.mp3", None) for name in stems])
    for name, signal in stems.items():
        relpath = f"stems/a1/split_stem/{name}.mp3"
        (data_dir / relpath).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relpath).write_bytes(_mp3_bytes(tmp, signal))
        ledger.record_stem_download(job.job_id, name, path=relpath, bytes=1, sha256="x", duration_s=2.0,
                                    sample_rate=RATE, channels=1)
    ledger.mark_status(job.job_id, "downloaded")
    return ledger, job.job_id


Build = Callable[..., tuple[Ledger, str]]


@pytest.fixture
def build(ledger_target: LedgerTarget, tmp_path: Path) -> Iterator[Build]:
    opened: list[Ledger] = []

    def make(stems: dict[str, np.ndarray] | None = None, *, origin_url: str | None = ORIGIN,
             source_url: str | None = SOURCE) -> tuple[Ledger, str]:
        ledger, job_id = _catalog(ledger_target, stems or _parts(), origin_url=origin_url, source_url=source_url,
                                  tmp=tmp_path)
        opened.append(ledger)
        return ledger, job_id

    yield make
    for ledger in opened:  # also when a test failed before closing it (closing twice is harmless)
        ledger.close()


def _mix(tmp_path: Path) -> bytes:
    return _mp3_bytes(tmp_path, sum(_parts().values()))


async def test_mix_from_the_second_url_then_stems_measured_and_stored(
    build: Build, host: FileHost, client: SunoClient, tmp_path: Path
) -> None:
    ledger, job_id = build()
    host.files[SOURCE] = _mix(tmp_path)  # the originUrl answers 404
    analyzer = Analyzer(ledger=ledger, data_dir=tmp_path / "data", client=client)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.ANALYSED}
    assert host.requests == [ORIGIN, SOURCE]
    assert (tmp_path / "data" / "mixes" / "a1.mp3").is_file()
    assert not list((tmp_path / "data" / "mixes").glob(".*part"))
    job = ledger.get_job(job_id)
    assert job is not None and job.mix_path == "mixes/a1.mp3" and job.low_snr is False
    assert job.mix_sha256 == hashlib.sha256((tmp_path / "data" / "mixes" / "a1.mp3").read_bytes()).hexdigest()
    assert job.reconstruction_snr_db is not None and job.reconstruction_snr_db > 15
    assert job.mix_duration_s == pytest.approx(2.0, abs=1e-3)
    stems = {s.stem: s for s in ledger.stems_for_job(job_id)}
    assert stems["brass"].silent and not stems["vocals"].silent
    assert stems["vocals"].peak_dbfs == pytest.approx(20 * np.log10(0.25), abs=0.5)
    assert all(s.duration_diff_s == pytest.approx(0.0) for s in stems.values())
    assert analyzer.counts["stems_analysed"] == 4 and analyzer.counts["silent_stems"] == 1

    # Analysing again reuses the mix on disk.
    await analyzer.analyse([job_id])
    assert host.requests == [ORIGIN, SOURCE]
    ledger.close()


async def test_stems_that_do_not_add_up_are_flagged(
    build: Build, host: FileHost, client: SunoClient, tmp_path: Path
) -> None:
    ledger, job_id = build({k: v for k, v in _parts().items() if k != "bass"})  # the bass is missing
    host.files[ORIGIN] = _mix(tmp_path)
    analyzer = Analyzer(ledger=ledger, data_dir=tmp_path / "data", client=client)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.LOW_SNR}
    job = ledger.get_job(job_id)
    assert job is not None and job.low_snr is True and job.reconstruction_snr_db is not None
    assert job.reconstruction_snr_db < QualityThresholds().min_snr_db
    # A laxer threshold accepts the same stems.
    lax = Analyzer(ledger=ledger, data_dir=tmp_path / "data", client=client,
                   thresholds=QualityThresholds(min_snr_db=job.reconstruction_snr_db - 1))
    assert await lax.analyse([job_id]) == {job_id: AnalysisOutcome.ANALYSED}
    ledger.close()


async def test_generation_record_is_the_last_resort(
    build: Build, host: FileHost, client: SunoClient, tmp_path: Path
) -> None:
    ledger, job_id = build(origin_url="", source_url=None)
    host.generation = {"taskId": "t1", "status": "SUCCESS", "response": {"sunoData": [
        {"id": "other", "audioUrl": "https://cdn.test/other.mp3"},
        {"id": "a1", "audioUrl": "https://cdn.test/record/a1.mp3"},
    ]}}
    host.files["https://cdn.test/record/a1.mp3"] = _mix(tmp_path)
    analyzer = Analyzer(ledger=ledger, data_dir=tmp_path / "data", client=client)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.ANALYSED}
    assert host.requests[-1] == "https://cdn.test/record/a1.mp3"
    ledger.close()


async def test_no_mix_anywhere_keeps_the_stem_metrics_and_says_why(
    build: Build, host: FileHost, client: SunoClient, tmp_path: Path
) -> None:
    ledger, job_id = build()
    analyzer = Analyzer(ledger=ledger, data_dir=tmp_path / "data", client=client)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.NO_MIX}
    job = ledger.get_job(job_id)
    assert job is not None and job.reconstruction_snr_db is None and job.low_snr is None and job.mix_path is None
    assert job.analysis_error is not None and job.analysis_error.startswith("mix not fetched")
    assert "404" in job.analysis_error
    assert all(s.silent is not None and s.duration_diff_s is None for s in ledger.stems_for_job(job_id))

    offline = Analyzer(ledger=ledger, data_dir=tmp_path / "data", client=None)
    assert await offline.analyse([job_id]) == {job_id: AnalysisOutcome.NO_MIX}
    job = ledger.get_job(job_id)
    assert job is not None and "fetching mixes is off" in str(job.analysis_error)
    ledger.close()


async def test_a_damaged_mix_is_dropped_and_fetched_again_next_time(
    build: Build, host: FileHost, client: SunoClient, tmp_path: Path
) -> None:
    ledger, job_id = build()
    data_dir = tmp_path / "data"
    (data_dir / "mixes").mkdir(parents=True)
    (data_dir / "mixes" / "a1.mp3").write_bytes(b"\x00" * 100)
    analyzer = Analyzer(ledger=ledger, data_dir=data_dir, client=client)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.NO_MIX}
    job = ledger.get_job(job_id)
    assert job is not None and "mix unreadable" in str(job.analysis_error)
    assert not (data_dir / "mixes" / "a1.mp3").exists()
    host.files[ORIGIN] = _mix(tmp_path)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.ANALYSED}
    job = ledger.get_job(job_id)
    assert job is not None and job.analysis_error is None
    ledger.close()


async def test_a_download_that_is_not_audio_is_not_kept(
    build: Build, host: FileHost, client: SunoClient, tmp_path: Path
) -> None:
    ledger, job_id = build()
    host.files[ORIGIN] = b"<html>gone</html>"
    host.files[SOURCE] = _mix(tmp_path)
    analyzer = Analyzer(ledger=ledger, data_dir=tmp_path / "data", client=client)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.ANALYSED}
    assert host.requests == [ORIGIN, SOURCE]
    ledger.close()


async def test_missing_or_broken_stem_files(build: Build, host: FileHost, client: SunoClient, tmp_path: Path) -> None:
    ledger, job_id = build()
    host.files[ORIGIN] = _mix(tmp_path)
    data_dir = tmp_path / "data"
    (data_dir / "stems/a1/split_stem/bass.mp3").unlink()
    analyzer = Analyzer(ledger=ledger, data_dir=data_dir, client=client)
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.NO_MIX}
    job = ledger.get_job(job_id)
    assert job is not None and job.reconstruction_snr_db is None and job.analysis_error == (
        "not every stem is on disk: bass")
    assert job.mix_duration_s is not None  # the mix was still measured

    (data_dir / "stems/a1/split_stem/drums.mp3").write_bytes(b"not audio at all")
    assert await analyzer.analyse([job_id]) == {job_id: AnalysisOutcome.FAILED}
    job = ledger.get_job(job_id)
    assert job is not None and str(job.analysis_error).startswith("drums.mp3")
    assert analyzer.counts["analysis_failed"] == 1
    assert await analyzer.analyse(["unknown-job"]) == {"unknown-job": AnalysisOutcome.SKIPPED}
    ledger.close()


def test_mix_paths_and_url_order() -> None:
    assert mix_relpath("a1") == Path("mixes/a1.mp3")
    with pytest.raises(UnsafePathPart):
        mix_relpath("../etc")
    assert candidate_urls(["", None, "u1", "u1"], "u2") == ["u1", "u2"]
    assert candidate_urls([], None) == []
