"""Pure pieces of the simulator, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from stemcat.sim.callbacks import is_loopback_url
from stemcat.sim.config import FaultSpec, SimConfig
from stemcat.sim.faults import FaultBook
from stemcat.sim.files import ByteRange, UnsatisfiableRange, parse_range
from stemcat.sim.payloads import separation_response
from stemcat.sim.ratelimit import SlidingWindowLimiter, retry_after_header
from stemcat.sim.signing import FileToken, sign, verify
from stemcat.sim.stems import INSTRUMENT_STEMS
from stemcat.sim.synth import PEAK_TARGET, plan_song, render_song


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-5", ByteRange(95, 99)),
        ("bytes=90-500", ByteRange(90, 99)),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-2", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(UnsatisfiableRange):
        parse_range(header, 100)


def test_sliding_window_admits_limit_per_window_and_reports_retry_after() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(3, 10.0, monotonic=lambda: now[0])
    decisions = []
    for at in (0.0, 1.0, 2.0, 3.0, 9.9, 10.0, 10.5):
        now[0] = at
        decisions.append(limiter.check("k"))
    assert [d.admitted for d in decisions] == [True, True, True, False, False, True, False]
    assert decisions[3].retry_after_s == pytest.approx(7.0)
    assert retry_after_header(decisions[3].retry_after_s) == "7"
    assert retry_after_header(0.01) == "1"
    assert limiter.max_seen_in_window() == {"k": 6}  # (0.5, 10.5] holds six requests


def test_signed_tokens_verify_only_unchanged() -> None:
    secret = b"s" * 32
    segment = sign(secret, FileToken(ref="tabc", expires_epoch_s=123), "Vocals")
    assert verify(secret, segment, "Vocals") == FileToken(ref="tabc", expires_epoch_s=123)
    assert verify(secret, segment, "Drums") is None
    assert verify(b"x" * 32, segment, "Vocals") is None
    assert verify(secret, segment.replace(".123.", ".999."), "Vocals") is None
    assert verify(secret, "garbage", "Vocals") is None


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8000/cb", True),
        ("http://127.5.6.7/cb", True),
        ("http://localhost:1/x", True),
        ("http://[::1]:80/x", True),
        ("https://api.example.com/callback", False),
        ("http://10.0.0.1/cb", False),
        ("ftp://127.0.0.1/cb", False),
        ("not a url", False),
    ],
)
def test_callbacks_only_go_to_loopback(url: str, allowed: bool) -> None:
    assert is_loopback_url(url) is allowed


def test_fault_book_counts_uses_and_matches() -> None:
    book = FaultBook()
    book.inject(FaultSpec(route="generate", code=500, times=2, match="abc"))
    book.inject(FaultSpec(route="generate", code=455, times=-1))
    assert book.take("credit", "abc") is None
    assert [f.code for f in (book.take("generate", "x-abc"), book.take("generate", "abc"))] == [500, 500]
    assert all(book.take("generate", "abc").code == 455 for _ in range(3))  # type: ignore[union-attr]
    book.clear()
    assert book.take("generate", "abc") is None


def test_config_and_fault_validation() -> None:
    with pytest.raises(ValidationError):
        SimConfig(processing_s=(2.0, 1.0))
    with pytest.raises(ValidationError):
        SimConfig(min_duration_s=5.0, max_duration_s=4.0)
    with pytest.raises(ValidationError):
        FaultSpec(route="credit", after_accept=True)
    with pytest.raises(ValidationError):
        FaultSpec(route="generate", truncate_at=10)
    with pytest.raises(ValidationError):
        FaultSpec(route="generate", times=0)


def test_synth_stems_sum_exactly_to_the_mix_and_do_not_clip() -> None:
    plan = plan_song(5, "some-audio", sample_rate=8000, channels=1, min_duration_s=2.0, max_duration_s=3.0)
    song = render_song(5, plan)
    total = np.sum([song.stems[s].astype(np.float64) for s in INSTRUMENT_STEMS], axis=0)
    assert np.max(np.abs(total - song.mix)) < 1e-5
    assert np.max(np.abs(song.mix)) <= PEAK_TARGET + 1e-6
    assert all(np.max(np.abs(song.stems[s])) == 0 for s in plan.silent_stems)
    assert all(np.max(np.abs(song.stems[s])) > 0 for s in plan.instruments)
    vocals = song.stems["vocals"].astype(np.float64)
    assert np.max(np.abs(vocals + song.instrumental - song.mix)) < 1e-5
    assert song.mix.shape == (plan.frames,) and plan.frames == round(plan.duration_s * 8000)


def test_synth_is_deterministic_per_seed_and_audio_id() -> None:
    def mix(seed: int, audio_id: str) -> np.ndarray:
        plan = plan_song(seed, audio_id, sample_rate=8000, channels=1, min_duration_s=2.0, max_duration_s=2.5)
        return render_song(seed, plan).mix

    assert np.array_equal(mix(1, "a"), mix(1, "a"))
    assert not np.array_equal(mix(1, "a")[:8000], mix(2, "a")[:8000])
    assert not np.array_equal(mix(1, "a")[:8000], mix(1, "b")[:8000])


def test_instrument_choice_varies_and_vocals_are_common() -> None:
    plans = [
        plan_song(9, f"id-{i}", sample_rate=8000, channels=1, min_duration_s=2.0, max_duration_s=3.0)
        for i in range(60)
    ]
    assert len({p.instruments for p in plans}) > 20
    assert sum("vocals" in p.instruments for p in plans) > 40
    assert all(len([s for s in p.instruments if s not in ("vocals", "backing_vocals")]) >= 2 for p in plans)


def test_separation_response_has_every_field_null_where_absent() -> None:
    response = separation_response({"vocals": "v", "instrumental": "i"}, "o")
    assert response["vocalUrl"] == "v" and response["instrumentalUrl"] == "i" and response["originUrl"] == "o"
    assert sum(value is None for value in response.values()) == 11
