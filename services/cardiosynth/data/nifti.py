"""NIfTI reading and atomic writing (nibabel), keeping the affine and the spacing together."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Volume:
    """A 3D array in NIfTI voxel order ``(X, Y, Z)`` with its voxel-to-world affine (RAS, mm)."""

    array: npt.NDArray[np.generic]
    affine: npt.NDArray[np.float64]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along X, Y, Z (the column norms of the affine)."""
        sx, sy, sz = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(sx), float(sy), float(sz)


def load_volume(path: Path, *, dtype: npt.DTypeLike | None = None) -> Volume:
    """Read a 3D NIfTI file.

    A 4D file with a single frame is squeezed to 3D; anything else that is not 3D raises
    ``ValueError`` naming the file and the shape.
    """
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # nibabel raises several unrelated types for corrupt files
        raise ValueError(f"{path}: not a readable NIfTI file ({exc})") from exc
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}")
    if dtype is not None:
        data = data.astype(dtype)
    return Volume(array=data, affine=np.asarray(img.affine, dtype=np.float64))


def _file_mode() -> int:
    """``0o666`` less this process's umask (read once, at import: ``os.umask`` can only be read by
    setting it, which is not safe once threads write files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def save_volume(path: Path, array: npt.NDArray[np.generic], affine: npt.NDArray[np.float64]) -> None:
    """Write ``array`` with ``affine`` to ``path`` atomically (temporary file, then rename).

    The qform and sform carry the same affine (code 1, scanner) so that nibabel, SimpleITK and
    other readers agree on the geometry.
    """
    if array.ndim not in (3, 4):
        raise ValueError(f"{path}: expected a 3D or 4D array, got shape {array.shape}")
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        nib.save(img, tmp)
        # mkstemp makes the file private (0600); a volume is data to share (a container's user, a
        # colleague), so it gets the mode any new file of this process would have.
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
