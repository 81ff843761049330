"""A ``/synthesize`` job as a stage graph of Celery tasks, fanned out over every worker of each queue.

::

    stats (vae) --> encode -> correlate -> interpolate -> decode  (vae, one task per chunk)  ...
                        --> translate -> store                   (spade, one task per chunk) ...
                                --> finalize (spade, after the last chunk's files are stored)

- ``stats``: validates the request, computes the class statistics the job needs (cached in the object
  store by pathology, phase, VAE version and data fingerprint, so later and concurrent jobs of the
  class read them), records the job's chunk plan (``CARDIOSYNTH_CHUNK_SIZE`` subjects per chunk, the
  first plan recorded wins) and sends every VAE chunk.
- a VAE chunk makes the label stacks of its subjects (``Synthesizer.make_labels`` with ``subjects``),
  stores them under ``jobs/<id>/work/vae-<i>.npz`` and sends its SPADE chunk, so SPADE work starts as
  soon as the first chunk is decoded (the two queues run side by side, not one after the other).
- a SPADE chunk translates and stores its subjects one by one and records their files in
  ``jobs/<id>/work/spade-<i>.json``; the chunk that makes the fan-in count reach the plan's count
  sends ``finalize``.
- ``finalize`` checks that every chunk's files are stored, writes ``jobs/<id>/manifest.json`` (every
  key, size and SHA-256, the biomarker summary) and only then moves the job to ``succeeded``.

Faults: the fan-in is a set per job in the job store (:meth:`JobStore.finish_chunk`: Redis hash
fields set once, or a SQLite transaction), never a result backend. Every object key and task id is
deterministic, so a redelivered task overwrites its own files and counts once. Each task holds a
lease of its own (beaten from a thread); a lease that goes silent is redelivered by the reaper, a
task whose worker died is redelivered by the broker (acks_late, reject_on_worker_lost), and a
duplicate of a task held by a live worker skips. Each task checks the job before working and at
every stage, so a cancel stops the pending chunks and the running ones between subjects; the files
of a cancelled job are removed by every chunk that stops.

Determinism: each subject's random streams come from (seed, subject index) and each subject is
decoded and translated as a batch of its own, so the files are byte-identical whatever the chunk
size, the number of workers and the order in which chunks finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Task

from cardiosynth.jobs.base import ChunkPlan, Job, JobState, TransitionRefusedError
from cardiosynth.jobs.celery_dispatch import send_graph_task
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.queues import FINALIZE_TASK, SPADE_CHUNK_TASK, STATS_TASK, VAE_CHUNK_TASK
from cardiosynth.workers import runtime
from cardiosynth.workers.runtime import ChunkLease, JobCancelledError
from cardiosynth.workers.tasks import RETRY, _active, _describe, _discard, celery_app, output_key, request_of

log = logging.getLogger(__name__)

# Sends task (kind, index) of a job: Celery in the service, a local queue in run_inline.
Send = Callable[[str, str, int], None]
# The engine's VAE progress stages -> the graph's progress stages they complete.
_VAE_STAGES = {"encode": ("encode",), "correlate": ("correlate", "interpolate"), "decode": ("decode",)}
MANIFEST = "manifest.json"


def vae_work_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/work/vae-{index:05d}.npz"


def spade_work_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/work/spade-{index:05d}.json"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/{MANIFEST}"


def _celery_send(kind: str, job_id: str, index: int) -> None:
    if kind == "archive":  # asked for with the job ("archive": true): built after finalize
        from cardiosynth.workers.archive import send_archive

        send_archive(job_id)
        return
    send_graph_task(celery_app, job_id, kind, index)


def _token(worker: str) -> str:
    """A lease holder: ``<worker>:<pid>:<attempt>`` (the part before the last ``:`` names the process,
    which may take its own lease back on a retry)."""
    return f"{worker.replace(' ', '_').replace(':', '_')}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _stale_s() -> float:
    """A lease older than this is its dead holder's: three missed beats."""
    return 3 * runtime.settings().heartbeat_s


def _stop(job_id: str, kind: str, index: int) -> None:
    """A task stopped because its job is finished, cancelled or gone: a cancelled, failed or lost
    job's files are removed (every stopping chunk removes them, so a chunk's upload racing a cancel
    is removed by that chunk); a lease taken over by another delivery keeps them."""
    job = runtime.jobs().get(job_id)
    if job is None or job.state in (JobState.CANCELLED, JobState.FAILED):
        log.info("job %s is %s: %s chunk %d stopped", job_id, job.state.value if job else "gone", kind, index)
        _discard(job_id)
    else:
        log.warning("job %s: %s chunk %d was taken over by another delivery: this one stopped",
                    job_id, kind, index)  # fmt: skip


@contextmanager
def _task(job_id: str, kind: str, index: int, worker: str) -> Iterator[tuple[Job, ChunkLease] | None]:
    """Take the lease of task (kind, index): yields ``(job, lease)`` to work, or ``None`` when there
    is nothing to do (finished before, or held by a live worker). A cancel met inside stops it."""
    job = _active(job_id)
    if job is None:
        yield None
        return
    token = _token(worker)
    status = runtime.patiently(lambda: runtime.jobs().take_chunk(job_id, kind, index, token, _stale_s()))
    if status == "gone":
        _stop(job_id, kind, index)
        yield None
        return
    if status != "taken":
        log.info("job %s: %s chunk %d is %s: this delivery skipped", job_id, kind, index, status)
        yield None
        return
    try:
        with runtime.chunk_lease(job_id, kind, index, token, runtime.settings().heartbeat_s) as lease:
            yield job, lease
    except JobCancelledError:
        _stop(job_id, kind, index)


def _finish(job_id: str, kind: str, index: int, lease: ChunkLease, started: float, worker: str) -> int | None:
    seconds = time.perf_counter() - started
    done = runtime.patiently(
        lambda: runtime.jobs().finish_chunk(job_id, kind, index, lease.token, seconds, worker)
    )
    if done is None:
        raise JobCancelledError(job_id)
    log.info("job %s: %s chunk %d finished in %.2f s on %s", job_id, kind, index, seconds, worker)
    return done


def _mark(job_id: str, stage: str, index: int, subjects: int = 0) -> None:
    if not runtime.patiently(lambda: runtime.jobs().mark_stage(job_id, stage, index, subjects)):
        raise JobCancelledError(job_id)
    log.info("job %s: chunk %d: %s done", job_id, index, stage)


def _plan(job_id: str) -> ChunkPlan:
    graph = runtime.patiently(lambda: runtime.jobs().graph(job_id))
    if graph is None:
        raise JobCancelledError(job_id)  # no plan: the job was purged (a plan precedes every chunk)
    return graph.plan


# -- the tasks' bodies (called by the Celery tasks below, or in-process by run_inline) --------------


def run_stats(job_id: str, index: int = 0, *, send: Send = _celery_send, worker: str = "") -> None:
    """Validate, compute the class statistics, the class scale and the decoder calibrations (round
    trip and sampling) once (cached), record the plan, send every VAE chunk."""
    from cardiosynth.data.labels import Group
    from cardiosynth.synthesis import sources
    from cardiosynth.synthesis.engine import choose_bases

    worker = worker or socket.gethostname()
    with _task(job_id, "stats", 0, worker) as held:
        if held is not None:
            job, lease = held
            started = time.perf_counter()
            request = request_of(job.request)
            wanted = ChunkPlan.of(request.n, runtime.settings().chunk_size)
            plan = runtime.patiently(lambda: runtime.jobs().plan_chunks(job_id, wanted))
            if plan is None:
                raise JobCancelledError(job_id)
            synth = runtime.synthesizer(job.request.get("model", DEFAULT_VERSION), True, False)
            choose_bases(sources.by_group(synth.refs, Group.NOR), request)  # bad base subjects fail here
            territories = dict.fromkeys(synth.subject_territories(request))
            for territory in territories:
                for phase in request.phases:
                    synth.class_stats(request.pathology, phase, request.ns, territory)
                    lease.check()
            if request.interpolation == "shift":
                for phase in request.phases:
                    synth.class_stats(Group.NOR, phase, request.ns)
            # Fitted here once (cached in the store), not by every VAE worker's first chunk at once.
            synth.decoder_calibration()
            lease.check()
            if synth.scale_to_class:
                synth.class_scale(request.pathology)
            if synth.calibrate_decoder and synth.calibrate_sampling:
                for territory in territories:
                    for phase in request.phases:
                        synth.sampling_calibration(request, phase, territory)
                        lease.check()
            if synth.calibrate_motion and len(request.phases) == 2:
                for territory in territories:  # MINF: one per territory the job draws
                    synth.motion_calibration(request, territory)
                    lease.check()
            if synth.calibrate_contraction and len(request.phases) == 2:
                for territory in territories:
                    synth.contraction_calibration(request, territory)
                    lease.check()
            _mark(job_id, "stats", 0)
            _finish(job_id, "stats", 0, lease, started, worker)
            log.info("job %s: %d subjects in %d chunks of %d", job_id, plan.subjects, plan.count, plan.size)
    graph = runtime.jobs().graph(job_id)
    job_now = runtime.jobs().get(job_id)
    if (
        graph is None
        or job_now is None
        or job_now.state is not JobState.RUNNING
        or 0 not in graph.done.get("stats", set())
    ):
        return  # skipped, stopped, or a live holder sends the chunks
    # Sent again by a redelivery after a crash between finishing and sending: duplicates skip.
    for chunk in range(graph.plan.count):
        if chunk not in graph.done.get("vae", set()):
            send("vae", job_id, chunk)


def run_vae_chunk(job_id: str, index: int, *, send: Send = _celery_send, worker: str = "") -> None:
    """encode -> correlate -> interpolate -> decode for chunk ``index``; then its SPADE chunk."""
    worker = worker or socket.gethostname()
    finished = False
    with _task(job_id, "vae", index, worker) as held:
        if held is None:
            graph = runtime.jobs().graph(job_id)
            finished = graph is not None and index in graph.done.get("vae", set())
        else:
            job, lease = held
            started = time.perf_counter()
            plan = _plan(job_id)
            synth = runtime.synthesizer(job.request.get("model", DEFAULT_VERSION), True, False)

            def progress(stage: str, done: int, total: int) -> None:
                lease.check()  # the cooperative cancellation point between the engine's stages
                if done == total:
                    for name in _VAE_STAGES.get(stage, ()):
                        _mark(job_id, name, index)

            batch = synth.make_labels(request_of(job.request), progress, subjects=plan.bounds(index))
            lease.check()
            runtime.storage().put_bytes(vae_work_key(job_id, index), batch.to_bytes())
            _finish(job_id, "vae", index, lease, started, worker)
            finished = True
    if finished:  # (again, after a crash between finishing and sending: the duplicate skips)
        send("spade", job_id, index)


def run_spade_chunk(job_id: str, index: int, *, send: Send = _celery_send, worker: str = "") -> None:
    """translate -> store for chunk ``index``, subject by subject; the last chunk sends ``finalize``."""
    from cardiosynth.synthesis.engine import LabelBatch
    from cardiosynth.synthesis.output import write_subject

    worker = worker or socket.gethostname()
    count: int | None = None
    with _task(job_id, "spade", index, worker) as held:
        if held is None:
            graph = runtime.jobs().graph(job_id)
            if graph is not None and index in graph.done.get("spade", set()):
                count = len(graph.done["spade"])
        else:
            job, lease = held
            started = time.perf_counter()
            plan = _plan(job_id)
            store = runtime.storage()
            synth = runtime.synthesizer(job.request.get("model", DEFAULT_VERSION), True, True)
            batch = LabelBatch.from_bytes(store.get_bytes(vae_work_key(job_id, index)))
            models = dict(synth.model_versions)
            files: list[dict[str, Any]] = []
            biomarkers: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                lease.check()

            with tempfile.TemporaryDirectory() as tmp:
                # One subject per part: translated as a batch of its own (byte-identical whatever
                # the chunk), written, uploaded and dropped before the next.
                # The base NOR subject's own volumes too, when asked (``include_base``).
                extra = {"base": True} if job.request.get("include_base") else {}
                for subject in synth.stream(batch, progress, part_slices=1):
                    folder = write_subject(subject, batch.request, Path(tmp), models=models, **extra)
                    for path in sorted(folder.iterdir()):
                        if lease.lost.is_set():  # the lease's beat saw a cancel: no further upload
                            raise JobCancelledError(job_id)
                        key, data = output_key(job_id, subject.name, path.name), path.read_bytes()
                        store.put_bytes(key, data)
                        digest = hashlib.sha256(data).hexdigest()
                        files.append({"subject": subject.name, "key": key, "size": len(data),
                                      "sha256": digest, **_describe(path.name)})  # fmt: skip
                    biomarkers[subject.name] = {
                        f"{a:.2f}": (b.to_dict() if b is not None else None)
                        for a, b in subject.biomarkers.items()
                    }
                    shutil.rmtree(folder)
                    del subject
            _mark(job_id, "translate", index)
            record = {"chunk": index, "files": files, "biomarkers": biomarkers}
            store.put_bytes(spade_work_key(job_id, index), json.dumps(record).encode())
            lease.check()
            _mark(job_id, "store", index, subjects=len(plan.bounds(index)))
            count = _finish(job_id, "spade", index, lease, started, worker)
            # Its subjects are stored: the labels are done with (after the finish: a redelivery of an
            # unfinished chunk still finds them).
            store.delete(vae_work_key(job_id, index))
    if count is not None and count >= _plan_count(job_id):
        send("finalize", job_id, 0)


def _plan_count(job_id: str) -> int:
    graph = runtime.jobs().graph(job_id)
    return graph.plan.count if graph is not None else 1 << 30


def summarise(biomarkers: dict[str, dict[str, dict[str, Any] | None]]) -> dict[str, Any]:
    """Per severity, each numeric biomarker's mean, SD, min and max over the job's subjects."""
    values: dict[str, dict[str, list[float]]] = {}
    for per_severity in biomarkers.values():
        for severity, record in per_severity.items():
            for name, value in (record or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
                    values.setdefault(severity, {}).setdefault(name, []).append(float(value))
    return {
        severity: {
            name: {
                "n": len(v),
                "mean": statistics.fmean(v),
                "sd": statistics.pstdev(v),
                "min": min(v),
                "max": max(v),
            }
            for name, v in sorted(names.items())
        }
        for severity, names in sorted(values.items())
    }


def run_finalize(job_id: str, index: int = 0, *, send: Send = _celery_send, worker: str = "") -> None:
    """Check every chunk's files are stored, write the manifest, then ``succeeded``."""
    worker = worker or socket.gethostname()
    with _task(job_id, "finalize", 0, worker) as held:
        if held is None:
            _archive_if_asked(job_id, send)
            return
        job, lease = held
        started = time.perf_counter()
        graph = runtime.jobs().graph(job_id)
        if graph is None or len(graph.done.get("spade", set())) < graph.plan.count:
            log.warning("job %s: finalize before every chunk is stored: skipped", job_id)
            return  # a stray duplicate: the last chunk sends finalize again
        store = runtime.storage()
        stored = set(store.list_keys(f"jobs/{job_id}/"))
        files: list[dict[str, Any]] = []
        biomarkers: dict[str, Any] = {}
        for chunk in range(graph.plan.count):
            record = json.loads(store.get_bytes(spade_work_key(job_id, chunk)))
            files += record["files"]
            biomarkers.update(record["biomarkers"])
        missing = [f["key"] for f in files if f["key"] not in stored]
        subjects = {f["subject"] for f in files}
        if missing or len(subjects) != graph.plan.subjects:
            raise RuntimeError(
                f"job {job_id}: {len(missing)} files not stored (first {missing[:3]}), "
                f"{len(subjects)} of {graph.plan.subjects} subjects recorded"
            )
        summary = summarise(biomarkers)
        manifest = {"job": job_id, "request": job.request, "files": [
            {k: f[k] for k in ("key", "size", "sha256", "subject", "kind", "severity", "phase")}
            for f in files
        ], "biomarker_summary": summary}  # fmt: skip
        store.put_bytes(manifest_key(job_id), json.dumps(manifest, indent=1).encode())
        _mark(job_id, "finalize", 0)
        lease.check()
        seconds: dict[str, float] = {}
        for (kind, _), (secs, _) in graph.seconds.items():
            seconds[kind] = seconds.get(kind, 0.0) + secs
        seconds["finalize"] = time.perf_counter() - started
        seconds["wall"] = time.time() - job.created
        chunks = [{"kind": k, "index": i, "seconds": round(s, 4), "worker": w}
                  for (k, i), (s, w) in sorted(graph.seconds.items())]  # fmt: skip
        result = {"files": files, "biomarkers": biomarkers, "summary": summary,
                  "manifest": manifest_key(job_id), "chunks": chunks}  # fmt: skip
        try:
            runtime.patiently(lambda: runtime.jobs().transition(
                job_id, JobState.SUCCEEDED, result=result, timings={**job.timings, **seconds},
                stored_bytes=sum(f["size"] for f in files),
            ))  # fmt: skip
        except (TransitionRefusedError, KeyError):
            raise JobCancelledError(job_id) from None
        for key in store.list_keys(f"jobs/{job_id}/work/"):
            store.delete(key)  # the outputs are all stored; the intermediates are not outputs
        log.info("job %s succeeded: %d files of %d subjects", job_id, len(files), graph.plan.subjects)
    _archive_if_asked(job_id, send)


def _archive_if_asked(job_id: str, send: Send) -> None:
    """Queue the archive a succeeded job asked for (``"archive": true``), once however often finalize
    is delivered (a redelivery after a crash between ``succeeded`` and this still queues it)."""
    from cardiosynth.jobs.archive import request_archive

    job = runtime.patiently(lambda: runtime.jobs().get(job_id, result=False))
    if job is not None and job.state is JobState.SUCCEEDED and job.request.get("archive"):
        runtime.patiently(lambda: request_archive(runtime.jobs(), job_id, lambda: send("archive", job_id, 0)))


RUNNERS: dict[str, Callable[..., None]] = {
    "stats": run_stats,
    "vae": run_vae_chunk,
    "spade": run_spade_chunk,
    "finalize": run_finalize,
    "archive": lambda *a, **k: _run_archive(*a, **k),  # (imported late: that module imports this one)
}


def _run_archive(job_id: str, index: int = 0, **kwargs: Any) -> None:
    from cardiosynth.workers.archive import run_archive

    run_archive(job_id, index, **kwargs)


def run_inline(job_id: str, *, order: Callable[[list[tuple[str, int]]], int] | None = None) -> None:
    """The whole graph of ``job_id`` in this process, one task at a time (tests, tools). ``order``
    picks which pending task runs next (default: first sent, first run), to finish chunks in any
    order."""
    pending: deque[tuple[str, int]] = deque([("stats", 0)])

    def send(kind: str, job: str, index: int) -> None:
        pending.append((kind, index))

    while pending:
        pick = order(list(pending)) if order is not None else 0
        kind, index = pending[pick]
        del pending[pick]
        RUNNERS[kind](job_id, index, send=send, worker=f"inline-{kind}")


# -- the Celery tasks: thin, named by stage ------------------------------------------------------------

_OPTIONS: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, **RETRY}


@celery_app.task(name=STATS_TASK, **_OPTIONS)  # type: ignore[untyped-decorator]
def stats(self: Task, job_id: str, index: int = 0) -> None:
    run_stats(job_id, index, worker=str(self.request.hostname or ""))


@celery_app.task(name=VAE_CHUNK_TASK, **_OPTIONS)  # type: ignore[untyped-decorator]
def encode_correlate_interpolate_decode(self: Task, job_id: str, index: int) -> None:
    run_vae_chunk(job_id, index, worker=str(self.request.hostname or ""))


@celery_app.task(name=SPADE_CHUNK_TASK, **_OPTIONS)  # type: ignore[untyped-decorator]
def translate_store(self: Task, job_id: str, index: int) -> None:
    run_spade_chunk(job_id, index, worker=str(self.request.hostname or ""))


@celery_app.task(name=FINALIZE_TASK, **_OPTIONS)  # type: ignore[untyped-decorator]
def finalize(self: Task, job_id: str, index: int = 0) -> None:
    run_finalize(job_id, index, worker=str(self.request.hostname or ""))
