"""Worker liveness beats (issue 15, item 4): a thread beats while the process is busy, a clean stop
forgets the worker, and the container health check reads the beat (fast: a SQLite job store)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.workers import liveness, runtime


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SqliteJobStore:
    jobs = SqliteJobStore(tmp_path / "jobs.db")
    monkeypatch.setattr(runtime, "jobs", lambda: jobs)
    return jobs


def test_a_busy_process_keeps_beating_and_a_stop_forgets_it(store: SqliteJobStore) -> None:
    assert liveness.main(["vae", "vae@host"]) == 1
    beat = liveness.LivenessBeat("vae@host", ["vae"], every_s=0.1, ttl_s=0.5)
    beat.start()
    try:
        time.sleep(1.5)  # the "stage": three times the ttl without the main thread beating
        assert store.live_workers() == {"vae": 1, "spade": 0}
        assert liveness.main(["vae", "vae@host"]) == 0
        assert liveness.main(["spade", "vae@host"]) == 1
    finally:
        beat.stop()
    assert store.live_workers() == {"vae": 0, "spade": 0}
    assert liveness.main(["vae", "vae@host"]) == 1
    assert liveness.main(["vae"]) == 2


def test_the_ttl_must_outlast_the_interval() -> None:
    with pytest.raises(ValueError, match="ttl"):
        liveness.LivenessBeat("vae@host", ["vae"], every_s=5, ttl_s=5)


def test_a_short_store_outage_is_waited_out_and_a_long_one_raises() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("store restarting")
        return "ok"

    assert runtime.patiently(flaky, patience_s=10) == "ok"
    assert len(calls) == 3

    def down() -> str:
        raise ConnectionError("store gone")

    started = time.monotonic()
    with pytest.raises(ConnectionError):
        runtime.patiently(down, patience_s=1.0)
    assert time.monotonic() - started < 3
