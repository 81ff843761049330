"""A succeeded job's archive: where it is stored and the states it goes through (shared by the gateway,
which queues a build, and the worker that builds it; no Redis or object store here).

States, recorded on the job by :meth:`~cardiosynth.jobs.base.JobStore.set_archive`::

    (none) or failed --POST--> pending --worker--> building --> ready
                                                          \\--> failed (error says why; POST again)

A job's files never change once it has succeeded, so one archive serves every later download; it is
deleted with the job's files (purge, retention), which live under the same ``jobs/<id>/`` prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cardiosynth.jobs.base import JobStore

ARCHIVE = "archive.tar"
PENDING, BUILDING, READY, FAILED = "pending", "building", "ready", "failed"
# A request for an archive in one of these states answers it as it is (no second build).
LIVE = (PENDING, BUILDING, READY)


def archive_key(job_id: str) -> str:
    """Where a job's archive is stored: with its files, so purge and retention delete it with them."""
    return f"jobs/{job_id}/{ARCHIVE}"


def record(state: str, **fields: Any) -> dict[str, Any]:
    """An archive state as the job records it (``updated``: when it was written, for the client)."""
    if state not in (PENDING, BUILDING, READY, FAILED):
        raise ValueError(
            f"unknown archive state {state!r}: expected {PENDING}, {BUILDING}, {READY} or {FAILED}"
        )
    return {"state": state, **fields, "updated": round(time.time(), 3)}


def request_archive(
    jobs: JobStore, job_id: str, send: Callable[[], None]
) -> tuple[dict[str, Any] | None, bool]:
    """Queue the build of ``job_id``'s archive once: ``pending`` is recorded and ``send()`` called only
    when no build is pending, running or done (the first request wins, atomically); a failed one is
    built again. Returns ``(recorded state, queued now)``; ``(None, False)`` when the job is gone, not
    succeeded or expired. A ``send`` that raises leaves the state ``failed`` (a later request retries)."""
    recorded, claimed = jobs.set_archive(job_id, record(PENDING), unless=LIVE)
    if claimed:
        try:
            send()
        except Exception as exc:
            why = f"the build could not be queued: {type(exc).__name__}"
            jobs.set_archive(job_id, record(FAILED, error=why))
            raise
    return recorded, claimed
