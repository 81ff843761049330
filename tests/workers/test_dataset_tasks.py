"""The dataset build task in-process (no broker): a SQLite job store, local storage, tiny fixed models."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from cardiosynth.jobs.base import Job, JobState, JobStore
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.storage.base import ObjectStore
from cardiosynth.workers import dataset_tasks, runtime, tasks
from cardiosynth.workers.dataset_tasks import dataset_build, describe_dataset_file

SPEC: dict[str, Any] = {
    "name": "tiny",
    "seed": 1,
    "models": {"vae": "t0", "spade": "t0"},
    "pathologies": [
        {"pathology": "HCM", "n": 2, "severity": [0.5, 1.0]},
        {"pathology": "DCM", "n": 1, "phases": ["ED"]},
    ],
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    vae = LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32)))
    save_model(vae.eval(), root / "vae" / "t0", kind="vae", version="t0")
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4))
    save_model(spade.eval(), root / "spade" / "t0", kind="spade", version="t0")
    return root


def _clear() -> None:
    for cached in (runtime.settings, runtime.jobs, runtime.storage, runtime.synthesizer, dataset_tasks._pair):
        cached.cache_clear()


@pytest.fixture
def worker(
    phantom_root: Path, tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[JobStore, ObjectStore]]:
    """The worker's runtime over a job store and storage of this test's own."""
    for name, value in {
        "JOB_STORE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "STORAGE": "local",
        "STORAGE_DIR": str(tmp_path / "storage"),
        "SIGNING_KEY": "k" * 32,
        "DATA_DIR": str(phantom_root),
        "MODEL_ROOT": str(tiny_models),
        "HEARTBEAT_S": "0.5",
    }.items():
        monkeypatch.setenv(f"CARDIOSYNTH_{name}", value)
    _clear()
    try:
        yield runtime.jobs(), runtime.storage()
    finally:
        _clear()  # the next test (or module) gets its own settings, not this test's folders


def _submit(jobs: JobStore, spec: dict[str, Any], fmt: str = "files") -> Job:
    job, _ = jobs.create("owner", {"kind": "dataset", "spec": spec, "format": fmt}, stage="dataset")
    return job


def test_a_build_stores_exactly_the_requested_subjects_with_card_checksums_and_export(
    worker: tuple[JobStore, ObjectStore],
) -> None:
    jobs, store = worker
    # Symlinked real subjects: their files are stored too (the worker's links would mean nothing).
    job = _submit(jobs, {**SPEC, "include_real": True, "real_mode": "symlink"}, "nnunet")
    dataset_build(job.id)
    done = jobs.get(job.id)
    assert done is not None
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.progress["subjects"] == {"done": 3, "total": 3}
    assert done.result is not None
    files = done.result["files"]
    assert {f["subject"] for f in files if f["source"] == "synthetic"} == {"HCM_000", "HCM_001", "DCM_000"}
    synthetic = [f for f in files if f["source"] == "synthetic" and f["kind"] in ("image", "label")]
    assert len(synthetic) == 2 * 2 * 2 + 2  # HCM: ED, ES x image, label; DCM: ED only
    assert {f["phase"] for f in synthetic if f["subject"] == "DCM_000"} == {"ED"}
    real = [f for f in files if f["source"] == "real" and f["kind"] == "label"]
    assert {f["phase"] for f in real} == {"ED", "ES"}
    # Nothing stored that the result does not list, and every file is what its checksum says.
    assert sorted(store.list_keys(f"jobs/{job.id}/")) == sorted(f["key"] for f in files)
    for f in files:
        assert hashlib.sha256(store.get_bytes(f["key"])).hexdigest() == f["sha256"]
    card = json.loads(store.get_bytes(dataset_tasks.dataset_key(job.id, "dataset.json")))
    assert card["made"]["synthetic"] == 3
    assert card["made"]["real_included"] == 5
    assert [g["n"] for g in card["made"]["groups"]] == [2, 1]
    sums = store.get_bytes(dataset_tasks.dataset_key(job.id, "SHA256SUMS")).decode().splitlines()
    by_path = {f["path"]: f["sha256"] for f in files}
    assert len(sums) == len(by_path) - 2  # every file but SHA256SUMS itself and the archive
    for line in sums:
        digest, path = line.split("  ", 1)
        assert by_path[path] == digest
    assert done.result["made"] == card["made"]
    export = done.result["export"]
    assert export["format"] == "nnunet"
    archive = zipfile.ZipFile(io.BytesIO(store.get_bytes(export["key"])))
    names = archive.namelist()
    assert "Dataset501_tiny/dataset.json" in names
    assert "Dataset501_tiny/splits_final.json" in names
    assert sum(n.startswith("Dataset501_tiny/labelsTr/") for n in names) == 5 * 2 + 5  # real + synthetic


@pytest.mark.parametrize("at", ["subjects", "store"])
def test_a_cancel_stops_the_build_and_leaves_nothing(
    worker: tuple[JobStore, ObjectStore], monkeypatch: pytest.MonkeyPatch, at: str
) -> None:
    jobs, store = worker
    job = _submit(jobs, SPEC, "zip")
    stored_at_cancel: list[int] = []
    original = tasks._progress  # what dataset_tasks imported

    def cancelling(job_id: str, progress: dict[str, Any], lease: Any) -> Callable[[str, int, int], None]:
        report = original(job_id, progress, lease)

        def wrapped(stage: str, done: int, total: int) -> None:
            if stage == at and not stored_at_cancel:  # what DELETE /datasets/{id} does meanwhile
                stored_at_cancel.append(len(store.list_keys(f"jobs/{job_id}/")))
                jobs.transition(job_id, JobState.CANCELLED)
            report(stage, done, total)

        return wrapped

    monkeypatch.setattr(dataset_tasks, "_progress", cancelling)
    dataset_build(job.id)
    cancelled = jobs.get(job.id)
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.result is None
    if at == "store":
        assert stored_at_cancel[0] >= 10  # the upload had started: partial outputs existed
    else:
        assert cancelled.progress.get("subjects", {}).get("done", 0) < 3
    assert store.list_keys(f"jobs/{job.id}/") == []


def test_an_export_that_cannot_make_folds_fails_before_building(worker: tuple[JobStore, ObjectStore]) -> None:
    jobs, store = worker
    job = _submit(jobs, SPEC, "monai")  # the phantom has one NOR subject: one family, no folds
    with pytest.raises(ValueError, match="format 'monai' needs 2\\+ base subjects"):
        dataset_build(job.id)  # in a worker, the chain's errback fails the job with this message
    assert store.list_keys(f"jobs/{job.id}/") == []
    running = jobs.get(job.id)
    assert running is not None
    assert "subjects" not in running.progress


def test_dataset_files_are_described() -> None:
    assert describe_dataset_file("synthetic/HCM_000/HCM_000_s0.74_ES_gt.nii.gz") == {
        "source": "synthetic", "subject": "HCM_000", "severity": "0.74", "phase": "ES", "kind": "label",
    }  # fmt: skip
    real = describe_dataset_file("real/patient001/patient001_frame01_gt.nii.gz", {
        "real/patient001/patient001_frame01_gt.nii.gz": "ED"})  # fmt: skip
    assert real == {
        "source": "real",
        "subject": "patient001",
        "severity": None,
        "phase": "ED",
        "kind": "label",
    }
    assert describe_dataset_file("real/patient001/Info.cfg")["kind"] == "info"
    assert describe_dataset_file("dataset.json")["kind"] == "card"
    assert describe_dataset_file("biomarkers.png")["kind"] == "plot"
