"""The data a synthesis draws on: subjects of an ACDC-layout folder by group, and its fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cardiosynth.data.acdc import Subject, find_subject_dirs, parse_info_cfg, read_subject
from cardiosynth.data.labels import Group
from cardiosynth.data.preprocess import PreprocessedSubject, preprocess_subject


@dataclass(frozen=True)
class SubjectRef:
    """A subject directory with its group (from ``Info.cfg``)."""

    subject_id: str
    path: Path
    group: Group | None


def scan(root: Path) -> list[SubjectRef]:
    """Every subject under ``root`` with its group, reading only the ``Info.cfg`` files."""
    refs = []
    for path in find_subject_dirs(root):
        info = parse_info_cfg(path / "Info.cfg")
        refs.append(SubjectRef(path.name, path, info.group))
    return refs


def by_group(refs: list[SubjectRef], group: Group) -> list[SubjectRef]:
    return [r for r in refs if r.group is group]


def fingerprint(refs: list[SubjectRef]) -> str:
    """SHA-256 over the subjects' ``Info.cfg`` and label files (the inputs of the class statistics)."""
    digest = hashlib.sha256()
    for ref in sorted(refs, key=lambda r: r.subject_id):
        digest.update(ref.subject_id.encode())
        for file in [*sorted(ref.path.glob("*_gt.nii*")), ref.path / "Info.cfg"]:
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedSubject:
    """A subject as read and as preprocessed."""

    subject: Subject
    processed: PreprocessedSubject


def load(ref: SubjectRef, label_interpolation: str = "nearest") -> LoadedSubject:
    """Read ``ref`` and preprocess it, the labels resampled by ``label_interpolation`` (use the
    label VAE's: :func:`cardiosynth.synthesis.engine.label_interpolation_of`)."""
    subject = read_subject(ref.path)
    return LoadedSubject(subject, preprocess_subject(subject, label_interpolation=label_interpolation))
