"""put_file: a file on disk stored under a key without being read whole (a job's archive can be
gigabytes), for local storage and S3 (a multipart upload above boto3's 8 MiB threshold)."""

from __future__ import annotations

import random
import urllib.request
from pathlib import Path

from cardiosynth.storage.local import LocalStore
from tests.storage.test_s3 import _store


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = random.Random(0).randbytes(size)
    path = tmp_path / "archive.tar"
    path.write_bytes(data)
    return path, data


def test_local_put_file_replaces_the_object_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", signing_key=b"k" * 32)
    store.put_bytes("jobs/j1/archive.tar", b"old")
    path, data = _file(tmp_path, 3 << 20)
    store.put_file("jobs/j1/archive.tar", path)
    assert store.get_bytes("jobs/j1/archive.tar") == data
    assert store.list_keys("jobs/j1") == ["jobs/j1/archive.tar"]
    assert [p.name for p in (tmp_path / "store" / "jobs" / "j1").iterdir()] == ["archive.tar"]
    assert path.read_bytes() == data  # the source stays (the caller's temporary directory removes it)


def test_s3_put_file_uploads_in_parts_and_downloads_as_a_tar(s3_endpoint: int, tmp_path: Path) -> None:
    store = _store(s3_endpoint)
    path, data = _file(tmp_path, 9 << 20)
    store.put_file("jobs/j2/archive.tar", path)
    assert store.get_bytes("jobs/j2/archive.tar") == data
    with urllib.request.urlopen(store.download_url("jobs/j2/archive.tar", 60)) as response:
        assert response.headers["Content-Type"] == "application/x-tar"
        assert response.read() == data
