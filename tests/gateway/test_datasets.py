"""``/datasets``: a dataset build as a job, through the gateway (recording dispatcher, real Redis), and
once through the embedded stack (its own gateway and worker processes, no Redis, no S3)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardiosynth.gateway.dataset_schemas import DatasetGroup, DatasetModels, DatasetRequest
from cardiosynth.jobs.base import JobState
from cardiosynth.storage.local import LocalStore
from tests.gateway.conftest import KEY_A, KEY_B, RecordingDispatcher

A = {"X-API-Key": KEY_A}
B = {"X-API-Key": KEY_B}
Api = tuple[TestClient, RecordingDispatcher, LocalStore]
TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "correlation": "latent",
    "pathologies": [
        {"pathology": "hcm", "n": 2, "severity": [0.5, 1.0]},
        {"pathology": "DCM", "n": 1, "severities": [0.5, 1.0], "correlation": "none"},
    ],
}


def test_submit_get_list_and_cancel_a_dataset(api: Api) -> None:
    client, dispatcher, store = api
    r = client.post("/datasets", json=TINY, headers=A)
    assert r.status_code == 202, r.json()
    job = r.json()
    assert r.headers["Location"] == f"/datasets/{job['id']}"
    assert job["kind"] == "dataset"
    assert job["state"] == "queued"
    assert job["queue_position"] == 0
    assert job["links"]["results"] == f"/datasets/{job['id']}/results"
    sent = dispatcher.submitted[0][1]
    assert sent["kind"] == "dataset"
    assert sent["format"] == "files"
    # As given (unset fields left out, so a group without its own correlation inherits the spec's).
    assert sent["spec"]["pathologies"][0] == {"pathology": "HCM", "n": 2, "severity": [0.5, 1.0]}
    assert sent["spec"]["pathologies"][1]["correlation"] == "none"
    stored = client.app.state.services.jobs.get(job["id"])  # type: ignore[attr-defined]
    assert stored.stage == "dataset"
    assert stored.weight == 2 + 1 * 2  # a range: one severity per subject; a list: each
    assert client.get(f"/datasets/{job['id']}", headers=A).json()["state"] == "queued"
    assert client.get(f"/jobs/{job['id']}", headers=A).json()["kind"] == "dataset"
    synth = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()
    assert synth["kind"] == "synthesize"
    assert client.get(f"/datasets/{synth['id']}", headers=A).status_code == 404  # not a dataset
    listed = client.get("/datasets", headers=A).json()
    assert listed["total"] == 1
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    assert client.get("/jobs", headers=A).json()["total"] == 2
    assert client.get("/datasets?state=succeeded", headers=A).json()["total"] == 0

    # Another key cannot see, cancel or download it.
    assert client.get(f"/datasets/{job['id']}", headers=B).status_code == 404
    assert client.delete(f"/datasets/{job['id']}", headers=B).status_code == 404
    assert client.get(f"/datasets/{job['id']}/results", headers=B).status_code == 404
    assert client.get("/datasets", headers=B).json()["total"] == 0

    # Cancelling removes what the worker stored so far.
    partial = f"jobs/{job['id']}/dataset/synthetic/HCM_000/provenance.json"
    store.put_bytes(partial, b"{}")
    r = client.delete(f"/datasets/{job['id']}", headers=A)
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"
    assert dispatcher.cancelled == [job["id"]]
    assert store.list_keys(f"jobs/{job['id']}/") == []
    assert client.delete(f"/datasets/{job['id']}", headers=A).status_code == 409
    assert client.get(f"/datasets/{job['id']}/results", headers=A).status_code == 409
    assert client.delete(f"/datasets/{job['id']}?purge=true", headers=A).status_code == 204
    assert client.get(f"/datasets/{job['id']}", headers=A).status_code == 404


def _group(**extra: Any) -> dict[str, Any]:
    return {"pathologies": [{"pathology": "HCM", "n": 1, **extra}]}


# (body, the field the 422 names); each is also refused by the spec module itself (see below).
BAD: list[tuple[dict[str, Any], str]] = [
    (_group(pathology="XYZ"), "pathologies.0.pathology"),
    (_group(n=0), "pathologies.0.n"),
    (_group(n=1001), "pathologies.0.n"),
    (_group(severity=1.5), "pathologies.0.severity"),
    (_group(severity=[0.9, 0.2]), "pathologies.0.severity"),
    (_group(severities=[0.5, 0.0]), "pathologies.0.severities"),
    (_group(severity=0.5, severities=[0.5]), "pathologies.0"),
    (_group(colour="red"), "pathologies.0.colour"),
    (_group(correlation="wild"), "pathologies.0.correlation"),
    (_group(phases=["ED", "ED"]), "pathologies.0.phases"),
    (_group(phases=["XX"]), "pathologies.0.phases.0"),
    (_group(ns=1), "pathologies.0.ns"),
    (_group(shift_residual=2.0), "pathologies.0.shift_residual"),
    (_group(seed=-1), "pathologies.0.seed"),
    (_group(territory="LAD"), "pathologies.0.territory"),
    ({**_group(), "territory": "LAD"}, "territory"),
    ({**_group(), "name": "../up"}, "name"),
    ({**_group(), "seed": 2**32}, "seed"),
    ({**_group(), "real_mode": "move"}, "real_mode"),
    ({**_group(), "models": {"vae": "nope"}}, "models.vae"),
    ({**_group(), "models": {"spade": "nope"}}, "models.spade"),
    ({"pathologies": []}, "pathologies"),
    ({"name": "x"}, "pathologies"),
]
API_ONLY: list[tuple[dict[str, Any], str]] = [
    ({**_group(), "format": "tarball"}, "format"),
    (_group(n=201), "pathologies"),  # above the per-key quota on subjects in flight: never accepted
    (_group(n=100, severities=[0.5, 0.75, 1.0]), "pathologies"),
]


@pytest.mark.parametrize(("body", "field"), BAD + API_ONLY)
def test_a_bad_spec_is_422_problem_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    client, dispatcher, _ = api
    r = client.post("/datasets", json=body, headers=A)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]
    assert dispatcher.submitted == []


@pytest.mark.parametrize(("body", "field"), [b for b in BAD if not b[1].startswith("models.")])
def test_the_spec_module_refuses_the_same_specs_at_the_same_field(body: dict[str, Any], field: str) -> None:
    from cardiosynth.export.spec import parse_spec

    with pytest.raises(ValueError, match="invalid dataset spec") as caught:
        parse_spec(body)
    message = str(caught.value)
    # The field itself, or (for the engine's own checks, which the spec runs per group) its group and
    # the option's name: "pathologies.0: ns must be at least 2".
    option = next(p for p in reversed(field.split(".")) if not p.isdigit())
    assert f"  {field}:" in message or ("pathologies.0: " in message and option in message), message


def test_the_api_schema_has_the_spec_modules_fields_and_what_it_accepts_builds() -> None:
    from cardiosynth.export.spec import DatasetSpec, GroupSpec, ModelSpec, parse_spec, spec_dict

    assert set(DatasetRequest.model_fields) - {"format"} == set(DatasetSpec.model_fields)
    assert set(DatasetGroup.model_fields) == set(GroupSpec.model_fields)
    assert set(DatasetModels.model_fields) == set(ModelSpec.model_fields)
    body = DatasetRequest.model_validate({**TINY, "territory": None, "ns": 16, "format": "zip"})
    spec = parse_spec(body.spec())
    assert spec.total_subjects == 3
    effective = spec_dict(spec)["pathologies"]
    assert [g["correlation"] for g in effective] == ["latent", "none"]  # inherited, own
    assert effective[0]["ns"] == 16


def test_a_datasets_subjects_count_against_the_per_key_quota(api: Api) -> None:
    client, _, _ = api
    assert (
        client.post(
            "/synthesize", json={"pathology": "HCM", "n": 10, "trajectory": 15}, headers=A
        ).status_code
        == 202
    )
    big = {
        "pathologies": [{"pathology": "DCM", "n": 30}, {"pathology": "RV", "n": 11, "severities": [0.5, 1.0]}]
    }
    r = client.post("/datasets", json=big, headers=A)  # 150 in flight + 52 > 200
    assert r.status_code == 429
    assert "150" in r.json()["detail"]
    assert "52" in r.json()["detail"]
    assert client.post("/datasets", json=big, headers=B).status_code == 202  # the quota is per key
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 100, "trajectory": 2}, headers=B)
    assert r.status_code == 429  # 52 + 200: the dataset's subjects count for /synthesize too
    assert "52" in r.json()["detail"]
    assert client.post("/synthesize", json={"pathology": "HCM", "n": 100}, headers=B).status_code == 202


def test_idempotency_keys(api: Api) -> None:
    client, dispatcher, _ = api
    first = client.post("/datasets", json=TINY, headers={**A, "Idempotency-Key": "ds-1"})
    again = client.post("/datasets", json=TINY, headers={**A, "Idempotency-Key": "ds-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert len(dispatcher.submitted) == 1
    other = client.post("/datasets", json={**TINY, "seed": 4}, headers={**A, "Idempotency-Key": "ds-1"})
    assert other.status_code == 422


def test_results_link_every_file_the_card_the_plot_and_the_archive(api: Api) -> None:
    client, _, store = api
    job_id = client.post("/datasets", json={**TINY, "format": "zip"}, headers=A).json()["id"]
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    files: list[dict[str, Any]] = []
    for path, extra in (
        ("dataset.json", {"kind": "card"}),
        ("biomarkers.png", {"kind": "plot"}),
        ("synthetic/HCM_000/HCM_000_s0.74_ED.nii.gz",
         {"kind": "image", "source": "synthetic", "subject": "HCM_000", "severity": "0.74", "phase": "ED"}),
        ("tiny.zip", {"kind": "archive"}),
    ):  # fmt: skip
        key = f"jobs/{job_id}/dataset/{path}"
        data = path.encode()
        store.put_bytes(key, data)
        digest = hashlib.sha256(data).hexdigest()
        files.append({"path": path, "key": key, "sha256": digest, "bytes": len(data), **extra})
    jobs.transition(job_id, JobState.RUNNING)
    result = {"kind": "dataset", "name": "tiny", "files": files, "biomarkers": {"HCM": {}},
              "requested": [], "made": {"synthetic": 3}, "models": {"vae": "v", "spade": "s"}}  # fmt: skip
    jobs.transition(job_id, JobState.SUCCEEDED, result=result)
    r = client.get(f"/datasets/{job_id}/results", headers=A)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["format"] == "zip"
    assert body["made"] == {"synthetic": 3}
    assert {"card", "plot", "archive"} <= set(body["links"])
    for f in body["files"]:
        got = client.get(f["url"].removeprefix("http://testserver"))
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == f["sha256"]
    card = client.get(body["links"]["card"].removeprefix("http://testserver"))
    assert card.content == b"dataset.json"
    # The generic results view lists the same files (a dataset-level file has no subject).
    generic = client.get(f"/jobs/{job_id}/results", headers=A).json()
    assert sorted(f["key"] for f in generic["files"]) == sorted(f["key"] for f in files)


# -- the embedded stack ------------------------------------------------------------------------------


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
    return data


@pytest.mark.slow
def test_a_tiny_spec_through_the_embedded_stack(
    phantom_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from cardiosynth.embedded import running_stack
    from cardiosynth.models.registry import save_model
    from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
    from cardiosynth.models.vae import LabelVAE, VAEConfig

    torch.manual_seed(0)
    models = tmp_path / "models"
    save_model(LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval(),
               models / "vae" / "t0", kind="vae", version="t0")  # fmt: skip
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4))
    save_model(spade.eval(), models / "spade" / "t0", kind="spade", version="t0")
    monkeypatch.setenv("CARDIOSYNTH_MODELS", str(models))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert "CARDIOSYNTH_REDIS_URL" not in os.environ
    spec = {
        "name": "tiny",
        "seed": 1,
        "models": {"vae": "t0", "spade": "t0"},
        "pathologies": [
            {"pathology": "HCM", "n": 2, "severity": [0.5, 1.0]},
            {"pathology": "DCM", "n": 1, "phases": ["ED"]},
        ],
        "format": "zip",
    }
    with running_stack(tmp_path / "state", data=phantom_root) as stack:
        status, job = stack.request("POST", "/datasets", spec)
        assert status == 202, job
        status, other = stack.request("POST", "/datasets", {**spec, "seed": 2})
        assert status == 202, other
        deadline = time.monotonic() + 400
        while job["state"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(1)
            _, job = stack.request("GET", f"/datasets/{job['id']}")
            if other["state"] == "queued":  # cancel the second while the first runs: it never starts
                status, other = stack.request("DELETE", f"/datasets/{other['id']}")
                assert status == 200
        assert job["state"] == "succeeded", job
        assert job["progress"]["subjects"] == {"done": 3, "total": 3}
        status, results = stack.request("GET", f"/datasets/{job['id']}/results")
        assert status == 200, results
        storage = stack.state / "storage"
        _, cancelled = stack.request("GET", f"/datasets/{other['id']}")
        assert cancelled["state"] == "cancelled"
        files = results["files"]
        synthetic = {f["subject"] for f in files if f["source"] == "synthetic"}
        assert synthetic == {"HCM_000", "HCM_001", "DCM_000"}  # exactly the subjects asked for
        images = [f for f in files if f["source"] == "synthetic" and f["kind"] in ("image", "label")]
        assert len(images) == 2 * 2 * 2 + 1 * 2  # HCM: ED/ES x image/label each; DCM: ED only
        assert results["made"]["synthetic"] == 3
        assert {"card", "readme", "checksums", "plot", "spec", "archive"} <= set(results["links"])
        by_path = {f["path"]: f for f in files}
        # Every stored file is what the card and SHA256SUMS say it is.
        lines = _download(results["links"]["checksums"]).decode().splitlines()
        sums = {path: digest for digest, path in (line.split("  ", 1) for line in lines)}
        card = json.loads(_download(results["links"]["card"]))
        assert card["made"]["synthetic"] == 3
        assert [g["n"] for g in card["made"]["groups"]] == [2, 1]
        for path, digest in sums.items():
            assert by_path[path]["sha256"] == digest
        for f in files:
            assert hashlib.sha256((storage / f["key"]).read_bytes()).hexdigest() == f["sha256"]
        assert _download(results["links"]["plot"]).startswith(b"\x89PNG")
        archive = zipfile.ZipFile(io.BytesIO(_download(results["links"]["archive"])))
        assert "tiny/dataset.json" in archive.namelist()
        assert "tiny/synthetic/DCM_000/DCM_000_s1.00_ED.nii.gz" in archive.namelist()
        assert not (storage / "jobs" / other["id"]).exists()  # the cancelled one left nothing


def test_the_dataset_list_pages_over_the_keys_other_jobs(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from cardiosynth.gateway.routes import datasets
    from cardiosynth.jobs.base import owner_id

    client, _, _ = api
    monkeypatch.setattr(datasets, "SCAN_PAGE", 2)  # several store pages for a few jobs
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    made = []
    for i in range(8):
        request = {"kind": "dataset", "spec": {"seed": i}} if i % 3 == 0 else {"pathology": "HCM", "n": 1}
        job, _ = jobs.create(owner_id(KEY_A), request, stage="dataset" if i % 3 == 0 else "vae")
        made.append((job.id, i % 3 == 0))
        time.sleep(0.002)  # distinct creation times: the list is newest first
    expected = [job_id for job_id, is_dataset in reversed(made) if is_dataset]
    assert len(expected) == 3
    page = client.get("/datasets?offset=1&limit=2", headers=A).json()
    assert page["total"] == 3
    assert [j["id"] for j in page["items"]] == expected[1:3]
    assert all(j["kind"] == "dataset" for j in page["items"])
