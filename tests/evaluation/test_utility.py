"""The downstream-utility runner on a tiny phantom (three subjects per group) with tiny untrained
models: every protocol and arm in the report, the same optimiser budget in every arm, a test split
that no training or statistics subject reaches, and bad arguments named."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cardiosynth.cli import main
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY, Group
from cardiosynth.evaluation import utility
from cardiosynth.evaluation.utility import (
    ARMS,
    DEFAULT_ARMS,
    PATHOLOGIES,
    Case,
    UtilityConfig,
    clinical,
    elastic,
    hd95,
    plan_protocols,
    preset,
    run_utility,
)
from cardiosynth.evaluation.utility_report import _clean, write_report
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig

TINY = UtilityConfig(
    image_size=16,
    channels=(4, 8),
    iterations=2,
    batch_size=4,
    seeds=(0, 1),
    synthetic_per_group=1,
    low_data=1,
)


def _tiny_vae() -> LabelVAE:
    torch.manual_seed(0)
    return LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval()


def _tiny_spade() -> SpadeTranslator:
    torch.manual_seed(0)
    return SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4)).eval()


@pytest.fixture(scope="module")
def data(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared phantom (one subject per group) with two renamed copies of each: three per group,
    two for training and one held out."""
    root = tmp_path_factory.mktemp("utilityphantom") / "training"
    shutil.copytree(phantom_root / "training", root)
    for subject in sorted(root.iterdir()):
        for prefix in ("patient8", "patient9"):
            twin = root / subject.name.replace("patient0", prefix)
            twin.mkdir()
            for file in subject.iterdir():
                shutil.copy(file, twin / file.name.replace(subject.name, twin.name))
    return root.parent


@pytest.fixture(scope="module")
def checkpoints() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def mean_decodes() -> list[dict[str, Any]]:
    """The arguments of every class-mean decode the report's run made."""
    return []


@pytest.fixture(scope="module")
def report(
    data: Path, checkpoints: list[dict[str, Any]], mean_decodes: list[dict[str, Any]]
) -> dict[str, Any]:
    original = utility.class_mean_decode

    def recorded(*args: Any, **kwargs: Any) -> Any:
        mean_decodes.append({"args": args, **kwargs})
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utility, "class_mean_decode", recorded)
        return run_utility(
            _tiny_vae(),
            _tiny_spade(),
            data,
            TINY,
            model_versions={"vae": "t0", "spade": "t0"},
            checkpoint=lambda partial: checkpoints.append(json.loads(json.dumps(partial, default=str))),
        )


def test_report_has_every_protocol_and_arm(report: dict[str, Any], tmp_path: Path) -> None:
    expected = ["full", "low_data", *(f"missing:{g.value}" for g in PATHOLOGIES)]
    assert list(report["protocols"]) == expected
    for name, proto in report["protocols"].items():
        assert list(proto["arms"]) == list(DEFAULT_ARMS), name
        for arm, result in proto["arms"].items():
            assert list(result["runs"]) == ["0", "1"], (name, arm)
            for group in ("DCM", "HCM", "MINF", "NOR", "RV"):
                dice = result["summary"][group]["dice"]["mean"]
                assert 0.0 <= dice <= 1.0, (name, arm, group)
    # Protocol (c) removes the missing group from the real training set and adds it back in the arms.
    dcm = report["protocols"]["missing:DCM"]
    assert dcm["real_subjects"]["DCM"] == []
    assert dcm["arms"]["real"]["origins"] == {"real": 8, "synthetic": 0, "elastic": 0, "class_mean": 0}
    added = {"real+synthetic": "synthetic", "real+elastic": "elastic", "real+class_mean": "class_mean"}
    for arm, origin in added.items():
        assert dcm["arms"][arm]["origins"][origin] == TINY.synthetic_per_group
    # No real DCM subject to deform: the elastic arm deforms the NOR bases instead, and says so.
    assert dcm["elastic_from"] == {"DCM": "NOR bases"}
    assert len(report["targets"]) == len(PATHOLOGIES)
    json_path, md_path, png_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["protocols"].keys() == report["protocols"].keys()
    text = md_path.read_text()
    for title in ("(a) full real training set", "(b) low data", "(c) no real RV subject in training"):
        assert title in text
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_partial_reports_after_every_arm(
    report: dict[str, Any], checkpoints: list[dict[str, Any]], tmp_path: Path
) -> None:
    runs = len(report["protocols"]) * len(DEFAULT_ARMS)
    assert len(checkpoints) == runs - 1  # the last arm's report is the final one
    # Protocol (c) runs first; each partial report holds the arms finished so far, none twice.
    first = checkpoints[0]
    assert list(first["protocols"]) == ["missing:DCM"]
    assert list(first["protocols"]["missing:DCM"]["arms"]) == ["real"]
    assert "missing:DCM" in first["pending"]
    finished = [sum(len(p["arms"]) for p in c["protocols"].values()) for c in checkpoints]
    assert finished == list(range(1, runs))
    assert checkpoints[-1]["pending"] == ["low_data"]
    assert report["pending"] == []
    middle = checkpoints[len(checkpoints) // 2]
    _, md_path, _ = write_report(middle, tmp_path / "partial")
    assert "**Incomplete:**" in md_path.read_text()


def test_resume_takes_finished_runs_over(
    data: Path, report: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = json.loads(json.dumps(_clean(report)))  # as the CLI reads it back: NaN as null

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished run was trained again")

    def no_synthesis(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("synthetic subjects were made for arms that train nothing")

    original_train = utility.train
    monkeypatch.setattr(utility, "train", no_training)
    monkeypatch.setattr(utility, "generate", no_synthesis)
    models = {"vae": "t0", "spade": "t0"}
    again = run_utility(_tiny_vae(), _tiny_spade(), data, TINY, model_versions=models, previous=previous)
    for name, proto in report["protocols"].items():
        for arm, result in proto["arms"].items():
            # NaN (no finite value) as None on both sides: otherwise the very same figures.
            assert _clean(again["protocols"][name]["arms"][arm]["summary"]) == _clean(result["summary"])
            taken = again["protocols"][name]["arms"][arm]
            assert [taken[k] for k in ("cases", "origins", "sources")] == [
                result[k] for k in ("cases", "origins", "sources")
            ]
    # Another choice of arms is not another configuration: the runs it shares are taken over.
    fewer = run_utility(
        _tiny_vae(), _tiny_spade(), data, replace(TINY, arms=("real", "real+synthetic")),
        model_versions=models, previous=previous,
    )  # fmt: skip
    assert list(fewer["protocols"]["missing:DCM"]["arms"]) == ["real", "real+synthetic"]
    # A run the report lacks (a run cut short) is trained again, and no other.
    del previous["protocols"]["full"]["arms"]["real"]["runs"]["1"]
    trained: list[int] = []

    def count_training(cases: Any, cfg: UtilityConfig, seed: int) -> Any:
        trained.append(seed)
        return original_train(cases, cfg, seed)

    monkeypatch.setattr(utility, "train", count_training)
    cut = run_utility(
        _tiny_vae(), _tiny_spade(), data, replace(TINY, arms=("real",)), model_versions=models,
        previous=previous,
    )  # fmt: skip
    assert trained == [1]
    full = report["protocols"]["full"]["arms"]["real"]
    assert _clean(cut["protocols"]["full"]["arms"]["real"]["summary"]) == _clean(full["summary"])
    with pytest.raises(ValueError, match="iterations"):
        run_utility(
            _tiny_vae(), _tiny_spade(), data, replace(TINY, iterations=3), model_versions=models,
            previous=previous,
        )  # fmt: skip


def test_budget_is_the_same_in_every_arm(report: dict[str, Any]) -> None:
    sizes = set()
    for proto in report["protocols"].values():
        for result in proto["arms"].values():
            for run in result["runs"].values():
                assert run["steps"] == TINY.iterations
                sizes.add(run["slices"])
    assert len(sizes) > 2  # the arms really trained on different amounts of data


def test_optimiser_steps_counted_do_not_depend_on_data_size(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = torch.optim.Adam.step

    def counting(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting)
    cfg = UtilityConfig(image_size=16, channels=(4, 8), iterations=7, batch_size=4)
    few = [_fake_case("a", Group.NOR, 3)]
    many = [_fake_case(f"b{i}", Group.NOR, 5) for i in range(6)]
    for cases in (few, many):
        calls.clear()
        trained = utility.train(cases, cfg, seed=0)
        assert len(calls) == trained.steps == 7


def test_test_split_is_disjoint_from_training_and_statistics(report: dict[str, Any]) -> None:
    held_out = {s for g in report["split"].values() for s in g["held_out"]}
    trained_on = {s for g in report["split"].values() for s in g["train"]}
    assert held_out
    assert not held_out & trained_on
    for pool, subjects in report["statistics_subjects"].items():
        assert subjects, pool
        assert not held_out & set(subjects), pool
    for name, proto in report["protocols"].items():
        for arm, result in proto["arms"].items():
            assert result["sources"], (name, arm)
            assert not held_out & set(result["sources"]), (name, arm)


def test_keep_missing_keeps_that_many_of_the_missing_group() -> None:
    train = {g: [_fake_case(f"{g.value}{i}", g, 2) for i in range(4)] for g in utility.GROUPS}
    for keep in (0, 2):
        cfg = UtilityConfig(image_size=16, channels=(4, 8), keep_missing=keep, low_data=3)
        protocols = {p.name: p for p in plan_protocols(train, cfg)}
        for g in PATHOLOGIES:
            real = protocols[f"missing:{g.value}"].real
            assert sum(c.group is g for c in real) == keep
            assert sum(c.group is not g for c in real) == 16
        assert len(protocols["low_data"].real) == 15


def test_real_real_ceiling_puts_back_held_back_real_subjects() -> None:
    """The ceiling arm adds real training subjects of the added group that the protocol left out,
    as many as the synthetic arm adds, never one already in the real set; protocol (a) has none."""
    train = {g: [_fake_case(f"{g.value}{i}", g, 2) for i in range(4)] for g in utility.GROUPS}
    cfg = UtilityConfig(image_size=16, channels=(4, 8), keep_missing=1, low_data=3, synthetic_per_group=2,
                        arms=ARMS)  # fmt: skip
    protocols = {p.name: p for p in plan_protocols(train, cfg)}

    def unused(*args: Any) -> Any:
        raise AssertionError("the ceiling arm must not synthesise")

    for g in PATHOLOGIES:
        proto = protocols[f"missing:{g.value}"]
        cases = utility._arm_cases("real+real", proto, unused, cfg)
        real_names = {c.name for c in proto.real}
        added = [c for c in cases if c.name not in real_names]
        assert len(cases) == len(proto.real) + 2
        assert {c.group for c in added} == {g}
        assert all(c.origin == "real" for c in added)
        assert len({c.name for c in added}) == 2
        again = utility._arm_cases("real+real", proto, unused, cfg)
        assert [c.name for c in again] == [c.name for c in cases]  # the same draw every time
    low = protocols["low_data"]
    low_names = {c.name for c in low.real}
    added = [c for c in utility._arm_cases("real+real", low, unused, cfg) if c.name not in low_names]
    assert len(added) == len(PATHOLOGIES)  # one spare real subject per group: fewer than the 2 asked
    assert not any(protocols["full"].spare.values())


def test_ceiling_row_in_targets_and_report(tmp_path: Path) -> None:
    def summary(dice: dict[str, float]) -> dict[str, Any]:
        return {
            g: {m: {"mean": dice.get(g, 0.8) if m == "dice" else 1.0, "sd": 0.0} for m in utility.METRICS}
            for g in ("DCM", "HCM", "MINF", "NOR", "RV")
        }

    arms = {
        "real": {"summary": summary({"DCM": 0.80})},
        "real+synthetic": {"summary": summary({"DCM": 0.81})},
        "real+real": {"summary": summary({"DCM": 0.82})},
    }
    report = {"protocols": {"missing:DCM": {"arms": arms}}}
    (row,) = utility.check_targets(report)
    assert row["ceiling_gain"] == pytest.approx(0.02)
    assert row["ceiling_allows_target"] is False
    assert row["gain_met"] is False
    arms["real+real"] = {"summary": summary({"DCM": 0.90})}
    (row,) = utility.check_targets(report)
    assert row["ceiling_allows_target"] is True


def test_elastic_is_deterministic_and_keeps_labels_valid() -> None:
    src = [_fake_case("s", Group.HCM, 3, size=32)]
    cfg = UtilityConfig(image_size=32, channels=(4, 8))
    a = elastic(src, 2, Group.HCM, 5, cfg, "t")
    b = elastic(src, 2, Group.HCM, 5, cfg, "t")
    assert len(a) == 2
    assert all(c.sources == ("s",) for c in a)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.labels["ED"], y.labels["ED"])
        assert set(np.unique(x.labels["ED"])) <= {0, 1, 2, 3}
    assert not np.array_equal(a[0].labels["ED"], src[0].labels["ED"])
    with pytest.raises(ValueError, match="HCM"):
        elastic([], 1, Group.HCM, 0, cfg, "t")


def test_hd95_and_clinical_figures() -> None:
    ref = _fake_case("r", Group.NOR, 4, size=32).labels["ED"]
    spacing = (10.0, 1.5, 1.5)
    assert hd95(ref, ref, spacing) == {RV_CAVITY: 0.0, LV_MYOCARDIUM: 0.0, LV_CAVITY: 0.0}
    shifted = np.roll(ref, 2, axis=2)
    assert 0.0 < hd95(shifted, ref, spacing)[LV_CAVITY] <= 3.0 + 1e-6  # two 1.5 mm pixels at most
    no_rv = np.where(ref == RV_CAVITY, 0, ref).astype(np.uint8)
    diagonal = float(np.sqrt((4 * 10.0) ** 2 + 2 * (32 * 1.5) ** 2))
    assert hd95(no_rv, ref, spacing)[RV_CAVITY] == pytest.approx(diagonal)
    es = np.where(ref == LV_CAVITY, 0, ref).astype(np.uint8)
    es[ref == LV_CAVITY] = LV_CAVITY * (np.arange(int((ref == LV_CAVITY).sum())) % 2 == 0)
    figures = clinical(ref, es, spacing)
    lv = int((ref == LV_CAVITY).sum())
    assert figures["lv_edv"] == pytest.approx(lv * 22.5 / 1000)
    assert figures["lv_ef"] == pytest.approx(100 * (lv - (lv + 1) // 2) / lv)
    assert figures["rv_ef"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"iterations": 0}, "iterations"),
        ({"image_size": 50}, "50"),
        ({"protocols": ("full", "bogus")}, "bogus"),
        ({"arms": ("real+synthetic",)}, "real"),
        ({"missing_groups": (Group.NOR,)}, "NOR"),
        ({"seeds": (1, 1)}, "seeds"),
        ({"keep_missing": -1}, "keep_missing"),
        ({"batch_size": 1}, "batch_size"),
    ],
)
def test_bad_config_is_a_value_error_naming_it(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        UtilityConfig(**kwargs)


def test_presets() -> None:
    assert preset("small") == UtilityConfig()
    assert preset("paper").image_size == 128
    assert preset("small", iterations=9, seeds=None).iterations == 9
    with pytest.raises(ValueError, match="huge"):
        preset("huge")


def test_cli_writes_the_report(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    save_model(_tiny_vae(), root / "vae" / "t0", kind="vae", version="t0")
    save_model(_tiny_spade(), root / "spade" / "t0", kind="spade", version="t0")
    out = tmp_path / "report"
    common = ["evaluate", "utility", "--data", str(data), "--model-root", str(root), "--vae-version", "t0",
              "--spade-version", "t0", "--image-size", "16", "--iterations", "2", "--seeds", "3",
              "--synthetic", "1", "--protocols", "missing", "--groups", "RV"]  # fmt: skip
    assert main([*common, "--out", str(out), "--arms", "real,real+synthetic"]) == 0
    saved = json.loads((out / "report.json").read_text())
    assert list(saved["protocols"]) == ["missing:RV"]
    assert list(saved["protocols"]["missing:RV"]["arms"]) == ["real", "real+synthetic"]
    assert "--groups RV" in (out / "report.md").read_text()
    assert str(tmp_path) not in saved["data"]  # the folder's name, not the machine's path
    # A bad argument: one error naming it, exit 2, nothing written.
    assert main([*common, "--out", str(tmp_path / "bad"), "--arms", "real,bogus"]) == 2
    assert not (tmp_path / "bad").exists()


def _fake_case(name: str, group: Group, z: int, size: int = 16) -> Case:
    """A ring heart: LV cavity disc, myocardium ring, RV blob beside it, on ``size`` slices."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    lab = np.zeros((size, size), np.uint8)
    lab[r < size * 0.3] = LV_MYOCARDIUM
    lab[r < size * 0.2] = LV_CAVITY
    lab[(np.hypot(yy - size / 2, xx - size * 0.12) < size * 0.12) & (lab == 0)] = RV_CAVITY
    labels = np.repeat(lab[None], z, axis=0)
    images = np.where(labels == LV_MYOCARDIUM, -0.5, np.where(labels > 0, 0.8, -0.9)).astype(np.float32)
    return Case(name, group, "real", {"ED": images, "ES": images}, {"ED": labels, "ES": labels},
                (10.0, 1.5, 1.5), (name,))  # fmt: skip


def test_the_class_mean_arm_is_placed_and_decoded_as_the_method_samples_are(
    report: dict[str, Any], mean_decodes: list[dict[str, Any]]
) -> None:
    """The class-mean decode goes into each base's LV extent with the decoder offsets the method's
    severity-1 samples get (the round trip's, and its sampling calibration's per phase), so that the
    two arms differ by the sampling only."""
    assert mean_decodes  # one per synthesised group and pool
    for call in mean_decodes:
        counts = call["args"][3]
        assert [len(ed) for ed, _ in call["bases"]] == list(counts)
        assert [len(es) for _, es in call["bases"]] == list(counts)
        assert call["logit_bias"] is not None
        ed, es = call["extent_bias"]
        # per zone of the LV extent (one by default), each zone's offsets for every label
        assert ed.shape == es.shape == (1, *call["logit_bias"].shape)
        # ... and each base's whole-slice dither, the one its synthetic subject was placed with.
        assert len(call["extent_dithers"]) == len(counts)
        assert all(0.0 <= u < 1.0 for pair in call["extent_dithers"] for u in pair)
