"""Data-set summary: biomarkers and rule diagnosis per subject, per-group ranges, agreement.

Each group's measured range, mean and SD is printed next to the published ACDC mean and SD of the
same biomarker (:data:`~cardiosynth.data.phantom.population.ACDC_PUBLISHED`, approximate values:
see that module), so a phantom, or a real data set, can be read against ACDC at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import numpy as np

from cardiosynth.data.acdc import Subject
from cardiosynth.data.biomarkers import Biomarkers, subject_biomarkers
from cardiosynth.data.classify import BORDERLINE, Diagnosis, Sex, classify
from cardiosynth.data.labels import ACDC_GROUP_ORDER, Group
from cardiosynth.data.phantom.population import ACDC_PUBLISHED

SUMMARY_FIELDS: tuple[tuple[str, str], ...] = (
    ("lv_ef", "LVEF %"),
    ("lv_edv_index", "LVEDVi ml/m²"),
    ("rv_ef", "RVEF %"),
    ("rv_edv_index", "RVEDVi ml/m²"),
    ("mass_index", "mass g/m²"),
    ("max_wall_thickness", "max WT mm"),
)
# Biomarkers attribute -> field of the published table.
_PUBLISHED_FIELD: dict[str, str] = {
    "lv_ef": "lv_ef",
    "lv_edv_index": "lv_edv_index",
    "rv_ef": "rv_ef",
    "rv_edv_index": "rv_edv_index",
    "mass_index": "mass_index",
    "max_wall_thickness": "max_wall",
}


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
    # The RV rule's threshold depends on sex; Info.cfg has it only where the data add it (phantom v2).
    sex = cast(Sex | None, subject.info.sex)
    diagnosis = classify(b, sex) if b.bsa is not None else None
    return SubjectSummary(subject.subject_id, subject.group.value if subject.group else None, b, diagnosis)


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _fmt_range(values: list[float]) -> str:
    finite = _finite(values)
    if not finite:
        return "-"
    return f"{min(finite):.0f}-{max(finite):.0f} (median {float(np.median(finite)):.0f})"


def _fmt_mean(values: list[float]) -> str:
    finite = _finite(values)
    if not finite:
        return "-"
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return f"{float(np.mean(finite)):.1f} ± {sd:.1f}"


def _fmt_published(group: str, field: str) -> str:
    try:
        stats = ACDC_PUBLISHED[Group(group)]
    except ValueError:  # "unknown": no published row
        return "-"
    mean, sd = stats.get(_PUBLISHED_FIELD[field])
    return f"{mean:g} ± {sd:g}"


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
        values = {f: [getattr(r.biomarkers, f) for r in members] for f, _ in SUMMARY_FIELDS}
        table.append([g, str(len(members)), *(_fmt_range(values[f]) for f, _ in SUMMARY_FIELDS)])
        table.append(["  mean±SD", "", *(_fmt_mean(values[f]) for f, _ in SUMMARY_FIELDS)])
        table.append(["  ACDC", "", *(_fmt_published(g, f) for f, _ in SUMMARY_FIELDS)])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    lines.append("(ACDC: published per-group mean ± SD, approximate; cardiosynth.data.phantom.population)")

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
