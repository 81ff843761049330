"""The nnU-Net export against nnU-Net v2's own readers, where nnunetv2 is installed.

The project does not depend on nnunetv2 (it pulls a training stack); this test runs wherever it is
present (checked with nnunetv2 2.8.1) and skips elsewhere, where test_export.py checks the
documented format.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cardiosynth.cli import main

pytest.importorskip("nnunetv2")  # its package init reads no paths; nnunetv2.paths is imported below


@pytest.mark.slow
def test_nnunet_verifies_fingerprints_and_plans_the_export(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, pre = tmp_path / "nnUNet_raw", tmp_path / "nnUNet_preprocessed"
    for name, path in (
        ("nnUNet_raw", raw),
        ("nnUNet_preprocessed", pre),
        ("nnUNet_results", tmp_path / "res"),
    ):
        monkeypatch.setenv(name, str(path))
    # nnunetv2.paths reads the environment at import: the imports come after the variables are set.
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    args = ["dataset", "export", "--from", str(built), "--format", "nnunet", "--out", str(raw), "--id", "503",
            "--name", "Tool", "--quiet"]  # fmt: skip
    assert main(args) == 0
    folder = raw / "Dataset503_Tool"
    verify_dataset_integrity(str(folder), num_processes=1)  # raises on a format error
    extract_fingerprints([503], num_processes=1, check_dataset_integrity=False)
    plan_experiments([503])
    assert (pre / "Dataset503_Tool" / "nnUNetPlans.json").is_file()
    # The planner takes our leak-free folds into the preprocessed folder, where training reads them.
    ours = json.loads((folder / "splits_final.json").read_text())
    assert json.loads((pre / "Dataset503_Tool" / "splits_final.json").read_text()) == ours

    # And nnU-Net's check can fail: a label file missing.
    broken = raw / "Dataset504_Broken"
    shutil.copytree(folder, broken)
    os.remove(sorted((broken / "labelsTr").iterdir())[0])
    with pytest.raises((AssertionError, RuntimeError, FileNotFoundError)):
        verify_dataset_integrity(str(broken), num_processes=1)
