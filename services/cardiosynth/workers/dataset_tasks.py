"""The dataset build of ``POST /datasets`` as a Celery task: read the job, build, store, report.

Queue: one task on the ``spade`` queue (:data:`~cardiosynth.queues.DATASET_QUEUE`) builds the whole
dataset with both models loaded, instead of a VAE stage on ``vae`` then a SPADE stage on ``spade``
per spec entry, because

- a SPADE worker already loads the VAE beside its SPADE model (``runtime.synthesizer``), so the
  dataset task reuses that same loaded pair and the GPU it sits on: no extra model copy;
- a spec is several engine requests (groups, chunks of 100, one request per subject for a severity
  range): split over two queues that is one label work file per request and a stage hand-over each,
  while the VAE half is the small part of the work (translation dominates);
- the dataset card (biomarker summary, checksums, plot) needs every subject of the build, which
  :func:`cardiosynth.export.build.build_dataset` already writes atomically into one folder.

The price: while a dataset builds, its SPADE worker runs no SPADE stage of a ``/synthesize`` job
(prefetch 1); run more SPADE workers for both.

Storage layout (deterministic keys, so a redelivered task overwrites its own outputs)::

    jobs/<id>/dataset/<path in the built folder>     dataset.json, README.md, SHA256SUMS, spec.yaml,
                                                     biomarkers.png, synthetic/..., real/...
    jobs/<id>/export/<name>.zip                      format zip, monai (with datalist.json) or nnunet

Progress: ``subjects`` {done, total} after each subject written, the engine's stages of the request
being made, then ``store`` while uploading; each report is also the cooperative cancellation point
(between subjects and between the engine's chunks). A cancelled or failed build leaves nothing: the
local build folder is temporary, and every key under ``jobs/<id>/`` is removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from celery import Task

from cardiosynth.jobs.base import JobState
from cardiosynth.queues import DATASET_STAGE, DATASET_TASK
from cardiosynth.workers import runtime
from cardiosynth.workers.runtime import JobCancelledError, StageLease
from cardiosynth.workers.tasks import RETRY, _active, _describe, _hold, _move, _progress, _stopped, celery_app

log = logging.getLogger(__name__)

DATASET_DIR = "dataset"
EXPORT_DIR = "export"
FORMATS = ("files", "zip", "nnunet", "monai")
NNUNET_ID = 501  # the CLI's default id; renumber with nnU-Net's own tools if it is taken
MAX_FOLDS = 5
# Files of the dataset folder itself -> kind in the results.
_TOP_KINDS = {
    "dataset.json": "card",
    "README.md": "card-readme",
    "SHA256SUMS": "checksums",
    "spec.yaml": "spec",
    "biomarkers.png": "plot",
    "datalist.json": "datalist",
}
_STORED = (".gz", ".png", ".zip")  # already compressed: stored as they are in an archive


def dataset_key(job_id: str, path: str) -> str:
    return f"jobs/{job_id}/{DATASET_DIR}/{path}"


def export_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{EXPORT_DIR}/{name}"


def describe_dataset_file(path: str, real_phases: dict[str, str] | None = None) -> dict[str, Any]:
    """What a file of a built dataset is, from its relative ``path``: ``source`` (synthetic, real or
    None for the card files), ``subject``, ``severity``, ``phase`` and ``kind``. ``real_phases`` (path
    -> ED/ES, from the card) gives the phase of a real frame."""
    parts = path.split("/")
    if len(parts) == 1:
        kind = _TOP_KINDS.get(path, "other")
        return {"source": None, "subject": None, "severity": None, "phase": None, "kind": kind}
    if parts[0] == "synthetic" and len(parts) == 3:
        return {"source": "synthetic", "subject": parts[1], **_describe(parts[2])}
    if parts[0] == "real" and len(parts) == 3:
        name = parts[2]
        if name.endswith("_gt.nii.gz"):
            kind = "label"
        elif name.endswith("_4d.nii.gz"):
            kind = "image-4d"
        elif name.endswith(".nii.gz"):
            kind = "image"
        elif name == "Info.cfg":
            kind = "info"
        else:
            kind = "other"
        phase = (real_phases or {}).get(path)
        return {"source": "real", "subject": parts[1], "severity": None, "phase": phase, "kind": kind}
    return {"source": None, "subject": None, "severity": None, "phase": None, "kind": "other"}


@cache
def _pair(vae_version: str, spade_version: str) -> Any:
    """A synthesizer with two different model versions (the same version shares the SPADE stage's)."""
    from cardiosynth.data.default import cache_root, default_data
    from cardiosynth.models.registry import load_spade, load_vae
    from cardiosynth.synthesis.engine import Synthesizer

    s, store = runtime.settings(), runtime.storage()
    cache_dir = cache_root() / "models"
    vae = load_vae(vae_version, root=s.model_root, store=store, cache_dir=cache_dir)
    spade = load_spade(spade_version, root=s.model_root, store=store, cache_dir=cache_dir)
    log.info("loaded models vae %s, spade %s for dataset builds", vae.version, spade.version)
    return Synthesizer(
        vae.module,
        spade.module,
        s.data_dir if s.data_dir is not None else default_data(),
        model_versions={"vae": vae.version, "spade": spade.version},
        cache_store=store,
        device=s.device,  # as runtime.synthesizer: the worker's device, placed once
        precision=None if s.precision == "auto" else s.precision,
        batch_size=s.batch_size,
        sampling_calibration_subjects=s.sampling_calibration_subjects,
        motion_calibration_subjects=s.motion_calibration_subjects,
    )


def synthesizer_for(vae_version: str, spade_version: str) -> Any:
    if vae_version == spade_version:
        return runtime.synthesizer(vae_version, True, True)  # the one the SPADE stage uses
    return _pair(vae_version, spade_version)


def _families_bound(spec: Any, synthesizer: Any) -> int:
    """At most how many base subjects (families) the export's folds can be made of."""
    from cardiosynth.data.labels import Group
    from cardiosynth.export.build import training_refs
    from cardiosynth.synthesis import sources

    nor = sources.by_group(synthesizer.refs, Group.NOR)
    bound = min(len(nor), spec.total_subjects)
    if spec.include_real:
        bound = max(bound, len(training_refs(synthesizer.refs)))
    return int(bound)


def dataset_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted, through symlinked folders too (``real_mode: symlink``
    links the real subjects' folders, which ``Path.rglob`` would not enter)."""
    out = [Path(root) / name for root, _, names in os.walk(folder, followlinks=True) for name in names]
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def _zip(folder: Path, target: Path) -> Path:
    """``folder`` as ``target`` (a .zip), its entries under ``folder.name/``."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in dataset_files(folder):
            method = zipfile.ZIP_STORED if path.name.endswith(_STORED) else zipfile.ZIP_DEFLATED
            archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}", compress_type=method)
    return target


def _export(fmt: str, folder: Path, work: Path, name: str, seed: int) -> Path | None:
    """The archive of ``fmt`` for the built ``folder`` (written under ``work``), or None (``files``).
    ``monai`` also adds ``datalist.json`` (paths relative to it) to ``folder`` itself."""
    if fmt == "files":
        return None
    if fmt == "zip":
        return _zip(folder, work / f"{name}.zip")
    from cardiosynth.export.cases import collect_cases

    cases = collect_cases(folder)
    families = len({c.family for c in cases if not c.test})
    if families < 2:
        raise ValueError(f"format {fmt!r}: {families} base subject(s) cannot make cross-validation folds")
    folds = min(MAX_FOLDS, families)
    if fmt == "monai":
        from cardiosynth.export.monai_datalist import export_monai

        export_monai(cases, folder / "datalist.json", n_folds=folds, seed=seed, name=name)
        return _zip(folder, work / f"{name}-monai.zip")
    from cardiosynth.export.nnunet import export_nnunet

    nn_name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)
    target = export_nnunet(cases, work / "nnunet", NNUNET_ID, nn_name, n_folds=folds, seed=seed)
    return _zip(target, work / f"{target.name}.zip")


def build_and_store(job_id: str, request: dict[str, Any], lease: StageLease) -> dict[str, Any]:
    """Build the dataset of ``request`` (``{"kind": "dataset", "spec": {...}, "format": ...}``) in a
    temporary folder, store every file under ``jobs/<job_id>/``; return the job's result record."""
    from cardiosynth.export.build import build_dataset, read_card
    from cardiosynth.export.spec import parse_spec

    spec = parse_spec(request["spec"])  # the gateway checked it without numerics; this is the rule
    fmt = request.get("format", "files")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    synthesizer = synthesizer_for(spec.models.vae, spec.models.spade)
    if fmt in ("nnunet", "monai") and _families_bound(spec, synthesizer) < 2:
        raise ValueError(
            f"format {fmt!r} needs 2+ base subjects for its folds: the data has too few NOR subjects; "
            "set include_real: true or use format zip"
        )
    progress: dict[str, Any] = {}
    report = _progress(job_id, progress, lease)
    store = runtime.storage()
    with tempfile.TemporaryDirectory(prefix="cardiosynth-dataset-") as tmp:
        folder = build_dataset(
            spec,
            Path(tmp) / spec.name,
            synthesizer,
            models=dict(synthesizer.model_versions),
            spec_text=yaml.safe_dump(request["spec"], sort_keys=False),
            progress=lambda done, total: report("subjects", done, total),
            engine_progress=report,
        )
        lease.check()
        card = read_card(folder)
        archive = _export(fmt, folder, Path(tmp), spec.name, spec.seed)
        real_phases = {f[k]: f["phase"] for r in card["real"] for f in r["files"] for k in ("image", "label")}
        paths = dataset_files(folder)
        files: list[dict[str, Any]] = []
        for count, path in enumerate(paths, start=1):
            rel = path.relative_to(folder).as_posix()
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if rel in card["files"] and card["files"][rel] != digest:  # the card must say what is stored
                raise RuntimeError(f"{rel}: stored file differs from the card's checksum")
            store.put_bytes(dataset_key(job_id, rel), data)
            files.append(
                {
                    **describe_dataset_file(rel, real_phases),
                    "key": dataset_key(job_id, rel),
                    "path": rel,
                    "sha256": digest,
                    "bytes": len(data),
                }
            )
            if count % 10 == 0 or count == len(paths):
                report("store", count, len(paths))  # a cancel stops the upload here
        export = None
        if archive is not None:
            data = archive.read_bytes()
            key, digest = export_key(job_id, archive.name), hashlib.sha256(data).hexdigest()
            store.put_bytes(key, data)
            export = {"format": fmt, "key": key, "sha256": digest, "bytes": len(data)}
            files.append(
                {
                    **describe_dataset_file(archive.name),
                    "kind": "archive",
                    "key": key,
                    "path": archive.name,
                    "sha256": digest,
                    "bytes": len(data),
                }
            )
    return {
        "kind": DATASET_STAGE,
        "name": spec.name,
        "files": files,
        "biomarkers": card["biomarkers"],
        "requested": card["requested"],
        "made": card["made"],
        "models": card["models"],
        "export": export,
    }


@celery_app.task(  # type: ignore[untyped-decorator]
    name=DATASET_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, **RETRY
)
def dataset_build(self: Task, job_id: str) -> None:
    """build every subject of the spec -> card -> store every file -> succeeded."""
    job = _active(job_id)
    if job is None:
        return
    started = time.perf_counter()
    try:
        if not _hold(job, DATASET_STAGE, retry=bool(self.request.retries)):
            return
        with runtime.heartbeat(job_id, DATASET_STAGE, runtime.settings().heartbeat_s) as lease:
            result = build_and_store(job_id, job.request, lease)
            lease.check()
            timings = {**job.timings, DATASET_STAGE: time.perf_counter() - started}
            stored = sum(int(f["bytes"]) for f in result["files"])  # the key's quota on stored bytes
            _move(job_id, JobState.SUCCEEDED, result=result, timings=timings, stored_bytes=stored)
        log.info("job %s: dataset %s built: %d files", job_id, result["name"], len(result["files"]))
    except JobCancelledError:
        _stopped(job_id, DATASET_STAGE)
