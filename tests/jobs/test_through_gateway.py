"""The job stores through the gateway, for both stores: 50 simultaneous POSTs for one key are
accepted exactly up to the cap (issue 15, item 3); an idempotent retry is answered, not refused with
429, when the queue is full (item 10); a cancel removes what the job wrote (item 9)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.storage.local import LocalStore

KEY = "key-cap-0123456789"
CAP = 10


class NullDispatcher:
    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        pass

    def resume(self, job_id: str, stage: str) -> None:
        pass

    def cancel(self, job_id: str) -> None:
        pass

    def workers(self) -> dict[str, int]:
        return {"vae": 1, "spade": 1}

    def ping(self) -> None:
        pass


@pytest.fixture(params=["redis", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """A gateway over one of the stores, local storage in ``tmp_path / "store"``."""
    for kind in ("vae", "spade"):
        folder = tmp_path / "models" / kind / DEFAULT_VERSION
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"kind": kind, "config": {}}))
    monkeypatch.setenv("CARDIOSYNTH_MODELS", str(tmp_path / "models"))
    if request.param == "redis":
        stores: dict[str, Any] = {
            "redis_url": request.getfixturevalue("redis_url"),
            "job_prefix": request.getfixturevalue("redis_prefix"),
        }
    else:
        stores = {"job_store_url": f"sqlite:///{tmp_path / 'jobs.db'}"}
    settings = GatewaySettings(
        **stores,
        api_keys=SecretStr(KEY),
        max_queued_per_key=CAP,
        storage_dir=tmp_path / "store",
        signing_key=SecretStr("s" * 32),
    )
    storage = LocalStore(tmp_path / "store", signing_key=b"s" * 32)
    return TestClient(create_app(settings, NullDispatcher(), storage=storage), raise_server_exceptions=False)


def test_50_simultaneous_posts_accept_exactly_the_cap(client: TestClient) -> None:
    codes: Counter[int] = Counter()
    start = threading.Barrier(50)

    def post(i: int) -> None:
        start.wait()
        response = client.post("/synthesize", json={"pathology": "HCM", "n": 1, "seed": i},
                               headers={"X-API-Key": KEY})  # fmt: skip
        codes[response.status_code] += 1

    with client:
        threads = [threading.Thread(target=post, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        listed = client.get("/jobs", params={"state": "queued"}, headers={"X-API-Key": KEY}).json()
    assert codes == {202: CAP, 429: 50 - CAP}
    assert listed["total"] == CAP


def test_an_idempotent_retry_is_not_refused_when_the_queue_is_full(client: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    with client:
        first = client.post("/synthesize", json={"pathology": "HCM", "n": 1},
                            headers={**headers, "Idempotency-Key": "retry-me"})  # fmt: skip
        assert first.status_code == 202
        for seed in range(1, CAP):
            assert client.post("/synthesize", json={"pathology": "HCM", "n": 1, "seed": seed},
                               headers=headers).status_code == 202  # fmt: skip
        full = client.post("/synthesize", json={"pathology": "HCM", "n": 1, "seed": 99}, headers=headers)
        assert full.status_code == 429
        retry = client.post("/synthesize", json={"pathology": "HCM", "n": 1},
                            headers={**headers, "Idempotency-Key": "retry-me"})  # fmt: skip
    assert retry.status_code == 202
    assert retry.json()["id"] == first.json()["id"]


def test_a_cancel_removes_what_the_job_wrote(client: TestClient, tmp_path: Path) -> None:
    storage = LocalStore(tmp_path / "store", signing_key=b"s" * 32)
    headers = {"X-API-Key": KEY}
    with client:
        doomed = client.post("/synthesize", json={"pathology": "HCM", "n": 1}, headers=headers).json()["id"]
        kept = client.post("/synthesize", json={"pathology": "HCM", "n": 2}, headers=headers).json()["id"]
        for job_id in (doomed, kept):
            storage.put_bytes(f"jobs/{job_id}/work/labels.npz", b"x")
            storage.put_bytes(f"jobs/{job_id}/HCM_000/HCM_000_s1.00_ED.nii.gz", b"y")
        assert client.delete(f"/jobs/{doomed}", headers=headers).status_code == 200
    assert storage.list_keys(f"jobs/{doomed}/") == []
    assert len(storage.list_keys(f"jobs/{kept}/")) == 2
