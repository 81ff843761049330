"""A Redis hash per job, with per-owner listings, queue positions, idempotency keys and a reaper.

Keys (``prefix`` defaults to ``cs``)::

    cs:job:<id>                 hash: id, owner, state, request, progress, error, created, updated,
                                heartbeat, timings, result
    cs:owner:<owner>            sorted set of the owner's job ids by creation time
    cs:queued                   sorted set of queued job ids by creation time (queue positions)
    cs:queued:<owner>           the owner's queued job ids (the per-key cap)
    cs:running                  set of running job ids (the reaper's worklist)
    cs:idem:<owner>:<key>       "<job id> <request hash>" for Idempotency-Key
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
# Which states a job may move to from each state; anything else is refused.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class IdempotencyConflictError(Exception):
    """The idempotency key was used with another request body (HTTP 422)."""


class IdempotencyInProgressError(Exception):
    """The first request with this idempotency key is still being created (HTTP 409)."""


class TransitionRefusedError(Exception):
    """The job is not in a state that allows the change (e.g. cancelling a finished job)."""


@dataclass
class Job:
    """A job record as the API shows it."""

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


def request_hash(request: dict[str, Any]) -> str:
    """Canonical hash of a request body (key order and whitespace do not matter)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def owner_id(api_key: str) -> str:
    """The stored owner of a key's jobs: a hash, so the store never holds the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


class JobStore:
    """Job records in Redis. All writes that check a state do so atomically (WATCH/MULTI)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "cs", ttl_s: int = 7 * 24 * 3600) -> None:
        self.r = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def ping(self) -> None:
        self.r.ping()

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- creation ---------------------------------------------------------------------------------

    def create(
        self, owner: str, request: dict[str, Any], *, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Create a queued job; return ``(job, created)``.

        With an idempotency key, a repeat of the same request returns the first job (``created`` False);
        another body raises :class:`IdempotencyConflictError`, a first request still being created
        :class:`IdempotencyInProgressError` (the IETF draft's 422 and 409)."""
        digest = request_hash(request)
        idem = (
            self._k("idem", owner, hashlib.sha256(idempotency_key.encode()).hexdigest())
            if idempotency_key
            else None
        )
        job_id = uuid.uuid4().hex
        # Claim the key first; a concurrent duplicate sees the claim and gets 409 until it is done.
        if idem is not None and not self.r.set(idem, f"{job_id} {digest} pending", nx=True, ex=self.ttl_s):
            existing = self.r.get(idem)
            if existing is None:  # expired between the two calls: claim again
                return self.create(owner, request, idempotency_key=idempotency_key)
            other_id, other_digest, status = existing.decode().split(" ")
            if other_digest != digest:
                raise IdempotencyConflictError(
                    f"idempotency key reused with a different body (job {other_id})"
                )
            if status == "pending":
                raise IdempotencyInProgressError(
                    f"job {other_id} for this idempotency key is still being created"
                )
            job = self.get(other_id)
            if job is None:
                raise IdempotencyConflictError(f"job {other_id} of this idempotency key no longer exists")
            return job, False
        now = time.time()
        job = Job(job_id, owner, JobState.QUEUED, request, now, now)
        pipe = self.r.pipeline()
        pipe.hset(self._k("job", job_id), mapping=self._encode(job))
        pipe.expire(self._k("job", job_id), self.ttl_s)
        pipe.zadd(self._k("owner", owner), {job_id: now})
        pipe.zadd(self._k("queued"), {job_id: now})
        pipe.zadd(self._k("queued", owner), {job_id: now})
        if idem is not None:
            pipe.set(idem, f"{job_id} {digest} done", ex=self.ttl_s)
        pipe.execute()
        return job, True

    # -- reading ----------------------------------------------------------------------------------

    @staticmethod
    def _encode(job: Job) -> dict[str, str]:
        return {
            "id": job.id,
            "owner": job.owner,
            "state": job.state.value,
            "request": json.dumps(job.request),
            "created": repr(job.created),
            "updated": repr(job.updated),
            "progress": json.dumps(job.progress),
            "error": json.dumps(job.error),
            "timings": json.dumps(job.timings),
            "result": json.dumps(job.result),
            "heartbeat": repr(job.heartbeat) if job.heartbeat is not None else "",
        }

    @staticmethod
    def _decode(raw: dict[bytes, bytes]) -> Job:
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return Job(
            id=d["id"],
            owner=d["owner"],
            state=JobState(d["state"]),
            request=json.loads(d["request"]),
            created=float(d["created"]),
            updated=float(d["updated"]),
            progress=json.loads(d.get("progress", "{}")),
            error=json.loads(d.get("error", "null")),
            timings=json.loads(d.get("timings", "{}")),
            result=json.loads(d.get("result", "null")),
            heartbeat=float(d["heartbeat"]) if d.get("heartbeat") else None,
        )

    def get(self, job_id: str) -> Job | None:
        raw = self.r.hgetall(self._k("job", job_id))
        return self._decode(raw) if raw else None

    def queue_position(self, job_id: str) -> int | None:
        """0-based position among queued jobs (oldest first), or ``None`` when not queued."""
        rank = self.r.zrank(self._k("queued"), job_id)
        return int(rank) if rank is not None else None

    def list_jobs(
        self, owner: str, *, state: JobState | None = None, offset: int = 0, limit: int = 20
    ) -> tuple[list[Job], int]:
        """The owner's jobs, newest first, filtered by state; returns ``(page, total matching)``."""
        if state is None:  # page in Redis; no need to read every record
            key = self._k("owner", owner)
            total = int(self.r.zcard(key))
            if offset >= total or limit < 1:  # also keeps Redis away from out-of-range indices
                return [], total
            page_ids = [i.decode() for i in self.r.zrevrange(key, offset, offset + limit - 1)]
            page = [j for j in (self.get(i) for i in page_ids) if j is not None]
            return page, total
        ids = [i.decode() for i in self.r.zrevrange(self._k("owner", owner), 0, -1)]
        jobs = [
            j for j in (self.get(i) for i in ids) if j is not None and (state is None or j.state is state)
        ]
        return jobs[offset : offset + limit], len(jobs)

    def count_queued(self, owner: str) -> int:
        """Queued jobs of ``owner`` (O(1): a per-owner queued set, kept with the global one)."""
        return int(self.r.zcard(self._k("queued", owner)))

    # -- updates ----------------------------------------------------------------------------------

    def transition(self, job_id: str, to: JobState, **fields: Any) -> Job:
        """Move ``job_id`` to state ``to`` (checked against :data:`TRANSITIONS`), setting ``fields``."""
        key = self._k("job", job_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hgetall(key)
                    if not raw:
                        raise KeyError(job_id)
                    job = self._decode(raw)
                    if to not in TRANSITIONS[job.state]:
                        raise TransitionRefusedError(
                            f"job {job_id} is {job.state.value}; cannot become {to.value}"
                        )
                    job.state = to
                    job.updated = time.time()
                    for name, value in fields.items():
                        setattr(job, name, value)
                    if to is JobState.RUNNING:
                        job.heartbeat = job.updated
                    pipe.multi()
                    pipe.hset(key, mapping=self._encode(job))
                    pipe.zrem(self._k("queued"), job_id)
                    pipe.zrem(self._k("queued", job.owner), job_id)
                    if to is JobState.RUNNING:
                        pipe.sadd(self._k("running"), job_id)
                    else:
                        pipe.srem(self._k("running"), job_id)
                    pipe.execute()
                    return job
                except redis.WatchError:
                    continue

    def update(self, job_id: str, **fields: Any) -> None:
        """Progress, timings and heartbeat of a running job (no state change; ignored once terminal)."""
        job = self.get(job_id)
        if job is None or job.state in TERMINAL:
            return
        for name, value in fields.items():
            setattr(job, name, value)
        job.updated = time.time()
        mapping = {k: v for k, v in self._encode(job).items() if k in {*fields, "updated"}}
        self.r.hset(self._k("job", job_id), mapping=mapping)

    def heartbeat(self, job_id: str) -> None:
        self.r.hset(self._k("job", job_id), "heartbeat", repr(time.time()))

    def reap(self, stale_after_s: float, *, now: float | None = None) -> list[str]:
        """Fail running jobs whose heartbeat is older than ``stale_after_s``; return their ids."""
        now = time.time() if now is None else now
        reaped = []
        for raw_id in self.r.smembers(self._k("running")):
            job_id = raw_id.decode()
            job = self.get(job_id)
            if job is None:
                self.r.srem(self._k("running"), job_id)
                continue
            beat = job.heartbeat or job.updated
            if job.state is JobState.RUNNING and now - beat > stale_after_s:
                error = {
                    "title": "worker lost",
                    "detail": f"no heartbeat for {now - beat:.0f} s",
                    "status": 500,
                }
                try:
                    self.transition(job_id, JobState.FAILED, error=error)
                    reaped.append(job_id)
                except TransitionRefusedError:
                    pass
        return reaped


def open_job_store(url: str, *, prefix: str = "cs") -> Any:
    """``redis://...`` -> :class:`JobStore`; ``sqlite:///path/jobs.db`` -> the embedded SQLite store."""
    if url.startswith("sqlite:///"):
        from cardiosynth.jobs.sqlite_store import SqliteJobStore

        return SqliteJobStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return JobStore(redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10), prefix=prefix)
    raise ValueError(f"unsupported job store URL {url!r}: use redis://... or sqlite:///path")
