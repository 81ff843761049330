"""The job-store fixture the contract tests share: every test that takes ``store`` runs against both
implementations, Redis and SQLite (a module may still define its own ``store``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardiosynth.jobs.base import JobStore
from cardiosynth.jobs.factory import open_job_store


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return open_job_store(url, prefix=request.getfixturevalue("redis_prefix"))
    return open_job_store(f"sqlite:///{tmp_path / 'jobs.db'}")
