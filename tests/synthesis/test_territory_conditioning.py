"""MINF synthesis conditioned on the infarct territory: request field, statistics per territory
(estimated from labels), pooled fallback, seeded default draw, round trip, CLI and API fields."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from cardiosynth.data.acdc import SubjectInfo, frame_paths
from cardiosynth.data.labels import Group
from cardiosynth.data.nifti import save_volume
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import LabelBatch, SynthesisRequest, Synthesizer
from cardiosynth.synthesis.equalise import equalise_lv
from cardiosynth.synthesis.stages import encode_stacks
from cardiosynth.synthesis.stats import ClassStats, compute_class_stats
from tests.data.test_territory import ring_heart

# Constructed MINF subjects: (territory angle from the septum, septal array angle). Three LAD and
# three RCA (enough for statistics of their own), one LCx (too few: pooled).
MINF_CASES = {
    "patient901": (60.0, math.pi),
    "patient902": (45.0, 2.8),
    "patient903": (75.0, -2.9),
    "patient904": (-60.0, math.pi),
    "patient905": (-45.0, 2.8),
    "patient906": (-75.0, -2.9),
    "patient907": (180.0, math.pi),
}
EXPECTED = {
    **dict.fromkeys(["patient901", "patient902", "patient903"], "LAD"),
    **dict.fromkeys(["patient904", "patient905", "patient906"], "RCA"),
    "patient907": "LCx",
}


def _write_minf(folder: Path, psi: float, septal: float) -> None:
    ed, es = ring_heart(septal, psi)
    folder.mkdir(parents=True)
    info = SubjectInfo(ed=1, es=10, group=Group.MINF, height=170.0, weight=70.0, nb_frames=25)
    (folder / "Info.cfg").write_text(info.to_cfg())
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    for frame, stack in ((1, ed), (10, es)):
        labels = np.moveaxis(stack, 0, 2)  # (Z, A, B) -> (X, Y, Z)
        image_path, label_path = frame_paths(folder, frame)
        save_volume(image_path, (labels * 50).astype(np.int16), affine)
        save_volume(label_path, labels, affine)


@pytest.fixture(scope="module")
def data(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom fixture's NOR subject and the constructed MINF subjects (the phantom's own MINF
    subject left out, so that the territory counts are known)."""
    root = tmp_path_factory.mktemp("territorydata") / "training"
    root.mkdir()
    for subject in sorted((phantom_root / "training").iterdir()):
        if "Group: NOR" in (subject / "Info.cfg").read_text():
            shutil.copytree(subject, root / subject.name)
    for name, (psi, septal) in MINF_CASES.items():
        _write_minf(root / name, psi, septal)
    return root.parent


@pytest.fixture(scope="module")
def vae() -> LabelVAE:
    torch.manual_seed(0)
    return LabelVAE(VAEConfig()).eval()


def _synth(data: Path, vae: LabelVAE, cache: Path | None = None) -> Synthesizer:
    return Synthesizer(vae, None, data, model_versions={"vae": "t0"}, cache_dir=cache)


def test_request_takes_a_territory_for_minf_only() -> None:
    assert SynthesisRequest(Group.MINF, territory="lad").territory == "LAD"
    assert SynthesisRequest(Group.MINF).territory is None
    with pytest.raises(ValueError, match="unknown territory 'LM'"):
        SynthesisRequest(Group.MINF, territory="LM")
    with pytest.raises(ValueError, match="MINF only"):
        SynthesisRequest(Group.HCM, territory="LAD")
    assert SynthesisRequest(Group.MINF, territory="RCA").provenance()["territory"] == "RCA"


def test_label_batch_round_trip_keeps_the_territory() -> None:
    request = SynthesisRequest(Group.MINF, n=2, territory="LCx")
    labels = np.zeros((2, 3, 3), np.uint8)
    batch = LabelBatch(request, ["p1", "p1"], [(0, 1.0, "ED", 1), (1, 1.0, "ED", 1)], labels, ["LCx", None])
    again = LabelBatch.from_bytes(batch.to_bytes())
    assert again.request == request
    assert again.territories == ["LCx", None]


def test_territories_are_estimated_from_the_labels(data: Path, vae: LabelVAE) -> None:
    synth = _synth(data, vae)
    assert synth.minf_territories() == EXPECTED
    assert synth.territory_frequencies() == pytest.approx({"LAD": 3 / 7, "LCx": 1 / 7, "RCA": 3 / 7})


def test_statistics_per_territory_with_pooled_fallback(
    data: Path, vae: LabelVAE, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    synth = _synth(data, vae, cache=tmp_path)
    lad = synth.class_stats(Group.MINF, "ED", territory="LAD")
    rca = synth.class_stats(Group.MINF, "ED", territory="RCA")
    pooled = synth.class_stats(Group.MINF, "ED")
    assert (lad.n_subjects, rca.n_subjects, pooled.n_subjects) == (3, 3, 7)
    # known answer: the statistics of exactly the subjects of that territory
    for stats, territory in ((lad, "LAD"), (rca, "RCA")):
        refs = [r for r in sources.scan(data) if EXPECTED.get(r.subject_id) == territory]
        stacks = [sources.load(r).processed.ed_label for r in refs]
        encoded = encode_stacks(vae, stacks)
        latents = np.stack([equalise_lv(z, s, stats.ns) for z, s in zip(encoded, stacks, strict=True)])
        assert np.array_equal(stats.mean, compute_class_stats(latents, "MINF", "ED").mean)
    with caplog.at_level(logging.WARNING, logger="cardiosynth.synthesis.engine"):
        lcx = synth.class_stats(Group.MINF, "ED", territory="LCx")
    assert lcx.n_subjects == 7
    assert np.array_equal(lcx.mean, pooled.mean)
    assert "territory LCx" in caplog.text
    assert "pooled" in caplog.text
    # the cache key names the territory: separate artefacts, read back by a fresh synthesizer
    names = sorted(p.name for p in tmp_path.rglob("*.npz"))
    assert {"MINF-LAD_ED.npz", "MINF-RCA_ED.npz", "MINF_ED.npz"} <= set(names)
    assert not any("LCx" in n for n in names)
    again = _synth(data, vae, cache=tmp_path).class_stats(Group.MINF, "ED", territory="LAD")
    assert np.array_equal(again.mean, lad.mean)
    with pytest.raises(ValueError, match="MINF only"):
        synth.class_stats(Group.NOR, "ED", territory="LAD")


def test_default_territory_is_drawn_seeded_with_the_observed_frequencies(data: Path, vae: LabelVAE) -> None:
    synth = _synth(data, vae)
    request = SynthesisRequest(Group.MINF, n=100, seed=3)
    drawn = synth.subject_territories(request)
    assert drawn == synth.subject_territories(request)
    assert drawn != synth.subject_territories(SynthesisRequest(Group.MINF, n=100, seed=4))
    shares = {t: drawn.count(t) / len(drawn) for t in ("LAD", "LCx", "RCA")}
    assert shares == pytest.approx({"LAD": 3 / 7, "LCx": 1 / 7, "RCA": 3 / 7}, abs=0.12)
    assert synth.subject_territories(SynthesisRequest(Group.MINF, n=3, territory="RCA")) == ["RCA"] * 3
    assert synth.subject_territories(SynthesisRequest(Group.HCM, n=2)) == [None, None]


def test_make_labels_uses_the_territory_statistics(
    data: Path, vae: LabelVAE, monkeypatch: pytest.MonkeyPatch
) -> None:
    synth = _synth(data, vae)
    calls: list[tuple[Group, str | None]] = []
    original = synth.class_stats

    def recording(pathology: Group, phase: str, ns: int = 32, territory: str | None = None) -> ClassStats:
        calls.append((pathology, territory))
        return original(pathology, phase, ns, territory)

    monkeypatch.setattr(synth, "class_stats", recording)
    batches = {
        t: synth.make_labels(SynthesisRequest(Group.MINF, n=2, seed=1, territory=t, phases=("ED",)))
        for t in ("LAD", "RCA", "LCx")
    }
    assert batches["LAD"].territories == ["LAD", "LAD"]
    assert batches["LCx"].territories == [None, None]  # pooled: recorded as such
    # In order of first use (the sampling calibration asks for the same statistics again).
    assert list(dict.fromkeys(calls)) == [(Group.MINF, "LAD"), (Group.MINF, "RCA"), (Group.MINF, "LCx")]
    subjects = synth.assemble(batches["RCA"], None)
    assert [s.territory for s in subjects] == ["RCA", "RCA"]


def test_cli_and_api_take_the_territory() -> None:
    from cardiosynth.cli import build_parser
    from cardiosynth.gateway.schemas import SynthesizeRequest

    args = build_parser().parse_args(
        ["synthesize", "--pathology", "MINF", "--territory", "LCx", "--out", "x"]
    )
    assert args.territory == "LCx"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synthesize", "--pathology", "MINF", "--territory", "LM", "--out", "x"])
    assert SynthesizeRequest(pathology="MINF", n=1, territory="RCA").territory == "RCA"
    with pytest.raises(pydantic.ValidationError, match="MINF only"):
        SynthesizeRequest(pathology="HCM", n=1, territory="RCA")
    with pytest.raises(pydantic.ValidationError):
        SynthesizeRequest(pathology="MINF", n=1, territory="LM")  # type: ignore[arg-type]
