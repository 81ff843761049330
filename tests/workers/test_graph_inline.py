"""The stage graph in one process (no broker, no worker): the real engine with tiny models on the
phantom, a SQLite job store and local storage. Byte-identical files whatever the chunk size and the
order chunks finish in; fan-in, progress and the manifest; a redelivered chunk stores nothing twice;
a cancel stops the pending chunks and leaves no file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cardiosynth.jobs.base import JobState
from cardiosynth.jobs.sqlite_store import SqliteJobStore
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.storage.local import LocalStore
from cardiosynth.synthesis.engine import MAX_SUBJECTS
from cardiosynth.workers import graph, runtime
from cardiosynth.workers.settings import WorkerSettings

REQUEST = {"pathology": "HCM", "n": 5, "seed": 7, "model": "t0", "phases": ["ED", "ES"]}
SMALL = {**REQUEST, "n": 4, "phases": ["ED"]}  # the byte-identity runs: 3 jobs of it


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    save_model(LabelVAE(VAEConfig()).eval(), root / "vae" / "t0", kind="vae", version="t0")
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4))
    save_model(spade.eval(), root / "spade" / "t0", kind="spade", version="t0")
    return root


Stack = Callable[[int], tuple[SqliteJobStore, LocalStore]]


@pytest.fixture
def stack(tmp_path: Path, models: Path, phantom_root: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """``stack(chunk_size)``: a fresh job store and storage; the models stay loaded across calls."""
    runtime.synthesizer.cache_clear()
    made = [0]

    def make(chunk_size: int) -> tuple[SqliteJobStore, LocalStore]:
        made[0] += 1
        root = tmp_path / f"run{made[0]}"
        jobs = SqliteJobStore(root / "jobs.db")
        storage = LocalStore(root / "storage", signing_key=b"k" * 32)
        settings = WorkerSettings(heartbeat_s=0.2, chunk_size=chunk_size, data_dir=phantom_root,
                                  model_root=models, device="cpu", storage_dir=root / "storage")  # fmt: skip
        monkeypatch.setattr(runtime, "jobs", lambda: jobs)
        monkeypatch.setattr(runtime, "storage", lambda: storage)
        monkeypatch.setattr(runtime, "settings", lambda: settings)
        return jobs, storage

    yield make
    runtime.synthesizer.cache_clear()


def _hashes(storage: LocalStore, job_id: str) -> dict[str, str]:
    """Output file (relative to the job) -> SHA-256, outputs only (no work files, no manifest)."""
    out = {}
    for key in storage.list_keys(f"jobs/{job_id}/"):
        rel = key.removeprefix(f"jobs/{job_id}/")
        if not rel.startswith("work/") and rel != graph.MANIFEST:
            out[rel] = hashlib.sha256(storage.get_bytes(key)).hexdigest()
    return out


def _run(
    stack: Stack, chunk_size: int, request: dict[str, object], **kwargs: object
) -> tuple[str, dict[str, str]]:
    jobs, storage = stack(chunk_size)
    job, _ = jobs.create("alice", request)
    graph.run_inline(job.id, **kwargs)  # type: ignore[arg-type]
    done = jobs.get(job.id)
    assert done is not None
    assert done.state is JobState.SUCCEEDED, done.error
    return job.id, _hashes(storage, job.id)


def test_files_are_byte_identical_for_chunk_sizes_1_3_and_100(stack: Stack) -> None:
    _, one = _run(stack, 1, SMALL)
    _, three = _run(stack, 3, SMALL)  # chunks of 3 and 1
    # Chunks finishing last-sent-first: the order does not matter either.
    _, hundred = _run(stack, 100, SMALL, order=lambda pending: len(pending) - 1)
    assert len(one) == 4 * 4  # per subject: ED image + label, provenance, preview
    assert one == three == hundred


def test_chunks_fan_in_to_one_manifest_with_every_file(stack: Stack) -> None:
    job_id, hashes = _run(stack, 2, REQUEST)
    jobs, storage = runtime.jobs(), runtime.storage()
    done = jobs.get(job_id)
    assert done is not None
    assert done.result is not None
    files = done.result["files"]
    assert sorted(f["key"].removeprefix(f"jobs/{job_id}/") for f in files) == sorted(hashes)
    assert all(hashes[f["key"].removeprefix(f"jobs/{job_id}/")] == f["sha256"] for f in files)
    assert done.stored_bytes == sum(f["size"] for f in files)
    assert done.progress["subjects"] == {"done": 5, "total": 5}
    assert done.progress["decode"] == {"done": 3, "total": 3}  # 5 subjects in chunks of 2
    assert done.progress["finalize"] == {"done": 1, "total": 1}
    assert {"stats", "vae", "spade", "finalize", "wall"} <= set(done.timings)
    assert sorted((c["kind"], c["index"]) for c in done.result["chunks"]) == sorted(
        [("stats", 0), ("vae", 0), ("vae", 1), ("vae", 2), ("spade", 0), ("spade", 1), ("spade", 2)]
    )
    manifest = json.loads(storage.get_bytes(done.result["manifest"]))
    assert [f["sha256"] for f in manifest["files"]] == [f["sha256"] for f in files]
    summary = done.result["summary"]["1.00"]["lv_edv"]  # each biomarker over the job's subjects
    edv = [b["1.00"]["lv_edv"] for b in done.result["biomarkers"].values()]
    assert (summary["n"], summary["min"], summary["max"]) == (5, min(edv), max(edv))
    assert summary["mean"] == pytest.approx(sum(edv) / 5)
    assert storage.list_keys(f"jobs/{job_id}/work/") == []


def test_a_redelivered_chunk_stores_each_file_once_and_counts_once(stack: Stack) -> None:
    jobs, _ = stack(2)
    job, _ = jobs.create("alice", REQUEST)
    sent: list[tuple[str, int]] = []

    def send(kind: str, job_id: str, index: int) -> None:
        sent.append((kind, index))

    graph.run_stats(job.id, send=send)
    graph.run_vae_chunk(job.id, 0, send=send)
    graph.run_vae_chunk(job.id, 0, send=send)  # the broker's redelivery after the worker died late
    graph.run_spade_chunk(job.id, 0, send=send)
    graph.run_spade_chunk(job.id, 0, send=send)
    assert sent.count(("spade", 0)) == 2  # sent again (a crash may have come before the send) ...
    state = jobs.get(job.id)
    assert state is not None
    assert state.progress["subjects"] == {"done": 2, "total": 5}  # ... yet counted once
    for index in (1, 2):
        graph.run_vae_chunk(job.id, index, send=send)
        graph.run_spade_chunk(job.id, index, send=send)
    assert sent.count(("finalize", 0)) == 1
    graph.run_finalize(job.id, send=send)
    done = jobs.get(job.id)
    assert done is not None
    assert done.state is JobState.SUCCEEDED
    assert done.result is not None
    keys = [f["key"] for f in done.result["files"]]
    assert len(keys) == len(set(keys)) == 5 * 6


def test_a_cancel_stops_pending_chunks_and_leaves_no_file(stack: Stack) -> None:
    jobs, storage = stack(2)
    job, _ = jobs.create("alice", REQUEST)
    sent: list[tuple[str, int]] = []

    def send(kind: str, job_id: str, index: int) -> None:
        sent.append((kind, index))

    graph.run_stats(job.id, send=send)
    graph.run_vae_chunk(job.id, 0, send=send)
    graph.run_spade_chunk(job.id, 0, send=send)
    assert storage.list_keys(f"jobs/{job.id}/")
    jobs.transition(job.id, JobState.CANCELLED)
    graph.run_vae_chunk(job.id, 1, send=send)  # pending chunks delivered after the cancel
    graph.run_spade_chunk(job.id, 1, send=send)
    assert ("spade", 1) not in sent
    assert storage.list_keys(f"jobs/{job.id}/") == []
    cancelled = jobs.get(job.id)
    assert cancelled is not None
    assert (cancelled.state, cancelled.result) == (JobState.CANCELLED, None)


def test_a_job_larger_than_one_pass_is_planned_in_chunks(stack: Stack) -> None:
    jobs, _ = stack(16)
    job, _ = jobs.create("alice", {**REQUEST, "n": 4 * MAX_SUBJECTS})
    sent: list[tuple[str, int]] = []
    graph.run_stats(job.id, send=lambda kind, job_id, index: sent.append((kind, index)))
    state = jobs.graph(job.id)
    assert state is not None
    assert (state.plan.count, state.plan.size) == (25, 16)
    assert sent == [("vae", i) for i in range(25)]
