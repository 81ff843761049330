"""The API client of scripts/compose-smoke.sh: submit a job through the gateway, poll it, download
every output through its presigned URL and open it with nibabel.

Runs on the host with the project's environment (.venv): the smoke test checks the stack as a user's
machine sees it, through 127.0.0.1 only.

    python docker/smoke_client.py submit                     # prints the job id
    python docker/smoke_client.py stage JOB                  # waits until it runs; prints its stage
    python docker/smoke_client.py wait JOB                   # polls to "succeeded" (fails otherwise)
    python docker/smoke_client.py fetch JOB                  # downloads and opens every file
    python docker/smoke_client.py state JOB                  # its state now

Settings: SMOKE_GATEWAY (http://127.0.0.1:18000), SMOKE_REDIS (redis://127.0.0.1:16379/0),
CARDIOSYNTH_API_KEYS (the first key is used).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

log = logging.getLogger("smoke")

GATEWAY = os.environ.get("SMOKE_GATEWAY", "http://127.0.0.1:18000")
REDIS = os.environ.get("SMOKE_REDIS", "redis://127.0.0.1:16379/0")


def _key() -> str:
    keys = [k.strip() for k in os.environ.get("CARDIOSYNTH_API_KEYS", "").split(",") if k.strip()]
    if not keys:
        raise ValueError("CARDIOSYNTH_API_KEYS is empty: the smoke client needs the stack's API key")
    return keys[0]


def call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One gateway request; (status, decoded JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(GATEWAY + path, data=data, method=method)
    req.add_header("X-API-Key", _key())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def job(job_id: str) -> dict[str, Any]:
    status, body = call("GET", f"/jobs/{job_id}")
    if status != 200:
        raise RuntimeError(f"GET /jobs/{job_id}: {status} {body}")
    result: dict[str, Any] = body
    return result


def submit(n: int) -> str:
    status, body = call("POST", "/synthesize", {"pathology": "HCM", "n": n})
    if status != 202:
        raise RuntimeError(f"POST /synthesize: {status} {body}")
    job_id: str = body["id"]
    log.info("submitted job %s (HCM, n=%d)", job_id, n)
    return job_id


def wait(job_id: str, timeout_s: float) -> dict[str, Any]:
    """Poll until the job is terminal; fail unless it succeeded."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        body = job(job_id)
        line = f"{body['state']} {json.dumps(body['progress'], sort_keys=True)}"
        if line != last:
            log.info("job %s: %s", job_id, line)
            last = line
        if body["state"] == "succeeded":
            return body
        if body["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {job_id} ended {body['state']}: {body.get('error')}")
        time.sleep(2)
    raise TimeoutError(f"job {job_id} not finished after {timeout_s:.0f} s (last: {last})")


def stage(job_id: str, timeout_s: float) -> str:
    """Wait until a worker holds part of the job; the queue of that worker (``vae`` or ``spade``).

    A /synthesize job runs as a stage graph (its record says stage ``graph``): each task holds a lease
    (kind, chunk) in the job store, and the kind names the queue. A job of single stages says its queue
    as its stage."""
    from cardiosynth import queues
    from cardiosynth.jobs.factory import open_job_store

    # The stage graph's names where this checkout has it (issue 13); a stage per queue before it.
    graph_stage: str | None = getattr(queues, "GRAPH_STAGE", None)
    graph_kinds: dict[str, str] = getattr(queues, "GRAPH_KINDS", {})
    store = open_job_store(REDIS, prefix="cs")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = store.get(job_id)
        if record is None:
            raise RuntimeError(f"job {job_id} has no record in {REDIS}")
        if record.state.value in ("succeeded", "failed", "cancelled"):
            raise RuntimeError(f"job {job_id} ended ({record.state.value}) before a worker could be killed")
        if record.state.value == "running" and record.stage != graph_stage:
            log.info("job %s: running at stage %s", job_id, record.stage)
            return str(record.stage)
        graph = store.graph(job_id) if record.state.value == "running" else None
        if graph is not None and graph.held:
            kind, index = next(iter(graph.held))
            log.info("job %s: task %s of chunk %d held on queue %s", job_id, kind, index, graph_kinds[kind])
            return graph_kinds[kind]
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not running after {timeout_s:.0f} s")


def fetch(job_id: str) -> int:
    """Download every output through its presigned URL and open it with nibabel; the file count."""
    import nibabel as nib

    status, body = call("GET", f"/jobs/{job_id}/results")
    if status != 200:
        raise RuntimeError(f"GET /jobs/{job_id}/results: {status} {body}")
    files = body["files"]
    if not files:
        raise RuntimeError(f"job {job_id} succeeded with no files")
    images = 0
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(files):
            # The URL as a user gets it: presigned for the public S3 endpoint, no API key.
            with urllib.request.urlopen(f["url"], timeout=60) as resp:
                data = resp.read()
            total += len(data)
            name = Path(f["key"]).name
            if name.endswith((".nii", ".nii.gz")):
                path = Path(tmp) / f"{i}_{name}"
                path.write_bytes(data)
                img = nib.load(path)
                arr = img.get_fdata()
                if arr.size == 0 or len(img.shape) < 3:
                    raise RuntimeError(f"{f['key']}: unexpected image shape {img.shape}")
                images += 1
    log.info(
        "job %s: %d files (%d NIfTI, all opened with nibabel), %d bytes", job_id, len(files), images, total
    )
    if images == 0:
        raise RuntimeError(f"job {job_id}: no NIfTI among {len(files)} files")
    return len(files)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="compose-smoke: %(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["submit", "stage", "wait", "fetch", "state"])
    parser.add_argument("job", nargs="?")
    parser.add_argument("-n", type=int, default=2, help="subjects per job (submit)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (stage, wait)")
    args = parser.parse_args(argv)
    if args.command != "submit" and not args.job:
        parser.error(f"{args.command} needs a job id")
    try:
        if args.command == "submit":
            sys.stdout.write(submit(args.n) + "\n")
        elif args.command == "stage":
            sys.stdout.write(stage(args.job, args.timeout) + "\n")
        elif args.command == "wait":
            wait(args.job, args.timeout)
        elif args.command == "fetch":
            fetch(args.job)
        else:
            sys.stdout.write(job(args.job)["state"] + "\n")
    except (RuntimeError, TimeoutError, ValueError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
