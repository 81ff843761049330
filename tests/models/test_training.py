from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiosynth.cli import main
from cardiosynth.models.registry import load_model_dir
from cardiosynth.models.slices import SliceSet
from cardiosynth.models.train_spade import spade_preset, train_spade
from cardiosynth.models.train_vae import train_vae, vae_preset
from cardiosynth.models.training import (
    check_resumable,
    check_run_dir,
    epoch_batches,
    load_checkpoint,
    save_checkpoint,
)


def _few(slices: SliceSet, subjects: int = 2, per_subject: int = 6) -> SliceSet:
    """A handful of ED slices of the first subjects, for training loops that must run in seconds."""
    part = slices.select_subjects(slices.subject_ids[:subjects])
    keep = np.concatenate([np.flatnonzero((part.subject == s) & (part.phase == 0))[:per_subject]
                           for s in range(subjects)])  # fmt: skip
    return SliceSet(part.labels[keep], part.images[keep], part.subject[keep], part.phase[keep],
                    part.position[keep], part.subject_ids, part.groups)  # fmt: skip


def test_epoch_batches_are_seeded_and_drop_single_samples() -> None:
    a = [b.tolist() for b in epoch_batches(9, 4, seed=1, epoch=0)]
    assert a == [b.tolist() for b in epoch_batches(9, 4, seed=1, epoch=0)]
    assert a != [b.tolist() for b in epoch_batches(9, 4, seed=1, epoch=1)]
    assert [len(b) for b in a] == [4, 4]  # the ninth sample alone would break BatchNorm
    assert len({i for b in a for i in b}) == 8
    with pytest.raises(ValueError, match="batch_size"):
        list(epoch_batches(9, 0, seed=1, epoch=0))


def test_checkpoint_round_trip_and_run_dir_guard(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, {"epoch": 3, "w": torch.ones(2)})
    state = load_checkpoint(tmp_path)
    assert state is not None
    assert state["epoch"] == 3
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(FileExistsError, match="--resume"):
        check_run_dir(tmp_path, resume=False, overwrite=False)
    check_run_dir(tmp_path, resume=False, overwrite=True)
    assert load_checkpoint(tmp_path) is None
    check_resumable(tmp_path, {"epochs": 2, "lr": 1.0}, {"epochs": 5, "lr": 1.0})
    with pytest.raises(ValueError, match=r"lr: 1\.0 -> 2\.0"):
        check_resumable(tmp_path, {"epochs": 2, "lr": 1.0}, {"epochs": 2, "lr": 2.0})


def test_vae_training_is_seeded_and_resumes_exactly(phantom_slices: SliceSet, tmp_path: Path) -> None:
    data = _few(phantom_slices)
    config = vae_preset("cpu-small", epochs=2, batch_size=4)
    straight, history = train_vae(data, data, config, tmp_path / "a", show_progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    assert (tmp_path / "a" / "samples" / "epoch_002.png").is_file()
    one_epoch = vae_preset("cpu-small", epochs=1, batch_size=4)
    train_vae(data, None, one_epoch, tmp_path / "b", show_progress=False)
    resumed, history_b = train_vae(data, None, config, tmp_path / "b", resume=True, show_progress=False)
    assert len(history_b) == 2
    assert len((tmp_path / "b" / "history.jsonl").read_text().splitlines()) == 2
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="cannot resume"):
        train_vae(data, None, vae_preset("cpu-small", epochs=3, batch_size=8), tmp_path / "b", resume=True)


def test_spade_training_runs_and_reports(phantom_slices: SliceSet, tmp_path: Path) -> None:
    data = _few(phantom_slices, subjects=1, per_subject=4)
    model, history = train_spade(data, data, spade_preset("cpu-small", epochs=1, batch_size=2), tmp_path,
                                 show_progress=False)  # fmt: skip
    assert not model.training
    # Noise injection is on by default and its weights (zero at the start) are trained.
    assert model.config.noise
    assert any(float(w.detach().abs().sum()) > 0 for w in model.noise_weights)
    record = history[0]
    assert all(np.isfinite(record[k]) for k in ("g_adv", "g_fm", "g_l1", "g_kld", "d", "val_l1"))
    assert record["val_mean_lv_real"] > record["val_mean_myo_real"]  # bright blood, dark muscle
    assert (tmp_path / "samples" / "epoch_001.png").is_file()
    assert load_checkpoint(tmp_path) is not None


def test_train_command_exports_a_model(phantom_root: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run = tmp_path / "run"
    args = ["train", "vae", "--data", str(phantom_root), "--out", str(run), "--epochs", "1", "--batch-size",
            "16", "--quiet", "--version", "t1", "--model-root", str(tmp_path / "reg")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "heldout_dice_lv" in out
    loaded = load_model_dir(tmp_path / "reg" / "vae" / "t1", kind="vae")
    card = json.loads((run / "model" / "card.json").read_text())
    assert card["epochs"] == 1
    assert card["training"]["beta"] == 15.0  # the paper's KL weight unless --beta says otherwise
    assert len(card["heldout_subjects"]) == 1
    assert len(card["data_fingerprint"]) == 64
    assert loaded.card["metrics"] == card["metrics"]
    # Running again into the same folder without --resume/--overwrite is refused with a clear error.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_train_command_beta_and_label_interpolation_reach_the_run_and_are_refused_for_spade(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["train", "vae", "--data", str(phantom_root), "--out", str(run), "--epochs", "1", "--batch-size",
            "16", "--quiet", "--beta", "4", "--label-interpolation", "linear"]  # fmt: skip
    assert main(args) == 0
    card = json.loads((run / "model" / "card.json").read_text())
    assert card["training"]["beta"] == 4.0
    assert card["training"]["label_interpolation"] == "linear"
    # the model itself carries it, for synthesis to preprocess and restore the same way
    assert load_model_dir(run / "model", kind="vae").module.config.label_interpolation == "linear"
    spade = ["train", "spade", "--data", str(phantom_root), "--out", str(tmp_path / "s"), "--beta", "4"]
    assert main(spade) == 2
    assert "KL weight" in capsys.readouterr().err
    spade = ["train", "spade", "--data", str(phantom_root), "--out", str(tmp_path / "s"),
             "--label-interpolation", "linear"]  # fmt: skip
    assert main(spade) == 2
    assert "label VAE's" in capsys.readouterr().err
    with pytest.raises(ValueError, match="beta"):
        vae_preset("cpu-small", beta=-1.0)


def test_spade_settings_reach_the_run_and_are_refused_for_the_vae(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "spade", "--data", str(phantom_root), "--out", str(tmp_path / "s"), "--epochs", "1",
            "--batch-size", "4", "--quiet", "--no-noise", "--l1-weight", "10", "--kld-weight", "0.02",
            "--ema-decay", "0", "--version", "t1"]  # fmt: skip
    assert main(args) == 0
    card = json.loads((tmp_path / "s" / "model" / "card.json").read_text())
    training = card["training"]
    chosen = ("noise", "lambda_l1", "lambda_kld", "ema_decay")
    assert tuple(training[k] for k in chosen) == (False, 10.0, 0.02, 0.0)
    config = json.loads((tmp_path / "s" / "model" / "config.json").read_text())
    assert config["config"]["noise"] is False
    for flag in (["--no-noise"], ["--kld-weight", "0.01"]):
        vae = ["train", "vae", "--data", str(phantom_root), "--out", str(tmp_path / "v"), *flag]
        assert main(vae) == 2
        assert "SPADE setting" in capsys.readouterr().err
    for bad in ({"lambda_l1": -1.0}, {"lambda_kld": -0.1}, {"ema_decay": 1.0}, {"ema_decay": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            spade_preset("cpu-small", **bad)


def test_spade_exports_the_moving_average_and_resumes_it(phantom_slices: SliceSet, tmp_path: Path) -> None:
    """With ``ema_decay`` the returned weights are the average, not the last step's, and a resumed
    run continues the same average (its result equals the straight run's)."""
    data = _few(phantom_slices, subjects=1, per_subject=4)
    config = spade_preset("cpu-small", epochs=2, batch_size=2, ema_decay=0.5)
    straight, _ = train_spade(data, None, config, tmp_path / "a", show_progress=False)
    last = load_checkpoint(tmp_path / "a")
    assert last is not None
    assert "generator_ema" in last
    trained = dict(last["generator"])
    averaged = straight.state_dict()
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained if k.startswith("noise_weights"))
    train_spade(data, None, replace(config, epochs=1), tmp_path / "b", show_progress=False)
    resumed, _ = train_spade(data, None, config, tmp_path / "b", resume=True, show_progress=False)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    plain, _ = train_spade(data, None, replace(config, ema_decay=0.0, epochs=1), tmp_path / "c",
                           show_progress=False)  # fmt: skip
    state = load_checkpoint(tmp_path / "c")
    assert state is not None
    assert "generator_ema" not in state
    assert all(torch.equal(v, state["generator"][k]) for k, v in plain.state_dict().items())
