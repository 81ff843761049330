from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from cardiosynth.storage import LocalStore, ObjectStore, check_key, content_type


def test_round_trip_list_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, signing_key=b"k" * 32)
    assert isinstance(store, ObjectStore)
    store.put_bytes("jobs/j1/HCM_000/a.nii.gz", b"abc")
    store.put_bytes("jobs/j1/HCM_000/a.nii.gz", b"new")  # overwrite, never duplicate
    store.put_bytes("jobs/j1/provenance.json", b"{}")
    assert store.get_bytes("jobs/j1/HCM_000/a.nii.gz") == b"new"
    assert store.list_keys("jobs/j1") == ["jobs/j1/HCM_000/a.nii.gz", "jobs/j1/provenance.json"]
    assert store.exists("jobs/j1/provenance.json")
    store.delete("jobs/j1/provenance.json")
    store.delete("jobs/j1/provenance.json")  # absent: no error
    assert not store.exists("jobs/j1/provenance.json")
    with pytest.raises(KeyError):
        store.get_bytes("jobs/missing")
    assert not list(tmp_path.rglob(".tmp-*"))
    store.ping()


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b", "sp ace", "a\\b"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        check_key(key)


def test_signed_links_expire_and_bind_the_key(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, signing_key=b"s" * 32, base_url="http://host:8000/")
    url = store.download_url("jobs/j1/x.nii.gz", 60)
    parsed = urlparse(url)
    assert parsed.netloc == "host:8000"
    key = unquote(parsed.path.removeprefix("/files/"))
    query = parse_qs(parsed.query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert store.verify(key, expires, signature)
    assert not store.verify("jobs/j1/other.nii.gz", expires, signature)
    assert not store.verify(key, expires + 1, signature)
    assert not store.verify(key, expires, signature, now=time.time() + 120)
    other = LocalStore(tmp_path, signing_key=b"t" * 32)
    assert not other.verify(key, expires, signature)
    with pytest.raises(ValueError, match="expires_s"):
        store.download_url("a", 0)
    with pytest.raises(ValueError, match="signing_key"):
        LocalStore(tmp_path, signing_key=b"short")


def test_content_types() -> None:
    assert content_type("a/b.nii.gz") == "application/gzip"
    assert content_type("p.json") == "application/json"
    assert content_type("p.png") == "image/png"
