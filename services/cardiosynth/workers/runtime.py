"""What a worker process loads once: settings, stores, and the models of its kind.

Models load lazily in the worker process on first use (never at import and never in the parent of
a prefork pool), so CUDA, where present, is initialised only in the process that uses it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, TypeVar

import redis

from cardiosynth.jobs.base import JobStore
from cardiosynth.jobs.factory import open_job_store
from cardiosynth.storage.base import ObjectStore
from cardiosynth.workers.settings import WorkerSettings

if TYPE_CHECKING:  # torch and the models load in the worker process on first use, never at import
    from cardiosynth.synthesis.engine import Synthesizer

log = logging.getLogger(__name__)

T = TypeVar("T")
# The job store away for a moment (Redis restarting, the SQLite file locked): worth waiting for.
STORE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError,
                sqlite3.OperationalError)  # fmt: skip


def patiently(call: Callable[[], T], *, patience_s: float = 120.0) -> T:
    """``call()``, retried with a growing pause while the job store is unreachable, for up to
    ``patience_s``: a stage outlives a short store outage instead of failing the job (a Celery retry
    cannot even be queued while Redis, the broker too, is down)."""
    deadline, pause = time.monotonic() + patience_s, 0.5
    while True:
        try:
            return call()
        except STORE_ERRORS as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("job store unavailable (%s); retrying in %.1f s", type(exc).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


class JobCancelledError(Exception):
    """The job this worker works on was cancelled, finished elsewhere or is gone: stop, clean up."""


@cache
def settings() -> WorkerSettings:
    return WorkerSettings()


@cache
def jobs() -> JobStore:
    s = settings()
    return open_job_store(s.job_store(), prefix=s.job_prefix)


@cache
def storage() -> ObjectStore:
    return settings().build_storage()


@cache
def synthesizer(model: str, with_vae: bool, with_spade: bool) -> Synthesizer:
    """A :class:`Synthesizer` with the models this worker kind needs, loaded once per process."""
    from cardiosynth.data.default import cache_root, default_data
    from cardiosynth.models.registry import load_spade, load_vae
    from cardiosynth.synthesis.engine import Synthesizer

    s = settings()
    # The local registry first, then the object store (models pushed with `cardiosynth models push`).
    store, cache_dir = storage(), cache_root() / "models"
    vae = load_vae(model, root=s.model_root, store=store, cache_dir=cache_dir)
    spade = load_spade(model, root=s.model_root, store=store, cache_dir=cache_dir) if with_spade else None
    data = s.data_dir if s.data_dir is not None else default_data()
    log.info("loaded models %s (spade=%s) over %s", model, with_spade, data)
    return Synthesizer(
        vae.module,
        spade.module if spade is not None else None,
        data,
        model_versions={"vae": vae.version, "spade": spade.version if spade else model},
        cache_store=storage(),
        # Placed on the device once, here: every stage then moves its batch to the models' device.
        device=s.device,
        precision=None if s.precision == "auto" else s.precision,
        batch_size=s.batch_size,
        sampling_calibration_subjects=s.sampling_calibration_subjects,
        motion_calibration_subjects=s.motion_calibration_subjects,
    )


class StageLease:
    """The stage a worker holds: a thread beats the job's heartbeat for that stage only, and notes when
    the job stops being held (cancelled, finished elsewhere, gone) so the work can stop between batches."""

    def __init__(self, job_id: str, stage: str) -> None:
        self.job_id, self.stage = job_id, stage
        self.lost = threading.Event()

    def check(self) -> None:
        """Raise :class:`JobCancelledError` once the job is no longer held by this stage."""
        if self.lost.is_set() or not patiently(lambda: jobs().heartbeat(self.job_id, self.stage)):
            self.lost.set()
            raise JobCancelledError(self.job_id)


L = TypeVar("L", bound=StageLease)


@contextmanager
def _beating(
    lease: L, beat_once: Callable[[], bool], what: str, thread_name: str, every_s: float
) -> Iterator[L]:
    """Call ``beat_once`` every ``every_s`` from a daemon thread while the body runs; ``False`` (the
    job or lease is no longer held) marks ``lease`` lost and stops beating. A failed beat is logged,
    never fatal to the job."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                if not beat_once():
                    lease.lost.set()
                    return
            except Exception as exc:
                log.warning("%s failed: %s", what, exc)

    thread = threading.Thread(target=beat, name=thread_name, daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join(timeout=every_s)


@contextmanager
def heartbeat(job_id: str, stage: str, every_s: float) -> Iterator[StageLease]:
    """Beat ``job_id``'s heartbeat at ``stage`` from a thread while the body runs (the reaper fails
    held stages that go silent); the lease says when the job is no longer held."""
    with _beating(
        StageLease(job_id, stage),
        lambda: jobs().heartbeat(job_id, stage),
        f"heartbeat of {job_id}",
        f"heartbeat-{job_id[:8]}",
        every_s,
    ) as lease:
        yield lease


class ChunkLease(StageLease):
    """The lease of one task of a job's stage graph, ``(kind, index)``, held by ``token``."""

    def __init__(self, job_id: str, kind: str, index: int, token: str) -> None:
        super().__init__(job_id, kind)
        self.index, self.token = index, token

    def beat(self) -> bool:
        return patiently(lambda: jobs().beat_chunk(self.job_id, self.stage, self.index, self.token))

    def check(self) -> None:
        if self.lost.is_set() or not self.beat():
            self.lost.set()
            raise JobCancelledError(self.job_id)


@contextmanager
def chunk_lease(job_id: str, kind: str, index: int, token: str, every_s: float) -> Iterator[ChunkLease]:
    """Beat a graph task's lease from a thread while the body runs (the reaper redelivers a lease
    that goes silent); the lease notes when the job or the lease is no longer held."""
    with _beating(
        ChunkLease(job_id, kind, index, token),
        lambda: jobs().beat_chunk(job_id, kind, index, token),
        f"lease beat of {job_id} {kind}:{index}",
        f"lease-{job_id[:8]}-{kind}{index}",
        every_s,
    ) as lease:
        yield lease
