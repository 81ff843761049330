"""Equalisation over the LV extent (synthesis/equalise.py): known answers on latents, and through the
engine, that a slice without an LV cavity never enters the class statistics or a synthetic LV."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiosynth.data.acdc import frame_paths, read_subject
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.data.nifti import save_volume
from cardiosynth.data.preprocess import apex_first
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, extent_dither, label_stack
from cardiosynth.synthesis.equalise import (
    dither_pair,
    equalise,
    equalise_lv,
    extent_offsets,
    lv_extent,
    restore_lv,
    target_extent,
)
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

ATRIAL = 10.0  # latent value of a slice without LV: must never appear blended into the LV


def _stack(pattern: str) -> np.ndarray:
    """A label stack, one slice per character: 'a' atrium (RV only), 'L' LV ring, 'c' apical cap."""
    out = np.zeros((len(pattern), 8, 8), np.uint8)
    for k, c in enumerate(pattern):
        out[k, 0, 0] = 1
        if c in "Lc":
            out[k, 2:6, 2:6] = LV_MYOCARDIUM
        if c == "L":
            out[k, 3:5, 3:5] = LV_CAVITY
    return out


def _latents(pattern: str) -> np.ndarray:
    """Latents that encode anatomical position: 0..1 from the first to the last LV-cavity slice,
    ATRIAL elsewhere."""
    lv = [k for k, c in enumerate(pattern) if c == "L"]
    x = np.full((len(pattern), 2), ATRIAL)
    x[lv, 0] = np.linspace(0, 1, len(lv))
    x[lv, 1] = -np.linspace(0, 1, len(lv))
    return x


def test_lv_extent() -> None:
    assert lv_extent(_stack("aLLLLc")) == (1, 4)
    assert lv_extent(_stack("LLL")) == (0, 2)
    assert lv_extent(_stack("aac")) == (0, 2)  # no LV cavity: the whole stack
    # With the apical cap: every slice with LV myocardium or cavity.
    assert lv_extent(_stack("aLLLLc"), cap=True) == (1, 5)
    assert lv_extent(_stack("aLLLLcca"), cap=True) == (1, 6)
    assert lv_extent(_stack("LLL"), cap=True) == (0, 2)
    assert lv_extent(_stack("aac"), cap=True) == (2, 2)
    assert lv_extent(_stack("aaa"), cap=True) == (0, 2)  # no LV at all: the whole stack
    with pytest.raises(ValueError, match="label stack"):
        lv_extent(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("pattern", ["aLLLLc", "LLLLLLc", "aaLLLL", "LLLLL", "aLLLLLLLLLcc"])
def test_subjects_equalise_by_anatomy_not_stack_position(pattern: str) -> None:
    """Known answer: stacks of one LV profile equalise to the same rows whatever their atrial and
    post-apical slices; the stack-position equalisation blends the atrial latent into the base."""
    eq = equalise_lv(_latents(pattern), _stack(pattern), 9)
    expected = np.stack([np.linspace(0, 1, 9), -np.linspace(0, 1, 9)], axis=1)
    assert np.allclose(eq, expected)
    assert np.abs(eq).max() <= 1.0  # no atrial latent inside the LV
    if pattern[0] != "L" or pattern[-1] != "L":
        assert not np.allclose(equalise(_latents(pattern), 9), expected)  # what the old one did


def test_the_apical_cap_is_equalised_with_the_lv_when_asked() -> None:
    """Known answer: with ``cap`` the cap slice's latent is the last equalised row (position 1) and the
    last cavity slice moves inward; without, the cap is left out."""
    pattern = "aLLLc"
    x = _latents(pattern)
    x[4] = (2.0, -2.0)  # the cap: a latent of its own
    with_cap = equalise_lv(x, _stack(pattern), 9, cap=True)
    assert np.allclose(with_cap[-1], (2.0, -2.0))
    assert np.allclose(with_cap[:, 0], np.interp(np.linspace(0, 1, 9), np.linspace(0, 1, 4), [0, 0.5, 1, 2]))
    assert np.allclose(equalise_lv(x, _stack(pattern), 9)[-1], (1.0, -1.0))


def test_restore_carries_the_base_slices_outside_the_lv() -> None:
    base = _latents("aaLLLLLcc")
    synthetic = np.stack([np.linspace(0, 1, 32), np.linspace(5, 6, 32)], axis=1)
    out = restore_lv(synthetic, base, lv_extent(_stack("aaLLLLLcc")))
    assert out.shape == base.shape
    assert np.array_equal(out[:2], base[:2])  # carried, not blended
    assert np.array_equal(out[7:], base[7:])
    assert np.allclose(out[2:7, 0], np.linspace(0, 1, 5))  # the synthetic LV fills the base's extent
    assert np.allclose(out[2:7, 1], np.linspace(5, 6, 5))
    with pytest.raises(ValueError, match="extent"):
        restore_lv(synthetic, base, (3, 9))
    with pytest.raises(ValueError, match="one slice count"):
        equalise_lv(base, _stack("aL"), 4)


def test_extent_offsets_measure_the_descent_of_the_lv_from_its_ed_extent() -> None:
    ed, es = _stack("aLLLLLLLLLLc"), _stack("aaaLLLLLLLLc")  # ED cavity slices 1-10, ES 3-10
    assert extent_offsets(ed, ed) == (0.0, 0.0)
    assert extent_offsets(ed, es) == pytest.approx((0.2, 0.0))
    assert extent_offsets(ed, _stack("aLLLLLLLLLcc")) == pytest.approx((0.0, -0.1))
    with pytest.raises(ValueError, match="one grid"):
        extent_offsets(ed, _stack("aLL"))
    # With the cap the ED extent is 11 slices (1-11), and a cap that stays put does not move the end.
    assert extent_offsets(ed, es, cap=True) == pytest.approx((2 / 11, 0.0))
    assert extent_offsets(ed, _stack("aLLLLLLLLLcc"), cap=True) == pytest.approx((0.0, 0.0))


def test_target_extent_moves_from_the_base_placement_to_the_class_placement() -> None:
    ed_extent, base = (1, 10), (0.2, 0.0)  # the base descends 2 slices at ES
    assert target_extent(ed_extent, base, (0.0, 0.0), 0.0, 12) == (3, 10)  # severity 0: the base's own
    assert target_extent(ed_extent, base, (0.0, 0.0), 0.5, 12) == (2, 10)
    assert target_extent(ed_extent, base, (0.0, 0.0), 1.0, 12) == (1, 10)  # a class that does not descend
    assert target_extent(ed_extent, (0.0, 0.0), (-0.5, 0.5), 1.0, 12) == (0, 11)  # kept on the grid
    assert target_extent((4, 4), (0.0, 0.0), (0.5, -2.0), 1.0, 6) == (4, 4)  # at least one slice
    with pytest.raises(ValueError, match="severity"):
        target_extent(ed_extent, base, (0.0, 0.0), 1.5, 12)
    with pytest.raises(ValueError, match="class offsets"):
        target_extent(ed_extent, base, (0.0, 0.0, 0.0), 1.0, 12)  # type: ignore[arg-type]


def test_dithered_extents_keep_the_class_mean_placement_in_whole_slices() -> None:
    # A class whose base descends 0.03 ED lengths: 0.3 of a slice on a 10-slice LV. The nearest slice
    # loses it in every subject; the dither moves 30 % of the subjects by one whole slice.
    ed_extent, cls = (1, 10), (0.03, 0.0)
    assert target_extent(ed_extent, (0.0, 0.0), cls, 1.0, 12) == (1, 10)
    rng = np.random.default_rng(0)
    firsts = np.array(
        [target_extent(ed_extent, (0.0, 0.0), cls, 1.0, 12, dither_pair(rng))[0] for _ in range(4000)]
    )
    assert set(firsts.tolist()) == {1, 2}  # whole slices, the nearest two only
    assert firsts.mean() - 1 == pytest.approx(0.3, abs=0.025)
    assert target_extent(ed_extent, (0.0, 0.0), cls, 1.0, 12, (0.69, 0.0)) == (1, 10)
    assert target_extent(ed_extent, (0.0, 0.0), cls, 1.0, 12, (0.71, 0.0)) == (2, 10)
    # Antithetic pairs (the same draws reflected): each pair's mean move within half a slice of 0.3.
    for seed in range(200):
        u = dither_pair(np.random.default_rng(seed))
        v = dither_pair(np.random.default_rng(seed), antithetic=True)
        assert v == pytest.approx((1.0 - u[0], 1.0 - u[1]))
        pair = [target_extent(ed_extent, (0.0, 0.0), cls, 1.0, 12, d)[0] for d in (u, v)]
        assert abs(np.mean(pair) - 1.3) <= 0.5
    # The base's own placement (severity 0, a whole move up to floating point) whatever the draw.
    base = (2 / 10, 0.0)
    for u in ((0.0, 0.0), (0.999999, 0.999999), (0.5, 0.5)):
        assert target_extent(ed_extent, base, cls, 0.0, 12, u) == (3, 10)
    # One draw per subject: its extent moves one way as the severity grows.
    u = (0.9, 0.2)
    firsts = [target_extent(ed_extent, base, (-0.25, 0.0), a, 12, u)[0] for a in np.linspace(0, 1, 11)]
    assert firsts == sorted(firsts, reverse=True)
    with pytest.raises(ValueError, match="dither"):
        target_extent(ed_extent, base, cls, 1.0, 12, (1.0, 0.0))
    with pytest.raises(ValueError, match="dither"):
        target_extent(ed_extent, base, cls, 1.0, 12, (0.5,))  # type: ignore[arg-type]


# --- through the engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae() -> LabelVAE:
    """Untrained, its weights scaled up: at initialisation every slice encodes to nearly the same
    latent (differences of 1e-7), which would hide a blend."""
    torch.manual_seed(0)
    vae = LabelVAE(VAEConfig()).eval()
    with torch.no_grad():
        for p in vae.parameters():
            if p.ndim > 1:
                p.mul_(2.0)
    return vae


def _with_blank_base_slice(subject_dir: Path, out_dir: Path) -> None:
    """A copy of a subject with one empty slice added above its base (the crop's centre and the
    other slices unchanged)."""
    subject = read_subject(subject_dir)
    out_dir.mkdir(parents=True)
    (out_dir / "Info.cfg").write_text(subject.info.to_cfg())
    at_end = apex_first(subject.ed_label)  # base is the last native slice when the apex comes first
    for frame, image, label in (
        (subject.info.ed, subject.ed_image, subject.ed_label),
        (subject.info.es, subject.es_image, subject.es_label),
    ):
        blank_i, blank_l = np.zeros_like(image[:, :, :1]), np.zeros_like(label[:, :, :1])
        parts_i, parts_l = (
            ((image, blank_i), (label, blank_l)) if at_end else ((blank_i, image), (blank_l, label))
        )
        image_path, label_path = frame_paths(out_dir, frame)
        save_volume(image_path, np.concatenate(parts_i, axis=2), subject.affine)
        save_volume(label_path, np.concatenate(parts_l, axis=2), subject.affine)


def _with_apical_cap(subject_dir: Path, out_dir: Path) -> None:
    """A copy of a subject with a myocardial cap slice added below its apex at both phases: the
    apical-most slice with an LV cavity, its LV all myocardium and nothing else."""
    subject = read_subject(subject_dir)
    out_dir.mkdir(parents=True)
    (out_dir / "Info.cfg").write_text(subject.info.to_cfg())
    first = apex_first(subject.ed_label)
    for frame, image, label in (
        (subject.info.ed, subject.ed_image, subject.ed_label),
        (subject.info.es, subject.es_image, subject.es_label),
    ):
        cavity = np.flatnonzero((label == LV_CAVITY).any(axis=(0, 1)))
        apex = int(cavity[0] if first else cavity[-1])
        lv = np.isin(label[:, :, apex], (LV_MYOCARDIUM, LV_CAVITY))
        cap = np.where(lv, LV_MYOCARDIUM, 0).astype(label.dtype)
        at = apex if first else apex + 1
        image_path, label_path = frame_paths(out_dir, frame)
        save_volume(image_path, np.insert(image, at, image[:, :, apex], axis=2), subject.affine)
        save_volume(label_path, np.insert(label, at, cap, axis=2), subject.affine)


@pytest.fixture(scope="module")
def capped(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's NOR subject (its stack ends in a cap slice) with a blank slice above its base, and
    its HCM subject twice (as it is, and with a blank slice above the base), each with a cap slice
    added below its last LV cavity slice."""
    work = tmp_path_factory.mktemp("capwork")
    root = tmp_path_factory.mktemp("capdata") / "training"
    root.mkdir(parents=True)
    for p in sorted((phantom_root / "training").iterdir()):
        group = (p / "Info.cfg").read_text()
        if "Group: NOR" in group:
            _with_blank_base_slice(p, root / p.name)
        elif "Group: HCM" in group:
            _with_apical_cap(p, root / p.name)
            _with_apical_cap(p, work / p.name)
            _with_blank_base_slice(work / p.name, root / "patient903")
    return root.parent


@pytest.fixture(scope="module")
def data(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's NOR subject, and its HCM subject twice: as it is, and with a blank slice above
    the base."""
    root = tmp_path_factory.mktemp("lvdata") / "training"
    root.mkdir(parents=True)
    for p in sorted((phantom_root / "training").iterdir()):
        group = (p / "Info.cfg").read_text()
        if "Group: NOR" in group or "Group: HCM" in group:
            shutil.copytree(p, root / p.name)
    hcm = next(p for p in sorted(root.iterdir()) if "Group: HCM" in (p / "Info.cfg").read_text())
    _with_blank_base_slice(hcm, root / "patient903")
    return root.parent


def test_class_statistics_ignore_slices_without_lv(data: Path, vae: LabelVAE, tmp_path: Path) -> None:
    """Known answer: two subjects with the same heart, one with an extra slice above the base, give
    class statistics equal to the one heart's LV-extent equalised latents (before the fix, stack
    position blended the blank slice's latent into the basal rows of the class mean)."""
    synth = Synthesizer(vae, None, data, model_versions={"vae": "t"}, cache_dir=tmp_path)
    stats = synth.class_stats(Group.HCM, "ED")
    assert stats.n_subjects == 2
    loaded = [sources.load(r) for r in sources.by_group(synth.refs, Group.HCM)]
    stacks = [x.processed.ed_label for x in loaded]
    assert sorted(len(s) for s in stacks)[1] == sorted(len(s) for s in stacks)[0] + 1
    original = min(stacks, key=len)
    (z,) = encode_stacks(vae, [original])
    assert np.allclose(stats.mean, equalise_lv(z, original, stats.ns), atol=1e-5)
    by_position = np.mean([equalise(e, stats.ns) for e in encode_stacks(vae, stacks)], axis=0)
    assert not np.allclose(stats.mean, by_position, atol=1e-4)  # what stack position gave


def test_the_apical_cap_option_takes_statistics_over_the_cap(
    capped: Path, vae: LabelVAE, tmp_path: Path
) -> None:
    """Known answer: with ``apical_cap`` the class statistics are the LV equalised with its cap, cached
    under a key of their own (the cavity's statistics in the same cache stay the cavity's), and the
    calibrations fitted over them are keyed apart."""
    data = capped
    with_cap_synth = Synthesizer(
        vae, None, data, model_versions={"vae": "t"}, cache_dir=tmp_path, apical_cap=True
    )
    cavity = Synthesizer(vae, None, data, model_versions={"vae": "t"}, cache_dir=tmp_path)
    loaded = [sources.load(r) for r in sources.by_group(cavity.refs, Group.HCM)]
    original = min((x.processed.ed_label for x in loaded), key=len)
    assert lv_extent(original, cap=True) != lv_extent(original)  # the fixture's HCM has a cap slice
    (z,) = encode_stacks(vae, [original])
    with_cap = with_cap_synth.class_stats(Group.HCM, "ED")
    without = cavity.class_stats(Group.HCM, "ED")
    assert np.allclose(with_cap.mean, equalise_lv(z, original, with_cap.ns, cap=True), atol=1e-5)
    assert np.allclose(without.mean, equalise_lv(z, original, without.ns), atol=1e-5)
    assert not np.allclose(with_cap.mean, without.mean, atol=1e-4)
    again = Synthesizer(vae, None, data, model_versions={"vae": "t"}, cache_dir=tmp_path, apical_cap=True)
    assert np.array_equal(again.class_stats(Group.HCM, "ED").mean, with_cap.mean)  # from the cache
    assert with_cap_synth._sampling_provenance(Group.HCM, None, cavity.refs) != cavity._sampling_provenance(
        Group.HCM, None, cavity.refs
    )


@pytest.mark.parametrize("cap", [False, True])
def test_synthetic_stacks_keep_the_base_slices_outside_its_lv(
    capped: Path, vae: LabelVAE, cap: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each synthetic phase goes into the base's LV extent moved by the class's offsets, and the base's
    own slices outside it are decoded as they are; on a base with an apical cap slice, with
    ``apical_cap`` the extent runs to the cap, without it to the last cavity slice."""
    import cardiosynth.synthesis.engine as engine

    placed: list[tuple[int, int]] = []

    def spy(equalised: np.ndarray, base_latents: np.ndarray, extent: tuple[int, int]) -> np.ndarray:
        placed.append(extent)
        return restore_lv(equalised, base_latents, extent)

    monkeypatch.setattr(engine, "restore_lv", spy)
    # Without the clean-up, which edits whole 3D stacks (its own tests cover it), and the calibrations,
    # whose fits place subjects of their own.
    plain = {"calibrate_sampling": False, "calibrate_motion": False, "calibrate_contraction": False}
    synth = Synthesizer(
        vae, None, capped, model_versions={"vae": "t"}, clean_labels=False, apical_cap=cap, **plain
    )
    nor = sources.by_group(synth.refs, Group.NOR)[0].subject_id
    batch = synth.make_labels(
        SynthesisRequest(Group.HCM, n=1, seed=0, severities=(1.0,), base_subjects=(nor,))
    )
    base = synth._base(synth._ref(nor)).processed
    ed_stack = label_stack(base, "ED")
    offset = 0
    checked = 0
    expected_extents = []
    for _, severity, phase, z_count in batch.plan:
        stack = label_stack(base, phase)
        # Placed where the class's LV lies at this phase, relative to the base's ED extent.
        first, last = target_extent(
            lv_extent(ed_stack, cap),
            extent_offsets(ed_stack, stack, cap),
            synth.class_stats(Group.HCM, phase).extent_offset,
            severity,
            z_count,
            extent_dither(0, 0),  # the request's seed, subject 0
        )
        expected_extents.append((first, last))
        outside = [k for k in range(z_count) if not first <= k <= last]
        (own,) = encode_stacks(vae, [stack])
        labels = batch.labels[offset : offset + z_count]
        if outside:
            expected = decode_latents(vae, own[outside], logit_bias=synth.logit_bias())
            assert np.array_equal(labels[outside], expected)
            checked += len(outside)
        offset += z_count
    assert checked > 0  # the fixture's base has slices without an LV cavity (or, with the cap, any LV)
    assert placed == expected_extents
    # The base's ED cap slice (its last slice with LV, after its last cavity slice) is synthetic with
    # the cap, the base's own without.
    cap_slice = lv_extent(ed_stack, cap=True)[1]
    assert cap_slice == lv_extent(ed_stack)[1] + 1
    assert (placed[0][0] <= cap_slice <= placed[0][1]) == cap


def test_the_engine_places_each_subject_with_its_own_dither(
    data: Path, vae: LabelVAE, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every synthetic phase goes into the extent drawn with its subject's dither (one per subject,
    shared by its phases and severities); with ``dither_extents`` off, the nearest slice."""
    import cardiosynth.synthesis.engine as engine

    calls: list[tuple[float, tuple[float, float] | None]] = []

    def spy(*args: object) -> tuple[int, int]:
        calls.append((float(args[3]), args[5] if len(args) > 5 else None))  # type: ignore[arg-type]
        return target_extent(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "target_extent", spy)
    request = SynthesisRequest(Group.HCM, n=3, seed=5, severities=(0.5, 1.0))
    # Only the request's own placements (the calibrations' fits make subjects of their own).
    plain = {"calibrate_sampling": False, "calibrate_motion": False, "calibrate_contraction": False}
    Synthesizer(vae, None, data, model_versions={"vae": "t"}, **plain).make_labels(request)
    placed = [d for _, d in calls]
    # 3 subjects x 2 phases x 2 severities, in plan order.
    assert placed == [extent_dither(5, i) for i in range(3) for _ in range(4)]
    assert len(set(placed)) == 3
    calls.clear()
    Synthesizer(vae, None, data, model_versions={"vae": "t"}, dither_extents=False, **plain).make_labels(
        request
    )
    assert [d for _, d in calls] == [None] * 12
    # The sampling calibration's end points are placed the same way, under a key of their own.
    on = Synthesizer(vae, None, data, model_versions={"vae": "t"})
    off = Synthesizer(vae, None, data, model_versions={"vae": "t"}, dither_extents=False)
    assert on._sampling_provenance(Group.HCM, None, on.refs) != off._sampling_provenance(
        Group.HCM, None, off.refs
    )
