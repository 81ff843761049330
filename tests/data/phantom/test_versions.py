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


# Version 2 at content PHANTOM_CONTENT[2]: sha256 of the label arrays and of the image arrays of
# subject (index, group) of a 5-subject data set with seed 0 (as generate_dataset draws it). A change
# of either is a change of content: bump the content version (the default data cache is keyed by
# it) and re-pin; an optimisation must leave both.
V2_CONTENT = "2.6"
V2_SET = 5
V2_HASHES = {
    (2, Group.MINF): (
        "231c0e1d9c12afed53bf3b3988012697dec13ecda1c7ed7037574b7ef0f44bb6",
        "1fa21c824a51b2a60348944db69e88d01a39d50833e55e1bdbb0c8a1bebbcaae",
    ),
    (3, Group.NOR): (
        "ac0c71a97aa7dd512a6d98dd2f51ec39958ae4c71bee86f7bdc95f68539fd3eb",
        "0b4aeb1d6074960b248e6776bada148dced59c08cdffdfc45e4d7f05267cec53",
    ),
}


def _hash(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _label_hash(subject: PhantomSubject) -> str:
    return _hash(subject.ed_label, subject.es_label)


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


@pytest.mark.parametrize(("index", "group"), list(V2_HASHES))
def test_version_2_content_is_pinned(index: int, group: Group) -> None:
    subject = generate_subject(index, group, seed=0, version=2, n_subjects=V2_SET)
    assert PHANTOM_CONTENT[2] == V2_CONTENT, "content bumped: re-pin V2_HASHES for it"
    assert (_label_hash(subject), _hash(subject.ed_image, subject.es_image)) == V2_HASHES[(index, group)]


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
