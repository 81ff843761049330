"""The stage graph's fan-in ledger, one contract over both job stores (issue 13): a plan recorded once,
leases per task (taken, held, taken back by its own process, taken over when stale), fan-in counts that
a redelivered chunk does not inflate, progress rebuilt atomically from the ledger, and a finished or
gone job answering "gone" to every task."""

from __future__ import annotations

import threading
import time

import pytest

from cardiosynth.jobs.base import ChunkPlan, JobState, JobStore
from cardiosynth.queues import GRAPH_STAGE


def test_a_chunk_plan_cuts_subjects_and_refuses_nonsense() -> None:
    plan = ChunkPlan.of(35, 16)
    assert (plan.count, [len(plan.bounds(i)) for i in range(plan.count)]) == (3, [16, 16, 3])
    assert plan.bounds(2) == range(32, 35)
    with pytest.raises(ValueError, match="chunk 3"):
        plan.bounds(3)
    with pytest.raises(ValueError, match="got 10 and 0"):
        ChunkPlan.of(10, 0)


def test_the_first_plan_wins_and_progress_starts_at_zero(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 5})
    assert store.plan_chunks(job.id, ChunkPlan.of(5, 2)) == ChunkPlan(3, 2, 5)
    assert store.plan_chunks(job.id, ChunkPlan.of(5, 5)) == ChunkPlan(3, 2, 5)  # another worker's setting
    got = store.get(job.id)
    assert got is not None
    assert got.progress["subjects"] == {"done": 0, "total": 5}
    assert got.progress["encode"] == {"done": 0, "total": 3}
    assert got.progress["stats"] == {"done": 0, "total": 1}


def test_leases_taken_held_retried_and_taken_over(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 2})
    store.plan_chunks(job.id, ChunkPlan.of(2, 1))
    assert store.take_chunk(job.id, "vae", 0, "w1:100:a", 30) == "taken"
    running = store.get(job.id)
    assert running is not None
    assert (running.state, running.stage) == (JobState.RUNNING, GRAPH_STAGE)
    assert store.queue_position(job.id) is None
    assert store.take_chunk(job.id, "vae", 0, "w2:200:b", 30) == "held"  # a duplicate while w1 beats
    assert store.take_chunk(job.id, "vae", 0, "w1:100:c", 30) == "taken"  # w1's own retry takes it back
    assert not store.beat_chunk(job.id, "vae", 0, "w1:100:a")  # the old attempt's lease is gone
    assert store.beat_chunk(job.id, "vae", 0, "w1:100:c")
    assert store.take_chunk(job.id, "vae", 0, "w2:200:d", 0.0) == "taken"  # silent beyond 0 s: taken over
    assert store.take_chunk(job.id, "vae", 1, "w2:200:e", 30) == "taken"  # another chunk, in parallel
    state = store.graph(job.id)
    assert state is not None
    assert set(state.held) == {("vae", 0), ("vae", 1)}


def test_fan_in_counts_each_chunk_once_and_progress_counts_subjects(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 5})
    plan = store.plan_chunks(job.id, ChunkPlan.of(5, 2))
    assert plan is not None
    for index in range(plan.count):
        token = f"w:1:{index}"
        assert store.take_chunk(job.id, "spade", index, token, 30) == "taken"
        assert store.mark_stage(job.id, "store", index, subjects=len(plan.bounds(index)))
        assert store.finish_chunk(job.id, "spade", index, token, 1.5, "spade@a") == index + 1
    # A redelivered chunk marks and finishes again: nothing counts twice.
    assert store.mark_stage(job.id, "store", 1, subjects=2)
    assert store.finish_chunk(job.id, "spade", 1, "w:2:x", 9.0, "spade@b") == 3
    assert store.take_chunk(job.id, "spade", 1, "w:3:y", 30) == "done"
    got = store.get(job.id)
    assert got is not None
    assert got.progress["store"] == {"done": 3, "total": 3}
    assert got.progress["subjects"] == {"done": 5, "total": 5}
    state = store.graph(job.id)
    assert state is not None
    assert (state.done["spade"], state.held, state.subjects_done) == ({0, 1, 2}, {}, 5)
    assert state.seconds[("spade", 1)] == (1.5, "spade@a")  # the first finish's record


def test_concurrent_finishes_count_exactly(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 40})
    store.plan_chunks(job.id, ChunkPlan.of(40, 1))
    firsts: list[int | None] = []
    lock = threading.Lock()

    def finish(index: int) -> None:
        first = store.finish_chunk(job.id, "spade", index, f"w:{index}:t", 0.1, "w")
        store.finish_chunk(job.id, "spade", index, f"w:{index}:u", 0.1, "w")  # a redelivery
        with lock:
            firsts.append(first)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each first finish saw its own count: exactly one saw 40 (the one that sends ``finalize``).
    assert sorted(c for c in firsts if c is not None) == list(range(1, 41))
    state = store.graph(job.id)
    assert state is not None
    assert len(state.done["spade"]) == 40


def test_a_finished_or_gone_job_answers_gone(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 2})
    store.plan_chunks(job.id, ChunkPlan.of(2, 1))
    assert store.take_chunk(job.id, "vae", 0, "w:1:a", 30) == "taken"
    store.transition(job.id, JobState.CANCELLED)
    assert store.take_chunk(job.id, "vae", 1, "w:1:b", 30) == "gone"
    assert not store.beat_chunk(job.id, "vae", 0, "w:1:a")
    assert not store.mark_stage(job.id, "encode", 0)
    assert store.finish_chunk(job.id, "vae", 0, "w:1:a", 1.0, "w") is None
    assert store.plan_chunks(job.id, ChunkPlan.of(2, 1)) is None  # nothing more is planned
    assert store.take_chunk("nope", "vae", 0, "w:1:c", 30) == "gone"
    assert store.purge(job.id)
    assert store.graph(job.id) is None  # the ledger goes with the record


def test_stale_leases_make_a_graph_job_stale_and_are_released(store: JobStore) -> None:
    job, _ = store.create("alice", {"n": 3})
    waiting, _ = store.create("alice", {"n": 3})
    store.plan_chunks(job.id, ChunkPlan.of(3, 1))
    store.take_chunk(job.id, "vae", 0, "w:1:a", 30)
    store.finish_chunk(job.id, "vae", 0, "w:1:a", 1.0, "w")
    later = time.time() + 3600
    # No lease held (its next chunks wait in a queue): running, yet never stale however long it waits.
    assert [j.id for j in store.stale_jobs(60, now=later)] == []
    store.take_chunk(job.id, "vae", 1, "w:1:b", 30)
    store.take_chunk(job.id, "vae", 2, "w:2:c", 30)
    assert [j.id for j in store.stale_jobs(60)] == []
    assert [j.id for j in store.stale_jobs(60, now=later)] == [job.id]
    assert waiting.id not in [j.id for j in store.stale_jobs(60, now=later)]
    assert store.release_stale_chunks(job.id, 60, now=later) == [("vae", 1), ("vae", 2)]
    assert store.release_stale_chunks(job.id, 60, now=later) == []
    assert [j.id for j in store.stale_jobs(60, now=later)] == []


def test_progress_lists_the_stages_in_graph_order(store: JobStore) -> None:
    from cardiosynth.queues import GRAPH_PROGRESS

    job, _ = store.create("alice", {"n": 3})
    store.plan_chunks(job.id, ChunkPlan.of(3, 2))
    for stage in ("decode", "encode"):  # marked out of order
        assert store.mark_stage(job.id, stage, 1, subjects=0)
    got = store.get(job.id)
    assert got is not None
    assert list(got.progress) == [*GRAPH_PROGRESS, "subjects"]  # what a client shows, in order
    assert got.progress["encode"] == {"done": 1, "total": 2}
