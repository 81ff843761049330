"""Writing synthetic subjects: NIfTI per severity and phase, provenance JSON, preview PNG.

Layout (one folder per synthetic subject, replaced whole and atomically)::

    OUT/HCM_000/HCM_000_s1.00_ED.nii.gz      image, base subject's native grid; its affine, the slice
                                             spacing scaled to the class's heart length
    OUT/HCM_000/HCM_000_s1.00_ED_gt.nii.gz   labels (ACDC convention)
    OUT/HCM_000/provenance.json              request, base subject, models, biomarkers, diagnosis
    OUT/HCM_000/preview.png                  mid slices across severities + a long-axis reformat
    OUT/HCM_000/HCM_000_base_ED.nii.gz       optional (``base=True``): the base NOR subject's own
    OUT/HCM_000/HCM_000_base_ED_gt.nii.gz    image and labels of the phase, for side-by-side viewing

Images and labels keep the base subject's native grid, voxel for voxel, and its affine but for the
slice spacing, which is scaled by severity to the class's heart length about the stack's centre
(:mod:`cardiosynth.synthesis.scale`: a 2D model keeps the base's slices, so the class's length is in
their spacing; severity 0 and NOR keep the base's affine exactly). ``provenance.json`` records the
spacing and the body (height, weight: the indices are over it) of each severity.

The image is the translator's image around the heart (the synthetic heart and the base's own, plus
6 mm, then a 12 mm smooth ramp) composited into the base's own image of the same
phase (:func:`cardiosynth.data.preprocess.composite_image` with ``region``), so there is no
constant fill, no crop edge and no smoother patch around the heart: the rest of the slice is the
base's own image; the labels are the topology-cleaned decoded stacks restored to the native grid,
background outside the crop as the base's own labels are there.

Nothing time-dependent is written, so the same request and models give byte-identical files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth import __version__
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY
from cardiosynth.data.nifti import save_volume
from cardiosynth.fsutil import staged_directory
from cardiosynth.synthesis.engine import SynthesisRequest, SyntheticSubject

_COLOURS = {RV_CAVITY: "tab:blue", LV_MYOCARDIUM: "tab:green", LV_CAVITY: "tab:red"}


def severity_tag(severity: float) -> str:
    return f"s{severity:.2f}"


def file_names(name: str, severity: float, phase: str) -> tuple[str, str]:
    stem = f"{name}_{severity_tag(severity)}_{phase}"
    return f"{stem}.nii.gz", f"{stem}_gt.nii.gz"


def base_file_names(name: str, phase: str) -> tuple[str, str]:
    """The base NOR subject's own image and labels of ``phase``, stored beside synthetic ``name``.

    ``base`` stands where the severity tag stands in :func:`file_names`, so a reader that splits names
    on ``_`` tells them apart by that field (``s1.00`` or ``base``)."""
    stem = f"{name}_base_{phase}"
    return f"{stem}.nii.gz", f"{stem}_gt.nii.gz"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _phases(subject: SyntheticSubject) -> list[str]:
    return list(next(iter(subject.phases.values()))) if subject.phases else []


def provenance(
    subject: SyntheticSubject, request: SynthesisRequest, models: dict[str, str], *, base: bool = False
) -> dict[str, Any]:
    """The JSON record of one synthetic subject (no timestamps: outputs stay reproducible).

    ``files`` lists the synthetic volumes only (what training reads, :mod:`cardiosynth.export.cases`);
    the base subject's volumes, when written (``base``), are under ``base_files`` (phase -> names)."""
    files: dict[str, dict[str, dict[str, str]]] = {}
    for severity, phases in subject.phases.items():
        files[f"{severity:.2f}"] = {
            ph: dict(zip(("image", "label"), file_names(subject.name, severity, ph), strict=True))
            for ph in phases
        }
    base_files = {
        ph: dict(zip(("image", "label"), base_file_names(subject.name, ph), strict=True))
        for ph in _phases(subject)
    }
    record: dict[str, Any] = _clean(
        {
            "name": subject.name,
            "index": subject.index,
            **request.provenance(),
            # MINF: the territory whose statistics made this subject (None: pooled, or not MINF);
            # ``territory`` above is what was requested (None: drawn per subject).
            "infarct_territory": subject.territory,
            "base_subject": subject.base.subject_id,
            "base_group": subject.base.group.value if subject.base.group else None,
            "models": models,
            "cardiosynth_version": __version__,
            # Each severity's voxel size and body (cardiosynth.synthesis.scale), and the base's spacing.
            "spacing_mm": {f"{s:.2f}": list(subject.spacing(s)) for s in subject.phases},
            "body": {
                f"{s:.2f}": dict(zip(("height_cm", "weight_kg"), subject.body(s), strict=True))
                for s in subject.phases
            },
            "class_scale": {f"{s:.2f}": subject.scale(s).to_dict() for s in subject.phases},
            "base_spacing_mm": list(subject.base.spacing),
            "files": files,
            **({"base_files": base_files} if base else {}),
            "biomarkers": {
                f"{s:.2f}": (b.to_dict() if b is not None else None) for s, b in subject.biomarkers.items()
            },
            "diagnosis": {f"{s:.2f}": d for s, d in subject.diagnosis.items()},
        }
    )
    return record


def _mid(labels: npt.NDArray[np.uint8]) -> int:
    area = np.isin(labels, (LV_CAVITY, LV_MYOCARDIUM)).sum(axis=(1, 2))
    present = np.flatnonzero(area)
    return int(present[len(present) // 2]) if present.size else len(labels) // 2


def write_preview(subject: SyntheticSubject, path: Path) -> None:
    """Mid slices of the base and each severity per phase, and a long-axis reformat of the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = _phases(subject)
    severities = list(subject.phases)
    cols = 1 + len(severities) + 1
    fig, axes = plt.subplots(len(phases), cols, figsize=(2.0 * cols, 2.2 * len(phases)), squeeze=False)
    slice_mm = float(subject.spacing(severities[-1])[2])  # the reformat's severity
    for r, phase in enumerate(phases):
        base_img, base_lab = subject.base_stacks[phase]
        k = _mid(base_lab)
        panels = [("base", base_img[k], base_lab[k])]
        panels += [(f"a={s:.2f}", subject.phases[s][phase].images[k], subject.phases[s][phase].labels[k])
                   for s in severities]  # fmt: skip
        for c, (title, img, lab) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            for value, colour in _COLOURS.items():
                mask = (lab == value).astype(float)
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.6)
            ax.set_title(f"{phase} {title}", fontsize=7)
            ax.axis("off")
        # Long-axis reformat at the highest severity: the labels of one row through the LV centre,
        # stacked base (top) to apex; jagged steps here would show slice-to-slice inconsistency.
        lab_stack = subject.phases[severities[-1]][phase].labels
        lv = np.argwhere(lab_stack == LV_CAVITY)
        row = int(np.median(lv[:, 1])) if len(lv) else lab_stack.shape[1] // 2
        reformat = lab_stack[:, row, :]
        ax = axes[r][-1]
        ax.imshow(reformat, cmap="viridis", vmin=0, vmax=3, interpolation="nearest", aspect=slice_mm / 1.5)
        ax.set_title(f"{phase} long axis a={severities[-1]:.2f}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{subject.name} from {subject.base.subject_id}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def write_subject(
    subject: SyntheticSubject,
    request: SynthesisRequest,
    out_root: Path,
    *,
    models: dict[str, str],
    preview: bool = True,
    overwrite: bool = False,
    base: bool = False,
) -> Path:
    """Write one synthetic subject's folder under ``out_root`` (atomically: all files or none).

    ``base``: also the base NOR subject's own image and labels of each phase (native grid, the base's
    own affine: the synthetic volumes' at severity 0, the same centre and in-plane grid at every
    severity, so a viewer shows the two side by side, slice for slice). Off by default:
    they are real data, not synthetic, and a folder read with a ``*.nii.gz`` glob would mix them in."""
    target = Path(out_root) / subject.name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    with staged_directory(target) as staging:
        affine = np.asarray(subject.base.affine, dtype=np.float64)
        for severity, phases in subject.phases.items():
            scaled = subject.affine(severity)
            for phase, data in phases.items():
                image_name, label_name = file_names(subject.name, severity, phase)
                save_volume(staging / image_name, data.native_image, scaled)
                save_volume(staging / label_name, data.native_labels, scaled)
        if base:
            own = {"ED": (subject.base.ed_image, subject.base.ed_label),
                   "ES": (subject.base.es_image, subject.base.es_label)}  # fmt: skip
            for phase in _phases(subject):
                image_name, label_name = base_file_names(subject.name, phase)
                save_volume(staging / image_name, own[phase][0], affine)
                save_volume(staging / label_name, own[phase][1], affine)
        record = provenance(subject, request, models, base=base)
        (staging / "provenance.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if preview:
            write_preview(subject, staging / "preview.png")
    return target


def format_table(subjects: list[SyntheticSubject], severity: float) -> str:
    """Biomarkers and the rule diagnosis of each subject at ``severity``, as a text table."""
    columns = ("LVEDV", "LVEF", "RVEDV", "RVEF", "maxWT")
    head = f"{'subject':10s} {'base':12s} " + " ".join(f"{c:>7s}" for c in columns) + "  rules"
    lines = [head]
    for subject in subjects:
        b = subject.biomarkers.get(severity)
        if b is None:
            lines.append(f"{subject.name:10s} {subject.base.subject_id:12s} (one phase only: no biomarkers)")
            continue
        group = subject.diagnosis.get(severity, {}).get("group")
        lines.append(
            f"{subject.name:10s} {subject.base.subject_id:12s} {b.lv_edv:7.1f} {b.lv_ef:7.1f} "
            f"{b.rv_edv:7.1f} {b.rv_ef:7.1f} {b.max_wall_thickness:7.1f}  {group}"
        )
    return "\n".join(lines)
