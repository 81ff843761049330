"""Gateway throughput against its floor, measured in one run (issue 13).

    nice -n 10 .venv/bin/python bench/api_floor.py --seconds 3 --rounds 5 --clients 50 200

- floor: a bare FastAPI app under the same uvicorn settings as the gateway, answering one Redis hash
  (the gateway's own record of a job, read with the asyncio Redis client) as JSON;
- ``GET /jobs/{id}`` of the gateway (a queued job of the client's key), and the same with the ETag the
  client already holds (``If-None-Match``: 304);
- ``POST /synthesize`` of the gateway: a job created in the Redis job store and a task published to the
  Celery broker (Redis), with no worker consuming it.

The load generator is one asyncio process speaking HTTP/1.1 over keep-alive connections (one per
client, no HTTP library in the way: it is not the bottleneck, and its own CPU use is printed). With
``--pin`` the servers run on CPU 0 and the generator and Redis on CPU 1. Each client has its own API
key (the per-key caps are raised so nothing is refused). The endpoints take turns within each round
(a busy spell of a shared machine falls on all of them), and each ratio to the floor is the median
over rounds of the ratio within a round. Requests/s, p50 and p99 per endpoint and client count, then
the ratios against the targets (GET >= 50 %, POST >= 30 %, p99 at 50 clients <= 5 x p50).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


# -- the floor: a bare FastAPI app reading one Redis hash --------------------------------------------


def make_floor_app() -> Any:
    """``GET /floor``: the hash ``$FLOOR_KEY`` of ``$FLOOR_REDIS_URL`` as JSON (asyncio Redis client)."""
    import redis.asyncio as aioredis
    from fastapi import FastAPI, Response

    # A blocking pool: more concurrent requests than connections wait for one (the default pool
    # refuses them with MaxConnectionsError above its limit).
    pool = aioredis.BlockingConnectionPool.from_url(os.environ["FLOOR_REDIS_URL"], max_connections=64)
    client = aioredis.Redis(connection_pool=pool)
    key = os.environ["FLOOR_KEY"]
    app = FastAPI()

    @app.get("/floor")
    async def floor() -> Response:
        raw = await client.hgetall(key)
        body = json.dumps({k.decode(): v.decode() for k, v in raw.items()})
        return Response(body, media_type="application/json")

    return app


floor_app = make_floor_app() if "FLOOR_REDIS_URL" in os.environ else None


# -- the load generator ---------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    clients: int
    requests: int
    rps: float  # the median of the rounds'
    rps_rounds: list[int]
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    generator_cpu: float  # the generator's CPU seconds per wall second (1.0 = one core saturated)


async def _client(
    port: int, request: Callable[[int], bytes], stop_at: float, record: bool, latencies: list[float],
    statuses: Counter[int],
) -> None:  # fmt: skip
    """One keep-alive connection sending ``request(i)`` after each answer until ``stop_at``; a dropped
    connection is counted (status 0) and opened again."""
    i = 0
    while time.perf_counter() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            statuses[0] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.perf_counter() < stop_at:
                data = request(i)
                i += 1
                started = time.perf_counter()
                writer.write(data)
                head = await reader.readuntil(b"\r\n\r\n")
                match = _LENGTH.search(head)
                if match is None and b"chunked" in head.lower():
                    raise RuntimeError(f"chunked answer not supported: {head[:200]!r}")
                if match is not None and int(match.group(1)):
                    await reader.readexactly(int(match.group(1)))
                if record:
                    latencies.append(time.perf_counter() - started)
                    statuses[int(head[9:12])] += 1
        except (OSError, asyncio.IncompleteReadError):
            statuses[0] += 1
        finally:
            writer.close()


async def _load(port: int, requests: list[Callable[[int], bytes]], seconds: float, warmup_s: float) -> tuple[
    list[float], Counter[int], float, float
]:  # fmt: skip
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    now = time.perf_counter()
    await asyncio.gather(*(_client(port, r, now + warmup_s, False, [], Counter()) for r in requests))
    cpu, started = time.process_time(), time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_client(port, r, stop_at, True, latencies, statuses) for r in requests))
    wall = time.perf_counter() - started
    return latencies, statuses, wall, (time.process_time() - cpu) / wall


def measure(
    plans: list[tuple[str, int, list[Callable[[int], bytes]]]], seconds: float, warmup_s: float, rounds: int
) -> list[Row]:
    """``rounds`` rounds, each running every plan for ``seconds`` in turn (interleaved, so that a busy
    spell of a shared machine falls on all of them alike): requests/s is the median of the rounds,
    p50 and p99 of every latency."""
    latencies: list[list[float]] = [[] for _ in plans]
    statuses: list[Counter[int]] = [Counter() for _ in plans]
    rates: list[list[float]] = [[] for _ in plans]
    cpus: list[float] = []
    for _ in range(rounds):
        for i, (_, port, requests) in enumerate(plans):
            lat, answered, wall, cpu = asyncio.run(_load(port, requests, seconds, warmup_s))
            latencies[i] += lat
            statuses[i] += answered
            rates[i].append(len(lat) / wall)
            cpus.append(cpu)
    rows = []
    for i, (name, _, requests) in enumerate(plans):
        ms = np.array(latencies[i]) * 1000
        p50, p99 = (float(np.percentile(ms, q)) for q in (50, 99))
        codes = {str(k): v for k, v in sorted(statuses[i].items())}
        rps, each = float(np.median(rates[i])), [round(r) for r in rates[i]]
        rows.append(Row(name, len(requests), len(latencies[i]), rps, each, p50, p99, codes, max(cpus)))
    return rows


def paired_ratio(row: Row, floor: Row) -> float:
    """The median over rounds of the row's requests/s over the floor's in the same round."""
    return float(np.median([r / f for r, f in zip(row.rps_rounds, floor.rps_rounds, strict=True)]))


def get(path: str, headers: dict[str, str]) -> Callable[[int], bytes]:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    data = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode()
    return lambda _: data


def post_synthesize(key: str, client: int) -> Callable[[int], bytes]:
    def request(i: int) -> bytes:
        body = json.dumps({"pathology": "HCM", "n": 1, "seed": client * 1_000_000 + i}).encode()
        head = (f"POST /synthesize HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        return head.encode() + body

    return request


# -- the run ------------------------------------------------------------------------------------------


def start(cmd: list[str], env: dict[str, str], log: Path, cpus: str | None) -> subprocess.Popen[bytes]:
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_http(port: int, path: str, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered on port {port} after {timeout_s} s")
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per row")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each runs every endpoint)")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each row")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, generator and Redis on CPU 1")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    import httpx

    from cardiosynth.embedded import free_port

    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("needs redis-server on PATH")
    server_cpus, side_cpus = ("0", "1") if args.pin else (None, None)
    if args.pin:
        os.sched_setaffinity(0, {1})
    keys = [f"bench-key-{i:04d}-0123456789" for i in range(max(args.clients))]
    load_before = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        state = Path(tmp)
        redis_port, gateway_port, floor_port = free_port(), free_port(), free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = {
            **os.environ,
            "CARDIOSYNTH_REDIS_URL": redis_url,
            "CARDIOSYNTH_STORAGE_DIR": str(state / "storage"),
            "CARDIOSYNTH_SIGNING_KEY": "b" * 32,
            "CARDIOSYNTH_API_KEYS": ",".join(keys),
            "CARDIOSYNTH_MAX_QUEUED_PER_KEY": "1000000",
            "CARDIOSYNTH_MAX_SUBJECTS_IN_FLIGHT_PER_KEY": "1000000",
            "CARDIOSYNTH_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
        }
        procs = [start([redis_bin, "--port", str(redis_port), "--save", "", "--appendonly", "no"], env,
                       state / "redis.log", side_cpus)]  # fmt: skip
        # The same uvicorn settings for both apps: one process, the default loop and HTTP parser.
        uvicorn = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--workers",
            "1",
            "--log-level",
            "warning",
        ]
        procs.append(start([*uvicorn, "cardiosynth.gateway.main:app", "--port", str(gateway_port)], env,
                           state / "gateway.log", server_cpus))  # fmt: skip
        try:
            wait_http(gateway_port, "/healthz")
            # One queued job per key: what GET /jobs/{id} reads, and the hash the floor reads.
            job_ids = []
            with httpx.Client(base_url=f"http://127.0.0.1:{gateway_port}", timeout=30) as http:
                for key in keys:
                    r = http.post(
                        "/synthesize", json={"pathology": "HCM", "n": 1}, headers={"X-API-Key": key}
                    )
                    r.raise_for_status()
                    job_ids.append(r.json()["id"])
                etags = [http.get(f"/jobs/{j}", headers={"X-API-Key": k}).headers["ETag"]
                         for j, k in zip(job_ids, keys, strict=True)]  # fmt: skip
            floor_env = {**env, "FLOOR_REDIS_URL": redis_url, "FLOOR_KEY": f"cs:job:{job_ids[0]}"}
            procs.append(start([*uvicorn, "--app-dir", str(ROOT / "bench"), "api_floor:floor_app", "--port",
                                str(floor_port)], floor_env, state / "floor.log", server_cpus))  # fmt: skip
            wait_http(floor_port, "/floor")
            for clients in args.clients:
                plans: list[tuple[str, int, list[Callable[[int], bytes]]]] = [
                    ("floor GET (bare FastAPI + Redis hash)", floor_port, [get("/floor", {})] * clients),
                    ("GET /jobs/{id}", gateway_port,
                     [get(f"/jobs/{job_ids[c]}", {"X-API-Key": keys[c]}) for c in range(clients)]),
                    ("GET /jobs/{id} If-None-Match (304)", gateway_port,
                     [get(f"/jobs/{job_ids[c]}", {"X-API-Key": keys[c], "If-None-Match": etags[c]})
                      for c in range(clients)]),
                    ("POST /synthesize", gateway_port, [post_synthesize(keys[c], c) for c in range(clients)]),
                ]  # fmt: skip
                for row in measure(plans, args.seconds, args.warmup, args.rounds):
                    rows.append(row)
                    print(f"{row.name:40s} {clients:4d} clients {row.rps:8.0f} req/s {row.rps_rounds}  "
                          f"p50 {row.p50_ms:7.1f} ms  p99 {row.p99_ms:7.1f} ms  {row.statuses}  "
                          f"generator cpu {row.generator_cpu:.2f}", flush=True)  # fmt: skip
        finally:
            for proc in reversed(procs):
                stop(proc)
            if any(set(r.statuses) - {"200", "202", "304"} for r in rows):
                for name in ("floor.log", "gateway.log"):  # why some requests failed
                    text = (state / name).read_text(errors="replace") if (state / name).exists() else ""
                    print(f"--- {name} (last 3000 characters)\n{text[-3000:]}")
    load_after = os.getloadavg()
    print()
    print(f"load average before {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, "
          f"after {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f} on {os.cpu_count()} CPUs; "
          f"pinned: {args.pin}")  # fmt: skip
    by = {(r.name, r.clients): r for r in rows}
    print(f"{'clients':>7s} {'GET/floor':>10s} {'304/floor':>10s} {'POST/floor':>11s} {'p99/p50 GET':>12s} "
          f"{'p99/p50 POST':>13s}")  # fmt: skip
    for clients in args.clients:
        floor = by[("floor GET (bare FastAPI + Redis hash)", clients)]
        g, c, p = (by[(n, clients)] for n in ("GET /jobs/{id}", "GET /jobs/{id} If-None-Match (304)",
                                              "POST /synthesize"))  # fmt: skip
        print(f"{clients:7d} {paired_ratio(g, floor):10.0%} {paired_ratio(c, floor):10.0%} "
              f"{paired_ratio(p, floor):11.0%} "
              f"{g.p99_ms / g.p50_ms:12.1f} {p.p99_ms / p.p50_ms:13.1f}")  # fmt: skip
    print("ratios: the median over rounds of each round's requests/s over the floor's in that round")
    print("targets: GET >= 50 % of the floor, POST >= 30 %, p99 <= 5 x p50 at 50 clients")
    if args.json is not None:
        out = {"rows": [asdict(r) for r in rows], "load_before": load_before, "load_after": load_after,
               "pinned": args.pin}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
