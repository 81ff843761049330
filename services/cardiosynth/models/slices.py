"""2D training slices from an ACDC-layout data set (preprocessed as the paper does).

Every subject is preprocessed (1.5 mm, 128 x 128 crop, [-1, 1] intensities, base first) and both
phases are cut into slices. Splits are by subject, never by slice: slices of one heart are strongly
correlated, and a slice-level split would leak the held-out anatomy into training.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth.data.acdc import Subject, iter_subjects
from cardiosynth.data.labels import ACDC_GROUP_ORDER, as_label_map
from cardiosynth.data.overlap import dice_per_class
from cardiosynth.data.preprocess import PreprocessedSubject, preprocess_subject

log = logging.getLogger(__name__)

PHASES = ("ED", "ES")


@dataclass(frozen=True)
class SliceSet:
    """Slices of several subjects. ``N`` slices of ``S x S`` pixels.

    Attributes:
        labels: ``(N, S, S)`` uint8 in {0, 1, 2, 3}.
        images: ``(N, S, S)`` float32 in about [-1, 1].
        subject: ``(N,)`` index into ``subject_ids``.
        phase: ``(N,)`` 0 for ED, 1 for ES.
        position: ``(N,)`` slice index base to apex within its stack.
        subject_ids, groups: per subject (group "" when unknown).
    """

    labels: npt.NDArray[np.uint8]
    images: npt.NDArray[np.float32]
    subject: npt.NDArray[np.int64]
    phase: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    subject_ids: tuple[str, ...]
    groups: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def select_subjects(self, ids: Sequence[str]) -> SliceSet:
        """The slices of the subjects ``ids`` (in this set's order)."""
        wanted = set(ids)
        unknown = wanted - set(self.subject_ids)
        if unknown:
            raise ValueError(f"subjects not in this set: {sorted(unknown)}")
        keep_subjects = [i for i, s in enumerate(self.subject_ids) if s in wanted]
        remap = {old: new for new, old in enumerate(keep_subjects)}
        mask = np.isin(self.subject, keep_subjects)
        return SliceSet(
            labels=self.labels[mask],
            images=self.images[mask],
            subject=np.array([remap[int(s)] for s in self.subject[mask]], dtype=np.int64),
            phase=self.phase[mask],
            position=self.position[mask],
            subject_ids=tuple(self.subject_ids[i] for i in keep_subjects),
            groups=tuple(self.groups[i] for i in keep_subjects),
        )

    def dice_per_volume(self, prediction: npt.NDArray[np.integer[Any]]) -> dict[int, float]:
        """Per-class Dice of ``prediction`` (aligned with these slices): one Dice per subject and phase
        volume, then the mean over volumes (the ACDC convention)."""
        if prediction.shape != self.labels.shape:
            raise ValueError(f"prediction {prediction.shape} does not match the slices {self.labels.shape}")
        scores = []
        for s in range(len(self.subject_ids)):
            for ph in (0, 1):
                mask = (self.subject == s) & (self.phase == ph)
                if mask.any():
                    scores.append(dice_per_class(prediction[mask], self.labels[mask]))
        if not scores:
            raise ValueError("no slices to score")
        return {c: float(np.mean([d[c] for d in scores])) for c in (1, 2, 3)}

    def fingerprint(self) -> str:
        """SHA-256 of the slices and their subject ids: identifies the training data in model cards."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.subject_ids).encode())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        digest.update(np.ascontiguousarray(self.images).tobytes())
        return digest.hexdigest()


def slices_from_subjects(processed: Sequence[PreprocessedSubject], groups: Sequence[str]) -> SliceSet:
    """Stack the ED and ES slices of preprocessed subjects into one :class:`SliceSet`."""
    if len(processed) != len(groups):
        raise ValueError(f"{len(processed)} subjects but {len(groups)} groups")
    if not processed:
        raise ValueError("no subjects to cut into slices")
    labels, images, subject, phase, position = [], [], [], [], []
    for index, p in enumerate(processed):
        for phase_index, (img, lab) in enumerate(((p.ed_image, p.ed_label), (p.es_image, p.es_label))):
            z = lab.shape[0]
            labels.append(as_label_map(lab, what=f"{p.subject_id} {PHASES[phase_index]} labels"))
            images.append(img.astype(np.float32, copy=False))
            subject.append(np.full(z, index))
            phase.append(np.full(z, phase_index))
            position.append(np.arange(z))
    return SliceSet(
        labels=np.concatenate(labels),
        images=np.concatenate(images),
        subject=np.concatenate(subject).astype(np.int64),
        phase=np.concatenate(phase).astype(np.int64),
        position=np.concatenate(position).astype(np.int64),
        subject_ids=tuple(p.subject_id for p in processed),
        groups=tuple(groups),
    )


def load_slices(root: Path, *, limit: int | None = None, label_interpolation: str = "nearest") -> SliceSet:
    """Read, preprocess and slice every subject under ``root`` (an ACDC-layout folder), the labels
    resampled by ``label_interpolation`` (:mod:`cardiosynth.data.preprocess`)."""
    processed: list[PreprocessedSubject] = []
    groups: list[str] = []
    subject: Subject
    for subject in iter_subjects(root):
        processed.append(preprocess_subject(subject, label_interpolation=label_interpolation))
        groups.append(subject.group.value if subject.group else "")
        if limit is not None and len(processed) >= limit:
            break
    slices = slices_from_subjects(processed, groups)
    log.info("%d slices from %d subjects under %s", len(slices), len(processed), root)
    return slices


def split_subjects(
    subject_ids: Sequence[str], groups: Sequence[str], *, holdout: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split subjects into (train, held-out), stratified by group and deterministic by ``seed``.

    Each group gives ``round(holdout * size)`` subjects (at least one where the group has two or
    more), so every group is represented on both sides; when no group is large enough, one subject
    is held out.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    if len(subject_ids) != len(groups):
        raise ValueError(f"{len(subject_ids)} subjects but {len(groups)} groups")
    if len(subject_ids) < 2:
        raise ValueError(f"need at least 2 subjects to split, got {len(subject_ids)}")
    rng = np.random.default_rng(seed)
    order = {g: i for i, g in enumerate(ACDC_GROUP_ORDER)}
    held: set[str] = set()
    for group in sorted(set(groups), key=lambda g: order.get(g, len(order))):  # type: ignore[call-overload]
        members = sorted(s for s, g in zip(subject_ids, groups, strict=True) if g == group)
        n_held = round(holdout * len(members))
        if len(members) >= 2:
            n_held = min(max(n_held, 1), len(members) - 1)
        held.update(rng.permutation(members)[:n_held].tolist())
    if not held:
        # Groups too small to give anyone (one subject each): hold out one subject overall.
        held.add(str(rng.choice(sorted(subject_ids))))
    train = [s for s in subject_ids if s not in held]
    test = [s for s in subject_ids if s in held]
    if not train or not test:
        raise ValueError(f"split of {len(subject_ids)} subjects left one side empty (holdout={holdout})")
    return train, test


@dataclass(frozen=True)
class Split:
    """Training and held-out slices of one data set, split by subject."""

    train: SliceSet
    heldout: SliceSet


def load_split(
    root: Path, *, holdout: float = 0.2, seed: int = 0, label_interpolation: str = "nearest"
) -> Split:
    """Slices of every subject under ``root`` (:func:`load_slices`), split by :func:`split_subjects`."""
    slices = load_slices(root, label_interpolation=label_interpolation)
    train_ids, held_ids = split_subjects(slices.subject_ids, slices.groups, holdout=holdout, seed=seed)
    split = Split(slices.select_subjects(train_ids), slices.select_subjects(held_ids))
    log.info("%d training slices (%d subjects), %d held-out slices (%d subjects)", len(split.train),
             len(train_ids), len(split.heldout), len(held_ids))  # fmt: skip
    return split
