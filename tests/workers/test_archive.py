"""The archive task at the end of the stage graph (in one process, as tests/workers/test_graph_inline.py:
the real engine with tiny models, SQLite job store, local storage): a job that asks for its archive
("archive": true) has it built after finalize, holding exactly the manifest's files; streamed to storage
from a file, never one bytes object; rebuilt byte-identical by a redelivery; queued once however often
finalize is delivered."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from cardiosynth.gateway.schemas import SynthesizeRequest
from cardiosynth.jobs.archive import PENDING, READY, archive_key, record
from cardiosynth.jobs.base import JobState
from cardiosynth.workers import archive, graph
from tests.workers.test_graph_inline import SMALL, Stack, models, stack  # noqa: F401  (fixtures)

REQUEST = {**SMALL, "n": 3, "archive": True}


def test_a_job_that_asks_for_its_archive_gets_every_manifest_file_in_one_tar(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SynthesizeRequest(**REQUEST).archive  # what the API accepts
    jobs, storage = stack(2)
    whole: list[str] = []
    put_bytes = storage.put_bytes

    def watched(key: str, data: bytes) -> None:  # the tar must never pass as one bytes object
        whole.append(key)
        put_bytes(key, data)

    monkeypatch.setattr(storage, "put_bytes", watched)
    job, _ = jobs.create("alice", REQUEST)
    graph.run_inline(job.id)
    done = jobs.get(job.id)
    assert done is not None
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.archive is not None
    assert done.archive["state"] == READY, done.archive
    assert archive_key(job.id) not in whole
    data = storage.get_bytes(archive_key(job.id))
    assert (len(data), hashlib.sha256(data).hexdigest()) == (done.archive["bytes"], done.archive["sha256"])
    manifest = json.loads(storage.get_bytes(graph.manifest_key(job.id)))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        first = tar.extractfile(members[0])
        assert first is not None
        assert first.read() == storage.get_bytes(graph.manifest_key(job.id))
        for m in members[1:]:
            handle = tar.extractfile(m)
            assert handle is not None
            assert handle.read() == storage.get_bytes(f"jobs/{m.name}")
    keys = sorted(f["key"] for f in manifest["files"])
    assert len(keys) == 3 * 4  # per subject: ED image + label, provenance, preview
    assert names == [f"{job.id}/manifest.json", *(k.removeprefix("jobs/") for k in keys)]
    assert [m.size for m in members[1:]] == [
        f["size"] for f in sorted(manifest["files"], key=lambda f: f["key"])
    ]
    assert done.archive["files"] == len(keys) + 1

    # finalize delivered again: the archive is not queued a second time.
    sent: list[str] = []
    graph.run_finalize(job.id, send=lambda kind, j, i: sent.append(kind))
    assert sent == []

    # A redelivered build (the worker died after recording "building") rebuilds the same bytes.
    jobs.set_archive(job.id, record(PENDING))
    storage.delete(archive_key(job.id))
    archive.run_archive(job.id, worker="again")
    rebuilt = jobs.get(job.id)
    assert rebuilt is not None
    assert rebuilt.archive is not None
    assert rebuilt.archive["state"] == READY
    assert rebuilt.archive["sha256"] == done.archive["sha256"]
    assert storage.get_bytes(archive_key(job.id)) == data


def test_no_archive_unless_asked_and_none_for_a_job_that_did_not_succeed(
    stack: Stack,  # noqa: F811
) -> None:
    jobs, storage = stack(100)
    job, _ = jobs.create("alice", {**REQUEST, "n": 1, "archive": False})
    graph.run_inline(job.id)
    done = jobs.get(job.id)
    assert done is not None
    assert done.state is JobState.SUCCEEDED
    assert done.archive is None
    assert not storage.exists(archive_key(job.id))
    cancelled, _ = jobs.create("alice", {**REQUEST, "n": 1})
    jobs.transition(cancelled.id, JobState.CANCELLED)
    archive.run_archive(cancelled.id)  # a stray task: nothing built, nothing recorded
    assert not storage.exists(archive_key(cancelled.id))
    got = jobs.get(cancelled.id)
    assert got is not None
    assert got.archive is None
