"""The maximal wall-thickness measure on rings of known thickness (closed, open, oval) and against
the phantom's recorded anatomy (:mod:`cardiosynth.evaluation.wall`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cardiosynth.data.biomarkers import wall_thickness_by_sector
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY
from cardiosynth.evaluation.wall import (
    check_subject,
    is_closed_ring,
    shape_from_record,
    summarise,
    true_wall_per_slice,
)

PX = 1.5  # mm


def ring(
    wall_mm: float,
    *,
    radius_mm: float = 24.0,
    ellipticity: float = 0.0,
    gap_deg: float = 0.0,
    size: int = 96,
) -> np.ndarray:
    """One slice: an LV cavity ``r_c(θ) = R (1 + e cos 2θ)`` inside a myocardium ``r_c + wall`` (the
    phantom's radial definition of the wall), an RV crescent on the left, and optionally an outflow
    gap of ``gap_deg`` facing up where the myocardium is background."""
    c = (size - 1) / 2.0
    x, y = np.meshgrid((np.arange(size) - c) * PX, (np.arange(size) - c) * PX, indexing="ij")
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    r_c = radius_mm * (1.0 + ellipticity * np.cos(2.0 * theta))
    out = np.zeros((size, size), dtype=np.uint8)
    rv = (r < r_c + wall_mm + 15.0) & (np.abs(np.angle(np.exp(1j * (theta - math.pi)))) < 0.8)
    out[rv] = RV_CAVITY
    out[r < r_c + wall_mm] = LV_MYOCARDIUM
    out[r < r_c] = LV_CAVITY
    if gap_deg:
        gap = np.abs(np.angle(np.exp(1j * (theta - math.pi / 2)))) < math.radians(gap_deg) / 2
        out[gap & (out == LV_MYOCARDIUM)] = 0
    return out


@pytest.mark.parametrize("wall_mm", [6.0, 10.5, 18.0])
def test_a_closed_ring_measures_its_wall(wall_mm: float) -> None:
    sl = ring(wall_mm)
    assert is_closed_ring(sl)
    # Rasterised boundaries: within one pixel, and never the ring's diameter or the cavity's.
    assert np.nanmax(wall_thickness_by_sector(sl, (PX, PX))) == pytest.approx(wall_mm, abs=PX)


@pytest.mark.parametrize("gap_deg", [40.0, 90.0])
def test_an_open_basal_ring_measures_the_wall_it_has(gap_deg: float) -> None:
    sl = ring(10.5, gap_deg=gap_deg)
    assert not is_closed_ring(sl)  # the cavity meets the outflow tract
    thickness = wall_thickness_by_sector(sl, (PX, PX))
    assert np.nanmax(thickness) == pytest.approx(10.5, abs=PX)


@pytest.mark.parametrize("ellipticity", [0.1, 0.2])
def test_an_oval_ring_measures_its_radial_wall(ellipticity: float) -> None:
    sl = ring(9.0, ellipticity=ellipticity)
    assert np.nanmax(wall_thickness_by_sector(sl, (PX, PX))) == pytest.approx(9.0, abs=PX)


def test_a_thicker_ring_measures_thicker() -> None:
    thin, thick = (np.nanmax(wall_thickness_by_sector(ring(w), (PX, PX))) for w in (8.0, 14.0))
    assert thick - thin == pytest.approx(6.0, abs=PX)


def test_a_slice_without_cavity_is_not_a_closed_ring() -> None:
    sl = ring(9.0)
    sl[sl == LV_CAVITY] = LV_MYOCARDIUM
    assert not is_closed_ring(sl)


SHAPE = {
    "lv_length": 80.0,
    "profile_exponent": 2.2,
    "ellipticity": 0.05,
    "ellipse_angle": 0.0,
    "wall_thickness": 10.0,
    "apex_cap": 8.0,
    "septal_angle": math.pi,
    "septal_extra": 0.0,
    "septal_width": math.radians(100),
    "rv_width": math.radians(170),
    "rv_length_ratio": 0.8,
    "infarct": None,
    "lv_radius": 25.0,
    "thickness_wave": [0.0, 0.0, 0.0, 0.0],
}


def _meta(first_depth: float, **shape: object) -> dict[str, object]:
    return {
        "shape": {**SHAPE, **shape},
        "acquisition": {"first_depth": first_depth, "slice_spacing": 10.0, "n_slices": 10},
    }


def test_truth_follows_the_phantoms_wall_taper_and_leaves_out_slices_without_cavity() -> None:
    truth = true_wall_per_slice(_meta(-5.0))  # slice 0 atrial, 1..8 in the cavity, 9 below it
    assert math.isnan(truth[0])
    assert math.isnan(truth[9])
    for k in range(1, 9):
        u = (-5.0 + 10.0 * k) / 80.0
        assert truth[k] == pytest.approx(10.0 * (1.0 - 0.25 * u * u), rel=1e-9)


def test_truth_leaves_out_the_outflow_gap_of_a_basal_slice() -> None:
    # A septal bulge (x1.5) that the outflow tract cuts away above 12 mm but not below.
    meta = _meta(5.0, septal_extra=0.5)
    meta["variation"] = {"outflow": {"angle": math.pi, "width": math.radians(160), "depth": 12.0}}
    truth = true_wall_per_slice(meta)
    assert truth[0] < 11.0  # 5 mm: the bulge lies in the gap
    assert truth[1] > 14.0  # 15 mm: below the outflow tract, the ring is whole


def test_a_record_that_is_not_a_shape_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        shape_from_record({"lv_length": 80.0, "bogus": 1})
    with pytest.raises(ValueError, match="acquisition"):
        true_wall_per_slice({"shape": SHAPE})


def test_the_measure_matches_the_phantoms_truth(phantom_root: Path) -> None:
    """One subject per group of phantom v2: the biomarker's maximal wall within 1.5 mm (one pixel
    and a bit) of the anatomy the subject was drawn from, open basal rings included."""
    subjects = sorted((phantom_root / "training").iterdir())
    checks = [check_subject(p) for p in subjects]
    assert len(checks) == 5
    for c in checks:
        assert np.isfinite(c.true_mm), c
        assert abs(c.error_mm) <= 1.5, c
    summary = summarise(checks)
    assert set(summary) == {json.loads((p / "phantom.json").read_text())["group"] for p in subjects}
    assert all(s["n"] == 1 for s in summary.values())


def test_a_folder_without_phantom_record_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"phantom\.json"):
        check_subject(tmp_path)
