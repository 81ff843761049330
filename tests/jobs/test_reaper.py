"""The reaper over both stores: a held stage gone silent is redelivered (queued at that stage again,
its task sent again) up to ``max_attempts`` times, then the job fails as "worker lost"; jobs that
wait for a queue or beat in time are left alone (issue 15, item 8)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cardiosynth.jobs.base import JobState, JobStore
from cardiosynth.jobs.factory import open_job_store
from cardiosynth.jobs.reaper import redeliver_or_fail
from cardiosynth.storage.local import LocalStore


class Resumes:
    def __init__(self) -> None:
        self.resumed: list[tuple[str, str]] = []

    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        pass

    def resume(self, job_id: str, stage: str) -> None:
        self.resumed.append((job_id, stage))

    def cancel(self, job_id: str) -> None:
        pass

    def workers(self) -> dict[str, int]:
        return {}

    def ping(self) -> None:
        pass


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    if request.param == "redis":
        return open_job_store(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    return open_job_store(f"sqlite:///{tmp_path / 'jobs.db'}")


def test_a_silent_stage_is_redelivered_then_failed_after_max_attempts(store: JobStore) -> None:
    dispatcher = Resumes()
    silent, _ = store.create("alice", {"n": 1})
    other, _ = store.create("alice", {"n": 2})
    waiting, _ = store.create("alice", {"n": 3})
    store.transition(silent.id, JobState.RUNNING, stage="spade")
    store.transition(other.id, JobState.RUNNING, stage="vae")
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=2) == ([], [])  # all fresh
    redelivered, failed = redeliver_or_fail(store, dispatcher, 60, max_attempts=2, now=time.time() + 100)
    assert (sorted(redelivered), failed) == (sorted([silent.id, other.id]), [])
    again = store.get(silent.id)
    assert again is not None
    assert (again.state, again.stage, again.attempts) == (JobState.QUEUED, "spade", 1)
    assert (silent.id, "spade") in dispatcher.resumed
    assert (other.id, "vae") in dispatcher.resumed
    assert store.get(waiting.id) is not None
    assert (waiting.id, "vae") not in dispatcher.resumed  # queued, never held: never redelivered
    store.transition(silent.id, JobState.RUNNING, stage="spade")  # a new worker takes it, then dies
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=2, now=time.time() + 100)[0] == [silent.id]
    store.transition(silent.id, JobState.RUNNING, stage="spade")  # and the next one dies too
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=2, now=time.time() + 100) == (
        [],
        [silent.id],
    )
    gone = store.get(silent.id)
    assert gone is not None
    assert gone.state is JobState.FAILED
    assert gone.error is not None
    assert gone.error["title"] == "worker lost"
    assert [r for r in dispatcher.resumed if r[0] == silent.id] == [(silent.id, "spade")] * 2


def test_a_job_failed_by_the_reaper_leaves_no_files(store: JobStore, tmp_path: Path) -> None:
    storage = LocalStore(tmp_path / "files", signing_key=b"s" * 32)
    job, _ = store.create("alice", {"n": 1})
    store.transition(job.id, JobState.RUNNING, stage="spade")
    storage.put_bytes(f"jobs/{job.id}/DCM_000/DCM_000_s1.00_ED.nii.gz", b"partial")
    storage.put_bytes("jobs/other/DCM_000/DCM_000_s1.00_ED.nii.gz", b"kept")
    later = time.time() + 100
    outcome = redeliver_or_fail(store, Resumes(), 60, max_attempts=0, now=later, storage=storage)
    assert outcome == ([], [job.id])
    assert storage.list_keys(f"jobs/{job.id}/") == []
    assert storage.list_keys("jobs/other/") == ["jobs/other/DCM_000/DCM_000_s1.00_ED.nii.gz"]


def test_max_attempts_must_be_non_negative(store: JobStore) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        redeliver_or_fail(store, Resumes(), 60, max_attempts=-1)


def test_retention_deletes_old_finished_jobs_files_and_marks_them_expired(
    store: JobStore, tmp_path: Path
) -> None:
    from cardiosynth.jobs.reaper import expire_results

    storage = LocalStore(tmp_path / "store", signing_key=b"k" * 32, base_url="http://x")
    old, _ = store.create("alice", {"n": 1})
    live, _ = store.create("alice", {"n": 2})
    for job in (old, live):
        storage.put_bytes(f"jobs/{job.id}/a.nii.gz", b"data")
    store.transition(old.id, JobState.RUNNING, stage="vae")
    store.transition(old.id, JobState.SUCCEEDED, result={"files": []})
    assert expire_results(store, storage, 3600) == []  # too young
    assert storage.list_keys(f"jobs/{old.id}/")
    assert expire_results(store, storage, 3600, now=time.time() + 7200) == [old.id]
    assert storage.list_keys(f"jobs/{old.id}/") == []
    assert storage.list_keys(f"jobs/{live.id}/")  # a queued job keeps its files
    got = store.get(old.id)
    assert got is not None
    assert got.expired_at is not None
    assert expire_results(store, storage, 3600, now=time.time() + 7200) == []  # once
    with pytest.raises(ValueError, match="retention_s"):
        expire_results(store, storage, 0)


def test_a_graph_job_has_only_its_silent_chunks_redelivered(store: JobStore) -> None:
    from cardiosynth.jobs.base import ChunkPlan

    dispatcher = Resumes()
    job, _ = store.create("alice", {"n": 4})
    store.plan_chunks(job.id, ChunkPlan.of(4, 1))
    store.take_chunk(job.id, "stats", 0, "a:1:x", 60)
    store.finish_chunk(job.id, "stats", 0, "a:1:x", 1.0, "a")
    store.take_chunk(job.id, "vae", 0, "a:1:y", 60)
    store.take_chunk(job.id, "spade", 2, "b:2:z", 60)
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=1) == ([], [])  # all beat in time
    later = time.time() + 100
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=1, now=later) == ([job.id], [])
    # The finished stats task is not sent again; the two held, silent chunks are.
    assert sorted(dispatcher.resumed) == [(job.id, "spade:2"), (job.id, "vae:0")]
    again = store.get(job.id)
    assert again is not None
    assert (again.state, again.attempts) == (JobState.RUNNING, 1)  # still running: its other chunks go on
    store.take_chunk(job.id, "vae", 0, "c:3:w", 60)  # the redelivery is taken, and its worker dies too
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=1, now=later) == ([], [job.id])
    failed = store.get(job.id)
    assert failed is not None
    assert failed.state is JobState.FAILED


@pytest.mark.parametrize("leased", [True, False], ids=["lease-without-plan", "running-without-lease"])
def test_a_graph_job_whose_stats_worker_died_before_planning_is_redelivered(
    store: JobStore, leased: bool
) -> None:
    """CI stop 38: a stats worker killed right after taking its task left a job that no reaper pass
    saw as stale (no plan yet, so no lease was looked at; in the Redis store the job becomes running
    a moment before the lease is written). It goes back to the queue with its stats task sent again,
    and waiting there for a worker is not "worker lost"."""
    from cardiosynth.queues import GRAPH_STAGE

    dispatcher = Resumes()
    job, _ = store.create("alice", {"n": 2})
    if leased:
        assert store.take_chunk(job.id, "stats", 0, "a:1:x", 60) == "taken"
    else:  # the Redis store's window between the job's transition and its lease
        store.transition(job.id, JobState.RUNNING, stage=GRAPH_STAGE)
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=1) == ([], [])  # fresh: left alone
    later = time.time() + 100
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=1, now=later) == ([job.id], [])
    assert dispatcher.resumed == [(job.id, "stats")]
    queued = store.get(job.id)
    assert queued is not None
    assert (queued.state, queued.stage, queued.attempts) == (JobState.QUEUED, GRAPH_STAGE, 1)
    assert redeliver_or_fail(store, dispatcher, 60, max_attempts=1, now=later + 100) == ([], [])
    # The redelivery is taken by a new worker (the dead lease is no obstacle) and the job runs on.
    assert store.take_chunk(job.id, "stats", 0, "b:2:y", 60) == "taken"
    running = store.get(job.id)
    assert running is not None
    assert (running.state, running.stage) == (JobState.RUNNING, GRAPH_STAGE)
