"""The regional contraction calibration: the sector fit, the area-preserving widening, a batch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cardiosynth.data.biomarkers import N_SECTORS, sector_areas, sector_frame
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY
from cardiosynth.synthesis.contraction import (
    GAIN_RANGE,
    ContractionCalibration,
    calibrate_batch,
    radial_nodes,
    sector_contraction,
    widen_sectors,
)
from tests.synthesis.conftest import spy_batch_calibration

S = 64
CENTRE = (31.3, 32.6)  # off the pixel grid, so no sector boundary runs along a row of pixels


def heart(cavity: float, ed_cavity: float = 12.0, wall: float = 4.0, z: int = 5) -> np.ndarray:
    """A ring heart ``(Z, S, S)``: a cavity of radius ``cavity``, a myocardium whose area is that of
    the ED heart's (``ed_cavity``, ``wall``) as in the phantom's ES, an RV toward +y."""
    x, y = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    d = np.hypot(x - CENTRE[0], y - CENTRE[1])
    outer = math.sqrt(cavity**2 + (ed_cavity + wall) ** 2 - ed_cavity**2)
    one = np.zeros((S, S), np.uint8)
    one[np.hypot(x - CENTRE[0], y - CENTRE[1] - outer - 6.0) < 7.0] = RV_CAVITY
    one[d < outer] = LV_MYOCARDIUM
    one[d < cavity] = LV_CAVITY
    return np.repeat(one[None], z, axis=0)


def soft(labels: np.ndarray) -> np.ndarray:
    """Probabilities ``(Z, 4, S, S)`` x 255, a blurred one-hot (a decoder's soft borders)."""
    from scipy import ndimage

    onehot = np.stack([(labels == c).astype(np.float64) for c in range(4)], axis=1)
    blurred = ndimage.gaussian_filter(onehot, sigma=(0, 0, 1.0, 1.0))
    blurred /= blurred.sum(axis=1, keepdims=True)
    return np.rint(blurred * 255).astype(np.uint8)


def calibration(gains: list[float], fac: float = 0.36) -> ContractionCalibration:
    """A calibration whose synthetic sectors all contract by ``fac`` and whose gains are ``gains``."""
    synthetic = (fac,) * N_SECTORS
    offset = tuple(fac * g - fac for g in gains)
    return ContractionCalibration(tuple(fac * g for g in gains), synthetic, offset, 20, 64)


def test_nodes_add_the_wanted_area_to_each_sector() -> None:
    # every sector the same: a uniform delta, r^2 -> r^2 + delta adds pi * delta in all
    nodes = radial_nodes(np.full(N_SECTORS, 10.0))
    np.testing.assert_allclose(nodes, 2 * 10.0 / (2 * math.pi / N_SECTORS))
    assert np.pi * nodes[0] == pytest.approx(6 * 10.0)
    with pytest.raises(ValueError, match="6 sector areas"):
        radial_nodes(np.ones(4))


def test_widening_adds_area_to_one_sector_and_keeps_the_rest_and_the_wall() -> None:
    ed = heart(12.0)[0]
    frame = sector_frame(ed, None)
    assert frame is not None
    before = sector_areas(ed, frame)
    added = np.zeros(N_SECTORS)
    added[1] = 40.0
    onehot = np.stack([(ed == c).astype(np.float64) for c in range(4)])
    out = np.argmax(widen_sectors(onehot, frame, radial_nodes(added)), axis=0)
    after = sector_areas(out, frame)
    # a pixelated ring: each sector's area is known to a few pixels
    assert after[1] - before[1] == pytest.approx(40.0, abs=6.0)
    np.testing.assert_allclose(np.delete(after - before, 1), 0.0, atol=6.0)
    # area-preserving: the myocardium keeps its area (it moved outward and thinned there)
    for value in (LV_MYOCARDIUM, RV_CAVITY):
        assert np.count_nonzero(out == value) == pytest.approx(np.count_nonzero(ed == value), rel=0.03)
    # no move at all: the slice as it was
    same = widen_sectors(onehot, frame, np.zeros(N_SECTORS))
    np.testing.assert_allclose(same, onehot, atol=1e-9)


def test_the_fit_finds_the_sector_that_contracts_too_much_and_leaves_the_rest() -> None:
    rng = np.random.default_rng(0)
    mean_real = np.array([0.20, 0.02, 0.20, 0.27, 0.27, 0.27])
    mean_synthetic = np.array([0.20, 0.07, 0.20, 0.27, 0.27, 0.27])
    real = [rng.normal(mean_real, 0.03) for _ in range(20)]
    synthetic = [rng.normal(mean_synthetic, 0.03) for _ in range(64)]
    synthetic[0][2] = np.nan  # a subject with an unmeasured sector is left out
    cal = ContractionCalibration.fit(real, synthetic)
    assert (cal.subjects_real, cal.subjects_synthetic) == (20, 63)
    gains = np.asarray(cal.gains)
    assert gains[1] == pytest.approx(0.02 / 0.07, abs=0.12)
    # the other sectors differ by noise only: shrunk to no change, or nearly
    assert np.all(np.delete(gains, 1) > 0.9)
    assert cal.moves
    assert ContractionCalibration.from_bytes(cal.to_bytes()) == cal
    # a real class that contracts more is not amplified toward (gain <= 1), nor below GAIN_RANGE
    more = ContractionCalibration.fit([r + 0.2 for r in real], synthetic[1:])
    assert more.gains == (1.0,) * N_SECTORS
    assert not more.moves
    dyskinetic = ContractionCalibration.fit([r - 0.5 for r in real], synthetic[1:])
    assert min(dyskinetic.gains) == GAIN_RANGE[0]
    with pytest.raises(ValueError, match="no real subject"):
        ContractionCalibration.fit([np.full(N_SECTORS, np.nan)], synthetic)


def test_a_calibration_refuses_values_that_are_not_finite_or_bytes_that_are_not_one() -> None:
    with pytest.raises(ValueError, match="finite"):
        ContractionCalibration((np.nan,) * N_SECTORS, (0.3,) * N_SECTORS, (0.0,) * N_SECTORS)
    with pytest.raises(ValueError, match="6 finite"):
        ContractionCalibration((0.3,) * 4, (0.3,) * 4, (0.0,) * 4)
    with pytest.raises(ValueError, match="not a contraction calibration"):
        ContractionCalibration.from_bytes(b"{}")
    assert not ContractionCalibration.identity().moves


@pytest.mark.parametrize("with_probabilities", [False, True])
def test_a_batch_gets_the_calibrated_sector_contraction_on_mid_es_slices(with_probabilities: bool) -> None:
    ed, es = heart(12.0), heart(0.8 * 12.0)  # every sector's FAC 1 - 0.64 = 0.36
    fac = sector_contraction(ed, es)
    np.testing.assert_allclose(fac, 0.36, atol=0.04)
    gains = [1.0, 0.25, 1.0, 1.0, 1.0, 1.0]
    plan = [(0, 1.0, "ED", 5), (0, 1.0, "ES", 5), (0, 0.5, "ED", 5), (0, 0.5, "ES", 5)]
    labels = np.concatenate([ed, es, ed, es])
    probs = soft(labels) if with_probabilities else None
    out, out_probs = calibrate_batch(labels, probs, plan, calibration(gains))
    assert (out_probs is not None) == with_probabilities
    np.testing.assert_array_equal(out[:5], ed)  # ED is not touched
    np.testing.assert_array_equal(out[10:15], ed)
    # the mid-ventricular slices (1..3 of 5 LV slices) only; base and apex as decoded
    for block in (5, 15):
        np.testing.assert_array_equal(out[block], labels[block])
        np.testing.assert_array_equal(out[block + 4], labels[block + 4])
        assert not np.array_equal(out[block + 2], labels[block + 2])
    full = sector_contraction(out[:5], out[5:10])
    half = sector_contraction(out[10:15], out[15:20])
    assert full[1] == pytest.approx(0.25 * fac[1], abs=0.04)
    assert half[1] == pytest.approx(fac[1] - 0.5 * 0.75 * fac[1], abs=0.04)
    np.testing.assert_allclose(np.delete(full, 1), np.delete(fac, 1), atol=0.04)
    # the wall keeps its area on the calibrated slices
    myo = [np.count_nonzero(s == LV_MYOCARDIUM) for s in (out[7], labels[7])]
    assert myo[0] == pytest.approx(myo[1], rel=0.04)
    assert np.count_nonzero(out[7] == LV_CAVITY) > np.count_nonzero(labels[7] == LV_CAVITY)


def test_a_batch_without_a_change_is_returned_bit_for_bit_and_a_missing_subject_is_refused() -> None:
    ed, es = heart(12.0), heart(9.6)
    labels = np.concatenate([ed, es])
    plan = [(0, 1.0, "ED", 5), (0, 1.0, "ES", 5)]
    probs = soft(labels)
    out, out_probs = calibrate_batch(labels, probs, plan, ContractionCalibration.identity())
    np.testing.assert_array_equal(out, labels)
    assert out_probs is not None
    np.testing.assert_array_equal(out_probs, probs)
    # a sector that already expands is not narrowed (nothing to take out)
    out, _ = calibrate_batch(np.concatenate([es, ed]), None, plan, calibration([0.0] * N_SECTORS))
    np.testing.assert_array_equal(out, np.concatenate([es, ed]))
    with pytest.raises(ValueError, match="no contraction calibration for subject 0"):
        calibrate_batch(labels, None, plan, {1: calibration([0.5] * N_SECTORS)})
    with pytest.raises(ValueError, match="plan covers"):
        calibrate_batch(labels, None, plan[:1], calibration([0.5] * N_SECTORS))
    with pytest.raises(ValueError, match="stacks of one shape"):
        sector_contraction(ed, es[:2])


def test_make_labels_applies_the_fitted_calibration_after_the_motion_and_the_fit_is_cached(
    phantom_root,
    vae,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from cardiosynth.data.labels import Group
    from cardiosynth.synthesis import engine
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    cache = tmp_path / "cache"
    synth = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=cache,
                        motion_calibration_subjects=3)  # fmt: skip
    request = SynthesisRequest(Group.HCM, n=2, seed=0, severities=(0.5, 1.0))
    # an untrained decoder draws no cavity: the sector FACs are stood in for (real subjects at 0.02 in
    # sector 1, synthetic ones at 0.07), and what the fit sees is counted
    seen: list[int] = []
    real_count = len(synth._stats_refs(Group.HCM, None)[0])

    def stand_in(ed: np.ndarray, es: np.ndarray) -> np.ndarray:
        seen.append(len(ed))
        fac = np.full(N_SECTORS, 0.25) + 0.001 * len(seen)
        fac[1] = 0.02 if len(seen) <= real_count else 0.07
        return fac

    made = []
    real_make = Synthesizer.make_labels

    def recording(self, r, *a, **k):  # type: ignore[no-untyped-def]
        made.append((r.n, k.get("motion", True), k.get("contraction", True)))
        return real_make(self, r, *a, **k)

    monkeypatch.setattr(engine, "sector_contraction", stand_in)
    monkeypatch.setattr(Synthesizer, "make_labels", recording)
    fitted = synth.contraction_calibration(request)
    monkeypatch.undo()
    # the class's real subjects, then 3 synthetic ones made with the motion calibration (itself fitted
    # on the way, on subjects made without either), without this one
    assert len(seen) == real_count + 3
    assert made == [(3, True, False), (3, False, False)]
    assert (fitted.subjects_real, fitted.subjects_synthetic) == (real_count, 3)
    assert fitted.fac_real[1] == pytest.approx(0.02)
    assert fitted.fac_synthetic[1] == pytest.approx(0.07)
    # the test phantom has one subject per class: no estimate of the noise, so no offset and no move
    assert real_count == 1
    assert fitted.offset == (0.0,) * N_SECTORS
    assert not fitted.moves
    assert synth.contraction_calibration(request) is fitted
    fresh = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=cache,
                        motion_calibration_subjects=3)  # fmt: skip
    monkeypatch.setattr(Synthesizer, "make_labels", lambda *a, **k: pytest.fail("refitted"))
    assert fresh.contraction_calibration(request) == fitted  # read from the cache
    # MINF on statistics pooled over territories: no calibration, and no fit
    assert fresh.contraction_calibration(SynthesisRequest(Group.MINF)) == ContractionCalibration.identity()
    monkeypatch.undo()
    # make_labels hands the motion-calibrated labels to this calibration, and on what it returns
    known = calibration([1.0, 0.3, 1.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr(Synthesizer, "contraction_calibration", lambda self, r, t=None: known)
    synth.clean_labels = False
    synth.calibrate_contraction = False
    off = synth.make_labels(request)
    calls = spy_batch_calibration(monkeypatch, engine, "calibrate_contraction", 2)
    synth.calibrate_contraction = True
    on = synth.make_labels(request)
    ((seen_labels, seen_plan, seen_calibration),) = calls
    np.testing.assert_array_equal(seen_labels, off.labels)
    assert seen_plan == off.plan
    assert seen_calibration == {0: known, 1: known}
    assert np.all(on.labels == 2)
    # one phase only: nothing to calibrate
    monkeypatch.setattr(Synthesizer, "contraction_calibration", lambda self, r, t=None: pytest.fail("fitted"))
    synth.make_labels(SynthesisRequest(Group.HCM, n=1, seed=0, phases=("ED",)))


def test_a_minf_territory_is_calibrated_on_its_own_subjects_only_from_enough_of_them(
    phantom_root,
    vae,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from cardiosynth.data.labels import Group
    from cardiosynth.data.territory import TERRITORIES
    from cardiosynth.synthesis import engine
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    synth = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=tmp_path,
                        motion_calibration_subjects=2)  # fmt: skip
    # the test phantom has one MINF subject: its territory gets statistics of its own
    monkeypatch.setattr(engine, "MIN_TERRITORY_SUBJECTS", 1)
    (own,) = [t for t in TERRITORIES if synth._stats_refs(Group.MINF, t)[1] == t]
    made = []
    real_make = Synthesizer.make_labels

    def recording(self, r, *a, **k):  # type: ignore[no-untyped-def]
        made.append(r.territory)
        return real_make(self, r, *a, **k)

    monkeypatch.setattr(Synthesizer, "make_labels", recording)
    monkeypatch.setattr(engine, "sector_contraction", lambda ed, es: np.full(N_SECTORS, 0.2))
    request = SynthesisRequest(Group.MINF, n=2, seed=0)
    monkeypatch.setattr(engine, "MIN_CONTRACTION_TERRITORY_SUBJECTS", 2)
    assert synth.contraction_calibration(request, own) == ContractionCalibration.identity()
    assert made == []  # too few subjects: not fitted at all, not pooled
    monkeypatch.setattr(engine, "MIN_CONTRACTION_TERRITORY_SUBJECTS", 1)
    fitted = synth.contraction_calibration(request, own)
    assert made[0] == own  # synthetic subjects of that territory
    assert fitted.subjects_real == 1
    assert fitted.fac_real == (0.2,) * N_SECTORS
