from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cardiosynth.cli import main
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig


@pytest.fixture
def untrained_models(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    root = tmp_path / "models"
    save_model(LabelVAE(VAEConfig()).eval(), root / "vae" / "t0", kind="vae", version="t0")
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4))
    save_model(spade.eval(), root / "spade" / "t0", kind="spade", version="t0")
    return root


def test_evaluate_models_writes_reports_and_judges_targets(
    phantom_root: Path, untrained_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(["evaluate", "models", "--data", str(phantom_root), "--out", str(out),
                 "--model-root", str(untrained_models), "--vae-version", "t0", "--spade-version", "t0",
                 "--segmenter-epochs", "1", "--quiet", "--update-cards"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "models.json").read_text())
    assert "| vae_dice_lv |" in (out / "models.md").read_text()
    # Untrained models cannot meet the targets, and the report must say so.
    assert report["checks"]["vae_dice_lv"]["met"] is False
    assert report["figures"]["vae_dice_lv"] < 0.5
    assert set(report["intensity"]) == {"background", "RV cavity", "LV myocardium", "LV cavity"}
    assert 0.0 <= report["figures"]["segmenter_real_mean_dice"] <= 1.0
    card = json.loads((untrained_models / "vae" / "t0" / "card.json").read_text())
    assert card["metrics"]["vae_dice_lv"] == report["figures"]["vae_dice_lv"]
    assert "updated cards" in capsys.readouterr().out


def test_evaluate_unknown_model_is_a_clear_error(phantom_root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code = main(["evaluate", "models", "--data", str(phantom_root), "--out", str(tmp_path),
                 "--model-root", str(tmp_path), "--vae-version", "nope"])  # fmt: skip
    assert code == 2
    assert "no vae model 'nope'" in capsys.readouterr().err
