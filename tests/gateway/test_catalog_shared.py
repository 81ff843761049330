"""One model catalog: a model pushed to the object store (``cardiosynth models push``) is accepted by
the gateway and loaded by a worker's loader from the same store (S3 over HTTP: moto's server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.catalog import ModelCatalog
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.models.catalog import DEFAULT_VERSION, pushed_models, stored_model_key
from cardiosynth.models.registry import load_spade, load_vae, push_model, save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.storage.local import LocalStore
from cardiosynth.storage.s3 import S3Store
from tests.gateway.conftest import KEY_A, RecordingDispatcher

A = {"X-API-Key": KEY_A}


@pytest.fixture
def s3_api(
    redis_url: str, redis_prefix: str, tmp_path: Path, s3_endpoint: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[TestClient, RecordingDispatcher, S3Store]:
    """The gateway over S3 storage, its local registry holding the default version only."""
    for kind in ("vae", "spade"):
        folder = tmp_path / "registry" / kind / DEFAULT_VERSION
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"kind": kind, "config": {}}))
    monkeypatch.setenv("CARDIOSYNTH_MODELS", str(tmp_path / "registry"))
    store = S3Store(
        f"catalog-{redis_prefix}",
        endpoint_url=f"http://127.0.0.1:{s3_endpoint}",
        access_key="a",
        secret_key="b",
    )
    store.ensure_bucket()
    settings = GatewaySettings(
        redis_url=redis_url, job_prefix=redis_prefix, api_keys=SecretStr(KEY_A), storage="s3"
    )
    dispatcher = RecordingDispatcher()
    return TestClient(create_app(settings, dispatcher, storage=store)), dispatcher, store


def tiny_models(root: Path, version: str) -> tuple[LabelVAE, SpadeTranslator]:
    torch.manual_seed(0)
    vae = LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval()
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4)).eval()
    save_model(vae, root / "vae" / version, kind="vae", version=version, dtype="float32")
    save_model(spade, root / "spade" / version, kind="spade", version=version, dtype="float32")
    return vae, spade


def test_a_pushed_model_is_accepted_and_loaded_by_a_worker(
    s3_api: tuple[TestClient, RecordingDispatcher, S3Store], tmp_path: Path
) -> None:
    client, dispatcher, store = s3_api
    body = {"pathology": "HCM", "n": 1, "model": "lab-v3"}
    refused = client.post("/synthesize", json=body, headers=A)
    assert refused.status_code == 422
    assert "lab-v3" in refused.json()["detail"]
    assert DEFAULT_VERSION in refused.json()["detail"]  # what is available is named

    vae, spade = tiny_models(tmp_path / "elsewhere", "lab-v3")  # trained on another machine
    for kind in ("vae", "spade"):
        push_model(store, tmp_path / "elsewhere" / kind / "lab-v3")
    client.app.state.services.catalog.miss_refresh_s = 0.0  # type: ignore[attr-defined]
    accepted = client.post("/synthesize", json=body, headers=A)
    assert accepted.status_code == 202, accepted.text
    assert dispatcher.submitted[-1][1]["model"] == "lab-v3"
    listed = {(m["kind"], m["version"]): m for m in client.get("/models").json()}
    assert {("vae", "lab-v3"), ("spade", "lab-v3"), ("vae", DEFAULT_VERSION)} <= set(listed)
    assert listed[("vae", "lab-v3")]["card"]["version"] == "lab-v3"  # its card, read from the store

    # A worker with no local copy loads it from the same store (runtime.synthesizer's loaders).
    empty, cache = tmp_path / "worker-registry", tmp_path / "worker-cache"
    loaded_vae = load_vae("lab-v3", root=empty, store=store, cache_dir=cache)
    loaded_spade = load_spade("lab-v3", root=empty, store=store, cache_dir=cache)
    z = torch.randn(2, vae.config.latent_dim)
    assert torch.equal(loaded_vae.module.decode(z), vae.decode(z))
    for name, value in spade.state_dict().items():
        assert torch.equal(loaded_spade.module.state_dict()[name], value), name


def test_the_store_listing_is_cached_and_refreshed_on_a_miss(tmp_path: Path) -> None:
    class CountingStore(LocalStore):
        lists = 0

        def list_keys(self, prefix: str = "") -> list[str]:
            CountingStore.lists += 1
            return super().list_keys(prefix)

    store = CountingStore(tmp_path / "store", signing_key=b"k" * 32)
    now = [0.0]
    catalog = ModelCatalog(store, ttl_s=30.0, miss_refresh_s=2.0, clock=lambda: now[0])
    store.put_bytes(stored_model_key("vae", "p1"), b"w")
    assert ("vae", "p1") in catalog.pushed()
    assert ("vae", "p1") in catalog.pushed()
    assert CountingStore.lists == 1  # cached
    store.put_bytes(stored_model_key("vae", "p2"), b"w")
    with pytest.raises(ValueError, match="'p2'"):
        catalog.check("vae", "p2")  # listed less than miss_refresh_s ago: not seen yet
    now[0] = 2.5
    catalog.check("vae", "p2")  # a miss lists again once miss_refresh_s has passed
    lists = CountingStore.lists
    with pytest.raises(ValueError, match=r"available: \[.*'p1', 'p2'"):
        catalog.check("vae", "nope")
    assert CountingStore.lists == lists  # unknown names do not list the store on every request
    now[0] = 40.0
    assert ("vae", "p2") in catalog.pushed()
    assert CountingStore.lists == lists + 1  # the cache expired after ttl_s


def test_pushed_models_are_the_whole_ones() -> None:
    keys = ["models/vae/a/config.json", "models/vae/a/model.safetensors", "models/spade/b/config.json",
            "models/other/c/model.safetensors", "jobs/x/model.safetensors"]  # fmt: skip
    assert pushed_models(keys) == {("vae", "a")}  # b's weights are not there yet: a push under way
