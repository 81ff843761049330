"""Gateway fixtures: an app over a Redis of the tests' own, local storage, and a recording dispatcher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.storage.local import LocalStore

KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"


class RecordingDispatcher:
    """Stands in for Celery: records what the gateway sends (the workers are tested on their own)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, dict[str, Any]]] = []
        self.cancelled: list[str] = []
        self.live = {"vae": 1, "spade": 1}
        self.fail = False

    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.submitted.append((job_id, request))

    def resume(self, job_id: str, stage: str) -> None:
        self.submitted.append((job_id, {"resume": stage}))

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def workers(self) -> dict[str, int]:
        return self.live

    def ping(self) -> None:
        if self.fail:
            raise ConnectionError("broker down")


@pytest.fixture
def api(
    redis_url: str, redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[TestClient, RecordingDispatcher, LocalStore]:
    # A registry of our own: the gateway only checks that a model version exists (it loads none).
    for kind in ("vae", "spade"):
        folder = tmp_path / "models" / kind / DEFAULT_VERSION
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"kind": kind, "config": {}}))
        (folder / "card.json").write_text(json.dumps({"kind": kind, "version": DEFAULT_VERSION}))
    monkeypatch.setenv("CARDIOSYNTH_MODELS", str(tmp_path / "models"))
    settings = GatewaySettings(
        redis_url=redis_url,
        job_prefix=redis_prefix,
        api_keys=SecretStr(f"{KEY_A},{KEY_B}"),
        max_queued_per_key=3,
        max_subjects_in_flight_per_key=200,  # small, for the quota tests' numbers (default: MAX_N)
        storage_dir=tmp_path / "store",
        signing_key=SecretStr("s" * 32),
        public_url="http://testserver",
    )
    dispatcher = RecordingDispatcher()
    store = LocalStore(tmp_path / "store", signing_key=b"s" * 32, base_url="http://testserver")
    app = create_app(settings, dispatcher, storage=store)
    return TestClient(app, raise_server_exceptions=False), dispatcher, store
