"""The ED -> ES motion calibration: displacements, the fitted map, sub-pixel moves of a decoded batch."""

from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY
from cardiosynth.synthesis.motion import (
    GAIN_RANGE,
    MotionCalibration,
    calibrate_batch,
    cavity_centroids,
    displacements,
    move_slices,
)
from tests.synthesis.conftest import spy_batch_calibration

S = 64


def heart(centre: tuple[float, float], radius: float = 9.0, z: int = 4) -> np.ndarray:
    """A ring heart (cavity, myocardium, an RV beside it) per slice, ``(Z, S, S)``; the last slice is
    apical, too small for a centroid."""
    x, y = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    out = np.zeros((z, S, S), np.uint8)
    for k in range(z):
        r = radius if k < z - 1 else 2.0
        d = np.hypot(x - centre[0], y - centre[1])
        out[k][np.hypot(x - centre[0], y - centre[1] - 2 * radius) < radius] = RV_CAVITY
        out[k][d < r + 3] = LV_MYOCARDIUM
        out[k][d < r] = LV_CAVITY
    return out


def soft(labels: np.ndarray) -> np.ndarray:
    """Probabilities ``(Z, 4, S, S)`` x 255 that are a blurred one-hot (a decoder's soft borders)."""
    from scipy import ndimage

    onehot = np.stack([(labels == c).astype(np.float64) for c in range(4)], axis=1)
    blurred = ndimage.gaussian_filter(onehot, sigma=(0, 0, 1.0, 1.0))
    blurred /= blurred.sum(axis=1, keepdims=True)
    return np.rint(blurred * 255).astype(np.uint8)


def test_displacements_are_the_cavity_centroid_moves_and_nan_where_unmeasurable() -> None:
    ed, es = heart((30.0, 30.0)), heart((31.0, 29.0))
    d = displacements(ed, es)
    np.testing.assert_allclose(d[:-1], [[1.0, -1.0]] * 3, atol=1e-9)
    assert np.isnan(d[-1]).all()  # the apical slice's cavity is below MIN_CAVITY_PIXELS
    assert np.isnan(cavity_centroids(np.zeros((2, S, S), np.uint8))).all()
    with pytest.raises(ValueError, match="differ in shape"):
        displacements(ed, es[:2])
    with pytest.raises(ValueError, match="stack"):
        cavity_centroids(ed[0])


def test_the_fit_maps_the_synthetic_mean_and_spread_onto_the_real() -> None:
    rng = np.random.default_rng(0)
    real = [rng.normal([0.1, -0.2], 0.25, size=(10, 2)) for _ in range(30)]
    synthetic = [rng.normal([0.5, 0.3], 0.5, size=(10, 2)) for _ in range(30)]
    synthetic[0][3] = np.nan  # unmeasurable slices are ignored
    cal = MotionCalibration.fit(real, synthetic)
    assert cal.mean_real == pytest.approx((0.1, -0.2), abs=0.03)
    assert cal.mean_synthetic == pytest.approx((0.5, 0.3), abs=0.06)
    assert cal.rms_real == pytest.approx(0.25 * np.sqrt(2), rel=0.05)
    assert cal.gain == pytest.approx(0.5, rel=0.08)
    # the means differ by many standard errors (per-subject SD 0.25 / sqrt(10), 30 subjects): the
    # offset carries nearly all of the difference, and the mapped mean lands on the real one
    assert (cal.subjects_real, cal.subjects_synthetic) == (30, 30)
    assert cal.offset == pytest.approx(np.subtract(cal.mean_real, cal.mean_synthetic), rel=0.03)
    assert cal.moves
    mapped = np.concatenate([cal.target(s) for s in synthetic])
    mapped = mapped[np.isfinite(mapped).all(axis=1)]
    np.testing.assert_allclose(mapped.mean(axis=0), np.add(cal.mean_synthetic, cal.offset), atol=1e-9)
    np.testing.assert_allclose(mapped.mean(axis=0), cal.mean_real, atol=0.02)
    spread = np.sqrt(np.mean(np.sum((mapped - mapped.mean(axis=0)) ** 2, axis=1)))
    assert spread == pytest.approx(cal.rms_real, rel=1e-9)
    assert MotionCalibration.from_bytes(cal.to_bytes()) == cal
    # means that differ by less than their noise: no offset at all, the synthetic mean is kept
    same = [rng.normal([0.0, 0.0], 1.0, size=(10, 2)) for _ in range(5)]
    noisy = MotionCalibration.fit(same, [rng.normal([0.1, -0.1], 1.0, size=(10, 2)) for _ in range(5)])
    assert noisy.offset == (0.0, 0.0)
    # a fit with nothing to measure says so
    # the gain is bounded: it never adds motion, and takes out at most three quarters
    assert MotionCalibration((0.0, 0.0), 10.0, (0.0, 0.0), 0.01).gain == GAIN_RANGE[1] == 1.0
    assert MotionCalibration((0.0, 0.0), 0.01, (0.0, 0.0), 10.0).gain == GAIN_RANGE[0]
    assert MotionCalibration((0.0, 0.0), 1.0, (0.0, 0.0), 0.0).gain == 1.0
    with pytest.raises(ValueError, match="no synthetic slice"):
        MotionCalibration.fit(real, [np.full((3, 2), np.nan)])
    with pytest.raises(ValueError, match="not a motion calibration"):
        MotionCalibration.from_bytes(b"{}")


def test_the_offset_is_the_mean_difference_shrunk_by_its_standard_error() -> None:
    from cardiosynth.synthesis.motion import shrunk_difference

    # two subjects a side, known variances: diff (1, 0.1), se^2 = 0.5 / 2 + 0.5 / 2 = 0.5 per component
    real = np.array([[1.5, 0.6], [2.5, -0.4]])  # means (2, 0.1), variance (0.5, 0.5)
    synthetic = np.array([[0.5, 0.5], [1.5, -0.5]])  # means (1, 0), variance (0.5, 0.5)
    out = shrunk_difference(real, synthetic)
    # 1 * (1 - 0.5 / 1) = 0.5; 0.1 lies within its standard error (0.71): exactly 0
    np.testing.assert_allclose(out, [0.5, 0.0])
    # far beyond its noise the difference is kept nearly whole
    np.testing.assert_allclose(shrunk_difference(real + 10.0, synthetic), [11.0, 10.1], rtol=0.01)
    # one subject on a side: no estimate of the noise, no offset
    np.testing.assert_array_equal(shrunk_difference(real[:1], synthetic), [0.0, 0.0])
    np.testing.assert_array_equal(shrunk_difference(synthetic, synthetic), [0.0, 0.0])
    with pytest.raises(ValueError, match="per-subject means"):
        shrunk_difference(real[:, :1], synthetic)
    with pytest.raises(ValueError, match="must be finite"):
        shrunk_difference(np.array([[np.nan, 0.0], [1.0, 0.0]]), synthetic)
    with pytest.raises(ValueError, match="positive finite weights"):
        shrunk_difference(real, synthetic, np.array([1.0, 0.0]))
    # weighted by slice counts: the difference of the slice means, with the clustered standard
    # error; equal weights give the unweighted figures
    np.testing.assert_allclose(shrunk_difference(real, synthetic, np.array([3.0, 3.0])), [0.5, 0.0])
    many = np.array([[1.0, 0.0]] * 5 + [[-1.0, 0.0]] * 5)  # 5 subjects of 2 slices at +1, 5 of 10 at -1
    flat = np.zeros((10, 2))
    np.testing.assert_array_equal(shrunk_difference(many, flat), [0.0, 0.0])  # subject means: no gap
    slices = np.array([2.0] * 5 + [10.0] * 5)
    gap = shrunk_difference(many, flat, slices)  # slice means: -2/3 px; se^2 clustered, as below
    se2 = 10 / 9 * (5 * 2**2 * (5 / 3) ** 2 + 5 * 10**2 * (1 / 3) ** 2) / 60**2
    np.testing.assert_allclose(gap, [-2 / 3 * (1 - se2 / (4 / 9)), 0.0])


def test_the_fits_offset_closes_the_slice_mean_gap_when_subjects_differ_in_slice_count() -> None:
    rng = np.random.default_rng(1)
    # real: half the subjects with 3 slices far to one side, half with 12 to the other
    real = [rng.normal([1.0, 0.0], 0.05, size=(3, 2)) for _ in range(20)]
    real += [rng.normal([-1.0, 0.0], 0.05, size=(12, 2)) for _ in range(20)]
    synthetic = [rng.normal([0.0, 0.0], 0.05, size=(8, 2)) for _ in range(40)]
    cal = MotionCalibration.fit(real, synthetic)
    assert cal.mean_real[0] == pytest.approx(-0.6, abs=0.02)  # (3 - 12) / 15 slices
    mapped = np.concatenate([cal.target(s) for s in synthetic])
    # the offset lands the mapped slice mean near the real slice mean (shrunk by a little noise)
    assert mapped.mean(axis=0)[0] == pytest.approx(cal.mean_real[0], abs=0.05)
    with pytest.raises(ValueError, match="finite"):
        MotionCalibration((np.nan, 0.0), 1.0, (0.0, 0.0), 1.0)
    with pytest.raises(ValueError, match="not a motion calibration"):
        MotionCalibration.from_bytes(cal.to_bytes().replace(b'"rms_real": ', b'"rms_real": -'))


def test_slices_without_a_frame_move_with_the_rest_of_the_heart() -> None:
    from cardiosynth.synthesis.motion import fill_frames, rv_axes

    ed, es = heart((30.0, 30.0), radius=9.0, z=5), heart((30.0, 30.0), radius=9.0, z=5)
    ed[3][ed[3] == RV_CAVITY] = 0  # an apical slice with a cavity but no RV beside it
    es[3][es[3] == RV_CAVITY] = 0
    axes = rv_axes(ed)
    assert np.isnan(axes[3]).all() and np.isfinite(axes[:3]).all()  # noqa: PT018
    filled = fill_frames(axes)
    np.testing.assert_allclose(filled[3], axes[:3].mean(axis=0) / np.linalg.norm(axes[:3].mean(axis=0)))
    np.testing.assert_array_equal(filled[:3], axes[:3])
    assert np.isnan(fill_frames(np.full((3, 2), np.nan))).all()  # nothing to fill from
    # the offset moves the frameless slice too, the same way as the others
    toward_rv = MotionCalibration((0.0, 0.0), 1.0, (0.0, 0.0), 1.0, offset=(1.0, 0.0))
    plan = [(0, 1.0, "ED", 5), (0, 1.0, "ES", 5)]
    both = np.concatenate([ed, es])
    out, _ = calibrate_batch(both, soft(both), plan, toward_rv)
    d = displacements(out[:5], out[5:])
    np.testing.assert_allclose(d[3], d[0], atol=0.2)
    np.testing.assert_allclose(d[3], [0.0, 1.0], atol=0.2)


@pytest.mark.parametrize("with_probabilities", [True, False])
def test_a_sub_pixel_move_moves_the_heart_and_keeps_its_areas(with_probabilities: bool) -> None:
    labels = heart((30.0, 30.0))
    probs = soft(labels) if with_probabilities else None
    shifts = np.array([[0.6, -0.4], [0.0, 0.0], [np.nan, np.nan], [1.0, 1.0]])
    moved, moved_probs = move_slices(labels, probs, shifts)
    assert (moved_probs is None) == (not with_probabilities)
    d = cavity_centroids(moved)[0] - cavity_centroids(labels)[0]
    np.testing.assert_allclose(d, [0.6, -0.4], atol=0.2)
    for c in (LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY):
        assert abs(int((moved[0] == c).sum()) - int((labels[0] == c).sum())) <= 0.06 * (labels[0] == c).sum()
    np.testing.assert_array_equal(moved[1:3], labels[1:3])  # zero and NaN rows: unchanged
    if moved_probs is not None:
        np.testing.assert_array_equal(moved_probs[1:3], probs[1:3])  # type: ignore[index]
        assert np.array_equal(moved[0], np.argmax(moved_probs[0], axis=0))
    with pytest.raises(ValueError, match="shifts"):
        move_slices(labels, probs, shifts[:2])
    with pytest.raises(ValueError, match="probabilities"):
        move_slices(labels, soft(labels)[:2], shifts)


def test_a_batch_gets_the_calibrated_motion_by_severity_on_es_only() -> None:
    ed, es = heart((30.0, 30.0)), heart((32.0, 30.0))  # 2 px of ED -> ES motion
    plan = [(0, 0.5, "ED", 4), (0, 0.5, "ES", 4), (0, 1.0, "ED", 4), (0, 1.0, "ES", 4), (1, 1.0, "ED", 4)]
    labels = np.concatenate([ed, es, ed, es, ed])
    probs = soft(labels)
    # real hearts of the class barely move: the calibration halves the spread about a zero mean
    cal = MotionCalibration((0.0, 0.0), 0.5, (0.0, 0.0), 1.0)
    out, out_probs = calibrate_batch(labels, probs, plan, cal)
    assert out_probs is not None
    np.testing.assert_array_equal(out[:4], labels[:4])  # ED untouched
    np.testing.assert_array_equal(out[8:12], labels[8:12])
    np.testing.assert_array_equal(out[16:], labels[16:])  # a subject with ED alone: as it is
    d_half = displacements(out[0:4], out[4:8])[0]
    d_full = displacements(out[8:12], out[12:16])[0]
    # severity 1: 2 px -> 1 px (the target); severity 0.5: half way, 1.5 px
    np.testing.assert_allclose(d_full, [1.0, 0.0], atol=0.2)
    np.testing.assert_allclose(d_half, [1.5, 0.0], atol=0.2)
    same, _ = calibrate_batch(labels, probs, plan, MotionCalibration((0.0, 0.0), 1.0, (0.0, 0.0), 1.0))
    np.testing.assert_array_equal(same, labels)  # the identity calibration moves nothing
    with pytest.raises(ValueError, match="plan covers"):
        calibrate_batch(labels[:-1], None, plan, cal)
    # an offset moves ES by itself at gain 1 (the heart's frame: first axis toward the RV, +y here;
    # second across, -x), and each subject may have its own calibration (MINF: its territory's)
    toward_rv = MotionCalibration((0.0, 0.0), 1.0, (0.0, 0.0), 1.0, offset=(1.0, 0.0))
    assert toward_rv.moves
    two = [*plan, (1, 1.0, "ES", 4)]
    both = np.concatenate([labels, es])
    per_subject, _ = calibrate_batch(both, soft(both), two, {0: toward_rv, 1: cal})
    np.testing.assert_allclose(displacements(per_subject[8:12], per_subject[12:16])[0], [2.0, 1.0], atol=0.2)
    np.testing.assert_allclose(displacements(per_subject[0:4], per_subject[4:8])[0], [2.0, 0.5], atol=0.2)
    # subject 1 gets its own calibration (the spread halved), not subject 0's offset
    np.testing.assert_allclose(displacements(per_subject[16:20], per_subject[20:24])[0], [1.0, 0.0], atol=0.2)
    with pytest.raises(ValueError, match="no motion calibration for subject 0"):
        calibrate_batch(labels, probs, plan, {1: cal})


def test_mid_ventricular_slices_leave_out_a_fifth_at_each_end() -> None:
    from cardiosynth.synthesis.motion import mid_displacements, mid_ventricular

    stack = np.zeros((12, S, S), np.uint8)
    stack[1:11] = heart((30.0, 30.0), z=10)  # 10 slices with cavity (the last too small to measure)
    np.testing.assert_array_equal(np.flatnonzero(mid_ventricular(stack)), np.arange(3, 9))
    d = mid_displacements(stack, stack)
    assert np.isnan(d[:3]).all() and np.isnan(d[9:]).all()  # noqa: PT018
    np.testing.assert_allclose(d[3:9], 0.0)


def test_make_labels_moves_es_by_the_fitted_calibration_and_the_fit_is_cached(
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
    # an untrained decoder draws no measurable cavity: the displacements are stood in for, and what
    # the fit sees is counted (every real subject of the class, every synthetic one, each slice)
    seen = []

    def stand_in(ed: np.ndarray, es: np.ndarray) -> np.ndarray:
        seen.append(len(ed))
        return np.random.default_rng(len(seen)).normal(size=(len(ed), 2))

    monkeypatch.setattr(engine, "mid_displacements", stand_in)
    fitted = synth.motion_calibration(request)
    monkeypatch.undo()
    real = sum(len(synth._load(r).processed.ed_label) for r in synth._stats_refs(Group.HCM, None)[0])
    assert len(seen) == len(synth._stats_refs(Group.HCM, None)[0]) + 3
    assert fitted.slices_real == real
    assert fitted.slices_synthetic == sum(seen) - real
    assert fitted != MotionCalibration.identity()
    assert synth.motion_calibration(request) is fitted
    fresh = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=cache,
                        motion_calibration_subjects=3)  # fmt: skip
    monkeypatch.setattr(Synthesizer, "make_labels", lambda *a, **k: pytest.fail("refitted"))
    assert fresh.motion_calibration(request) == fitted  # read from the cache
    monkeypatch.undo()
    # make_labels applies a calibration to ES only, by severity: a known one, injected
    known = MotionCalibration((0.0, 0.0), 0.5, (0.4, -0.3), 1.0)
    monkeypatch.setattr(Synthesizer, "motion_calibration", lambda self, r, t=None: known)
    synth.clean_labels = False  # compare the decoded stacks themselves
    on = synth.make_labels(request)
    synth.calibrate_motion = False
    off = synth.make_labels(request)
    expected, expected_probs = calibrate_batch(off.labels, off.probabilities, off.plan, known)
    np.testing.assert_array_equal(on.labels, expected)
    assert on.probabilities is not None and expected_probs is not None  # noqa: PT018
    np.testing.assert_array_equal(on.probabilities, expected_probs)
    # (an untrained decoder draws no cavity, so nothing moved above): what make_labels hands on is
    # what the calibration returns, given what was decoded
    calls = spy_batch_calibration(monkeypatch, engine, "calibrate_batch", 3)
    synth.calibrate_motion = True
    spied = synth.make_labels(request)
    ((seen_labels, seen_plan, seen_calibration),) = calls
    np.testing.assert_array_equal(seen_labels, off.labels)
    assert seen_plan == off.plan
    assert seen_calibration == {0: known, 1: known}
    assert np.all(spied.labels == 3)
    # one phase only: nothing to calibrate
    synth.calibrate_motion = True
    ed_only = SynthesisRequest(Group.HCM, n=1, seed=0, phases=("ED",))
    monkeypatch.setattr(Synthesizer, "motion_calibration", lambda self, r, t=None: pytest.fail("fitted"))
    synth.make_labels(ed_only)
    with pytest.raises(ValueError, match="motion_calibration_subjects"):
        Synthesizer(vae, None, phantom_root, cache_dir=cache, motion_calibration_subjects=0)


@pytest.fixture
def synth(phantom_root, vae, tmp_path):  # type: ignore[no-untyped-def]
    """A Synthesizer on the test phantom whose motion fits take 2 synthetic subjects."""
    from cardiosynth.synthesis.engine import Synthesizer

    return Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=tmp_path,
                       motion_calibration_subjects=2)  # fmt: skip


def test_minf_subjects_get_their_territorys_calibration(
    synth,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from cardiosynth.data.labels import Group
    from cardiosynth.data.territory import TERRITORIES
    from cardiosynth.synthesis import engine
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    request = SynthesisRequest(Group.MINF, n=4, seed=3)
    territories = synth.subject_territories(request)
    asked: list[str | None] = []

    def order(t: str | None) -> int:
        return -1 if t is None else TERRITORIES.index(t)

    def per_territory(self, r, t=None):  # type: ignore[no-untyped-def]
        asked.append(t)
        # a distinct offset per territory (pooled: -1), so a subject given another's shows
        return MotionCalibration((0.0, 0.0), 1.0, (0.0, 0.0), 1.0, offset=(float(order(t)), 0.0))

    seen = []
    monkeypatch.setattr(Synthesizer, "motion_calibration", per_territory)

    def spy(labels, probabilities, plan, calibration):  # type: ignore[no-untyped-def]
        seen.append(calibration)
        return labels, probabilities

    monkeypatch.setattr(engine, "calibrate_batch", spy)
    synth.make_labels(request)
    assert asked == list(dict.fromkeys(territories))  # one calibration per territory drawn
    (calibration,) = seen
    got = {i: c.offset[0] for i, c in calibration.items()}
    assert got == {i: order(t) for i, t in enumerate(territories)}
    assert len({c.offset for c in calibration.values()}) == len(set(territories))
    monkeypatch.undo()
    # the fit of one territory: its real subjects against synthetic subjects of that territory
    made = []
    real_make = Synthesizer.make_labels

    def recording(self, r, *a, **k):  # type: ignore[no-untyped-def]
        made.append(r.territory)
        return real_make(self, r, *a, **k)

    monkeypatch.setattr(Synthesizer, "make_labels", recording)
    monkeypatch.setattr(engine, "mid_displacements", lambda ed, es: np.zeros((len(ed), 2)))
    # the test phantom has one MINF subject: its territory gets statistics of its own
    monkeypatch.setattr(engine, "MIN_TERRITORY_SUBJECTS", 1)
    own = [t for t in TERRITORIES if synth._stats_refs(Group.MINF, t)[1] == t]
    assert len(own) == 1
    refs, _ = synth._stats_refs(Group.MINF, own[0])
    monkeypatch.setattr(engine, "MIN_MOTION_TERRITORY_SUBJECTS", len(refs))
    fitted = synth.motion_calibration(request, own[0])
    assert made == [own[0]]
    assert fitted.subjects_real == len(refs)
    assert fitted.offset == (0.0, 0.0) and not fitted.moves  # noqa: PT018
    # a territory with fewer subjects than that gets the pooled calibration (territories drawn)
    monkeypatch.setattr(engine, "MIN_MOTION_TERRITORY_SUBJECTS", len(refs) + 1)
    pooled = synth.motion_calibration(request, own[0])
    assert made == [own[0], None]
    assert pooled.subjects_real == len(synth._stats_refs(Group.MINF, None)[0])
    assert synth.motion_calibration(request, None) is pooled


def test_a_fit_with_no_measurable_cavity_leaves_es_where_decoded(
    synth,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from cardiosynth.data.labels import Group
    from cardiosynth.synthesis import engine
    from cardiosynth.synthesis.engine import SynthesisRequest

    monkeypatch.setattr(engine, "mid_displacements", lambda ed, es: np.full((len(ed), 2), np.nan))
    assert synth.motion_calibration(SynthesisRequest(Group.DCM)) == MotionCalibration.identity()


def test_the_hearts_frame_points_at_the_rv_and_round_trips() -> None:
    from cardiosynth.synthesis.motion import from_frame, rv_axes, to_frame

    axes = rv_axes(heart((30.0, 30.0)))
    np.testing.assert_allclose(axes[:-1], [[0.0, 1.0]] * 3, atol=0.05)  # the RV lies at +y
    assert np.isnan(axes[-1]).all()
    d = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, -0.5], [0.3, 0.3]])
    f = to_frame(d, np.array([[0.0, 1.0]] * 4))
    np.testing.assert_allclose(f[1], [2.0, 0.0])  # toward the RV
    np.testing.assert_allclose(f[0], [0.0, -1.0])  # across
    np.testing.assert_allclose(from_frame(f, np.array([[0.0, 1.0]] * 4)), d)
    rotated = np.array([[np.cos(a), np.sin(a)] for a in (0.3, 1.1, 2.0, -0.7)])
    np.testing.assert_allclose(from_frame(to_frame(d, rotated), rotated), d, atol=1e-12)
