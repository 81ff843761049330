"""Peak memory of a worker for the largest request the API accepts, stage by stage.

.venv/bin/python bench/memory.py                          # the largest requests: 10 x 20 and 100 x 2
.venv/bin/python bench/memory.py --shape 2x5 --data /tmp/chaos-phantom      # quick look

Each stage runs the worker's own task code (``cardiosynth.workers.tasks.vae_stage`` and
``spade_stage``, called in-process as Celery would, without a broker) in a fresh Python process of its
own, over a SQLite job store and local storage under a temporary folder, so its peak resident set
(``VmHWM``) is what one worker process of that queue holds for the job: interpreter, torch, the
models, the base subjects and the job's data. The job must end ``succeeded`` with every file stored.

The largest request is read from the API's own limits: ``n`` x severities at most
:data:`cardiosynth.gateway.schemas.MAX_SUBJECT_SEVERITIES` (the default per-key quota on subjects in
flight), both phases. The target of issue 15 is 4 GB per worker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("memory")

TARGET_MB = 4096.0


def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field!r} in /proc/self/status (Linux only)")


def _environment(state: Path, data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CARDIOSYNTH_JOB_STORE_URL": f"sqlite:///{state / 'jobs.db'}",
        "CARDIOSYNTH_STORAGE": "local",
        "CARDIOSYNTH_STORAGE_DIR": str(state / "storage"),
        "CARDIOSYNTH_SIGNING_KEY": "memory-bench-signing-key",
        "CARDIOSYNTH_DATA_DIR": str(data),
        "XDG_CACHE_HOME": str(state / "cache"),  # class statistics computed afresh, as on a new worker
    }


def child(stage: str, job_id: str, model: str) -> dict[str, Any]:
    """Run one stage of ``job_id`` in this process; its memory figures."""
    from cardiosynth.workers import runtime, tasks

    started = time.perf_counter()
    runtime.synthesizer(model, True, stage == "spade")  # what a warm worker holds before any job
    loaded_mb = _status_mb("VmRSS")
    task = tasks.vae_stage if stage == "vae" else tasks.spade_stage
    task(job_id)
    job = runtime.jobs().get(job_id)
    if job is None:
        raise ValueError(f"job {job_id} vanished during the {stage} stage")
    return {
        "stage": stage,
        "state": job.state.value,
        "at": job.stage,
        "error": job.error,
        "models_loaded_mb": round(loaded_mb, 1),
        "peak_mb": round(_status_mb("VmHWM"), 1),
        "seconds": round(time.perf_counter() - started, 1),
        "files": len((job.result or {}).get("files", [])),
    }


def measure(n: int, steps: int, data: Path, model: str, pathology: str) -> dict[str, Any]:
    """Both stages of one job ``n`` x ``steps``, each in a fresh process."""
    from cardiosynth.jobs.base import JobState, subject_weight
    from cardiosynth.jobs.sqlite_store import SqliteJobStore

    request: dict[str, Any] = {"pathology": pathology, "n": n, "model": model, "seed": 0}
    if steps > 1:
        request["trajectory"] = steps
    with tempfile.TemporaryDirectory(prefix="cs-memory-") as tmp:
        state = Path(tmp)
        store = SqliteJobStore(state / "jobs.db")
        job, _ = store.create("bench", request, weight=subject_weight(request))
        rows = []
        for stage in ("vae", "spade"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", stage, "--job", job.id, "--model", model],
                env=_environment(state, data),
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"{stage} stage of {n}x{steps} failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            log.info("%dx%d %s: %s", n, steps, stage, row)
            rows.append(row)
        final = store.get(job.id)
        if final is None or final.state is not JobState.SUCCEEDED:
            raise RuntimeError(f"job {n}x{steps} ended {final.state if final else 'gone'}: {rows}")
        stored = sum(f.stat().st_size for f in (state / "storage" / "jobs").rglob("*") if f.is_file())
    return {"n": n, "steps": steps, "request": request, "stages": rows, "stored_mb": round(stored / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None, help="ACDC-layout data (default: the phantom)")
    parser.add_argument("--model", default="phantom-v1")
    parser.add_argument("--pathology", default="HCM")
    parser.add_argument("--shape", action="append", default=None, help="N x STEPS, e.g. 10x20 (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--child", choices=("vae", "spade"), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.child:
        sys.stdout.write(json.dumps(child(args.child, args.job, args.model)) + "\n")
        return 0

    from cardiosynth.data.default import default_data
    from cardiosynth.gateway.schemas import MAX_SUBJECT_SEVERITIES

    data = args.data or default_data()
    largest = [(MAX_SUBJECT_SEVERITIES // 20, 20), (100, MAX_SUBJECT_SEVERITIES // 100)]
    shapes = [tuple(int(x) for x in s.lower().split("x")) for s in args.shape] if args.shape else largest
    results = [measure(n, k, data, args.model, args.pathology) for n, k in shapes]
    lines = [
        f"data {data}, model {args.model}, pathology {args.pathology}, both phases; peak = VmHWM of the "
        f"stage's worker process; target {TARGET_MB:.0f} MiB",
        f"{'request':>10} {'stage':>6} {'models MiB':>11} {'peak MiB':>9} {'s':>7} {'files':>6} "
        f"{'stored MiB':>11}",
    ]
    worst = 0.0
    for r in results:
        for s in r["stages"]:
            worst = max(worst, s["peak_mb"])
            lines.append(
                f"{r['n']:>5} x {r['steps']:<2} {s['stage']:>6} {s['models_loaded_mb']:>11.1f} "
                f"{s['peak_mb']:>9.1f} {s['seconds']:>7.1f} {s['files']:>6} {r['stored_mb']:>11.1f}"
            )
    verdict = "PASS" if worst <= TARGET_MB else "FAIL"
    lines.append(f"worst peak {worst:.1f} MiB: {verdict} (target <= {TARGET_MB:.0f} MiB)")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
