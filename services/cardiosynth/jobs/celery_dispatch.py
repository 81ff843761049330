"""The Celery dispatcher: the gateway sends tasks by name, so it never imports the workers (or torch)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, chain
from kombu.exceptions import KombuError

from cardiosynth.jobs.base import JobStore
from cardiosynth.queues import (
    ARCHIVE_QUEUE,
    ARCHIVE_STAGE,
    ARCHIVE_TASK,
    DATASET_QUEUE,
    DATASET_STAGE,
    DATASET_TASK,
    FAILURE_TASK,
    FINALIZE_TASK,
    GRAPH_KINDS,
    SPADE_CHUNK_TASK,
    SPADE_QUEUE,
    SPADE_TASK,
    STATS_TASK,
    VAE_CHUNK_TASK,
    VAE_QUEUE,
    VAE_TASK,
)

log = logging.getLogger(__name__)


def task_ids(job_id: str) -> tuple[str, str]:
    """Deterministic task ids: cancelling needs no lookup, and a job's tasks are easy to find in logs."""
    return f"{job_id}-vae", f"{job_id}-spade"


def dataset_task_id(job_id: str) -> str:
    return f"{job_id}-dataset"


GRAPH_TASKS = {
    "stats": STATS_TASK,
    "vae": VAE_CHUNK_TASK,
    "spade": SPADE_CHUNK_TASK,
    "finalize": FINALIZE_TASK,
}


def graph_task_id(job_id: str, kind: str, index: int = 0) -> str:
    """Deterministic ids of the stage graph's tasks (``<job>-stats``, ``<job>-vae-3``, ...): a chunk's
    duplicates carry one id in the logs, and a cancel revokes them without a lookup."""
    if kind not in GRAPH_TASKS:
        raise ValueError(f"unknown graph task kind {kind!r}: expected one of {sorted(GRAPH_TASKS)}")
    return f"{job_id}-{kind}" if kind in ("stats", "finalize") else f"{job_id}-{kind}-{index}"


def send_graph_task(app: Celery, job_id: str, kind: str, index: int = 0) -> None:
    """Send task ``(kind, index)`` of ``job_id``'s stage graph to its queue (ids only, never arrays);
    a task that fails for good fails the job through the errback."""
    errback = app.signature(FAILURE_TASK, args=(job_id,), queue=VAE_QUEUE)
    app.send_task(GRAPH_TASKS[kind], args=(job_id, index), queue=GRAPH_KINDS[kind],
                  task_id=graph_task_id(job_id, kind, index), link_error=errback)  # fmt: skip


def parse_graph_stage(stage: str) -> tuple[str, int] | None:
    """``"stats"``, ``"finalize"`` or ``"<kind>:<index>"`` (what the reaper resumes) -> (kind, index);
    ``None`` for a stage that is not a graph task."""
    kind, _, index = stage.partition(":")
    if kind in ("stats", "finalize") and not index:
        return kind, 0
    if kind in ("vae", "spade") and index.isdigit():
        return kind, int(index)
    return None


class CeleryDispatcher:
    """Sends jobs through Celery; counts live workers from their beats in ``liveness`` (the job store)."""

    def __init__(self, app: Celery, liveness: JobStore) -> None:
        self.app = app
        self.liveness = liveness

    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        # A /synthesize job runs as a stage graph: ``stats`` first, which fans out the chunks.
        self.resume(job_id, DATASET_STAGE if request.get("kind") == DATASET_STAGE else "stats")

    def resume(self, job_id: str, stage: str) -> None:
        if stage == ARCHIVE_STAGE:  # a succeeded job's archive: no errback, a failed build fails no job
            self.app.send_task(ARCHIVE_TASK, args=(job_id,), queue=ARCHIVE_QUEUE, task_id=f"{job_id}-archive")
            return
        graph = parse_graph_stage(stage)
        if graph is not None:
            send_graph_task(self.app, job_id, *graph)
            return
        vae_id, spade_id = task_ids(job_id)
        errback = self.app.signature(FAILURE_TASK, args=(job_id,), queue=VAE_QUEUE)
        spade = self.app.signature(
            SPADE_TASK, args=(job_id,), queue=SPADE_QUEUE, task_id=spade_id, immutable=True
        )
        if stage == DATASET_STAGE:
            task = self.app.signature(DATASET_TASK, args=(job_id,), queue=DATASET_QUEUE,
                                      task_id=dataset_task_id(job_id), immutable=True)  # fmt: skip
            task.apply_async(link_error=errback)
            return
        if stage == SPADE_QUEUE:
            spade.apply_async(link_error=errback)
            return
        if stage != VAE_QUEUE:
            raise ValueError(
                f"unknown stage {stage!r}: expected 'stats', 'finalize', '<vae|spade>:<chunk>', "
                f"{VAE_QUEUE!r}, {SPADE_QUEUE!r} (the two-stage tasks) or {DATASET_STAGE!r}"
            )
        # The two-stage chain of earlier versions (a job of theirs redelivered after an upgrade).
        vae = self.app.signature(VAE_TASK, args=(job_id,), queue=VAE_QUEUE, task_id=vae_id, immutable=True)
        chain(vae, spade).apply_async(link_error=errback)

    def cancel(self, job_id: str) -> None:
        ids = [*task_ids(job_id), dataset_task_id(job_id), graph_task_id(job_id, "stats"),
               graph_task_id(job_id, "finalize")]  # fmt: skip
        graph = self.liveness.graph(job_id)
        if graph is not None:  # every chunk's tasks; each chunk also checks the job before it works
            ids += [graph_task_id(job_id, k, i) for k in ("vae", "spade") for i in range(graph.plan.count)]
        try:
            self.app.control.revoke(ids, terminate=True, signal="SIGTERM")
        except (KombuError, OSError, ValueError) as exc:
            # The cancel is the job store's transition, made before this; the revoke only stops a
            # running task sooner. Without it the worker stops at its next check of the job (between
            # batches, subjects and chunks), so a broker that cannot broadcast now is no error.
            log.warning("job %s cancelled; its tasks not revoked (%s: %s)", job_id, type(exc).__name__, exc)

    def workers(self) -> dict[str, int]:
        # Not a broker ``inspect`` ping: a solo-pool worker running a stage cannot answer one, and the
        # queue's only worker being busy is no reason to say "not ready". Workers beat from a thread of
        # their own into the job store (cardiosynth.workers.liveness), busy or idle.
        return self.liveness.live_workers()

    def ping(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
