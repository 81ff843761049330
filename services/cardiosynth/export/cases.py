"""Training cases of a dataset: one (image, label) volume pair per subject, severity and phase.

Sources: a built dataset (``cardiosynth dataset build``: ``synthetic/`` and, when included,
``real/``), or a plain ``cardiosynth synthesize`` output folder (subject folders with
``provenance.json``), plus optionally an ACDC-layout folder of real subjects.

Case ids say where a case comes from: ``real_patient001_ED``, ``syn_HCM_000_s1.00_ED``. Every case
carries the subject it belongs to for splitting (``family``): a real subject's own id, a synthetic
subject's base subject (from its provenance), so a base and its descendants can be kept together.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cardiosynth.data.acdc import frame_paths, parse_info_cfg
from cardiosynth.synthesis import sources

log = logging.getLogger(__name__)

Source = Literal["real", "synthetic"]


@dataclass(frozen=True)
class Case:
    """One training (or test) case: a 3D image and its label volume, ``(X, Y, Z)`` NIfTI files."""

    case_id: str
    image: Path
    label: Path | None
    source: Source
    group: str | None  # the synthetic subject's pathology, or the real subject's ACDC group
    phase: str
    severity: float | None  # synthetic only
    subject: str  # HCM_000 or patient001
    family: str  # the real subject this case derives from (itself for a real case)
    test: bool = False  # an ACDC testing/ subject: imagesTs, never in a training split

    def metadata(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "source": self.source,
            "group": self.group,
            "phase": self.phase,
            "severity": self.severity,
            "subject": self.subject,
            "base_subject": self.family,
        }


def synthetic_cases(folder: Path) -> list[Case]:
    """Cases of every synthetic subject folder (``*/provenance.json``) under ``folder``."""
    out: list[Case] = []
    for record_path in sorted(Path(folder).glob("*/provenance.json")):
        record = json.loads(record_path.read_text(encoding="utf-8"))
        subject_dir = record_path.parent
        try:
            name, base, pathology = record["name"], record["base_subject"], record["pathology"]
            files = record["files"]
        except KeyError as exc:
            raise ValueError(f"{record_path}: not a synthetic subject's provenance ({exc} missing)") from None
        for severity_key, phases in sorted(files.items()):
            for phase, pair in sorted(phases.items()):
                image, label = subject_dir / pair["image"], subject_dir / pair["label"]
                for p in (image, label):
                    if not p.is_file():
                        raise ValueError(f"{record_path}: lists {p.name}, which is missing")
                severity = float(severity_key)
                out.append(
                    Case(
                        f"syn_{name}_s{severity:.2f}_{phase}",
                        image,
                        label,
                        "synthetic",
                        pathology,
                        phase,
                        severity,
                        name,
                        base,
                    )
                )
    return out


def real_cases(root: Path) -> list[Case]:
    """ED and ES cases of every real subject of an ACDC-layout folder (``testing/`` ones as tests)."""
    out: list[Case] = []
    for ref in sources.scan(Path(root)):
        info = parse_info_cfg(ref.path / "Info.cfg")
        test = ref.path.parent.name == "testing"
        for phase, frame in (("ED", info.ed), ("ES", info.es)):
            image, label = frame_paths(ref.path, frame)
            if not image.is_file():
                raise ValueError(f"{image}: missing {phase} image (frame {frame} of Info.cfg)")
            has_label = label.is_file()
            if not has_label and not test:
                raise ValueError(f"{label}: missing {phase} labels of a training subject")
            group = ref.group.value if ref.group is not None else None
            out.append(
                Case(
                    f"real_{ref.subject_id}_{phase}",
                    image,
                    label if has_label else None,
                    "real",
                    group,
                    phase,
                    None,
                    ref.subject_id,
                    ref.subject_id,
                    test,
                )
            )
    return out


def collect_cases(dataset: Path, include_real: Path | None = None) -> list[Case]:
    """Every case of ``dataset`` (built or plain synthesize output) plus the real subjects of
    ``include_real``; a real subject present in both is taken once (from the dataset)."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise ValueError(f"{dataset}: no such dataset folder")
    built = (dataset / "dataset.json").is_file()
    synthetic_root = dataset / "synthetic" if built else dataset
    cases = synthetic_cases(synthetic_root) if synthetic_root.is_dir() else []
    real: list[Case] = []
    if built and (dataset / "real").is_dir():
        real = real_cases(dataset / "real")
    if include_real is not None:
        known = {c.subject for c in real}
        extra = [c for c in real_cases(include_real) if c.subject not in known]
        if known and len(extra) < len(real_cases(include_real)):
            log.info("real subjects already in %s taken from there, not from %s", dataset, include_real)
        real += extra
    cases += real
    if not any(not c.test for c in cases):
        raise ValueError(f"{dataset}: no training case found (no synthetic subject folder, no real subject)")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate case ids {duplicated[:5]}")
    return cases
