from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiosynth.cli import main
from cardiosynth.export.cases import Case, collect_cases
from cardiosynth.export.nnunet import check_nnunet_dataset
from cardiosynth.export.splits import assign_folds


def _base_of(built: Path) -> dict[str, str]:
    """Synthetic subject -> base subject, read from the provenance files themselves."""
    return {
        p.parent.name: json.loads(p.read_text())["base_subject"]
        for p in (built / "synthetic").glob("*/provenance.json")
    }


@pytest.fixture(scope="module")
def nnunet(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nnUNet_raw")
    args = ["dataset", "export", "--from", str(built), "--format", "nnunet", "--out", str(root),
            "--id", "501", "--name", "CardioSynth", "--quiet"]  # fmt: skip
    assert main(args) == 0
    return root / "Dataset501_CardioSynth"


def test_nnunet_layout_and_dataset_json(nnunet: Path, built: Path) -> None:
    meta = json.loads((nnunet / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "cineMRI"}
    assert meta["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert meta["file_ending"] == ".nii.gz"
    images = sorted(p.name for p in (nnunet / "imagesTr").iterdir())
    labels = sorted(p.name for p in (nnunet / "labelsTr").iterdir())
    assert all(name.endswith("_0000.nii.gz") for name in images)
    assert [n.replace("_0000.nii.gz", ".nii.gz") for n in images] == labels
    # 2 HCM x 1 severity x 2 phases + 1 DCM x 2 severities x 2 phases + 6 real x 2 phases
    assert meta["numTraining"] == len(labels) == 4 + 4 + 12
    cases = [n.removesuffix(".nii.gz") for n in labels]
    assert "real_patient001_ED" in cases
    assert "real_patient901_ES" in cases
    assert sum(c.startswith("syn_HCM_") for c in cases) == 4
    assert {c for c in cases if c.startswith("syn_DCM_000")} == {
        f"syn_DCM_000_s{s}_{ph}" for s in ("0.50", "1.00") for ph in ("ED", "ES")
    }
    assert (nnunet / "imagesTs").is_dir()
    for case in cases:
        image = nib.load(str(nnunet / "imagesTr" / f"{case}_0000.nii.gz"))
        label = nib.load(str(nnunet / "labelsTr" / f"{case}.nii.gz"))
        assert image.shape == label.shape, case
        assert np.allclose(image.affine, label.affine), case
        assert set(np.unique(np.asanyarray(label.dataobj)).tolist()) <= {0, 1, 2, 3}, case
    # A synthetic case is the file the build wrote, byte for byte.
    hcm = sorted((built / "synthetic" / "HCM_000").glob("*_ED_gt.nii.gz"))[0]
    case = "syn_" + hcm.name.removesuffix("_gt.nii.gz")
    assert (nnunet / "labelsTr" / f"{case}.nii.gz").read_bytes() == hcm.read_bytes()
    assert check_nnunet_dataset(nnunet) == []


def test_nnunet_checker_catches_broken_datasets(nnunet: Path, tmp_path: Path) -> None:
    broken = tmp_path / "Dataset502_Broken"
    shutil.copytree(nnunet, broken)
    label_path = sorted((broken / "labelsTr").iterdir())[0]
    label = nib.load(str(label_path))
    data = np.asanyarray(label.dataobj).copy()
    data[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(data, label.affine), str(label_path))
    image_path = sorted((broken / "imagesTr").iterdir())[1]
    image = nib.load(str(image_path))
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj)[:, :, :-1], image.affine), str(image_path))
    (sorted((broken / "labelsTr").iterdir())[2]).unlink()
    problems = "\n".join(check_nnunet_dataset(broken))
    assert "values [5] not in dataset.json" in problems
    assert "differs from label shape" in problems
    assert "numTraining is 20 but labelsTr holds 19" in problems
    assert "image without a label" in problems


def test_splits_keep_descendants_with_their_base(nnunet: Path, built: Path) -> None:
    folds = json.loads((nnunet / "splits_final.json").read_text())
    cases = {p.name.removesuffix(".nii.gz") for p in (nnunet / "labelsTr").iterdir()}
    assert len(folds) == 5
    fold_of: dict[str, int] = {}
    for k, fold in enumerate(folds):
        assert set(fold["train"]) | set(fold["val"]) == cases
        assert not set(fold["train"]) & set(fold["val"])
        assert fold["val"]
        for case in fold["val"]:
            assert case not in fold_of  # each case validates exactly once
            fold_of[case] = k
    bases = _base_of(built)
    assert set(bases.values()) == {"patient004", "patient901"}  # both NOR subjects were used
    for case, k in fold_of.items():
        if case.startswith("syn_"):
            subject = "_".join(case.split("_")[1:3])  # syn_HCM_000_s0.73_ED -> HCM_000
            assert fold_of[f"real_{bases[subject]}_ED"] == k, case
        else:
            assert fold_of[case.replace("_ED", "_ES") if case.endswith("_ED") else case] == k


def test_export_refuses_existing_and_clashing_datasets(
    built: Path, nnunet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "dataset",
        "export",
        "--from",
        str(built),
        "--format",
        "nnunet",
        "--out",
        str(nnunet.parent),
        "--quiet",
    ]
    assert main([*base, "--id", "501", "--name", "CardioSynth"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*base, "--id", "501", "--name", "Other"]) == 2
    assert "already uses nnU-Net dataset id 501" in capsys.readouterr().err
    assert main([*base, "--id", "1000"]) == 2
    assert "1..999" in capsys.readouterr().err


def test_real_data_and_test_subjects(built: Path, export_data: Path, tmp_path: Path) -> None:
    """``--include-real`` adds only subjects the build lacks; an ACDC testing/ subject is a test case."""
    data = tmp_path / "acdc"
    shutil.copytree(export_data / "training", data / "training")
    src = data / "training" / "patient001"
    test_subject = data / "testing" / "patient101"
    test_subject.mkdir(parents=True)
    for f in src.iterdir():
        (test_subject / f.name.replace("patient001", "patient101")).write_bytes(f.read_bytes())
    cases = collect_cases(built, data)
    assert sum(c.source == "real" and not c.test for c in cases) == 12  # not twice
    tests = [c for c in cases if c.test]
    assert sorted(c.case_id for c in tests) == ["real_patient101_ED", "real_patient101_ES"]
    root = tmp_path / "raw"
    args = ["dataset", "export", "--from", str(built), "--format", "nnunet", "--out", str(root), "--id", "7",
            "--name", "Acdc", "--include-real", str(data), "--folds", "3", "--quiet"]  # fmt: skip
    assert main(args) == 0
    out = root / "Dataset007_Acdc"
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [
        "real_patient101_ED_0000.nii.gz", "real_patient101_ES_0000.nii.gz"
    ]  # fmt: skip
    assert (out / "labelsTs" / "real_patient101_ED.nii.gz").is_file()
    folds = json.loads((out / "splits_final.json").read_text())
    assert len(folds) == 3
    assert all("real_patient101_ED" not in f["train"] + f["val"] for f in folds)


def test_monai_datalist_loads_with_monai(built: Path, tmp_path: Path) -> None:
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImaged

    out = tmp_path / "monai"
    args = ["dataset", "export", "--from", str(built), "--format", "monai", "--out", str(out), "--fold", "1",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    path = out / "datalist.json"
    training = load_decathlon_datalist(path, data_list_key="training")
    validation = load_decathlon_datalist(path, data_list_key="validation")
    assert len(training) + len(validation) == 20
    assert validation
    assert training
    assert {v["fold"] for v in validation} == {1}
    assert 1 not in {t["fold"] for t in training}
    for item in training + validation:
        assert Path(item["image"]).is_file()
        assert Path(item["label"]).is_file()
    # no base subject on both sides
    assert not {t["base_subject"] for t in training} & {v["base_subject"] for v in validation}
    assert {t["source"] for t in training + validation} == {"real", "synthetic"}
    loaded = LoadImaged(keys=["image", "label"], image_only=True)(training[0])
    assert loaded["image"].shape == loaded["label"].shape
    assert set(np.unique(np.asarray(loaded["label"])).tolist()) <= {0, 1, 2, 3}
    assert main(args) == 2  # exists: refused without --overwrite
    assert main([*args, "--overwrite", "--fold", "5"]) == 2  # fold out of range


def _case(family: str, group: str, source: str, i: int) -> Case:
    p = Path(f"/x/{family}_{i}")
    return Case(f"{source}_{family}_{i}", p, p, source, group, "ED", None, family, family)  # type: ignore[arg-type]


def test_assign_folds_balances_groups_and_never_splits_a_family() -> None:
    rng = np.random.default_rng(0)
    cases = []
    for k in range(30):
        family, group = f"patient{k:03d}", ["NOR", "DCM", "HCM", "MINF", "RV"][k % 5]
        cases += [_case(family, group, "real", i) for i in range(2)]
        cases += [_case(family, "HCM", "synthetic", i) for i in range(int(rng.integers(0, 6)))]
    folds = assign_folds(cases, 5, seed=1)
    assert folds == assign_folds(cases, 5, seed=1)
    by_family: dict[str, set[int]] = {}
    for c in cases:
        by_family.setdefault(c.family, set()).add(folds[c.case_id])
    assert all(len(f) == 1 for f in by_family.values())
    for group in ("NOR", "DCM", "RV"):  # six subjects of each group: 1 or 2 per fold
        counts = np.bincount(
            [folds[c.case_id] for c in cases if c.group == group and c.source == "real"], minlength=5
        )
        assert counts.min() >= 2  # two cases (ED, ES) per subject
        assert counts.max() <= 4
    sizes = np.bincount(list(folds.values()), minlength=5)
    assert sizes.max() - sizes.min() <= 6
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        assign_folds(cases[:8], 5)


def test_a_plain_synthesize_folder_exports_and_too_few_bases_are_refused(built: Path, tmp_path: Path) -> None:
    """``--from`` may be ``cardiosynth synthesize`` output; two base subjects cannot fill five folds."""
    cases = collect_cases(built / "synthetic")
    assert {c.source for c in cases} == {"synthetic"}
    assert {c.family for c in cases} == {"patient004", "patient901"}
    base = ["dataset", "export", "--from", str(built / "synthetic"), "--format", "nnunet", "--out",
            str(tmp_path), "--quiet"]  # fmt: skip
    assert main(base) == 2
    assert not list(tmp_path.iterdir())  # refused before anything was written
    assert main([*base, "--folds", "2"]) == 0
    folds = json.loads((tmp_path / "Dataset501_CardioSynth" / "splits_final.json").read_text())
    assert [len(f["val"]) for f in folds] != [0, 0]
    assert all(len({c.split("_s")[0] for c in f["val"]}) >= 1 for f in folds)


def test_symlinked_real_subjects_are_checksummed_and_exported(export_data: Path, tmp_path: Path) -> None:
    from cardiosynth.export.build import _copy_real
    from cardiosynth.export.card import checksums
    from cardiosynth.synthesis import sources

    refs = sources.scan(export_data)[:2]
    (linked,) = _copy_real(refs[:1], tmp_path / "ds" / "real", "symlink")[:1]
    assert linked.is_symlink()
    sums = checksums(tmp_path / "ds")
    assert len(sums) == len(list(refs[0].path.iterdir()))
    (tmp_path / "ds" / "dataset.json").write_text("{}")  # a built dataset holding one linked subject
    cases = [c for c in collect_cases(tmp_path / "ds", export_data) if c.source == "real"]
    assert sorted({c.subject for c in cases}) == sorted(r.subject_id for r in sources.scan(export_data))
    from_dataset = [c for c in cases if c.subject == refs[0].subject_id]
    assert all(
        tmp_path / "ds" / "real" in c.image.parents for c in from_dataset
    )  # taken once, from the dataset
