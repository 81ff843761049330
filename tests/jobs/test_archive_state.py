"""The archive state on a job, both job stores: recorded only on a succeeded, unexpired job (never a
record created), claimed once however many requests race, left alone by transitions, gone with a purge."""

from __future__ import annotations

import threading

import pytest

from cardiosynth.jobs.archive import BUILDING, FAILED, LIVE, PENDING, READY, record, request_archive
from cardiosynth.jobs.base import JobState, JobStore


def _succeeded(store: JobStore) -> str:
    job, _ = store.create("alice", {"pathology": "HCM", "n": 1})
    store.transition(job.id, JobState.RUNNING, stage="vae")
    store.transition(job.id, JobState.SUCCEEDED, result={"files": []}, stored_bytes=10)
    return job.id


def test_only_a_succeeded_unexpired_job_records_an_archive(store: JobStore) -> None:
    live, _ = store.create("alice", {"pathology": "HCM", "n": 1})
    assert store.set_archive(live.id, record(PENDING)) == (None, False)
    assert store.set_archive("no-such-job", record(PENDING)) == (None, False)
    assert store.get("no-such-job") is None  # no stray record made
    job_id = _succeeded(store)
    before = store.get(job_id)
    assert before is not None
    assert before.archive is None
    recorded, written = store.set_archive(job_id, record(READY, bytes=10240, sha256="ab"))
    assert written
    assert recorded is not None
    assert recorded["state"] == READY
    after = store.get(job_id, result=False)
    assert after is not None
    assert after.archive == recorded
    assert after.updated == before.updated  # retention counts from the finish, not from the archive
    listed, _ = store.list_jobs("alice")
    assert [j.archive for j in listed if j.id == job_id] == [recorded]
    store.mark_expired(job_id, 1.0)
    assert store.set_archive(job_id, record(BUILDING)) == (None, False)


def test_requests_claim_one_build_and_a_failed_one_is_claimed_again(store: JobStore) -> None:
    job_id = _succeeded(store)
    sent: list[int] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        request_archive(store, job_id, lambda: sent.append(1))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 1  # eight requests at once: one build queued
    for state in (BUILDING, READY):
        store.set_archive(job_id, record(state))
        recorded, queued = request_archive(store, job_id, lambda: sent.append(1))
        assert not queued
        assert recorded is not None
        assert recorded["state"] == state
    store.set_archive(job_id, record(FAILED, error="disk full"))
    recorded, queued = request_archive(store, job_id, lambda: sent.append(1))
    assert queued
    assert recorded is not None
    assert recorded["state"] == PENDING
    assert len(sent) == 2
    assert set(LIVE) == {PENDING, BUILDING, READY}


def test_a_send_that_fails_leaves_the_archive_failed_and_retryable(store: JobStore) -> None:
    job_id = _succeeded(store)

    def down() -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        request_archive(store, job_id, down)
    job = store.get(job_id)
    assert job is not None
    assert job.archive is not None
    assert job.archive["state"] == FAILED
    assert "ConnectionError" in job.archive["error"]
    assert request_archive(store, job_id, lambda: None)[1]


def test_a_purge_removes_the_archive_state_with_the_job(store: JobStore) -> None:
    job_id = _succeeded(store)
    store.set_archive(job_id, record(READY))
    assert store.purge(job_id)
    assert store.get(job_id) is None
    assert store.set_archive(job_id, record(READY)) == (None, False)
    assert store.get(job_id) is None


def test_unknown_states_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'done'"):
        record("done")
