"""A job's archive in the embedded stack (separate gateway and worker processes, the filesystem broker,
SQLite, local storage): asked for with the job, built by the SPADE worker after finalize, downloaded
through the gateway's signed link, holding exactly the manifest's files; purged with the job."""

from __future__ import annotations

import io
import json
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from cardiosynth.embedded import Stack, running_stack, watch

pytestmark = pytest.mark.slow


def _get(stack: Stack, path: str) -> bytes:
    req = urllib.request.Request(stack.url + path, headers={"X-API-Key": stack.api_key})
    with urllib.request.urlopen(req, timeout=30) as response:  # follows the 307 to the signed link
        data: bytes = response.read()
        return data


@pytest.mark.usefixtures("embedded_models")
def test_embedded_stack_builds_downloads_and_purges_a_jobs_archive(
    phantom_root: Path, tmp_path: Path
) -> None:
    with running_stack(tmp_path / "state", data=phantom_root) as stack:
        body = {"pathology": "HCM", "n": 2, "model": "t0", "phases": ["ED"], "archive": True}
        status, job = stack.request("POST", "/synthesize", body)
        assert status == 202, job
        job_id = job["id"]
        *_, last = watch(stack, job_id)
        assert last["state"] == "succeeded", last
        deadline = time.monotonic() + 120
        while True:
            _, job = stack.request("GET", f"/jobs/{job_id}")
            if (job.get("archive") or {}).get("state") in ("ready", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert job["archive"]["state"] == "ready", job["archive"]
        status, again = stack.request("POST", f"/jobs/{job_id}/archive")
        assert status == 202
        assert again["state"] == "ready"
        data = _get(stack, f"/jobs/{job_id}/archive")
        assert len(data) == job["archive"]["bytes"]
        manifest = json.loads(_get(stack, f"/jobs/{job_id}/manifest"))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
        keys = sorted(f["key"].removeprefix("jobs/") for f in manifest["files"])
        assert names == [f"{job_id}/manifest.json", *keys]
        assert len(keys) == 2 * 4  # per subject: ED image + label, provenance, preview
        status, _ = stack.request("DELETE", f"/jobs/{job_id}?purge=true")
        assert status == 204
        assert not (tmp_path / "state" / "storage" / "jobs" / job_id).exists() or not any(
            p.is_file() for p in (tmp_path / "state" / "storage" / "jobs" / job_id).rglob("*")
        )
