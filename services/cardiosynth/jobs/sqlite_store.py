"""The job store in one SQLite file, for the embedded mode (no Redis): the same records, states,
idempotency rules, queue cap, reaper and worker liveness as the Redis store (one
:class:`cardiosynth.jobs.base.JobStore` protocol, one contract test), shared by the gateway and
worker processes through SQLite's locking (WAL journal). Every check-then-write runs inside
``BEGIN IMMEDIATE``, which serialises writers across processes."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cardiosynth.jobs.base import (
    TERMINAL,
    TRANSITIONS,
    ChunkPlan,
    GraphState,
    IdempotencyConflictError,
    Job,
    JobState,
    QueueFullError,
    StoredBytesQuotaError,
    SubjectQuotaError,
    TransitionRefusedError,
    graph_progress,
    idempotency_digest,
    quota_detail,
    request_hash,
    stale_error,
    stored_detail,
)
from cardiosynth.queues import GRAPH_STAGE, STAGES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL, request TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, progress TEXT NOT NULL DEFAULT '{}',
    error TEXT, timings TEXT NOT NULL DEFAULT '{}', result TEXT, heartbeat REAL,
    stage TEXT NOT NULL DEFAULT 'vae', attempts INTEGER NOT NULL DEFAULT 0, expired_at REAL,
    weight INTEGER NOT NULL DEFAULT 0, stored_bytes INTEGER NOT NULL DEFAULT 0, archive TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS workers (
    queue TEXT NOT NULL, name TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (queue, name)
);
CREATE TABLE IF NOT EXISTS graphs (
    job_id TEXT PRIMARY KEY, count INTEGER NOT NULL, size INTEGER NOT NULL, subjects INTEGER NOT NULL,
    subjects_done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS graph_marks (
    job_id TEXT NOT NULL, name TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (job_id, name, idx)
);
CREATE TABLE IF NOT EXISTS graph_tasks (
    job_id TEXT NOT NULL, kind TEXT NOT NULL, idx INTEGER NOT NULL, token TEXT, beat REAL,
    done INTEGER NOT NULL DEFAULT 0, seconds REAL, worker TEXT, PRIMARY KEY (job_id, kind, idx)
);
"""


class SqliteJobStore:
    """Job records in a SQLite database file (implements :class:`cardiosynth.jobs.base.JobStore`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
        if "stage" not in columns:  # a database of an earlier version
            db.execute("ALTER TABLE jobs ADD COLUMN stage TEXT NOT NULL DEFAULT 'vae'")
        if "attempts" not in columns:
            db.execute("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
        if "expired_at" not in columns:
            db.execute("ALTER TABLE jobs ADD COLUMN expired_at REAL")
        if "weight" not in columns:
            db.execute("ALTER TABLE jobs ADD COLUMN weight INTEGER NOT NULL DEFAULT 0")
        if "stored_bytes" not in columns:
            db.execute("ALTER TABLE jobs ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0")
        if "archive" not in columns:
            db.execute("ALTER TABLE jobs ADD COLUMN archive TEXT")

    def _db(self) -> sqlite3.Connection:
        # One connection per thread (sqlite3 connections must not cross threads).
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken before the first read: check and write are one step."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

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
            stage=row["stage"] or STAGES[0],
            attempts=int(row["attempts"] or 0),
            expired_at=row["expired_at"],
            weight=int(row["weight"] or 0),
            stored_bytes=int(row["stored_bytes"] or 0),
            archive=json.loads(row["archive"]) if row["archive"] else None,
        )

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
        digest = request_hash(request)
        key = idempotency_digest(idempotency_key) if idempotency_key else None
        now = time.time()
        job = Job(uuid.uuid4().hex, owner, JobState.QUEUED, request, now, now, weight=weight, stage=stage)
        with self._immediate() as db:
            if key is not None:  # before the cap: a retry of an accepted job is never refused
                row = db.execute(
                    "SELECT job_id, digest FROM idempotency WHERE owner = ? AND key = ?", (owner, key)
                ).fetchone()
                if row is not None:
                    if row["digest"] != digest:
                        raise IdempotencyConflictError(
                            f"idempotency key reused with a different body (job {row['job_id']})"
                        )
                    found = db.execute("SELECT * FROM jobs WHERE id = ?", (row["job_id"],)).fetchone()
                    if found is not None:
                        return self._job(found), False
                    # The key's job is gone: release the key and create the job anew (as Redis does).
                    db.execute("DELETE FROM idempotency WHERE owner = ? AND key = ?", (owner, key))
            if max_queued is not None:
                queued = db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE owner = ? AND state = ?", (owner, JobState.QUEUED.value)
                ).fetchone()[0]
                if queued >= max_queued:
                    raise QueueFullError(f"{max_queued} jobs already queued for this key")
            if max_subjects is not None:
                in_flight = int(
                    db.execute(
                        "SELECT COALESCE(SUM(weight), 0) FROM jobs WHERE owner = ? AND state IN (?, ?)",
                        (owner, JobState.QUEUED.value, JobState.RUNNING.value),
                    ).fetchone()[0]
                )
                if in_flight + weight > max_subjects:
                    raise SubjectQuotaError(quota_detail(in_flight, weight, max_subjects))
            if max_stored_bytes is not None:
                # Succeeded jobs whose files are still there: expiry sets expired_at, purge deletes the row.
                stored = int(
                    db.execute(
                        "SELECT COALESCE(SUM(stored_bytes), 0) FROM jobs "
                        "WHERE owner = ? AND state = ? AND expired_at IS NULL",
                        (owner, JobState.SUCCEEDED.value),
                    ).fetchone()[0]
                )
                if stored >= max_stored_bytes:
                    raise StoredBytesQuotaError(stored_detail(stored, max_stored_bytes))
            if key is not None:
                db.execute(
                    "INSERT INTO idempotency (owner, key, job_id, digest) VALUES (?, ?, ?, ?)",
                    (owner, key, job.id, digest),
                )
            db.execute(
                "INSERT INTO jobs (id, owner, state, request, created, updated, stage, weight) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, owner, job.state.value, json.dumps(request), now, now, job.stage, weight),
            )
        return job, True

    def get(self, job_id: str, *, result: bool = True) -> Job | None:
        columns = "*" if result else self._without_result()
        row = self._db().execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def _without_result(self) -> str:
        """Every column but the result (megabytes for a large job's file list), which reads as NULL."""
        names = [r["name"] for r in self._db().execute("PRAGMA table_info(jobs)") if r["name"] != "result"]
        return ", ".join(names) + ", NULL AS result"

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
            f"SELECT {self._without_result()} FROM jobs WHERE {where} ORDER BY created DESC LIMIT ? OFFSET ?",
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
        with self._immediate() as db:
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
            job.heartbeat = job.updated if to is JobState.RUNNING else None
            self._write(db, job)
        return job

    @staticmethod
    def _write(db: sqlite3.Connection, job: Job) -> None:
        db.execute(
            "UPDATE jobs SET state = ?, updated = ?, progress = ?, error = ?, timings = ?, result = ?, "
            "heartbeat = ?, stage = ?, attempts = ?, stored_bytes = ? WHERE id = ?",
            (
                job.state.value,
                job.updated,
                json.dumps(job.progress),
                json.dumps(job.error) if job.error else None,
                json.dumps(job.timings),
                json.dumps(job.result) if job.result is not None else None,
                job.heartbeat,
                job.stage,
                job.attempts,
                job.stored_bytes,
                job.id,
            ),
        )

    def update(self, job_id: str, **fields: Any) -> bool:
        with self._immediate() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or JobState(row["state"]) in TERMINAL:
                return False
            job = self._job(row)
            for name, value in fields.items():
                setattr(job, name, value)
            job.updated = time.time()
            self._write(db, job)
        return True

    def heartbeat(self, job_id: str, stage: str) -> bool:
        cursor = self._db().execute(
            "UPDATE jobs SET heartbeat = ? WHERE id = ? AND state = ? AND stage = ?",
            (time.time(), job_id, JobState.RUNNING.value, stage),
        )
        return cursor.rowcount > 0

    def stale_jobs(self, stale_after_s: float, *, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        cutoff = now - stale_after_s
        # A graph job is stale when one of its leases is (its chunks waiting in a queue hold none), or
        # when it has no plan yet and its heartbeat is silent (only stats runs before the plan).
        rows = (
            self._db()
            .execute(
                "SELECT * FROM jobs WHERE state = ? AND ("
                "(stage != ? AND COALESCE(heartbeat, updated) < ?) OR (stage = ? AND (EXISTS ("
                "SELECT 1 FROM graph_tasks t WHERE t.job_id = jobs.id AND t.token IS NOT NULL "
                "AND t.beat < ?) OR (NOT EXISTS (SELECT 1 FROM graphs g WHERE g.job_id = jobs.id) "
                "AND COALESCE(heartbeat, updated) < ?))))",
                (JobState.RUNNING.value, GRAPH_STAGE, cutoff, GRAPH_STAGE, cutoff, cutoff),
            )
            .fetchall()
        )
        return [self._job(row) for row in rows]

    def reap(self, stale_after_s: float, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        reaped = []
        for job in self.stale_jobs(stale_after_s, now=now):
            try:
                silent = now - (job.heartbeat or job.updated)
                self.transition(job.id, JobState.FAILED, error=stale_error(silent))
                reaped.append(job.id)
            except (TransitionRefusedError, KeyError):
                pass
        return reaped

    def finished_before(self, cutoff: float, *, limit: int = 100) -> list[Job]:
        terminal = [s.value for s in TERMINAL]
        rows = self._db().execute(
            f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(terminal))}) AND expired_at IS NULL "
            "AND updated < ? ORDER BY updated LIMIT ?",
            (*terminal, cutoff, limit),
        )
        return [self._job(row) for row in rows.fetchall()]

    def mark_expired(self, job_id: str, at: float) -> bool:
        terminal = [s.value for s in TERMINAL]
        cursor = self._db().execute(
            f"UPDATE jobs SET expired_at = ? WHERE id = ? AND expired_at IS NULL "
            f"AND state IN ({','.join('?' * len(terminal))})",
            (at, job_id, *terminal),
        )
        return cursor.rowcount > 0

    def purge(self, job_id: str) -> bool:
        with self._immediate() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            if JobState(row["state"]) not in TERMINAL:
                raise TransitionRefusedError(f"job {job_id} is {row['state']}; cancel it before purging")
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM idempotency WHERE job_id = ?", (job_id,))
            for table in ("graphs", "graph_marks", "graph_tasks"):
                db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
        return True

    def set_archive(
        self, job_id: str, archive: dict[str, Any], *, unless: tuple[str, ...] = ()
    ) -> tuple[dict[str, Any] | None, bool]:
        with self._immediate() as db:  # a column of its own: _write (transitions) never touches it
            row = db.execute("SELECT state, expired_at, archive FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] != JobState.SUCCEEDED.value or row["expired_at"] is not None:
                return None, False
            current = json.loads(row["archive"]) if row["archive"] else None
            if current is not None and current.get("state") in unless:
                return current, False
            db.execute("UPDATE jobs SET archive = ? WHERE id = ?", (json.dumps(archive), job_id))
        return archive, True

    # -- the stage graph --------------------------------------------------------------------------

    @staticmethod
    def _live(db: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None or JobState(row["state"]) in TERMINAL else row

    def plan_chunks(self, job_id: str, plan: ChunkPlan) -> ChunkPlan | None:
        with self._immediate() as db:
            if self._live(db, job_id) is None:
                return None
            inserted = db.execute(
                "INSERT OR IGNORE INTO graphs (job_id, count, size, subjects) VALUES (?, ?, ?, ?)",
                (job_id, plan.count, plan.size, plan.subjects),
            ).rowcount
            row = db.execute("SELECT * FROM graphs WHERE job_id = ?", (job_id,)).fetchone()
            recorded = ChunkPlan(int(row["count"]), int(row["size"]), int(row["subjects"]))
            if inserted:
                db.execute("UPDATE jobs SET progress = ? WHERE id = ?",
                           (json.dumps(graph_progress(recorded, {}, 0)), job_id))  # fmt: skip
        return recorded

    def take_chunk(self, job_id: str, kind: str, index: int, token: str, stale_after_s: float) -> str:
        now = time.time()
        with self._immediate() as db:
            row = self._live(db, job_id)
            if row is None:
                return "gone"
            task = db.execute("SELECT * FROM graph_tasks WHERE job_id = ? AND kind = ? AND idx = ?",
                              (job_id, kind, index)).fetchone()  # fmt: skip
            if task is not None and task["done"]:
                return "done"
            if task is not None and task["token"] is not None:
                mine = task["token"].rpartition(":")[0] == token.rpartition(":")[0]
                if not mine and now - task["beat"] < stale_after_s:
                    return "held"
            db.execute(
                "INSERT INTO graph_tasks (job_id, kind, idx, token, beat) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (job_id, kind, idx) DO UPDATE SET token = excluded.token, beat = excluded.beat",
                (job_id, kind, index, token, now),
            )
            if row["state"] == JobState.QUEUED.value:
                db.execute("UPDATE jobs SET state = ?, stage = ?, heartbeat = ?, updated = ? WHERE id = ?",
                           (JobState.RUNNING.value, GRAPH_STAGE, now, now, job_id))  # fmt: skip
            else:
                db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ?", (now, job_id))
        return "taken"

    def beat_chunk(self, job_id: str, kind: str, index: int, token: str) -> bool:
        now = time.time()
        with self._immediate() as db:
            if self._live(db, job_id) is None:
                return False
            changed = db.execute(
                "UPDATE graph_tasks SET beat = ? WHERE job_id = ? AND kind = ? AND idx = ? AND token = ?",
                (now, job_id, kind, index, token),
            ).rowcount
            if changed:
                db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ?", (now, job_id))
        return bool(changed)

    def mark_stage(self, job_id: str, stage: str, index: int, subjects: int = 0) -> bool:
        with self._immediate() as db:
            graph = db.execute("SELECT * FROM graphs WHERE job_id = ?", (job_id,)).fetchone()
            if self._live(db, job_id) is None or graph is None:
                return False
            added = db.execute("INSERT OR IGNORE INTO graph_marks (job_id, name, idx) VALUES (?, ?, ?)",
                               (job_id, f"stage:{stage}", index)).rowcount  # fmt: skip
            if added and subjects:
                db.execute("UPDATE graphs SET subjects_done = subjects_done + ? WHERE job_id = ?",
                           (subjects, job_id))  # fmt: skip
            counts = {
                r["name"].removeprefix("stage:"): int(r["n"])
                for r in db.execute(
                    "SELECT name, COUNT(*) AS n FROM graph_marks WHERE job_id = ? GROUP BY name", (job_id,)
                )
            }
            done = db.execute("SELECT subjects_done FROM graphs WHERE job_id = ?", (job_id,)).fetchone()[0]
            plan = ChunkPlan(int(graph["count"]), int(graph["size"]), int(graph["subjects"]))
            progress = json.dumps(graph_progress(plan, counts, int(done)))
            now = time.time()
            db.execute("UPDATE jobs SET progress = ?, updated = ? WHERE id = ?", (progress, now, job_id))
        return True

    def finish_chunk(
        self, job_id: str, kind: str, index: int, token: str, seconds: float, worker: str
    ) -> int | None:
        with self._immediate() as db:
            if self._live(db, job_id) is None:
                return None
            task = db.execute("SELECT * FROM graph_tasks WHERE job_id = ? AND kind = ? AND idx = ?",
                              (job_id, kind, index)).fetchone()  # fmt: skip
            if task is None:
                db.execute("INSERT INTO graph_tasks (job_id, kind, idx, done, seconds, worker) "
                           "VALUES (?, ?, ?, 1, ?, ?)", (job_id, kind, index, seconds, worker))  # fmt: skip
            elif not task["done"]:
                db.execute("UPDATE graph_tasks SET done = 1, seconds = ?, worker = ? "
                           "WHERE job_id = ? AND kind = ? AND idx = ?",
                           (seconds, worker, job_id, kind, index))  # fmt: skip
            db.execute("UPDATE graph_tasks SET token = NULL, beat = NULL "
                       "WHERE job_id = ? AND kind = ? AND idx = ? AND token = ?",
                       (job_id, kind, index, token))  # fmt: skip
            count = db.execute("SELECT COUNT(*) FROM graph_tasks WHERE job_id = ? AND kind = ? AND done = 1",
                               (job_id, kind)).fetchone()[0]  # fmt: skip
        return int(count)

    def graph(self, job_id: str) -> GraphState | None:
        db = self._db()
        row = db.execute("SELECT * FROM graphs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        state = GraphState(ChunkPlan(int(row["count"]), int(row["size"]), int(row["subjects"])), {}, {}, {},
                           int(row["subjects_done"]))  # fmt: skip
        for task in db.execute("SELECT * FROM graph_tasks WHERE job_id = ?", (job_id,)):
            key = (str(task["kind"]), int(task["idx"]))
            if task["token"] is not None:
                state.held[key] = float(task["beat"])
            if task["done"]:
                state.done.setdefault(key[0], set()).add(key[1])
                state.seconds[key] = (float(task["seconds"] or 0.0), str(task["worker"] or ""))
        return state

    def release_stale_chunks(
        self, job_id: str, stale_after_s: float, *, now: float | None = None
    ) -> list[tuple[str, int]]:
        cutoff = (time.time() if now is None else now) - stale_after_s
        with self._immediate() as db:
            rows = db.execute(
                "SELECT kind, idx FROM graph_tasks WHERE job_id = ? AND token IS NOT NULL AND beat < ?",
                (job_id, cutoff),
            ).fetchall()
            db.execute("UPDATE graph_tasks SET token = NULL, beat = NULL "
                       "WHERE job_id = ? AND token IS NOT NULL AND beat < ?", (job_id, cutoff))  # fmt: skip
        return sorted((str(r["kind"]), int(r["idx"])) for r in rows)

    def worker_beat(self, queue: str, worker: str, ttl_s: float) -> None:
        now = time.time()  # one machine in the embedded mode: one clock
        with self._immediate() as db:
            db.execute("DELETE FROM workers WHERE expires <= ?", (now,))
            db.execute(
                "INSERT INTO workers (queue, name, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (queue, name) DO UPDATE SET expires = excluded.expires",
                (queue, worker, now + ttl_s),
            )

    def worker_gone(self, queue: str, worker: str) -> None:
        self._db().execute("DELETE FROM workers WHERE queue = ? AND name = ?", (queue, worker))

    def live_workers(self) -> dict[str, int]:
        rows = self._db().execute(
            "SELECT queue, COUNT(*) AS n FROM workers WHERE expires > ? GROUP BY queue", (time.time(),)
        )
        counts = dict.fromkeys(STAGES, 0)
        counts.update({row["queue"]: int(row["n"]) for row in rows})
        return counts

    def worker_live(self, queue: str, worker: str) -> bool:
        row = self._db().execute(
            "SELECT 1 FROM workers WHERE queue = ? AND name = ? AND expires > ?", (queue, worker, time.time())
        )
        return row.fetchone() is not None
