"""The archive task: a succeeded job's files and its manifest as one uncompressed tar, built by a worker
(never the gateway) and stored at ``jobs/<id>/archive.tar`` (:mod:`cardiosynth.jobs.archive`).

- Bounded memory whatever ``n``: the tar (:func:`cardiosynth.tarball.write_tar`) is written to a
  temporary file one member at a time, then streamed to the object store (``put_file``). The disk needs
  room for one copy of the job's files.
- Never half an object: the tar is uploaded under its final key only once it is complete (a local
  rename / an S3 upload that shows the object when done), and recorded ``ready`` after that.
- Idempotent: a redelivered task (its worker died) rebuilds from the start; one that finds the archive
  ``ready`` and stored reuses it. Two deliveries at once write the same bytes (the tar is reproducible).
- Checked: each member's SHA-256 is compared with the manifest's, so an archive never carries a file
  that changed or broke in storage.

Runs on the SPADE queue (see :data:`cardiosynth.queues.ARCHIVE_QUEUE` for why).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Task

from cardiosynth.errors import public_detail
from cardiosynth.jobs.archive import BUILDING, FAILED, READY, archive_key, record
from cardiosynth.jobs.base import Job, JobState
from cardiosynth.queues import ARCHIVE_QUEUE, ARCHIVE_TASK
from cardiosynth.tarball import Read, write_tar
from cardiosynth.workers import runtime
from cardiosynth.workers.tasks import RETRY, TRANSIENT, celery_app

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0  # how often a build records how far it got (each a small job-store write)


def manifest_key(job_id: str) -> str:
    """Where ``finalize`` keeps the job's manifest (imported late: the graph module, which queues
    this task, is imported by :mod:`cardiosynth.workers.tasks` beside this one)."""
    from cardiosynth.workers.graph import manifest_key as key

    return key(job_id)


class ArchiveStoppedError(Exception):
    """The job went away (purged, expired) while its archive was being built: nothing is kept."""


def send_archive(job_id: str) -> None:
    """Queue the archive task of ``job_id`` (the gateway does the same by name, through its dispatcher)."""
    celery_app.send_task(ARCHIVE_TASK, args=(job_id,), queue=ARCHIVE_QUEUE, task_id=f"{job_id}-archive")


def _record(job_id: str, state: str, **fields: Any) -> None:
    recorded, _ = runtime.patiently(lambda: runtime.jobs().set_archive(job_id, record(state, **fields)))
    if recorded is None:
        raise ArchiveStoppedError(job_id)


def _manifest(job: Job) -> tuple[bytes, list[dict[str, Any]]]:
    """The job's manifest as stored (``finalize`` writes it) and its files in key order. A job stored
    before manifests existed has one made here from the sizes and checksums its workers recorded (a
    file without them is read and hashed) and stored beside its files."""
    store = runtime.storage()
    try:
        data = store.get_bytes(manifest_key(job.id))
    except KeyError:
        files = []
        for f in (job.result or {}).get("files", []):
            if not (isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)):
                content = store.get_bytes(f["key"])  # not recorded when it was stored: hashed now
                f = {**f, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
            files.append(f)
        data = json.dumps({"job": job.id, "request": job.request, "files": files}, indent=1).encode()
        store.put_bytes(manifest_key(job.id), data)
    files = sorted(json.loads(data)["files"], key=lambda f: str(f["key"]))
    return data, files


def build(job: Job, out: Path, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write ``job``'s archive to ``out``: its ``manifest.json`` first, then every file in key order,
    named ``<job id>/<subject>/<file>``; returns its bytes, SHA-256 and member count. ``ValueError``
    naming a file whose stored bytes differ from the manifest's checksum."""
    store = runtime.storage()
    data, files = _manifest(job)

    def name(key: str) -> str:
        return key.removeprefix("jobs/")

    def reader(key: str) -> Read:
        return lambda: store.get_bytes(key)

    members: list[tuple[str, Read]] = [(name(manifest_key(job.id)), lambda: data)]
    members += [(name(f["key"]), reader(f["key"])) for f in files]
    with out.open("wb") as handle:
        summary = write_tar(handle, members, mtime=int(job.updated), progress=progress)
    for f, member in zip(files, summary.members[1:], strict=True):
        if member.sha256 != f["sha256"] or member.size != f["size"]:
            raise ValueError(
                f"stored file {f['key']} has {member.size} bytes, SHA-256 {member.sha256[:12]}; "
                f"the manifest says {f['size']} bytes, {str(f['sha256'])[:12]}"
            )
    return {"bytes": summary.bytes, "sha256": summary.sha256, "files": len(summary.members)}


def run_archive(job_id: str, index: int = 0, *, send: Any = None, worker: str = "") -> None:
    """Build ``job_id``'s archive (``index`` and ``send``: the stage graph's runner signature, unused).
    Transient storage/store errors propagate (the Celery task retries them); any other failure is
    recorded as ``failed`` with its reason."""
    worker = worker or socket.gethostname()
    job = runtime.patiently(lambda: runtime.jobs().get(job_id))
    if job is None or job.state is not JobState.SUCCEEDED or job.expired_at is not None:
        log.info("job %s is %s: no archive built", job_id, "expired" if job and job.expired_at else
                 (job.state.value if job else "gone"))  # fmt: skip
        return
    store, key = runtime.storage(), archive_key(job_id)
    if (job.archive or {}).get("state") == READY and store.exists(key):
        log.info("job %s: archive ready already: reused", job_id)
        return
    started = time.perf_counter()
    try:
        _record(job_id, BUILDING, worker=worker)
        last = [time.monotonic()]
        total = len((job.result or {}).get("files", [])) + 1

        def progress(done: int, written: int) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:  # also notices a purge mid-build
                last[0] = time.monotonic()
                _record(job_id, BUILDING, worker=worker, done=done, total=total, bytes=written)

        with tempfile.TemporaryDirectory(prefix="cardiosynth-archive-") as tmp:
            path = Path(tmp) / "archive.tar"
            summary = build(job, path, progress)
            store.put_file(key, path)  # under the final key only now, whole
        try:
            _record(job_id, READY, **summary, seconds=round(time.perf_counter() - started, 3))
        except ArchiveStoppedError:
            store.delete(key)  # purged or expired during the upload: the archive goes with the job
            raise
        if runtime.jobs().get(job_id, result=False) is None:  # purged just now: leave nothing behind
            store.delete(key)
            raise ArchiveStoppedError(job_id)
        log.info("job %s: archive of %d files, %d bytes, in %.1f s on %s", job_id, summary["files"],
                 summary["bytes"], time.perf_counter() - started, worker)  # fmt: skip
    except ArchiveStoppedError:
        log.info("job %s went away while its archive was built: stopped", job_id)
    except TRANSIENT:
        raise  # retried by Celery; the state stays "building" meanwhile
    except Exception as exc:
        log.exception("job %s: archive failed", job_id)
        fail(job_id, exc)


def fail(job_id: str, exc: BaseException) -> None:
    """Record the archive as ``failed`` (the job itself stays ``succeeded``: its files are intact)."""
    with contextlib.suppress(ArchiveStoppedError):  # the job is gone: nothing to record it on
        _record(job_id, FAILED, error=public_detail(exc))


@celery_app.task(name=ARCHIVE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, **RETRY)  # type: ignore[untyped-decorator]
def archive(self: Task, job_id: str) -> None:
    try:
        run_archive(job_id, worker=str(self.request.hostname or ""))
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:  # the last try: say so on the job
            fail(job_id, exc)
        raise
