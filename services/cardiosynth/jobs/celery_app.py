"""The Celery application: two explicitly declared queues and the reliability settings. Built the
same way by the gateway (to send tasks by name) and the workers (to run them), so it lives below both.

- ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies (SIGKILL, OOM) is redelivered;
- prefetch 1: a worker holds one long task at a time, others stay free for other workers;
- the Redis visibility timeout is longer than the longest stage, or Redis would hand a running task
  to a second worker;
- no result backend: job state lives in the project's job store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from cardiosynth.config import CommonSettings
from cardiosynth.queues import (
    ARCHIVE_QUEUE,
    ARCHIVE_TASK,
    DATASET_QUEUE,
    DATASET_TASK,
    FAILURE_TASK,
    FINALIZE_TASK,
    SPADE_CHUNK_TASK,
    SPADE_QUEUE,
    SPADE_TASK,
    STATS_TASK,
    VAE_CHUNK_TASK,
    VAE_QUEUE,
    VAE_TASK,
)

DEFAULT_VISIBILITY_TIMEOUT_S = 4 * 3600


# Celery's broadcast exchange (control_exchange "celery" + ".pidbox"): revoke() sends over it.
PIDBOX_EXCHANGE = "celery.pidbox"


def _seed_exchange_table(path: Path) -> None:
    """Create the filesystem broker's table of the queues bound to an exchange, empty, if there is none.

    Kombu's filesystem transport creates the table when the first queue binds, by opening it for
    writing (empty) before it locks and writes it; a broadcast reading it in between (a cancel's
    revoke while a worker starts) fails to parse an empty file, and two workers binding at once can
    each truncate the other's entry. A table that already exists is only ever read and rewritten
    under its lock. It appears here whole: written aside, then linked into place (no overwrite)."""
    if path.exists():
        return
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    aside.write_text("[]", encoding="utf-8")
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # another process seeded it first
    finally:
        aside.unlink(missing_ok=True)


def transport_options(settings: CommonSettings, visibility_timeout_s: int) -> dict[str, Any]:
    """Broker transport options: the visibility timeout for Redis; folders for the embedded broker
    (Kombu's filesystem transport, which works across the processes of one machine)."""
    if settings.broker().startswith("filesystem://"):
        if settings.broker_folder is None:
            raise ValueError("the filesystem:// broker needs CARDIOSYNTH_BROKER_FOLDER")
        root = settings.broker_folder
        for sub in ("queue", "control", "processed"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        _seed_exchange_table(root / "control" / f"{PIDBOX_EXCHANGE}.exchange")
        return {
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "control_folder": str(root / "control"),
            "processed_folder": str(root / "processed"),
            "store_processed": False,
        }
    # Kombu sweeps a dead worker's unacknowledged messages back onto the queue only on every
    # ``unacked_restore_throttle``-th check, ``unacked_restore_interval`` seconds apart: 10 x 10 s by
    # default, so a message became redeliverable up to 100 s after its visibility timeout. Every
    # check scans: one small sorted-set read per worker, guarded by Kombu's mutex.
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_throttle": 1,
        "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 2)),
    }


def make_celery(settings: CommonSettings, *, visibility_timeout_s: int | None = None) -> Celery:
    """The app over ``settings``' broker; the visibility timeout is the settings' (the workers') own
    unless given."""
    if visibility_timeout_s is None:
        visibility_timeout_s = getattr(settings, "visibility_timeout_s", DEFAULT_VISIBILITY_TIMEOUT_S)
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
            DATASET_TASK: {"queue": DATASET_QUEUE, "routing_key": DATASET_QUEUE},
            # The stage graph (issue 13): statistics and VAE chunks need the VAE, SPADE chunks SPADE;
            # finalize needs no model and follows the last SPADE chunk.
            STATS_TASK: {"queue": VAE_QUEUE, "routing_key": VAE_QUEUE},
            VAE_CHUNK_TASK: {"queue": VAE_QUEUE, "routing_key": VAE_QUEUE},
            SPADE_CHUNK_TASK: {"queue": SPADE_QUEUE, "routing_key": SPADE_QUEUE},
            FINALIZE_TASK: {"queue": SPADE_QUEUE, "routing_key": SPADE_QUEUE},
            ARCHIVE_TASK: {"queue": ARCHIVE_QUEUE, "routing_key": ARCHIVE_QUEUE},  # why: see queues.py
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
