"""File URLs: byte ranges, truncated bodies, retention expiry and signed URLs with a TTL."""

from __future__ import annotations

import httpx
import pytest

from stemcat.sim import FaultSpec, SimServer
from stemcat.sim.config import FOURTEEN_DAYS_S

from .simtest_support import SimFactory, api_client, decode, record_info, submit, wait_finished


def _vocal_url(sim: SimServer, client: httpx.Client) -> tuple[str, str]:
    track = sim.create_tracks(1)[0]
    task_id = submit(client, track, "separate_vocal")
    return task_id, str(wait_finished(client, task_id)["data"]["response"]["vocalUrl"])


def test_range_requests(sim: SimServer) -> None:
    with api_client(sim) as client:
        _, url = _vocal_url(sim, client)
        whole = client.get(url).content
        size = len(whole)
        head = client.get(url, headers={"Range": "bytes=0-99"})
        tail = client.get(url, headers={"Range": "bytes=100-"})
        suffix = client.get(url, headers={"Range": "bytes=-10"})
        beyond = client.get(url, headers={"Range": f"bytes={size}-"})
        meta = client.head(url)
    assert whole[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3") or whole[0] == 0xFF
    assert head.status_code == 206 and head.content == whole[:100]
    assert head.headers["content-range"] == f"bytes 0-99/{size}" and head.headers["content-length"] == "100"
    assert tail.status_code == 206 and head.content + tail.content == whole
    assert suffix.content == whole[-10:]
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert meta.status_code == 200 and meta.headers["content-length"] == str(size) and meta.content == b""
    assert meta.headers["accept-ranges"] == "bytes"


def test_truncated_download_then_resume_with_range(sim: SimServer) -> None:
    with api_client(sim) as client:
        _, url = _vocal_url(sim, client)
        whole = client.get(url).content
        sim.inject(FaultSpec(route="file", truncate_at=1000, match=url.split("/files/")[1]))
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", url) as response:
            assert response.headers["content-length"] == str(len(whole))
            for chunk in response.iter_raw():
                received.extend(chunk)
        resumed = client.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert bytes(received) == whole[:1000]
    assert resumed.status_code == 206 and bytes(received) + resumed.content == whole


def test_file_fault_codes_and_delay(sim: SimServer) -> None:
    with api_client(sim) as client:
        _, url = _vocal_url(sim, client)
        sim.inject(FaultSpec(route="file", code=500))
        failed = client.get(url)
        ok = client.get(url)
    assert failed.status_code == 500 and ok.status_code == 200


def test_files_expire_after_retention_but_record_info_keeps_urls(make_sim: SimFactory) -> None:
    sim = make_sim()
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal")
        url = wait_finished(client, task_id)["data"]["response"]["vocalUrl"]
        assert client.get(url).status_code == 200
        sim.advance_clock(FOURTEEN_DAYS_S - 60)
        assert client.get(url).status_code == 200
        sim.advance_clock(FOURTEEN_DAYS_S)
        expired = client.get(url)
        later = record_info(client, task_id)["data"]
        mix = client.get(track.audio_url)
    assert expired.status_code == 404 and expired.json()["msg"] == "expired"
    assert later["response"]["vocalUrl"] == url  # stale, as the real service does
    assert mix.status_code == 200  # the original song is not a 14-day file


def test_url_ttl_expires_links_and_record_info_refreshes_them(make_sim: SimFactory) -> None:
    sim = make_sim(url_ttl_s=600.0)
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal")
        old_url = wait_finished(client, task_id)["data"]["response"]["vocalUrl"]
        first = client.get(old_url)
        sim.advance_clock(601.0)
        stale = client.get(old_url)
        fresh_url = record_info(client, task_id)["data"]["response"]["vocalUrl"]
        fresh = client.get(fresh_url)
        sim.advance_clock(FOURTEEN_DAYS_S)
        after_retention = client.get(record_info(client, task_id)["data"]["response"]["vocalUrl"])
    assert first.status_code == 200
    assert stale.status_code == 410
    assert fresh_url != old_url and fresh.status_code == 200 and fresh.content == first.content
    assert after_retention.status_code == 404


def _flip_signature_char(url: str) -> str:
    token_start = url.index("/files/") + len("/files/")
    token_end = url.index("/", token_start)
    last = url[token_end - 1]
    return url[: token_end - 1] + ("1" if last == "0" else "0") + url[token_end:]


def test_forged_urls_are_refused(sim: SimServer) -> None:
    track = sim.create_tracks(1)[0]
    with api_client(sim) as client:
        task_id = submit(client, track, "separate_vocal")
        url = wait_finished(client, task_id)["data"]["response"]["vocalUrl"]
        other_name = client.get(track.audio_url.replace("Mix.mp3", "Vocals.mp3"))
        tampered = client.get(_flip_signature_char(url))
        wrong_stem = client.get(url.replace("Vocals.mp3", "Drums.mp3"))
        genuine = client.get(url)
        mix, rate = decode(client.get(track.audio_url).content)
    assert (other_name.status_code, tampered.status_code, wrong_stem.status_code) == (403, 403, 403)
    assert genuine.status_code == 200
    assert abs(len(mix) / rate - sim.truth(track.audio_id).duration_s) < 0.05
