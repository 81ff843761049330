"""The Celery dispatcher: the gateway sends tasks by name, so it never imports the workers (or torch)."""

from __future__ import annotations

from typing import Any

from celery import Celery, chain

from cardiosynth.workers.app import FAILURE_TASK, SPADE_QUEUE, SPADE_TASK, VAE_QUEUE, VAE_TASK


def task_ids(job_id: str) -> tuple[str, str]:
    """Deterministic task ids: cancelling needs no lookup, and a job's tasks are easy to find in logs."""
    return f"{job_id}-vae", f"{job_id}-spade"


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        vae_id, spade_id = task_ids(job_id)
        errback = self.app.signature(FAILURE_TASK, args=(job_id,), queue=VAE_QUEUE)
        workflow = chain(
            self.app.signature(VAE_TASK, args=(job_id,), queue=VAE_QUEUE, task_id=vae_id, immutable=True),
            self.app.signature(
                SPADE_TASK, args=(job_id,), queue=SPADE_QUEUE, task_id=spade_id, immutable=True
            ),
        )
        workflow.apply_async(link_error=errback)

    def cancel(self, job_id: str) -> None:
        for task_id in task_ids(job_id):
            self.app.control.revoke(task_id, terminate=True, signal="SIGTERM")

    def workers(self) -> dict[str, int]:
        replies = self.app.control.inspect(timeout=1.0).active_queues() or {}
        counts = {VAE_QUEUE: 0, SPADE_QUEUE: 0}
        for queues in replies.values():
            for queue in queues:
                if queue.get("name") in counts:
                    counts[queue["name"]] += 1
        return counts

    def ping(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
