"""End to end with a tiny untrained VAE on a tiny phantom: the mechanics, and figures that must come
out a certain way whatever the model (a replayed training subject is a perfect memorisation)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from cardiosynth.data.labels import Group
from cardiosynth.evaluation.synthesis import evaluate_synthesis, variants
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis.modes import CORRELATION_MODES, INTERPOLATIONS


@pytest.fixture(scope="module")
def data(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared phantom (one subject per group) with a renamed copy of each: two per group, the
    fewest a split allows."""
    root = tmp_path_factory.mktemp("evalphantom") / "training"
    shutil.copytree(phantom_root / "training", root)
    for subject in sorted(root.iterdir()):
        twin = root / subject.name.replace("patient0", "patient9")
        twin.mkdir()
        for file in subject.iterdir():
            shutil.copy(file, twin / file.name.replace(subject.name, twin.name))
    return root.parent


def test_variants_cover_every_mode_and_family() -> None:
    rows = variants()
    assert {m for m, _ in rows} == set(CORRELATION_MODES)
    assert {f for _, f in rows} == set(INTERPOLATIONS)
    assert len(variants(cross=True)) == len(CORRELATION_MODES) * len(INTERPOLATIONS)


def _tiny_vae() -> LabelVAE:
    torch.manual_seed(0)
    return LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval()


def _evaluate(data: Path, out: Path, steps: int, **kwargs: Any) -> dict[str, Any]:
    """The smallest evaluation: HCM only, mode ``none``, two subjects, one trajectory."""
    return evaluate_synthesis(
        _tiny_vae(),
        data,
        out,
        n=2,
        trajectory_n=1,
        trajectory_steps=steps,
        seed=0,
        k=1,
        groups=(Group.HCM,),
        modes=("none",),
        **kwargs,
    )


def test_evaluation_end_to_end_with_a_tiny_model(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = _evaluate(data, out, steps=2)
    hcm = report["classes"]["HCM"]
    assert (hcm["train"], hcm["held_out"]) == (1, 1)
    # Statistics from training subjects only; comparisons against the held-out one.
    split = report["split"]["HCM"]
    assert not set(split["train"]) & set(split["held_out"])
    rows = hcm["rows"]
    assert [r for r in rows if r.startswith("method:")] == [
        f"method:{m}/{f}" for m, f in variants(modes=["none"])
    ] + [
        f"method:{report['default']['correlation']}/{report['default']['interpolation']} ({what})"
        for what in (
            "no clean-up",
            "no sampling calibration",
            "no motion calibration",
            "no contraction calibration",
            "nearest-slice extents",
            "base's length and body",
            "no calibration",
            "RV volume fitted",
            "LV extent to the apical cap",
        )
    ]
    for name in ("class_mean", "nearest_replay", "elastic_nor", "shuffled_slices", "shuffled_dims"):
        assert rows[f"baseline:{name}"]["n"] == 2
    # The replay baseline returns training subjects as they are: memorisation Dice 1, whatever the model.
    assert rows["baseline:nearest_replay"]["memorisation_dice"] == pytest.approx(1.0)
    # ... and so is the held-out subject here, a copy of a training one; a deformed NOR heart is not.
    assert rows["real:held_out"]["memorisation_dice"] == pytest.approx(1.0)
    assert rows["baseline:elastic_nor"]["memorisation_dice"] < 0.95
    # Replay fails the memorisation target (median 1 is never below the held-out bar).
    assert "HCM: memorisation" in " ".join(report["targets_by_row"]["baseline:nearest_replay"]["missed"])
    assert len(rows["baseline:nearest_replay"]["memorisation_dice_per_subject"]) == 2
    # Slice shuffling keeps every volume and every slice's walls (restored from the same probabilities
    # as the method's stacks): the same biomarker volumes and wall maximum as the default row.
    default = report["default"]
    method = rows[f"method:{default['correlation']}/{default['interpolation']}"]
    for name in ("lv_edv_index", "rv_edv_index", "mass_index", "max_wall_thickness"):
        assert rows["baseline:shuffled_slices"]["biomarker_means"][name] == pytest.approx(
            method["biomarker_means"][name], nan_ok=True
        )
    assert set(hcm["trajectories"]) == set(INTERPOLATIONS)
    assert [c["severity"] for c in hcm["trajectories"]["sample"]["curve"]] == [0.5, 1.0]
    assert any(t["target"] == "rule fidelity >= 80 %" for t in report["targets"])
    saved = json.loads((out / "synthesis.json").read_text())
    assert saved["classes"]["HCM"]["rows"].keys() == rows.keys()
    for name in ("synthesis.md", "precision_recall.png", "identity_fidelity.png"):
        assert (out / name).stat().st_size > 0


def test_an_external_held_out_cohort(phantom_root: Path, data: Path, tmp_path: Path) -> None:
    """All of the data trains; every comparison is against the other cohort's subjects."""
    out = tmp_path / "report"
    report = _evaluate(phantom_root, out, steps=1, held_out_root=data)
    hcm = report["classes"]["HCM"]
    assert (hcm["train"], hcm["held_out"]) == (1, 2)
    assert report["held_out_cohort"] is True
    assert report["train_fraction"] is None
    assert len(report["split"]["HCM"]["held_out"]) == 2
    # The held-out cohort holds a copy of the training subject: its memorisation Dice is 1.
    assert max(hcm["rows"]["real:held_out"]["memorisation_dice_per_subject"]) == pytest.approx(1.0)
    assert "external held-out cohort" in (out / "synthesis.md").read_text()
    # A cohort without NOR subjects cannot hold out the NOR null row.
    from cardiosynth.synthesis import sources

    partial = tmp_path / "partial" / "training"
    partial.mkdir(parents=True)
    for ref in sources.scan(data):
        if ref.group is Group.HCM:
            shutil.copytree(ref.path, partial / ref.subject_id)
    with pytest.raises(ValueError, match="only one of"):
        _evaluate(phantom_root, tmp_path / "bad", steps=1, held_out_root=partial.parent)
