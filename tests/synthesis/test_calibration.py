"""The decoder's volume calibration: known answers for the fit, the artefact, the engine's use."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from cardiosynth.data.labels import Group
from cardiosynth.models.vae import LabelVAE
from cardiosynth.synthesis.calibration import (
    CALIBRATION_FORMAT,
    MARGIN,
    DecoderCalibration,
    RoundTripEvidence,
    ZonedCalibration,
    calibrate,
    calibration_key,
    extent_zones,
    fit_logit_bias,
    sampling_calibration_key,
    zone_offsets,
)
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer
from cardiosynth.synthesis.stages import decode_latents, decode_logits


def _overcalled(n: int = 40_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-class logits ``[0, t]`` with ``t`` uniform in [-1.5, 1.5] and truth ``t > 0.5``: the plain
    argmax calls class 1 on half the pixels, the truth on a third, and offset -0.5 restores it."""
    t = np.random.default_rng(seed).uniform(-1.5, 1.5, size=(n // 100, 1, 10, 10)).astype(np.float32)
    logits = np.concatenate([np.zeros_like(t), t], axis=1)
    return logits, (t[:, 0] > 0.5).astype(np.uint8)


def test_the_fit_restores_volumes_with_the_known_offset() -> None:
    logits, labels = _overcalled()
    fitted = calibrate([(logits[:200], labels[:200]), (logits[200:], labels[200:])], classes=2)
    assert fitted.n_slices == 400
    assert fitted.logit_bias[0] == 0.0  # the reference
    assert fitted.logit_bias[1] == pytest.approx(-0.5, abs=0.01)
    assert fitted.ratio_before[1] == pytest.approx(1.5, abs=0.03)
    assert fitted.ratio_after[1] == pytest.approx(1.0, abs=2e-3)
    # Without anything to correct, nothing moves.
    t = logits[:, 1:]
    exact = calibrate([(logits, (t[:, 0] > 0).astype(np.uint8))], classes=2)
    assert exact.logit_bias[1] == pytest.approx(0.0, abs=0.01)


def test_the_fit_converges_in_few_steps_where_volumes_move_slowly_with_the_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 200,000 sure class-1 pixels beside _overcalled's 40,000: the log volume of class 1 moves by
    # only ~0.06 per unit of offset (trained decoders measure 0.1-0.3), where a fixed step of
    # 0.5 log(ratio) needs over 100 steps to come within the tolerance; the secant needs a few.
    logits, labels = _overcalled()
    sure = np.zeros((2000, 2, 10, 10), dtype=np.float32)
    sure[:, 1] = MARGIN + 1
    evidence = RoundTripEvidence.empty(2)
    evidence.add(np.concatenate([logits, sure]), np.concatenate([labels, np.ones((2000, 10, 10), np.uint8)]))
    steps = []
    counts = RoundTripEvidence.counts
    monkeypatch.setattr(RoundTripEvidence, "counts", lambda self, bias: steps.append(1) or counts(self, bias))
    bias = fit_logit_bias(evidence)
    assert bias[1] == pytest.approx(-0.5, abs=0.02)
    assert evidence.counts(bias)[1] / evidence.truth[1] == pytest.approx(1.0, abs=1e-3)
    assert len(steps) <= 12


def test_sure_pixels_are_counted_not_kept_and_offsets_stay_where_that_is_exact() -> None:
    evidence = RoundTripEvidence.empty(3)
    logits = np.zeros((1, 3, 2, 2), dtype=np.float32)
    logits[0, 1, 0, 0] = MARGIN + 1  # sure: class 1 by more than the margin
    logits[0, 2, 1, 1] = 0.5  # unsure
    evidence.add(logits, np.array([[[1, 0], [0, 2]]]))
    assert evidence.uncertain.shape == (3, 3)  # only the three unsure pixels' logits are kept
    assert evidence.certain.tolist() == [0, 1, 0]
    assert evidence.truth.tolist() == [2, 1, 1]
    # Label 2 is never true where the decoder puts it more often: its offset is pushed down, but
    # only to -MARGIN / 2, within which the sure pixel's label cannot change.
    skewed = RoundTripEvidence.empty(3)
    many = np.zeros((1, 3, 1, 50), dtype=np.float32)
    many[0, 2] = 1.0
    truth = np.zeros((1, 1, 50), dtype=np.uint8)
    truth[0, 0, 0] = 2
    skewed.add(many, truth)
    bias = fit_logit_bias(skewed)
    assert bias.min() >= -MARGIN / 2
    assert bias.max() <= MARGIN / 2
    assert bias[2] <= -1.0  # where the 50 unsure pixels leave label 2
    assert skewed.counts(bias)[2] <= 1


def test_bad_evidence_is_refused() -> None:
    evidence = RoundTripEvidence.empty(4)
    with pytest.raises(ValueError, match="logits"):
        evidence.add(np.zeros((2, 3, 4, 4)), np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="labels outside"):
        evidence.add(np.zeros((1, 4, 2, 2)), np.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="no pixels"):
        fit_logit_bias(evidence)
    with pytest.raises(ValueError, match="no slices"):
        calibrate([], classes=4)
    with pytest.raises(ValueError, match="at least 2"):
        RoundTripEvidence.empty(1)


def test_the_artefact_round_trips_and_another_format_is_refused() -> None:
    logits, labels = _overcalled(2000)
    fitted = calibrate([(logits, labels)], classes=2)
    again = DecoderCalibration.from_bytes(fitted.to_bytes())
    assert np.array_equal(again.logit_bias, fitted.logit_bias)
    assert again.n_slices == fitted.n_slices
    older = fitted.to_bytes().replace(b"format", b"formax")
    with pytest.raises(ValueError, match="format 0"):
        DecoderCalibration.from_bytes(older)
    assert f"c{CALIBRATION_FORMAT}-" in calibration_key("v2", "abc")
    assert calibration_key("v2", "abc") != calibration_key("v2", "abd")


def test_decode_adds_the_offsets_to_the_logits(vae: LabelVAE) -> None:
    z = np.random.default_rng(0).normal(size=(5, vae.config.latent_dim))
    (logits,) = list(decode_logits(vae, z))
    bias = np.array([0.0, 0.3, -0.2, 0.1])
    expected = (logits + bias[None, :, None, None]).argmax(1)
    assert np.array_equal(decode_latents(vae, z, logit_bias=bias), expected)
    assert np.array_equal(decode_latents(vae, z), logits.argmax(1))
    with pytest.raises(ValueError, match="logit_bias"):
        decode_latents(vae, z, logit_bias=np.zeros(3))


def test_the_engine_fits_once_caches_and_can_be_switched_off(
    phantom_root: Path, vae: LabelVAE, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    synth = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=cache)
    fitted = synth.decoder_calibration()
    assert "calibrate" in synth.timings
    assert fitted.n_slices > 0
    # An untrained decoder: the fit may not reach equal volumes, but never makes them worse.
    log_error = lambda r: np.abs(np.log(np.maximum(r[1:], 1e-9))).max()  # noqa: E731
    assert log_error(fitted.ratio_after) <= log_error(fitted.ratio_before)
    assert list(cache.glob("calibration/t/*.npz"))
    again = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=cache)
    assert np.array_equal(again.decoder_calibration().logit_bias, fitted.logit_bias)
    assert "calibrate" not in again.timings  # read back, not refitted
    request = SynthesisRequest(Group.HCM, n=1, seed=0, severities=(1.0,))
    on = again.make_labels(request)
    again.calibrate_decoder = False
    assert again.logit_bias() is None
    off = again.make_labels(request)
    assert on.labels.shape == off.labels.shape
    if np.any(fitted.logit_bias != 0):
        assert not np.array_equal(on.labels, off.labels)


def test_a_fit_of_some_labels_keeps_the_others_at_their_start() -> None:
    # Three classes: 1 over-called as in _overcalled, 2 never true and never drawn.
    logits, labels = _overcalled()
    three = np.concatenate([logits, np.full_like(logits[:, :1], -10.0)], axis=1)
    evidence = RoundTripEvidence.empty(3)
    evidence.add(three, labels)
    start = np.array([0.0, 0.0, 0.7])
    bias = fit_logit_bias(evidence, labels=(1,), start=start)
    assert bias[1] == pytest.approx(-0.5, abs=0.01)
    assert bias[2] == 0.7  # not fitted: where it started
    fitted = DecoderCalibration.fit(evidence, len(labels), labels=(1,), start=start)
    assert fitted.ratio_before[1] == pytest.approx(1.5, abs=0.03)  # measured at the start
    assert fitted.ratio_after[1] == pytest.approx(1.0, abs=2e-3)
    with pytest.raises(ValueError, match="labels to fit"):
        fit_logit_bias(evidence, labels=(0,))
    with pytest.raises(ValueError, match="start"):
        fit_logit_bias(evidence, start=np.array([0.1, 0.0, 0.0]))  # the background is the reference
    with pytest.raises(ValueError, match="start"):
        fit_logit_bias(evidence, start=np.zeros(2))


def test_truth_and_logits_can_come_separately() -> None:
    logits, labels = _overcalled(4000)
    together = RoundTripEvidence.empty(2)
    together.add(logits, labels)
    apart = RoundTripEvidence.empty(2)
    apart.add_logits(logits)
    apart.add_truth(np.bincount(labels.ravel(), minlength=2))
    assert np.array_equal(apart.truth, together.truth)
    assert np.array_equal(fit_logit_bias(apart), fit_logit_bias(together))
    with pytest.raises(ValueError, match="true counts"):
        apart.add_truth(np.array([1, -1]))
    with pytest.raises(ValueError, match="logits"):
        apart.add_logits(np.zeros((1, 3, 2, 2)))
    assert sampling_calibration_key("v2", "DCM|ED") != sampling_calibration_key("v2", "DCM|ES")
    assert sampling_calibration_key("v2", "x") != calibration_key("v2", "x")


def test_decode_takes_one_row_of_offsets_per_slice(vae: LabelVAE) -> None:
    z = np.random.default_rng(1).normal(size=(6, vae.config.latent_dim))
    rows = np.random.default_rng(2).normal(scale=0.5, size=(6, 4))
    rows[:, 0] = 0.0
    together = decode_latents(vae, z, batch_size=4, logit_bias=rows)  # rows cross a batch boundary
    one_by_one = np.concatenate([decode_latents(vae, z[i : i + 1], logit_bias=rows[i]) for i in range(6)])
    assert np.array_equal(together, one_by_one)
    with pytest.raises(ValueError, match=r"\(6, 4\)"):
        decode_latents(vae, z, logit_bias=rows[:5])


def _fake(bias: list[float]) -> DecoderCalibration:
    b = np.array(bias)
    return DecoderCalibration(b, np.ones(4), np.ones(4), 1)


def test_each_synthetic_lv_extent_is_decoded_with_the_class_offsets_blended_by_severity(
    phantom_root: Path, vae: LabelVAE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synth = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=tmp_path)
    round_trip = np.array([0.0, 0.1, 0.2, 0.3])
    monkeypatch.setattr(synth, "decoder_calibration", lambda: _fake(round_trip.tolist()))
    own = {"ED": np.array([0.0, 0.1, 1.2, -0.7]), "ES": np.array([0.0, 0.1, -1.0, 0.9])}
    monkeypatch.setattr(
        synth,
        "sampling_calibration",
        lambda request, phase, territory=None: ZonedCalibration((_fake(own[phase].tolist()),)),
    )
    request = SynthesisRequest(Group.HCM, n=1)
    plan = [(0, 0.5, "ED", 6), (0, 1.0, "ES", 6)]
    rows = synth.slice_bias(request, plan, [(1, 3), (2, 5)], [None, None])
    assert rows is not None
    assert rows.shape == (12, 4)
    assert np.allclose(rows[[0, 4, 5, 6, 7]], round_trip)  # outside the LV extents: the round trip's
    assert np.allclose(rows[1:4], 0.5 * round_trip + 0.5 * own["ED"])
    assert np.allclose(rows[8:12], own["ES"])
    synth.calibrate_sampling = False
    assert np.allclose(synth.slice_bias(request, plan, [(1, 3), (2, 5)], [None, None]), round_trip)
    synth.calibrate_decoder = False
    assert synth.slice_bias(request, plan, [(1, 3), (2, 5)], [None, None]) is None


def test_the_sampling_calibration_fits_the_lv_labels_caches_and_changes_the_labels(
    phantom_root: Path, vae: LabelVAE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    make = lambda: Synthesizer(  # noqa: E731
        vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=cache, sampling_calibration_subjects=6
    )
    synth = make()
    request = SynthesisRequest(Group.DCM, n=1, seed=0)
    zoned = synth.sampling_calibration(request, "ED")
    assert len(zoned.zones) == 1  # the default: the LV extent as a whole
    fitted = zoned.zones[0]
    round_trip = synth.decoder_calibration().logit_bias
    assert fitted.n_slices > 6  # each end point's whole stack, several slices
    # By default the RV keeps the round trip's offset (calibrate_rv: the next test); the LV's labels
    # are fitted, never making their volumes worse (an untrained decoder may not reach equal volumes).
    assert fitted.logit_bias[0] == 0.0
    assert fitted.logit_bias[1] == round_trip[1]
    assert not np.array_equal(fitted.logit_bias, round_trip)
    error = lambda r: np.abs(np.log(np.maximum(r[2:], 1e-9))).max()  # noqa: E731
    assert error(fitted.ratio_after) <= error(fitted.ratio_before)
    # One artefact per class, phase and mode; read back, not refitted.
    assert synth.sampling_calibration(request, "ED") is zoned
    other = synth.sampling_calibration(SynthesisRequest(Group.DCM, n=1, correlation="none"), "ED")
    assert len(list(cache.glob("calibration/t/s*.npz"))) == 2
    assert other is not zoned
    again = make()
    monkeypatch.setattr("cardiosynth.synthesis.engine.decode_logits", lambda *a, **k: pytest.fail("refitted"))
    assert np.array_equal(again.sampling_calibration(request, "ED").logit_bias, zoned.logit_bias)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="phase"):
        synth.sampling_calibration(request, "MID")
    with pytest.raises(ValueError, match="sampling_calibration_subjects"):
        Synthesizer(vae, None, phantom_root, cache_dir=cache, sampling_calibration_subjects=0)
    # make_labels decodes with it: switching it off changes the labels where its offsets differ.
    on = synth.make_labels(request)
    synth.calibrate_sampling = False
    off = synth.make_labels(request)
    assert on.labels.shape == off.labels.shape
    if not np.allclose(fitted.logit_bias, round_trip):
        assert not np.array_equal(on.labels, off.labels)


def test_the_sampling_calibration_fits_the_rv_to_the_class_mean_volume_as_written(
    phantom_root: Path, vae: LabelVAE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``calibrate_rv``, the RV's target is the class's mean RV volume over its real subjects,
    in pixels of each end point's stack at the slice spacing make_labels writes (the class-scaled
    one, or the base's own with scale_to_class off); its pixels outside the LV extent count as
    decoded with the round trip's offsets, on both sides of the LV labels' counts."""
    import cardiosynth.synthesis.engine as engine
    from cardiosynth.data.labels import RV_CAVITY
    from cardiosynth.synthesis.calibration import DecoderCalibration

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    fit = DecoderCalibration.fit

    def spy(evidence: object, *args: object, **kwargs: object) -> DecoderCalibration:
        seen.append((evidence.truth.copy(), evidence.certain.copy()))  # type: ignore[attr-defined]
        return fit(evidence, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.DecoderCalibration, "fit", spy)
    targets = {}
    for scaled in (True, False):
        synth = Synthesizer(
            vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=tmp_path / "cache",
            sampling_calibration_subjects=4, scale_to_class=scaled, calibrate_rv=True,
        )  # fmt: skip
        synth.sampling_calibration(SynthesisRequest(Group.DCM, n=1, seed=0), "ES")
        targets[scaled] = seen[-1][0][RV_CAVITY]
        # By hand: the class's mean RV volume (mm3) over its real subjects at ES, then each end
        # point's pixels for it (antithetic pairs: two end points per base, the bases in turn).
        dcm = [synth._load(r) for r in synth.refs if r.group is Group.DCM]
        rv = [(x.processed.es_label == RV_CAVITY).sum() for x in dcm]
        mm3 = np.mean([v * 1.5**2 * x.subject.spacing[2] for v, x in zip(rv, dcm, strict=True)])
        nor = sorted((r for r in synth.refs if r.group is Group.NOR), key=lambda r: r.subject_id)
        stretch = synth.class_scale(Group.DCM).slice_spacing if scaled else 1.0
        bases = [synth._load(nor[(k // 2) % len(nor)]) for k in range(4)]
        wanted = sum(mm3 / (1.5**2 * b.subject.spacing[2] * stretch) for b in bases)
        assert targets[scaled] == round(wanted)
    assert synth.class_scale(Group.DCM).slice_spacing != 1.0
    assert targets[True] != targets[False]  # and under two cache keys: both were fitted
    assert len(seen) == 3  # the round trip's fit, then one per setting
    # Pixels decoded outside the LV extent are in the certain counts (the end points' stacks run
    # past their LV extents: at least one whole slice), and in the LV labels' truth as well.
    truth, certain = seen[-1]
    assert certain.sum() >= 128 * 128
    assert (truth[2:] >= certain[2:]).all()
    # Off (the default): the LV's areas over the extent only, the RV at the round trip's.
    off = Synthesizer(
        vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=tmp_path / "cache",
        sampling_calibration_subjects=4,
    )  # fmt: skip
    lv_only = off.sampling_calibration(SynthesisRequest(Group.DCM, n=1, seed=0), "ES")
    assert len(seen) == 4  # under its own cache key
    assert lv_only.zones[0].logit_bias[RV_CAVITY] == off.decoder_calibration().logit_bias[RV_CAVITY]
    assert seen[-1][1].sum() < 128 * 128  # nothing outside the LV extent is counted


def test_the_class_mean_baseline_decodes_its_lv_extent_as_the_method(
    phantom_root: Path, vae: LabelVAE, tmp_path: Path
) -> None:
    from cardiosynth.evaluation.baselines import class_mean_decode
    from cardiosynth.synthesis.equalise import lv_extent, target_extent

    synth = Synthesizer(vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=tmp_path)
    ed, es = synth.class_stats(Group.HCM, "ED"), synth.class_stats(Group.HCM, "ES")
    base = synth._load(next(r for r in synth.refs if r.group is Group.NOR)).processed
    pair = (base.ed_label, base.es_label)
    plain = np.zeros(4)
    # An LV offset far above every other logit inside the extent only: LV wherever the extent is,
    # the round trip's decode outside it.
    huge = np.array([0.0, 0.0, 0.0, 1e3])
    made = class_mean_decode(
        vae, ed, es, [len(pair[0])], bases=[pair], logit_bias=plain, extent_bias=(huge, huge)
    )
    same = class_mean_decode(
        vae, ed, es, [len(pair[0])], bases=[pair], logit_bias=plain, extent_bias=(plain, plain)
    )
    without = class_mean_decode(vae, ed, es, [len(pair[0])], bases=[pair], logit_bias=plain)
    assert all(np.array_equal(a, b) for a, b in zip(same.pairs[0], without.pairs[0], strict=True))
    labels = made.pairs[0][0]
    inside = np.flatnonzero((labels == 3).all(axis=(1, 2)))
    assert inside.size > 0
    outside = np.setdiff1d(np.arange(len(labels)), inside)
    assert np.array_equal(labels[outside], without.pairs[0][0][outside])
    first, last = target_extent(lv_extent(pair[0]), (0, 0), ed.extent_offset, 1.0, len(labels))
    assert inside.tolist() == list(range(first, last + 1))  # the extent the method places its LV in
    # With the method's whole-slice dither: its ES extent is the one target_extent draws with it.
    for dither in ((0.0, 0.0), (0.999, 0.999)):
        dithered = class_mean_decode(
            vae, ed, es, [len(pair[0])], bases=[pair], logit_bias=plain, extent_bias=(huge, huge),
            extent_dithers=[dither],
        )  # fmt: skip
        es_labels = dithered.pairs[0][1]
        first, last = target_extent(lv_extent(pair[0]), (0, 0), es.extent_offset, 1.0, len(es_labels), dither)
        assert np.flatnonzero((es_labels == 3).all(axis=(1, 2))).tolist() == list(range(first, last + 1))
    with pytest.raises(ValueError, match="extent_bias"):
        class_mean_decode(vae, ed, es, [len(pair[0])], extent_bias=(huge, huge))
    with pytest.raises(ValueError, match="one dither per base: 2 for 1 bases"):
        class_mean_decode(vae, ed, es, [len(pair[0])], bases=[pair], extent_dithers=[(0.0, 0.0)] * 2)


def test_the_sampling_calibration_draws_antithetic_pairs_on_one_base(
    vae: LabelVAE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End points come in pairs on one base, the second the first's draw negated (rounded up to
    whole pairs); plain draws with the switch off, under another cache key; a deterministic shift
    has nothing to negate and is never paired."""
    import cardiosynth.synthesis.engine as engine
    from cardiosynth.data.phantom.generator import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, n_subjects=10, seed=0, workers=1)  # two NOR subjects: two bases

    calls: list[tuple[bytes, bool]] = []
    states: list[object] = []
    original = engine.target_latents

    def recorded(*args: object, negate: bool = False) -> np.ndarray:
        calls.append((np.asarray(args[3]).tobytes(), negate))
        states.append(args[4].bit_generator.state["state"])  # type: ignore[attr-defined]
        return original(*args, negate=negate)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "target_latents", recorded)
    cache = tmp_path / "cache"
    synth = Synthesizer(
        vae, None, root, model_versions={"vae": "t"}, cache_dir=cache, sampling_calibration_subjects=3
    )
    assert engine.SAMPLING_CALIBRATION_ANTITHETIC
    paired = synth.sampling_calibration(SynthesisRequest(Group.DCM, n=1), "ED")
    assert [negate for _, negate in calls] == [False, True] * 2
    assert calls[0][0] == calls[1][0] != calls[2][0] == calls[3][0]
    assert states[0] == states[1] != states[2] == states[3]  # the same draw, negated
    assert paired.zones[0].n_slices % 2 == 0  # each pair decodes the same LV extent twice
    calls.clear()
    monkeypatch.setattr(engine, "SAMPLING_CALIBRATION_ANTITHETIC", False)
    plain = synth.sampling_calibration(SynthesisRequest(Group.DCM, n=1), "ED")
    assert [negate for _, negate in calls] == [False] * 3
    assert calls[0][0] != calls[1][0] != calls[2][0]  # a base per end point, in turn
    assert plain is not paired
    calls.clear()
    monkeypatch.setattr(engine, "SAMPLING_CALIBRATION_ANTITHETIC", True)
    synth.sampling_calibration(SynthesisRequest(Group.DCM, n=1, interpolation="shift"), "ED")
    assert [negate for _, negate in calls] == [False] * 3


def test_an_lv_extent_is_cut_into_zones_by_relative_position() -> None:
    assert extent_zones(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert extent_zones(7, 3).tolist() == [0, 0, 1, 1, 1, 2, 2]  # slice centres 0.21 ... 2.79 zones
    assert extent_zones(2, 3).tolist() == [0, 2]  # too short for every zone: the middle one left out
    assert extent_zones(4, 1).tolist() == [0, 0, 0, 0]
    for length, zones in ((0, 3), (5, 0)):
        with pytest.raises(ValueError, match=f"got {length} and {zones}"):
            extent_zones(length, zones)
    per_zone = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(zone_offsets(per_zone, 6), per_zone[[0, 0, 1, 1, 2, 2]])
    assert np.array_equal(zone_offsets(per_zone[1], 3), np.tile(per_zone[1], (3, 1)))
    with pytest.raises(ValueError, match=r"\(1, 3, 4\)"):
        zone_offsets(per_zone[None], 3)


def test_a_zoned_calibration_round_trips_and_one_zone_is_stored_as_before() -> None:
    zones = tuple(_fake([0.0, 0.1 * k, -0.2 * k, 0.3]) for k in range(3))
    zoned = ZonedCalibration(zones)
    assert zoned.logit_bias.shape == (3, 4)
    back = ZonedCalibration.from_bytes(zoned.to_bytes())
    assert np.array_equal(back.logit_bias, zoned.logit_bias)
    assert [z.n_slices for z in back.zones] == [1, 1, 1]
    assert np.array_equal(zoned.extent_bias(4), zoned.logit_bias[[0, 1, 1, 2]])
    # One zone: the plain calibration's bytes, so artefacts fitted before zones existed still load.
    one = ZonedCalibration(zones[:1])
    assert one.to_bytes() == zones[0].to_bytes()
    assert np.array_equal(ZonedCalibration.from_bytes(zones[0].to_bytes()).logit_bias, [zones[0].logit_bias])
    with pytest.raises(ValueError, match="at least one zone"):
        ZonedCalibration(())
    partial = io.BytesIO()
    np.savez(partial, zones=np.array(2))  # a field missing: refitted, not a crash
    with pytest.raises(ValueError, match="not a zoned calibration"):
        ZonedCalibration.from_bytes(partial.getvalue())
    with pytest.raises(ValueError, match="one shape"):
        ZonedCalibration((zones[0], _fake([0.0, 0.1])))


def test_the_sampling_calibration_fits_each_zone_to_the_class_areas_there(
    phantom_root: Path, vae: LabelVAE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``sampling_zones``, each zone of the end points' LV extents is fitted to the class's mean
    label counts per slice in the same zone of its real subjects' LV extents (computed here by hand),
    under a cache key of its own, and make_labels decodes each slice with its zone's offsets."""
    import cardiosynth.synthesis.engine as engine
    from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM
    from cardiosynth.synthesis.equalise import lv_extent

    seen: list[np.ndarray] = []
    fit = DecoderCalibration.fit

    def spy(evidence: RoundTripEvidence, *args: object, **kwargs: object) -> DecoderCalibration:
        seen.append(evidence.truth.copy())
        return fit(evidence, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.DecoderCalibration, "fit", spy)
    cache = tmp_path / "cache"
    make = lambda zones: Synthesizer(  # noqa: E731
        vae, None, phantom_root, model_versions={"vae": "t"}, cache_dir=cache,
        sampling_calibration_subjects=4, sampling_zones=zones,
    )  # fmt: skip
    synth = make(3)
    request = SynthesisRequest(Group.DCM, n=1, seed=0)
    zoned = synth.sampling_calibration(request, "ED")
    assert len(zoned.zones) == 3
    assert len(seen) == 4  # the round trip's fit, then one per zone
    # By hand: the class's real subjects' mean counts per slice in each zone of their ED LV extents.
    totals, slices = np.zeros((3, 4)), np.zeros(3)
    for ref in (r for r in synth.refs if r.group is Group.DCM):
        labels = synth._load(ref).processed.ed_label
        first, last = lv_extent(labels)
        for zone, row in zip(extent_zones(last - first + 1, 3), labels[first : last + 1], strict=True):
            totals[zone] += np.bincount(row.ravel(), minlength=4)
            slices[zone] += 1
    for k, (zone, truth) in enumerate(zip(zoned.zones, seen[1:], strict=True)):
        assert zone.n_slices > 0
        for label in (LV_MYOCARDIUM, LV_CAVITY):
            assert truth[label] == np.rint(totals[k, label] / slices[k] * zone.n_slices)
    assert (
        sum(z.n_slices for z in zoned.zones) == make(1).sampling_calibration(request, "ED").zones[0].n_slices
    )
    assert len(list(cache.glob("calibration/t/s*.npz"))) == 2  # one zone and three: two artefacts
    assert not np.array_equal(seen[1][2:] / zoned.zones[0].n_slices, seen[3][2:] / zoned.zones[2].n_slices)
    error = lambda r: np.abs(np.log(np.maximum(r[2:], 1e-9))).max()  # noqa: E731
    assert all(error(z.ratio_after) <= error(z.ratio_before) for z in zoned.zones)  # never worse
    # make_labels: each slice of the LV extent with its zone's offsets (blended by severity).
    round_trip = synth.decoder_calibration().logit_bias
    rows = synth.slice_bias(request, [(0, 1.0, "ED", 8)], [(1, 6)], [None])
    assert rows is not None
    assert np.allclose(rows[[0, 7]], round_trip)
    assert np.allclose(rows[1:7], zoned.logit_bias[[0, 0, 1, 1, 2, 2]])
    # The class-mean baseline decodes its extent with the same per-zone offsets.
    assert synth.end_point_bias(request)[0].shape == (3, 4)  # type: ignore[index]


def test_zones_are_whole_numbers_and_one_with_the_rv_volume_fit(
    phantom_root: Path, vae: LabelVAE, tmp_path: Path
) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="sampling_zones must be a whole number"):
            Synthesizer(vae, None, phantom_root, cache_dir=tmp_path, sampling_zones=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampling_zones must be 1, got 3"):
        Synthesizer(vae, None, phantom_root, cache_dir=tmp_path, sampling_zones=3, calibrate_rv=True)
    synth = Synthesizer(vae, None, phantom_root, cache_dir=tmp_path, sampling_zones=3)
    synth.calibrate_rv = True  # switched afterwards: refused where it would be fitted
    with pytest.raises(ValueError, match="sampling_zones must be 1, got 3"):
        synth.sampling_calibration(SynthesisRequest(Group.DCM, n=1), "ED")
