"""GET /jobs/{id}/results in pages and GET /jobs/{id}/manifest, over the real (Redis) job store and
local storage holding the job's files."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardiosynth.gateway.results import checksummed, decode_cursor, encode_cursor, page
from cardiosynth.jobs.base import JobState
from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.storage.local import LocalStore
from tests.gateway.conftest import KEY_A, RecordingDispatcher

A = {"X-API-Key": KEY_A}
Api = tuple[TestClient, RecordingDispatcher, LocalStore]


def finished_job(api: Api, subjects: int, *, record_checksums: bool) -> tuple[str, list[dict[str, Any]]]:
    """A succeeded job whose files (2 per subject, written in reverse order) are in the store."""
    client, _, store = api
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    job_id = client.post("/synthesize", json={"pathology": "HCM", "n": subjects}, headers=A).json()["id"]
    files = []
    for s in reversed(range(subjects)):
        for phase in ("ES", "ED"):
            key = f"jobs/{job_id}/HCM_{s:03d}/HCM_{s:03d}_s1.00_{phase}.nii.gz"
            data = f"{key} bytes".encode() * (s + 1)
            store.put_bytes(key, data)
            record: dict[str, Any] = {
                "subject": f"HCM_{s:03d}",
                "key": key,
                "kind": "image",
                "severity": "1.00",
                "phase": phase,
            }
            if record_checksums:
                record |= {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            files.append(record)
    biomarkers = {f"HCM_{s:03d}": {"1.00": {"lv_ef": 60.0 + s}} for s in range(subjects)}
    jobs.transition(job_id, JobState.RUNNING)
    jobs.transition(job_id, JobState.SUCCEEDED, result={"files": files, "biomarkers": biomarkers})
    return job_id, files


def test_pages_cover_every_file_once_in_key_order(api: Api) -> None:
    client, _, _ = api
    job_id, files = finished_job(api, 4, record_checksums=True)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        r = client.get(f"/jobs/{job_id}/results", params=params, headers=A)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 8
        assert len(body["files"]) <= 3
        assert set(body["biomarkers"]) == {f["subject"] for f in body["files"]}  # the page's subjects
        assert all(f["url"].startswith("http://testserver/files/") for f in body["files"])
        seen += [f["key"] for f in body["files"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(f["key"] for f in files)


def test_without_paging_the_answer_is_as_before(api: Api) -> None:
    client, _, _ = api
    job_id, files = finished_job(api, 3, record_checksums=False)
    body = client.get(f"/jobs/{job_id}/results", headers=A).json()
    assert [f["key"] for f in body["files"]] == sorted(f["key"] for f in files)
    assert set(body["biomarkers"]) == {"HCM_000", "HCM_001", "HCM_002"}
    assert body["next"] is None
    assert body["files"][0]["size"] is None  # not recorded by the workers of this job


def test_bad_cursors_and_limits_are_422(api: Api) -> None:
    client, _, _ = api
    job_id, _ = finished_job(api, 2, record_checksums=True)
    other_id, _ = finished_job(api, 1, record_checksums=True)
    foreign = client.get(f"/jobs/{other_id}/results", params={"limit": 1}, headers=A).json()["next"]
    for cursor in ("not-a-cursor", "!!", foreign):
        r = client.get(f"/jobs/{job_id}/results", params={"cursor": cursor}, headers=A)
        assert r.status_code == 422, cursor
        assert "cursor" in r.json()["detail"]
    for limit in (0, 1001):
        assert client.get(f"/jobs/{job_id}/results", params={"limit": limit}, headers=A).status_code == 422


def test_manifest_lists_recorded_sizes_and_checksums(api: Api) -> None:
    client, _, _ = api
    job_id, files = finished_job(api, 3, record_checksums=True)
    r = client.get(f"/jobs/{job_id}/manifest", headers=A)
    assert r.status_code == 200
    assert "attachment" in r.headers["Content-Disposition"]
    body = r.json()
    assert body["count"] == 6
    assert body["request"]["n"] == 3
    expected = {f["key"]: (f["size"], f["sha256"]) for f in files}
    assert {f["key"]: (f["size"], f["sha256"]) for f in body["files"]} == expected
    assert body["total_bytes"] == sum(size for size, _ in expected.values())
    again = client.get(f"/jobs/{job_id}/manifest", headers={**A, "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_manifest_of_unrecorded_files_is_hashed_once_from_the_store(api: Api) -> None:
    client, _, store = api
    job_id, files = finished_job(api, 2, record_checksums=False)
    body = client.get(f"/jobs/{job_id}/manifest", headers=A).json()
    for entry in body["files"]:
        data = store.get_bytes(entry["key"])
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert store.exists(f"jobs/{job_id}/manifest.json")
    # Kept: the files are not read again (one gone now still has its recorded checksum).
    store.delete(files[0]["key"])
    assert client.get(f"/jobs/{job_id}/manifest", headers=A).json() == body


def test_no_pages_or_manifest_before_success(api: Api) -> None:
    client, _, _ = api
    job_id = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]
    assert client.get(f"/jobs/{job_id}/results", headers=A).status_code == 409
    assert client.get(f"/jobs/{job_id}/manifest", headers=A).status_code == 409
    assert client.get(f"/jobs/{'0' * 32}/manifest", headers=A).status_code == 404


def test_page_and_cursor_rules() -> None:
    files = [{"key": k} for k in ("c", "a", "b")]
    items, cursor = page(files, "job", None, 2)
    assert [f["key"] for f in items] == ["a", "b"]
    assert cursor is not None
    assert decode_cursor(cursor, "job") == "b"
    items, cursor = page(files, "job", cursor, 2)
    assert [f["key"] for f in items] == ["c"]
    assert cursor is None
    assert page([], "job", None, 5) == ([], None)
    with pytest.raises(ValueError, match="another job"):
        decode_cursor(encode_cursor("job", "b"), "other")
    with pytest.raises(ValueError, match="limit"):
        page(files, "job", None, 0)
    reads: list[str] = []

    def read(key: str) -> bytes:
        reads.append(key)
        return b"x" * 3

    out, computed = checksummed([{"key": "a", "size": 1, "sha256": "f"}, {"key": "b"}], read)
    assert computed
    assert reads == ["b"]
    assert out[1] == {"key": "b", "size": 3, "sha256": hashlib.sha256(b"xxx").hexdigest()}


def test_polls_read_the_job_without_its_result(api: Api, tmp_path: Path) -> None:
    """GET /jobs/{id}, the event stream and listings read records without the result (megabytes for a
    large job's file list): both stores leave it out on request and nothing else."""
    client, _, _ = api
    redis_store = client.app.state.services.jobs  # type: ignore[attr-defined]
    for store in (redis_store, SqliteJobStore(tmp_path / "jobs.db")):
        job, _ = store.create("owner", {"pathology": "HCM", "n": 2})
        store.transition(job.id, JobState.RUNNING)
        store.transition(job.id, JobState.SUCCEEDED, result={"files": [{"key": "k"}] * 3, "biomarkers": {}})
        full, light = store.get(job.id), store.get(job.id, result=False)
        assert full is not None
        assert light is not None
        assert full.result is not None
        assert light.result is None
        assert replace(light, result=full.result) == full
        listed, _ = store.list_jobs("owner")
        assert [j.result for j in listed] == [None]
        assert store.get("0" * 32, result=False) is None
    job_id, _ = finished_job(api, 2, record_checksums=True)
    assert client.get(f"/jobs/{job_id}", headers=A).json()["state"] == "succeeded"
    assert client.get(f"/jobs/{job_id}/results", headers=A).json()["total"] == 4  # results still read it
