"""Service benchmark on this machine: p50/p99 latency of POST /synthesize and GET /jobs/{id} at 50
concurrent clients, and end-to-end jobs per minute with the shipped models. Prints a table and JSON.

.venv/bin/python bench/api.py --data data/phantom --clients 50 --requests 20 --jobs 4 --n 5

Runs a real stack: a redis-server of its own on a free port (job store and broker), the gateway
under uvicorn, one VAE and one SPADE worker, local storage. Latency is measured with the workers
stopped (requests only queue jobs); the queued jobs are then cancelled and the workers started for
the end-to-end phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from cardiosynth.embedded import free_port


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def latency(url: str, key: str, clients: int, requests: int) -> dict[str, Any]:
    headers = {"X-API-Key": key}
    post_ms: list[float] = []
    get_ms: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:

        async def one_client(index: int) -> None:
            for r in range(requests):
                body = {"pathology": "HCM", "n": 1, "seed": index * requests + r}
                t = time.perf_counter()
                response = await client.post("/synthesize", json=body)
                post_ms.append(1000 * (time.perf_counter() - t))
                response.raise_for_status()
                job_id = response.json()["id"]
                t = time.perf_counter()
                (await client.get(f"/jobs/{job_id}")).raise_for_status()
                get_ms.append(1000 * (time.perf_counter() - t))

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
                "mean_ms": float(np.mean(values)), "count": len(values)}  # fmt: skip

    return {"post": summary(post_ms), "get": summary(get_ms), "requests_per_s": 2 * len(post_ms) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--requests", type=int, default=20, help="requests per client (each a POST and a GET)"
    )
    parser.add_argument("--jobs", type=int, default=4, help="end-to-end jobs")
    parser.add_argument("--n", type=int, default=5, help="subjects per end-to-end job")
    parser.add_argument("--gateway-workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("needs redis-server on PATH")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        state = Path(tmp)
        redis_port, port = free_port(), free_port()
        key = "bench-key-0123456789"
        env = {
            **os.environ,
            "CARDIOSYNTH_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CARDIOSYNTH_STORAGE_DIR": str(state / "storage"),
            "CARDIOSYNTH_SIGNING_KEY": "b" * 32,
            "CARDIOSYNTH_API_KEYS": key,
            "CARDIOSYNTH_MAX_QUEUED_PER_KEY": str(args.clients * args.requests + args.jobs + 10),
            "CARDIOSYNTH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CARDIOSYNTH_DATA_DIR": str(args.data.resolve()),
        }
        procs = [start([redis_bin, "--port", str(redis_port), "--save", "", "--appendonly", "no"], env,
                       state / "redis.log")]  # fmt: skip
        time.sleep(0.5)
        gateway = [sys.executable, "-m", "uvicorn", "cardiosynth.gateway.main:app", "--port", str(port)]
        gateway += ["--workers", str(args.gateway_workers), "--log-level", "warning"]
        procs.append(start(gateway, env, state / "gateway.log"))
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            lat = asyncio.run(latency(url, key, args.clients, args.requests))
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
                queued = client.get("/jobs", params={"state": "queued", "limit": 100}).json()
                while queued["items"]:
                    for job in queued["items"]:
                        client.delete(f"/jobs/{job['id']}")
                    queued = client.get("/jobs", params={"state": "queued", "limit": 100}).json()
                worker = [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "cardiosynth.workers.tasks",
                    "worker",
                    "--pool",
                    "solo",
                ]
                procs.append(start([*worker, "-Q", "vae", "-n", "vae@%h"], env, state / "vae.log"))
                procs.append(start([*worker, "-Q", "spade", "-n", "spade@%h"], env, state / "spade.log"))
                while client.get("/readyz").status_code != 200:
                    time.sleep(0.5)
                # Warm-up: models load and class statistics are computed once per worker process.
                warm = client.post("/synthesize", json={"pathology": "HCM", "n": 1, "seed": 999}).json()["id"]
                while client.get(f"/jobs/{warm}").json()["state"] not in ("succeeded", "failed"):
                    time.sleep(0.5)
                started = time.perf_counter()
                bodies = [{"pathology": "HCM", "n": args.n, "seed": s} for s in range(args.jobs)]
                ids = [client.post("/synthesize", json=body).json()["id"] for body in bodies]
                states = {}
                while len(states) < len(ids):
                    for job_id in ids:
                        state_now = client.get(f"/jobs/{job_id}").json()["state"]
                        if state_now in ("succeeded", "failed", "cancelled"):
                            states[job_id] = state_now
                    time.sleep(0.5)
                e2e_s = time.perf_counter() - started
        finally:
            for proc in reversed(procs):
                stop(proc)
    result = {
        "clients": args.clients,
        "gateway_workers": args.gateway_workers,
        "requests_per_client": args.requests,
        "latency": lat,
        "end_to_end": {
            "jobs": args.jobs,
            "subjects_per_job": args.n,
            "seconds": e2e_s,
            "jobs_per_min": 60 * args.jobs / e2e_s,
            "subjects_per_min": 60 * args.jobs * args.n / e2e_s,
            "succeeded": sum(s == "succeeded" for s in states.values()),
        },
    }
    print(f"{'endpoint':24s} {'p50 ms':>8s} {'p99 ms':>8s} {'count':>6s}")
    for name, label in (("post", "POST /synthesize"), ("get", "GET /jobs/{id}")):
        row = lat[name]
        print(f"{label:24s} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['count']:6d}")
    e = result["end_to_end"]
    print(f"end to end: {e['jobs']} jobs x {e['subjects_per_job']} subjects in {e['seconds']:.1f} s = "
          f"{e['jobs_per_min']:.2f} jobs/min ({e['subjects_per_min']:.1f} subjects/min), "
          f"{e['succeeded']} succeeded")  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
