"""The reaper: a stage whose worker went silent is redelivered, a bounded number of times.

A job running as a stage graph (:mod:`cardiosynth.workers.graph`) holds one lease per running task
instead of one heartbeat: only the tasks whose lease went silent are sent again (the job stays
running, its other chunks go on), and each pass that finds any counts one attempt of the job. A graph
job with no plan yet (its stats worker died before planning, or, in the Redis store, between the job
becoming running and its lease being written) is stale by its heartbeat; it is queued again with its
stats task sent again.

One window is left to the broker: a worker that dies after recording a task finished and before
sending the next (milliseconds) leaves no lease to go stale; its unacknowledged message is delivered
again after the broker's visibility timeout, and that delivery sends what was not sent.

Delivery in one sentence: a stage whose worker dies (SIGKILL, OOM, lost machine) is put back in its
queue by the reaper once its heartbeat is older than ``heartbeat_stale_s`` and runs again on another
worker, overwriting the dead attempt's partial outputs (object keys are deterministic per job and
subject), so the job completes, with each output written once in effect, within
``heartbeat_stale_s`` + one reaper interval + the stage's own run time; after ``max_attempts``
redeliveries the job fails as "worker lost" instead.

This does not wait for the broker's own redelivery (the Redis visibility timeout must exceed the
longest stage, hours; Kombu's filesystem broker never redelivers): the reaper, the heartbeats and the
broker agree because only the reaper decides that a held stage is dead, and a late duplicate of the
broker's finds the stage held by a live worker (a fresh heartbeat) and leaves it alone.
"""

from __future__ import annotations

import logging
import time

from cardiosynth.jobs.base import JobState, JobStore, TransitionRefusedError, stale_error
from cardiosynth.jobs.dispatch import Dispatcher
from cardiosynth.queues import GRAPH_STAGE
from cardiosynth.storage.base import ObjectStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def redeliver_or_fail(
    jobs: JobStore,
    dispatcher: Dispatcher,
    stale_after_s: float,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    now: float | None = None,
    storage: ObjectStore | None = None,
) -> tuple[list[str], list[str]]:
    """Requeue each stale held stage (its task sent again) or, past ``max_attempts``, fail the job
    and remove what it stored (with ``storage``); return ``(redelivered ids, failed ids)``."""
    if max_attempts < 0:
        raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
    now = time.time() if now is None else now
    redelivered, failed = [], []
    for job in jobs.stale_jobs(stale_after_s, now=now):
        silent = now - (job.heartbeat or job.updated)
        try:
            if job.stage == GRAPH_STAGE and job.attempts < max_attempts and jobs.graph(job.id) is None:
                # No plan yet: its stats worker died before planning (maybe before its lease). Queued
                # again with stats sent again, so waiting for a VAE worker is not "worker lost".
                jobs.release_stale_chunks(job.id, stale_after_s, now=now)
                jobs.transition(job.id, JobState.QUEUED, stage=GRAPH_STAGE, attempts=job.attempts + 1)
                dispatcher.resume(job.id, "stats")
                log.warning("job %s: stats silent for %.0f s before its plan: redelivered (attempt %d of %d)",
                            job.id, silent, job.attempts + 1, max_attempts)  # fmt: skip
                redelivered.append(job.id)
            elif job.stage == GRAPH_STAGE and job.attempts < max_attempts:
                # A stage graph: only the tasks whose lease went silent are sent again; the job stays
                # running (its other chunks go on) and counts one attempt per pass that found any.
                released = jobs.release_stale_chunks(job.id, stale_after_s, now=now)
                if not released:
                    continue
                jobs.update(job.id, attempts=job.attempts + 1)
                for kind, index in released:
                    dispatcher.resume(job.id, kind if kind in ("stats", "finalize") else f"{kind}:{index}")
                log.warning("job %s: tasks %s silent for over %.0f s: redelivered (attempt %d of %d)",
                            job.id, released, stale_after_s, job.attempts + 1, max_attempts)  # fmt: skip
                redelivered.append(job.id)
            elif job.attempts < max_attempts:
                jobs.transition(job.id, JobState.QUEUED, stage=job.stage, attempts=job.attempts + 1)
                dispatcher.resume(job.id, job.stage)
                log.warning("job %s: %s stage silent for %.0f s: redelivered (attempt %d of %d)",
                            job.id, job.stage, silent, job.attempts + 1, max_attempts)  # fmt: skip
                redelivered.append(job.id)
            else:
                jobs.transition(job.id, JobState.FAILED, error=stale_error(silent))
                log.error("job %s: %s stage silent for %.0f s after %d redeliveries: failed",
                          job.id, job.stage, silent, job.attempts)  # fmt: skip
                failed.append(job.id)
                if storage is not None:  # a failed job leaves no partial outputs
                    for key in storage.list_keys(f"jobs/{job.id}/"):
                        storage.delete(key)
        except (TransitionRefusedError, KeyError):
            continue  # finished, cancelled or gone meanwhile
    return redelivered, failed


def expire_results(
    jobs: JobStore, storage: ObjectStore, retention_s: float, *, now: float | None = None, limit: int = 100
) -> list[str]:
    """Output retention: delete the stored files of each job finished more than ``retention_s`` ago
    and mark it expired (its record stays, so the API can say "expired" instead of 404); return the
    ids expired in this pass (at most ``limit``, oldest first; the next pass takes the rest)."""
    if retention_s <= 0:
        raise ValueError(f"retention_s must be > 0, got {retention_s}")
    now = time.time() if now is None else now
    expired = []
    for job in jobs.finished_before(now - retention_s, limit=limit):
        # Files first: a crash between the two leaves a job that the next pass expires again, never a
        # job marked expired whose files are still stored.
        for key in storage.list_keys(f"jobs/{job.id}/"):
            storage.delete(key)
        if jobs.mark_expired(job.id, now):
            log.info("job %s: finished %.0f s ago: results expired", job.id, now - job.updated)
            expired.append(job.id)
    return expired
