"""S3Store against moto's server mode over real HTTP (no MinIO binary is available here)."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from cardiosynth.storage.base import StorageError
from cardiosynth.storage.s3 import S3Store


def _store(port: int, bucket: str = "cardiosynth") -> S3Store:
    store = S3Store(
        bucket,
        endpoint_url=f"http://127.0.0.1:{port}",  # what the workers reach ("minio:9000" in compose)
        public_endpoint_url=f"http://localhost:{port}",  # what the user's machine reaches
        access_key="test",
        secret_key="test-secret",
        prefix="v1",
    )
    store.ensure_bucket()
    return store


def test_round_trip_and_listing(s3_endpoint: int) -> None:
    store = _store(s3_endpoint)
    store.put_bytes("jobs/j1/HCM_000/HCM_000_s1.00_ED.nii.gz", b"\x1f\x8bdata")
    store.put_bytes("jobs/j1/HCM_000/HCM_000_s1.00_ED.nii.gz", b"\x1f\x8bdata2")
    store.put_bytes("jobs/j1/provenance.json", b"{}")
    assert store.get_bytes("jobs/j1/HCM_000/HCM_000_s1.00_ED.nii.gz") == b"\x1f\x8bdata2"
    assert store.list_keys("jobs/j1") == [
        "jobs/j1/HCM_000/HCM_000_s1.00_ED.nii.gz",
        "jobs/j1/provenance.json",
    ]
    assert store.exists("jobs/j1/provenance.json")
    store.delete("jobs/j1/provenance.json")
    assert not store.exists("jobs/j1/provenance.json")
    with pytest.raises(KeyError):
        store.get_bytes("jobs/none")
    store.ping()


def test_presigned_url_works_from_the_public_host_as_a_gzip_file(s3_endpoint: int) -> None:
    store = _store(s3_endpoint)
    store.put_bytes("jobs/j2/a.nii.gz", b"\x1f\x8b\x08payload")
    url = store.download_url("jobs/j2/a.nii.gz", 300)
    assert url.startswith(f"http://localhost:{s3_endpoint}/cardiosynth/v1/jobs/j2/a.nii.gz?")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"\x1f\x8b\x08payload"
        assert response.headers["Content-Type"] == "application/gzip"
        assert response.headers.get("Content-Encoding") is None


def test_unreachable_store_raises_storage_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store("b", endpoint_url=f"http://127.0.0.1:{port}", access_key="x", secret_key="y")
    with pytest.raises(StorageError, match="not reachable"):
        store.ping()
