from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.jobs.store import (
    IdempotencyConflictError,
    JobState,
    TransitionRefusedError,
    open_job_store,
)


def test_lifecycle_listing_and_positions(tmp_path: Path) -> None:
    store = open_job_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    assert isinstance(store, SqliteJobStore)
    a, _ = store.create("alice", {"n": 1})
    b, _ = store.create("alice", {"n": 2})
    assert [store.queue_position(a.id), store.queue_position(b.id)] == [0, 1]
    store.transition(a.id, JobState.RUNNING)
    assert store.queue_position(a.id) is None
    assert store.queue_position(b.id) == 0
    store.update(a.id, progress={"decode": {"done": 1, "total": 1}})
    store.transition(a.id, JobState.SUCCEEDED, result={"files": []})
    with pytest.raises(TransitionRefusedError):
        store.transition(a.id, JobState.CANCELLED)
    got = store.get(a.id)
    assert got is not None
    assert got.result == {"files": []}
    assert got.progress == {"decode": {"done": 1, "total": 1}}
    assert store.count_queued("alice") == 1
    page, total = store.list_jobs("alice", state=JobState.SUCCEEDED)
    assert total == 1
    assert page[0].id == a.id
    store.ping()
    with pytest.raises(ValueError, match="unsupported job store"):
        open_job_store("memcached://x")


def test_idempotency_and_reaper(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    first, created = store.create("alice", {"n": 1}, idempotency_key="k")
    again, created_again = store.create("alice", {"n": 1}, idempotency_key="k")
    assert created
    assert not created_again
    assert again.id == first.id
    with pytest.raises(IdempotencyConflictError):
        store.create("alice", {"n": 2}, idempotency_key="k")
    store.transition(first.id, JobState.RUNNING)
    assert store.reap(60, now=time.time() + 120) == [first.id]
    reaped = store.get(first.id)
    assert reaped is not None
    assert reaped.state is JobState.FAILED


def _create(path: str, key: str, out: multiprocessing.Queue[str]) -> None:
    job, _ = SqliteJobStore(Path(path)).create("alice", {"n": 1}, idempotency_key=key)
    out.put(job.id)


def test_concurrent_processes_share_one_job_per_idempotency_key(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    SqliteJobStore(Path(path))
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_create, args=(path, "same", out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    ids = {out.get(timeout=10) for _ in procs}
    assert len(ids) == 1
