"""docker-compose.yml and its overrides: checked against the compose-spec schema (shared/tools/
compose-check, where the checkout has it), by `docker compose config` where the client has the plugin,
and always structurally. No Docker engine is needed; the stack itself is booted by
scripts/compose-smoke.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ("docker-compose.local.yml", "docker-compose.moto.yml", "docker-compose.smoke.yml")
# The compose-spec checker lives outside the repository: named by CARDIOSYNTH_COMPOSE_CHECK, else
# beside the checkout (../shared/tools), else at the machine's shared folder (a clone elsewhere, as CI
# makes, has no ../shared).
COMPOSE_CHECK_PLACES = (
    ROOT.parent / "shared" / "tools" / "compose-check",
    Path("/work/shared/tools/compose-check"),
)
BUILT = ("gateway", "worker-vae", "worker-spade", "worker-vae-cpu", "worker-spade-cpu", "phantom")


def _load(name: str = "docker-compose.yml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def _docker_compose() -> str:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed on this machine")
    return docker


def test_stack_shape() -> None:
    services = _load()["services"]
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
    # Unset API keys stop `up` at interpolation with a message naming the variable, not a crash loop.
    assert env["CARDIOSYNTH_API_KEYS"].startswith("${CARDIOSYNTH_API_KEYS:?")
    # The bucket is created idempotently (a second `up` keeps it and its objects).
    assert "--ignore-existing" in services["minio-init"]["entrypoint"][-1]
    # Jobs (Redis, append-only) and outputs (MinIO) live in named volumes that `down` keeps.
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "minio-data:/data" in services["minio"]["volumes"]
    assert "--appendonly" in services["redis"]["command"]


def test_images_build_offline_from_the_wheelhouse() -> None:
    services = _load()["services"]
    for name in BUILT:
        build = services[name]["build"]
        assert build["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-python:3.11-slim}", name
        assert build["network"] == "none", name  # nothing but the wheelhouse can be installed
        dockerfile = (ROOT / build["dockerfile"]).read_text()
        assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile
        # Every install reads the wheelhouse only (PIP_NO_INDEX / PIP_FIND_LINKS in the build stage).
        assert "PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels" in dockerfile, name
        # A "# syntax=" frontend image would be pulled from a registry.
        assert not any(line.startswith("# syntax=") for line in dockerfile.splitlines()), name
    gateway = (ROOT / "docker/Dockerfile.gateway").read_text()
    assert "requirements-gateway.txt" in gateway
    assert "requirements-worker.txt" not in gateway
    wanted = (ROOT / "docker/requirements-gateway.txt").read_text().split()
    assert "torch" not in wanted
    assert "monai" not in wanted
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore.index("*") < ignore.index("!docker")
    assert "!services" in ignore


def test_overrides_change_only_what_they_say() -> None:
    local = _load("docker-compose.local.yml")["services"]
    assert local["redis"] == {"image": "cardiosynth/redis:7"}
    assert all(
        local[name]["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-cardiosynth/python:3.11}"
        for name in BUILT
    )
    moto = _load("docker-compose.moto.yml")["services"]
    assert set(moto) == {"minio", "minio-init"}
    assert moto["minio"]["build"]["dockerfile"] == "docker/Dockerfile.moto"
    smoke = _load("docker-compose.smoke.yml")["services"]
    for name, service in smoke.items():
        assert service["network_mode"] == "host", name
    # Host networking on 127.0.0.1 only, and never the machine's own Redis port.
    assert "127.0.0.1" in smoke["redis"]["command"]
    assert "6379" not in smoke["redis"]["command"]
    assert "127.0.0.1" in smoke["minio"]["command"]
    assert "127.0.0.1" in smoke["gateway"]["command"]
    # Workers read a small phantom mounted read-only (made once by the script), not the default
    # phantom generated during the first job.
    for name in ("worker-vae-cpu", "worker-spade-cpu"):
        assert smoke[name]["environment"]["CARDIOSYNTH_DATA_DIR"] == "/data"
        [mount] = smoke[name]["volumes"]
        assert mount.startswith("${SMOKE_DATA_DIR:?"), mount
        assert mount.endswith(":/data:ro"), mount


def find_compose_check(env: str | None, places: tuple[Path, ...] = COMPOSE_CHECK_PLACES) -> Path | None:
    """The checker: the path named by ``env`` (which must exist), else the first of ``places`` there."""
    if env:
        named = Path(env)
        if not named.is_file():
            raise ValueError(f"CARDIOSYNTH_COMPOSE_CHECK={env!r} is not a file")
        return named
    return next((place for place in places if place.is_file()), None)


def _compose_check() -> Path:
    found = find_compose_check(os.environ.get("CARDIOSYNTH_COMPOSE_CHECK"))
    if found is None:
        places = " or ".join(map(str, COMPOSE_CHECK_PLACES))
        pytest.skip(f"no compose-check: set CARDIOSYNTH_COMPOSE_CHECK or put it at {places}")
    return found


def test_find_compose_check_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "compose-check", tmp_path / "b" / "compose-check"
    assert find_compose_check(None, (first, second)) is None
    second.parent.mkdir()
    second.write_text("")
    assert find_compose_check(None, (first, second)) == second
    first.parent.mkdir()
    first.write_text("")
    assert find_compose_check(None, (first, second)) == first
    named = tmp_path / "named"
    named.write_text("")
    assert find_compose_check(str(named), (first, second)) == named
    # A name that points nowhere is a mistake to report, not a reason to skip silently.
    with pytest.raises(ValueError, match="missing"):
        find_compose_check(str(tmp_path / "missing"), (first, second))


@pytest.mark.parametrize("name", ["docker-compose.yml", *OVERRIDES])
def test_compose_spec_schema(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(_compose_check()), name], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_check_refuses_a_broken_file(tmp_path: Path) -> None:
    # The schema check above can fail: an unknown key and a dangling depends_on are reported.
    broken = {"services": {"a": {"image": "x", "depends_on": ["b"], "restart_policy": "always"}}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [sys.executable, str(_compose_check()), str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "unknown service 'b'" in result.stdout


def _config(docker: str, *args: str, keys: str | None = "k") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": os.environ.get("HOME", "/root")}
    # The smoke override mounts the workers' data from SMOKE_DATA_DIR (required there).
    env["SMOKE_DATA_DIR"] = "/nonexistent/smoke-phantom"
    if keys is not None:
        env["CARDIOSYNTH_API_KEYS"] = keys
    return subprocess.run([docker, "compose", *args], cwd=ROOT, capture_output=True, text=True, env=env)


def test_docker_compose_config() -> None:
    docker = _docker_compose()
    result = _config(docker, "--profile", "gpu", "--profile", "cpu", "config", "-q")
    assert result.returncode == 0, result.stderr
    files = [arg for name in ("docker-compose.yml", *OVERRIDES) for arg in ("-f", name)]
    result = _config(docker, *files, "--profile", "cpu", "config", "-q")
    assert result.returncode == 0, result.stderr


def test_docker_compose_up_without_api_keys_names_them() -> None:
    result = _config(_docker_compose(), "config", "-q", keys=None)
    assert result.returncode != 0
    assert "CARDIOSYNTH_API_KEYS" in result.stderr
