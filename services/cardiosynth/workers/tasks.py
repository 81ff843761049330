"""The two stages of a job as Celery tasks. Thin: read the job, call the engine, write, report.

Object keys are deterministic per job and subject, so a redelivered task overwrites its own outputs
and never duplicates them. A job becomes ``succeeded`` only after every output file is stored.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery, Task

from cardiosynth.errors import public_detail
from cardiosynth.jobs.base import TERMINAL, Job, JobState, TransitionRefusedError
from cardiosynth.jobs.celery_app import make_celery
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.queues import FAILURE_TASK, SPADE_TASK, VAE_TASK
from cardiosynth.storage.base import StorageError
from cardiosynth.workers import heap, liveness, runtime
from cardiosynth.workers.runtime import JobCancelledError, StageLease

if TYPE_CHECKING:  # the engine (numpy, torch) loads in the worker process on first use
    from cardiosynth.synthesis.engine import Progress, SynthesisRequest

log = logging.getLogger(__name__)
LIVENESS = liveness.LivenessBeat  # imported for its signal handlers: every worker beats its liveness
HEAP = heap.release_freed_memory  # imported for its signal handler: freed memory returned after each task

celery_app: Celery = make_celery(runtime.settings())

# Transient errors only (storage or job store unreachable) are retried, with exponential backoff and
# jitter; bad input or a bug fails the job at once through the chain's errback.
TRANSIENT = (StorageError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 5,
}


def work_key(job_id: str) -> str:
    return f"jobs/{job_id}/work/labels.npz"


def output_key(job_id: str, subject: str, name: str) -> str:
    return f"jobs/{job_id}/{subject}/{name}"


def request_of(job_request: dict[str, Any]) -> SynthesisRequest:
    """The API request body -> :class:`SynthesisRequest`."""
    from cardiosynth.data.labels import parse_group
    from cardiosynth.synthesis.engine import SynthesisRequest
    from cardiosynth.synthesis.modes import DEFAULT_CORRELATION, DEFAULT_INTERPOLATION

    severities = (
        SynthesisRequest.trajectory(job_request["trajectory"])
        if job_request.get("trajectory")
        else (float(job_request.get("severity") or 1.0),)
    )
    return SynthesisRequest(
        pathology=parse_group(job_request["pathology"]),
        n=int(job_request["n"]),
        seed=int(job_request.get("seed", 0)),
        severities=severities,
        correlation=job_request.get("correlation", DEFAULT_CORRELATION),
        interpolation=job_request.get("interpolation", DEFAULT_INTERPOLATION),
        phases=tuple(job_request.get("phases", ("ED", "ES"))),
        base_subjects=tuple(job_request.get("base_subjects", ())),
        territory=job_request.get("territory"),
    )


def _active(job_id: str) -> Job | None:
    """The job, or ``None`` when it is gone or already finished (cancelled, say): nothing to do."""
    job = runtime.patiently(lambda: runtime.jobs().get(job_id))
    if job is None or job.state in TERMINAL:
        log.info("job %s is %s: skipping", job_id, job.state.value if job else "gone")
        if job is None or job.state is JobState.CANCELLED:
            _discard(job_id)  # what an earlier stage wrote (the work file) goes with the job
        return None
    return job


def _hold(job: Job, stage: str, *, retry: bool = False) -> bool:
    """Take ``stage`` of ``job``: ``queued`` there -> ``running``. A stage already ``running`` with a
    stale heartbeat is a broker redelivery after its worker died (taken over), as is this task's own
    retry (``retry``); with a fresh one, a live worker holds it and this delivery is a duplicate.
    ``False`` (leave the job alone) for a duplicate, a late delivery of a stage already done, or one
    that comes before the job reached this stage. Raises :class:`JobCancelledError` when the job was
    cancelled or is gone."""
    if job.stage != stage:
        log.info("job %s is at its %s stage: a delivery of %s skipped", job.id, job.stage, stage)
        return False
    try:
        if job.state is JobState.QUEUED:
            runtime.patiently(lambda: runtime.jobs().transition(job.id, JobState.RUNNING, stage=stage))
        elif (
            not retry
            and job.heartbeat is not None
            and time.time() - job.heartbeat < 3 * runtime.settings().heartbeat_s
        ):
            log.info("job %s: its %s stage is held by a live worker; duplicate skipped", job.id, stage)
            return False
    except (TransitionRefusedError, KeyError):
        raise JobCancelledError(job.id) from None
    if not runtime.patiently(lambda: runtime.jobs().heartbeat(job.id, stage)):
        raise JobCancelledError(job.id)
    return True


def _stopped(job_id: str, stage: str) -> None:
    """The stage stopped because the job is no longer held by it: a cancelled, failed or lost job's
    files are removed; a stage redelivered to another worker keeps them (that worker overwrites)."""
    job = runtime.jobs().get(job_id)
    if job is None or job.state in (JobState.CANCELLED, JobState.FAILED):
        state = job.state.value if job else "gone"
        log.info("job %s is %s during its %s stage: stopped", job_id, state, stage)
        _discard(job_id)
    else:
        log.warning("job %s: the %s stage was handed to another worker: this attempt stopped", job_id, stage)


def _move(job_id: str, to: JobState, **fields: Any) -> None:
    """A transition by the stage holder; a job cancelled or gone meanwhile stops the stage."""
    try:
        runtime.patiently(lambda: runtime.jobs().transition(job_id, to, **fields))
    except (TransitionRefusedError, KeyError):
        raise JobCancelledError(job_id) from None


def _discard(job_id: str) -> None:
    """Remove everything a cancelled (or lost) job wrote: outputs and work files."""
    store = runtime.storage()
    keys = store.list_keys(f"jobs/{job_id}/")
    for key in keys:
        store.delete(key)
    if keys:
        log.info("job %s: removed %d stored files", job_id, len(keys))


def _progress(job_id: str, progress: dict[str, Any], lease: StageLease) -> Progress:
    """The engine's progress callback; also the cooperative cancellation point between batches."""

    def report(stage: str, done: int, total: int) -> None:
        progress[stage] = {"done": done, "total": total}
        snapshot = dict(progress)
        if lease.lost.is_set() or not runtime.patiently(
            lambda: runtime.jobs().update(job_id, progress=snapshot)
        ):
            raise JobCancelledError(job_id)

    return report


@celery_app.task(  # type: ignore[untyped-decorator]
    name=VAE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, **RETRY
)
def vae_stage(self: Task, job_id: str) -> None:
    """encode -> stats -> correlate -> interpolate -> decode; the label batch goes to storage; the job
    is then ``queued`` at the SPADE stage (waiting for that queue is not running, and never reaped)."""
    job = _active(job_id)
    if job is None:
        return
    started = time.perf_counter()
    try:
        if not _hold(job, "vae", retry=bool(self.request.retries)):
            self.request.chain = None  # not this delivery's to run: nor is the SPADE stage after it
            return
        with runtime.heartbeat(job_id, "vae", runtime.settings().heartbeat_s) as lease:
            synth = runtime.synthesizer(job.request.get("model", DEFAULT_VERSION), True, False)
            progress: dict[str, Any] = dict(job.progress)
            batch = synth.make_labels(request_of(job.request), _progress(job_id, progress, lease))
            lease.check()
            runtime.storage().put_bytes(work_key(job_id), batch.to_bytes())
            timings = {**job.timings, "vae": time.perf_counter() - started}
            _move(job_id, JobState.QUEUED, stage="spade", timings=timings)
    except JobCancelledError:
        _stopped(job_id, "vae")


@celery_app.task(  # type: ignore[untyped-decorator]
    name=SPADE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, **RETRY
)
def spade_stage(self: Task, job_id: str) -> None:
    """translate -> restore -> store every file -> succeeded, a few subjects at a time.

    Subjects stream to storage (``Synthesizer.stream``): a part is translated, restored, written and
    dropped before the next, so the worker's memory does not grow with ``n`` (bench/memory.py)."""
    from cardiosynth.synthesis.engine import LabelBatch
    from cardiosynth.synthesis.output import write_subject

    job = _active(job_id)
    if job is None:
        return
    started = time.perf_counter()
    store = runtime.storage()
    try:
        if not _hold(job, "spade", retry=bool(self.request.retries)):
            return
        with runtime.heartbeat(job_id, "spade", runtime.settings().heartbeat_s) as lease:
            synth = runtime.synthesizer(job.request.get("model", DEFAULT_VERSION), True, True)
            batch = LabelBatch.from_bytes(store.get_bytes(work_key(job_id)))
            progress: dict[str, Any] = dict(job.progress)
            report = _progress(job_id, progress, lease)
            files: list[dict[str, Any]] = []
            biomarkers: dict[str, Any] = {}
            models = dict(synth.model_versions)
            count, stored = len(batch.base_ids), 0
            with tempfile.TemporaryDirectory() as tmp:
                # Translation reports (and checks for a cancel) per chunk of slices, writing per subject.
                for done, subject in enumerate(synth.stream(batch, report), start=1):
                    lease.check()  # between subjects: a cancel stops the writing here
                    base = bool(job.request.get("include_base"))  # the base NOR subject's volumes too
                    folder = write_subject(subject, batch.request, Path(tmp), models=models, base=base)
                    for path in sorted(folder.iterdir()):
                        if lease.lost.is_set():  # the heartbeat saw a cancel: no further upload
                            raise JobCancelledError(job_id)
                        key, data = output_key(job_id, subject.name, path.name), path.read_bytes()
                        store.put_bytes(key, data)
                        stored += len(data)
                        files.append({"subject": subject.name, "key": key, **_describe(path.name)})
                    biomarkers[subject.name] = {
                        f"{a:.2f}": (b.to_dict() if b is not None else None)
                        for a, b in subject.biomarkers.items()
                    }
                    shutil.rmtree(folder)  # stored: the local copy would only fill the disk
                    del subject  # nor is it kept in memory while the next part is translated
                    report("store", done, count)
            timings = {**job.timings, "spade": time.perf_counter() - started}
            result = {"files": files, "biomarkers": biomarkers}
            # stored_bytes: what this job holds against its key's quota on stored bytes.
            _move(job_id, JobState.SUCCEEDED, result=result, timings=timings, stored_bytes=stored)
        store.delete(work_key(job_id))  # the outputs are all stored; the intermediate is not one
    except JobCancelledError:
        _stopped(job_id, "spade")


def _describe(name: str) -> dict[str, Any]:
    """``HCM_000_s1.00_ED_gt.nii.gz`` -> severity, phase and kind of an output file."""
    if name == "provenance.json":
        return {"kind": "provenance", "severity": None, "phase": None}
    if name == "preview.png":
        return {"kind": "preview", "severity": None, "phase": None}
    stem = name.removesuffix(".nii.gz")
    kind = "label" if stem.endswith("_gt") else "image"
    parts = stem.removesuffix("_gt").split("_")
    if parts[-2] == "base":  # HCM_000_base_ED.nii.gz: the base NOR subject's own (include_base)
        return {"kind": f"base_{kind}", "severity": None, "phase": parts[-1]}
    return {"kind": kind, "severity": parts[-2].removeprefix("s"), "phase": parts[-1]}


@celery_app.task(  # type: ignore[untyped-decorator]
    name=FAILURE_TASK
)
def job_failed(request: Any, exc: Any, traceback: Any, job_id: str) -> None:
    """Errback of the chain: the failing link stops the chain, and the job records why."""
    error = {
        "type": "about:blank",
        "title": "Job failed",
        "status": 500,
        "detail": public_detail(exc),
    }
    log.error("job %s failed: %s: %s", job_id, type(exc).__name__, exc)
    with contextlib.suppress(TransitionRefusedError, KeyError):
        runtime.jobs().transition(job_id, JobState.FAILED, error=error)
        _discard(job_id)  # a failed job leaves no partial outputs behind


# Registration: the dataset build's task (POST /datasets) lives on this app too, so every worker started
# with ``-A cardiosynth.workers.tasks`` knows it. Imported last: that module imports this one.
from cardiosynth.workers import archive as _archive  # noqa: E402, F401  (a job's tar archive)
from cardiosynth.workers import dataset_tasks as _dataset_tasks  # noqa: E402, F401
from cardiosynth.workers import graph as _graph  # noqa: E402, F401  (the stage graph's tasks)
