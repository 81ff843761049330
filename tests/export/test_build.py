from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cardiosynth.cli import main
from cardiosynth.data.labels import Group
from cardiosynth.export.spec import DatasetSpec, load_spec, parse_spec, request_options
from tests.export.conftest import SPEC, build_args


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_makes_exactly_the_requested_subjects(built: Path, export_data: Path) -> None:
    card = json.loads((built / "dataset.json").read_text())
    subjects = sorted(p.name for p in (built / "synthetic").iterdir())
    assert subjects == ["DCM_000", "HCM_000", "HCM_001"]
    assert [g["n"] for g in card["made"]["groups"]] == [2, 1]
    assert card["requested"] == [
        {"pathology": "HCM", "n": 2, "severity": [0.5, 1.0]},
        {"pathology": "DCM", "n": 1, "severity": [0.5, 1.0]},
    ]
    assert card["models"] == {"vae": "t0", "spade": "t0"}
    hcm_severities = []
    for name in subjects:
        record = json.loads((built / "synthetic" / name / "provenance.json").read_text())
        assert record["name"] == name
        assert record["base_subject"] in {"patient004", "patient901"}  # the two NOR subjects
        files = sorted(p.name for p in (built / "synthetic" / name).glob("*.nii.gz"))
        if name.startswith("HCM"):
            assert len(record["severities"]) == 1  # a range: one severity drawn per subject
            hcm_severities.append(record["severities"][0])
            assert len(files) == 4  # ED/ES x image/label
        else:
            assert record["severities"] == [0.5, 1.0]
            assert record["correlation"] == "latent"  # the group's own option
            assert len(files) == 8
    assert all(0.5 <= s <= 1.0 for s in hcm_severities)
    assert len(set(hcm_severities)) > 1  # drawn per subject, not one value for all
    # include_real: the real training subjects, ACDC layout, all of them
    assert sorted(p.name for p in (built / "real").iterdir()) == sorted(
        p.name for p in (export_data / "training").iterdir()
    )
    assert card["made"]["real_included"] == 6
    assert set(card["biomarkers"]) >= {"HCM", "DCM", "NOR"}
    finite = [
        v
        for name in subjects[1:]
        for b in json.loads((built / "synthetic" / name / "provenance.json").read_text())[
            "biomarkers"
        ].values()
        if (v := b["lv_ef"]) is not None and v == v
    ]
    assert card["biomarkers"]["HCM"]["synthetic"]["lv_ef"]["n"] == len(finite)
    assert card["biomarkers"]["HCM"]["real"]["lv_ef"]["n"] == 1
    assert (built / "biomarkers.png").stat().st_size > 10_000
    assert (built / "spec.yaml").read_text().startswith(SPEC)
    readme = (built / "README.md").read_text()
    assert "| 0 | HCM | [0.5, 1.0] | 2 | 2 |" in readme


def test_card_checksums_cover_every_file(built: Path) -> None:
    card = json.loads((built / "dataset.json").read_text())
    files = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    assert set(card["files"]) == files - {"dataset.json", "README.md", "SHA256SUMS"}
    for rel, digest in card["files"].items():
        assert _sha(built / rel) == digest, rel
    sums = dict(reversed(line.split("  ", 1)) for line in (built / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == files - {"SHA256SUMS"}
    assert sums["dataset.json"] == _sha(built / "dataset.json")


def test_build_refuses_a_non_empty_out_and_a_bad_spec(
    built: Path, export_data: Path, export_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    before = (built / "dataset.json").read_bytes()
    assert main(build_args(spec, built, export_data, export_models)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (built / "dataset.json").read_bytes() == before

    spec.write_text(SPEC.replace("severity: [0.5, 1.0]", "sevrity: [0.5, 1.0]"), encoding="utf-8")
    assert main(build_args(spec, tmp_path / "out", export_data, export_models)) == 2
    err = capsys.readouterr().err
    assert "pathologies.0.sevrity: unknown field" in err
    assert not (tmp_path / "out").exists()

    spec.write_text(SPEC.replace("pathology: HCM", "pathology: XYZ"), encoding="utf-8")
    assert main(build_args(spec, tmp_path / "out", export_data, export_models)) == 2
    assert "pathologies.0.pathology" in capsys.readouterr().err


def _spec(**top: object) -> dict[str, object]:
    return {"pathologies": [{"pathology": "HCM", "n": 2}], **top}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"pathologies": [{"pathology": "XYZ", "n": 1}]}, "pathologies.0.pathology"),
        ({"pathologies": [{"pathology": "HCM", "n": 0}]}, "pathologies.0.n"),
        ({"pathologies": [{"pathology": "HCM"}]}, "pathologies.0.n: required"),
        ({"pathologies": [{"pathology": "HCM", "n": 1, "severity": [1.0, 0.5]}]}, "pathologies.0.severity"),
        ({"pathologies": [{"pathology": "HCM", "n": 1, "severity": 1.5}]}, "pathologies.0.severity"),
        ({"pathologies": [{"pathology": "HCM", "n": 1, "severity": 1, "severities": [0.5]}]}, "not both"),
        (
            {"pathologies": [{"pathology": "HCM", "n": 1, "severities": [0.0]}]},
            "severities must be in (0, 1]",
        ),
        (_spec(correlation="bogus"), "correlation"),
        (_spec(phases=["XX"]), "phases must be"),
        (_spec(seed=-1), "seed"),
        (_spec(colour="red"), "colour: unknown field"),
        (_spec(models={"vae": "a", "gan": "b"}), "models.gan: unknown field"),
        ({"pathologies": []}, "pathologies"),
    ],
)
def test_bad_specs_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match="invalid dataset spec") as info:
        parse_spec(data)
    assert field in str(info.value)


def test_engine_options_come_from_the_request_dataclass(tmp_path: Path) -> None:
    import dataclasses

    from cardiosynth.synthesis.engine import SynthesisRequest

    own = {"pathology", "n", "severities", "seed"}
    assert set(request_options()) == {f.name for f in dataclasses.fields(SynthesisRequest)} - own
    groups = [{"pathology": "hcm", "n": 2}, {"pathology": "DCM", "n": 1, "ns": 8}]
    spec = parse_spec({"ns": 16, "correlation": "none", "pathologies": groups})
    first, second = spec.requests(0)[0], spec.requests(1)[0]
    assert (first.pathology, first.n, first.ns, first.correlation) == (Group.HCM, 2, 16, "none")
    assert (second.ns, second.correlation) == (8, "none")  # the group's own value wins
    path = tmp_path / "spec.yaml"
    path.write_text("pathologies:\n  - {pathology: RV, n: 1}\n")
    assert isinstance(load_spec(path), DatasetSpec)
    path.write_text("pathologies: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_spec(path)


def test_severity_ranges_are_seeded_and_large_groups_are_chunked() -> None:
    def draw(seed: int) -> list[tuple[float, ...]]:
        spec = parse_spec(
            {"seed": seed, "pathologies": [{"pathology": "HCM", "n": 20, "severity": [0.2, 0.9]}]}
        )
        return spec.subject_severities(0)

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert all(0.2 <= s <= 0.9 for (s,) in draw(1))
    big = parse_spec({"pathologies": [{"pathology": "HCM", "n": 250}]})
    requests = big.requests(0)
    assert [r.n for r in requests] == [100, 100, 50]
    assert len({r.seed for r in requests}) == 3


def test_bases_spread_over_a_group_of_several_requests() -> None:
    spec = parse_spec({"pathologies": [{"pathology": "HCM", "n": 4, "severity": [0.5, 1.0]},
                                       {"pathology": "DCM", "n": 3, "severity": [0.5, 1.0],
                                        "base_subjects": ["p9"]},
                                       {"pathology": "RV", "n": 3}]})  # fmt: skip
    drawn = [r.base_subjects for r in spec.requests(0, ["a", "b"])]
    assert sorted(drawn) == [("a",), ("a",), ("b",), ("b",)]  # each NOR once before any repeats
    assert [r.base_subjects for r in spec.requests(1, ["a", "b"])] == [("p9",)] * 3
    (single,) = spec.requests(2, ["a", "b"])
    assert single.n == 3
    assert single.base_subjects == ()  # one request: the engine draws, as cardiosynth synthesize does


def test_a_failed_build_leaves_nothing(
    export_data: Path, export_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cardiosynth.export.build as build

    def synthesise(spec: object, synthesizer: object, target: Path, *args: object) -> list[object]:
        target.mkdir(parents=True)
        (target / "half-written.nii.gz").write_bytes(b"x")  # work done before the failure
        return []

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "_synthesise", synthesise)
    monkeypatch.setattr(build, "write_card", broken)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "models: {vae: t0, spade: t0}\ninclude_real: true\npathologies: [{pathology: HCM, n: 1}]\n"
    )
    out = tmp_path / "site" / "ds"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        main([*build_args(spec, out, export_data, export_models), "--overwrite"])
    assert [p.name for p in out.parent.iterdir()] == ["ds"]  # no staging folder left
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # the old dataset untouched


def test_the_documented_example_spec_is_valid() -> None:
    import textwrap

    import yaml

    from cardiosynth.export import spec as module

    doc = module.__doc__ or ""
    block = doc.split("A spec is YAML (or JSON)::\n")[1].split("\n\nThe engine options")[0]
    spec = parse_spec(yaml.safe_load(textwrap.dedent(block)))
    assert [(g.pathology.value, g.n) for g in spec.pathologies] == [("HCM", 20), ("DCM", 10), ("RV", 5)]
    assert spec.options(1)["correlation"] == "latent"
    assert spec.subject_severities(2) == [(0.5, 1.0)] * 5
