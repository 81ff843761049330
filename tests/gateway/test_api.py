from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.jobs.store import JobState
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.storage.local import LocalStore
from tests.gateway.conftest import KEY_A, KEY_B, RecordingDispatcher

A = {"X-API-Key": KEY_A}
B = {"Authorization": f"Bearer {KEY_B}"}


def test_submit_poll_list_cancel(api: tuple[TestClient, RecordingDispatcher, LocalStore]) -> None:
    client, dispatcher, _ = api
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 5}, headers=A)
    assert r.status_code == 202
    job = r.json()
    assert r.headers["Location"] == f"/jobs/{job['id']}"
    assert job["state"] == "queued"
    assert job["queue_position"] == 0
    assert dispatcher.submitted[0][1]["pathology"] == "HCM"
    assert dispatcher.submitted[0][1]["n"] == 5
    assert client.get(f"/jobs/{job['id']}", headers=A).json()["state"] == "queued"
    assert client.get(f"/jobs/{job['id']}", headers=B).status_code == 404  # another key's job
    listed = client.get("/jobs?state=queued", headers=A).json()
    assert listed["total"] == 1
    assert client.get("/jobs", headers=B).json()["total"] == 0
    r = client.delete(f"/jobs/{job['id']}", headers=A)
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"
    assert dispatcher.cancelled == [job["id"]]
    assert client.delete(f"/jobs/{job['id']}", headers=A).status_code == 409
    assert client.get(f"/jobs/{job['id']}/results", headers=A).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pathology": "XYZ", "n": 5}, "pathology"),
        ({"pathology": "HCM", "n": 0}, "n"),
        ({"pathology": "HCM", "n": 5001}, "n"),
        ({"pathology": "HCM", "n": 1, "severity": 1.5}, "severity"),
        ({"pathology": "HCM", "n": 1, "seed": -1}, "seed"),
        ({"pathology": "HCM", "n": 1, "model": "nope"}, "model"),
        ({"pathology": "HCM", "n": 1, "colour": "red"}, "colour"),
        ({"pathology": "HCM", "n": 1, "severity": 0.5, "trajectory": 3}, "body"),
    ],
)
def test_bad_input_is_422_problem_naming_the_field(
    api: tuple[TestClient, RecordingDispatcher, LocalStore], body: dict[str, Any], field: str
) -> None:
    client, dispatcher, _ = api
    r = client.post("/synthesize", json=body, headers=A)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert field in r.json()["detail"]
    assert dispatcher.submitted == []


def test_malformed_body_and_auth(api: tuple[TestClient, RecordingDispatcher, LocalStore]) -> None:
    client, _, _ = api
    r = client.post("/synthesize", content=b"{not json", headers={**A, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["status"] == 422
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 1})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert client.get("/jobs", headers={"X-API-Key": "wrong"}).status_code == 401


def test_idempotency_and_queue_cap(api: tuple[TestClient, RecordingDispatcher, LocalStore]) -> None:
    client, dispatcher, _ = api
    body = {"pathology": "DCM", "n": 2}
    first = client.post("/synthesize", json=body, headers={**A, "Idempotency-Key": "abc"})
    again = client.post("/synthesize", json=body, headers={**A, "Idempotency-Key": "abc"})
    assert first.json()["id"] == again.json()["id"]
    assert len(dispatcher.submitted) == 1
    other = client.post("/synthesize", json={**body, "n": 3}, headers={**A, "Idempotency-Key": "abc"})
    assert other.status_code == 422
    client.post("/synthesize", json=body, headers=A)
    client.post("/synthesize", json=body, headers=A)
    capped = client.post("/synthesize", json=body, headers=A)
    assert capped.status_code == 429
    assert capped.headers["Retry-After"] == "30"
    assert client.post("/synthesize", json=body, headers=B).status_code == 202  # the cap is per key


def test_broker_down_is_503_and_the_job_is_failed(
    api: tuple[TestClient, RecordingDispatcher, LocalStore],
) -> None:
    client, dispatcher, _ = api
    dispatcher.fail = True
    r = client.post("/synthesize", json={"pathology": "RV", "n": 1}, headers=A)
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    failed = client.get("/jobs?state=failed", headers=A).json()
    assert failed["total"] == 1
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("unavailable")


def test_results_with_signed_downloads(
    api: tuple[TestClient, RecordingDispatcher, LocalStore],
) -> None:
    client, _, store = api
    job_id = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    key = f"jobs/{job_id}/HCM_000/HCM_000_s1.00_ED.nii.gz"
    store.put_bytes(key, b"\x1f\x8bnifti")
    jobs.transition(job_id, JobState.RUNNING)
    entry = {"subject": "HCM_000", "severity": "1.00", "phase": "ED", "kind": "image", "key": key}
    result = {"files": [entry], "biomarkers": {"HCM_000": {"1.00": {"lv_ef": 70.0}}}}
    jobs.transition(job_id, JobState.SUCCEEDED, result=result)
    r = client.get(f"/jobs/{job_id}/results", headers=A)
    assert r.status_code == 200
    files = r.json()["files"]
    assert files[0]["key"] == key
    assert r.json()["biomarkers"]["HCM_000"]["1.00"]["lv_ef"] == 70.0
    url = files[0]["url"].removeprefix("http://testserver")
    download = client.get(url)
    assert download.status_code == 200
    assert download.content == b"\x1f\x8bnifti"
    assert download.headers["content-type"] == "application/gzip"
    assert "content-encoding" not in download.headers
    assert client.get(url.replace("signature=", "signature=0")).status_code == 403


def test_service_endpoints(api: tuple[TestClient, RecordingDispatcher, LocalStore]) -> None:
    client, dispatcher, _ = api
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    dispatcher.live = {"vae": 1}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["workers_spade"] == "none"
    assert set(client.get("/pathologies").json()) == {"NOR", "DCM", "HCM", "RV", "MINF"}
    assert {(m["kind"], m["version"]) for m in client.get("/models").json()} >= {("vae", DEFAULT_VERSION)}
    client.get("/healthz")
    assert "cardiosynth_http_requests_total" in client.get("/metrics").text


def test_missing_api_keys_refuse_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CARDIOSYNTH_API_KEYS"):
        create_app(GatewaySettings(storage_dir=tmp_path), RecordingDispatcher())


def test_gateway_does_not_import_torch() -> None:
    code = "import sys, cardiosynth.gateway.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_expired_job_still_answers_and_its_results_are_gone(
    api: tuple[TestClient, RecordingDispatcher, LocalStore],
) -> None:
    import time

    from cardiosynth.jobs.reaper import expire_results

    client, _, storage = api
    job = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    jobs.transition(job["id"], JobState.RUNNING, stage="vae")
    storage.put_bytes(f"jobs/{job['id']}/x.nii.gz", b"data")
    jobs.transition(job["id"], JobState.SUCCEEDED, result={"files": [{"key": f"jobs/{job['id']}/x.nii.gz"}]})
    assert client.get(f"/jobs/{job['id']}", headers=A).json()["expired"] is False
    assert expire_results(jobs, storage, 60, now=time.time() + 120) == [job["id"]]
    assert storage.list_keys(f"jobs/{job['id']}/") == []
    got = client.get(f"/jobs/{job['id']}", headers=A).json()
    assert (got["state"], got["expired"]) == ("succeeded", True)
    r = client.get(f"/jobs/{job['id']}/results", headers=A)
    assert r.status_code == 410
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "results expired at" in r.json()["detail"]


def test_purge_deletes_files_and_record_of_a_live_or_finished_job(
    api: tuple[TestClient, RecordingDispatcher, LocalStore],
) -> None:
    client, dispatcher, storage = api
    live = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()
    storage.put_bytes(f"jobs/{live['id']}/x.nii.gz", b"data")
    assert client.delete(f"/jobs/{live['id']}?purge=true", headers=B).status_code == 404  # not B's
    r = client.delete(f"/jobs/{live['id']}?purge=true", headers=A)
    assert r.status_code == 204
    assert r.content == b""
    assert dispatcher.cancelled == [live["id"]]  # cancelled first
    assert storage.list_keys(f"jobs/{live['id']}/") == []
    assert client.get(f"/jobs/{live['id']}", headers=A).status_code == 404
    done = client.post("/synthesize", json={"pathology": "DCM", "n": 1}, headers=A).json()
    assert client.delete(f"/jobs/{done['id']}", headers=A).status_code == 200  # plain cancel
    assert client.delete(f"/jobs/{done['id']}", headers=A).status_code == 409  # finished: unchanged
    assert client.get(f"/jobs/{done['id']}", headers=A).json()["state"] == "cancelled"
    assert client.delete(f"/jobs/{done['id']}?purge=true", headers=A).status_code == 204
    assert client.get(f"/jobs/{done['id']}", headers=A).status_code == 404
    assert client.get("/jobs", headers=A).json()["total"] == 0


def test_subjects_in_flight_per_key_are_capped(
    api: tuple[TestClient, RecordingDispatcher, LocalStore],
) -> None:
    client, _, _ = api
    quota = client.app.state.services.settings.max_subjects_in_flight_per_key  # type: ignore[attr-defined]
    assert quota == 200
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 11, "trajectory": 19}, headers=A)
    assert r.status_code == 422  # 209 > 200: could never fit
    assert "209" in r.json()["detail"]
    first = client.post("/synthesize", json={"pathology": "HCM", "n": 10, "trajectory": 15}, headers=A)
    assert first.status_code == 202  # 150
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 51}, headers=A)
    assert r.status_code == 429
    assert r.headers["Retry-After"]
    assert "150" in r.json()["detail"]
    assert "51" in r.json()["detail"]
    assert "200" in r.json()["detail"]
    assert client.post("/synthesize", json={"pathology": "HCM", "n": 50}, headers=A).status_code == 202
    assert client.post("/synthesize", json={"pathology": "HCM", "n": 51}, headers=B).status_code == 202


def test_the_largest_requests_the_schema_accepts_fit_the_default_quota(
    api: tuple[TestClient, RecordingDispatcher, LocalStore],
) -> None:
    from cardiosynth.gateway.schemas import MAX_SUBJECT_SEVERITIES

    client, _, _ = api
    assert GatewaySettings().max_subjects_in_flight_per_key == MAX_SUBJECT_SEVERITIES == 5000
    client.app.state.services.settings.max_subjects_in_flight_per_key = MAX_SUBJECT_SEVERITIES  # type: ignore[attr-defined]
    for body in (
        {"pathology": "HCM", "n": 250, "trajectory": 20},
        {"pathology": "HCM", "n": 5000},
    ):
        r = client.post("/synthesize", json=body, headers=A)
        assert r.status_code == 202, r.json()
        assert client.delete(f"/jobs/{r.json()['id']}", headers=A).status_code == 200  # frees the quota
    # One above: refused by the schema, naming the product and the limit (was the quota's 422 for
    # n = 100 x trajectory 20, the largest request the schema then allowed).
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 2500, "trajectory": 3}, headers=A)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "2500 x 3 = 7500" in r.json()["detail"]
    assert "limit of 5000 per job" in r.json()["detail"]
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 5000, "trajectory": 20}, headers=A)
    assert r.status_code == 422
    assert "quota" not in r.json()["detail"]


def test_a_key_at_its_stored_bytes_quota_is_refused_until_it_purges(
    api: tuple[TestClient, RecordingDispatcher, LocalStore],
) -> None:
    client, _, _ = api
    svc = client.app.state.services  # type: ignore[attr-defined]
    assert GatewaySettings().max_stored_bytes_per_key == 10 * 2**30
    svc.settings.max_stored_bytes_per_key = 1000
    job_id = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]
    svc.jobs.transition(job_id, JobState.RUNNING, stage="vae")
    svc.jobs.transition(job_id, JobState.SUCCEEDED, result={"files": [], "biomarkers": {}}, stored_bytes=1500)
    assert client.get(f"/jobs/{job_id}", headers=A).json()["stored_bytes"] == 1500
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A)
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "1500 bytes" in r.json()["detail"]
    assert "quota of 1000" in r.json()["detail"]
    assert r.headers["Retry-After"] == str(svc.settings.result_retention_s)  # retention frees it by then
    assert client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=B).status_code == 202
    assert client.delete(f"/jobs/{job_id}?purge=true", headers=A).status_code == 204
    assert client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).status_code == 202
