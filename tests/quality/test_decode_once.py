"""Each downloaded file is decoded once: verification and the meters come from the same pass."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stemcat.catalog import Ledger
from stemcat.tasks.analysis.checks import StemCheck
from stemcat.tasks.analysis.decode import JobRequest, UndecodableAudio, decode_job
from stemcat.tasks.analysis.metrics import QualityThresholds
from stemcat.tasks.context import RunOptions
from stemcat.tasks.separation.mixes import mix_relpath

RATE = 22_050


def _write(path: Path, signal: np.ndarray) -> Path:
    sf.write(path, signal, RATE, format="FLAC")
    return path


def _break_halfway(path: Path) -> Path:
    """Garbage in the middle of a FLAC file: the first half decodes, then the decoder fails."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def song(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    signals = {name: 0.1 * rng.standard_normal((RATE * 4, 2)) for name in ("vocals", "drums", "bass")}
    data_dir = tmp_path / "data"
    parts = {name: _write(tmp_path / f"{name}.flac.part", signal) for name, signal in signals.items()}
    mix = data_dir / mix_relpath("a1")
    mix.parent.mkdir(parents=True)
    _write(mix, sum(signals.values()))  # the mix is on disk already (FLAC bytes under its .mp3 name)
    return {"data_dir": data_dir, "parts": parts, "mix": mix}


def test_a_file_failing_halfway_fails_alone_with_its_reason(song: dict[str, Any]) -> None:
    parts = dict(song["parts"])
    _break_halfway(parts["drums"])
    result = decode_job(JobRequest(parts, song["mix"], QualityThresholds()))
    assert result.stems["drums"].facts is None and "does not decode" in str(result.stems["drums"].problem)
    with pytest.raises(UndecodableAudio, match="drums.flac.part"):
        result.stems["drums"].require()
    alone = decode_job(JobRequest({k: v for k, v in parts.items() if k != "drums"}, song["mix"], QualityThresholds()))
    assert result.metrics is not None and alone.metrics is not None
    assert set(result.metrics.stems) == {"vocals", "bass"}
    for name in ("vocals", "bass"):
        assert result.stems[name] == alone.stems[name]
        assert result.metrics.stems[name] == alone.metrics.stems[name]
    assert result.metrics.reconstruction_snr_db is None and "drums" in str(result.metrics.snr_problem)


class InlinePool:
    """Runs each job in this process and records what every pass decoded."""

    def __init__(self) -> None:
        self.requests: list[JobRequest] = []

    async def run(self, fn: Any, request: JobRequest) -> Any:
        self.requests.append(request)
        return fn(request)


class Writes:
    def __init__(self) -> None:
        self.written: list[tuple[Any, ...]] = []

    async def read(self, method: Any, *args: Any) -> None:
        return None

    async def write(self, method: Any, *args: Any) -> None:
        self.written.append((method, *args))


class Ctx:
    def __init__(self, data_dir: Path, *, analyze: bool) -> None:
        self.options = RunOptions(data_dir=data_dir, base_url="http://unused", analyze=analyze)
        self.writes = Writes()
        self.counts: Counter[str] = Counter()
        self.client = None


async def _download_all(check: StemCheck, parts: dict[str, Path]) -> dict[str, Any]:
    async def one(name: str, part: Path) -> Any:
        await asyncio.sleep(0.01 * len(name))  # stems arrive at different times
        try:
            return await check.verify(name, part)
        except UndecodableAudio as error:
            return error
        finally:
            check.withdraw(name)

    return dict(zip(parts, await asyncio.gather(*(one(n, p) for n, p in parts.items())), strict=True))


def test_a_job_s_stems_and_mix_are_decoded_in_one_pass_that_is_also_the_analysis(song: dict[str, Any]) -> None:
    ctx, pool = Ctx(song["data_dir"], analyze=True), InlinePool()

    async def scenario() -> tuple[dict[str, Any], bool]:
        check = StemCheck(ctx, "j1", "a1", list(song["parts"]), complete=True, pool=pool)  # type: ignore[arg-type]
        facts = await _download_all(check, song["parts"])
        return facts, await check.finish(dict.fromkeys(song["parts"], "downloaded"))

    facts, stored = asyncio.run(scenario())
    assert [set(r.stems) for r in pool.requests] == [set(song["parts"])]  # one pass for the whole job...
    assert pool.requests[0].mix == song["mix"] and pool.requests[0].thresholds is not None  # ...with the mix
    assert all(f.frames == RATE * 4 and f.sample_rate == RATE and f.channels == 2 for f in facts.values())
    assert stored
    [(method, job_id, job_row, stem_rows)] = ctx.writes.written
    assert method is Ledger.record_analysis and job_id == "j1"
    assert {row.stem for row in stem_rows} == set(song["parts"])
    assert job_row.reconstruction_snr_db is not None and job_row.reconstruction_snr_db > 40
    assert ctx.counts["stems_analysed"] == 3


def test_one_bad_stem_fails_alone_and_the_job_is_left_to_the_analysis_step(song: dict[str, Any]) -> None:
    ctx, pool = Ctx(song["data_dir"], analyze=True), InlinePool()
    _break_halfway(song["parts"]["bass"])

    async def scenario() -> tuple[dict[str, Any], bool]:
        check = StemCheck(ctx, "j1", "a1", list(song["parts"]), complete=True, pool=pool)  # type: ignore[arg-type]
        facts = await _download_all(check, song["parts"])
        return facts, await check.finish({"vocals": "downloaded", "drums": "downloaded", "bass": "failed"})

    facts, stored = asyncio.run(scenario())
    assert isinstance(facts["bass"], UndecodableAudio) and "does not decode" in str(facts["bass"])
    assert facts["vocals"].frames == facts["drums"].frames == RATE * 4
    assert len(pool.requests) == 1 and not stored and not ctx.writes.written


def test_without_analysis_each_stem_is_verified_alone_without_meters(song: dict[str, Any]) -> None:
    ctx, pool = Ctx(song["data_dir"], analyze=False), InlinePool()

    async def scenario() -> tuple[dict[str, Any], bool]:
        check = StemCheck(ctx, "j1", "a1", list(song["parts"]), complete=True, pool=pool)  # type: ignore[arg-type]
        facts = await _download_all(check, song["parts"])
        return facts, await check.finish(dict.fromkeys(song["parts"], "downloaded"))

    facts, stored = asyncio.run(scenario())
    assert sorted(len(r.stems) for r in pool.requests) == [1, 1, 1]
    assert all(r.thresholds is None and r.mix is None for r in pool.requests)
    assert all(f.frames == RATE * 4 for f in facts.values()) and not stored
