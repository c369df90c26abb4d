"""Stem downloads: capped, resumable, header-less, verified."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from stemcat.client import (
    DownloadExpired,
    DownloadFailed,
    DownloadTooLarge,
    DownloadTruncated,
    ErrorPolicy,
    SunoClient,
    UnsafeURL,
)
from stemcat.client.download import ContentRange, parse_content_range
from tests.client.conftest import API_KEY, ChunkStream, ScriptedApi, SleepLog

FILE_PATH = "/s/0b7e2a8c-1f5d-4b0e-9a51-7c1e2f3a4b01_Vocals.mp3"
URL = f"https://file.aiquickdraw.com{FILE_PATH}"
BODY = bytes(range(256)) * 40  # 10240 bytes
MakeClient = Callable[..., SunoClient]


def _range_start(request: httpx.Request) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
    return int(match.group(1)) if match else 0


def serve_file(
    body: bytes, *, honour_range: bool = True, truncate_first_to: int | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """A file host: answers Range with 206, optionally cutting its first answer short."""
    state = {"answers": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        state["answers"] += 1
        start = _range_start(request) if honour_range else 0
        payload = body[start:]
        if truncate_first_to is not None and state["answers"] == 1:
            payload = payload[: truncate_first_to - start]
        headers = {"Content-Length": str(len(body) - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            return httpx.Response(206, headers=headers, stream=ChunkStream([payload]))
        return httpx.Response(200, headers=headers, stream=ChunkStream([payload]))

    return answer


async def test_download_streams_to_dest_with_hash(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [serve_file(BODY)]})
    dest = tmp_path / "nested" / "vocals.mp3.part"
    async with make_client(api) as client:
        result = await client.download(URL, dest, max_bytes=1 << 20, chunk_size=1000)
    assert dest.read_bytes() == BODY
    assert (result.bytes, result.sha256, result.resumed) == (len(BODY), hashlib.sha256(BODY).hexdigest(), False)


async def test_no_authorization_header_on_file_urls(make_client: MakeClient, tmp_path: Path) -> None:
    # Even a file served by the API's own host must not receive the key.
    api = ScriptedApi({FILE_PATH: [serve_file(BODY)]})
    async with make_client(api) as client:
        await client.download(f"https://api.test{FILE_PATH}", tmp_path / "a.part", max_bytes=1 << 20)
        await client.download(URL, tmp_path / "b.part", max_bytes=1 << 20)
    assert len(api.requests) == 2
    for request in api.requests:
        assert "Authorization" not in request.headers
        assert API_KEY not in str(request.headers)
        assert request.headers["Accept-Encoding"] == "identity"


async def test_cap_enforced_without_content_length(make_client: MakeClient, tmp_path: Path) -> None:
    stream = ChunkStream([b"x" * 400] * 10)
    api = ScriptedApi({FILE_PATH: [httpx.Response(200, stream=stream)]})
    dest = tmp_path / "big.part"
    async with make_client(api) as client:
        with pytest.raises(DownloadTooLarge):
            await client.download(URL, dest, max_bytes=1000, chunk_size=400)
    assert stream.delivered <= 3  # stopped reading once over the cap
    assert not dest.exists()
    assert len(api.requests) == 1


async def test_cap_enforced_when_content_length_lies(make_client: MakeClient, tmp_path: Path) -> None:
    stream = ChunkStream([b"x" * 600] * 4)
    api = ScriptedApi({FILE_PATH: [httpx.Response(200, headers={"Content-Length": "10"}, stream=stream)]})
    async with make_client(api) as client:
        with pytest.raises(DownloadTooLarge):
            await client.download(URL, tmp_path / "liar.part", max_bytes=1000, chunk_size=600)


async def test_declared_size_over_cap_is_refused_before_reading(make_client: MakeClient, tmp_path: Path) -> None:
    stream = ChunkStream([b"x" * 100])
    api = ScriptedApi({FILE_PATH: [httpx.Response(200, headers={"Content-Length": "5000"}, stream=stream)]})
    async with make_client(api) as client:
        with pytest.raises(DownloadTooLarge) as caught:
            await client.download(URL, tmp_path / "x.part", max_bytes=1000)
    assert stream.delivered == 0
    assert caught.value.policy is ErrorPolicy.ITEM


async def test_truncated_body_resumes_with_range(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [serve_file(BODY, truncate_first_to=4000)]})
    dest = tmp_path / "v.part"
    async with make_client(api) as client:
        result = await client.download(URL, dest, max_bytes=1 << 20)
    assert [r.headers.get("Range") for r in api.requests] == [None, "bytes=4000-"]
    assert dest.read_bytes() == BODY
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert result.resumed


async def test_persistent_truncation_keeps_the_partial_file(
    make_client: MakeClient, sleep_log: SleepLog, tmp_path: Path
) -> None:
    short = httpx.Response(200, headers={"Content-Length": str(len(BODY))}, stream=ChunkStream([BODY[:3000]]))

    def stuck(request: httpx.Request) -> httpx.Response:
        rest = len(BODY) - 3000
        headers = {"Content-Length": str(rest), "Content-Range": f"bytes 3000-{len(BODY) - 1}/{len(BODY)}"}
        return httpx.Response(206, headers=headers, stream=ChunkStream([]))

    api = ScriptedApi({FILE_PATH: [short, stuck]})
    dest = tmp_path / "v.part"
    async with make_client(api, max_read_attempts=3) as client:
        with pytest.raises(DownloadTruncated) as caught:
            await client.download(URL, dest, max_bytes=1 << 20)
    assert dest.read_bytes() == BODY[:3000]
    assert len(api.requests) == 3
    assert len(sleep_log.sleeps) == 2
    assert caught.value.policy is ErrorPolicy.RETRY


async def test_existing_partial_is_resumed(make_client: MakeClient, tmp_path: Path) -> None:
    dest = tmp_path / "v.part"
    dest.write_bytes(BODY[:2500])
    api = ScriptedApi({FILE_PATH: [serve_file(BODY)]})
    async with make_client(api) as client:
        result = await client.download(URL, dest, max_bytes=1 << 20)
    assert api.requests[0].headers["Range"] == "bytes=2500-"
    assert dest.read_bytes() == BODY
    assert (result.bytes, result.resumed) == (len(BODY), True)
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()  # includes the resumed prefix


async def test_server_ignoring_range_restarts_from_zero(make_client: MakeClient, tmp_path: Path) -> None:
    dest = tmp_path / "v.part"
    dest.write_bytes(b"stale bytes from another file")
    api = ScriptedApi({FILE_PATH: [serve_file(BODY, honour_range=False)]})
    async with make_client(api) as client:
        result = await client.download(URL, dest, max_bytes=1 << 20)
    assert dest.read_bytes() == BODY
    assert not result.resumed


async def test_complete_partial_answered_416_is_kept(make_client: MakeClient, tmp_path: Path) -> None:
    dest = tmp_path / "v.part"
    dest.write_bytes(BODY)
    api = ScriptedApi({FILE_PATH: [httpx.Response(416, headers={"Content-Range": f"bytes */{len(BODY)}"})]})
    async with make_client(api) as client:
        result = await client.download(URL, dest, max_bytes=1 << 20)
    assert (result.bytes, result.resumed) == (len(BODY), True)
    assert dest.read_bytes() == BODY


async def test_mid_stream_network_error_resumes(make_client: MakeClient, tmp_path: Path) -> None:
    dropped = httpx.Response(
        200,
        headers={"Content-Length": str(len(BODY))},
        stream=ChunkStream([BODY[:5000]], fail_with=httpx.ReadError("connection reset")),
    )
    resume = serve_file(BODY)
    api = ScriptedApi({FILE_PATH: [dropped, resume]})
    dest = tmp_path / "v.part"
    async with make_client(api) as client:
        result = await client.download(URL, dest, max_bytes=1 << 20, chunk_size=1000)
    assert api.requests[1].headers["Range"] == "bytes=5000-"
    assert dest.read_bytes() == BODY
    assert result.resumed


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_gone_urls_are_expired(make_client: MakeClient, tmp_path: Path, status: int) -> None:
    api = ScriptedApi({FILE_PATH: [httpx.Response(status, text="AccessDenied")]})
    async with make_client(api) as client:
        with pytest.raises(DownloadExpired) as caught:
            await client.download(URL, tmp_path / "v.part", max_bytes=1 << 20)
    assert len(api.requests) == 1
    assert caught.value.code == status
    assert "0b7e2a8c-1f5d" not in str(caught.value)  # the bearer path is masked


async def test_server_errors_are_retried(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [httpx.Response(503), httpx.Response(502), serve_file(BODY)]})
    async with make_client(api) as client:
        result = await client.download(URL, tmp_path / "v.part", max_bytes=1 << 20)
    assert result.bytes == len(BODY)
    assert len(api.requests) == 3


async def test_persistent_server_errors_fail(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [httpx.Response(500)]})
    async with make_client(api, max_read_attempts=2) as client:
        with pytest.raises(DownloadFailed):
            await client.download(URL, tmp_path / "v.part", max_bytes=1 << 20)
    assert len(api.requests) == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://file.aiquickdraw.com/s/a.mp3",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//file.aiquickdraw.com/s/a.mp3",
        "https:///s/a.mp3",
        "https://user:pw@file.aiquickdraw.com/s/a.mp3",
        "https://file.aiquickdraw.com/s/a b.mp3",
        "/s/a.mp3",
    ],
)
async def test_unsafe_urls_are_refused_without_a_request(make_client: MakeClient, tmp_path: Path, url: str) -> None:
    api = ScriptedApi()
    async with make_client(api) as client:
        with pytest.raises(UnsafeURL):
            await client.download(url, tmp_path / "v.part", max_bytes=1 << 20)
    assert api.requests == []


async def test_redirect_to_another_scheme_is_unsafe(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [httpx.Response(302, headers={"Location": "file:///etc/passwd"})]})
    async with make_client(api) as client:
        with pytest.raises(UnsafeURL):
            await client.download(URL, tmp_path / "v.part", max_bytes=1 << 20)


async def test_redirects_between_file_hosts_are_followed(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi(
        {
            FILE_PATH: [httpx.Response(302, headers={"Location": "https://cdn.test/real.mp3"})],
            "/real.mp3": [serve_file(BODY)],
        }
    )
    async with make_client(api) as client:
        result = await client.download(URL, tmp_path / "v.part", max_bytes=1 << 20)
    assert result.bytes == len(BODY)
    assert all("Authorization" not in r.headers for r in api.requests)


async def test_encoded_bodies_are_stored_raw(make_client: MakeClient, tmp_path: Path) -> None:
    compressed = gzip.compress(BODY)
    api = ScriptedApi(
        {FILE_PATH: [httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=ChunkStream([compressed]))]}
    )
    dest = tmp_path / "v.part"
    async with make_client(api) as client:
        result = await client.download(URL, dest, max_bytes=1 << 20)
    assert dest.read_bytes() == compressed
    assert result.sha256 == hashlib.sha256(compressed).hexdigest()


async def test_expected_bytes_mismatch(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [serve_file(BODY)]})
    async with make_client(api) as client:
        with pytest.raises(DownloadTruncated):
            await client.download(URL, tmp_path / "short.part", max_bytes=1 << 20, expected_bytes=len(BODY) + 1)
        with pytest.raises(DownloadFailed):
            await client.download(URL, tmp_path / "long.part", max_bytes=1 << 20, expected_bytes=len(BODY) - 1)
        result = await client.download(URL, tmp_path / "ok.part", max_bytes=1 << 20, expected_bytes=len(BODY))
    assert result.bytes == len(BODY)
    assert not (tmp_path / "long.part").exists()


async def test_file_downloads_do_not_use_the_api_limiter(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [serve_file(BODY)]})
    client = make_client(api)
    async with client:
        await client.download(URL, tmp_path / "v.part", max_bytes=1 << 20)
    assert client.limiter.admitted == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 100-199/1000", ContentRange(100, 199, 1000)),
        ("bytes */1000", ContentRange(None, None, 1000)),
        ("bytes 0-9/*", ContentRange(0, 9, None)),
        ("items 0-9/10", None),
        (None, None),
    ],
)
def test_parse_content_range(header: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(header) == expected


async def test_redirect_loops_are_bounded(make_client: MakeClient, tmp_path: Path) -> None:
    api = ScriptedApi({FILE_PATH: [httpx.Response(302, headers={"Location": FILE_PATH})]})
    async with make_client(api) as client:
        with pytest.raises(DownloadFailed) as caught:
            await client.download(URL, tmp_path / "v.part", max_bytes=1 << 20)
    assert caught.value.policy is ErrorPolicy.ITEM
    assert len(api.requests) == 6
