"""The job store in one SQLite file, for the embedded mode (no Redis): the same records, states,
idempotency rules and reaper as :class:`cardiosynth.jobs.store.JobStore`, shared by the gateway and
worker processes through SQLite's locking (WAL journal)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cardiosynth.jobs.store import (
    TERMINAL,
    TRANSITIONS,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    Job,
    JobState,
    TransitionRefusedError,
    request_hash,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL, request TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, progress TEXT NOT NULL DEFAULT '{}',
    error TEXT, timings TEXT NOT NULL DEFAULT '{}', result TEXT, heartbeat REAL
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (owner, key)
);
"""


class SqliteJobStore:
    """Job records in a SQLite database file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        # One connection per thread (sqlite3 connections must not cross threads).
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def ping(self) -> None:
        self._db().execute("SELECT 1")

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"],
            owner=row["owner"],
            state=JobState(row["state"]),
            request=json.loads(row["request"]),
            created=row["created"],
            updated=row["updated"],
            progress=json.loads(row["progress"]),
            error=json.loads(row["error"]) if row["error"] else None,
            timings=json.loads(row["timings"]),
            result=json.loads(row["result"]) if row["result"] else None,
            heartbeat=row["heartbeat"],
        )

    def create(
        self, owner: str, request: dict[str, Any], *, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        digest = request_hash(request)
        db = self._db()
        now = time.time()
        job = Job(uuid.uuid4().hex, owner, JobState.QUEUED, request, now, now)
        db.execute("BEGIN IMMEDIATE")  # serialises creators: the idempotency check and insert are one step
        try:
            if idempotency_key:
                row = db.execute(
                    "SELECT job_id, digest FROM idempotency WHERE owner = ? AND key = ?",
                    (owner, idempotency_key),
                ).fetchone()
                if row is not None:
                    db.execute("COMMIT")
                    if row["digest"] != digest:
                        raise IdempotencyConflictError(
                            f"idempotency key reused with a different body (job {row['job_id']})"
                        )
                    existing = self.get(row["job_id"])
                    if existing is None:
                        raise IdempotencyInProgressError(f"job {row['job_id']} is still being created")
                    return existing, False
                db.execute(
                    "INSERT INTO idempotency (owner, key, job_id, digest) VALUES (?, ?, ?, ?)",
                    (owner, idempotency_key, job.id, digest),
                )
            db.execute(
                "INSERT INTO jobs (id, owner, state, request, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (job.id, owner, job.state.value, json.dumps(request), now, now),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return job, True

    def get(self, job_id: str) -> Job | None:
        row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def queue_position(self, job_id: str) -> int | None:
        db = self._db()
        row = db.execute("SELECT state, created FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row["state"] != JobState.QUEUED.value:
            return None
        ahead = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE state = ? AND (created < ? OR (created = ? AND id < ?))",
            (JobState.QUEUED.value, row["created"], row["created"], job_id),
        ).fetchone()[0]
        return int(ahead)

    def list_jobs(
        self, owner: str, *, state: JobState | None = None, offset: int = 0, limit: int = 20
    ) -> tuple[list[Job], int]:
        where, args = "owner = ?", [owner]
        if state is not None:
            where += " AND state = ?"
            args.append(state.value)
        db = self._db()
        total = int(db.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", args).fetchone()[0])
        rows = db.execute(
            f"SELECT * FROM jobs WHERE {where} ORDER BY created DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return [self._job(r) for r in rows], total

    def count_queued(self, owner: str) -> int:
        row = (
            self._db()
            .execute(
                "SELECT COUNT(*) FROM jobs WHERE owner = ? AND state = ?", (owner, JobState.QUEUED.value)
            )
            .fetchone()
        )
        return int(row[0])

    def transition(self, job_id: str, to: JobState, **fields: Any) -> Job:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            job = self._job(row)
            if to not in TRANSITIONS[job.state]:
                raise TransitionRefusedError(f"job {job_id} is {job.state.value}; cannot become {to.value}")
            job.state = to
            job.updated = time.time()
            for name, value in fields.items():
                setattr(job, name, value)
            if to is JobState.RUNNING:
                job.heartbeat = job.updated
            self._write(db, job)
            db.execute("COMMIT")
            return job
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @staticmethod
    def _write(db: sqlite3.Connection, job: Job) -> None:
        db.execute(
            "UPDATE jobs SET state = ?, updated = ?, progress = ?, error = ?, timings = ?, result = ?, "
            "heartbeat = ? WHERE id = ?",
            (
                job.state.value,
                job.updated,
                json.dumps(job.progress),
                json.dumps(job.error) if job.error else None,
                json.dumps(job.timings),
                json.dumps(job.result) if job.result is not None else None,
                job.heartbeat,
                job.id,
            ),
        )

    def update(self, job_id: str, **fields: Any) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None and JobState(row["state"]) not in TERMINAL:
                job = self._job(row)
                for name, value in fields.items():
                    setattr(job, name, value)
                job.updated = time.time()
                self._write(db, job)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def heartbeat(self, job_id: str) -> None:
        self._db().execute("UPDATE jobs SET heartbeat = ? WHERE id = ?", (time.time(), job_id))

    def reap(self, stale_after_s: float, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        rows = (
            self._db()
            .execute("SELECT id, heartbeat, updated FROM jobs WHERE state = ?", (JobState.RUNNING.value,))
            .fetchall()
        )
        reaped = []
        for row in rows:
            beat = row["heartbeat"] or row["updated"]
            if now - beat > stale_after_s:
                error = {
                    "title": "worker lost",
                    "detail": f"no heartbeat for {now - beat:.0f} s",
                    "status": 500,
                }
                try:
                    self.transition(row["id"], JobState.FAILED, error=error)
                    reaped.append(row["id"])
                except TransitionRefusedError:
                    pass
        return reaped
