"""Tiny data for the dataset build and export tests: the phantom fixture plus a second NOR subject,
untrained fixed models, and one dataset built once per module through the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from cardiosynth.cli import main
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig

SPADE_SMALL = SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4)
VAE_SMALL = VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))

SPEC = """\
name: tiny
description: two pathologies, a severity range and a trajectory
seed: 3
include_real: true
pathologies:
  - pathology: HCM
    n: 2
    severity: [0.5, 1.0]
  - pathology: dcm
    n: 1
    severities: [0.5, 1.0]
    correlation: latent
"""


@pytest.fixture(scope="session")
def export_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained but fixed models (building and exporting do not depend on training)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("export-models")
    save_model(LabelVAE(VAE_SMALL).eval(), root / "vae" / "t0", kind="vae", version="t0")
    save_model(SpadeTranslator(SPADE_SMALL).eval(), root / "spade" / "t0", kind="spade", version="t0")
    return root


@pytest.fixture(scope="session")
def export_data(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom's five subjects (one per group) plus a copy of its NOR subject as patient901, so
    synthetic subjects have two bases and the splits have something to keep apart."""
    root = tmp_path_factory.mktemp("export-data")
    shutil.copytree(phantom_root / "training", root / "training")
    nor = next(
        p for p in sorted((root / "training").iterdir()) if "Group: NOR" in (p / "Info.cfg").read_text()
    )
    copy = root / "training" / "patient901"
    copy.mkdir()
    for f in nor.iterdir():
        (copy / f.name.replace(nor.name, "patient901")).write_bytes(f.read_bytes())
    return root


def build_args(spec: Path, out: Path, data: Path, models: Path) -> list[str]:
    return ["dataset", "build", "--spec", str(spec), "--out", str(out), "--data", str(data),
            "--model-root", str(models), "--no-cache", "--quiet"]  # fmt: skip


@pytest.fixture(scope="session")
def built(export_data: Path, export_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SPEC dataset, built once through ``cardiosynth dataset build``."""
    work = tmp_path_factory.mktemp("built")
    spec = work / "spec.yaml"
    spec.write_text(SPEC + "models: {vae: t0, spade: t0}\n", encoding="utf-8")
    out = work / "ds"
    assert main(build_args(spec, out, export_data, export_models)) == 0
    return out
