"""The job pipeline end to end: real Redis, real Celery worker processes for both queues, local storage."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import torch

from cardiosynth.jobs.base import JobState
from cardiosynth.jobs.celery_app import make_celery
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.jobs.reaper import redeliver_or_fail
from cardiosynth.jobs.store import RedisJobStore
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.workers.settings import WorkerSettings

from .processes import start_worker, stop_workers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(phantom_root: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    torch.manual_seed(0)
    models = tmp_path_factory.mktemp("models")
    save_model(LabelVAE(VAEConfig()).eval(), models / "vae" / "t0", kind="vae", version="t0")
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4))
    save_model(spade.eval(), models / "spade" / "t0", kind="spade", version="t0")
    return {
        **os.environ,
        "CARDIOSYNTH_REDIS_URL": redis_url,
        "CARDIOSYNTH_JOB_PREFIX": "pipe",
        "CARDIOSYNTH_STORAGE_DIR": str(tmp_path_factory.mktemp("store")),
        "CARDIOSYNTH_SIGNING_KEY": "k" * 32,
        "CARDIOSYNTH_DATA_DIR": str(phantom_root),
        "CARDIOSYNTH_MODEL_ROOT": str(models),
        "CARDIOSYNTH_HEARTBEAT_S": "1",
        "CARDIOSYNTH_VISIBILITY_TIMEOUT_S": "5",
        "CARDIOSYNTH_LIVENESS_S": "0.5",
        "CARDIOSYNTH_LIVENESS_TTL_S": "3",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(queue: str) -> subprocess.Popen[bytes]:
        proc = start_worker(env, queue, tmp_path / f"{queue}.log")
        started.append(proc)
        return proc

    yield start
    stop_workers(started)


def _wait(store: RedisJobStore, job_id: str, states: set[JobState], timeout: float = 180) -> JobState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job is not None and job.state in states:
            return job.state
        time.sleep(0.5)
    job = store.get(job_id)
    raise AssertionError(f"job {job_id} still {job.state if job else None} after {timeout} s")


def _setup(env: dict[str, str]) -> tuple[RedisJobStore, CeleryDispatcher, Path]:
    client = redis.Redis.from_url(env["CARDIOSYNTH_REDIS_URL"])
    store = RedisJobStore(client, prefix=env["CARDIOSYNTH_JOB_PREFIX"])
    app = make_celery(WorkerSettings(redis_url=env["CARDIOSYNTH_REDIS_URL"], visibility_timeout_s=5))
    return store, CeleryDispatcher(app, store), Path(env["CARDIOSYNTH_STORAGE_DIR"])


def _succeed(
    store: RedisJobStore, dispatcher: CeleryDispatcher, request: dict[str, object]
) -> tuple[str, list[str]]:
    """Submit ``request``, wait for success, return the job id and its sorted output keys."""
    job, _ = store.create("owner", request)
    dispatcher.submit(job.id, request)
    assert _wait(store, job.id, {JobState.SUCCEEDED, JobState.FAILED}) is JobState.SUCCEEDED
    done = store.get(job.id)
    assert done is not None
    assert done.result is not None
    return job.id, sorted(f["key"] for f in done.result["files"])


def _on_disk(storage: Path, job_id: str) -> list[str]:
    """The job's output files in storage (not its work files, nor the manifest listing them)."""
    return sorted(p.relative_to(storage).as_posix() for p in (storage / "jobs" / job_id).rglob("*")
                  if p.is_file() and "/work/" not in p.as_posix() and p.name != "manifest.json")  # fmt: skip


def test_a_job_runs_through_both_queues(env: dict[str, str], workers: Callable[[str], object]) -> None:
    store, dispatcher, storage = _setup(env)
    workers("vae")
    workers("spade")
    request = {"pathology": "HCM", "n": 2, "seed": 0, "model": "t0", "phases": ["ED", "ES"]}
    job_id, keys = _succeed(store, dispatcher, request)
    assert keys == _on_disk(storage, job_id)
    done = store.get(job_id)
    assert done is not None
    assert done.result is not None
    assert len(keys) == 2 * 6  # per subject: ED/ES image + label, provenance, preview
    assert set(done.result["biomarkers"]) == {"HCM_000", "HCM_001"}
    assert {"vae", "spade"} <= set(done.timings)


def test_a_failing_stage_fails_the_job_and_stops_the_chain(
    env: dict[str, str], workers: Callable[[str], object]
) -> None:
    store, dispatcher, storage = _setup(env)
    workers("vae")
    request = {"pathology": "HCM", "n": 1, "model": "t0", "base_subjects": ["patient999"]}
    job, _ = store.create("owner", request)
    dispatcher.submit(job.id, request)
    assert _wait(store, job.id, {JobState.FAILED, JobState.SUCCEEDED}) is JobState.FAILED
    failed = store.get(job.id)
    assert failed is not None
    assert failed.error is not None
    assert "patient999" in failed.error["detail"]
    assert not (storage / "jobs" / job.id).exists()


def test_a_worker_killed_mid_job_is_replaced_without_duplicate_outputs(
    env: dict[str, str], workers: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    store, dispatcher, storage = _setup(env)
    victim = workers("vae")
    workers("spade")
    request = {"pathology": "DCM", "n": 2, "seed": 4, "model": "t0"}
    job, _ = store.create("owner", request)
    dispatcher.submit(job.id, request)
    assert _wait(store, job.id, {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED}) is JobState.RUNNING
    victim.send_signal(signal.SIGKILL)  # mid-stage: loading models and statistics takes seconds
    victim.wait(timeout=10)
    running = store.get(job.id)
    assert running is not None
    assert running.state is JobState.RUNNING
    workers("vae")  # the replacement gets the unacknowledged task after the visibility timeout
    # Generous: a fresh worker's start, the whole VAE stage again and the SPADE stage, on 2 shared cores.
    assert _wait(store, job.id, {JobState.SUCCEEDED, JobState.FAILED}, timeout=420) is JobState.SUCCEEDED
    done = store.get(job.id)
    assert done is not None
    assert done.result is not None
    keys = [f["key"] for f in done.result["files"]]
    assert len(keys) == len(set(keys)) == 2 * 6
    assert sorted(keys) == _on_disk(storage, job.id)


def test_a_job_with_s3_storage_over_http(
    env: dict[str, str], workers: Callable[[str], subprocess.Popen[bytes]], s3_endpoint: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from cardiosynth.storage.s3 import S3Store

    s3_env = {
        "CARDIOSYNTH_STORAGE": "s3",
        "CARDIOSYNTH_S3_BUCKET": "pipeline",
        "CARDIOSYNTH_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_endpoint}",
        "CARDIOSYNTH_S3_PUBLIC_ENDPOINT_URL": f"http://localhost:{s3_endpoint}",
        "CARDIOSYNTH_S3_ACCESS_KEY": "test",
        "CARDIOSYNTH_S3_SECRET_KEY": "test-secret",
    }
    env.update(s3_env)
    s3 = S3Store("pipeline", endpoint_url=f"http://127.0.0.1:{s3_endpoint}", public_endpoint_url=f"http://localhost:{s3_endpoint}",
                 access_key="test", secret_key="test-secret")  # fmt: skip
    s3.ensure_bucket()
    try:
        store, dispatcher, _ = _setup(env)
        workers("vae")
        workers("spade")
        job_id, keys = _succeed(store, dispatcher, {"pathology": "RV", "n": 1, "seed": 2, "model": "t0"})
        assert keys == [k for k in s3.list_keys(f"jobs/{job_id}") if "/work/" not in k
                        and not k.endswith("/manifest.json")]  # fmt: skip
        assert len(keys) == 6
        assert list(s3.list_keys("stats"))  # class statistics cached in the object store
        url = s3.download_url(keys[0], 60)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == s3.get_bytes(keys[0])
    finally:
        for name in s3_env:
            env.pop(name)


def test_cancel_revokes_and_no_outputs_appear(
    env: dict[str, str], workers: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    store, dispatcher, storage = _setup(env)
    workers("vae")  # no SPADE worker yet: the job's one chunk waits between its VAE and SPADE halves
    request = {"pathology": "HCM", "n": 1, "seed": 9, "model": "t0"}
    job, _ = store.create("owner", request)
    dispatcher.submit(job.id, request)
    deadline = time.monotonic() + 120
    while not (storage / "jobs" / job.id / "work" / "vae-00000.npz").is_file():
        assert time.monotonic() < deadline, "the VAE stage did not finish"
        time.sleep(0.5)
    store.transition(job.id, JobState.CANCELLED)  # what DELETE /jobs/{id} does, then it revokes
    dispatcher.cancel(job.id)
    broker = redis.Redis.from_url(env["CARDIOSYNTH_REDIS_URL"])
    assert broker.llen("spade") == 1  # the SPADE task waits in its queue
    workers("spade")
    deadline = time.monotonic() + 120
    while broker.llen("spade") or broker.hlen("unacked"):  # consumed and acknowledged (discarded)
        assert time.monotonic() < deadline, "the SPADE worker never took the task"
        time.sleep(0.5)
    time.sleep(1)
    cancelled = store.get(job.id)
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.result is None
    assert _on_disk(storage, job.id) == []


def test_a_busy_worker_is_live_and_a_job_waiting_for_spade_is_queued_not_reaped(
    env: dict[str, str], workers: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    """Issue 15 items 4 and 6: the only VAE worker (solo pool) counts as live while it runs a stage;
    the job's SPADE chunks then wait for their queue (no SPADE worker) holding no lease, so the job
    is not reaped however long it waits, and it succeeds once a SPADE worker comes."""
    store, dispatcher, _ = _setup(env)
    workers("vae")
    deadline = time.monotonic() + 120
    while dispatcher.workers()["vae"] == 0:
        assert time.monotonic() < deadline, "the VAE worker never beat its liveness"
        time.sleep(0.2)
    request = {"pathology": "DCM", "n": 2, "seed": 3, "model": "t0"}
    job, _ = store.create("owner", request)
    dispatcher.submit(job.id, request)
    live_while_running: list[int] = []
    deadline = time.monotonic() + 180

    def vae_done() -> bool:
        graph = store.graph(job.id)
        return graph is not None and len(graph.done.get("vae", ())) == graph.plan.count and not graph.held

    while (now := store.get(job.id)) is not None and not vae_done():
        assert now.state not in (JobState.FAILED, JobState.SUCCEEDED), now.error
        assert time.monotonic() < deadline, f"the VAE stage did not finish: {now.state}"
        if now.state is JobState.RUNNING:
            live_while_running.append(dispatcher.workers()["vae"])
        time.sleep(0.2)
    assert live_while_running, "never saw the VAE stage running"
    assert min(live_while_running) == 1  # busy, yet live: /readyz stays 200
    assert dispatcher.workers()["spade"] == 0
    time.sleep(3)
    assert store.reap(2) == []  # waiting 3 s for a queue with a 2 s staleness limit: not "worker lost"
    waiting = store.get(job.id)
    assert waiting is not None
    assert (waiting.state, waiting.stage) == (JobState.RUNNING, "graph")  # started, waiting for SPADE
    assert redis.Redis.from_url(env["CARDIOSYNTH_REDIS_URL"]).llen("spade") == 1  # its one chunk
    workers("spade")
    assert _wait(store, job.id, {JobState.SUCCEEDED, JobState.FAILED}) is JobState.SUCCEEDED
    assert dispatcher.workers() == {"vae": 1, "spade": 1}


def test_the_reaper_redelivers_a_killed_workers_stage_without_the_broker(
    env: dict[str, str], workers: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    """Issue 15 item 8: the broker would redeliver only after an hour (visibility timeout); the reaper
    sees the held stage go silent (6 s here: six missed 1 s heartbeats, so that a replacement worker
    slowed by a loaded machine is not taken for dead too, which would count a second attempt), queues
    it again and the job succeeds on a new worker, with each output file once."""
    env["CARDIOSYNTH_VISIBILITY_TIMEOUT_S"] = "3600"
    try:
        store, dispatcher, storage = _setup(env)
        victim = workers("vae")
        workers("spade")
        request = {"pathology": "DCM", "n": 2, "seed": 6, "model": "t0"}
        job, _ = store.create("owner", request)
        dispatcher.submit(job.id, request)
        finished = {JobState.SUCCEEDED, JobState.FAILED}
        assert _wait(store, job.id, {JobState.RUNNING, *finished}) is JobState.RUNNING
        victim.send_signal(signal.SIGKILL)  # mid-stage: loading models and statistics takes seconds
        victim.wait(timeout=10)
        workers("vae")
        deadline = time.monotonic() + 240
        while (now := store.get(job.id)) is not None and now.state not in finished:
            assert time.monotonic() < deadline, f"still {now.state} at stage {now.stage}"
            redeliver_or_fail(store, dispatcher, 6.0)  # what the gateway's reaper does
            time.sleep(0.5)
        done = store.get(job.id)
        assert done is not None
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.attempts == 1
        assert done.result is not None
        keys = [f["key"] for f in done.result["files"]]
        assert len(keys) == len(set(keys)) == 2 * 6
        assert sorted(keys) == _on_disk(storage, job.id)
        work = [p for p in (storage / "jobs" / job.id).rglob("*") if p.is_file() and "work" in p.parts]
        assert work == []  # the intermediate is removed once every output is stored
    finally:
        env["CARDIOSYNTH_VISIBILITY_TIMEOUT_S"] = "5"
