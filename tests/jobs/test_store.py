from __future__ import annotations

import hashlib
import time

import pytest
import redis

from cardiosynth.jobs.store import (
    IdempotencyConflictError,
    IdempotencyInProgressError,
    JobState,
    JobStore,
    TransitionRefusedError,
    owner_id,
    request_hash,
)


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url), prefix=redis_prefix)


def test_lifecycle_queue_positions_and_listing(store: JobStore) -> None:
    a, created = store.create("alice", {"pathology": "HCM", "n": 5})
    assert created
    b, _ = store.create("alice", {"pathology": "DCM", "n": 1})
    c, _ = store.create("bob", {"pathology": "RV", "n": 1})
    assert [store.queue_position(j.id) for j in (a, b, c)] == [0, 1, 2]
    assert store.count_queued("alice") == 2
    running = store.transition(a.id, JobState.RUNNING)
    assert running.heartbeat is not None
    assert store.queue_position(a.id) is None
    assert store.queue_position(b.id) == 0
    store.update(a.id, progress={"decode": {"done": 1, "total": 2}}, timings={"decode": 0.5})
    got = store.get(a.id)
    assert got is not None
    assert got.progress == {"decode": {"done": 1, "total": 2}}
    done = store.transition(a.id, JobState.SUCCEEDED, result={"files": 3})
    assert done.result == {"files": 3}
    with pytest.raises(TransitionRefusedError, match="succeeded; cannot become cancelled"):
        store.transition(a.id, JobState.CANCELLED)
    store.update(a.id, progress={"late": 1})  # ignored once terminal
    final = store.get(a.id)
    assert final is not None
    assert final.progress == {"decode": {"done": 1, "total": 2}}
    page, total = store.list_jobs("alice")
    assert total == 2
    assert [j.id for j in page] == [b.id, a.id]  # newest first
    queued, n_queued = store.list_jobs("alice", state=JobState.QUEUED)
    assert n_queued == 1
    assert queued[0].id == b.id
    assert store.list_jobs("bob", offset=1)[0] == []
    assert store.list_jobs("bob", offset=10**20) == ([], 1)  # beyond Redis's integer range
    assert store.get("nope") is None
    with pytest.raises(KeyError):
        store.transition("nope", JobState.RUNNING)


def test_idempotency_semantics(store: JobStore) -> None:
    body = {"pathology": "HCM", "n": 5}
    first, created = store.create("alice", body, idempotency_key="k1")
    again, created_again = store.create("alice", {"n": 5, "pathology": "HCM"}, idempotency_key="k1")
    assert created
    assert not created_again
    assert again.id == first.id
    with pytest.raises(IdempotencyConflictError, match="different body"):
        store.create("alice", {"pathology": "DCM", "n": 5}, idempotency_key="k1")
    other, created_other = store.create("bob", body, idempotency_key="k1")  # keys are per owner
    assert created_other
    assert other.id != first.id
    # A first request that has claimed the key but not finished creating the job: 409.
    store.r.set(f"{store.prefix}:idem:carol:" + hashlib.sha256(b"k2").hexdigest(),
                f"abc {request_hash(body)} pending")  # fmt: skip
    with pytest.raises(IdempotencyInProgressError):
        store.create("carol", body, idempotency_key="k2")


def test_reaper_fails_stale_running_jobs_only(store: JobStore) -> None:
    stale, _ = store.create("alice", {"n": 1})
    fresh, _ = store.create("alice", {"n": 2})
    store.transition(stale.id, JobState.RUNNING)
    store.transition(fresh.id, JobState.RUNNING)
    later = time.time() + 120
    store.r.hset(f"{store.prefix}:job:{fresh.id}", "heartbeat", repr(later - 5))
    assert store.reap(60, now=later) == [stale.id]
    failed = store.get(stale.id)
    assert failed is not None
    assert failed.state is JobState.FAILED
    assert failed.error is not None
    assert failed.error["title"] == "worker lost"
    still = store.get(fresh.id)
    assert still is not None
    assert still.state is JobState.RUNNING
    assert store.reap(60, now=later) == []


def test_owner_ids_hide_keys() -> None:
    assert owner_id("secret-key") != "secret-key"
    assert owner_id("secret-key") == owner_id("secret-key")
    assert request_hash({"a": 1, "b": 2}) == request_hash({"b": 2, "a": 1})
