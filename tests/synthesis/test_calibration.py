"""The decoder's volume calibration: known answers for the fit, the artefact, the engine's use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cardiosynth.data.labels import Group
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis.calibration import (
    CALIBRATION_FORMAT,
    MARGIN,
    DecoderCalibration,
    RoundTripEvidence,
    calibrate,
    calibration_key,
    fit_logit_bias,
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
    assert bias[2] < -1.0


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


@pytest.fixture(scope="module")
def vae() -> LabelVAE:
    torch.manual_seed(0)
    return LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval()


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
