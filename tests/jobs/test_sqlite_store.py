"""What only the SQLite store has; the shared behaviour is in test_contract.py."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from cardiosynth.jobs.base import JobState
from cardiosynth.jobs.factory import open_job_store
from cardiosynth.jobs.sqlite_store import SqliteJobStore


def test_open_job_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_job_store(f"sqlite:///{tmp_path / 'jobs.db'}"), SqliteJobStore)
    with pytest.raises(ValueError, match="unsupported job store"):
        open_job_store("memcached://x")


def test_a_database_of_the_earlier_schema_gains_the_stage_column(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL, "
            "request TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, progress TEXT NOT NULL "
            "DEFAULT '{}', error TEXT, timings TEXT NOT NULL DEFAULT '{}', result TEXT, heartbeat REAL)"
        )
        db.execute("INSERT INTO jobs (id, owner, state, request, created, updated) "
                   "VALUES ('old', 'alice', 'running', '{}', 1.0, 1.0)")  # fmt: skip
    store = SqliteJobStore(path)
    old = store.get("old")
    assert old is not None
    assert (old.state, old.stage) == (JobState.RUNNING, "vae")
    assert store.heartbeat("old", "vae")


def _create(path: str, key: str, out: multiprocessing.Queue[str]) -> None:
    job, _ = SqliteJobStore(Path(path)).create("alice", {"n": 1}, idempotency_key=key)
    out.put(job.id)


def test_concurrent_processes_share_one_job_per_idempotency_key(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    SqliteJobStore(Path(path))
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_create, args=(path, "same", out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    ids = {out.get(timeout=10) for _ in procs}
    assert len(ids) == 1
