"""ETag / If-None-Match on GET /jobs/{id}, against the real (Redis) job store."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cardiosynth.gateway.etag import etag_of, matches
from cardiosynth.jobs.base import JobState
from cardiosynth.storage.local import LocalStore
from tests.gateway.conftest import KEY_A, KEY_B, RecordingDispatcher

A = {"X-API-Key": KEY_A}
Api = tuple[TestClient, RecordingDispatcher, LocalStore]


def test_matches_follows_weak_comparison() -> None:
    tag = etag_of(b'{"a":1}')
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert tag != etag_of(b'{"a":2}')
    assert matches(tag, tag)
    assert matches(f"W/{tag}", tag)  # a proxy may weaken it; If-None-Match compares weakly
    assert matches(f'"other", {tag}', tag)
    assert matches("*", tag)
    assert not matches('"other"', tag)
    assert not matches(None, tag)
    assert not matches("", tag)


def test_unchanged_job_is_304_without_body(api: Api) -> None:
    client, _, _ = api
    job = client.post("/synthesize", json={"pathology": "HCM", "n": 2}, headers=A).json()
    first = client.get(f"/jobs/{job['id']}", headers=A)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.json()["id"] == job["id"]
    assert "no-cache" in first.headers["Cache-Control"]
    again = client.get(f"/jobs/{job['id']}", headers={**A, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag
    # A stale or foreign tag gets the whole answer.
    other = client.get(f"/jobs/{job['id']}", headers={**A, "If-None-Match": '"not-it"'})
    assert other.status_code == 200
    assert other.json() == first.json()


def test_a_change_changes_the_etag(api: Api) -> None:
    client, _, _ = api
    store = client.app.state.services.jobs  # type: ignore[attr-defined]
    job_id = client.post("/synthesize", json={"pathology": "DCM", "n": 3}, headers=A).json()["id"]
    etag = client.get(f"/jobs/{job_id}", headers=A).headers["ETag"]
    store.transition(job_id, JobState.RUNNING)
    running = client.get(f"/jobs/{job_id}", headers={**A, "If-None-Match": etag})
    assert running.status_code == 200
    assert running.json()["state"] == "running"
    assert running.headers["ETag"] != etag
    etag = running.headers["ETag"]
    assert store.update(job_id, progress={"encode": {"done": 1, "total": 3}})
    progressed = client.get(f"/jobs/{job_id}", headers={**A, "If-None-Match": etag})
    assert progressed.status_code == 200
    assert progressed.json()["progress"] == {"encode": {"done": 1, "total": 3}}
    unchanged = {**A, "If-None-Match": progressed.headers["ETag"]}
    assert client.get(f"/jobs/{job_id}", headers=unchanged).status_code == 304


def test_the_etag_opens_nothing_for_another_key(api: Api) -> None:
    client, _, _ = api
    job_id = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]
    etag = client.get(f"/jobs/{job_id}", headers=A).headers["ETag"]
    for tag in (etag, "*"):
        other = {"X-API-Key": KEY_B, "If-None-Match": tag}
        assert client.get(f"/jobs/{job_id}", headers=other).status_code == 404
