"""Where stems and the published catalog are kept when the data directory is not enough.

A storage URL (``STEMCAT_STORAGE_URL``, ``--storage``) is a local folder or ``s3://bucket/prefix``;
unset, everything stays in the data directory as before and no storage object exists at all.
S3 goes through fsspec's s3fs (the ``s3`` extra); its credentials and endpoint come from the
standard AWS environment variables, never from the URL.

Every operation takes a *key*, a relative path such as ``stems/<audio_id>/<type>/<stem>.mp3``
that callers build from validated ids; ``check_key`` refuses anything else, so no id can reach
outside the storage's root. An object is only ever written whole: a local file is replaced by a
rename, an S3 object appears when its single PUT or its multipart upload completes (s3fs aborts
a multipart upload that fails part-way, so nothing is left at the key). Each stored file carries
its sha256 (S3: object metadata), and ``fetch`` verifies it on the way down.

Errors: ``StorageConfigError`` (a bad URL, s3fs missing; the CLI exits 2) and ``StorageError``
(an operation failed), both with one-line messages that name the URL, never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stemcat.catalog.atomic_files import replacing, sha256_file

S3_SCHEME = "s3"
DEFAULT_PART_BYTES = 8 * 1024 * 1024  # S3's smallest part is 5 MiB; a stem over 16 MiB goes up in parts
_CHUNK = 1024 * 1024
_KEY_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageError(Exception):
    """A storage operation failed; the message is one line."""


class StorageConfigError(StorageError):
    """A storage URL stemcat cannot use, or the library it needs is missing."""


def check_key(key: str) -> str:
    """``key`` if it is a relative path of safe parts (no ``..``, no empty or hidden-dot parts)."""
    parts = key.split("/")
    if not all(_KEY_PART.fullmatch(part) and part not in {".", ".."} for part in parts):
        raise StorageError(f"unsafe storage key {key[:80]!r}")
    return key


def check_storage_url(url: str) -> str:
    """Refuse a URL that is neither a local path nor ``s3://bucket[/prefix]`` (one-line message)."""
    parts = urlsplit(url)
    if parts.scheme == S3_SCHEME:
        if not _BUCKET.fullmatch(parts.netloc):
            raise StorageConfigError(f"storage URL {url!r}: expected s3://bucket/prefix with a valid bucket name")
        prefix = parts.path.strip("/")
        if parts.query or parts.fragment or (prefix and not _safe_prefix(prefix)):
            raise StorageConfigError(f"storage URL {url!r}: the prefix may hold only letters, digits, '-', '_', "
                                     f"'.' and '/' (credentials come from the AWS_* environment variables)")
        return url
    if parts.scheme and len(parts.scheme) > 1:  # "C:" is a drive, anything longer a scheme we do not speak
        raise StorageConfigError(f"storage URL {url!r}: use a local path or s3://bucket/prefix")
    if not url.strip():
        raise StorageConfigError("storage URL is empty: use a local path or s3://bucket/prefix")
    return url


def _safe_prefix(prefix: str) -> bool:
    try:
        check_key(prefix)
    except StorageError:
        return False
    return True


def open_storage(url: str | None, data_dir: Path | None = None) -> Storage | None:
    """The storage ``url`` names; None when unset or when it is the data directory itself."""
    if url is None or url == "":
        return None
    check_storage_url(url)
    if urlsplit(url).scheme == S3_SCHEME:
        return S3Storage(url)
    root = Path(url).expanduser()
    if data_dir is not None and root.resolve() == Path(data_dir).expanduser().resolve():
        return None
    return LocalStorage(root)


def _copy_hashing(source: Any, target: Any) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()


class Storage(ABC):
    """Whole, checksummed objects under one root, addressed by validated keys."""

    url: str

    @abstractmethod
    def put_file(self, local: Path, key: str, *, sha256: str) -> None:
        """Store the file ``local`` (whose sha256 must be ``sha256``) at ``key``, whole or not at all."""

    @abstractmethod
    def is_intact(self, key: str, *, size: int, sha256: str) -> bool:
        """Whether ``key`` holds the object of this size and sha256."""

    @abstractmethod
    def open_read(self, key: str) -> Any:
        """A binary file object reading ``key`` (FileNotFoundError when absent)."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace ``key`` with ``data`` in one step (readers see the old or the new bytes)."""

    @abstractmethod
    def keys_under(self, prefix: str) -> list[str]:
        """Every key below the folder ``prefix`` (relative to the storage's root)."""

    @abstractmethod
    def delete_under(self, prefix: str) -> None:
        """Remove everything below the folder ``prefix``."""

    @abstractmethod
    def location(self, key: str) -> str:
        """What DuckDB's ``read_parquet`` takes for ``key`` once ``attach`` has run."""

    def attach(self, con: Any) -> None:
        """Make ``location`` paths readable by the DuckDB connection ``con``."""

    def read_bytes(self, key: str) -> bytes | None:
        """The bytes at ``key``, or None when there is no such object."""
        try:
            with self.open_read(key) as handle:
                return bytes(handle.read())
        except FileNotFoundError:
            return None

    def fetch(self, key: str, dest: Path, *, sha256: str) -> None:
        """Copy ``key`` to the local file ``dest`` if its bytes hash to ``sha256``; else leave ``dest`` alone."""
        check_key(key)
        try:
            with self.open_read(key) as source, replacing(dest) as temp, temp.open("wb") as out:
                got = _copy_hashing(source, out)
                if got != sha256:
                    raise StorageError(f"{self.url}/{key}: sha256 {got[:12]}… is not the recorded {sha256[:12]}…")
        except FileNotFoundError:
            raise StorageError(f"{self.url}/{key} is missing") from None
        except OSError as error:
            raise StorageError(f"fetching {self.url}/{key} failed: {error}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalStorage(Storage):
    """A folder (a shared mount, another disk): files placed by fsync and rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, local: Path, key: str, *, sha256: str) -> None:
        target = self._path(key)
        try:
            with local.open("rb") as source, replacing(target) as temp, temp.open("wb") as out:
                got = _copy_hashing(source, out)
                if got != sha256:
                    raise StorageError(f"{local}: sha256 {got[:12]}… is not {sha256[:12]}…; not stored")
        except OSError as error:
            raise StorageError(f"storing {key} in {self.url} failed: {error}") from None

    def is_intact(self, key: str, *, size: int, sha256: str) -> bool:
        path = self._path(key)
        # A folder has no metadata to trust: the bytes are hashed again, as the data directory's are.
        return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha256

    def open_read(self, key: str) -> Any:
        return self._path(key).open("rb")

    def write_bytes(self, key: str, data: bytes) -> None:
        with replacing(self._path(key)) as temp:
            temp.write_bytes(data)

    def keys_under(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())

    def delete_under(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def location(self, key: str) -> str:
        return str(self._path(key).resolve())


class S3Storage(Storage):
    """``s3://bucket/prefix`` through s3fs; credentials and endpoint from the AWS environment variables."""

    def __init__(self, url: str, *, part_bytes: int = DEFAULT_PART_BYTES) -> None:
        check_storage_url(url)
        try:
            import s3fs
        except ImportError:
            raise StorageConfigError(f"storage URL {url!r} needs s3fs: pip install 'stemcat[s3]'") from None
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.part_bytes = part_bytes
        # A fresh instance: fsspec's instance cache would keep the first credentials a process saw.
        self.fs = s3fs.S3FileSystem(skip_instance_cache=True)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{self._key(key)}"

    def put_file(self, local: Path, key: str, *, sha256: str) -> None:
        got = sha256_file(local)
        if got != sha256:
            raise StorageError(f"{local}: sha256 {got[:12]}… is not {sha256[:12]}…; not uploaded")
        size = local.stat().st_size
        try:
            # Over two parts' worth s3fs uploads in parts and aborts the upload if a part fails.
            self.fs.put_file(str(local), self._path(key), chunksize=self.part_bytes, Metadata={"sha256": sha256})
        except Exception as error:  # botocore and aiohttp raise many kinds; the message is what matters
            raise StorageError(f"uploading {key} to {self.url} failed: {_one_line(error)}") from None
        if not self.is_intact(key, size=size, sha256=sha256):
            raise StorageError(f"{self.url}/{key} does not hold what was uploaded")

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's size and metadata, or None when there is none."""
        try:
            return dict(self.fs.call_s3("head_object", Bucket=self.bucket, Key=self._key(key)))
        except FileNotFoundError:
            return None
        except Exception as error:
            raise StorageError(f"reading {self.url}/{key} failed: {_one_line(error)}") from None

    def is_intact(self, key: str, *, size: int, sha256: str) -> bool:
        # The sha256 was checked before the upload and the object has not been written since:
        # metadata is enough, and a rerun on another host costs one HEAD per stem.
        head = self.head(key)
        return head is not None and head.get("ContentLength") == size and head.get("Metadata", {}).get(
            "sha256") == sha256

    def open_read(self, key: str) -> Any:
        try:
            return self.fs.open(self._path(key), "rb", block_size=_CHUNK * 8)
        except FileNotFoundError:
            raise
        except Exception as error:
            raise StorageError(f"reading {self.url}/{key} failed: {_one_line(error)}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(self._path(key), data)
        except Exception as error:
            raise StorageError(f"writing {self.url}/{key} failed: {_one_line(error)}") from None

    def keys_under(self, prefix: str) -> list[str]:
        base = self._key(prefix)
        try:
            found = self.fs.find(f"{self.bucket}/{base}")
        except FileNotFoundError:
            return []
        strip = len(self.bucket) + 1 + (len(self.prefix) + 1 if self.prefix else 0)
        return sorted(path[strip:] for path in found)

    def delete_under(self, prefix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(f"{self.bucket}/{self._key(prefix)}", recursive=True)

    def location(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def attach(self, con: Any) -> None:
        # DuckDB's own S3 support (httpfs) is an extension it downloads; fsspec's is installed.
        con.register_filesystem(self.fs)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]
