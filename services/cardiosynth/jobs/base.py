"""What every job store is: the records, states and rules, and the :class:`JobStore` protocol that the
Redis store (:mod:`cardiosynth.jobs.store`) and the SQLite store (:mod:`cardiosynth.jobs.sqlite_store`)
implement. Both import this module; neither imports the other.

Delivery model (what the states mean):

- a job is at one stage at a time (``vae``, then ``spade``); ``queued`` means its stage waits for a
  worker of that queue, ``running`` means a worker holds the stage and beats its heartbeat;
- only a held stage beats, and the reaper fails only ``running`` jobs whose heartbeat went stale, so a
  job that waits for a busy queue is never reaped as "worker lost";
- a heartbeat never creates a record: a job whose record is gone (expired, or lost with a Redis that
  kept nothing on disk) stays gone, the API answers 404 for it and the worker stops its work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cardiosynth.queues import GRAPH_PROGRESS, STAGES  # a job starts queued at the first stage


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
# Which states a job may move to from each state; anything else is refused. running -> queued is the
# hand-over from one stage to the next (the next stage waits for its queue, not held by anyone).
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.QUEUED, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class IdempotencyConflictError(Exception):
    """The idempotency key was used with another request body (HTTP 422)."""


class IdempotencyInProgressError(Exception):
    """The first request with this idempotency key is still being created (HTTP 409)."""


class QueueFullError(Exception):
    """The owner already has ``max_queued`` queued jobs (HTTP 429)."""


class StoredBytesQuotaError(QueueFullError):
    """The owner's stored files (succeeded jobs not yet expired or purged) are at or above the quota
    on stored bytes (HTTP 429: the key's own usage, freed by a purge or by retention)."""


class SubjectQuotaError(QueueFullError):
    """The owner's subjects in flight (queued + running) plus this job's would exceed the quota (HTTP 429)."""


class TransitionRefusedError(Exception):
    """The job is not in a state that allows the change (e.g. cancelling a finished job)."""


@dataclass
class Job:
    """A job record as the API shows it; ``stage`` is the stage it is queued at or running."""

    id: str
    owner: str
    state: JobState
    request: dict[str, Any]
    created: float
    updated: float
    progress: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    heartbeat: float | None = None
    stage: str = STAGES[0]
    attempts: int = 0  # redeliveries of a stage whose worker went silent (see jobs/reaper.py)
    expired_at: float | None = None  # when retention deleted its stored files (the record stays)
    weight: int = 0  # subjects x severities it synthesizes (the per-key quota on subjects in flight)
    # Bytes of the files it stored, set when it succeeds; counted against the per-key quota on stored
    # bytes until retention expires them or the job is purged.
    stored_bytes: int = 0
    # The job's tar archive (POST /jobs/{id}/archive, built by a worker): state, bytes, sha256, error.
    # Written only by :meth:`JobStore.set_archive`, on a succeeded job.
    archive: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChunkPlan:
    """How a job's ``subjects`` are cut into ``count`` chunks of ``size`` (the last one shorter)."""

    count: int
    size: int
    subjects: int

    @classmethod
    def of(cls, subjects: int, size: int) -> ChunkPlan:
        if subjects < 1 or size < 1:
            raise ValueError(f"subjects and chunk size must be >= 1, got {subjects} and {size}")
        return cls(-(-subjects // size), size, subjects)

    def bounds(self, index: int) -> range:
        """The subject indices of chunk ``index``."""
        if not 0 <= index < self.count:
            raise ValueError(f"chunk {index} outside 0..{self.count - 1}")
        return range(index * self.size, min((index + 1) * self.size, self.subjects))

    def totals(self) -> dict[str, int]:
        """Each progress stage's total: once for ``stats`` and ``finalize``, per chunk otherwise."""
        return {s: 1 if s in ("stats", "finalize") else self.count for s in GRAPH_PROGRESS}


@dataclass
class GraphState:
    """The fan-in ledger of a job's stage graph: its plan, the chunks finished per kind, the leases
    held now ((kind, index) -> last beat) and each finished task's seconds and worker."""

    plan: ChunkPlan
    done: dict[str, set[int]]
    held: dict[tuple[str, int], float]
    seconds: dict[tuple[str, int], tuple[float, str]]
    subjects_done: int = 0


def graph_progress(plan: ChunkPlan, stage_done: dict[str, int], subjects_done: int) -> dict[str, Any]:
    """A graph job's progress: chunks past each stage, and subjects stored across chunks."""
    progress: dict[str, Any] = {
        stage: {"done": stage_done.get(stage, 0), "total": total} for stage, total in plan.totals().items()
    }
    progress["subjects"] = {"done": subjects_done, "total": plan.subjects}
    return progress


def subject_weight(request: dict[str, Any]) -> int:
    """What a request counts against the per-key quota: ``n`` subjects x its number of severities
    (``trajectory`` K gives K, a single severity or none gives 1)."""
    n, k = request.get("n", 1), request.get("trajectory") or 1
    if not isinstance(n, int) or not isinstance(k, int) or n < 1 or k < 1:
        raise ValueError(f"n and trajectory must be positive integers, got n={n!r}, trajectory={k!r}")
    return n * k


def quota_detail(in_flight: int, weight: int, max_subjects: int) -> str:
    """The 429 detail of :class:`SubjectQuotaError`, naming the numbers."""
    return (
        f"{in_flight} subjects x severities already in flight (queued or running) for this key; this job's "
        f"{weight} would exceed the quota of {max_subjects}"
    )


def stored_detail(stored: int, max_stored: int) -> str:
    """The 429 detail of :class:`StoredBytesQuotaError`, naming the numbers and the way out."""
    return (
        f"{stored} bytes of finished jobs' files stored for this key, at or above the quota of {max_stored}: "
        "purge finished jobs (DELETE /jobs/{id}?purge=true) or wait for retention to delete their files"
    )


def request_hash(request: dict[str, Any]) -> str:
    """Canonical hash of a request body (key order and whitespace do not matter)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def owner_id(api_key: str) -> str:
    """The stored owner of a key's jobs: a hash, so the store never holds the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def idempotency_digest(key: str) -> str:
    """What a store keeps of a client's Idempotency-Key: a hash (bounded size, nothing echoed back)."""
    return hashlib.sha256(key.encode()).hexdigest()


def stale_error(silent_s: float) -> dict[str, Any]:
    """The problem a reaped job records."""
    return {"title": "worker lost", "detail": f"no heartbeat for {silent_s:.0f} s", "status": 500}


class JobStore(Protocol):
    """Job records, queue positions, idempotency, the per-key queue cap, heartbeats and worker liveness.

    Every write that checks something (a state, the cap, an idempotency key) does so atomically."""

    def ping(self) -> None:
        """Raise when the store does not answer."""

    def create(
        self,
        owner: str,
        request: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        max_queued: int | None = None,
        weight: int = 0,
        max_subjects: int | None = None,
        stage: str = STAGES[0],
        max_stored_bytes: int | None = None,
    ) -> tuple[Job, bool]:
        """Create a job queued at ``stage`` (the first stage; a dataset build its own); return
        ``(job, created)``.

        The idempotency key is looked up first: a repeat of the same request returns the first job
        (``created`` False) even when the queue is full; another body raises
        :class:`IdempotencyConflictError`. A key whose job record is gone is released and a new job is
        created. Then, in the same atomic step, :class:`QueueFullError` when ``owner`` already has
        ``max_queued`` queued jobs, and :class:`SubjectQuotaError` when the ``weight`` of its queued and
        running jobs plus this job's ``weight`` would exceed ``max_subjects``. The weight is stored.
        Last, :class:`StoredBytesQuotaError` when the ``stored_bytes`` of the owner's succeeded jobs
        that are neither expired nor purged add up to ``max_stored_bytes`` or more.

        ``stored_bytes`` are counted by :meth:`transition` to ``succeeded`` (the field given there)
        and released by :meth:`mark_expired` and :meth:`purge`."""
        ...

    def get(self, job_id: str, *, result: bool = True) -> Job | None:
        """The job, or ``None`` when there is no (complete) record of it. ``result=False`` leaves the
        result out (``None``): a large job's file list is megabytes, and a poll does not show it."""
        ...

    def queue_position(self, job_id: str) -> int | None:
        """0-based position among queued jobs (oldest first), or ``None`` when not queued."""
        ...

    def list_jobs(
        self, owner: str, *, state: JobState | None = None, offset: int = 0, limit: int = 20
    ) -> tuple[list[Job], int]:
        """The owner's jobs, newest first, filtered by state, without their results (as
        ``get(..., result=False)``); returns ``(page, total matching)``."""
        ...

    def count_queued(self, owner: str) -> int:
        """Queued jobs of ``owner`` (at any stage)."""
        ...

    def transition(self, job_id: str, to: JobState, **fields: Any) -> Job:
        """Move ``job_id`` to ``to`` (checked against :data:`TRANSITIONS`), setting ``fields``;
        ``KeyError`` when the job is gone. Becoming ``running`` starts the heartbeat; becoming
        ``succeeded`` with ``stored_bytes`` counts them against the owner's quota on stored bytes."""
        ...

    def update(self, job_id: str, **fields: Any) -> bool:
        """Set progress or timings of a live job; ``False`` (nothing written) once it is terminal or gone."""
        ...

    def heartbeat(self, job_id: str, stage: str) -> bool:
        """Beat the heartbeat of a job that is ``running`` at ``stage``; ``False`` (nothing written, no
        record created) when it is not: cancelled, finished, gone, or at another stage."""
        ...

    def reap(self, stale_after_s: float, *, now: float | None = None) -> list[str]:
        """Fail ``running`` jobs whose heartbeat is older than ``stale_after_s``; return their ids."""
        ...

    def stale_jobs(self, stale_after_s: float, *, now: float | None = None) -> list[Job]:
        """``running`` jobs whose heartbeat is older than ``stale_after_s`` (their worker went silent)."""
        ...

    def finished_before(self, cutoff: float, *, limit: int = 100) -> list[Job]:
        """Finished (terminal) jobs last updated before ``cutoff`` and not yet expired, oldest first."""
        ...

    def mark_expired(self, job_id: str, at: float) -> bool:
        """Set ``expired_at`` of a finished job (its stored bytes no longer count); ``False`` when gone,
        not finished or already expired."""
        ...

    def purge(self, job_id: str) -> bool:
        """Delete the record of a finished job (and its place in every index); ``False`` when it is
        gone already; :class:`TransitionRefusedError` (nothing deleted) when it is not finished."""
        ...

    def set_archive(
        self, job_id: str, archive: dict[str, Any], *, unless: tuple[str, ...] = ()
    ) -> tuple[dict[str, Any] | None, bool]:
        """Record the archive state of a succeeded, unexpired job in one atomic step: write ``archive``
        unless the recorded one's ``state`` is in ``unless``. Returns ``(recorded now, written)``;
        ``(None, False)`` (nothing written, no record created) when the job is gone, not succeeded or
        expired. Neither ``updated`` nor anything else of the job changes."""
        ...

    # -- the stage graph (fan-out and fan-in of a job's chunks) -------------------------------------

    def plan_chunks(self, job_id: str, plan: ChunkPlan) -> ChunkPlan | None:
        """Record ``job_id``'s chunk plan once and return the recorded one (the first call wins, so
        every task of the job agrees even when workers' settings differ); its progress starts at 0.
        ``None`` when the job is finished or gone."""
        ...

    def take_chunk(self, job_id: str, kind: str, index: int, token: str, stale_after_s: float) -> str:
        """Take the lease of task ``(kind, index)`` for ``token``: ``"taken"``; ``"done"`` when that
        task finished already; ``"held"`` when another holder beat within ``stale_after_s`` (a holder
        of the same process, the token's part before the last ``:``, takes its own lease back: a
        retry); ``"gone"`` when the job is finished or gone. A queued job becomes ``running`` at
        stage :data:`~cardiosynth.queues.GRAPH_STAGE`."""
        ...

    def beat_chunk(self, job_id: str, kind: str, index: int, token: str) -> bool:
        """Beat the lease (and the job's heartbeat); ``False`` when the job is finished or gone or the
        lease is no longer ``token``'s."""
        ...

    def mark_stage(self, job_id: str, stage: str, index: int, subjects: int = 0) -> bool:
        """Chunk ``index`` passed progress ``stage`` (counted once however often it is marked;
        ``subjects`` more subjects done the first time); the job's progress is rewritten from the
        ledger in the same atomic step. ``False`` when the job is finished or gone."""
        ...

    def finish_chunk(
        self, job_id: str, kind: str, index: int, token: str, seconds: float, worker: str
    ) -> int | None:
        """Mark task ``(kind, index)`` finished (once; a redelivery is idempotent), record its
        ``seconds`` and ``worker`` and drop ``token``'s lease; return how many tasks of ``kind`` are
        finished (the fan-in count), or ``None`` when the job is finished or gone."""
        ...

    def graph(self, job_id: str) -> GraphState | None:
        """The job's ledger, or ``None`` when it has no plan (yet)."""
        ...

    def release_stale_chunks(
        self, job_id: str, stale_after_s: float, *, now: float | None = None
    ) -> list[tuple[str, int]]:
        """Drop the leases whose last beat is older than ``stale_after_s`` (their holder died) and
        return their (kind, index), for the reaper to send those tasks again."""
        ...

    def worker_beat(self, queue: str, worker: str, ttl_s: float) -> None:
        """Record that ``worker`` consumes ``queue`` for the next ``ttl_s`` seconds."""
        ...

    def worker_gone(self, queue: str, worker: str) -> None:
        """Forget ``worker`` (it stopped)."""
        ...

    def live_workers(self) -> dict[str, int]:
        """Workers whose beat has not expired, per queue (every stage's queue present, maybe 0)."""
        ...

    def worker_live(self, queue: str, worker: str) -> bool:
        """Whether ``worker``'s beat for ``queue`` has not expired (a container's health check)."""
        ...
