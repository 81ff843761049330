"""Chaos suite: each fault scenario of issue 15 against a real stack on loopback, as a table.

.venv/bin/cardiosynth phantom --out /tmp/chaos-phantom --subjects 10 --seed 0   # small data, once
.venv/bin/python bench/chaos.py --data /tmp/chaos-phantom --out reports/chaos   # every row: ~12 min
.venv/bin/python bench/chaos.py --data /tmp/chaos-phantom --quick    # Redis-mode rows: ~5-8 min
.venv/bin/python bench/chaos.py --data /tmp/chaos-phantom --only cap_race,kill_vae:redis --keep

Times are for 2 CPU cores. The stack runs the code that ``cardiosynth`` imports; to test a commit
while the working tree changes, unpack it and point ``PYTHONPATH`` at it (children inherit it):
``git archive HEAD services | tar -x -C /tmp/snap && PYTHONPATH=/tmp/snap/services .venv/bin/python
bench/chaos.py ...``.

Black box: the suite talks HTTP to the gateway, SIGKILLs and restarts its own processes, stops its
own redis-server, locks its own SQLite file, and looks at its own storage folder; it imports nothing
of the service but the stack launcher (bench/stack.py). Everything runs under a temporary folder on
127.0.0.1; every loop is bounded in count and time, and an alarm ends the run past ``--limit-s``.

One row per scenario and mode: tries (the scenario's unit: requests, POSTs, probes, jobs or kill
attempts), jobs lost (accepted, then 404), jobs stuck (not finished
within the scenario's bound), partial files left (stored files no result lists), 500 and 503
answers, dropped connections (no HTTP answer at all), and PASS/FAIL against the issue's targets:
0 lost, 0 stuck, 0 partial files, 0 dropped, 503 and never 500 for a dependency outage, and the
scenario's own target (named in its ``checks``).

Short timings come from the settings the service reads (``CARDIOSYNTH_HEARTBEAT_S``,
``CARDIOSYNTH_HEARTBEAT_STALE_S``, ...; see ``SETTINGS``); the Redis visibility timeout keeps its
default (hours: the reaper, not the broker, redelivers a dead worker's stage).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import Stack, Up, wait_for

log = logging.getLogger("chaos")

TERMINAL = {"succeeded", "failed", "cancelled"}
CAP = 10  # CARDIOSYNTH_MAX_QUEUED_PER_KEY of every stack here
STALE_S = 15  # the reaper's heartbeat_stale_s (heartbeats every second here)
REAPER_PASS_S = STALE_S / 4  # the gateway's reaper runs every min(heartbeat_stale_s / 4, 30) s
# README's delivery bound: a stage whose worker died is queued again once its heartbeat is older than
# heartbeat_stale_s, at the next reaper pass, then waits for and runs on a free worker. Here that is a
# worker started at once, which loads its models, then the job's remaining stages (n = 4): 90 s for
# those on two cores shared with other work (measured: 60-80 s at a load average of 12).
REDELIVERY_BOUND_S = round(STALE_S + REAPER_PASS_S + 90)
SETTINGS = {
    "CARDIOSYNTH_MAX_QUEUED_PER_KEY": str(CAP),
    "CARDIOSYNTH_HEARTBEAT_S": "1",
    "CARDIOSYNTH_HEARTBEAT_STALE_S": str(STALE_S),
}
# What a client must never read in an error: absolute paths, URLs of internal services, tracebacks.
LEAKS = re.compile(
    r"(?<![\w.<])/(?:tmp|work|home|root|usr|var|opt|srv|app)\b|[a-z][a-z0-9+.-]*://|"
    r"127\.0\.0\.1|localhost|Traceback|File \""
)


# -- results -------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One scenario in one mode."""

    scenario: str
    mode: str
    tries: int = 0
    lost: int | None = 0
    stuck: int | None = 0
    partial: int | None = 0
    s500: int = 0
    s503: int = 0
    other5xx: int = 0
    dropped: int = 0
    seconds: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        return "PASS" if self.checks and all(self.checks.values()) else "FAIL"

    def check(self, name: str, ok: bool) -> None:
        self.checks[name] = bool(ok)

    def standard(self, *, outage: bool = False) -> None:
        """The checks every row shares (``outage``: 503 is the expected answer, 500 never is)."""
        self.check("0 lost", not self.lost)
        self.check("0 stuck", not self.stuck)
        self.check("0 partial files", not self.partial)
        self.check("0 dropped", self.dropped == 0)
        self.check(
            "0 500" if outage else "0 5xx",
            self.s500 == 0 and self.other5xx == 0 and (outage or self.s503 == 0),
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


class Tally:
    """Counts the answers of every request a scenario makes (thread-safe)."""

    def __init__(self, row: Row) -> None:
        self.row = row
        self.codes: Counter[int] = Counter()
        self.lock = threading.Lock()

    def call(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """The response, or ``None`` when no HTTP answer came (counted as dropped)."""
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            self._count(None, "timeout")
            return None
        except httpx.TransportError as exc:
            self._count(None, type(exc).__name__)
            return None
        self._count(response.status_code, None)
        return response

    def _count(self, status: int | None, failure: str | None) -> None:
        with self.lock:
            if status is None:
                self.row.dropped += 1
                self.codes[0] += 1
                note = f"no answer: {failure}"
                if note not in self.row.notes:
                    self.row.notes.append(note)
                return
            self.codes[status] += 1
            if status == 500:
                self.row.s500 += 1
            elif status == 503:
                self.row.s503 += 1
            elif status >= 500:
                self.row.other5xx += 1


# -- job helpers -----------------------------------------------------------------------------------------


def submit(tally: Tally, client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> str | None:
    response = tally.call(client, "POST", "/synthesize", json=body, **kwargs)
    if response is None or response.status_code != 202:
        return None
    return str(response.json()["id"])


def job_state(tally: Tally, client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    """The job (``{"state": "404"}`` when the API no longer knows it), or ``None`` without an answer."""
    response = tally.call(client, "GET", f"/jobs/{job_id}")
    if response is None:
        return None
    if response.status_code == 404:
        return {"state": "404", "detail": response.json().get("detail")}
    if response.status_code != 200:
        return {"state": f"http {response.status_code}"}
    job: dict[str, Any] = response.json()
    return job


def wait_jobs(
    tally: Tally,
    client: httpx.Client,
    ids: list[str],
    timeout_s: float,
    *,
    gone_after_s: float = 30.0,
    alive: Callable[[], bool] | None = None,
) -> dict[str, dict[str, Any]]:
    """Poll until every job is finished (or has answered 404 for ``gone_after_s``), ``timeout_s``
    passes, or ``alive`` says the stack is gone."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, dict[str, Any]] = {}
    first_404: dict[str, float] = {}
    while time.monotonic() < deadline and (alive is None or alive()):
        for job_id in ids:
            if last.get(job_id, {}).get("state") in TERMINAL:
                continue
            job = job_state(tally, client, job_id)
            if job is not None:
                last[job_id] = job
                if job["state"] == "404":
                    first_404.setdefault(job_id, time.monotonic())
        done = all(
            last.get(i, {}).get("state") in TERMINAL
            or (i in first_404 and time.monotonic() - first_404[i] > gone_after_s)
            for i in ids
        )
        if done:
            break
        time.sleep(0.5)
    return last


def outcome(row: Row, jobs: dict[str, dict[str, Any]], ids: list[str]) -> None:
    """Lost (404) and stuck (unfinished) counts of ``ids``; their states go to the notes."""
    states = Counter(jobs.get(i, {}).get("state", "no answer") for i in ids)
    row.lost = (row.lost or 0) + states.get("404", 0)
    row.stuck = (row.stuck or 0) + sum(v for k, v in states.items() if k not in TERMINAL and k != "404")
    row.notes.append("states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))


def _is_manifest(key: str, job_id: str) -> bool:
    path = PurePosixPath(key)
    return path.name == "manifest.json" and path.parent.name == job_id


def leftovers(stack: Stack, tally: Tally, client: httpx.Client, job_id: str, state: str) -> int:
    """Stored files of the job that its results do not list (a succeeded job's work files and its
    manifest, ``GET /jobs/{id}/manifest``, aside)."""
    on_disk = set(stack.job_files(job_id))
    listed: set[str] = set()
    if state == "succeeded":
        response = tally.call(client, "GET", f"/jobs/{job_id}/results")
        if response is not None and response.status_code == 200:
            listed = {f["key"] for f in response.json()["files"]}
        on_disk = {k for k in on_disk if "/work/" not in k and not _is_manifest(k, job_id)}
    return len(on_disk - listed)


def finished(tally: Tally, client: httpx.Client, job_id: str) -> bool:
    return (job_state(tally, client, job_id) or {}).get("state") in TERMINAL


def outputs(stack: Stack, job_id: str) -> list[str]:
    return [k for k in stack.job_files(job_id) if "/work/" not in k]


def settle_queue(stack: Stack, key: str) -> None:
    """Cancel every unfinished job of ``key`` (so the next scenario starts with empty queues)."""
    with stack.client(key) as client:
        for _ in range(20):
            response = client.get("/jobs", params={"limit": 100})
            if response.status_code != 200:
                return
            open_jobs = [j for j in response.json()["items"] if j["state"] not in TERMINAL]
            if not open_jobs:
                return
            for job in open_jobs:
                client.delete(f"/jobs/{job['id']}")


# -- the suite -----------------------------------------------------------------------------------------


class Suite:
    """Stacks shared by the scenarios (started on first use), the rows, the time budget."""

    def __init__(self, root: Path, data: Path, *, quick: bool) -> None:
        self.root = root
        self.data = data
        self.quick = quick
        self.rows: list[Row] = []
        self._stacks: dict[str, Stack] = {}
        self._up: Up | None = None

    # A gateway without workers (nothing leaves the queue): caps, limits, outages of the store.
    def bare(self, mode: str) -> Stack:
        name = f"bare-{mode}"
        if name not in self._stacks:
            stack = Stack(self.root / name, mode=mode, data=self.data, keys=keys(), settings=SETTINGS)
            self._stacks[name] = stack
            stack.start_gateway()
        return self._stacks[name]

    # Gateway + one VAE worker + one SPADE worker, warmed up by one job (models and statistics loaded).
    def full(self, mode: str = "redis", *, warm: bool = True) -> Stack:
        """``warm``: run one job first, so that models and statistics are loaded before the scenario."""
        name = f"full-{mode}"
        if name not in self._stacks:
            self._close_full()  # one set of workers at a time on two cores
            stack = Stack(self.root / name, mode=mode, data=self.data, keys=keys(), settings=SETTINGS)
            self._stacks[name] = stack
            stack.start_gateway()
            stack.start_worker("vae")
            stack.start_worker("spade")
            if not stack.wait_ready(180):
                raise RuntimeError("the stack was not ready after 180 s")
            if not warm:
                return stack
            with stack.client("warm") as client:
                job = client.post("/synthesize", json={"pathology": "HCM", "n": 1, "seed": 1}).json()
                wait_for(lambda: client.get(f"/jobs/{job['id']}").json()["state"] in TERMINAL, 240, 0.5)
        return self._stacks[name]

    def _close_full(self) -> None:
        for name in [n for n in self._stacks if n.startswith("full-")]:
            with contextlib.suppress(Exception):
                self._stacks.pop(name).close()

    def up(self) -> Up:
        if self._up is None:
            self._close_full()
            self._up = Up(self.root / "up" / "state", self.data)
        return self._up

    def close(self) -> None:
        for stack in self._stacks.values():
            with contextlib.suppress(Exception):
                stack.close()
        if self._up is not None:
            self._up.stop()

    def run(self, name: str, mode: str, scenario: Callable[[Suite, Row], None]) -> Row:
        row = Row(name, mode)
        started = time.monotonic()
        log.info("scenario %s (%s) ...", name, mode)
        try:
            scenario(self, row)
        except Exception as exc:
            log.exception("scenario %s (%s) raised", name, mode)
            row.error = f"{type(exc).__name__}: {exc}"[:300]
        row.seconds = time.monotonic() - started
        log.info("scenario %s (%s): %s in %.0f s", name, mode, row.verdict, row.seconds)
        self.rows.append(row)
        return row


def keys() -> list[str]:
    """One API key per scenario, so that no scenario sees another's jobs or queue cap."""
    names = [
        "warm",
        "outage",
        "race-redis",
        "race-embedded",
        "big",
        "idem-redis",
        "idem-embedded",
        "store",
        "ready",
        "errors",
        "reaper",
        "killvae",
        "killspade",
        "cancel",
        "restart",
        "restart-np",
    ]
    return [key(n) for n in names]


def key(name: str) -> str:
    return "warm" if name == "warm" else f"chaos-{name}-0123456789abcdef"


# -- scenarios -------------------------------------------------------------------------------------------


def redis_outage(suite: Suite, row: Row) -> None:
    """Traffic from 8 clients; Redis (job store and broker) stopped for 3 s and restarted with its
    data. Every request gets an HTTP answer; during the outage 503, never 500; jobs accepted before
    or after it are still there."""
    stack = suite.bare("redis")
    assert stack.redis is not None
    tally = Tally(row)
    accepted: list[str] = []
    phase = {"name": "before"}
    by_phase: dict[str, Counter[int]] = {"before": Counter(), "outage": Counter(), "after": Counter()}
    stop = threading.Event()
    before_s, outage_s, after_s = (2.0, 3.0, 4.0) if suite.quick else (3.0, 3.0, 6.0)

    def client_loop(index: int) -> None:
        with stack.client(key("outage"), timeout_s=20) as client:
            seed = index * 10_000
            while not stop.is_set():
                seed += 1
                current = phase["name"]
                response = tally.call(
                    client, "POST", "/synthesize", json={"pathology": "NOR", "n": 1, "seed": seed}
                )
                by_phase[current][response.status_code if response is not None else 0] += 1
                if response is not None and response.status_code == 202:
                    job_id = response.json()["id"]
                    accepted.append(job_id)
                    for method in ("GET", "DELETE"):
                        current = phase["name"]
                        answer = tally.call(client, method, f"/jobs/{job_id}")
                        by_phase[current][answer.status_code if answer is not None else 0] += 1
                answer = tally.call(client, "GET", "/jobs", params={"limit": 5})
                by_phase[phase["name"]][answer.status_code if answer is not None else 0] += 1

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(before_s)
    phase["name"] = "outage"
    stack.redis.stop()
    time.sleep(outage_s)
    stack.redis.start(persistent=True)
    phase["name"] = "after"
    time.sleep(after_s)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    row.tries = sum(tally.codes.values())
    with stack.client(key("outage")) as client:
        jobs = {i: job_state(tally, client, i) or {"state": "no answer"} for i in accepted}
    row.lost = sum(j["state"] == "404" for j in jobs.values())
    row.stuck = None
    row.partial = None
    for name, codes in by_phase.items():
        row.notes.append(f"{name}: " + ", ".join(f"{c or 'none'}x{v}" for c, v in sorted(codes.items())))
    last = by_phase["after"]
    row.standard(outage=True)
    row.check("503 during the outage", by_phase["outage"].get(503, 0) > 0)
    row.check("recovered after it", sum(v for c, v in last.items() if 200 <= c < 300) > 0)


def cap_race(mode: str) -> Callable[[Suite, Row], None]:
    def scenario(suite: Suite, row: Row) -> None:
        """50 simultaneous POSTs for one key with an empty queue: exactly CAP accepted, the rest 429."""
        stack = suite.bare(mode)
        tally = Tally(row)
        name = f"race-{mode}"
        barrier = threading.Barrier(50)
        codes: list[int] = []

        def post(index: int) -> None:
            with stack.client(key(name), timeout_s=60) as client:
                # Not connected before the barrier: a kept-alive connection idle past uvicorn's 5 s
                # keep-alive (threads start slowly on loaded cores) is closed under the client. The
                # wait is long: at a load average of 27 on 2 cores, 50 threads took over 30 s to start.
                barrier.wait(timeout=120)
                response = tally.call(
                    client, "POST", "/synthesize", json={"pathology": "HCM", "n": 1, "seed": index}
                )
                codes.append(response.status_code if response is not None else 0)

        threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        row.tries = 50
        accepted = codes.count(202)
        row.notes.append(
            f"accepted {accepted} of 50 (cap {CAP}); "
            + ", ".join(f"{c}x{n}" for c, n in sorted(Counter(codes).items()))
        )
        row.lost = row.stuck = row.partial = None
        row.standard()
        row.check(f"accepted == cap ({CAP})", accepted == CAP)
        row.check("others 429", codes.count(429) == 50 - CAP)
        settle_queue(stack, key(name))

    return scenario


def oversized(suite: Suite, row: Row) -> None:
    """12 bodies of 10 MB (declared and chunked), 12 of 12 KB with a 12 KB subject name: 413 or 422,
    an answer of less than 2 KB (nothing echoed), and Redis grows by less than 1 MB."""
    stack = suite.bare("redis")
    assert stack.redis is not None
    tally = Tally(row)
    before = stack.redis.used_memory()
    big = json.dumps({"pathology": "HCM", "n": 1, "base_subjects": ["p" * 10_000_000]}).encode()
    small = json.dumps({"pathology": "HCM", "n": 1, "base_subjects": ["p" * 12_000]}).encode()
    refused, sizes = Counter[int](), []
    rounds = 4 if suite.quick else 12
    with stack.client(key("big"), timeout_s=60) as client:
        for _ in range(rounds):
            for label, content in (("declared", big), ("chunked", big), ("small", small)):
                headers = {"Content-Type": "application/json"}
                payload: Any = content
                if label == "chunked":
                    payload = (content[i : i + 65536] for i in range(0, len(content), 65536))
                response = tally.call(client, "POST", "/synthesize", content=payload, headers=headers)
                if response is not None:
                    refused[response.status_code] += 1
                    sizes.append(len(response.content))
    grown = stack.redis.used_memory() - before
    row.tries = 3 * rounds
    row.lost = row.stuck = row.partial = None
    row.notes.append("answers: " + ", ".join(f"{c}x{n}" for c, n in sorted(refused.items())))
    row.notes.append(f"largest answer {max(sizes, default=0)} B; Redis grew {grown / 1e6:.2f} MB")
    row.standard()
    row.check("all 413/422", sum(refused[c] for c in (413, 422)) == 3 * rounds)
    row.check("answers < 2 KB", max(sizes, default=0) < 2048)
    row.check("Redis growth < 1 MB", grown < 1_000_000)


def idempotent_full(mode: str) -> Callable[[Suite, Row], None]:
    def scenario(suite: Suite, row: Row) -> None:
        """A repeat of an accepted request with its Idempotency-Key while the key's queue is full:
        the first job again, not 429."""
        stack = suite.bare(mode)
        tally = Tally(row)
        name = f"idem-{mode}"
        body = {"pathology": "DCM", "n": 1, "seed": 7}
        with stack.client(key(name)) as client:
            first = submit(tally, client, body, headers={"Idempotency-Key": "chaos-retry-1"})
            for seed in range(CAP - 1):
                submit(tally, client, {"pathology": "DCM", "n": 1, "seed": 100 + seed})
            full = tally.call(client, "POST", "/synthesize", json={"pathology": "DCM", "n": 1, "seed": 99})
            retry = tally.call(
                client, "POST", "/synthesize", json=body, headers={"Idempotency-Key": "chaos-retry-1"}
            )
        row.tries = CAP + 2
        row.lost = row.stuck = row.partial = None
        retry_code = retry.status_code if retry is not None else 0
        same = retry is not None and retry.status_code < 300 and retry.json().get("id") == first
        row.notes.append(f"full queue -> {full.status_code if full else 'none'}; retry -> {retry_code}")
        row.standard()
        row.check("first accepted", first is not None)
        row.check("queue full -> 429", full is not None and full.status_code == 429)
        row.check("retry -> same job, not 429", same)
        settle_queue(stack, key(name))

    return scenario


def store_failure(suite: Suite, row: Row) -> None:
    """The embedded job store refuses writes (the SQLite file held locked by another process for
    35 s, past the store's own 30 s wait): writes answer 503, never 500; /readyz is not 200."""
    stack = suite.bare("embedded")
    tally = Tally(row)
    db_path = Path(stack.env["CARDIOSYNTH_JOB_STORE_URL"].removeprefix("sqlite:///"))
    with stack.client(key("store")) as client:
        existing = submit(tally, client, {"pathology": "RV", "n": 1})
    results: dict[str, int] = {}
    lock = sqlite3.connect(db_path, timeout=5, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        # A write transaction pending under WAL does not block readers; a second writer waits.
        lock.execute("UPDATE jobs SET updated = updated")

        def hit(label: str, method: str, path: str, **kwargs: Any) -> None:
            with stack.client(key("store"), timeout_s=70) as client:
                response = tally.call(client, method, path, **kwargs)
                results[label] = response.status_code if response is not None else 0

        calls = [
            ("POST /synthesize", "POST", "/synthesize", {"json": {"pathology": "RV", "n": 1, "seed": 3}}),
            ("DELETE /jobs/{id}", "DELETE", f"/jobs/{existing}", {}),
            ("GET /jobs/{id}", "GET", f"/jobs/{existing}", {}),
        ]
        threads = [
            threading.Thread(target=hit, args=(c[0], c[1], c[2]), kwargs=c[3], daemon=True) for c in calls
        ]
        for thread in threads:
            thread.start()
        time.sleep(2)
        ready = httpx.get(stack.url + "/readyz", timeout=40)
        results["GET /readyz"] = ready.status_code
        for thread in threads:
            thread.join(timeout=70)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    with stack.client(key("store")) as client:
        after = tally.call(client, "POST", "/synthesize", json={"pathology": "RV", "n": 1, "seed": 4})
    row.tries = len(results) + 2
    row.lost = row.stuck = row.partial = None
    row.notes.append("during the lock: " + ", ".join(f"{k} {v}" for k, v in results.items()))
    row.notes.append(f"after it: POST {after.status_code if after else 'none'}")
    row.standard(outage=True)
    row.check(
        "writes -> 503", results.get("POST /synthesize") == 503 and results.get("DELETE /jobs/{id}") == 503
    )
    row.check("readyz not 200", results.get("GET /readyz") != 200)
    row.check("recovered", after is not None and after.status_code == 202)
    settle_queue(stack, key("store"))


def readyz_busy(suite: Suite, row: Row) -> None:
    """/readyz probed every 0.3 s while each queue's only worker runs a job (the stack's first, which
    also loads the models): always 200."""
    stack = suite.full(warm=False)
    tally = Tally(row)
    probes: Counter[int] = Counter()
    with stack.client(key("ready")) as client:
        job_id = submit(tally, client, {"pathology": "DCM", "n": 4, "seed": 2})
        deadline = time.monotonic() + 180
        state = "queued"
        while job_id and state not in TERMINAL and time.monotonic() < deadline:
            job = job_state(tally, client, job_id)
            state = job["state"] if job else state
            if state == "running":
                ready = tally.call(client, "GET", "/readyz")
                probes[ready.status_code if ready is not None else 0] += 1
            time.sleep(0.3)
        row.tries = sum(probes.values())
        row.lost = int(state == "404")
        row.stuck = int(state not in TERMINAL and state != "404")
        row.partial = leftovers(stack, tally, client, job_id, state) if job_id else None
    row.notes.append(
        f"job {state}; probes while running: " + ", ".join(f"{c}x{n}" for c, n in sorted(probes.items()))
    )
    row.s503 -= probes.get(503, 0)  # counted below as the scenario's own target, not as an outage
    row.standard()
    row.check("job succeeded", state == "succeeded")
    row.check("probes while busy: 0 x 503", probes.get(503, 0) == 0 and row.tries > 0)


def error_details(suite: Suite, row: Row) -> None:
    """Two failing jobs (bad input: an unknown base subject; an internal error: the storage folder's
    ``jobs`` replaced by a file for a moment) and the gateway's own problems: no server paths,
    internal URLs or tracebacks in what a client reads."""
    stack = suite.full()
    tally = Tally(row)
    texts: dict[str, str] = {}
    ids: list[str] = []
    with stack.client(key("errors")) as client:
        bad = submit(tally, client, {"pathology": "HCM", "n": 1, "base_subjects": ["patient999"]})
        ids += [bad] if bad else []
        jobs = wait_jobs(tally, client, ids, 120)
        folder = stack.storage / "jobs"
        aside = stack.storage / "jobs.aside"
        folder.rename(aside)
        folder.write_text("not a folder")
        try:
            broken = submit(tally, client, {"pathology": "HCM", "n": 1, "seed": 3})
            ids += [broken] if broken else []
            jobs.update(wait_jobs(tally, client, [broken] if broken else [], 120))
        finally:
            folder.unlink()
            aside.rename(folder)
        for job_id in ids:
            texts[f"job {job_id[:6]}"] = json.dumps(jobs.get(job_id, {}).get("error"))
        for label, method, path, body in (
            ("404", "GET", "/jobs/0123", None),
            ("422", "POST", "/synthesize", {"pathology": "XX", "n": 0}),
            ("409", "GET", f"/jobs/{bad}/results", None),
            ("404 file", "GET", "/files/jobs/x/../../etc/passwd?expires=1&signature=x", None),
        ):
            response = tally.call(client, method, path, json=body)
            texts[label] = response.text if response is not None else ""
    leaks = {label: LEAKS.findall(text) for label, text in texts.items() if LEAKS.search(text)}
    row.tries = len(texts)
    outcome(row, jobs, ids)
    row.partial = sum(len(stack.job_files(i)) for i in ids)  # failed jobs leave nothing
    for job_id in ids:
        row.notes.append(f"job error: {(jobs.get(job_id, {}).get('error') or {}).get('detail')!r}"[:160])
    if leaks:
        row.notes.append(f"leaks: {leaks}"[:300])
    row.standard()
    row.check(
        "jobs failed with a reason",
        len(ids) == 2
        and all(
            jobs.get(i, {}).get("state") == "failed" and (jobs[i].get("error") or {}).get("detail")
            for i in ids
        ),
    )
    row.check("no paths, URLs or tracebacks", not leaks)


def spade_wait(suite: Suite, row: Row) -> None:
    """A job whose VAE stage is done waits for the SPADE queue (no SPADE worker) three times longer
    than the reaper's staleness limit (4 s here): it is not reaped, and succeeds once a SPADE worker
    comes."""
    stack = suite.full(row.mode)
    tally = Tally(row)
    stale = 4
    stack.stop_worker("spade")
    assert stack.gateway is not None
    stack.gateway.stop()
    stack.env["CARDIOSYNTH_HEARTBEAT_STALE_S"] = str(stale)
    stack.start_gateway()
    try:
        with stack.client(key("reaper")) as client:
            job_id = submit(tally, client, {"pathology": "NOR", "n": 1, "seed": 5})
            assert job_id is not None

            def vae_done() -> bool:
                job = job_state(tally, client, job_id)
                # The stage graph (issue 13): every chunk decoded; the two-stage chain: a VAE timing.
                decode = (job or {}).get("progress", {}).get("decode", {})
                decoded = decode.get("total", 0) > 0 and decode.get("done") == decode.get("total")
                vae = "vae" in (job or {}).get("timings", {})
                return job is not None and (vae or decoded or job["state"] in TERMINAL)

            wait_for(vae_done, 120, 0.3)
            time.sleep(3 * stale + 2)
            waiting = job_state(tally, client, job_id) or {}
            row.notes.append(f"after {3 * stale + 2} s waiting for SPADE: {waiting.get('state')}")
    finally:
        stack.gateway.stop()
        stack.env["CARDIOSYNTH_HEARTBEAT_STALE_S"] = str(STALE_S)
        stack.start_gateway()
        stack.start_worker("spade")
    with stack.client(key("reaper")) as client:
        jobs = wait_jobs(tally, client, [job_id], 120)
        state = jobs.get(job_id, {}).get("state", "")
        row.partial = leftovers(stack, tally, client, job_id, state)
    row.tries = 1
    outcome(row, jobs, [job_id])
    row.standard()
    row.check("not reaped while waiting", waiting.get("state") not in ("failed",))
    row.check("succeeded after", state == "succeeded")


def kill_worker(queue: str) -> Callable[[Suite, Row], None]:
    def scenario(suite: Suite, row: Row) -> None:
        """SIGKILL of the only worker of ``queue`` in the middle of its stage (VAE: while the job runs
        its first stage; SPADE: once its first output file is stored), a new worker started at once:
        the job succeeds within the redelivery bound, with exactly the files its results list."""
        stack = suite.full(row.mode)
        tally = Tally(row)
        body = {"pathology": "MINF", "n": 4, "seed": 11}
        with stack.client(key(f"kill{queue}")) as client:
            job_id, killed_at = None, None
            for attempt in range(3):
                row.tries = attempt + 1
                body["seed"] = 11 + attempt
                job_id = submit(tally, client, body)
                if job_id is None:
                    continue
                if queue == "vae":
                    hit = wait_for(
                        lambda jid=job_id: (
                            (job_state(tally, client, jid) or {}).get("state") in ("running", *TERMINAL)
                        ),
                        60,
                        0.05,
                    )
                    job = job_state(tally, client, job_id) or {}
                    mid = bool(hit) and job.get("state") == "running" and "vae" not in job.get("timings", {})
                else:
                    hit = wait_for(
                        lambda jid=job_id: outputs(stack, jid) or finished(tally, client, jid), 120, 0.02
                    )
                    job = job_state(tally, client, job_id) or {}
                    mid = bool(outputs(stack, job_id)) and job.get("state") == "running"
                if mid:
                    files_at_kill = len(stack.job_files(job_id))
                    stack.workers[queue].kill()
                    killed_at = time.monotonic()
                    stack.start_worker(queue)
                    row.notes.append(f"killed {queue} worker with {files_at_kill} files stored")
                    break
                row.notes.append(f"attempt {attempt + 1}: missed the stage ({job.get('state')})")
            if job_id is None or killed_at is None:
                raise RuntimeError("could not kill the worker mid-stage")
            jobs = wait_jobs(
                tally,
                client,
                [job_id],
                REDELIVERY_BOUND_S + 30,
            )
            took = time.monotonic() - killed_at
            state = jobs.get(job_id, {}).get("state", "")
            row.partial = leftovers(stack, tally, client, job_id, state)
            work = [k for k in stack.job_files(job_id) if "/work/" in k]
        outcome(row, jobs, [job_id])
        if state == "failed":
            row.notes.append(f"error: {(jobs[job_id].get('error') or {}).get('detail')}"[:120])
        row.notes.append(f"finished {took:.0f} s after the kill (bound {REDELIVERY_BOUND_S} s)")
        if work and state == "succeeded":
            row.notes.append("work file kept after success")
        row.standard()
        row.check("job succeeded", state == "succeeded")
        row.check("within the bound", took <= REDELIVERY_BOUND_S)

    return scenario


def cancel_spade(suite: Suite, row: Row) -> None:
    """Cancel once the SPADE stage has stored its first file: no file appears 2 s after the cancel,
    every file of the job is gone within 15 s (8 s with --quick), the SPADE worker takes the next job."""
    stack = suite.full(row.mode)
    tally = Tally(row)
    with stack.client(key("cancel")) as client:
        job_id = submit(tally, client, {"pathology": "DCM", "n": 6, "seed": 21})
        assert job_id is not None
        wait_for(lambda: outputs(stack, job_id) or finished(tally, client, job_id), 120, 0.02)
        at_cancel = set(stack.job_files(job_id))
        response = tally.call(client, "DELETE", f"/jobs/{job_id}")
        cancelled = time.monotonic()
        window = 8 if suite.quick else 15
        late: set[str] = set()
        while time.monotonic() - cancelled < window:
            now = set(stack.job_files(job_id))
            if time.monotonic() - cancelled > 2:
                late |= now - at_cancel
            time.sleep(0.1)
        left = stack.job_files(job_id)
        job = job_state(tally, client, job_id) or {}
        following = submit(tally, client, {"pathology": "DCM", "n": 1, "seed": 22})
        jobs = wait_jobs(tally, client, [following] if following else [], 90)
    row.tries = 1
    row.lost = int(job.get("state") == "404")
    outcome(row, jobs, [following] if following else [])
    row.partial = len(left)
    row.notes.append(
        f"{len(at_cancel)} files at the cancel, {len(late)} new after 2 s, {len(left)} left after {window} s"
    )
    row.standard()
    row.check("cancel -> 200", response is not None and response.status_code == 200)
    row.check("job cancelled", job.get("state") == "cancelled")
    row.check("no file written 2 s after", not late)
    row.check(
        "next job succeeded", following is not None and jobs.get(following, {}).get("state") == "succeeded"
    )


def redis_restart(persistent: bool) -> Callable[[Suite, Row], None]:
    def scenario(suite: Suite, row: Row) -> None:
        """Redis restarted while one job runs and two wait in the queue (with the append-only file, or
        with nothing on disk): every job finishes or is reported failed; none answers 404 for good or
        500."""
        stack = suite.full()
        assert stack.redis is not None
        tally = Tally(row)
        name = "restart" if persistent else "restart-np"
        with stack.client(key(name)) as client:
            ids = [
                submit(tally, client, {"pathology": "HCM", "n": 4 if i == 0 else 1, "seed": 30 + i})
                for i in range(3)
            ]
            accepted = [i for i in ids if i is not None]
            wait_for(lambda: (job_state(tally, client, accepted[0]) or {}).get("state") == "running", 60, 0.1)
            time.sleep(0.5)
            before = {i: (job_state(tally, client, i) or {}).get("state") for i in accepted}
            row.notes.append("before: " + ", ".join(sorted(str(s) for s in before.values())))
            stack.redis.stop()
            if not persistent:
                stack.redis.wipe()
            time.sleep(1)
            stack.redis.start(persistent=persistent)
            jobs = wait_jobs(tally, client, accepted, REDELIVERY_BOUND_S + 30)
            for job_id in accepted:
                state = jobs.get(job_id, {}).get("state", "")
                row.partial = (row.partial or 0) + (
                    leftovers(stack, tally, client, job_id, state) if state in TERMINAL else 0
                )
        row.tries = len(accepted)
        outcome(row, jobs, accepted)
        failed = [j.get("error", {}) for j in jobs.values() if j.get("state") == "failed"]
        if failed:
            row.notes.append(f"failed: {(failed[0] or {}).get('detail')}"[:120])
        if not persistent:
            row.notes.append("no persistence: outside the supported configuration (compose runs append-only)")
        row.standard()
        row.check("all finished", all(jobs.get(i, {}).get("state") in TERMINAL for i in accepted))
        if persistent:  # nothing was lost on disk: the jobs complete, none fails for the restart
            row.check("all succeeded", all(jobs.get(i, {}).get("state") == "succeeded" for i in accepted))

    return scenario


def up_restart(suite: Suite, row: Row) -> None:
    """``cardiosynth up`` stopped and started again on the same state folder: the first API key and
    the download links it gave still work."""
    up = suite.up()
    tally = Tally(row)
    first_key = up.start()
    with httpx.Client(base_url=up.url, headers={"X-API-Key": first_key}, timeout=30) as client:
        if not wait_for(lambda: client.get("/readyz").status_code == 200, 180, 0.5):
            raise RuntimeError("cardiosynth up was not ready in 180 s")
        job_id = submit(tally, client, {"pathology": "NOR", "n": 1, "seed": 40})
        jobs = wait_jobs(tally, client, [job_id] if job_id else [], 240)
        results = tally.call(client, "GET", f"/jobs/{job_id}/results")
        link = (
            results.json()["files"][0]["url"] if results is not None and results.status_code == 200 else None
        )
    up.stop()
    second_key = up.start()
    with httpx.Client(base_url=up.url, headers={"X-API-Key": first_key}, timeout=30) as client:
        wait_for(lambda: client.get("/healthz").status_code == 200, 60, 0.5)
        again = tally.call(client, "GET", f"/jobs/{job_id}")
        download = tally.call(client, "GET", link.removeprefix(up.url)) if link else None
        post = tally.call(client, "POST", "/synthesize", json={"pathology": "NOR", "n": 1, "seed": 41})
    # Where the key is kept in the state folder, only its owner may read it (0600).
    exposed = []
    for path in up.state.rglob("*"):
        top = path.relative_to(up.state).parts[0]
        small = path.is_file() and top not in ("storage", "broker", "logs") and path.stat().st_size < 1e6
        if small and first_key.encode() in path.read_bytes() and path.stat().st_mode & 0o077:
            exposed.append(f"{path.name} {oct(path.stat().st_mode & 0o777)}")
    row.tries = 1
    outcome(row, jobs, [job_id] if job_id else [])
    row.partial = None
    if exposed:
        row.notes.append(f"key readable by others: {exposed}")
    codes = {
        "job": again.status_code if again else 0,
        "link": download.status_code if download else 0,
        "post": post.status_code if post else 0,
    }
    row.notes.append(
        f"same key printed: {first_key == second_key}; with the first key after the restart: {codes}"
    )
    row.standard()
    row.check("first job succeeded", jobs.get(job_id or "", {}).get("state") == "succeeded")
    row.check("old key: job 200", codes["job"] == 200)
    row.check("old link: 200", codes["link"] == 200)
    row.check("old key: POST 202", codes["post"] == 202)
    row.check("stored key 0600", not exposed)


def up_worker_dies(suite: Suite, row: Row) -> None:
    """A worker of ``cardiosynth up`` SIGKILLed while idle: ``up`` keeps running, the stack is ready
    again and a job succeeds."""
    up = suite.up()
    if up.proc is None or not up.proc.alive():
        up.start()
    tally = Tally(row)
    children = wait_for(lambda: (lambda c: c if len(c) == 3 else None)(up.children()), 60, 0.5) or {}
    if "worker-vae" not in children:
        raise RuntimeError(f"no VAE worker among up's children: {children}")
    os.kill(children["worker-vae"], signal.SIGKILL)
    killed = time.monotonic()

    def up_alive() -> bool:
        return up.proc is not None and up.proc.alive()

    key_now = up.KEY.findall((up.state.parent / f"up-{up.starts}.log").read_text())[-1]
    state, ready = "", False
    with httpx.Client(base_url=up.url, headers={"X-API-Key": key_now}, timeout=30) as client:
        # Ready again (a new VAE worker answering), or ``up`` gone: whichever comes first.
        time.sleep(3)
        wait_for(lambda: not up_alive() or client.get("/readyz").status_code == 200, 120, 0.5)
        ready = up_alive() and client.get("/readyz").status_code == 200
        if up_alive():
            job_id = submit(tally, client, {"pathology": "NOR", "n": 1, "seed": 42})
            jobs = wait_jobs(tally, client, [job_id] if job_id else [], 180, alive=up_alive)
            state = jobs.get(job_id or "", {}).get("state", "")
            outcome(row, jobs, [job_id] if job_id else [])
    alive = up_alive()
    row.tries = 1
    row.partial = None
    row.notes.append(
        f"up alive {time.monotonic() - killed:.0f} s after the kill: {alive}; "
        f"ready again: {ready}; job: {state or '-'}"
    )
    row.standard()
    row.check("up still running", alive)
    row.check("job succeeded", state == "succeeded")


# name, mode, scenario, in --quick
SCENARIOS: list[tuple[str, str, Callable[[Suite, Row], None], bool]] = [
    ("cap_race", "redis", cap_race("redis"), True),
    ("cap_race", "embedded", cap_race("embedded"), True),
    ("oversized", "redis", oversized, True),
    ("idempotent_full", "redis", idempotent_full("redis"), True),
    ("idempotent_full", "embedded", idempotent_full("embedded"), True),
    ("redis_outage", "redis", redis_outage, True),
    ("store_failure", "embedded", store_failure, True),
    ("readyz_busy", "redis", readyz_busy, True),
    ("error_details", "redis", error_details, True),
    ("spade_wait", "redis", spade_wait, True),
    ("kill_vae", "redis", kill_worker("vae"), True),
    ("kill_spade", "redis", kill_worker("spade"), True),
    ("cancel_spade", "redis", cancel_spade, True),
    ("redis_restart", "redis+aof", redis_restart(True), True),
    ("redis_restart", "redis-nodisk", redis_restart(False), False),
    ("spade_wait", "embedded", spade_wait, False),
    ("kill_vae", "embedded", kill_worker("vae"), False),
    ("kill_spade", "embedded", kill_worker("spade"), False),
    ("cancel_spade", "embedded", cancel_spade, False),
    ("up_restart", "embedded", up_restart, False),
    ("up_worker_dies", "embedded", up_worker_dies, False),
]


def table(rows: list[Row]) -> str:
    def n(value: int | None) -> str:
        return "-" if value is None else str(value)

    head = (
        f"{'scenario':16s} {'mode':13s} {'tries':>5s} {'lost':>4s} {'stuck':>5s} {'partial':>7s} "
        f"{'500':>4s} {'503':>4s} {'5xx':>4s} {'dropped':>7s} {'s':>4s}  verdict"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.scenario:16s} {r.mode:13s} {r.tries:5d} {n(r.lost):>4s} {n(r.stuck):>5s} "
            f"{n(r.partial):>7s} {r.s500:4d} {r.s503:4d} {r.other5xx:4d} {r.dropped:7d} "
            f"{r.seconds:4.0f}  {r.verdict}"
        )
    lines.append("")
    for r in rows:
        failed = [name for name, ok in r.checks.items() if not ok]
        detail = f"  failed: {', '.join(failed)}" if failed else ""
        lines.append(f"{r.scenario} ({r.mode}): {r.verdict}{detail}")
        if r.error:
            lines.append(f"    error: {r.error}")
        for note in r.notes:
            lines.append(f"    {note}")
    return "\n".join(lines)


class AlarmError(Exception):
    """The run went past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def _raise(*_: object) -> None:
        raise AlarmError(f"the chaos suite ran past {seconds} s")

    # SIGTERM too: a stopped run still stops every process it started (the ``finally`` blocks).
    previous = signal.signal(signal.SIGALRM, _raise), signal.signal(signal.SIGTERM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def run(
    data: Path,
    *,
    quick: bool,
    only: list[str] | None = None,
    limit_s: int = 1200,
    keep: bool = False,
    root: Path | None = None,
) -> list[Row]:
    """Run the scenarios (all, the quick set, or those named in ``only``: ``name`` or ``name:mode``);
    return their rows. Everything lives under ``root`` (default: a new temporary folder, removed at
    the end unless ``keep``: logs and storage for a post-mortem)."""
    selected = [
        s
        for s in SCENARIOS
        if (only is None and (s[3] or not quick)) or (only and (s[0] in only or f"{s[0]}:{s[1]}" in only))
    ]
    tmp = root or Path(tempfile.mkdtemp(prefix="chaos-"))
    keep = keep or root is not None
    try:
        suite = Suite(tmp, data.resolve(), quick=quick)
        try:
            with time_limit(limit_s):
                for name, mode, scenario, _ in selected:
                    suite.run(name, mode, scenario)
        except AlarmError as exc:
            log.error("%s; stopping", exc)
            done = {(r.scenario, r.mode) for r in suite.rows}
            for name, mode, _, _ in selected:
                if (name, mode) not in done:
                    suite.rows.append(Row(name, mode, error=str(exc)))
        finally:
            suite.close()
        return suite.rows
    finally:
        if keep:
            log.info("kept %s", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="ACDC-layout data (a small phantom)")
    parser.add_argument("--quick", action="store_true", help="the quick set of scenarios")
    parser.add_argument("--only", default=None, help="comma-separated scenario names")
    parser.add_argument("--limit-s", type=int, default=1200, help="hard limit of the whole run")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.txt and OUT.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, storage)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    rows = run(
        args.data,
        quick=args.quick,
        only=args.only.split(",") if args.only else None,
        limit_s=args.limit_s,
        keep=args.keep,
    )
    text = table(rows)
    passed = sum(r.verdict == "PASS" for r in rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip()  # fmt: skip
    summary = (
        f"{passed} of {len(rows)} rows PASS in {time.monotonic() - started:.0f} s "
        f"({'--quick, ' if args.quick else ''}commit {commit or '?'}"
        f"{', code from ' + os.environ['PYTHONPATH'] if os.environ.get('PYTHONPATH') else ''}; "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n"
        f"settings: {' '.join(f'{k}={v}' for k, v in SETTINGS.items())}; redelivery bound "
        f"{REDELIVERY_BOUND_S} s"
    )
    print(text + "\n\n" + summary)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".txt").write_text(text + "\n\n" + summary + "\n")
        payload = {
            "rows": [r.to_json() for r in rows],
            "summary": summary,
            "settings": SETTINGS,
            "redelivery_bound_s": REDELIVERY_BOUND_S,
            "quick": args.quick,
        }
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
