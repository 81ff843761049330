from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiosynth.data.acdc import (
    AcdcFormatError,
    SubjectInfo,
    body_surface_area,
    find_subject_dirs,
    parse_info_cfg,
    read_dataset,
    read_subject,
)
from cardiosynth.data.labels import Group

INFO = "ED: 5\nES: 2\nGroup: HCM\nHeight: 180.0\nNbFrame: 10\nWeight: 80.0\n"


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0]) if affine is None else affine), path)


def make_subject(
    root: Path, name: str = "patient001", info: str = INFO, frames: tuple[int, ...] = (2, 5)
) -> Path:
    """A tiny hand-made subject; frame f has an LV cavity of f voxels so ED/ES are recognisable."""
    d = root / name
    d.mkdir(parents=True)
    (d / "Info.cfg").write_text(info)
    for f in frames:
        image = np.full((6, 6, 3), float(f), dtype=np.float32)
        label = np.zeros((6, 6, 3), dtype=np.uint8)
        label.reshape(-1)[:f] = 3
        _save(d / f"{name}_frame{f:02d}.nii.gz", image)
        _save(d / f"{name}_frame{f:02d}_gt.nii.gz", label)
    return d


def test_reads_ed_and_es_from_info_cfg_not_file_order(tmp_path: Path) -> None:
    subject = read_subject(make_subject(tmp_path))
    assert subject.info == SubjectInfo(ed=5, es=2, group=Group.HCM, height=180.0, weight=80.0, nb_frames=10)
    assert np.count_nonzero(subject.ed_label == 3) == 5  # frame05 is ED although frame02 sorts first
    assert np.count_nonzero(subject.es_label == 3) == 2
    assert subject.ed_image.dtype == np.float32
    assert subject.ed_label.dtype == np.uint8
    assert subject.spacing == pytest.approx((1.5, 1.5, 8.0))
    assert subject.bsa == pytest.approx(2.0)  # sqrt(180 * 80 / 3600)
    assert subject.cine_path is None


def test_mosteller_bsa() -> None:
    assert body_surface_area(180.0, 80.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        body_surface_area(0.0, 80.0)


def test_reads_the_phantom_layout(phantom_root: Path) -> None:
    subjects = read_dataset(phantom_root)
    assert [s.subject_id for s in subjects] == [f"patient{i:03d}" for i in range(1, 6)]
    assert {s.group for s in subjects} == set(Group)
    for s in subjects:
        assert s.ed_image.shape == s.ed_label.shape == s.es_label.shape
        assert set(np.unique(s.ed_label)) <= {0, 1, 2, 3}


def test_find_subject_dirs_accepts_root_training_or_one_subject(phantom_root: Path) -> None:
    assert len(find_subject_dirs(phantom_root)) == 5
    assert len(find_subject_dirs(phantom_root / "training")) == 5
    one = phantom_root / "training" / "patient002"
    assert find_subject_dirs(one) == [one]


def test_empty_or_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AcdcFormatError, match="no patientNNN"):
        find_subject_dirs(tmp_path)
    with pytest.raises(AcdcFormatError, match="does not exist"):
        find_subject_dirs(tmp_path / "nope")


def test_info_cfg_tolerates_unknown_keys_and_optional_fields(tmp_path: Path) -> None:
    p = tmp_path / "Info.cfg"
    p.write_text("ED: 1\nES: 9\nScanner: 1.5T\n")
    info = parse_info_cfg(p)
    assert (info.ed, info.es, info.group, info.bsa) == (1, 9, None, None)


def test_info_cfg_round_trips_through_to_cfg(tmp_path: Path) -> None:
    info = SubjectInfo(ed=1, es=12, group=Group.RV, height=170.0, weight=65.5, nb_frames=30)
    p = tmp_path / "Info.cfg"
    p.write_text(info.to_cfg())
    assert parse_info_cfg(p) == info


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ED 1\nES: 2\n", r"Info\.cfg:1: expected 'Key: value'"),
        ("ES: 2\n", "required key 'ED'"),
        ("ED: one\nES: 2\n", "ED must be a frame number"),
        ("ED: 1.5\nES: 2\n", "ED must be a positive integer"),
        ("ED: 0\nES: 2\n", "ED must be a positive integer"),
        ("ED: 3\nES: 3\n", "same frame"),
        ("ED: 1\nES: 12\nNbFrame: 10\n", "beyond NbFrame"),
        ("ED: 1\nES: 2\nGroup: FOO\n", "unknown group 'FOO'"),
        ("ED: 1\nES: 2\nHeight: -3\n", "Height must be positive"),
        ("ED: 1\nES: 2\nED: 1\n", "duplicate key 'ED'"),
    ],
)
def test_malformed_info_cfg_names_file_and_problem(tmp_path: Path, text: str, message: str) -> None:
    d = make_subject(tmp_path, info=text)
    with pytest.raises(AcdcFormatError, match=message) as err:
        read_subject(d)
    assert "Info.cfg" in str(err.value)


def test_missing_info_cfg(tmp_path: Path) -> None:
    d = make_subject(tmp_path)
    (d / "Info.cfg").unlink()
    with pytest.raises(AcdcFormatError, match=r"missing Info\.cfg"):
        read_subject(d)


def test_missing_frame_names_the_file(tmp_path: Path) -> None:
    d = make_subject(tmp_path, frames=(2,))
    with pytest.raises(AcdcFormatError, match=r"patient001_frame05\.nii\.gz: missing ED frame 5"):
        read_subject(d)


def test_missing_label_file(tmp_path: Path) -> None:
    d = make_subject(tmp_path)
    (d / "patient001_frame02_gt.nii.gz").unlink()
    with pytest.raises(AcdcFormatError, match=r"frame02_gt\.nii\.gz: missing ES frame 2"):
        read_subject(d)


def test_shape_mismatch_between_image_and_label(tmp_path: Path) -> None:
    d = make_subject(tmp_path)
    _save(d / "patient001_frame05_gt.nii.gz", np.zeros((6, 6, 4), dtype=np.uint8))
    with pytest.raises(AcdcFormatError, match=r"frame05_gt.nii.gz: shape \(6, 6, 4\) differs"):
        read_subject(d)


def test_affine_mismatch_between_image_and_label(tmp_path: Path) -> None:
    d = make_subject(tmp_path)
    _save(
        d / "patient001_frame05_gt.nii.gz", np.zeros((6, 6, 3), dtype=np.uint8), np.diag([1.0, 1.0, 8.0, 1.0])
    )
    with pytest.raises(AcdcFormatError, match="affine differs"):
        read_subject(d)


@pytest.mark.parametrize("bad", [4.0, 2.5, -1.0])
def test_label_values_outside_acdc(tmp_path: Path, bad: float) -> None:
    d = make_subject(tmp_path)
    label = np.zeros((6, 6, 3), dtype=np.float32)
    label[0, 0, 0] = bad
    _save(d / "patient001_frame02_gt.nii.gz", label)
    with pytest.raises(AcdcFormatError, match=r"frame02_gt.nii.gz: label values outside"):
        read_subject(d)


def test_float_stored_integral_labels_are_accepted(tmp_path: Path) -> None:
    d = make_subject(tmp_path)
    label = np.zeros((6, 6, 3), dtype=np.float32)
    label[0, 0, 0] = 2.0
    _save(d / "patient001_frame02_gt.nii.gz", label)
    assert read_subject(d).es_label[0, 0, 0] == 2


def test_ed_and_es_on_different_grids(tmp_path: Path) -> None:
    d = make_subject(tmp_path)
    for suffix, data in (("", np.zeros((6, 7, 3), np.float32)), ("_gt", np.zeros((6, 7, 3), np.uint8))):
        _save(d / f"patient001_frame02{suffix}.nii.gz", data)
    with pytest.raises(AcdcFormatError, match="not on the same grid"):
        read_subject(d)


def test_corrupt_nifti_names_the_file(tmp_path: Path) -> None:
    d = make_subject(tmp_path)
    (d / "patient001_frame05.nii.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(AcdcFormatError, match=r"patient001_frame05\.nii\.gz"):
        read_subject(d)


def test_cine_file_is_found_but_not_loaded(tmp_path: Path, phantom_root: Path) -> None:
    d = tmp_path / "patient001"
    shutil.copytree(phantom_root / "training" / "patient001", d)
    (d / "patient001_4d.nii.gz").write_bytes(b"not read")
    assert read_subject(d).cine_path == d / "patient001_4d.nii.gz"
