"""Reader for the ACDC layout, the project's interchange format.

Layout (Bernard et al. 2018)::

    ROOT/training/patient001/Info.cfg
    ROOT/training/patient001/patient001_frame01.nii.gz      image at ED (frame number from Info.cfg)
    ROOT/training/patient001/patient001_frame01_gt.nii.gz   labels: 0 bg, 1 RV, 2 MYO, 3 LV
    ROOT/training/patient001/patient001_frame12.nii.gz      image at ES
    ROOT/training/patient001/patient001_frame12_gt.nii.gz
    ROOT/training/patient001/patient001_4d.nii.gz           optional cine (not loaded)

ED and ES come from ``Info.cfg``, never from file order. Every error names the file and the problem.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import Group, as_label_map, parse_group
from cardiosynth.data.nifti import Volume, load_volume

log = logging.getLogger(__name__)

_SUBJECT_DIR = re.compile(r"^patient\d+$")
_INFO_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$")
# Affines of the image and its label file are written by the same tool; a looser match would
# hide a label file that belongs to another acquisition.
_AFFINE_TOLERANCE_MM = 1e-3


class AcdcFormatError(ValueError):
    """A file of an ACDC-layout data set is missing or malformed (the message names it)."""


@dataclass(frozen=True)
class SubjectInfo:
    """The contents of ``Info.cfg``.

    ``group``, ``height`` (cm), ``weight`` (kg) and ``nb_frames`` are ``None`` when the file omits
    them (user data); the ACDC files always have them. ``sex`` (``M``/``F``) is not an ACDC key: the
    phantom (version 2) adds ``Sex:`` because the RV rule's threshold depends on it; readers that
    do not know the key ignore it, and without it the rules fall back to the men's threshold.
    """

    ed: int
    es: int
    group: Group | None = None
    height: float | None = None
    weight: float | None = None
    nb_frames: int | None = None
    sex: str | None = None

    @property
    def bsa(self) -> float | None:
        """Body surface area in m² (Mosteller), or ``None`` without height and weight."""
        if self.height is None or self.weight is None:
            return None
        return body_surface_area(self.height, self.weight)

    def to_cfg(self) -> str:
        """Serialise in the ACDC ``Info.cfg`` format (keys sorted as in the challenge files)."""
        fields: dict[str, str] = {"ED": str(self.ed), "ES": str(self.es)}
        if self.group is not None:
            fields["Group"] = self.group.value
        if self.height is not None:
            fields["Height"] = f"{self.height:.1f}"
        if self.nb_frames is not None:
            fields["NbFrame"] = str(self.nb_frames)
        if self.weight is not None:
            fields["Weight"] = f"{self.weight:.1f}"
        if self.sex is not None:
            fields["Sex"] = self.sex
        return "".join(f"{k}: {v}\n" for k, v in fields.items())


def body_surface_area(height_cm: float, weight_kg: float) -> float:
    """Mosteller body surface area in m²: sqrt(height[cm] * weight[kg] / 3600)."""
    if not (height_cm > 0 and weight_kg > 0):
        raise ValueError(f"height and weight must be positive, got {height_cm} cm and {weight_kg} kg")
    return math.sqrt(height_cm * weight_kg / 3600.0)


@dataclass(frozen=True)
class Subject:
    """One subject: ED and ES images and labels on the same native grid.

    Arrays are in NIfTI voxel order ``(X, Y, Z)``; ``Z`` is the short-axis slice index.
    Images are ``float32``, labels ``uint8`` in the ACDC convention.
    """

    subject_id: str
    path: Path
    info: SubjectInfo
    ed_image: npt.NDArray[np.float32]
    ed_label: npt.NDArray[np.uint8]
    es_image: npt.NDArray[np.float32]
    es_label: npt.NDArray[np.uint8]
    affine: npt.NDArray[np.float64]
    cine_path: Path | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm (in-plane X, in-plane Y, slice spacing)."""
        return Volume(self.ed_label, self.affine).spacing

    @property
    def group(self) -> Group | None:
        return self.info.group

    @property
    def bsa(self) -> float | None:
        return self.info.bsa


def parse_info_cfg(path: Path) -> SubjectInfo:
    """Parse an ACDC ``Info.cfg``; raise :class:`AcdcFormatError` naming the line at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AcdcFormatError(f"{path}: missing Info.cfg") from None
    except UnicodeDecodeError as exc:
        raise AcdcFormatError(f"{path}: not a text file ({exc})") from None
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _INFO_LINE.match(line)
        if m is None:
            raise AcdcFormatError(f"{path}:{lineno}: expected 'Key: value', got {line.strip()!r}")
        key, value = m.group(1), m.group(2)
        if key in values:
            raise AcdcFormatError(f"{path}:{lineno}: duplicate key {key!r}")
        values[key] = value

    def integer(key: str, *, required: bool) -> int | None:
        if key not in values:
            if required:
                raise AcdcFormatError(f"{path}: required key {key!r} is missing")
            return None
        try:
            number = float(values[key])
        except ValueError:
            raise AcdcFormatError(f"{path}: {key} must be a frame number, got {values[key]!r}") from None
        if not number.is_integer() or number < 1:
            raise AcdcFormatError(f"{path}: {key} must be a positive integer, got {values[key]!r}")
        return int(number)

    def positive(key: str) -> float | None:
        if key not in values:
            return None
        try:
            number = float(values[key])
        except ValueError:
            raise AcdcFormatError(f"{path}: {key} must be a number, got {values[key]!r}") from None
        if not (math.isfinite(number) and number > 0):
            raise AcdcFormatError(f"{path}: {key} must be positive, got {values[key]!r}")
        return number

    ed = integer("ED", required=True) or 0  # required=True raises instead of returning None
    es = integer("ES", required=True) or 0
    nb_frames = integer("NbFrame", required=False)
    if ed == es:
        raise AcdcFormatError(f"{path}: ED and ES are the same frame ({ed})")
    if nb_frames is not None and max(ed, es) > nb_frames:
        raise AcdcFormatError(f"{path}: ED={ed}/ES={es} beyond NbFrame={nb_frames}")
    group: Group | None = None
    if "Group" in values:
        try:
            group = parse_group(values["Group"])
        except ValueError as exc:
            raise AcdcFormatError(f"{path}: {exc}") from None
    sex: str | None = None
    if "Sex" in values:
        sex = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}.get(values["Sex"].strip().upper())
        if sex is None:
            raise AcdcFormatError(f"{path}: Sex must be M or F, got {values['Sex']!r}")
    return SubjectInfo(
        ed=ed,
        es=es,
        group=group,
        height=positive("Height"),
        weight=positive("Weight"),
        nb_frames=nb_frames,
        sex=sex,
    )


def frame_paths(subject_dir: Path, frame: int) -> tuple[Path, Path]:
    """Image and label paths of ``frame`` (1-based, as in Info.cfg) of the subject in ``subject_dir``."""
    stem = f"{subject_dir.name}_frame{frame:02d}"
    return subject_dir / f"{stem}.nii.gz", subject_dir / f"{stem}_gt.nii.gz"


def _read_frame(subject_dir: Path, frame: int, phase: str) -> tuple[Volume, Volume]:
    image_path, label_path = frame_paths(subject_dir, frame)
    for p in (image_path, label_path):
        if not p.is_file():
            raise AcdcFormatError(f"{p}: missing {phase} frame {frame} (named by Info.cfg)")
    try:
        image = load_volume(image_path, dtype=np.float32)
        label = load_volume(label_path)
    except ValueError as exc:
        raise AcdcFormatError(str(exc)) from None
    if image.array.shape != label.array.shape:
        raise AcdcFormatError(
            f"{label_path}: shape {label.array.shape} differs from the image's {image.array.shape}"
        )
    if not np.allclose(image.affine, label.affine, atol=_AFFINE_TOLERANCE_MM):
        raise AcdcFormatError(f"{label_path}: affine differs from the image's ({image_path.name})")
    if not np.all(np.isfinite(image.array)):
        raise AcdcFormatError(f"{image_path}: image contains NaN or infinite values")
    try:
        labels = as_label_map(label.array, what=str(label_path))
    except ValueError as exc:
        raise AcdcFormatError(str(exc)) from None
    return image, Volume(labels, label.affine)


def read_subject(subject_dir: Path) -> Subject:
    """Read one ``patientNNN`` directory.

    Raises:
        AcdcFormatError: missing or malformed Info.cfg, missing ED/ES frame, image and label of
            different shape or affine, label values outside {0, 1, 2, 3}, or ED and ES of different
            geometry.
    """
    subject_dir = Path(subject_dir)
    if not subject_dir.is_dir():
        raise AcdcFormatError(f"{subject_dir}: not a directory")
    info = parse_info_cfg(subject_dir / "Info.cfg")
    ed_image, ed_label = _read_frame(subject_dir, info.ed, "ED")
    es_image, es_label = _read_frame(subject_dir, info.es, "ES")
    if ed_image.array.shape != es_image.array.shape or not np.allclose(
        ed_image.affine, es_image.affine, atol=_AFFINE_TOLERANCE_MM
    ):
        raise AcdcFormatError(
            f"{subject_dir}: ED frame {info.ed} {ed_image.array.shape} and ES frame {info.es} "
            f"{es_image.array.shape} are not on the same grid"
        )
    cine = subject_dir / f"{subject_dir.name}_4d.nii.gz"
    return Subject(
        subject_id=subject_dir.name,
        path=subject_dir,
        info=info,
        ed_image=ed_image.array.astype(np.float32),
        ed_label=ed_label.array.astype(np.uint8),
        es_image=es_image.array.astype(np.float32),
        es_label=es_label.array.astype(np.uint8),
        affine=ed_image.affine,
        cine_path=cine if cine.is_file() else None,
    )


def find_subject_dirs(root: Path) -> list[Path]:
    """Subject directories under ``root``, sorted by name.

    ``root`` may be the ACDC root (holding ``training/`` and/or ``testing/``), one of those
    folders, or a single ``patientNNN`` directory.

    Raises:
        AcdcFormatError: ``root`` does not exist or holds no subject directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise AcdcFormatError(f"{root}: data directory does not exist")
    if _SUBJECT_DIR.match(root.name) and (root / "Info.cfg").exists():
        return [root]
    candidates: list[Path] = []
    for parent in (root, root / "training", root / "testing"):
        if parent.is_dir():
            candidates.extend(p for p in parent.iterdir() if p.is_dir() and _SUBJECT_DIR.match(p.name))
    if not candidates:
        raise AcdcFormatError(f"{root}: no patientNNN directories (looked in it, training/ and testing/)")
    return sorted(candidates, key=lambda p: (p.parent.name, p.name))


def iter_subjects(root: Path) -> Iterator[Subject]:
    """Read the subjects under ``root`` one at a time (see :func:`find_subject_dirs`)."""
    for subject_dir in find_subject_dirs(root):
        yield read_subject(subject_dir)


def read_dataset(root: Path) -> list[Subject]:
    """Read every subject under ``root`` into memory."""
    subjects = list(iter_subjects(root))
    log.info("read %d subjects from %s", len(subjects), root)
    return subjects
