"""What the SPADE stage says each stored file is: the ``kind`` the results list and the web page use."""

from __future__ import annotations

from cardiosynth.synthesis.output import base_file_names, file_names
from cardiosynth.workers.tasks import _describe


def test_synthetic_and_base_volumes_are_told_apart() -> None:
    image, label = file_names("HCM_000", 0.5, "ES")
    assert _describe(image) == {"kind": "image", "severity": "0.50", "phase": "ES"}
    assert _describe(label) == {"kind": "label", "severity": "0.50", "phase": "ES"}
    image, label = base_file_names("HCM_000", "ED")
    # the base NOR subject's own volumes carry no severity: a reader of kind image never takes them
    assert _describe(image) == {"kind": "base_image", "severity": None, "phase": "ED"}
    assert _describe(label) == {"kind": "base_label", "severity": None, "phase": "ED"}
    assert _describe("provenance.json")["kind"] == "provenance"
