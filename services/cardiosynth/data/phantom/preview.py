"""Montage PNG of an ACDC-layout data set with label contours: per group, the mid-ventricular slice
at ED and ES and the most basal ED slice with myocardium at ED and ES (where phantom version 2 opens
the ring at the outflow tract and the base descends out of the slice in systole)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cardiosynth.data.acdc import Subject
from cardiosynth.data.labels import ACDC_GROUP_ORDER, LABEL_NAMES, LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY

_COLOURS = {RV_CAVITY: "tab:blue", LV_MYOCARDIUM: "tab:green", LV_CAVITY: "tab:red"}


def _mid_slice(label: np.ndarray) -> int:
    """The slice with the most LV (cavity + myocardium): mid-ventricular in practice."""
    area = ((label == LV_CAVITY) | (label == LV_MYOCARDIUM)).sum(axis=(0, 1))
    present = np.flatnonzero(area)
    if present.size == 0:
        return int(label.shape[2] // 2)
    return int(present[len(present) // 2])


def _basal_slice(label: np.ndarray) -> int:
    """The most basal slice with LV myocardium (slice 0 is the base in ACDC stacks)."""
    present = np.flatnonzero((label == LV_MYOCARDIUM).any(axis=(0, 1)))
    return int(present[0]) if present.size else 0


def write_preview(subjects: Sequence[Subject], path: Path, *, per_group: int = 1) -> Path:
    """Write a grid: one row per subject shown (``per_group`` per group); columns mid ED, mid ES,
    basal ED and basal ES (the same basal slice in both phases), with contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    chosen: list[Subject] = []
    for group in ACDC_GROUP_ORDER:
        chosen.extend([s for s in subjects if s.group is group][:per_group])
    chosen.extend(s for s in subjects if s.group is None and len(chosen) < 5)  # ungrouped user data
    if not chosen:
        raise ValueError("no subjects to preview")
    fig, axes = plt.subplots(len(chosen), 4, figsize=(12.0, 3.0 * len(chosen)), squeeze=False)
    for row, subject in enumerate(chosen):
        mid, base = _mid_slice(subject.ed_label), _basal_slice(subject.ed_label)
        for col, (phase, image, label, k) in enumerate(
            (
                ("ED", subject.ed_image, subject.ed_label, mid),
                ("ES", subject.es_image, subject.es_label, mid),
                ("ED", subject.ed_image, subject.ed_label, base),
                ("ES", subject.es_image, subject.es_label, base),
            )
        ):
            ax = axes[row][col]
            sl = image[:, :, k].T  # NIfTI (X, Y) -> display rows Y, columns X
            lo, hi = np.percentile(sl, (1, 99))
            ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            for value, colour in _COLOURS.items():
                mask = (label[:, :, k] == value).T.astype(float)
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.8)
            ax.set_title(f"{subject.subject_id} {subject.group or '?'} {phase} z={k}", fontsize=8)
            ax.axis("off")
    handles = [Line2D([], [], color=c, label=LABEL_NAMES[v]) for v, c in _COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
