"""The catalog published to a storage: whole versions behind CURRENT, one publisher at a time,
readers of an older version undisturbed, old versions pruned."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from stemcat.catalog import open_catalog
from stemcat.catalog.published import CURRENT_KEY, open_published_catalog, read_current
from stemcat.catalog.storage import S3Storage, StorageError
from stemcat.tasks.publish import publish
from tests.catalog.catalog_sample import build_sample


def test_publications_replace_current_whole_while_an_open_reader_keeps_its_version(tmp_path: Path,
                                                                                  s3_url: str) -> None:
    storage = S3Storage(s3_url)
    with pytest.raises(StorageError, match="no catalog published"):
        open_published_catalog(storage)
    sample = build_sample(tmp_path)
    led = sample.ledger
    publish(led, tmp_path, storage)
    first = read_current(storage)
    assert first is not None
    reader = open_published_catalog(storage)
    local = open_catalog(tmp_path)
    assert reader.execute("SELECT * FROM jobs ORDER BY job_id").fetchall() == \
        local.execute("SELECT * FROM jobs ORDER BY job_id").fetchall() != []

    led.start_run("r3", flow_run_id="f3", manifest="more.csv", params={}, balance_before=86)
    # Two publishers at once: they take turns, and CURRENT ends on a complete version.
    threads = [threading.Thread(target=publish, args=(led, tmp_path, storage)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    current = read_current(storage)
    assert current is not None and current.version > first.version
    versions = {key.split("/")[2] for key in storage.keys_under("catalog/versions")}
    assert current.version in versions and len(versions) == 3  # the newest 3 kept
    for table in current.tables.values():  # every table CURRENT names is there, whole
        assert storage.is_intact(table.key, size=table.bytes, sha256=table.sha256)

    fresh = open_published_catalog(storage)
    assert fresh.execute("SELECT count(*) FROM runs").fetchone()[0] == 3
    # The reader opened before still reads its own version (kept), not a mix of the two.
    assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    publish(led, tmp_path, storage)  # a fourth: the first version is pruned
    assert first.version not in {key.split("/")[2] for key in storage.keys_under("catalog/versions")}


def test_a_pointer_that_is_not_ours_is_a_one_line_error(s3_url: str) -> None:
    storage = S3Storage(s3_url)
    storage.write_bytes(CURRENT_KEY, b"not json")
    with pytest.raises(StorageError, match="not a stemcat catalog pointer"):
        read_current(storage)


def test_publishers_sharing_a_postgres_ledger_take_turns_across_data_directories(tmp_path: Path,
                                                                                  postgres_url: str) -> None:
    from stemcat.catalog import Ledger
    from stemcat.catalog.published import publishing_lock

    ledger = Ledger.open(tmp_path / "host-a", postgres_url)
    order: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with publishing_lock(ledger, tmp_path / "host-a"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        inside.wait(10)
        with publishing_lock(ledger, tmp_path / "host-b"):  # another host: only the database is shared
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    try:
        for thread in threads:
            thread.start()
        inside.wait(10)
        time.sleep(0.3)  # time enough for the second to get in, were it not kept out
        assert order == ["first in"]
        release.set()
        for thread in threads:
            thread.join(10)
        assert order == ["first in", "first out", "second in"]
    finally:
        release.set()
        ledger.close()
