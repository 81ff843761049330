"""docker-compose.yml: checked by `docker compose config` where the client has the plugin, and always
structurally (no Docker engine is needed for either)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_stack_shape() -> None:
    services = _compose()["services"]
    assert {"redis", "minio", "minio-init", "gateway", "worker-vae", "worker-spade", "worker-vae-cpu",
            "worker-spade-cpu"} <= set(services)  # fmt: skip
    for name in ("redis", "minio", "gateway", "worker-vae", "worker-spade"):
        assert "healthcheck" in services[name], name
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    for name, queue in (("worker-vae", "vae"), ("worker-spade", "spade")):
        worker = services[name]
        assert worker["command"][:2] == ["-Q", queue]
        assert worker["environment"]["WORKER_QUEUE"] == queue
        assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        assert worker["profiles"] == ["gpu"]
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
        cpu = services[f"{name}-cpu"]
        assert "deploy" not in cpu
        assert cpu["profiles"] == ["cpu"]
    env = services["gateway"]["environment"]
    assert env["CARDIOSYNTH_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["CARDIOSYNTH_S3_PUBLIC_ENDPOINT_URL"].endswith("http://localhost:9000}")
    for dockerfile in ("docker/Dockerfile.gateway", "docker/Dockerfile.worker", "docker/Dockerfile"):
        assert (ROOT / dockerfile).is_file()
    assert "torch" not in (ROOT / "docker/Dockerfile.gateway").read_text().split("RUN")[1]


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed on this machine")
    result = subprocess.run(
        [docker, "compose", "--profile", "gpu", "--profile", "cpu", "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, env={"CARDIOSYNTH_API_KEYS": "k", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
