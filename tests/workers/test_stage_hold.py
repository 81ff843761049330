"""How a delivered stage task decides to run (fast: a SQLite job store, no broker, no worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardiosynth.jobs.base import Job, JobState
from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.workers import runtime, tasks
from cardiosynth.workers.runtime import JobCancelledError


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SqliteJobStore:
    jobs = SqliteJobStore(tmp_path / "jobs.db")
    monkeypatch.setattr(runtime, "jobs", lambda: jobs)
    return jobs


def _job(store: SqliteJobStore, job_id: str) -> Job:
    job = store.get(job_id)
    assert job is not None
    return job


def test_a_queued_stage_is_taken_and_a_live_holder_is_left_alone(store: SqliteJobStore) -> None:
    job, _ = store.create("alice", {"n": 1})
    assert tasks._hold(_job(store, job.id), "vae")
    held = _job(store, job.id)
    assert (held.state, held.stage) == (JobState.RUNNING, "vae")
    assert not tasks._hold(held, "vae")  # a duplicate delivery while the holder beats
    assert tasks._hold(held, "vae", retry=True)  # this task's own retry takes it back at once
    assert not tasks._hold(held, "spade")  # the next stage's task before this one is done: not yet
    assert _job(store, held.id).stage == "vae"


def test_a_stage_whose_holder_went_silent_is_taken_over(store: SqliteJobStore) -> None:
    job, _ = store.create("alice", {"n": 1})
    store.transition(job.id, JobState.RUNNING, stage="vae")
    store._db().execute("UPDATE jobs SET heartbeat = heartbeat - 3600 WHERE id = ?", (job.id,))
    assert tasks._hold(_job(store, job.id), "vae")


def test_a_late_delivery_of_a_finished_stage_is_skipped(store: SqliteJobStore) -> None:
    job, _ = store.create("alice", {"n": 1})
    store.transition(job.id, JobState.RUNNING, stage="vae")
    store.transition(job.id, JobState.QUEUED, stage="spade")
    assert not tasks._hold(_job(store, job.id), "vae")
    waiting = _job(store, job.id)
    assert (waiting.state, waiting.stage) == (JobState.QUEUED, "spade")  # untouched


def test_a_cancelled_job_stops_the_stage(store: SqliteJobStore) -> None:
    job, _ = store.create("alice", {"n": 1})
    stale = _job(store, job.id)
    store.transition(job.id, JobState.CANCELLED)
    with pytest.raises(JobCancelledError):
        tasks._hold(stale, "vae")
