"""Broker stopped -> 503 from the gateway; it recovers when the broker returns. Uses a redis-server
of its own (stopped and restarted here), never the machine's."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.jobs.celery_app import make_celery
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.jobs.factory import open_job_store
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.storage.local import LocalStore
from tests.gateway.conftest import KEY_A

pytestmark = pytest.mark.slow


class OwnRedis:
    def __init__(self, binary: str, port: int) -> None:
        self.binary, self.port = binary, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs a redis-server binary to stop and restart")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = OwnRedis(binary, port)
    server.start()
    yield server
    server.stop()


def test_broker_down_is_503_and_recovers(
    own_redis: OwnRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for kind in ("vae", "spade"):
        (tmp_path / "models" / kind / DEFAULT_VERSION).mkdir(parents=True)
        (tmp_path / "models" / kind / DEFAULT_VERSION / "config.json").write_text("{}")
    monkeypatch.setenv("CARDIOSYNTH_MODELS", str(tmp_path / "models"))
    settings = GatewaySettings(redis_url=own_redis.url, api_keys=SecretStr(KEY_A), storage_dir=tmp_path / "s")
    liveness = open_job_store(settings.job_store(), prefix=settings.job_prefix)
    dispatcher = CeleryDispatcher(make_celery(settings, visibility_timeout_s=60), liveness)
    store = LocalStore(tmp_path / "s", signing_key=b"s" * 32)
    client = TestClient(create_app(settings, dispatcher, storage=store), raise_server_exceptions=False)
    headers = {"X-API-Key": KEY_A}
    body = {"pathology": "HCM", "n": 1}
    assert client.post("/synthesize", json=body, headers=headers).status_code == 202

    own_redis.stop()
    down = client.post("/synthesize", json=body, headers=headers)
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert down.headers["Retry-After"] == "5"
    assert client.get("/jobs", headers=headers).status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("unavailable")
    assert client.get("/healthz").status_code == 200  # alive, just not ready

    own_redis.start()  # an empty Redis on the same port: the gateway reconnects by itself
    deadline = time.monotonic() + 20
    while (status := client.post("/synthesize", json=body, headers=headers).status_code) != 202:
        assert status == 503
        assert time.monotonic() < deadline, "no recovery within 20 s"
        time.sleep(0.5)
    assert client.get("/jobs", headers=headers).json()["total"] == 1
