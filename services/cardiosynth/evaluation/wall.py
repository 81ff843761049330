"""Check the maximal wall-thickness biomarker against the phantom's ground truth.

The synthesis evaluation reports a wall-thickness bias (synthetic minus held-out real, both measured
by :func:`cardiosynth.data.biomarkers.compute_biomarkers`). A bias can come from the synthesis or
from the measure; this module tells them apart on the real side: phantom subjects record the
anatomy they were drawn from (``phantom.json``), so the true ED wall of every slice is known.

Truth: at each slice centre depth ``d`` that cuts the LV cavity (``0 <= d <= L``), the largest
radial wall thickness ``t(θ, d)`` of :meth:`HeartShape.thickness_ed` over the angles where the ring
is myocardium, that is without the LV outflow tract's gap of a version-2 basal slice (what
:func:`cardiosynth.data.phantom.tissues.heart_tissues` cuts open). The radial thickness is the
phantom's own definition of the wall (``r_o = r_c + t``), and the measure's distance from the
epicardial border to the nearest cavity pixel equals it for a ring about the LV axis.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.acdc import find_subject_dirs, read_subject
from cardiosynth.data.biomarkers import global_rv_angle, wall_thickness_by_sector
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, as_label_map
from cardiosynth.data.phantom.anatomy import HeartShape, Infarct, wrap_angle

_N_ANGLES = 2048  # 0.18° steps: the truth's maximum is resolved far below a pixel
_ANGLES = np.linspace(-math.pi, math.pi, _N_ANGLES, endpoint=False)


def shape_from_record(record: dict[str, Any]) -> HeartShape:
    """The fitted :class:`HeartShape` of a subject's ``phantom.json`` ``shape`` entry.

    Raises:
        ValueError: the record is not a shape (a missing or unknown field).
    """
    fields = dict(record)
    try:
        if fields.get("infarct"):
            fields["infarct"] = Infarct(**fields["infarct"])
        for name in ("thickness_wave", "contraction_wave"):
            if name in fields:
                fields[name] = tuple(fields[name])
        return HeartShape(**fields)
    except TypeError as exc:
        raise ValueError(f"not a phantom shape record: {exc}") from exc


def true_wall_per_slice(meta: dict[str, Any]) -> npt.NDArray[np.float64]:
    """True maximal ED wall thickness (mm) of each slice of a phantom subject, from its
    ``phantom.json`` ``meta``; NaN where the slice does not cut the LV cavity.

    Raises:
        ValueError: ``meta`` has no shape or acquisition record.
    """
    if "shape" not in meta or "acquisition" not in meta:
        raise ValueError(f"phantom.json without shape and acquisition records (keys {sorted(meta)})")
    shape = shape_from_record(meta["shape"])
    acq = meta["acquisition"]
    depths = float(acq["first_depth"]) + float(acq["slice_spacing"]) * np.arange(int(acq["n_slices"]))
    outflow = (meta.get("variation") or {}).get("outflow")
    out = np.full(len(depths), np.nan)
    for k, d in enumerate(depths):
        if not 0.0 <= d <= shape.lv_length:
            continue
        t = shape.thickness_ed(_ANGLES, float(d))
        if outflow is not None and 0.0 <= d < float(outflow["depth"]):
            half = 0.5 * float(outflow["width"]) * (1.0 - 0.5 * d / float(outflow["depth"]))
            t = np.where(np.abs(wrap_angle(_ANGLES - float(outflow["angle"]))) < half, np.nan, t)
        if np.isfinite(t).any():
            out[k] = float(np.nanmax(t))
    return out


def is_closed_ring(label_slice: npt.NDArray[np.generic]) -> bool:
    """Whether the LV cavity of one slice is enclosed by myocardium (no cavity pixel touches
    background or RV, 4-connected): False for an open basal ring or a slice without a cavity."""
    cavity = label_slice == LV_CAVITY
    if not cavity.any():
        return False
    other = ~(cavity | (label_slice == LV_MYOCARDIUM))
    return not bool((ndimage.binary_dilation(cavity) & other).any())


@dataclass(frozen=True)
class WallCheck:
    """Measured against true maximal ED wall thickness of one phantom subject."""

    subject_id: str
    group: str
    measured_mm: float
    true_mm: float
    slice_of_max: int  # slice (native index) where the measure finds its maximum
    relative_depth_of_max: float  # that slice's depth / LV cavity length (0 base, 1 apex)
    closed_ring_at_max: bool

    @property
    def error_mm(self) -> float:
        return self.measured_mm - self.true_mm


def check_subject(subject_dir: Path) -> WallCheck:
    """:class:`WallCheck` of one phantom subject folder (labels and ``phantom.json``).

    Raises:
        ValueError: no ``phantom.json``, or no slice with a measurable wall.
    """
    meta_path = Path(subject_dir) / "phantom.json"
    if not meta_path.is_file():
        raise ValueError(f"{subject_dir} has no phantom.json: not a phantom subject")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    subject = read_subject(Path(subject_dir))
    ed = as_label_map(subject.ed_label, what="ED labels")
    rv_angle = global_rv_angle(ed)
    per_slice = np.array(
        [wall_thickness_by_sector(ed[:, :, k], subject.spacing[:2], rv_angle) for k in range(ed.shape[2])]
    )
    finite = np.where(np.isfinite(per_slice), per_slice, -np.inf).max(axis=1)
    if not np.isfinite(finite).any():
        raise ValueError(f"{subject_dir}: no slice with a measurable wall")
    k = int(np.argmax(finite))
    truth = true_wall_per_slice(meta)
    acq = meta["acquisition"]
    depth = float(acq["first_depth"]) + float(acq["slice_spacing"]) * k
    return WallCheck(
        subject_id=subject.subject_id,
        group=str(meta.get("group", subject.info.group)),
        measured_mm=float(finite[k]),
        true_mm=float(np.nanmax(truth)) if np.isfinite(truth).any() else math.nan,
        slice_of_max=k,
        relative_depth_of_max=depth / float(meta["shape"]["lv_length"]),
        closed_ring_at_max=is_closed_ring(ed[:, :, k]),
    )


def summarise(checks: Sequence[WallCheck]) -> dict[str, dict[str, float]]:
    """Per group: n, mean / SD / min / max of measured minus true (mm), the share of subjects whose
    maximum lies on an open (basal outflow) ring, and the median relative depth of the maximum."""
    out: dict[str, dict[str, float]] = {}
    for group in sorted({c.group for c in checks}):
        cs = [c for c in checks if c.group == group]
        err = np.array([c.error_mm for c in cs])
        out[group] = {
            "n": float(len(cs)),
            "mean_error_mm": float(np.mean(err)),
            "sd_error_mm": float(np.std(err)),
            "min_error_mm": float(np.min(err)),
            "max_error_mm": float(np.max(err)),
            "open_ring_share": float(np.mean([not c.closed_ring_at_max for c in cs])),
            "median_relative_depth": float(np.median([c.relative_depth_of_max for c in cs])),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cardiosynth.evaluation.wall DATA [OUT.json]``: the check of every phantom subject
    under ``DATA``, a table per group on stdout and, with ``OUT.json``, every subject's figures."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        sys.stderr.write("usage: python -m cardiosynth.evaluation.wall DATA [OUT.json]\n")
        return 2
    checks = [check_subject(p) for p in find_subject_dirs(Path(args[0]))]
    summary = summarise(checks)
    lines = [
        "| group | n | measured - true mm: mean | SD | min | max | max on an open ring | depth of max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group, s in summary.items():
        lines.append(
            f"| {group} | {s['n']:.0f} | {s['mean_error_mm']:+.2f} | {s['sd_error_mm']:.2f} "
            f"| {s['min_error_mm']:+.2f} | {s['max_error_mm']:+.2f} | {s['open_ring_share']:.0%} "
            f"| {s['median_relative_depth']:.2f} L |"
        )
    sys.stdout.write("\n".join(lines) + "\n")  # CLI output
    if len(args) == 2:
        rows = [{**c.__dict__, "error_mm": c.error_mm} for c in checks]
        Path(args[1]).write_text(json.dumps({"summary": summary, "subjects": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
