"""Export to the nnU-Net v2 raw format, and a checker for that format.

Layout (nnU-Net v2 documentation, ``dataset_format.md``)::

    ROOT/Dataset501_CardioSynth/dataset.json
    ROOT/Dataset501_CardioSynth/imagesTr/syn_HCM_000_s1.00_ED_0000.nii.gz   channel 0 of the case
    ROOT/Dataset501_CardioSynth/labelsTr/syn_HCM_000_s1.00_ED.nii.gz
    ROOT/Dataset501_CardioSynth/imagesTs/real_patient101_ED_0000.nii.gz     ACDC testing/ subjects
    ROOT/Dataset501_CardioSynth/labelsTs/real_patient101_ED.nii.gz          (their labels, kept apart)
    ROOT/Dataset501_CardioSynth/splits_final.json                          5 folds, no leakage
    ROOT/Dataset501_CardioSynth/cases.json                                 source, group, base per case

ED and ES are separate cases. ``splits_final.json`` sits in the raw folder, where nnU-Net's planner
(``nnUNetv2_plan_and_preprocess``, v2.8 checked) copies it into ``$nnUNet_preprocessed/DatasetNNN_Name/``
and training uses it; without it nnU-Net draws random folds, which put a base subject and its
descendants on both sides. Checked here with nnU-Net 2.8.1's ``verify_dataset_integrity``, fingerprint
extraction and planning (tests/export/test_nnunet_tool.py, which runs where nnunetv2 is installed).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth import __version__
from cardiosynth.export.atomic import staged_tree
from cardiosynth.export.cases import Case
from cardiosynth.export.splits import assign_folds, splits

log = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"
CHANNEL_NAMES = {"0": "cineMRI"}
LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}  # ACDC names, as nnU-Net's own ACDC conversion
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_DATASET_DIR = re.compile(r"^Dataset(\d{3})_(.+)$")


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_Name``; ``ValueError`` for an id outside 1..999 or a name nnU-Net cannot take."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset id must be in 1..999, got {dataset_id}")
    if not _NAME.match(name):
        raise ValueError(f"nnU-Net dataset name must be letters, digits, '_' or '-', got {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


def _check_id_free(root: Path, folder: str, dataset_id: int) -> None:
    # nnU-Net finds a dataset by its id alone: two folders with one id make it pick either.
    if not root.is_dir():
        return
    for other in root.iterdir():
        m = _DATASET_DIR.match(other.name)
        if m and int(m.group(1)) == dataset_id and other.name != folder:
            raise ValueError(f"{other} already uses nnU-Net dataset id {dataset_id}; choose another --id")


def dataset_json(name: str, num_training: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel_names": CHANNEL_NAMES,
        "labels": LABELS,
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "name": name,
        "description": "Cine MR short-axis volumes (ED and ES as cases), real and cardiosynth synthetic",
        "reference": "cardiosynth",
        "release": __version__,
        **extra,
    }


def export_nnunet(
    cases: Sequence[Case],
    root: Path,
    dataset_id: int,
    name: str,
    *,
    n_folds: int = 5,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``cases`` as nnU-Net v2 raw dataset ``ROOT/DatasetNNN_Name`` (atomically); return it."""
    folder = dataset_folder_name(dataset_id, name)
    root = Path(root)
    _check_id_free(root, folder, dataset_id)
    folds = assign_folds(cases, n_folds, seed)
    training = [c for c in cases if not c.test]
    tests = [c for c in cases if c.test]
    target = root / folder
    with staged_tree(target, overwrite) as staging:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (staging / sub).mkdir()
        for i, c in enumerate([*training, *tests]):
            images, labels = ("imagesTs", "labelsTs") if c.test else ("imagesTr", "labelsTr")
            shutil.copyfile(c.image, staging / images / f"{c.case_id}_0000{FILE_ENDING}")
            if c.label is not None:
                (staging / labels).mkdir(exist_ok=True)
                shutil.copyfile(c.label, staging / labels / f"{c.case_id}{FILE_ENDING}")
            if progress is not None:
                progress(i + 1, len(cases))
        counts = {
            "synthetic_cases": sum(c.source == "synthetic" for c in training),
            "real_cases": sum(c.source == "real" for c in training),
            "test_cases": len(tests),
            "folds": n_folds,
            "split_seed": seed,
        }
        payload = dataset_json(name, len(training), {"cardiosynth": counts})
        (staging / "dataset.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        (staging / "splits_final.json").write_text(
            json.dumps(splits(folds, n_folds), indent=2) + "\n", encoding="utf-8"
        )
        meta = {c.case_id: {**c.metadata(), "fold": folds.get(c.case_id), "test": c.test} for c in cases}
        (staging / "cases.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        problems = check_nnunet_dataset(staging)
        if problems:
            raise ValueError(
                "the exported dataset fails nnU-Net's format checks:\n  " + "\n  ".join(problems)
            )
    log.info(
        "nnU-Net dataset %s: %d training cases (%d synthetic, %d real), %d test cases",
        target,
        len(training),
        counts["synthetic_cases"],
        counts["real_cases"],
        len(tests),
    )
    return target


def check_nnunet_dataset(folder: Path, *, read_data: bool = True) -> list[str]:
    """Problems of an nnU-Net v2 raw dataset folder against the documented format (empty: none).

    What nnU-Net's ``verify_dataset_integrity`` checks: dataset.json fields; every training case has
    every channel (``CASE_XXXX``) and its label; numTraining equals the labelled cases; label values
    within the declared labels; image and label of one case on one grid (shape and affine). With
    ``read_data`` false only names and headers are read.
    """
    import nibabel as nib

    folder = Path(folder)
    problems: list[str] = []
    try:
        meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        return [f"dataset.json: unreadable ({exc})"]
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in meta:
            problems.append(f"dataset.json: missing {key}")
    if problems:
        return problems
    ending = meta["file_ending"]
    channels = sorted(int(k) for k in meta["channel_names"])
    labels = meta["labels"]
    if labels.get("background") != 0:
        problems.append("dataset.json: labels must map 'background' to 0")
    values = sorted(int(v) for v in labels.values())
    if values != list(range(len(values))):
        problems.append(f"dataset.json: label values must be consecutive from 0, got {values}")
    label_files = sorted((folder / "labelsTr").glob(f"*{ending}"))
    cases = [p.name[: -len(ending)] for p in label_files]
    if meta["numTraining"] != len(cases):
        problems.append(
            f"dataset.json: numTraining is {meta['numTraining']} but labelsTr holds {len(cases)} cases"
        )
    image_cases = {p.name[: -len(ending) - 5] for p in (folder / "imagesTr").glob(f"*{ending}")}
    for orphan in sorted(image_cases - set(cases)):
        problems.append(f"imagesTr/{orphan}: image without a label in labelsTr")
    allowed = set(values)
    for case, label_path in zip(cases, label_files, strict=True):
        label = nib.load(str(label_path))
        for ch in channels:
            image_path = folder / "imagesTr" / f"{case}_{ch:04d}{ending}"
            if not image_path.is_file():
                problems.append(f"imagesTr/{image_path.name}: missing channel {ch} of case {case}")
                continue
            image = nib.load(str(image_path))
            if image.shape != label.shape:
                problems.append(f"{case}: image shape {image.shape} differs from label shape {label.shape}")
            elif not np.allclose(image.affine, label.affine, atol=1e-4):
                problems.append(f"{case}: image and label affines differ")
            if read_data and not np.isfinite(np.asanyarray(image.dataobj)).all():
                problems.append(f"imagesTr/{image_path.name}: NaN or infinite values")
        if read_data:
            found = {int(v) for v in np.unique(np.asanyarray(label.dataobj))}
            if not found <= allowed:
                problems.append(
                    f"labelsTr/{label_path.name}: values {sorted(found - allowed)} not in dataset.json"
                )
    splits_path = folder / "splits_final.json"
    if splits_path.is_file():
        known = set(cases)
        for k, fold in enumerate(json.loads(splits_path.read_text(encoding="utf-8"))):
            unknown = (set(fold["train"]) | set(fold["val"])) - known
            if unknown:
                problems.append(f"splits_final.json fold {k}: unknown cases {sorted(unknown)[:3]}")
            if set(fold["train"]) & set(fold["val"]):
                problems.append(f"splits_final.json fold {k}: cases in both train and val")
    return problems
