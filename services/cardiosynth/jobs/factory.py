"""Open the job store a URL names (the one place that knows both implementations)."""

from __future__ import annotations

from pathlib import Path

import redis

from cardiosynth.jobs.base import JobStore
from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.jobs.store import RedisJobStore


def open_job_store(url: str, *, prefix: str = "cs") -> JobStore:
    """``redis://...`` -> :class:`RedisJobStore`; ``sqlite:///path/jobs.db`` -> :class:`SqliteJobStore`."""
    if url.startswith("sqlite:///"):
        return SqliteJobStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("redis://", "rediss://", "unix://")):
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        return RedisJobStore(client, prefix=prefix)
    raise ValueError(f"unsupported job store URL {url!r}: use redis://... or sqlite:///path")
