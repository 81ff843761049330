from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cardiosynth.models import catalog
from cardiosynth.models.catalog import PACKAGE_ROOT, find_model, list_models
from cardiosynth.models.registry import copy_model, load_model, load_model_dir, save_model, update_card
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig

VAE_TINY = VAEConfig(image_size=32, channels=(2, 4, 4, 8), fc_features=(16, 16, 8), latent_dim=4)
SPADE_TINY = SpadeConfig(image_size=32, channels=(4, 8), style_dim=4, spade_hidden=4, head_channels=4)


def _vae() -> LabelVAE:
    torch.manual_seed(0)
    model = LabelVAE(VAE_TINY)
    model(torch.softmax(torch.randn(4, 4, 32, 32), 1))  # move BatchNorm statistics off their defaults
    return model.eval()


def test_float32_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _vae()
    save_model(model, tmp_path / "m", kind="vae", version="t1", dtype="float32", card={"preset": "tiny"})
    loaded = load_model_dir(tmp_path / "m")
    z = torch.randn(3, 4)
    assert loaded.kind == "vae"
    assert loaded.version == "t1"
    assert not loaded.module.training
    assert isinstance(loaded.module, LabelVAE)
    assert torch.equal(model.decode(z), loaded.module.decode(z))
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["preset"] == "tiny"
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert "# vae t1" in (tmp_path / "m" / "README.md").read_text()


@pytest.mark.parametrize("noise", [False, True], ids=["plain", "noise-injection"])
def test_float16_storage_round_trips_the_rounded_weights(tmp_path: Path, noise: bool) -> None:
    torch.manual_seed(0)
    config = replace(SPADE_TINY, noise=noise)
    model = SpadeTranslator(config).eval()
    if noise:
        for weight in model.noise_weights:
            torch.nn.init.constant_(weight, 0.3)
    save_model(model, tmp_path / "s", kind="spade", version="t1")
    loaded = load_model_dir(tmp_path / "s", kind="spade")
    assert loaded.module.config == config
    # The reference: the same weights rounded to float16 and back.
    rounded = SpadeTranslator(config).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    labels = torch.randint(0, 4, (2, 32, 32))
    image = torch.rand(2, 1, 32, 32) * 2 - 1
    assert isinstance(loaded.module, SpadeTranslator)
    assert torch.equal(loaded.module.translate(labels, image), rounded.translate(labels, image))
    assert torch.allclose(loaded.module.translate(labels, image), model.translate(labels, image), atol=2e-2)


def test_registry_lookup_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_model(_vae(), tmp_path / "vae" / "v9", kind="vae", version="v9")
    assert find_model("vae", "v9", tmp_path) == tmp_path / "vae" / "v9"
    assert ("vae", "v9", tmp_path / "vae" / "v9") in list_models(tmp_path)
    with pytest.raises(ValueError, match=r"no vae model 'v8'; available: \['v9'\]"):
        find_model("vae", "v8", tmp_path)
    with pytest.raises(ValueError, match="unknown model kind"):
        find_model("gan", "v9", tmp_path)
    with pytest.raises(ValueError, match="holds a vae model, expected spade"):
        load_model_dir(tmp_path / "vae" / "v9", kind="spade")
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model_dir(tmp_path / "nothing")
    with pytest.raises(ValueError, match="dtype"):
        save_model(_vae(), tmp_path / "x", kind="vae", version="x", dtype="int8")  # type: ignore[arg-type]
    monkeypatch.setenv("CARDIOSYNTH_MODELS", str(tmp_path))
    assert load_model("vae", "v9").path == tmp_path / "vae" / "v9"
    assert catalog.registry_roots()[-1] == PACKAGE_ROOT


def test_update_card_merges_metrics(tmp_path: Path) -> None:
    save_model(_vae(), tmp_path / "m", kind="vae", version="v1", card={"metrics": {"a": 1.0}})
    card = update_card(tmp_path / "m", metrics={"b": 2.0}, epochs=3)
    assert card["metrics"] == {"a": 1.0, "b": 2.0}
    assert json.loads((tmp_path / "m" / "card.json").read_text())["epochs"] == 3
    assert "| b | 2.0000 |" in (tmp_path / "m" / "README.md").read_text()


def test_saving_over_a_model_replaces_it_whole(tmp_path: Path) -> None:
    save_model(_vae(), tmp_path / "m", kind="vae", version="v1")
    (tmp_path / "m" / "stray.txt").write_text("old")
    save_model(_vae(), tmp_path / "m", kind="vae", version="v2")
    assert not (tmp_path / "m" / "stray.txt").exists()
    assert load_model_dir(tmp_path / "m").version == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left behind


def test_models_travel_through_an_object_store(tmp_path: Path, s3_endpoint: int) -> None:
    from cardiosynth.models.registry import fetch_model, load_model_anywhere, push_model
    from cardiosynth.storage.s3 import S3Store

    store = S3Store("models", endpoint_url=f"http://127.0.0.1:{s3_endpoint}", access_key="a", secret_key="b")
    store.ensure_bucket()
    model = _vae()
    save_model(model, tmp_path / "local" / "vae" / "s1", kind="vae", version="s1", dtype="float32")
    assert push_model(store, tmp_path / "local" / "vae" / "s1") == "models/vae/s1"
    assert store.exists("models/vae/s1/model.safetensors")
    empty_root = tmp_path / "empty"
    loaded = load_model_anywhere("vae", "s1", root=empty_root, store=store, cache_dir=tmp_path / "cache")
    assert loaded.path == tmp_path / "cache" / "vae" / "s1"
    z = torch.randn(2, 4)
    assert isinstance(loaded.module, LabelVAE)
    assert torch.equal(loaded.module.decode(z), model.decode(z))
    assert fetch_model(store, "vae", "s1", tmp_path / "cache") == loaded.path  # cached, no second download
    with pytest.raises(ValueError, match="in the object store"):
        load_model_anywhere("vae", "s2", root=empty_root, store=store, cache_dir=tmp_path / "cache")


def test_typed_loaders_give_the_model_class_or_refuse_the_wrong_kind(tmp_path: Path) -> None:
    from cardiosynth.models.registry import LoadedModel, _module_of, load_spade, load_vae

    model = _vae()
    save_model(model, tmp_path / "vae" / "t1", kind="vae", version="t1", dtype="float32")
    save_model(SpadeTranslator(SPADE_TINY).eval(), tmp_path / "spade" / "t1", kind="spade", version="t1")
    vae = load_vae("t1", root=tmp_path)
    assert isinstance(vae.module, LabelVAE)  # typed LabelVAE: mypy needs no cast at Synthesizer(...)
    assert (vae.kind, vae.version, vae.path) == ("vae", "t1", tmp_path / "vae" / "t1")
    z = torch.randn(2, 4)
    assert torch.equal(vae.module.decode(z), model.decode(z))
    spade = load_spade("t1", root=tmp_path)
    assert isinstance(spade.module, SpadeTranslator)
    assert load_spade(path=tmp_path / "spade" / "t1").version == "t1"
    with pytest.raises(ValueError, match="holds a spade model, expected vae"):
        load_vae(path=tmp_path / "spade" / "t1")
    with pytest.raises(ValueError, match="no vae model 't2'"):
        load_vae("t2", root=tmp_path)
    odd = LoadedModel(torch.nn.Linear(1, 1), "vae", "x", {}, tmp_path)
    with pytest.raises(ValueError, match="holds a Linear, not a LabelVAE"):
        _module_of(odd, LabelVAE)


def test_copy_model_installs_the_same_network_under_another_version(tmp_path: Path) -> None:
    model = _vae()
    save_model(model, tmp_path / "m", kind="vae", version="a1", card={"preset": "tiny", "epochs": 3})
    path = copy_model(tmp_path / "m", tmp_path / "reg", "b1", note="paired with a new translator")
    assert path == tmp_path / "reg" / "vae" / "b1"
    copied, original = load_model_dir(path), load_model_dir(tmp_path / "m")
    assert copied.version == "b1"
    assert json.loads((path / "config.json").read_text())["version"] == "b1"
    assert copied.card["epochs"] == 3
    assert copied.card["note"] == "paired with a new translator"
    for key, value in original.module.state_dict().items():
        assert torch.equal(copied.module.state_dict()[key], value), key
    with pytest.raises(ValueError, match="already holds"):
        copy_model(tmp_path / "m", tmp_path / "reg", "a1")
    with pytest.raises(ValueError, match="plain name"):
        copy_model(tmp_path / "m", tmp_path / "reg", "../x")
