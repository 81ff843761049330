"""Export as a MONAI (Medical Segmentation Decathlon style) datalist JSON.

``training`` and ``validation`` lists of ``{"image", "label", ...metadata}`` for one fold of the same
family-preserving split as the nnU-Net export (a base subject and its descendants never straddle
the two lists); every item also carries its ``fold`` so other folds can be drawn from one file.
Paths are relative to the JSON file's folder, which is how
``monai.data.load_decathlon_datalist(path, data_list_key="training")`` resolves them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cardiosynth.export.cases import Case
from cardiosynth.export.nnunet import CHANNEL_NAMES, LABELS
from cardiosynth.export.splits import assign_folds

DATALIST = "datalist.json"


def datalist_path(out: Path) -> Path:
    """``out`` itself when it names a ``.json`` file, else ``out/datalist.json``."""
    out = Path(out)
    return out if out.suffix == ".json" else out / DATALIST


def export_monai(
    cases: Sequence[Case],
    out: Path,
    *,
    fold: int = 0,
    n_folds: int = 5,
    seed: int = 0,
    name: str = "CardioSynth",
    overwrite: bool = False,
) -> Path:
    """Write the datalist for validation fold ``fold``; return its path. The image files are not
    copied: the items point at the dataset's own files.

    Raises:
        ValueError: ``fold`` outside ``0..n_folds-1`` or too few base subjects for the folds.
        FileExistsError: the datalist exists and ``overwrite`` is false.
    """
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    path = datalist_path(out)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    folds = assign_folds(cases, n_folds, seed)
    base = os.path.abspath(path.parent)

    def rel(p: Path) -> str:
        # abspath, not resolve: a symlinked real subject stays addressed through the dataset.
        return Path(os.path.relpath(os.path.abspath(p), base)).as_posix()

    def item(c: Case) -> dict[str, Any]:
        entry: dict[str, Any] = {"image": rel(c.image)}
        if c.label is not None:
            entry["label"] = rel(c.label)
        return {**entry, **c.metadata(), "fold": folds.get(c.case_id)}

    training = [item(c) for c in cases if not c.test and folds[c.case_id] != fold]
    validation = [item(c) for c in cases if not c.test and folds[c.case_id] == fold]
    tests = [item(c) for c in cases if c.test]
    payload: dict[str, Any] = {
        "name": name,
        "description": "Cine MR short-axis volumes (ED and ES as items), real and cardiosynth synthetic",
        "tensorImageSize": "3D",
        "modality": CHANNEL_NAMES,
        "labels": {str(v): k for k, v in LABELS.items()},
        "numTraining": len(training),
        "numValidation": len(validation),
        "numTest": len(tests),
        "fold": fold,
        "folds": n_folds,
        "split_seed": seed,
        "training": training,
        "validation": validation,
    }
    if tests:  # MONAI reads the first test entry to tell dicts from paths: no empty list
        payload["test"] = tests
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
