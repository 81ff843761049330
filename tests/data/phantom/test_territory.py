from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cardiosynth.data import default
from cardiosynth.data.acdc import Subject
from cardiosynth.data.labels import Group
from cardiosynth.data.phantom import PHANTOM_CONTENT, PHANTOM_VERSION, generate_subject
from cardiosynth.data.phantom.params import TERRITORY_EXTENTS, sample_infarct
from cardiosynth.data.preprocess import preprocess_subject
from cardiosynth.data.territory import TERRITORIES, TERRITORY_FREQUENCY, estimate_territory, wrap_degrees


def test_infarcts_are_drawn_in_their_territories_with_clinical_frequencies() -> None:
    rng = np.random.default_rng(5)
    draws = [sample_infarct(math.pi + 0.2, rng) for _ in range(4000)]
    counts = {t: sum(d.territory == t for d in draws) / len(draws) for t in TERRITORIES}
    for t in TERRITORIES:
        assert counts[t] == pytest.approx(TERRITORY_FREQUENCY[t], abs=0.03)
    for d in draws:
        assert d.territory is not None
        extent = TERRITORY_EXTENTS[d.territory]
        psi = wrap_degrees(math.degrees(math.pi + 0.2 - d.angle))  # degrees from the septum, + anterior
        lo, hi = extent.centre
        assert abs(wrap_degrees(psi - (lo + hi) / 2)) <= (hi - lo) / 2 + 1e-6
        assert extent.depth_start[0] <= d.depth_start <= extent.depth_start[1]
        assert 0.5 <= d.wall_kept <= 0.7
    # LAD infarcts reach the apex, RCA ones spare it
    assert all(d.depth_end >= 0.95 for d in draws if d.territory == "LAD")
    assert all(d.depth_end <= 0.8 for d in draws if d.territory == "RCA")


def test_same_seed_same_territory() -> None:
    a = sample_infarct(3.0, np.random.default_rng([0, 42]))
    b = sample_infarct(3.0, np.random.default_rng([0, 42]))
    assert a == b


def test_ground_truth_records_territory_and_version(phantom_root: Path) -> None:
    manifest = json.loads((phantom_root / "phantom.json").read_text())
    assert manifest["phantom_version"] == PHANTOM_VERSION == 2
    for subject in sorted((phantom_root / "training").iterdir()):
        meta = json.loads((subject / "phantom.json").read_text())
        assert meta["phantom_version"] == PHANTOM_VERSION
        if meta["group"] == "MINF":
            assert meta["territory"] in TERRITORIES
            assert meta["shape"]["infarct"]["territory"] == meta["territory"]
        else:
            assert meta["territory"] is None


@pytest.mark.slow
@pytest.mark.parametrize("index", [40, 43, 44])  # seed 0: an LAD, an RCA and an LCx infarct
def test_territory_estimated_from_labels_matches_the_ground_truth(index: int) -> None:
    subject = generate_subject(index, Group.MINF, seed=0)
    truth = subject.provenance()["territory"]
    assert truth in TERRITORIES
    s = Subject(
        subject_id=subject.subject_id,
        path=Path("."),
        info=subject.info,
        affine=subject.affine,
        ed_image=subject.ed_image.astype(np.float32),
        ed_label=subject.ed_label,
        es_image=subject.es_image.astype(np.float32),
        es_label=subject.es_label,
    )
    p = preprocess_subject(s)
    assert estimate_territory(p.ed_label, p.es_label).territory == truth


def test_default_data_folder_follows_the_phantom_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = default.default_data_dir()
    assert root.name == f"phantom-v{PHANTOM_CONTENT[PHANTOM_VERSION]}-seed{default.DEFAULT_SEED}"
    made: list[Path] = []

    def fake_generate(out: Path, n: int, seed: int, *, overwrite: bool = False) -> list[Path]:
        made.append(out)
        last = out / "training" / f"patient{n:03d}"
        last.mkdir(parents=True, exist_ok=True)
        (last / "Info.cfg").write_text("Group: NOR\n")
        (out / "phantom.json").write_text(json.dumps({"phantom_content": PHANTOM_CONTENT[PHANTOM_VERSION]}))
        return []

    monkeypatch.setattr("cardiosynth.data.phantom.generate_dataset", fake_generate)
    # a folder of the same name left by an older generator is regenerated, a current one reused
    (root / "training" / f"patient{default.DEFAULT_SUBJECTS:03d}").mkdir(parents=True)
    (root / "training" / f"patient{default.DEFAULT_SUBJECTS:03d}" / "Info.cfg").write_text("x")
    (root / "phantom.json").write_text(json.dumps({"phantom_content": "2.0"}))  # older code, same version
    assert default.default_data() == root
    assert made == [root]
    assert default.default_data() == root
    assert made == [root]
