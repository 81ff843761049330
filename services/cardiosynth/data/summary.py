"""Data-set summary: biomarkers and rule diagnosis per subject, per-group ranges, agreement."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cardiosynth.data.acdc import Subject
from cardiosynth.data.biomarkers import Biomarkers, subject_biomarkers
from cardiosynth.data.classify import BORDERLINE, Diagnosis, classify
from cardiosynth.data.labels import ACDC_GROUP_ORDER

SUMMARY_FIELDS: tuple[tuple[str, str], ...] = (
    ("lv_ef", "LVEF %"),
    ("lv_edv_index", "LVEDVi ml/m²"),
    ("rv_ef", "RVEF %"),
    ("rv_edv_index", "RVEDVi ml/m²"),
    ("mass_index", "mass g/m²"),
    ("max_wall_thickness", "max WT mm"),
)


@dataclass(frozen=True)
class SubjectSummary:
    subject_id: str
    group: str | None  # from Info.cfg
    biomarkers: Biomarkers
    diagnosis: Diagnosis | None  # None without height and weight

    @property
    def agrees(self) -> bool:
        return self.diagnosis is not None and self.group is not None and self.diagnosis.label == self.group


def summarise_subject(subject: Subject) -> SubjectSummary:
    b = subject_biomarkers(subject)
    diagnosis = classify(b) if b.bsa is not None else None
    return SubjectSummary(subject.subject_id, subject.group.value if subject.group else None, b, diagnosis)


def _fmt_range(values: list[float]) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "-"
    return f"{min(finite):.0f}-{max(finite):.0f} (median {float(np.median(finite)):.0f})"


def format_summary(rows: Iterable[SubjectSummary]) -> str:
    """A plain-text report: per-group biomarker ranges, the confusion of Info.cfg group vs rules."""
    rows = list(rows)
    groups = [g.value for g in ACDC_GROUP_ORDER if any(r.group == g.value for r in rows)]
    if any(r.group is None for r in rows):
        groups.append("unknown")
    lines = [f"{len(rows)} subjects"]
    header = ["group", "n", *(title for _, title in SUMMARY_FIELDS)]
    table = [header]
    for g in groups:
        members = [r for r in rows if (r.group or "unknown") == g]
        table.append(
            [
                g,
                str(len(members)),
                *(_fmt_range([getattr(r.biomarkers, f) for r in members]) for f, _ in SUMMARY_FIELDS),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]

    predicted = [g.value for g in ACDC_GROUP_ORDER] + [BORDERLINE, "n/a"]
    lines.append("")
    lines.append("rule classifier (rows: Info.cfg group, columns: rules)")
    lines.append("       " + " ".join(p[:10].rjust(10) for p in predicted))
    for g in groups:
        counts = [
            sum(
                1
                for r in rows
                if (r.group or "unknown") == g and (r.diagnosis.label if r.diagnosis else "n/a") == p
            )
            for p in predicted
        ]
        lines.append(g.ljust(7) + " ".join(str(c).rjust(10) for c in counts))
    labelled = [r for r in rows if r.group is not None and r.diagnosis is not None]
    agree = sum(r.agrees for r in labelled)
    lines.append("")
    lines.append(f"agreement: {agree}/{len(labelled)} subjects classified as their Info.cfg group")
    for r in labelled:
        if r.diagnosis is not None and not r.agrees:
            lines.append(
                f"  {r.subject_id}: {r.group} -> {r.diagnosis.label} ({'; '.join(r.diagnosis.reasons)})"
            )
    return "\n".join(lines)
