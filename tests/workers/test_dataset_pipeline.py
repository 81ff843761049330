"""A dataset build in the Redis/Celery mode: real Redis, a real SPADE worker process, local storage."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cardiosynth.jobs.base import JobState
from tests.workers.test_pipeline import _on_disk, _setup, _wait, env, workers  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def test_a_dataset_builds_on_the_spade_queue_alone(
    env: dict[str, str],  # noqa: F811 (the fixture imported above)
    workers: Callable[[str], object],  # noqa: F811
) -> None:
    store, dispatcher, storage = _setup(env)
    workers("spade")  # no VAE worker: the build is one task on the SPADE queue, with both models
    group = {"pathology": "RV", "n": 2, "severities": [0.5, 1.0], "phases": ["ES"]}
    spec = {"name": "redis-tiny", "seed": 2, "models": {"vae": "t0", "spade": "t0"}, "pathologies": [group],
            "include_real": True}  # fmt: skip
    request = {"kind": "dataset", "spec": spec, "format": "monai"}
    job, _ = store.create("owner", request, weight=4, stage="dataset")
    dispatcher.submit(job.id, request)
    assert _wait(store, job.id, {JobState.SUCCEEDED, JobState.FAILED}, timeout=300) is JobState.SUCCEEDED
    done = store.get(job.id)
    assert done is not None
    assert done.result is not None
    assert done.timings["dataset"] > 0
    keys = sorted(f["key"] for f in done.result["files"])
    assert keys == _on_disk(storage, job.id)
    labels = [f for f in done.result["files"] if f["kind"] == "label" and f["source"] == "synthetic"]
    assert sorted((f["subject"], f["severity"]) for f in labels) == [
        ("RV_000", "0.50"), ("RV_000", "1.00"), ("RV_001", "0.50"), ("RV_001", "1.00")
    ]  # fmt: skip
    folder = Path(storage) / f"jobs/{job.id}/dataset"
    card = json.loads((folder / "dataset.json").read_text())
    assert card["made"]["synthetic"] == 2
    assert card["models"] == {"vae": "t0", "spade": "t0"}
    # format monai: the stored folder is a dataset MONAI reads as it is (paths relative to the list).
    from monai.data import load_decathlon_datalist

    training = load_decathlon_datalist(str(folder / "datalist.json"), data_list_key="training")
    validation = load_decathlon_datalist(str(folder / "datalist.json"), data_list_key="validation")
    items = training + validation
    assert len(items) == 5 * 2 + 2 * 2  # 5 real subjects x ED, ES; 2 synthetic x 2 severities x ES
    assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)
    assert done.result["export"]["key"] == f"jobs/{job.id}/export/redis-tiny-monai.zip"
