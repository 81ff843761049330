"""The Redis broker hands a dead worker's unacknowledged message back soon after its visibility
timeout, not up to 100 s later (Kombu's default sweep: every 10th check, 10 s apart)."""

from __future__ import annotations

from cardiosynth.jobs.celery_app import make_celery, transport_options
from cardiosynth.workers.settings import WorkerSettings


def test_every_check_sweeps_and_checks_come_within_the_visibility_timeout() -> None:
    settings = WorkerSettings(redis_url="redis://127.0.0.1:6379/0")
    short = transport_options(settings, 5)
    assert short == {"visibility_timeout": 5, "unacked_restore_throttle": 1, "unacked_restore_interval": 2}
    assert transport_options(settings, 4 * 3600)["unacked_restore_interval"] == 10  # at most 10 s apart
    assert transport_options(settings, 1)["unacked_restore_interval"] == 1
    app = make_celery(settings, visibility_timeout_s=5)
    assert app.conf.broker_transport_options == short
