"""The SPADE stage's own bookkeeping, in-process and fast: subjects streamed one by one to storage,
the stored bytes recorded for the key's quota, and a cancel that stops the upload between files.

The engine is replaced by a stand-in (its halves are tested in tests/synthesis); the job store, the
object store, the heartbeat thread and the task code are the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cardiosynth.jobs.base import JobState
from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.storage.local import LocalStore
from cardiosynth.synthesis import engine, output
from cardiosynth.workers import runtime, tasks
from cardiosynth.workers.settings import WorkerSettings


@dataclass
class FakeSubject:
    name: str
    biomarkers: dict[float, Any] = field(default_factory=dict)


@dataclass
class FakeBatch:
    base_ids: list[str]
    request: object = None


class FakeSynth:
    """Yields subjects lazily and records how many were alive (made, not yet written) at once."""

    def __init__(self, n: int) -> None:
        self.model_versions = {"vae": "t", "spade": "t"}
        self.n = n
        self.made = 0
        self.written: list[str] = []
        self.most_pending = 0

    def stream(self, batch: FakeBatch, progress: Any) -> Iterator[FakeSubject]:
        for index in range(self.n):
            self.made += 1
            self.most_pending = max(self.most_pending, self.made - len(self.written))
            progress("translate", index + 1, self.n)
            yield FakeSubject(f"HCM_{index:03d}")


@pytest.fixture
def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SqliteJobStore, LocalStore, FakeSynth]:
    jobs = SqliteJobStore(tmp_path / "jobs.db")
    storage = LocalStore(tmp_path / "storage", signing_key=b"k" * 32)
    synth = FakeSynth(4)
    monkeypatch.setattr(runtime, "jobs", lambda: jobs)
    monkeypatch.setattr(runtime, "storage", lambda: storage)
    monkeypatch.setattr(runtime, "settings", lambda: WorkerSettings(heartbeat_s=0.05))
    monkeypatch.setattr(runtime, "synthesizer", lambda *a: synth)
    monkeypatch.setattr(engine.LabelBatch, "from_bytes", lambda data: FakeBatch([f"b{i}" for i in range(4)]))

    def write_subject(subject: FakeSubject, request: object, root: Path, *, models: Any, base: bool) -> Path:
        folder = root / subject.name
        folder.mkdir()
        for suffix in ("_s1.00_ED.nii.gz", "_s1.00_ED_gt.nii.gz"):
            (folder / f"{subject.name}{suffix}").write_bytes(b"x" * 100)
        (folder / "provenance.json").write_bytes(b"x" * 100)
        synth.written.append(subject.name)
        return folder

    monkeypatch.setattr(output, "write_subject", write_subject)
    return jobs, storage, synth


def _spade_job(jobs: SqliteJobStore, storage: LocalStore) -> str:
    job, _ = jobs.create("alice", {"pathology": "HCM", "n": 4})
    jobs.transition(job.id, JobState.RUNNING, stage="vae")
    jobs.transition(job.id, JobState.QUEUED, stage="spade")
    storage.put_bytes(tasks.work_key(job.id), b"batch")
    return job.id


def test_subjects_stream_to_storage_and_the_stored_bytes_are_recorded(
    stage: tuple[SqliteJobStore, LocalStore, FakeSynth],
) -> None:
    jobs, storage, synth = stage
    job_id = _spade_job(jobs, storage)
    tasks.spade_stage(job_id)
    job = jobs.get(job_id)
    assert job is not None
    assert job.state is JobState.SUCCEEDED
    assert synth.most_pending == 1  # each subject written before the next was made
    assert job.result is not None
    assert len(job.result["files"]) == 12
    assert job.stored_bytes == 12 * 100
    assert job.progress["store"] == {"done": 4, "total": 4}
    assert len(storage.list_keys(f"jobs/{job_id}/")) == 12  # outputs only: the work file is gone


def test_a_cancel_stops_the_upload_between_files_and_removes_them(
    stage: tuple[SqliteJobStore, LocalStore, FakeSynth], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    jobs, storage, _ = stage
    job_id = _spade_job(jobs, storage)
    puts: list[str] = []
    original = storage.put_bytes

    def put_then_cancel(key: str, data: bytes) -> None:
        original(key, data)
        puts.append(key)
        if len(puts) == 2:  # mid-subject: the cancel lands, the heartbeat thread sees it
            jobs.transition(job_id, JobState.CANCELLED)
            time.sleep(0.5)

    monkeypatch.setattr(storage, "put_bytes", put_then_cancel)
    tasks.spade_stage(job_id)
    job = jobs.get(job_id)
    assert job is not None
    assert job.state is JobState.CANCELLED
    assert len(puts) == 2  # the third file of the first subject was never uploaded
    assert storage.list_keys(f"jobs/{job_id}/") == []  # and what it wrote is removed
