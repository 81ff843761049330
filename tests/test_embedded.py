"""The embedded stack as users run it: separate gateway and worker processes, no Redis, no S3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cardiosynth.embedded import run_job, running_stack

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("embedded_models")
def test_embedded_stack_runs_a_job_cancels_and_rejects(phantom_root: Path, tmp_path: Path) -> None:
    assert "CARDIOSYNTH_REDIS_URL" not in os.environ
    lines: list[str] = []
    with running_stack(tmp_path / "state", data=phantom_root) as stack:
        results = run_job(
            stack, {"pathology": "DCM", "n": 1, "model": "t0"}, tmp_path / "out", echo=lines.append
        )
        status, problem = stack.request("POST", "/synthesize", {"pathology": "DCM", "n": 5001})
        assert status == 422
        assert "n" in problem["detail"]
        status, job = stack.request("POST", "/synthesize", {"pathology": "HCM", "n": 1, "model": "t0"})
        assert status == 202
        status, cancelled = stack.request("DELETE", f"/jobs/{job['id']}")
        assert status in (200, 409)  # 409 only if it already finished
        if status == 200:
            assert cancelled["state"] == "cancelled"
            _, after = stack.request("GET", f"/jobs/{job['id']}")
            assert after["state"] == "cancelled"
    assert any("succeeded" in line for line in lines)
    files = sorted(p.name for p in (tmp_path / "out" / "DCM_000").iterdir())
    expected = [f"DCM_000_s1.00_{ph}{kind}.nii.gz" for ph in ("ED", "ES") for kind in ("", "_gt")]
    assert files == sorted([*expected, "preview.png", "provenance.json"])
    assert set(results["biomarkers"]) == {"DCM_000"}
    assert not any(p.poll() is None for p in stack.processes.values())  # everything stopped
