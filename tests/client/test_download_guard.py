"""Stem downloads never reach this machine or its network: every hop's host is vetted before connecting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from stemcat.client import DownloadFailed, NoLimiter, SunoClient, UnsafeURL
from stemcat.client.download import is_loopback_host, is_public_address
from tests.client.conftest import API_KEY, FakeResolver, ScriptedApi

FILE = "/files/t1/Vocals.mp3"
BODY = b"ID3" + bytes(200)
MakeClient = Callable[..., SunoClient]


def _served() -> ScriptedApi:
    return ScriptedApi({FILE: [httpx.Response(200, content=BODY)]})


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.1.2.3", "10.0.0.5", "172.16.4.4", "192.168.1.2", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:10.0.0.5]", "[fe80::1]", "[fd00::1]", "224.0.0.1",
])
async def test_a_non_public_address_is_refused_before_connecting(make_client: MakeClient, tmp_path: Path,
                                                                 host: str) -> None:
    api = _served()
    async with make_client(api) as client:
        with pytest.raises(UnsafeURL, match="loopback, private or link-local"):
            await client.download(f"http://{host}{FILE}", tmp_path / "a.part", max_bytes=1 << 20)
    assert api.requests == []


@pytest.mark.parametrize("addresses", [["10.0.0.5"], ["93.184.216.34", "127.0.0.1"], ["::1"], ["169.254.169.254"]])
async def test_a_name_is_refused_when_any_of_its_addresses_is_not_public(make_client: MakeClient, tmp_path: Path,
                                                                        addresses: list[str]) -> None:
    api = _served()
    resolver = FakeResolver({"files.example": addresses})
    async with make_client(api, resolver=resolver) as client:
        with pytest.raises(UnsafeURL):
            await client.download(f"https://files.example{FILE}", tmp_path / "a.part", max_bytes=1 << 20)
    assert resolver.looked_up == ["files.example"] and api.requests == []


async def test_a_public_host_is_fetched(make_client: MakeClient, tmp_path: Path) -> None:
    api = _served()
    resolver = FakeResolver()
    async with make_client(api, resolver=resolver) as client:
        result = await client.download(f"https://files.example{FILE}", tmp_path / "a.part", max_bytes=1 << 20)
    assert result.bytes == len(BODY) and resolver.looked_up == ["files.example"]


@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/", "https://inside.example/x.mp3"])
async def test_a_redirect_to_a_non_public_address_is_refused_before_following_it(
    make_client: MakeClient, tmp_path: Path, location: str
) -> None:
    api = ScriptedApi({FILE: [httpx.Response(302, headers={"Location": location})]})
    resolver = FakeResolver({"inside.example": ["192.168.0.10"]})
    async with make_client(api, resolver=resolver) as client:
        with pytest.raises(UnsafeURL):
            await client.download(f"https://files.example{FILE}", tmp_path / "a.part", max_bytes=1 << 20)
    assert [str(r.url) for r in api.requests] == [f"https://files.example{FILE}"]


async def test_an_unresolvable_host_is_not_contacted(make_client: MakeClient, tmp_path: Path) -> None:
    api = _served()
    async with make_client(api, resolver=FakeResolver({"gone.example": []}), max_read_attempts=1) as client:
        with pytest.raises(DownloadFailed, match="resolve"):
            await client.download(f"https://gone.example{FILE}", tmp_path / "a.part", max_bytes=1 << 20)
    assert api.requests == []


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"])
async def test_loopback_files_are_allowed_when_the_api_itself_is_on_loopback(tmp_path: Path, base_url: str) -> None:
    api = _served()
    resolver = FakeResolver({"localhost": ["127.0.0.1"]})
    async with SunoClient(API_KEY, base_url, limiter=NoLimiter(), transport=api.transport,
                          resolver=resolver) as client:
        result = await client.download(f"{base_url}{FILE}", tmp_path / "a.part", max_bytes=1 << 20)
    assert result.bytes == len(BODY) and resolver.looked_up == []


def test_address_rules() -> None:
    assert is_public_address("93.184.216.34") and is_public_address("2606:2800:220:1::1")
    assert not any(is_public_address(a) for a in ("127.0.0.1", "10.1.1.1", "fe80::1%eth0", "::", "not-an-ip"))
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("LOCALHOST")
    assert not is_loopback_host("api.sunoapi.org") and not is_loopback_host("10.0.0.1") and not is_loopback_host(None)
