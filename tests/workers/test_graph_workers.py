"""The stage graph with real Redis and real Celery worker processes (issue 13): a job's chunks fan out
over two workers per queue; a worker SIGKILLed while it holds a chunk is replaced and the job still
ends with exactly the expected files, byte-identical to an undisturbed run with another chunk size;
a cancel in the middle of the fan-out stops the pending chunks and leaves no file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import torch

from cardiosynth.jobs.base import JobState
from cardiosynth.jobs.celery_app import make_celery
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.jobs.store import RedisJobStore
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.workers.settings import WorkerSettings

from .processes import start_worker, stop_workers

pytestmark = pytest.mark.slow

# One request for every run, so that runs with other chunk sizes can be compared file by file.
REQUEST = {"pathology": "HCM", "n": 4, "seed": 11, "model": "t0", "phases": ["ED"]}
FILES_PER_SUBJECT = 4  # ED image + label, provenance, preview
HASHES: dict[int, dict[str, str]] = {}  # chunk size -> relative output path -> SHA-256


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
        "CARDIOSYNTH_JOB_PREFIX": "graph",
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


Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """``start(queue, chunk_size=16)``: a solo-pool worker of ``queue``; all stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(queue: str, chunk_size: int = 16, visibility_s: int | None = None) -> subprocess.Popen[bytes]:
        extra = {"CARDIOSYNTH_CHUNK_SIZE": str(chunk_size)}
        if visibility_s is not None:
            extra["CARDIOSYNTH_VISIBILITY_TIMEOUT_S"] = str(visibility_s)
        proc = start_worker({**env, **extra}, queue, tmp_path / f"{queue}.log")
        started.append(proc)
        return proc

    yield start
    stop_workers(started)


def _setup(env: dict[str, str]) -> tuple[RedisJobStore, CeleryDispatcher, Path]:
    client = redis.Redis.from_url(env["CARDIOSYNTH_REDIS_URL"])
    store = RedisJobStore(client, prefix=env["CARDIOSYNTH_JOB_PREFIX"])
    app = make_celery(WorkerSettings(redis_url=env["CARDIOSYNTH_REDIS_URL"], visibility_timeout_s=5))
    return store, CeleryDispatcher(app, store), Path(env["CARDIOSYNTH_STORAGE_DIR"])


def _until(check: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _live(dispatcher: CeleryDispatcher, expected: dict[str, int]) -> None:
    _until(lambda: dispatcher.workers() == expected, f"workers {expected}")


def _outputs(storage: Path, job_id: str) -> dict[str, str]:
    """Relative path -> SHA-256 of the job's output files (no work files, no manifest)."""
    root = storage / "jobs" / job_id
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and "work" not in p.relative_to(root).parts
            and p.name != "manifest.json"}  # fmt: skip


def _tails(logs: Path) -> str:
    """The last lines of every worker log (what a failed job's assertion shows)."""
    return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                     for p in sorted(logs.glob("*.log")))  # fmt: skip


def _succeeded(store: RedisJobStore, job_id: str, logs: Path, timeout: float = 420) -> dict[str, object]:
    finished = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    _until(lambda: (j := store.get(job_id)) is not None and j.state in finished, "the job to finish", timeout)
    job = store.get(job_id)
    assert job is not None
    assert job.state is JobState.SUCCEEDED, (job.error, _tails(logs))
    assert job.result is not None
    return job.result


def test_chunks_fan_out_over_two_workers_per_queue(
    env: dict[str, str], workers: Start, tmp_path: Path
) -> None:
    store, dispatcher, storage = _setup(env)
    # No crash here, so no redelivery wanted: with the module's 5 s visibility timeout, a stats task
    # that outlasts it (its first run fits the statistics and the decoder calibration, 5-7 s on a
    # loaded machine) is handed to the second VAE worker too, which then sits out the fan-out.
    for queue in ("vae", "vae", "spade", "spade"):
        workers(queue, chunk_size=1, visibility_s=120)
    _live(dispatcher, {"vae": 2, "spade": 2})
    job, _ = store.create("owner", REQUEST)
    dispatcher.submit(job.id, REQUEST)
    result = _succeeded(store, job.id, tmp_path)
    chunks = result["chunks"]
    assert isinstance(chunks, list)
    by_kind: dict[str, set[str]] = {}
    for chunk in chunks:
        by_kind.setdefault(chunk["kind"], set()).add(chunk["worker"])
    assert sorted(c["index"] for c in chunks if c["kind"] == "vae") == [0, 1, 2, 3]
    assert len(by_kind["vae"]) == 2  # both VAE workers made chunks of the one job
    assert len(by_kind["spade"]) == 2  # and both SPADE workers
    files = result["files"]
    assert isinstance(files, list)
    outputs = _outputs(storage, job.id)
    assert len(files) == len(outputs) == REQUEST["n"] * FILES_PER_SUBJECT
    HASHES[1] = outputs
    done = store.get(job.id)
    assert done is not None
    assert done.progress["subjects"] == {"done": 4, "total": 4}


def test_a_worker_killed_while_holding_a_chunk_is_replaced_with_exactly_the_expected_files(
    env: dict[str, str], workers: Start, tmp_path: Path
) -> None:
    store, dispatcher, storage = _setup(env)
    workers("vae", chunk_size=3)  # chunks of 3 and 1 subjects
    victim = workers("spade", chunk_size=3)
    _live(dispatcher, {"vae": 1, "spade": 1})
    job, _ = store.create("owner", REQUEST)
    dispatcher.submit(job.id, REQUEST)

    def spade_held() -> bool:
        graph = store.graph(job.id)
        return graph is not None and any(kind == "spade" for kind, _ in graph.held)

    _until(spade_held, "a SPADE chunk to be held")
    victim.send_signal(signal.SIGKILL)  # mid-chunk: translating and storing its subjects
    victim.wait(timeout=10)
    workers("spade", chunk_size=3)  # the broker redelivers the unacknowledged chunk to it
    result = _succeeded(store, job.id, tmp_path)
    files = result["files"]
    assert isinstance(files, list)
    keys = [f["key"] for f in files]
    assert len(keys) == len(set(keys)) == REQUEST["n"] * FILES_PER_SUBJECT
    outputs = _outputs(storage, job.id)
    assert sorted(k.removeprefix(f"jobs/{job.id}/") for k in keys) == sorted(outputs)
    assert not list((storage / "jobs" / job.id).rglob("work/*"))
    if 1 in HASHES:  # byte-identical to the undisturbed run in chunks of 1 on four workers
        assert outputs == HASHES[1]


def test_a_cancel_mid_fan_out_stops_pending_chunks_and_leaves_no_file(
    env: dict[str, str], workers: Start
) -> None:
    store, dispatcher, storage = _setup(env)
    workers("vae", chunk_size=1)
    workers("spade", chunk_size=1)
    _live(dispatcher, {"vae": 1, "spade": 1})
    request = {**REQUEST, "n": 8, "seed": 12}
    job, _ = store.create("owner", request)
    dispatcher.submit(job.id, request)

    def stored_some() -> bool:
        job_now = store.get(job.id)
        return job_now is not None and job_now.progress.get("subjects", {}).get("done", 0) >= 1

    _until(stored_some, "a first chunk's subjects stored")
    store.transition(job.id, JobState.CANCELLED)  # what DELETE /jobs/{id} does, then it revokes
    dispatcher.cancel(job.id)
    broker = redis.Redis.from_url(env["CARDIOSYNTH_REDIS_URL"])
    _until(lambda: not broker.llen("vae") and not broker.llen("spade") and not broker.hlen("unacked"),
           "the queues to drain")  # fmt: skip
    time.sleep(1)
    cancelled = store.get(job.id)
    assert cancelled is not None
    assert (cancelled.state, cancelled.result) == (JobState.CANCELLED, None)
    graph = store.graph(job.id)
    assert graph is not None
    assert len(graph.done.get("spade", ())) < graph.plan.count  # stopped before the end
    assert not [p for p in (storage / "jobs" / job.id).rglob("*") if p.is_file()]
