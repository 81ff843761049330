"""The Redis broker hands a dead worker's unacknowledged message back soon after its visibility
timeout, not up to 100 s later (Kombu's default sweep: every 10th check, 10 s apart); the embedded
filesystem broker broadcasts a cancel's revoke while workers bind."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cardiosynth.config import CommonSettings
from cardiosynth.jobs.celery_app import PIDBOX_EXCHANGE, make_celery, transport_options
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.workers.settings import WorkerSettings


def test_every_check_sweeps_and_checks_come_within_the_visibility_timeout() -> None:
    settings = WorkerSettings(redis_url="redis://127.0.0.1:6379/0")
    short = transport_options(settings, 5)
    assert short == {"visibility_timeout": 5, "unacked_restore_throttle": 1, "unacked_restore_interval": 2}
    assert transport_options(settings, 4 * 3600)["unacked_restore_interval"] == 10  # at most 10 s apart
    assert transport_options(settings, 1)["unacked_restore_interval"] == 1
    app = make_celery(settings, visibility_timeout_s=5)
    assert app.conf.broker_transport_options == short


def test_the_filesystem_broker_can_broadcast_while_a_worker_binds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kombu creates the broadcast exchange's table empty, then writes it: a revoke reading it in
    between failed to parse it, and DELETE /datasets/{id} answered 500 (seen in CI's embedded stack).
    The table is seeded whole before any worker binds; and a revoke that fails still cancels."""
    settings = CommonSettings(broker_url="filesystem://", broker_folder=tmp_path)
    app = make_celery(settings)
    table = tmp_path / "control" / f"{PIDBOX_EXCHANGE}.exchange"
    assert json.loads(table.read_text()) == []
    assert [p.name for p in (tmp_path / "control").iterdir()] == [table.name]  # no file left aside
    app.control.revoke(["a-task"], terminate=True)  # no worker bound yet: nothing to send, no error
    store = SqliteJobStore(tmp_path / "jobs.db")
    job, _ = store.create("owner", {"pathology": "HCM", "n": 1})
    table.write_text("")  # a table mid-creation, as Kombu leaves it for a moment
    with caplog.at_level(logging.WARNING):
        CeleryDispatcher(app, store).cancel(job.id)
    assert f"job {job.id} cancelled; its tasks not revoked (JSONDecodeError" in caplog.text
