"""A job's archive with real Redis and real Celery worker processes: asked for with the job, the
archive task goes through the broker to the SPADE queue after finalize and leaves a tar of exactly the
manifest's files, recorded ready on the job."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from cardiosynth.jobs.archive import archive_key
from cardiosynth.jobs.base import JobState
from tests.workers.test_graph_workers import REQUEST, Start, _live, _setup, _tails, _until, env, workers  # noqa: F401

pytestmark = pytest.mark.slow


def test_the_archive_task_runs_on_a_spade_worker_after_finalize(
    env: dict[str, str],  # noqa: F811
    workers: Start,  # noqa: F811
    tmp_path: Path,
) -> None:
    store, dispatcher, storage = _setup(env)
    workers("vae", chunk_size=2)
    workers("spade", chunk_size=2)
    _live(dispatcher, {"vae": 1, "spade": 1})
    job, _ = store.create("alice", {**REQUEST, "n": 3, "archive": True})
    dispatcher.submit(job.id, job.request)

    def archived() -> bool:
        got = store.get(job.id, result=False)
        assert got is not None
        assert got.state not in (JobState.FAILED, JobState.CANCELLED), (got.error, _tails(tmp_path))
        return (got.archive or {}).get("state") in ("ready", "failed")

    _until(archived, "the archive", timeout=300)
    done = store.get(job.id)
    assert done is not None
    assert done.archive is not None
    assert done.archive["state"] == "ready", (done.archive, _tails(tmp_path))
    data = (storage / archive_key(job.id)).read_bytes()
    assert len(data) == done.archive["bytes"]
    manifest = json.loads((storage / "jobs" / job.id / "manifest.json").read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    keys = sorted(f["key"].removeprefix("jobs/") for f in manifest["files"])
    assert names == [f"{job.id}/manifest.json", *keys]
    assert len(keys) == 3 * 4
    assert "cardiosynth.archive" in (tmp_path / "spade.log").read_text(errors="replace")
