from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiosynth.data.acdc import read_dataset, read_subject
from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.classify import classify
from cardiosynth.data.labels import ACDC_GROUP_ORDER, LV_CAVITY, RV_CAVITY, Group
from cardiosynth.data.phantom import generate_dataset, generate_subject
from cardiosynth.data.phantom.generator import group_for_index
from cardiosynth.data.phantom.preview import write_preview


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_groups_come_in_equal_acdc_ordered_blocks() -> None:
    groups = [group_for_index(i, 100) for i in range(100)]
    assert groups[:20] == [Group.DCM] * 20
    assert groups[60:80] == [Group.NOR] * 20
    assert [group_for_index(i, 7) for i in range(7)] == [
        Group.DCM, Group.DCM, Group.HCM, Group.HCM, Group.MINF, Group.NOR, Group.RV
    ]  # fmt: skip
    with pytest.raises(ValueError, match="outside"):
        group_for_index(7, 7)


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path: Path, phantom_root: Path) -> None:
    generate_dataset(tmp_path / "b", n_subjects=5, seed=0, workers=2)
    assert digests(tmp_path / "b") == digests(phantom_root)


def test_a_data_set_subject_is_generate_subject_with_the_set_size(phantom_root: Path) -> None:
    # generate_dataset stratifies each group's population draws by the group's size in the set.
    subject = generate_subject(2, Group.MINF, seed=0, n_subjects=5)
    saved = nib.load(phantom_root / "training" / "patient003" / "patient003_frame01_gt.nii.gz")
    np.testing.assert_array_equal(np.asarray(saved.dataobj), subject.ed_label)
    alone = generate_subject(2, Group.MINF, seed=0)  # drawn on its own: another heart
    assert alone.params.lv_edv != subject.params.lv_edv
    with pytest.raises(ValueError, match="subject 2 of 5 is MINF, not NOR"):
        generate_subject(2, Group.NOR, seed=0, n_subjects=5)


def test_other_seed_other_subjects() -> None:
    a = generate_subject(0, Group.NOR, seed=0)
    b = generate_subject(0, Group.NOR, seed=1)
    assert not np.array_equal(a.ed_label, b.ed_label) or a.ed_label.shape != b.ed_label.shape


def test_every_version_1_subject_meets_its_acdc_criteria() -> None:
    # Version 1 keeps every subject inside its group's criteria; version 2 lets a few percent sit
    # near the thresholds as in ACDC (its agreement band is tested in test_population.py).
    for index, group in enumerate(ACDC_GROUP_ORDER):
        s = generate_subject(index, group, seed=0, version=1)
        spacing = (s.params.acquisition.pixel_spacing,) * 2 + (s.params.acquisition.slice_spacing,)
        b = compute_biomarkers(s.ed_label, s.es_label, spacing, height=s.info.height, weight=s.info.weight)
        assert classify(b).label == group


def test_native_geometry_is_acdc_like(phantom_root: Path) -> None:
    for subject in read_dataset(phantom_root):
        sx, sy, sz = subject.spacing
        nx, ny, nz = subject.ed_label.shape
        assert 1.3 - 1e-6 <= sx <= 1.9 + 1e-6
        assert sx == pytest.approx(sy)
        assert 5.0 - 1e-6 <= sz <= 10.0 + 1e-6
        assert 8 <= nz <= 14
        assert 200 <= nx <= 256
        assert 200 <= ny <= 256
        assert 1 <= subject.info.es <= (subject.info.nb_frames or 0)


def test_labels_run_base_to_apex_with_the_rv_shorter_than_the_lv(phantom_root: Path) -> None:
    s = read_subject(phantom_root / "training" / "patient004")  # NOR
    lv_area = (s.ed_label >= 2).sum(axis=(0, 1))
    rv_area = (s.ed_label == RV_CAVITY).sum(axis=(0, 1))
    assert lv_area[0] > lv_area[np.flatnonzero(lv_area)[-1]]
    assert np.flatnonzero(rv_area)[-1] < np.flatnonzero(lv_area)[-1]


def test_image_has_structures_that_the_labels_leave_out(phantom_root: Path) -> None:
    s = read_subject(phantom_root / "training" / "patient004")
    blood = s.ed_image[s.ed_label == LV_CAVITY]
    # papillary muscles and trabeculae: dark pixels inside the bright cavity label
    assert np.percentile(blood, 2) < 0.6 * np.median(blood)
    background = s.ed_image[s.ed_label == 0]
    # bright fat and dark lung/air in what the labels call background
    assert np.percentile(background, 97) > 0.5 * np.median(blood)
    assert np.percentile(background, 20) < 0.1 * np.median(blood)


def test_scanner_styles_vary_across_subjects(phantom_root: Path) -> None:
    styles = {
        json.loads((p / "phantom.json").read_text())["style"] for p in (phantom_root / "training").iterdir()
    }
    assert len(styles) >= 2


def test_nibabel_and_simpleitk_agree_on_geometry(phantom_root: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    path = phantom_root / "training" / "patient003" / "patient003_frame01.nii.gz"
    img = nib.load(path)
    itk = sitk.ReadImage(str(path))
    assert itk.GetSize() == img.shape
    np.testing.assert_allclose(itk.GetSpacing(), img.header.get_zooms(), rtol=1e-5)
    # ITK is LPS, NIfTI RAS: flip the first two world axes.
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    direction = np.array(itk.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(
        lps_to_ras @ direction * np.array(itk.GetSpacing()), img.affine[:3, :3], atol=1e-4
    )
    np.testing.assert_allclose(lps_to_ras @ np.array(itk.GetOrigin()), img.affine[:3, 3], atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(itk).transpose(2, 1, 0), np.asanyarray(img.dataobj))


def test_refuses_to_overwrite_and_leaves_no_temporaries(tmp_path: Path) -> None:
    generate_dataset(tmp_path, n_subjects=5, seed=3, workers=1)
    with pytest.raises(FileExistsError, match="already holds 5 subjects"):
        generate_dataset(tmp_path, n_subjects=5, seed=3, workers=1)
    generate_dataset(tmp_path, n_subjects=5, seed=4, workers=1, overwrite=True)
    names = sorted(p.name for p in (tmp_path / "training").iterdir())
    assert names == [f"patient{i:03d}" for i in range(1, 6)]
    manifest = json.loads((tmp_path / "phantom.json").read_text())
    assert manifest["seed"] == 4
    assert manifest["groups"] == {g.value: 1 for g in ACDC_GROUP_ORDER}


@pytest.mark.parametrize(("n", "seed"), [(4, 0), (5, -1)])
def test_bad_arguments(tmp_path: Path, n: int, seed: int) -> None:
    with pytest.raises(ValueError, match=str(n) if n < 5 else "-1"):
        generate_dataset(tmp_path, n_subjects=n, seed=seed)


def test_preview_png(tmp_path: Path, phantom_root: Path) -> None:
    png = write_preview(read_dataset(phantom_root), tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
