"""``cardiosynth dataset build``: every subject a spec asks for, with a dataset card, in one folder.

Layout of a built dataset::

    DIR/dataset.json                 the card: spec, what was made, biomarkers per group, models, sha256
    DIR/README.md                    the card for people
    DIR/SHA256SUMS                   ``sha256sum -c SHA256SUMS`` checks every other file
    DIR/spec.yaml                    the spec as given
    DIR/biomarkers.png               biomarker distributions, synthetic vs real, per group
    DIR/synthetic/HCM_000/...        ``write_subject`` output: NIfTI per severity and phase, provenance
    DIR/real/patient001/...          the real training subjects (``include_real: true``), ACDC layout

The folder appears whole or not at all: everything is written into a temporary folder next to DIR
and renamed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cardiosynth.data.labels import Group
from cardiosynth.export.atomic import check_target, staged_tree
from cardiosynth.export.card import RealRecord, SyntheticRecord, write_card
from cardiosynth.export.spec import DatasetSpec, spec_dict
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer
from cardiosynth.synthesis.output import file_names, write_subject

log = logging.getLogger(__name__)

SYNTHETIC_DIR = "synthetic"
REAL_DIR = "real"

Progress = Callable[[int, int], None]
EngineProgress = Callable[[str, int, int], None]  # the engine's (stage, done, total) reports


def _no_progress(done: int, total: int) -> None:
    return None


def _no_engine_progress(stage: str, done: int, total: int) -> None:
    return None


def _check_data(spec: DatasetSpec, refs: list[sources.SubjectRef], data_root: Path) -> None:
    needed = {Group.NOR} | {g.pathology for g in spec.pathologies}
    present = {r.group for r in refs}
    missing = sorted(g.value for g in needed - present)
    if missing:
        raise ValueError(
            f"the data under {data_root} has no subject of group(s) {missing}; the spec needs "
            "NOR (the base subjects) and every pathology it names"
        )


def training_refs(refs: list[sources.SubjectRef]) -> list[sources.SubjectRef]:
    """The real training subjects (an ACDC ``testing/`` folder stays out of training sets)."""
    return [r for r in refs if r.path.parent.name != "testing"]


def _copy_real(refs: list[sources.SubjectRef], target: Path, mode: str) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    out = []
    for ref in refs:
        dest = target / ref.subject_id
        if mode == "symlink":
            dest.symlink_to(ref.path.resolve(), target_is_directory=True)
        else:
            shutil.copytree(ref.path, dest)
        out.append(dest)
    return out


def _synthesise(
    spec: DatasetSpec,
    synthesizer: Synthesizer,
    target: Path,
    models: dict[str, str],
    progress: Progress,
    engine_progress: EngineProgress,
) -> list[SyntheticRecord]:
    """Run every request of the spec and write its subjects under ``target`` (names per pathology);
    ``progress`` after each subject written, ``engine_progress`` passed to the engine's stages."""
    nor = [r.subject_id for r in sources.by_group(synthesizer.refs, Group.NOR)]  # the engine's order
    records: list[SyntheticRecord] = []
    counters: dict[Group, int] = {}
    done, total = 0, spec.total_subjects
    for index, group in enumerate(spec.pathologies):
        requests: list[SynthesisRequest] = spec.requests(index, nor)
        log.info(
            "group %d: %d %s subjects in %d request(s)", index, group.n, group.pathology.value, len(requests)
        )
        for request in requests:
            for subject in synthesizer.run(request, engine_progress):
                number = counters.get(request.pathology, 0)
                counters[request.pathology] = number + 1
                # Dataset-wide names (one request per subject for severity ranges would repeat _000);
                # the provenance keeps the request and the subject's index in it, so it reproduces.
                subject = dataclasses.replace(subject, name=f"{request.pathology.value}_{number:03d}")
                folder = write_subject(subject, request, target, models=models, preview=spec.preview)
                files = {
                    (severity, phase): tuple(
                        f"{SYNTHETIC_DIR}/{subject.name}/{n}"
                        for n in file_names(subject.name, severity, phase)
                    )
                    for severity, phases in subject.phases.items()
                    for phase in phases
                }
                records.append(
                    SyntheticRecord(
                        name=subject.name,
                        group_index=index,
                        pathology=request.pathology.value,
                        base_subject=subject.base.subject_id,
                        seed=request.seed,
                        severities=request.severities,
                        folder=folder.name,
                        files=files,  # type: ignore[arg-type]
                        biomarkers={
                            s: (b.to_dict() if b is not None else None) for s, b in subject.biomarkers.items()
                        },
                        diagnosis={s: d.get("group") for s, d in subject.diagnosis.items()},
                    )
                )
                done += 1
                progress(done, total)  # per subject: the API worker's progress and cancellation point
    return records


def build_dataset(
    spec: DatasetSpec,
    out: Path,
    synthesizer: Synthesizer,
    *,
    models: dict[str, str],
    spec_text: str | None = None,
    overwrite: bool = False,
    progress: Progress = _no_progress,
    engine_progress: EngineProgress = _no_engine_progress,
) -> Path:
    """Build the dataset ``spec`` describes into ``out`` with ``synthesizer`` (models loaded, data
    folder set); return ``out``. Atomic: on any error nothing is left behind and ``out`` is as before.

    Raises:
        FileExistsError: ``out`` is not empty and ``overwrite`` is false.
        ValueError: the data lacks a group the spec needs (checked before any synthesis).
    """
    out = Path(out)
    check_target(out, overwrite)
    refs = synthesizer.refs
    _check_data(spec, refs, synthesizer.data_root)
    with staged_tree(out, overwrite) as staging:
        records = _synthesise(spec, synthesizer, staging / SYNTHETIC_DIR, models, progress, engine_progress)
        real = training_refs(refs)
        if spec.include_real:
            _copy_real(real, staging / REAL_DIR, spec.real_mode)
        real_records = [RealRecord.of(ref, included=spec.include_real) for ref in real]
        if spec_text is None:
            spec_text = yaml.safe_dump(spec_dict(spec), sort_keys=False)
        (staging / "spec.yaml").write_text(spec_text, encoding="utf-8")
        write_card(
            staging,
            spec,
            records,
            real_records,
            models=models,
            data_root=synthesizer.data_root,
            data_fingerprint=sources.fingerprint(refs),
        )
        log.info(
            "built %d synthetic subjects (%d real %s) into %s",
            len(records),
            len(real) if spec.include_real else 0,
            spec.real_mode,
            out,
        )
    return out


def read_card(root: Path) -> dict[str, Any]:
    """The ``dataset.json`` card of a built dataset (``ValueError`` when ``root`` is not one)."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise ValueError(f"{root}: not a built dataset (no dataset.json); run cardiosynth dataset build")
    card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if card.get("format") != "cardiosynth-dataset":
        raise ValueError(f"{path}: not a cardiosynth dataset card (format {card.get('format')!r})")
    return card
