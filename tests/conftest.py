"""Shared fixtures: a tiny phantom data set (one subject per group), made once per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardiosynth.data.phantom import generate_dataset
from cardiosynth.models.slices import SliceSet, load_slices


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (scripts/test.sh runs one test process per core), each process takes its
    share of the cores for torch's intra-op threads instead of all of them (oversubscribed threads
    spin and slow every process)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files with a ``slow`` test first (each file's tests kept together and in order), so that
    pytest-xdist's processes start the long ones early and finish together, not one long file last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session", autouse=True)
def few_sampling_calibration_end_points() -> Iterator[None]:
    """The decoder's sampling calibration over 2 end points per class and phase, not 128 (and the
    motion calibration over 2 subjects), in this
    process and the stacks it starts: the tests' models are untrained, so nearly every pixel is one
    the fit must keep and revisit (seconds per class with 128). Tests of the fit pass their own
    number."""
    from cardiosynth.synthesis import engine

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "SAMPLING_CALIBRATION_SUBJECTS", 2)
        patch.setenv("CARDIOSYNTH_SAMPLING_CALIBRATION_SUBJECTS", "2")
        # and the motion calibration over 2 synthetic subjects, not 64
        patch.setattr(engine, "MOTION_CALIBRATION_SUBJECTS", 2)
        patch.setenv("CARDIOSYNTH_MOTION_CALIBRATION_SUBJECTS", "2")
        yield


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom")
    generate_dataset(root, n_subjects=5, seed=0, workers=1)
    return root


@pytest.fixture
def embedded_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Untrained VAE and SPADE saved as version ``t0`` under ``tmp_path / "models"`` (seed 0), made the
    model root of the processes an embedded stack starts, with one thread each (two cores, three
    processes)."""
    import torch

    from cardiosynth.models.registry import save_model
    from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
    from cardiosynth.models.vae import LabelVAE, VAEConfig

    torch.manual_seed(0)
    models = tmp_path / "models"
    save_model(LabelVAE(VAEConfig()).eval(), models / "vae" / "t0", kind="vae", version="t0")
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4))
    save_model(spade.eval(), models / "spade" / "t0", kind="spade", version="t0")
    monkeypatch.setenv("CARDIOSYNTH_MODELS", str(models))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return models


@pytest.fixture(scope="session")
def phantom_slices(phantom_root: Path) -> SliceSet:
    """The fixture subjects preprocessed and cut into 2D slices (about 110 of 128 x 128)."""
    return load_slices(phantom_root)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis of the tests' own (``redis-server`` on a free port, stopped at the end), so no test
    touches the machine's broker; without the binary, ``$REDIS_URL`` or 127.0.0.1:6379 (database 15,
    14, ... per pytest-xdist process: the pipeline tests' queue names are fixed)."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
        url = os.environ.get("REDIS_URL", f"redis://127.0.0.1:6379/{15 - worker % 16}")
        try:
            redis.Redis.from_url(url).ping()
        except redis.ConnectionError:
            # In CI the service tests are the point: a missing Redis fails the run, never skips it.
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI: no redis-server binary and nothing answers at {url}")
            pytest.skip(f"no redis-server binary and nothing answers at {url}")
        yield url
        return
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of one test's own."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[int]:
    """An S3 endpoint over HTTP: moto's server on a free port (no MinIO binary is available here)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield port
    server.stop()
