"""The storage seam (catalog/storage.py) against a real S3-compatible server (SeaweedFS on loopback)
and a local folder: whole, verified objects at validated keys, and nothing left by a failed upload."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from stemcat.catalog.storage import (
    LocalStorage, S3Storage, Storage, StorageConfigError, StorageError, check_key, check_storage_url, open_storage,
)

KEY = "stems/a1/split_stem/vocals.mp3"
MIB = 1024 * 1024


def _file(path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["s3", "local"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "shared")
    return S3Storage(request.getfixturevalue("s3_url"))


def test_a_stored_file_is_intact_and_comes_back_verified(storage: Storage, tmp_path: Path) -> None:
    local, sha = _file(tmp_path / "stem.mp3", 300_000)
    assert not storage.is_intact(KEY, size=300_000, sha256=sha)
    storage.put_file(local, KEY, sha256=sha)
    assert storage.is_intact(KEY, size=300_000, sha256=sha)
    assert not storage.is_intact(KEY, size=300_000, sha256="0" * 64)
    assert not storage.is_intact(KEY, size=299_999, sha256=sha)
    storage.fetch(KEY, tmp_path / "cache" / "stem.mp3", sha256=sha)
    assert (tmp_path / "cache" / "stem.mp3").read_bytes() == local.read_bytes()
    with pytest.raises(StorageError, match="sha256"):  # a copy that does not hash right never lands
        storage.fetch(KEY, tmp_path / "bad" / "stem.mp3", sha256="f" * 64)
    assert not (tmp_path / "bad" / "stem.mp3").exists()
    with pytest.raises(StorageError, match="missing"):
        storage.fetch("stems/none.mp3", tmp_path / "none.mp3", sha256=sha)
    assert storage.keys_under("stems") == [KEY]


def test_a_file_that_does_not_match_its_checksum_is_never_stored(storage: Storage, tmp_path: Path) -> None:
    local, _sha = _file(tmp_path / "stem.mp3", 1000)
    with pytest.raises(StorageError, match="sha256"):
        storage.put_file(local, KEY, sha256="0" * 64)
    assert storage.keys_under("stems") == []


def test_a_multipart_upload_that_fails_midway_leaves_nothing_at_the_key(s3_url: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    storage = S3Storage(s3_url, part_bytes=5 * MIB)  # S3's smallest part: an 11 MiB file goes up in 3 parts
    local, sha = _file(tmp_path / "big.mp3", 11 * MIB)
    calls: list[str] = []
    real_call = storage.fs._call_s3

    async def failing_second_part(method: str, *args: object, **kwargs: object) -> object:
        calls.append(method)
        if method == "upload_part" and kwargs.get("PartNumber") == 2:
            raise ConnectionResetError("connection reset by peer (injected)")
        return await real_call(method, *args, **kwargs)

    monkeypatch.setattr(storage.fs, "_call_s3", failing_second_part)
    with pytest.raises(StorageError, match="injected"):
        storage.put_file(local, KEY, sha256=sha)
    monkeypatch.undo()
    assert "create_multipart_upload" in calls and "abort_multipart_upload" in calls
    assert storage.head(KEY) is None and storage.keys_under("stems") == []
    uploads = storage.fs.call_s3("list_multipart_uploads", Bucket=storage.bucket).get("Uploads") or []
    assert not [u for u in uploads if u["Key"].endswith(KEY)]  # aborted, its parts freed
    storage.put_file(local, KEY, sha256=sha)  # the same upload, not interrupted, completes
    assert storage.is_intact(KEY, size=11 * MIB, sha256=sha)


@pytest.mark.parametrize("key", ["../x.mp3", "/etc/passwd", "stems//a.mp3", "stems/../../x", ".hidden", "a/b\\c", ""])
def test_keys_that_could_escape_the_root_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        check_key(key)
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).write_bytes(key, b"x")


@pytest.mark.parametrize("url", ["s3://Bad_Bucket/x", "s3://b", "s3://bucket/../x", "s3://bucket/p?x=1", "ftp://h/p",
                                 "gs://bucket/p", " "])
def test_a_bad_storage_url_is_one_line_naming_it(url: str) -> None:
    with pytest.raises(StorageConfigError) as raised:
        check_storage_url(url)
    assert "\n" not in str(raised.value) and "storage URL" in str(raised.value)


def test_unset_or_the_data_directory_itself_means_no_storage(tmp_path: Path) -> None:
    assert open_storage(None, tmp_path) is None
    assert open_storage(str(tmp_path), tmp_path) is None
    assert isinstance(open_storage(str(tmp_path / "shared"), tmp_path), LocalStorage)


def test_s3_without_s3fs_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # what `import s3fs` meets where it is not installed
    with pytest.raises(StorageConfigError, match=r"stemcat\[s3\]"):
        open_storage("s3://bucket/prefix")


def test_the_cli_refuses_a_bad_storage_url_with_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stemcat.cli.app import app

    manifest = tmp_path / "m.csv"
    manifest.write_text("audio_id,task_id\na1,t1\n")
    result = CliRunner().invoke(app, ["run", str(manifest), "--data-dir", str(tmp_path / "d"),
                                      "--storage", "ftp://host/path"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["stemcat: storage URL 'ftp://host/path': use a local path or "
                                                  "s3://bucket/prefix"]
    assert not (tmp_path / "d").exists()
