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
    mapped = np.concatenate([cal.target(s) for s in synthetic])
    mapped = mapped[np.isfinite(mapped).all(axis=1)]
    np.testing.assert_allclose(mapped.mean(axis=0), cal.mean_synthetic, atol=1e-9)  # the mean is kept
    spread = np.sqrt(np.mean(np.sum((mapped - mapped.mean(axis=0)) ** 2, axis=1)))
    assert spread == pytest.approx(cal.rms_real, rel=1e-9)
    assert MotionCalibration.from_bytes(cal.to_bytes()) == cal
    # a fit with nothing to measure says so
    # the gain is bounded: it never adds motion, and takes out at most three quarters
    assert MotionCalibration((0.0, 0.0), 10.0, (0.0, 0.0), 0.01).gain == GAIN_RANGE[1] == 1.0
    assert MotionCalibration((0.0, 0.0), 0.01, (0.0, 0.0), 10.0).gain == GAIN_RANGE[0]
    assert MotionCalibration((0.0, 0.0), 1.0, (0.0, 0.0), 0.0).gain == 1.0
    with pytest.raises(ValueError, match="no synthetic slice"):
        MotionCalibration.fit(real, [np.full((3, 2), np.nan)])
    with pytest.raises(ValueError, match="not a motion calibration"):
        MotionCalibration.from_bytes(b"{}")


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


def test_mid_ventricular_slices_leave_out_a_fifth_at_each_end() -> None:
    from cardiosynth.synthesis.motion import mid_displacements, mid_ventricular

    stack = np.zeros((12, S, S), np.uint8)
    stack[1:11] = heart((30.0, 30.0), z=10)  # 10 slices with cavity (the last too small to measure)
    np.testing.assert_array_equal(np.flatnonzero(mid_ventricular(stack)), np.arange(3, 9))
    d = mid_displacements(stack, stack)
    assert np.isnan(d[:3]).all() and np.isnan(d[9:]).all()  # noqa: PT018
    np.testing.assert_allclose(d[3:9], 0.0)


@pytest.fixture(scope="module")
def vae():  # type: ignore[no-untyped-def]
    import torch

    from cardiosynth.models.vae import LabelVAE, VAEConfig

    torch.manual_seed(0)
    return LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval()


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
    monkeypatch.setattr(Synthesizer, "motion_calibration", lambda self, r: known)
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
    calls = []

    def spy(labels, probabilities, plan, calibration):  # type: ignore[no-untyped-def]
        calls.append((labels.copy(), list(plan), calibration))
        return np.full_like(labels, 3), probabilities

    monkeypatch.setattr(engine, "calibrate_batch", spy)
    synth.calibrate_motion = True
    spied = synth.make_labels(request)
    ((seen_labels, seen_plan, seen_calibration),) = calls
    np.testing.assert_array_equal(seen_labels, off.labels)
    assert seen_plan == off.plan
    assert seen_calibration is known
    assert np.all(spied.labels == 3)
    # one phase only: nothing to calibrate
    synth.calibrate_motion = True
    ed_only = SynthesisRequest(Group.HCM, n=1, seed=0, phases=("ED",))
    monkeypatch.setattr(Synthesizer, "motion_calibration", lambda self, r: pytest.fail("fitted"))
    synth.make_labels(ed_only)
    with pytest.raises(ValueError, match="motion_calibration_subjects"):
        Synthesizer(vae, None, phantom_root, cache_dir=cache, motion_calibration_subjects=0)


def test_a_fit_with_no_measurable_cavity_leaves_es_where_decoded(
    phantom_root,
    vae,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from cardiosynth.data.labels import Group
    from cardiosynth.synthesis import engine
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    synth = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=tmp_path,
                        motion_calibration_subjects=2)  # fmt: skip
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
