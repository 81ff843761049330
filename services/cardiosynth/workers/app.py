"""The Celery application: two explicitly declared queues and the reliability settings.

- ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies (SIGKILL, OOM) is redelivered;
- prefetch 1: a worker holds one long task at a time, others stay free for other workers;
- the Redis visibility timeout is longer than the longest stage, or Redis would hand a running task
  to a second worker;
- no result backend: job state lives in the project's job store.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from cardiosynth.workers.settings import WorkerSettings

VAE_QUEUE = "vae"
SPADE_QUEUE = "spade"
VAE_TASK = "cardiosynth.vae_stage"
SPADE_TASK = "cardiosynth.spade_stage"
FAILURE_TASK = "cardiosynth.job_failed"


def make_celery(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or WorkerSettings()
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
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    )
    return app
