"""The Celery application: two explicitly declared queues and the reliability settings.

- ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies (SIGKILL, OOM) is redelivered;
- prefetch 1: a worker holds one long task at a time, others stay free for other workers;
- the Redis visibility timeout is longer than the longest stage, or Redis would hand a running task
  to a second worker;
- no result backend: job state lives in the project's job store.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from cardiosynth.config import CommonSettings
from cardiosynth.workers.settings import WorkerSettings

VAE_QUEUE = "vae"
SPADE_QUEUE = "spade"
VAE_TASK = "cardiosynth.vae_stage"
SPADE_TASK = "cardiosynth.spade_stage"
FAILURE_TASK = "cardiosynth.job_failed"


def transport_options(settings: CommonSettings, visibility_timeout_s: int) -> dict[str, Any]:
    """Broker transport options: the visibility timeout for Redis; folders for the embedded broker
    (Kombu's filesystem transport, which works across the processes of one machine)."""
    if settings.broker().startswith("filesystem://"):
        if settings.broker_folder is None:
            raise ValueError("the filesystem:// broker needs CARDIOSYNTH_BROKER_FOLDER")
        root = settings.broker_folder
        for sub in ("queue", "control", "processed"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "control_folder": str(root / "control"),
            "processed_folder": str(root / "processed"),
            "store_processed": False,
        }
    return {"visibility_timeout": visibility_timeout_s}


def make_celery(settings: CommonSettings | None = None, *, visibility_timeout_s: int | None = None) -> Celery:
    settings = settings or WorkerSettings()
    if visibility_timeout_s is None:
        visibility_timeout_s = getattr(settings, "visibility_timeout_s", 4 * 3600)
    app = Celery("cardiosynth", broker=settings.broker())
    exchange = Exchange("cardiosynth", type="direct")
    app.conf.update(
        task_queues=(
            Queue(VAE_QUEUE, exchange, routing_key=VAE_QUEUE),
            Queue(SPADE_QUEUE, exchange, routing_key=SPADE_QUEUE),
        ),
        task_routes={
            VAE_TASK: {"queue": VAE_QUEUE, "routing_key": VAE_QUEUE},
            FAILURE_TASK: {"queue": VAE_QUEUE, "routing_key": VAE_QUEUE},
            SPADE_TASK: {"queue": SPADE_QUEUE, "routing_key": SPADE_QUEUE},
        },
        task_default_exchange="cardiosynth",
        task_create_missing_queues=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings, visibility_timeout_s),
    )
    return app
