from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiosynth.data.nifti import load_volume, save_volume


def test_round_trip_keeps_data_affine_and_spacing(tmp_path: Path) -> None:
    affine = np.diag([1.4, 1.6, 8.0, 1.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = tmp_path / "a" / "v.nii.gz"
    save_volume(path, data, affine)
    vol = load_volume(path)
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.affine, affine)
    assert vol.spacing == pytest.approx((1.4, 1.6, 8.0))
    assert [p.name for p in path.parent.iterdir()] == ["v.nii.gz"]  # no temporary left behind


def test_single_frame_4d_is_squeezed(tmp_path: Path) -> None:
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 1), dtype=np.float32), np.eye(4)), path)
    assert load_volume(path).array.shape == (2, 3, 4)


def test_real_4d_is_rejected_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 5), dtype=np.float32), np.eye(4)), path)
    with pytest.raises(ValueError, match=r"cine\.nii\.gz.*3D"):
        load_volume(path)


def test_garbage_file_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match=r"bad\.nii\.gz"):
        load_volume(path)


def test_saved_volumes_are_not_private(tmp_path: Path) -> None:
    """A written volume has the mode of any new file of the process (umask applied), not mkstemp's
    0600: generated data must be readable by a container's unprivileged user."""
    import os

    path = tmp_path / "v.nii.gz"
    save_volume(path, np.zeros((2, 2, 2), np.uint8), np.eye(4))
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    if not mask & 0o044:  # the usual umasks (022, 002): group and others may read
        assert path.stat().st_mode & 0o044 == 0o044
