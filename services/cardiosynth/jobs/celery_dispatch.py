"""The Celery dispatcher: the gateway sends tasks by name, so it never imports the workers (or torch)."""

from __future__ import annotations

from typing import Any

from celery import Celery, chain

from cardiosynth.jobs.base import JobStore
from cardiosynth.queues import (
    DATASET_QUEUE,
    DATASET_STAGE,
    DATASET_TASK,
    FAILURE_TASK,
    SPADE_QUEUE,
    SPADE_TASK,
    VAE_QUEUE,
    VAE_TASK,
)


def task_ids(job_id: str) -> tuple[str, str]:
    """Deterministic task ids: cancelling needs no lookup, and a job's tasks are easy to find in logs."""
    return f"{job_id}-vae", f"{job_id}-spade"


def dataset_task_id(job_id: str) -> str:
    return f"{job_id}-dataset"


class CeleryDispatcher:
    """Sends jobs through Celery; counts live workers from their beats in ``liveness`` (the job store)."""

    def __init__(self, app: Celery, liveness: JobStore) -> None:
        self.app = app
        self.liveness = liveness

    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        self.resume(job_id, DATASET_STAGE if request.get("kind") == DATASET_STAGE else VAE_QUEUE)

    def resume(self, job_id: str, stage: str) -> None:
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
                f"unknown stage {stage!r}: expected {VAE_QUEUE!r}, {SPADE_QUEUE!r} or {DATASET_STAGE!r}"
            )
        vae = self.app.signature(VAE_TASK, args=(job_id,), queue=VAE_QUEUE, task_id=vae_id, immutable=True)
        chain(vae, spade).apply_async(link_error=errback)

    def cancel(self, job_id: str) -> None:
        for task_id in (*task_ids(job_id), dataset_task_id(job_id)):
            self.app.control.revoke(task_id, terminate=True, signal="SIGTERM")

    def workers(self) -> dict[str, int]:
        # Not a broker ``inspect`` ping: a solo-pool worker running a stage cannot answer one, and the
        # queue's only worker being busy is no reason to say "not ready". Workers beat from a thread of
        # their own into the job store (cardiosynth.workers.liveness), busy or idle.
        return self.liveness.live_workers()

    def ping(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
