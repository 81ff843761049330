"""One contract, both job stores (Redis on the tests' own redis-server, and SQLite): what the gateway
and the workers rely on, including the faults of issue 15 (records recreated by a heartbeat, a queue
cap that was not atomic, jobs waiting for a queue reaped as "worker lost")."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from cardiosynth.jobs.base import (
    IdempotencyConflictError,
    JobState,
    JobStore,
    QueueFullError,
    TransitionRefusedError,
)
from cardiosynth.jobs.factory import open_job_store
from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.jobs.store import RedisJobStore


def _drop(store: JobStore, job_id: str) -> None:
    """Lose a job's record the way an expiry or a Redis restart without persistence does."""
    if isinstance(store, RedisJobStore):
        store.r.delete(store._k("job", job_id))
    else:
        assert isinstance(store, SqliteJobStore)
        store._db().execute("DELETE FROM jobs WHERE id = ?", (job_id,))


def test_lifecycle_positions_listing(store: JobStore) -> None:
    a, created = store.create("alice", {"pathology": "HCM", "n": 5})
    b, _ = store.create("alice", {"pathology": "DCM", "n": 1})
    c, _ = store.create("bob", {"pathology": "RV", "n": 1})
    assert created
    assert [store.queue_position(j.id) for j in (a, b, c)] == [0, 1, 2]
    assert store.count_queued("alice") == 2
    running = store.transition(a.id, JobState.RUNNING, stage="vae")
    assert running.heartbeat is not None
    assert store.queue_position(a.id) is None
    assert store.queue_position(b.id) == 0
    assert store.update(a.id, progress={"decode": {"done": 1, "total": 2}}, timings={"vae": 0.5})
    got = store.get(a.id)
    assert got is not None
    assert got.progress == {"decode": {"done": 1, "total": 2}}
    assert got.timings == {"vae": 0.5}
    done = store.transition(a.id, JobState.SUCCEEDED, result={"files": []})
    assert done.result == {"files": []}
    with pytest.raises(TransitionRefusedError, match="succeeded; cannot become cancelled"):
        store.transition(a.id, JobState.CANCELLED)
    assert not store.update(a.id, progress={"late": 1})  # ignored once terminal
    final = store.get(a.id)
    assert final is not None
    assert final.progress == {"decode": {"done": 1, "total": 2}}
    page, total = store.list_jobs("alice")
    assert (total, [j.id for j in page]) == (2, [b.id, a.id])  # newest first
    queued, n_queued = store.list_jobs("alice", state=JobState.QUEUED)
    assert (n_queued, [j.id for j in queued]) == (1, [b.id])
    assert store.get("nope") is None
    with pytest.raises(KeyError):
        store.transition("nope", JobState.RUNNING)


def test_a_heartbeat_never_recreates_a_job_whose_record_is_gone(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 1})
    store.transition(job.id, JobState.RUNNING, stage="vae")
    assert store.heartbeat(job.id, "vae")
    _drop(store, job.id)
    assert not store.heartbeat(job.id, "vae")
    assert not store.update(job.id, progress={"decode": {"done": 1, "total": 1}})
    assert store.get(job.id) is None  # gone, and reported as gone: never a half record
    with pytest.raises(KeyError):
        store.transition(job.id, JobState.SUCCEEDED)
    assert store.reap(1, now=time.time() + 1000) == []


def test_a_partial_redis_hash_reads_as_gone(redis_url: str, redis_prefix: str) -> None:
    """What the old heartbeat left behind (a hash holding only ``heartbeat``) is no KeyError."""
    store = RedisJobStore(redis.Redis.from_url(redis_url), prefix=redis_prefix)
    store.r.hset(store._k("job", "half"), "heartbeat", "1.0")
    assert store.get("half") is None


def test_the_queue_cap_holds_under_50_simultaneous_creates(store: JobStore) -> None:
    cap, outcomes = 10, Counter[str]()
    start = threading.Barrier(50)

    def create(i: int) -> None:
        start.wait()
        try:
            store.create("alice", {"n": 1, "seed": i}, max_queued=cap)
            outcomes["created"] += 1
        except QueueFullError:
            outcomes["full"] += 1

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes == {"created": cap, "full": 50 - cap}
    assert store.count_queued("alice") == cap
    assert store.count_queued("bob") == 0
    store.create("bob", {"n": 1}, max_queued=cap)  # the cap is per key


def test_an_idempotent_retry_is_answered_even_when_the_queue_is_full(store: JobStore) -> None:
    first, created = store.create("alice", {"n": 1}, idempotency_key="k", max_queued=1)
    again, created_again = store.create("alice", {"n": 1}, idempotency_key="k", max_queued=1)
    assert created
    assert not created_again
    assert again.id == first.id
    with pytest.raises(QueueFullError):
        store.create("alice", {"n": 2}, idempotency_key="other", max_queued=1)
    with pytest.raises(IdempotencyConflictError, match="different body"):
        store.create("alice", {"n": 2}, idempotency_key="k", max_queued=5)
    other, created_other = store.create("bob", {"n": 1}, idempotency_key="k")  # keys are per owner
    assert created_other
    assert other.id != first.id


def test_a_key_whose_job_is_gone_creates_a_new_job_in_both_stores(store: JobStore) -> None:
    first, _ = store.create("alice", {"n": 1}, idempotency_key="k")
    _drop(store, first.id)
    again, created = store.create("alice", {"n": 1}, idempotency_key="k")
    assert created
    assert again.id != first.id
    assert store.create("alice", {"n": 1}, idempotency_key="k") == (again, False)


def test_idempotency_keys_are_stored_hashed(store: JobStore) -> None:
    store.create("alice", {"n": 1}, idempotency_key="client-secret-key")
    if isinstance(store, RedisJobStore):
        stored = [k.decode() for k in store.r.scan_iter(f"{store.prefix}:idem:*")]
    else:
        assert isinstance(store, SqliteJobStore)
        stored = [r["key"] for r in store._db().execute("SELECT key FROM idempotency")]
    assert len(stored) == 1
    assert "client-secret-key" not in stored[0]


def test_a_job_waiting_for_the_next_queue_is_queued_there_and_never_reaped(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 1})
    store.transition(job.id, JobState.RUNNING, stage="vae")
    assert store.heartbeat(job.id, "vae")
    assert not store.heartbeat(job.id, "spade")  # only the stage a worker holds beats
    store.update(job.id, timings={"vae": 1.0})
    waiting = store.transition(job.id, JobState.QUEUED, stage="spade")  # VAE done, SPADE queue busy
    assert (waiting.state, waiting.stage, waiting.heartbeat) == (JobState.QUEUED, "spade", None)
    assert store.queue_position(job.id) == 0
    assert store.count_queued("alice") == 1
    assert not store.heartbeat(job.id, "vae")  # a late beat of the finished stage changes nothing
    assert store.reap(60, now=time.time() + 3600) == []  # an hour in line: not "worker lost"
    got = store.get(job.id)
    assert got is not None
    assert (got.state, got.stage, got.timings) == (JobState.QUEUED, "spade", {"vae": 1.0})
    store.transition(job.id, JobState.RUNNING, stage="spade")
    assert store.heartbeat(job.id, "spade")
    assert store.queue_position(job.id) is None
    assert store.reap(60, now=time.time() + 3600) == [job.id]  # held and silent: reaped
    reaped = store.get(job.id)
    assert reaped is not None
    assert reaped.state is JobState.FAILED
    assert reaped.error is not None
    assert reaped.error["title"] == "worker lost"


def test_worker_liveness_expires_without_beats(store: JobStore) -> None:
    assert store.live_workers() == {"vae": 0, "spade": 0}
    store.worker_beat("vae", "vae@a", 30)
    store.worker_beat("vae", "vae@b", 0.5)
    store.worker_beat("spade", "spade@a", 30)
    store.worker_beat("vae", "vae@a", 30)  # a beat refreshes, never counts twice
    assert store.live_workers() == {"vae": 2, "spade": 1}
    time.sleep(0.8)
    assert store.live_workers() == {"vae": 1, "spade": 1}
    assert store.worker_live("vae", "vae@a")
    assert not store.worker_live("vae", "vae@b")  # expired
    assert not store.worker_live("spade", "vae@a")  # not of that queue
    store.worker_gone("spade", "spade@a")
    assert store.live_workers() == {"vae": 1, "spade": 0}
    assert not store.worker_live("spade", "spade@a")


def test_finished_jobs_past_retention_are_listed_once_and_marked_expired(store: JobStore) -> None:
    done, _ = store.create("alice", {"n": 1})
    live, _ = store.create("alice", {"n": 2})
    store.transition(done.id, JobState.RUNNING, stage="vae")
    store.transition(done.id, JobState.SUCCEEDED, result={"files": []})
    store.transition(live.id, JobState.RUNNING, stage="vae")
    now = time.time()
    assert store.finished_before(now - 3600) == []  # finished just now: kept
    old = store.finished_before(now + 1)
    assert [j.id for j in old] == [done.id]  # the running job is never a candidate
    assert not store.mark_expired(live.id, now)  # nor can it be marked
    assert store.mark_expired(done.id, now)
    assert not store.mark_expired(done.id, now + 5)  # once
    got = store.get(done.id)
    assert got is not None
    assert (got.state, got.expired_at) == (JobState.SUCCEEDED, pytest.approx(now))
    assert store.finished_before(now + 1) == []
    assert not store.mark_expired("nope", now)


def test_purge_deletes_a_finished_record_and_refuses_a_live_one(store: JobStore) -> None:
    done, _ = store.create("alice", {"n": 1}, idempotency_key="k1")
    live, _ = store.create("alice", {"n": 2})
    store.transition(done.id, JobState.CANCELLED)
    with pytest.raises(TransitionRefusedError, match="cancel it before purging"):
        store.purge(live.id)
    assert store.get(live.id) is not None
    assert store.purge(done.id)
    assert store.get(done.id) is None
    assert not store.purge(done.id)  # gone already
    page, total = store.list_jobs("alice")
    assert (total, [j.id for j in page]) == (1, [live.id])
    again, created = store.create("alice", {"n": 1}, idempotency_key="k1")  # the key is free again
    assert created
    assert again.id != done.id


def test_the_subject_quota_counts_queued_and_running_weight_and_frees_on_finish(store: JobStore) -> None:
    from cardiosynth.jobs.base import SubjectQuotaError, subject_weight

    assert subject_weight({"n": 5, "trajectory": 4}) == 20
    assert subject_weight({"n": 5, "severity": 0.5}) == 5
    with pytest.raises(ValueError, match="n=0"):
        subject_weight({"n": 0})
    a, _ = store.create("alice", {"n": 6}, weight=6, max_subjects=10, idempotency_key="a")
    assert a.weight == 6
    got = store.get(a.id)
    assert got is not None
    assert got.weight == 6
    store.transition(a.id, JobState.RUNNING, stage="vae")  # running still counts
    with pytest.raises(SubjectQuotaError, match=r"6 subjects x severities already in flight.*5.*quota of 10"):
        store.create("alice", {"n": 5}, weight=5, max_subjects=10)
    # A retry of the accepted job is answered, quota or not (the lookup comes first).
    again, created = store.create("alice", {"n": 6}, weight=6, max_subjects=10, idempotency_key="a")
    assert (again.id, created) == (a.id, False)
    store.create("bob", {"n": 10}, weight=10, max_subjects=10)  # another key's quota
    b, _ = store.create("alice", {"n": 4}, weight=4, max_subjects=10)  # exactly at the quota
    store.transition(a.id, JobState.SUCCEEDED, result={"files": []})
    store.create("alice", {"n": 6}, weight=6, max_subjects=10)  # a's weight is free again
    with pytest.raises(SubjectQuotaError):
        store.create("alice", {"n": 1}, weight=1, max_subjects=10)
    store.transition(b.id, JobState.CANCELLED)
    store.create("alice", {"n": 1}, weight=1, max_subjects=10)


def test_the_subject_quota_holds_under_30_simultaneous_creates(store: JobStore) -> None:
    from cardiosynth.jobs.base import SubjectQuotaError

    outcomes: Counter[str] = Counter()
    barrier = threading.Barrier(30)

    def one() -> None:
        barrier.wait()
        try:
            store.create("alice", {"n": 3}, weight=3, max_subjects=20)
            outcomes["ok"] += 1
        except SubjectQuotaError:
            outcomes["quota"] += 1

    threads = [threading.Thread(target=one) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == Counter({"ok": 6, "quota": 24})  # 6 x 3 = 18 <= 20 < 21


def _succeed(store: JobStore, owner: str, stored_bytes: int) -> str:
    job, _ = store.create(owner, {"n": 1, "tag": stored_bytes})
    store.transition(job.id, JobState.RUNNING, stage="vae")
    store.transition(job.id, JobState.SUCCEEDED, result={"files": []}, stored_bytes=stored_bytes)
    return job.id


def test_the_stored_bytes_quota_counts_succeeded_files_until_expiry_or_purge(store: JobStore) -> None:
    from cardiosynth.jobs.base import StoredBytesQuotaError

    first = _succeed(store, "alice", 600)
    got = store.get(first)
    assert got is not None
    assert got.stored_bytes == 600
    queued, _ = store.create("alice", {"n": 2}, max_stored_bytes=1000, idempotency_key="q")  # 600 < 1000
    second = _succeed(store, "alice", 500)
    failed, _ = store.create("alice", {"n": 3})
    store.transition(failed.id, JobState.FAILED, error={"title": "x"}, stored_bytes=999)  # not counted
    with pytest.raises(StoredBytesQuotaError, match=r"1100 bytes .* quota of 1000.*purge"):
        store.create("alice", {"n": 4}, max_stored_bytes=1000)
    # A retry of an accepted job is answered over the quota; another key has its own.
    again, created = store.create("alice", {"n": 2}, max_stored_bytes=1000, idempotency_key="q")
    assert (again.id, created) == (queued.id, False)
    store.create("bob", {"n": 1}, max_stored_bytes=1000)
    store.create("alice", {"n": 4}, max_stored_bytes=2000)  # a larger quota: room
    assert store.mark_expired(first, time.time())  # retention deleted its files: 500 left
    assert not store.mark_expired(first, time.time())  # released once only
    store.create("alice", {"n": 5}, max_stored_bytes=600)
    with pytest.raises(StoredBytesQuotaError, match="500 bytes"):
        store.create("alice", {"n": 6}, max_stored_bytes=500)  # at the quota is over it
    assert store.purge(second)
    store.create("alice", {"n": 6}, max_stored_bytes=1)  # nothing stored any more


def test_a_finished_redis_record_outlives_the_default_retention(redis_url: str, redis_prefix: str) -> None:
    store = open_job_store(redis_url, prefix=redis_prefix)
    assert isinstance(store, RedisJobStore)
    job, _ = store.create("alice", {"n": 1})
    assert store.r.ttl(store._k("job", job.id)) <= store.ttl_s
    store.transition(job.id, JobState.CANCELLED)
    assert store.r.ttl(store._k("job", job.id)) > store.ttl_s  # kept past retention (7 d = ttl_s)
