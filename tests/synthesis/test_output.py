"""Written synthetic subjects: the base's grid, its affine with the class's slice spacing, no
constant fill, a feathered seam, labels that are the cleaned decoded stacks restored to the native
grid, biomarkers over the class's length and body."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.data.nifti import load_volume
from cardiosynth.data.preprocess import (
    apply_labels,
    crop_weight,
    heart_weight,
    one_hot,
    restore_image,
    restore_labels,
    restore_probabilities,
)
from cardiosynth.data.topology import clean_labels, topology_errors
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis.engine import (
    LabelBatch,
    SynthesisRequest,
    Synthesizer,
    SyntheticSubject,
    clean_stacks,
)
from cardiosynth.synthesis.output import base_file_names, file_names, write_subject
from cardiosynth.synthesis.scale import lv_long_axis_mm

SPADE_SMALL = SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4)


@dataclass
class Run:
    synth: Synthesizer
    request: SynthesisRequest
    batch: LabelBatch
    images: np.ndarray
    subject: SyntheticSubject


@pytest.fixture(scope="module")
def run(phantom_root: Path) -> Run:
    """One HCM subject from untrained but fixed models (writing does not depend on training)."""
    torch.manual_seed(0)
    synth = Synthesizer(LabelVAE(VAEConfig()), SpadeTranslator(SPADE_SMALL), phantom_root)
    request = SynthesisRequest(Group.HCM, n=1, seed=0)
    batch = synth.make_labels(request)
    images = synth.translate(batch)
    (subject,) = synth.assemble(batch, images)
    return Run(synth, request, batch, images, subject)


def most_frequent_share(volume: np.ndarray) -> float:
    _, counts = np.unique(volume, return_counts=True)
    return float(counts.max() / volume.size)


def long_axis_mean(root: Path, group: Group) -> float:
    subjects = [read_subject(p) for p in sorted((root / "training").iterdir())]
    return float(
        np.mean([lv_long_axis_mm(s.ed_label, s.spacing[2]) for s in subjects if s.info.group is group])
    )


def test_the_batch_carries_the_class_length_over_nor(run: Run, phantom_root: Path) -> None:
    assert run.batch.scale is not None
    expected = long_axis_mean(phantom_root, Group.HCM) / long_axis_mean(phantom_root, Group.NOR)
    assert run.batch.scale.slice_spacing == pytest.approx(expected)
    assert run.batch.scale.slice_spacing != 1.0  # the fixture's HCM and NOR hearts differ in length
    assert run.subject.scale(1.0) == run.batch.scale  # severity 1: the whole factor


def test_written_files_have_the_base_grid_and_the_class_slice_spacing(run: Run, tmp_path: Path) -> None:
    import json

    folder = write_subject(run.subject, run.request, tmp_path, models={"vae": "t0"}, preview=False)
    base = run.subject.base
    factor = run.subject.scale(1.0).slice_spacing
    record = json.loads((folder / "provenance.json").read_text())
    assert record["spacing_mm"]["1.00"] == pytest.approx([*base.spacing[:2], base.spacing[2] * factor])
    assert record["base_spacing_mm"] == pytest.approx(list(base.spacing))
    assert record["body"]["1.00"]["height_cm"] == pytest.approx(
        base.info.height * run.subject.scale(1.0).height
    )
    centre = np.array([4.0, 7.0, (base.ed_label.shape[2] - 1) / 2.0, 1.0])
    for phase in ("ED", "ES"):
        image_name, label_name = file_names(run.subject.name, 1.0, phase)
        image, labels = load_volume(folder / image_name), load_volume(folder / label_name)
        for written in (image, labels):
            # the base's voxels, in-plane grid and stack centre; the slices the class's distance apart
            assert written.array.shape == base.ed_label.shape
            np.testing.assert_allclose(written.affine[:3, :2], base.affine[:3, :2], atol=1e-4)
            np.testing.assert_allclose(written.affine @ centre, base.affine @ centre, atol=1e-3)
            np.testing.assert_allclose(written.spacing, record["spacing_mm"]["1.00"], rtol=1e-5)
        np.testing.assert_array_equal(labels.array, run.subject.phases[1.0][phase].native_labels)
        np.testing.assert_allclose(image.array, run.subject.phases[1.0][phase].native_image, rtol=1e-6)


def test_the_base_subject_is_written_beside_it_on_request(run: Run, tmp_path: Path) -> None:
    import json

    plain = write_subject(run.subject, run.request, tmp_path / "plain", models={"vae": "t0"}, preview=False)
    assert not any("_base_" in p.name for p in plain.iterdir())  # off by default: real data, not synthetic
    assert "base_files" not in json.loads((plain / "provenance.json").read_text())
    folder = write_subject(run.subject, run.request, tmp_path / "with", models={"vae": "t0"}, preview=False,
                           base=True)  # fmt: skip
    base = run.subject.base
    record = json.loads((folder / "provenance.json").read_text())
    for phase, (image_own, label_own) in (("ED", (base.ed_image, base.ed_label)),
                                          ("ES", (base.es_image, base.es_label))):  # fmt: skip
        image_name, label_name = base_file_names(run.subject.name, phase)
        assert record["base_files"][phase] == {"image": image_name, "label": label_name}
        image, labels = load_volume(folder / image_name), load_volume(folder / label_name)
        # the base's own volumes with its own affine: the synthetic volumes' voxels, in-plane grid and
        # stack centre, so a viewer compares them slice for slice
        synthetic = load_volume(folder / file_names(run.subject.name, 1.0, phase)[0])
        np.testing.assert_allclose(image.affine, base.affine, atol=1e-4)
        np.testing.assert_allclose(image.affine[:3, :2], synthetic.affine[:3, :2], atol=1e-4)
        assert image.array.shape == synthetic.array.shape
        np.testing.assert_array_equal(labels.array, label_own)
        np.testing.assert_allclose(image.array, image_own, rtol=1e-6)
        assert not np.array_equal(labels.array, run.subject.phases[1.0][phase].native_labels)
    # training reads ``files``: the synthetic volumes only, with or without the base beside them
    assert record["files"] == json.loads((plain / "provenance.json").read_text())["files"]


def test_no_constant_fill_and_the_base_outside_the_crop(run: Run) -> None:
    base = run.subject.base
    weight = crop_weight(run.subject.geometry)
    for phase, native in (("ED", base.ed_image), ("ES", base.es_image)):
        out = run.subject.phases[1.0][phase]
        # the old paste into a constant: most of the volume is one value
        window = (float(np.percentile(native, 1)), float(np.percentile(native, 99)))
        assert most_frequent_share(restore_image(out.images, run.subject.geometry, window)) > 0.3
        assert most_frequent_share(out.native_image) < 0.05
        # outside the crop the written image is the base's own (its body at its world position)
        np.testing.assert_array_equal(out.native_image[weight == 0], native[weight == 0])
        assert (weight == 0).mean() > 0.2  # the phantom's field of view is larger than the crop


def heart_and_weight(subject: SyntheticSubject, phase: str) -> tuple[np.ndarray, np.ndarray]:
    """The heart the composite keeps synthetic (the output's and the base's own) and its weight."""
    out = subject.phases[1.0][phase]
    own = subject.base.ed_label if phase == "ED" else subject.base.es_label
    heart = (out.native_labels > 0) | (own > 0)
    weight = crop_weight(subject.geometry)[:, :, None] * heart_weight(heart, subject.geometry.native_spacing)
    return heart, weight


def test_the_image_is_synthetic_around_the_heart_and_the_base_elsewhere(run: Run) -> None:
    # the base's own labels as the decoded stacks (an untrained decoder draws "heart" everywhere),
    # translated to an image brighter than the base's own
    batch, images, _ = replay(run)
    cleaned = LabelBatch(batch.request, batch.base_ids, batch.plan, clean_stacks(batch.labels, batch.plan))
    (subject,) = run.synth.assemble(cleaned, np.clip(images + 0.3, -1.0, 1.0))
    geometry = subject.geometry
    inside = crop_weight(geometry)[:, :, None] == 1
    for phase in ("ED", "ES"):
        out = subject.phases[1.0][phase]
        native = subject.base.ed_image if phase == "ED" else subject.base.es_image
        window = run.synth._base(run.synth._ref(subject.base.subject_id)).processed.phase(phase).window
        pasted = restore_image(out.images, geometry, window)
        heart, weight = heart_and_weight(subject, phase)
        # on the heart the translator's image (the base's own heart must not show through) ...
        assert (heart & inside).sum() > 1000
        np.testing.assert_allclose(out.native_image[heart], pasted[heart], rtol=1e-5)
        # ... away from it, inside the crop too, the base's own image, voxel for voxel
        away = weight == 0
        assert (away & inside).sum() > 0.3 * inside.sum()
        np.testing.assert_array_equal(out.native_image[away], native[away])
        assert np.abs(pasted - native)[away & inside].mean() > 10  # (the translation differs there)
        between = (weight > 0) & (weight < 1)
        expected = weight * pasted + (1 - weight) * native
        np.testing.assert_allclose(out.native_image[between], expected[between], rtol=1e-5)


def test_the_seam_is_feathered(run: Run) -> None:
    out = run.subject.phases[1.0]["ED"]
    base = run.subject.base.ed_image
    window = run.synth._base(run.synth._ref(run.subject.base.subject_id)).processed.ed_window
    pasted = restore_image(out.images, run.subject.geometry, window)
    _, weight = heart_and_weight(run.subject, "ED")
    hard = (weight > 0).astype(np.float64)
    hard_composite = hard * pasted + (1 - hard) * base

    def step(volume: np.ndarray, w: np.ndarray) -> float:
        """Mean |x-neighbour difference| across the seam (pairs whose weights differ, not both 1)."""
        lo, hi = w[:-1], w[1:]
        seam = (lo != hi) & (np.minimum(lo, hi) < 1)
        return float(np.abs(np.diff(volume, axis=0))[seam].mean())

    feathered, pasted_edge = step(out.native_image, weight), step(hard_composite, hard)
    # an untrained translator differs from the base far more than a trained one, and still the
    # feathered seam steps less than half as much as a hard paste would
    assert feathered < 0.5 * pasted_edge


def replay(run: Run) -> tuple[LabelBatch, np.ndarray, list[np.ndarray]]:
    """The base subject's own processed labels (with decoder-like islands added) and images as a
    batch: what comes out must be the base itself, at its own voxels."""
    loaded = run.synth._base(run.synth._ref(run.batch.base_ids[0]))
    labels, images, noisy = [], [], []
    rng = np.random.default_rng(0)
    for _, _, phase, _ in run.batch.plan:
        lab = (loaded.processed.ed_label if phase == "ED" else loaded.processed.es_label).copy()
        labels.append(lab.copy())
        for _ in range(5):  # RV specks in the background, far from the heart
            k, a, b = rng.integers(0, len(lab)), rng.integers(2, 12), rng.integers(2, 12)
            lab[k, a : a + 2, b : b + 2] = 1
        noisy.append(lab)
        images.append(loaded.processed.ed_image if phase == "ED" else loaded.processed.es_image)
    batch = LabelBatch(run.request, run.batch.base_ids, run.batch.plan, np.concatenate(noisy))
    return batch, np.concatenate(images), labels


def test_labels_are_the_cleaned_stacks_restored_at_the_base_voxels(run: Run) -> None:
    batch, images, clean_base = replay(run)
    cleaned = LabelBatch(batch.request, batch.base_ids, batch.plan, clean_stacks(batch.labels, batch.plan))
    (subject,) = run.synth.assemble(cleaned, images)
    base = subject.base
    offset = 0
    for (_, severity, phase, z), expected in zip(batch.plan, clean_base, strict=True):
        decoded = batch.labels[offset : offset + z]
        offset += z
        out = subject.phases[severity][phase]
        assert topology_errors(decoded).islands[1] > 0
        np.testing.assert_array_equal(out.labels, clean_labels(decoded))
        # the added specks are gone and the heart is the base's own, up to its own rasterisation specks
        np.testing.assert_array_equal(out.labels, clean_labels(expected))
        assert np.sum(out.labels != expected) < 0.01 * np.sum(expected > 0)
        errors = topology_errors(out.labels)
        assert sum(errors.islands.values()) == 0
        assert errors.holes == 0
        assert errors.lv_contacts == 0
        # inside the crop the native labels are exactly restore_labels of the cleaned stack ...
        np.testing.assert_array_equal(out.native_labels, restore_labels(out.labels, subject.geometry))
        # ... and they sit on the base's own voxels: the round trip of the base's own labels
        native = base.ed_label if phase == "ED" else base.es_label
        for c in (1, 2, 3):
            both = np.sum((out.native_labels == c) & (native == c))
            assert 2 * both / (np.sum(out.native_labels == c) + np.sum(native == c)) > 0.95
        # the base's own image stack composited into the base gives the base back in the heart
        heart = native > 0
        image = base.ed_image if phase == "ED" else base.es_image
        np.testing.assert_allclose(out.native_image[heart].mean(), image[heart].mean(), rtol=0.05)


def test_decoded_stacks_go_back_from_the_decoders_probabilities(run: Run) -> None:
    """The batch carries the decoder's probabilities (uint8, before the clean-up) and the native labels
    are restored from them with the cleaned labels' corrections kept; ``soft_restore`` off (or a
    batch without them) restores the labels by nearest neighbour, as before."""
    batch = run.batch
    assert batch.probabilities is not None
    assert batch.probabilities.dtype == np.uint8
    assert batch.probabilities.shape == (len(batch.labels), 4, *batch.labels.shape[1:])
    # quantised softmax: shares sum to 255 within rounding
    assert np.abs(batch.probabilities.sum(axis=1, dtype=np.int32) - 255).max() <= 2
    offset = 0
    for _, severity, phase, z in batch.plan:
        out = run.subject.phases[severity][phase]
        probs = batch.probabilities[offset : offset + z]
        offset += z
        expected = restore_probabilities(probs, run.subject.geometry, out.labels)
        np.testing.assert_array_equal(out.native_labels, expected)
    # the base's own labels with specks, their one-hot as the probabilities, cleaned: the specks stay
    # gone and the heart comes back as the linear shares of the cleaned labels, not nearest's
    noisy, _, _ = replay(run)
    shares = (one_hot(noisy.labels) * 255).astype(np.uint8)
    cleaned = dataclasses.replace(noisy, labels=clean_stacks(noisy.labels, noisy.plan), probabilities=shares)
    soft, hard = (
        run.synth.assemble(b, None)[0].phases[1.0]["ED"]
        for b in (cleaned, dataclasses.replace(cleaned, probabilities=None))
    )
    z = batch.plan[0][3]
    geometry = run.subject.geometry
    np.testing.assert_array_equal(soft.native_labels, restore_labels(cleaned.labels[:z], geometry, "linear"))
    np.testing.assert_array_equal(hard.native_labels, restore_labels(cleaned.labels[:z], geometry))
    # (the fixture's NOR grid is 1.486 mm, so the two agree here; they part on coarser or finer grids:
    # tests/data/test_preprocess.py)
    run.synth.soft_restore = False
    try:
        plain = run.synth.make_labels(run.request)
    finally:
        run.synth.soft_restore = True
    assert plain.probabilities is None
    np.testing.assert_array_equal(plain.labels, batch.labels)  # the labels do not depend on it
    with pytest.raises(ValueError, match="probabilities of shape"):
        dataclasses.replace(batch, probabilities=batch.probabilities[:1])


def test_clean_up_runs_before_translation_and_can_be_switched_off(run: Run) -> None:
    # make_labels cleans what it decodes, so SPADE draws (and assemble writes) the cleaned labels
    run.synth.clean_labels = False
    try:
        raw = run.synth.make_labels(run.request)
    finally:
        run.synth.clean_labels = True
    cleaned = run.synth.make_labels(run.request)
    np.testing.assert_array_equal(cleaned.labels, clean_stacks(raw.labels, raw.plan))
    batch, _, _ = replay(run)
    z = batch.plan[0][3]
    assert topology_errors(batch.labels[:z]).islands[1] > 0
    assert sum(topology_errors(clean_stacks(batch.labels, batch.plan)[:z]).islands.values()) == 0
    assert Synthesizer.__init__.__kwdefaults__["clean_labels"] is True


def test_a_linear_label_vae_gets_linear_bases_and_outputs(phantom_root: Path) -> None:
    """Synthesis preprocesses base subjects and restores outputs the way the VAE's training labels
    were resampled (its config), so decoded crops meet the grid they were learned on."""
    synth = Synthesizer(LabelVAE(VAEConfig(label_interpolation="linear")), None, phantom_root)
    assert synth.label_interpolation == "linear"
    ref = synth.refs[0]
    loaded = synth._base(ref)
    np.testing.assert_array_equal(
        loaded.processed.ed_label, apply_labels(loaded.subject.ed_label, loaded.processed.geometry, "linear")
    )
    # a batch of the base's own linear crops comes back restored linearly on its grid
    labels = loaded.processed.ed_label
    batch = LabelBatch(
        SynthesisRequest(Group.HCM, n=1), [ref.subject_id], [(0, 1.0, "ED", len(labels))], labels
    )
    (subject,) = synth.assemble(batch, None)
    out = subject.phases[1.0]["ED"].native_labels
    np.testing.assert_array_equal(out, restore_labels(labels, loaded.processed.geometry, "linear"))
    assert not np.array_equal(out, restore_labels(labels, loaded.processed.geometry))  # not nearest's
    # the default (and every model saved before the setting) stays nearest
    assert Synthesizer(LabelVAE(VAEConfig()), None, phantom_root).label_interpolation == "nearest"


def test_biomarkers_are_over_the_class_length_and_body(run: Run) -> None:
    """Volumes over the scaled slice spacing, indices over the scaled body; with the base's own
    geometry (``scale_to_class`` off) the volumes are the factor smaller."""
    phases = run.subject.phases[1.0]
    base = run.subject.base
    height, weight = run.subject.body(1.0)
    expected = compute_biomarkers(phases["ED"].native_labels, phases["ES"].native_labels,
                                  run.subject.spacing(1.0), height=height, weight=weight)  # fmt: skip
    np.testing.assert_equal(run.subject.biomarkers[1.0].to_dict(), expected.to_dict())
    own = compute_biomarkers(phases["ED"].native_labels, phases["ES"].native_labels, base.spacing,
                             height=base.info.height, weight=base.info.weight)  # fmt: skip
    factor = run.subject.scale(1.0).slice_spacing
    volumes = ("lv_edv", "lv_esv", "rv_edv", "rv_esv", "myo_mass")
    assert any(getattr(own, v) > 0 for v in volumes)  # the untrained decoder draws something
    for v in volumes:
        assert getattr(expected, v) == pytest.approx(getattr(own, v) * factor)
    unscaled = dataclasses.replace(run.batch, scale=None)
    (plain,) = run.synth.assemble(unscaled, run.images)
    np.testing.assert_equal(plain.biomarkers[1.0].to_dict(), own.to_dict())
