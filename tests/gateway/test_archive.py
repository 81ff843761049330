"""POST/GET /jobs/{id}/archive over the real (Redis) job store and local storage: queued once, refused
for a job that has not succeeded or is another key's, built by the worker's code in this process, then
downloaded through the same signed links as the results; deleted with the job by a purge."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest

from cardiosynth.jobs.archive import FAILED, archive_key, record
from cardiosynth.jobs.base import JobState
from cardiosynth.workers import archive as archive_worker
from cardiosynth.workers import runtime
from tests.gateway.conftest import KEY_B
from tests.gateway.test_results_pages import A, Api, finished_job

B = {"X-API-Key": KEY_B}


def _archive_requests(api: Api, job_id: str) -> int:
    return sum(1 for j, r in api[1].submitted if j == job_id and r == {"resume": "archive"})


def _build(api: Api, monkeypatch: pytest.MonkeyPatch, job_id: str) -> None:
    """What the worker that takes the queued task does (same job store and storage as the gateway)."""
    client, _, store = api
    monkeypatch.setattr(runtime, "jobs", lambda: client.app.state.services.jobs)  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime, "storage", lambda: store)
    archive_worker.run_archive(job_id, worker="test")


def test_post_queues_one_build_and_answers_its_state(api: Api) -> None:
    client, _, _ = api
    job_id, _ = finished_job(api, 2, record_checksums=True)
    first = client.post(f"/jobs/{job_id}/archive", headers=A)
    assert first.status_code == 202, first.text
    assert first.json()["state"] == "pending"
    assert first.json()["download"] is None
    second = client.post(f"/jobs/{job_id}/archive", headers=A)
    assert second.status_code == 202
    assert second.json() == first.json()
    assert _archive_requests(api, job_id) == 1
    job = client.get(f"/jobs/{job_id}", headers=A).json()
    assert job["archive"]["state"] == "pending"
    r = client.get(f"/jobs/{job_id}/archive", headers=A)
    assert r.status_code == 409
    assert "pending" in r.json()["detail"]


def test_a_job_that_has_not_succeeded_is_a_409_and_another_keys_job_a_404(api: Api) -> None:
    client, _, _ = api
    queued = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    jobs.transition(queued, JobState.RUNNING)
    for method in ("post", "get"):
        r = getattr(client, method)(f"/jobs/{queued}/archive", headers=A)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "running" in r.json()["detail"]
    job_id, _ = finished_job(api, 1, record_checksums=True)
    for method in ("post", "get"):
        assert getattr(client, method)(f"/jobs/{job_id}/archive", headers=B).status_code == 404
        assert getattr(client, method)(f"/jobs/{job_id}/archive").status_code == 401
    assert _archive_requests(api, job_id) == 0
    r = client.get(f"/jobs/{job_id}/archive", headers=A)
    assert r.status_code == 404
    assert "POST" in r.json()["detail"]


def test_the_ready_archive_downloads_through_a_signed_link_and_holds_every_file(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, store = api
    job_id, files = finished_job(api, 3, record_checksums=True)
    assert client.post(f"/jobs/{job_id}/archive", headers=A).status_code == 202
    _build(api, monkeypatch, job_id)
    job = client.get(f"/jobs/{job_id}", headers=A).json()
    assert job["archive"]["state"] == "ready", job["archive"]
    assert job["archive"]["download"] == f"/jobs/{job_id}/archive"
    r = client.get(f"/jobs/{job_id}/archive", headers=A, follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"].startswith(f"http://testserver/files/{archive_key(job_id)}?expires=")
    assert "signature=" in r.headers["location"]
    download = client.get(r.headers["location"])  # the link itself needs no key, as result links
    assert download.status_code == 200
    data = download.content
    assert hashlib.sha256(data).hexdigest() == job["archive"]["sha256"]
    assert len(data) == job["archive"]["bytes"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(f"{job_id}/manifest.json").read())  # type: ignore[union-attr]
        contents = {n: tar.extractfile(n).read() for n in names[1:]}  # type: ignore[union-attr]
    expected = sorted(f["key"].removeprefix("jobs/") for f in files)
    assert names == [f"{job_id}/manifest.json", *expected]
    assert sorted(f["key"] for f in manifest["files"]) == sorted(f["key"] for f in files)
    assert all(contents[k.removeprefix("jobs/")] == store.get_bytes(k) for k in (f["key"] for f in files))
    # Asked again: answered as it is, nothing rebuilt.
    again = client.post(f"/jobs/{job_id}/archive", headers=A)
    assert again.status_code == 202
    assert again.json()["state"] == "ready"
    assert _archive_requests(api, job_id) == 1
    # A purge deletes the archive with the job's other files.
    assert client.delete(f"/jobs/{job_id}?purge=true", headers=A).status_code == 204
    assert store.list_keys(f"jobs/{job_id}/") == []
    assert client.get(f"/jobs/{job_id}/archive", headers=A).status_code == 404


def test_a_failed_build_says_why_and_is_queued_again(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, store = api
    job_id, files = finished_job(api, 2, record_checksums=True)
    store.put_bytes(files[0]["key"], b"changed after the job succeeded")  # its checksum no longer matches
    assert client.post(f"/jobs/{job_id}/archive", headers=A).status_code == 202
    _build(api, monkeypatch, job_id)
    r = client.get(f"/jobs/{job_id}/archive", headers=A)
    assert r.status_code == 409
    assert "failed" in r.json()["detail"]
    assert files[0]["key"] in r.json()["detail"]
    assert not store.exists(archive_key(job_id))  # no half or wrong archive stored
    again = client.post(f"/jobs/{job_id}/archive", headers=A)
    assert again.status_code == 202
    assert again.json()["state"] == "pending"
    assert _archive_requests(api, job_id) == 2


def test_an_expired_job_is_a_410(api: Api) -> None:
    client, _, _ = api
    job_id, _ = finished_job(api, 1, record_checksums=True)
    jobs: Any = client.app.state.services.jobs  # type: ignore[attr-defined]
    jobs.set_archive(job_id, record(FAILED, error="x"))
    jobs.mark_expired(job_id, 1.0)
    for method in ("post", "get"):
        assert getattr(client, method)(f"/jobs/{job_id}/archive", headers=A).status_code == 410


def test_a_broker_that_is_down_leaves_no_pending_archive(api: Api) -> None:
    client, dispatcher, _ = api
    job_id, _ = finished_job(api, 1, record_checksums=True)
    dispatcher.resume = lambda job, stage: (_ for _ in ()).throw(ConnectionError("down"))  # type: ignore[method-assign]
    r = client.post(f"/jobs/{job_id}/archive", headers=A)
    assert r.status_code == 503, r.text
    assert client.get(f"/jobs/{job_id}", headers=A).json()["archive"]["state"] == "failed"


def test_a_dataset_build_is_refused_with_where_its_archive_is(api: Api) -> None:
    from tests.gateway.test_datasets import TINY

    client, _, _ = api
    dataset = client.post("/datasets", json=TINY, headers=A).json()["id"]
    r = client.post(f"/jobs/{dataset}/archive", headers=A)
    assert r.status_code == 409
    assert f"/datasets/{dataset}/results" in r.json()["detail"]
    assert _archive_requests(api, dataset) == 0
