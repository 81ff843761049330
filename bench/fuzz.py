"""Fuzz every operation of the API over HTTP against a real embedded stack; count 5xx answers.

.venv/bin/cardiosynth phantom --out /tmp/chaos-phantom --subjects 10 --seed 0   # small data, once
.venv/bin/python bench/fuzz.py --data /tmp/chaos-phantom --requests 10000 --out reports/fuzz.txt
.venv/bin/python bench/fuzz.py --data /tmp/chaos-phantom --requests 300 --seed 1      # a quick look

Schemathesis explore mode: requests generated from the gateway's own OpenAPI schema (valid and
invalid bodies, parameters and headers), random per run unless ``--seed``, spread over every
operation round by round until ``--requests`` have been sent. The stack is the embedded mode's
(SQLite job store, filesystem broker, local storage, a gateway under uvicorn, a VAE and a SPADE
worker: ``/readyz`` can be 200), started by ``bench/stack.py`` on 127.0.0.1 and stopped after.

A third of the requests to a ``/jobs/{job_id}``-like path use the id of a job the fuzz created (so
cancels, purges, results and downloads of real jobs are reached, not only 404s); most requests carry
the first API key, some the second key or none. Queue cap and quotas are raised so that valid
submissions are accepted rather than refused at 429.

Counted: answers by status, 5xx by operation with an example, connections that got no HTTP answer,
and answers that do not conform to the documented schema. Target (issue 15): 0 5xx, 0 dropped.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import Stack

log = logging.getLogger("fuzz")

KEY_A, KEY_B = "fuzz-key-a-0123456789", "fuzz-key-b-0123456789"
SETTINGS = {
    "CARDIOSYNTH_MAX_QUEUED_PER_KEY": "100000",
    "CARDIOSYNTH_MAX_SUBJECTS_IN_FLIGHT_PER_KEY": "100000000",
}
ID_PARAMS = ("job_id", "dataset_id", "id")


class Tally:
    """What the fuzz saw."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.by_operation: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.dropped: list[str] = []
        self.nonconforming: Counter[str] = Counter()
        self.job_ids: list[str] = []

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + len(self.dropped)


def _headers(rng: random.Random) -> dict[str, str]:
    draw = rng.random()
    if draw < 0.9:
        return {"X-API-Key": KEY_A}
    if draw < 0.95:
        return {"Authorization": f"Bearer {KEY_B}"}
    return {}


def _one(case: Any, url: str, tally: Tally, rng: random.Random, session: requests.Session) -> None:
    """Send ``case`` (its job id swapped for a real one a third of the time) and record the answer."""
    label = f"{case.operation.method.upper()} {case.operation.path}"
    params = case.path_parameters or {}
    for name in ID_PARAMS:
        if name in params and tally.job_ids and rng.random() < 1 / 3:
            params[name] = rng.choice(tally.job_ids)
    try:
        response = case.call(base_url=url, session=session, headers=_headers(rng), timeout=60)
    except requests.RequestException as exc:  # no HTTP answer at all: a dropped connection
        tally.dropped.append(f"{label}: {type(exc).__name__}: {exc}"[:300])
        return
    tally.statuses[response.status_code] += 1
    tally.by_operation[label] += 1
    if response.status_code >= 500:
        tally.server_errors.append(f"{label} -> {response.status_code}: {response.text[:200]!r}")
    if response.status_code == 202:
        with_id = re.search(r'"id"\s*:\s*"([0-9a-f]{32})"', response.text)
        if with_id:
            tally.job_ids.append(with_id.group(1))
    try:
        case.validate_response(response, checks=[response_schema_conformance])
    except Exception as exc:  # a conformance failure is recorded, not fatal: the count is the result
        tally.nonconforming[f"{label} {response.status_code}: {type(exc).__name__}"] += 1


def fuzz(url: str, total: int, seed: int | None, per_round: int) -> Tally:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    log.info(
        "%d operations: %s", len(operations), ", ".join(f"{o.method.upper()} {o.path}" for o in operations)
    )
    tally, rng, session = Tally(), random.Random(seed), requests.Session()
    rounds = 0
    while tally.sent < total:
        rounds += 1
        before = tally.sent
        for operation in operations:
            budget = min(per_round, total - tally.sent)
            if budget <= 0:
                break

            @given(case=operation.as_strategy())
            @settings(
                max_examples=budget,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=False,
            )
            def send(case: Any) -> None:
                _one(case, url, tally, rng, session)

            if seed is not None:  # one seed per round and operation: reproducible with --seed
                send = _seeded(send, rng.randrange(2**32))
            send()
        log.info("round %d: %d requests (%d in all), 5xx %d", rounds, tally.sent - before, tally.sent,
                 len(tally.server_errors))  # fmt: skip
    return tally


def _seeded(test: Any, seed: int) -> Any:
    from hypothesis import seed as hypothesis_seed

    return hypothesis_seed(seed)(test)


def report(tally: Tally, args: argparse.Namespace, seconds: float, commit: str) -> str:
    five = sum(n for s, n in tally.statuses.items() if s >= 500)
    lines = [
        f"bench/fuzz.py --requests {args.requests}"
        + (f" --seed {args.seed}" if args.seed is not None else ""),
        f"commit {commit}; embedded stack (gateway under uvicorn, SQLite, filesystem broker, "
        f"{'no workers' if args.no_workers else 'a VAE and a SPADE worker'}) on 127.0.0.1; {seconds:.0f} s",
        f"requests sent: {tally.sent}; answered: {sum(tally.statuses.values())}; dropped (no HTTP answer): "
        f"{len(tally.dropped)}; 5xx: {five} (target 0)",
        "answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items())),
        "requests by operation:",
        *(f"  {op}: {n}" for op, n in sorted(tally.by_operation.items())),
        f"jobs created by the fuzz: {len(tally.job_ids)}",
        "answers that do not conform to the documented schema: "
        + (", ".join(f"{k} x{n}" for k, n in tally.nonconforming.most_common()) or "none"),
    ]
    if tally.server_errors:
        lines += ["5xx examples:", *(f"  {e}" for e in tally.server_errors[:20])]
    if tally.dropped:
        lines += ["dropped examples:", *(f"  {e}" for e in tally.dropped[:20])]
    verdict = "PASS" if five == 0 and not tally.dropped else "FAIL"
    lines.append(f"{verdict}: {five} 5xx and {len(tally.dropped)} dropped over {tally.sent} requests")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="ACDC-layout data for the workers")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=50, help="examples per operation and round")
    parser.add_argument("--seed", type=int, default=None, help="reproducible run (default: random)")
    parser.add_argument("--no-workers", action="store_true", help="gateway only (/readyz then 503)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("hypothesis").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cs-fuzz-") as tmp:
        stack = Stack(Path(tmp), mode="embedded", data=args.data, keys=[KEY_A, KEY_B], settings=SETTINGS)
        try:
            # The code the stack runs is the tree as it was when it started: name that commit.
            git = ["git", "rev-parse", "--short", "HEAD"]
            commit = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
            stack.start_gateway()
            if not args.no_workers:
                stack.start_worker("vae")
                stack.start_worker("spade")
                if not stack.wait_ready(240):
                    raise RuntimeError("the stack did not become ready")
            started = time.perf_counter()
            tally = fuzz(stack.url, args.requests, args.seed, args.per_round)
            text = report(tally, args, time.perf_counter() - started, commit)
            if stack.gateway is not None and not stack.gateway.alive():
                text += f"the gateway died during the fuzz:\n{stack.gateway.tail()}\n"
        finally:
            stack.close()
    sys.stdout.write(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0 if text.rstrip().splitlines()[-1].startswith("PASS") else 1


if __name__ == "__main__":
    sys.exit(main())
