"""Phantom versions: version 1 reproduces the phantom before issue 10 bit for bit, version 2 is
deterministic by seed, and the version travels to phantom.json and the default data cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cardiosynth.data.labels import Group
from cardiosynth.data.phantom import PHANTOM_CONTENT, PHANTOM_VERSION, check_phantom_version, generate_subject
from cardiosynth.data.phantom.generator import PhantomSubject, generate_dataset

# sha256 of the ED and ES label arrays (shape, then bytes) of subject (index, group) with seed 0,
# computed with the code of 8b0d488^ (the phantom before the coronary territories, issue 10's v1).
V1_LABEL_HASHES = {
    (2, Group.MINF): "1e66b49d3ee8ef1bf867f7ccfc6e75b6f52919ff0d28a9f7cb2debe9fa5daec4",
    (0, Group.NOR): "52f83dc592ada96bd9f99604e08a19012c34051c75277d990680204424df5474",
}


def _label_hash(subject: PhantomSubject) -> str:
    h = hashlib.sha256()
    for labels in (subject.ed_label, subject.es_label):
        h.update(str(labels.shape).encode())
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize(("index", "group"), list(V1_LABEL_HASHES))
def test_version_1_reproduces_the_phantom_before_issue_10(index: int, group: Group) -> None:
    subject = generate_subject(index, group, seed=0, version=1)
    assert _label_hash(subject) == V1_LABEL_HASHES[(index, group)]
    meta = subject.provenance()
    assert meta["phantom_version"] == 1
    assert meta["phantom_content"] == PHANTOM_CONTENT[1]
    if group is Group.MINF:
        assert meta["territory"] is None  # v1 infarcts lie anywhere


def test_version_2_is_the_default_and_deterministic_by_seed() -> None:
    a = generate_subject(2, Group.MINF, seed=0)
    b = generate_subject(2, Group.MINF, seed=0, version=2)
    assert PHANTOM_VERSION == 2
    assert a.params.version == b.params.version == 2
    assert _label_hash(a) == _label_hash(b)
    assert np.array_equal(a.ed_image, b.ed_image)
    assert _label_hash(a) != V1_LABEL_HASHES[(2, Group.MINF)]
    assert a.provenance()["territory"] in ("LAD", "LCx", "RCA")


@pytest.mark.parametrize("bad", [0, 3, -1, "2", 2.0, True])
def test_unknown_versions_are_refused_naming_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match="phantom version"):
        check_phantom_version(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=repr(bad).replace(".", r"\.")):
        generate_subject(0, Group.NOR, seed=0, version=bad)  # type: ignore[arg-type]


def test_dataset_manifest_records_its_version(tmp_path: Path) -> None:
    generate_dataset(tmp_path, n_subjects=5, seed=0, workers=1, version=1)
    manifest = json.loads((tmp_path / "phantom.json").read_text())
    assert (manifest["phantom_version"], manifest["phantom_content"]) == (1, PHANTOM_CONTENT[1])
    meta = json.loads((tmp_path / "training" / "patient001" / "phantom.json").read_text())
    assert (meta["phantom_version"], meta["phantom_content"]) == (1, PHANTOM_CONTENT[1])
