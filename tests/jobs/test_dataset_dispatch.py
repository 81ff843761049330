"""Where a dataset build's task goes: one task on the SPADE queue, sent again there by the reaper
(Celery's own routing over Kombu's in-memory broker; nothing runs the tasks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery

from cardiosynth.config import CommonSettings
from cardiosynth.jobs.base import JobState
from cardiosynth.jobs.celery_app import make_celery
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.jobs.reaper import redeliver_or_fail
from cardiosynth.jobs.sqlite_store import SqliteJobStore


def _sent(app: Celery) -> list[tuple[str, str, str]]:
    """(queue, task name, task id) of every message waiting, oldest first; the queues are emptied."""
    out = []
    with app.connection_for_read() as conn:
        for queue in ("vae", "spade"):
            simple = conn.SimpleQueue(queue)
            while True:
                try:
                    message = simple.get(block=False)
                except simple.Empty:
                    break
                out.append((queue, message.headers["task"], message.headers["id"]))
                message.ack()
    return out


def test_a_dataset_is_one_task_on_the_spade_queue_and_the_reaper_resends_it_there(tmp_path: Path) -> None:
    app = make_celery(CommonSettings(broker_url="memory://"))
    store = SqliteJobStore(tmp_path / "jobs.db")
    dispatcher = CeleryDispatcher(app, store)
    _sent(app)  # the in-memory broker is the process's: start from empty queues
    dataset, _ = store.create("owner", {"kind": "dataset", "spec": {}}, stage="dataset")
    synth, _ = store.create("owner", {"pathology": "HCM", "n": 1})
    assert (dataset.stage, synth.stage) == ("dataset", "vae")
    dispatcher.submit(dataset.id, dataset.request)
    dispatcher.submit(synth.id, synth.request)
    assert _sent(app) == [
        ("vae", "cardiosynth.stats", f"{synth.id}-stats"),  # a synthesis starts its stage graph
        ("spade", "cardiosynth.dataset_build", f"{dataset.id}-dataset"),
    ]
    # Its worker went silent: the reaper puts the job back at its own stage and sends that task.
    store.transition(dataset.id, JobState.RUNNING)
    redelivered, failed = redeliver_or_fail(store, dispatcher, 60.0, now=time.time() + 3600)
    assert (redelivered, failed) == ([dataset.id], [])
    again = store.get(dataset.id)
    assert again is not None
    assert (again.state, again.stage, again.attempts) == (JobState.QUEUED, "dataset", 1)
    assert _sent(app) == [("spade", "cardiosynth.dataset_build", f"{dataset.id}-dataset")]


def test_the_stage_graph_routes_each_task_to_its_queue_and_the_reaper_resends_chunks(tmp_path: Path) -> None:
    from cardiosynth.jobs.base import ChunkPlan

    app = make_celery(CommonSettings(broker_url="memory://"))
    store = SqliteJobStore(tmp_path / "jobs.db")
    dispatcher = CeleryDispatcher(app, store)
    _sent(app)
    job, _ = store.create("owner", {"pathology": "HCM", "n": 3})
    for stage in ("vae:1", "spade:2", "finalize"):
        dispatcher.resume(job.id, stage)
    assert _sent(app) == [
        ("vae", "cardiosynth.encode_correlate_interpolate_decode", f"{job.id}-vae-1"),
        ("spade", "cardiosynth.translate_store", f"{job.id}-spade-2"),
        ("spade", "cardiosynth.finalize", f"{job.id}-finalize"),
    ]
    store.plan_chunks(job.id, ChunkPlan.of(3, 1))
    store.take_chunk(job.id, "spade", 2, "w:1:a", 60)  # held, then its worker went silent
    assert redeliver_or_fail(store, dispatcher, 60.0, now=time.time() + 3600) == ([job.id], [])
    assert _sent(app) == [("spade", "cardiosynth.translate_store", f"{job.id}-spade-2")]
    with pytest.raises(ValueError, match="unknown stage 'vae:x'"):
        dispatcher.resume(job.id, "vae:x")
