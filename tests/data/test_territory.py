from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from cardiosynth.data.territory import (
    TERRITORY_CENTRE_DEG,
    check_territory,
    estimate_territory,
    septal_direction,
    territory_counts,
    territory_of_angle,
    wrap_degrees,
)

Stack = npt.NDArray[np.uint8]


def ring_heart(
    septal_angle: float,
    infarct_psi: float | None,
    *,
    width: float = 110.0,
    anterior_sign: int = 1,
    n_slices: int = 10,
    size: int = 96,
) -> tuple[Stack, Stack]:
    """ED and ES label stacks ``(Z, A, B)`` of an analytic heart, built independently of the phantom:
    LV ring (cavity radius shrinking to the apex), RV crescent over the septum at array angle
    ``septal_angle``, and (``infarct_psi`` degrees from the septum, + anterior in the convention
    ``anterior_sign``) a thinned, akinetic sector of ``width`` degrees; elsewhere the cavity radius
    contracts to 0.7 in systole with the myocardial area kept at every angle."""
    a, b = np.meshgrid(np.arange(size) - size / 2 + 0.3, np.arange(size) - size / 2 - 0.2, indexing="ij")
    r = np.hypot(a, b)
    alpha = np.arctan2(b, a)
    rel = np.degrees(np.mod(alpha - septal_angle + math.pi, 2 * math.pi) - math.pi)  # from the septum
    psi = anterior_sign * rel
    infarct = np.zeros_like(r)
    if infarct_psi is not None:
        off = np.abs((psi - infarct_psi + 180.0) % 360.0 - 180.0)
        infarct = np.clip((width / 2 - off) / 15.0, 0.0, 1.0)  # 15° ramp at the edges
    ed = np.zeros((n_slices, size, size), np.uint8)
    es = np.zeros_like(ed)
    for k in range(n_slices):
        u = (k + 0.5) / n_slices
        rc = 16.0 * math.sqrt(1.0 - 0.8 * u * u)
        wall = 6.0 * (1.0 - 0.4 * infarct)
        ro = rc + wall
        c = 0.7 + 0.3 * infarct
        rc_es = rc * c
        ro_es = np.sqrt(rc_es**2 + ro**2 - rc**2)
        crescent = np.clip(np.cos(np.radians(rel) * 90.0 / 80.0), 0.0, None) * (np.abs(rel) < 80)
        for out, cav, epi, h in ((ed, rc, ro, 10.0), (es, rc_es, ro_es, 6.0)):
            lab = np.zeros((size, size), np.uint8)
            lab[(r < epi + h * crescent * (1.0 - 0.5 * u)) & (crescent > 0)] = 1
            lab[r < epi] = 2
            lab[r < cav] = 3
            out[k] = lab
    return ed, es


@pytest.mark.parametrize("septal_angle", [math.pi, 0.4, -2.0])
@pytest.mark.parametrize("psi", [60.0, 35.0, 90.0, 180.0, 150.0, -60.0, -90.0, -30.0])
def test_estimate_finds_the_built_territory(septal_angle: float, psi: float) -> None:
    ed, es = ring_heart(septal_angle, psi)
    est = estimate_territory(ed, es)
    assert est.territory == territory_of_angle(psi)
    assert abs(wrap_degrees(est.angle_deg - psi)) < 15.0
    assert est.contrast > 0.3


def test_handedness_swaps_lad_and_rca_only() -> None:
    for psi, mirrored in ((60.0, "RCA"), (-60.0, "LAD"), (180.0, "LCx")):
        ed, es = ring_heart(1.0, psi)
        assert estimate_territory(ed, es, anterior_sign=-1).territory == mirrored
        # a heart built in the other convention, read in that convention
        ed, es = ring_heart(1.0, psi, anterior_sign=-1)
        assert estimate_territory(ed, es, anterior_sign=-1).territory == territory_of_angle(psi)


def test_septum_and_insertion_points_from_the_rv_contact() -> None:
    ed, _ = ring_heart(2.0, None)
    septum, (start, end) = septal_direction(ed)
    assert abs(wrap_degrees(math.degrees(septum - 2.0))) < 3.0
    # the crescent spans +-80°: the insertions are about 80° either side of the septum
    assert abs(wrap_degrees(math.degrees(start - 2.0)) + 80.0) < 10.0
    assert abs(wrap_degrees(math.degrees(end - 2.0)) - 80.0) < 10.0


def test_homogeneous_contraction_has_no_contrast_and_slice_order_does_not_matter() -> None:
    ed, es = ring_heart(0.0, None)
    assert estimate_territory(ed, es).contrast < 0.1
    ed, es = ring_heart(0.0, -60.0)
    forward = estimate_territory(ed, es)
    backward = estimate_territory(ed[::-1], es[::-1])
    assert backward.territory == forward.territory == "RCA"
    assert backward.angle_deg == pytest.approx(forward.angle_deg)


def test_bad_input_raises() -> None:
    ed, es = ring_heart(0.0, 60.0)
    with pytest.raises(ValueError, match="one shape"):
        estimate_territory(ed, es[:-1])
    with pytest.raises(ValueError, match="one shape"):
        estimate_territory(ed[0], es[0])
    bad = ed.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match="7"):
        estimate_territory(bad, es)
    with pytest.raises(ValueError, match="anterior_sign"):
        estimate_territory(ed, es, anterior_sign=0)
    no_rv = np.where(ed == 1, 0, ed).astype(np.uint8)
    with pytest.raises(ValueError, match="RV"):
        estimate_territory(no_rv, es)
    with pytest.raises(ValueError, match="LV cavity"):
        estimate_territory(np.where(ed == 3, 2, ed).astype(np.uint8), es)


def test_territory_names_and_angles() -> None:
    assert check_territory("lad") == "LAD"
    assert check_territory(" LCX ") == "LCx"
    assert check_territory(None) is None
    with pytest.raises(ValueError, match="unknown territory 'LM'"):
        check_territory("LM")
    assert {t: territory_of_angle(c) for t, c in TERRITORY_CENTRE_DEG.items()} == {
        "LAD": "LAD", "LCx": "LCx", "RCA": "RCA"
    }  # fmt: skip
    assert territory_of_angle(119.0) == "LAD"
    assert territory_of_angle(121.0) == "LCx"
    assert territory_of_angle(-119.0) == "RCA"
    assert territory_of_angle(-121.0) == "LCx"
    assert territory_of_angle(-1.0) == "RCA"
    assert territory_of_angle(1.0) == "LAD"
    with pytest.raises(ValueError, match="finite"):
        territory_of_angle(math.nan)
    assert territory_counts(["LAD", "lad", "RCA"]) == {"LAD": 2, "LCx": 0, "RCA": 1}
