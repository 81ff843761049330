"""Peak memory of each worker kind of the stage graph, for the request shapes that stress memory.

nice -n 10 .venv/bin/python bench/memory.py --data /tmp/ph100 --out rows.jsonl   # 50x1:5000 16x20:250 200x1
nice -n 10 .venv/bin/python bench/memory.py --data /tmp/ph100 --shape 2x2:40      # a quick look

A job runs as the stage graph of :mod:`cardiosynth.workers.graph`: ``stats`` and one VAE task per chunk
on the VAE queue, one SPADE task per chunk and ``finalize`` on the SPADE queue. Each worker kind runs in
a fresh Python process of its own that plays one warm worker of its queue handling every task of the
job in sequence, as a single worker of that queue would: the models of its kind are loaded first (what
a warm worker holds before any job), then each task body runs as Celery would call it (``RUNNERS``,
without a broker), over a SQLite job store and local storage under a temporary folder, with the shipped
default models. ``VmHWM`` (from ``/proc/self/status``) is reset before each task (``/proc/self/clear_refs``
5), so each task's peak is its own, and the process's peak is the largest of them and of the loading.
A run counts only if the job ends ``succeeded``, the manifest is stored and every file the job records
is stored with the size it records; otherwise the bench says which shape failed.

``--shape NxK:M``: then the parts that grow with ``n`` rather than with the chunk (the fan-in ledger,
the chunk records finalize reads, the manifest and the job record with every file, the gateway's
results and manifest reads), measured at ``n = M`` itself without synthesising it: the first subject
of the measured job, as stored, is replicated to every subject of every chunk of an ``M``-subject job
(subject names and keys renamed, each file stored as an empty placeholder, since finalize checks keys,
not contents). Then ``finalize`` runs in a fresh process, and the gateway's reads in another.

``--table rows.jsonl``: print the table again from the rows a run appended with ``--out``.
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
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("memory")

TARGET_MB = 4096.0
BENCH_KEY = "memory-bench-key-0123456789"


def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field!r} in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    """``VmHWM`` := ``VmRSS`` (Linux >= 4.0), so the next reading is the peak of what runs next."""
    Path("/proc/self/clear_refs").write_text("5")


def _environment(state: Path, data: Path, chunk_size: int | None) -> dict[str, str]:
    env = {
        **os.environ,
        "CARDIOSYNTH_JOB_STORE_URL": f"sqlite:///{state / 'jobs.db'}",
        "CARDIOSYNTH_STORAGE": "local",
        "CARDIOSYNTH_STORAGE_DIR": str(state / "storage"),
        "CARDIOSYNTH_SIGNING_KEY": "memory-bench-signing-key-0123456789",
        "CARDIOSYNTH_DATA_DIR": str(data),
        "CARDIOSYNTH_DEVICE": "cpu",
        "XDG_CACHE_HOME": str(state / "cache"),  # nothing cached from an earlier run
    }
    if chunk_size is not None:
        env["CARDIOSYNTH_CHUNK_SIZE"] = str(chunk_size)
    return env


# -- the children: one worker kind each, in a fresh process -------------------------------------------


def _run_tasks(
    job_id: str, first: list[tuple[str, int]], mine: set[str], worker: str
) -> list[dict[str, Any]]:
    """Run ``first`` and every task they send of the kinds in ``mine``, in order, one at a time; the
    peak, start RSS and seconds of each."""
    from celery import signals

    import cardiosynth.workers.tasks  # noqa: F401  (connects the worker's own signal handlers)
    from cardiosynth.workers import graph

    pending = deque(first)
    sent: list[tuple[str, int]] = []

    def send(kind: str, job: str, index: int) -> None:
        (pending if kind in mine else sent).append((kind, index))

    rows = []
    while pending:
        kind, index = pending.popleft()
        start_mb = _status_mb("VmRSS")
        _reset_peak()
        started = time.perf_counter()
        graph.RUNNERS[kind](job_id, index, send=send, worker=worker)
        if os.environ.get("CS_MEMORY_NO_POSTRUN") != "1":  # what Celery sends after every task
            signals.task_postrun.send(sender=None, task_id=f"{kind}-{index}", task=None)
        rows.append({"kind": kind, "index": index, "start_mb": round(start_mb, 1),
                     "peak_mb": round(_status_mb("VmHWM"), 1),
                     "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
    log.info("%s sent %d tasks to the other queue", worker, len(sent))
    return rows


def child(kind: str, job_id: str, model: str) -> dict[str, Any]:
    """One worker of queue ``kind`` (vae: stats + every VAE chunk; spade: every SPADE chunk, then
    finalize, which runs on the SPADE queue; finalize: finalize alone, without models)."""
    from cardiosynth.workers import runtime

    started = time.perf_counter()
    if kind != "finalize":
        runtime.synthesizer(model, True, kind == "spade")  # what a warm worker holds before any job
    load_peak, models_mb = _status_mb("VmHWM"), _status_mb("VmRSS")
    if kind == "vae":
        tasks = _run_tasks(job_id, [("stats", 0)], {"stats", "vae"}, "bench-vae")
    elif kind == "spade":
        graph = runtime.jobs().graph(job_id)
        if graph is None:
            raise ValueError(f"job {job_id} has no chunk plan: run its VAE worker first")
        first = [("spade", i) for i in range(graph.plan.count)]
        tasks = _run_tasks(job_id, first, {"spade", "finalize"}, "bench-spade")
    else:
        tasks = _run_tasks(job_id, [("finalize", 0)], {"finalize"}, "bench-finalize")
    return {
        "worker": kind,
        "models_mb": round(models_mb, 1),
        "load_peak_mb": round(load_peak, 1),
        "peak_mb": round(max([load_peak] + [t["peak_mb"] for t in tasks]), 1),
        "seconds": round(time.perf_counter() - started, 1),
        "tasks": tasks,
    }


def _spawn(state: Path, data: Path, chunk_size: int | None, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        env=_environment(state, data, chunk_size),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _verify(state: Path, job_id: str) -> dict[str, Any]:
    """The job succeeded, its manifest is stored and every file it records is stored at its size."""
    from cardiosynth.jobs.base import JobState
    from cardiosynth.jobs.sqlite_store import SqliteJobStore

    job = SqliteJobStore(state / "jobs.db").get(job_id)
    if job is None or job.state is not JobState.SUCCEEDED or job.result is None:
        raise RuntimeError(
            f"job {job_id} ended {job.state.value if job else 'gone'}: {job.error if job else ''}"
        )
    root = state / "storage"
    files = job.result["files"]
    wrong = [
        f["key"]
        for f in files
        if not (root / f["key"]).is_file() or (root / f["key"]).stat().st_size != f["size"]
    ]
    if wrong or not (root / "jobs" / job_id / "manifest.json").is_file():
        raise RuntimeError(
            f"job {job_id}: {len(wrong)} of {len(files)} files not stored as recorded: {wrong[:3]}"
        )
    return {"files": len(files), "stored_mb": round(sum(f["size"] for f in files) / 2**20, 1),
            "subjects": len({f["subject"] for f in files})}  # fmt: skip


def _request(n: int, steps: int, model: str, pathology: str) -> dict[str, Any]:
    request: dict[str, Any] = {"pathology": pathology, "n": n, "model": model, "seed": 0}
    if steps > 1:
        request["trajectory"] = steps
    return request


def measure(
    n: int,
    steps: int,
    data: Path,
    model: str,
    pathology: str,
    chunk_size: int | None,
    scale_to: int | None,
    vae_only: bool = False,
) -> list[dict[str, Any]]:
    """One job ``n`` x ``steps``: its VAE worker, then its SPADE worker (chunks + finalize); with
    ``scale_to``, then the per-job parts of a ``scale_to``-subject job made from it (:func:`scale`)."""
    from cardiosynth.jobs.base import owner_id, subject_weight
    from cardiosynth.jobs.sqlite_store import SqliteJobStore

    request = _request(n, steps, model, pathology)
    with tempfile.TemporaryDirectory(prefix="cs-memory-") as tmp:
        state = Path(tmp)
        job, _ = SqliteJobStore(state / "jobs.db").create(
            owner_id(BENCH_KEY), request, weight=subject_weight(request)
        )
        kinds = ("vae",) if vae_only else ("vae", "spade")
        workers = [_spawn(state, data, chunk_size, "--child", kind, "--job", job.id, "--model", model)
                   for kind in kinds]  # fmt: skip
        if vae_only:  # the VAE worker's drift over many chunks; the job is left unfinished
            return [{"n": n, "steps": steps, "request": request, "workers": workers, "vae_only": True,
                     "files": 0, "stored_mb": 0.0}]  # fmt: skip
        results = [{"n": n, "steps": steps, "request": request, "workers": workers, **_verify(state, job.id)}]
        if scale_to is not None:
            results.append(scale(state, data, job.id, scale_to, chunk_size))
    return results


# -- the per-job parts at a large n ---------------------------------------------------------------------


def build_scale(job_id: str, n: int) -> dict[str, Any]:
    """Turn the finished one-chunk job ``job_id`` into the stored state of an ``n``-subject job just
    before finalize: its chunk record replicated to every chunk, renamed, each file an empty
    placeholder, every SPADE chunk finished in the fan-in ledger. Returns the new job's id."""
    import copy

    from cardiosynth.jobs.base import ChunkPlan, owner_id, subject_weight
    from cardiosynth.workers import graph, runtime

    jobs, store = runtime.jobs(), runtime.storage()
    real = jobs.get(job_id)
    if real is None or real.result is None:
        raise ValueError(f"job {job_id} has no result to replicate")
    files = real.result["files"]
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        by_subject.setdefault(f["subject"], []).append(f)
    template_name, template = sorted(by_subject.items())[0]
    biomarkers = real.result["biomarkers"][template_name]
    request = {**real.request, "n": n}
    job, _ = jobs.create(owner_id(BENCH_KEY), request, weight=subject_weight(request))
    plan = jobs.plan_chunks(job.id, ChunkPlan.of(n, runtime.settings().chunk_size))
    if plan is None:
        raise ValueError(f"job {job.id} refused its plan")
    prefix = template_name.rsplit("_", 1)[0]  # HCM_000 -> HCM
    for chunk in range(plan.count):
        record: dict[str, Any] = {"chunk": chunk, "files": [], "biomarkers": {}}
        for i in plan.bounds(chunk):
            name = f"{prefix}_{i:04d}"
            for f in template:
                g = copy.deepcopy(f)
                g["subject"] = name
                g["key"] = f["key"].replace(job_id, job.id).replace(template_name, name)
                record["files"].append(g)
                store.put_bytes(g["key"], b"")
            record["biomarkers"][name] = copy.deepcopy(biomarkers)
        store.put_bytes(graph.spade_work_key(job.id, chunk), json.dumps(record).encode())
        for kind in ("stats", "vae", "spade") if chunk == 0 else ("vae", "spade"):
            index = 0 if kind == "stats" else chunk
            token = f"bench:{os.getpid()}:scale"
            if jobs.take_chunk(job.id, kind, index, token, 30.0) != "taken":
                raise ValueError(f"job {job.id}: {kind} chunk {index} could not be taken")
            jobs.finish_chunk(job.id, kind, index, token, 0.0, "bench-scale")
    return {"job": job.id, "files": plan.subjects * len(template), "chunks": plan.count}


def gateway_reads(job_id: str) -> dict[str, Any]:
    """The gateway's reads of a succeeded job (GET /jobs/{id}, the first results page, the manifest),
    through the app over the same store, each with its own peak."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from cardiosynth.gateway.app import create_app
    from cardiosynth.gateway.settings import GatewaySettings
    from cardiosynth.workers import runtime

    class Dispatcher:  # the reads send nothing
        def submit(self, job_id: str, request: dict[str, Any]) -> None: ...
        def resume(self, job_id: str, stage: str) -> None: ...
        def cancel(self, job_id: str) -> None: ...
        def workers(self) -> dict[str, int]:
            return {"vae": 1, "spade": 1}

        def ping(self) -> None: ...

    settings = GatewaySettings(api_keys=SecretStr(BENCH_KEY), signing_key=SecretStr("s" * 32),
                               public_url="http://testserver")  # fmt: skip
    client = TestClient(create_app(settings, Dispatcher(), storage=runtime.storage()))
    rows: list[dict[str, Any]] = []
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/results", f"/jobs/{job_id}/manifest"):
        start_mb = _status_mb("VmRSS")
        _reset_peak()
        started = time.perf_counter()
        answer = client.get(path, headers={"X-API-Key": BENCH_KEY})
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        peak_mb, seconds = _status_mb("VmHWM"), time.perf_counter() - started
        rows.append({"kind": f"GET {path.replace(job_id, '{id}')}", "index": 0,
                     "start_mb": round(start_mb, 1), "peak_mb": round(peak_mb, 1),
                     "seconds": round(seconds, 2), "bytes": len(answer.content)})  # fmt: skip
    return {"worker": "gateway", "models_mb": 0.0, "peak_mb": max(r["peak_mb"] for r in rows), "tasks": rows}


def scale(state: Path, data: Path, real_id: str, n: int, chunk_size: int | None) -> dict[str, Any]:
    """finalize and the gateway's reads of an ``n``-subject job built from the measured job ``real_id``."""
    from cardiosynth.jobs.sqlite_store import SqliteJobStore

    built = _spawn(state, data, chunk_size, "--child", "build", "--job", real_id, "--n", str(n))
    fin = _spawn(state, data, chunk_size, "--child", "finalize", "--job", built["job"])
    job = SqliteJobStore(state / "jobs.db").get(built["job"])
    if job is None or job.state.value != "succeeded" or job.result is None:
        raise RuntimeError(
            f"scaled job ended {job.state.value if job else 'gone'}: {job.error if job else ''}"
        )
    if len(job.result["files"]) != built["files"]:
        raise RuntimeError(f"scaled job recorded {len(job.result['files'])} of {built['files']} files")
    record_mb = len(json.dumps(job.result).encode()) / 2**20
    manifest_mb = (state / "storage" / "jobs" / job.id / "manifest.json").stat().st_size / 2**20
    reads = _spawn(state, data, chunk_size, "--child", "gateway", "--job", job.id)
    return {"n": n, "steps": job.request.get("trajectory") or 1, "request": job.request, "scaled": True,
            "workers": [fin, reads], "files": built["files"], "chunks": built["chunks"],
            "record_mb": round(record_mb, 2), "manifest_mb": round(manifest_mb, 2), "stored_mb": 0.0,
            "subjects": n}  # fmt: skip


# -- the table ------------------------------------------------------------------------------------------

HEADER = (f"{'shape':>9} {'worker: tasks':>29} {'count':>5} {'base MiB':>8} {'peak MiB':>8} "
          f"{'task peak (+growth)':>19} {'first..last':>13} {'wall s':>7} {'files':>6} "
          f"{'stored MiB':>10}")  # fmt: skip


def rows_of(result: dict[str, Any]) -> list[str]:
    """Table lines of one shape: per worker process and kind of task it ran, the process's peak, the
    largest task peak (and its growth over the RSS the task started at), the first and last task's
    peaks (a peak that grew with every chunk would show here), the tasks' seconds. ``*``: a job built
    from the measured one (``--shape NxK:M``), whose files are placeholders."""
    shape = f"{result['n']} x {result['steps']}" + ("*" if result.get("scaled") else "")
    lines = []
    for w in result["workers"]:
        kinds: dict[str, list[dict[str, Any]]] = {}
        for t in w["tasks"]:
            kinds.setdefault(t["kind"], []).append(t)
        for kind, tasks in kinds.items():
            top = max(tasks, key=lambda t: t["peak_mb"])
            growth = top["peak_mb"] - top["start_mb"]
            name = f"{w['worker']}: {'chunks' if kind == w['worker'] else kind}"
            lines.append(
                f"{shape:>9} {name:>29} {len(tasks):>5} {w['models_mb']:>8.1f} {w['peak_mb']:>8.1f} "
                f"{top['peak_mb']:>9.1f} (+{growth:>6.1f}) "
                f"{tasks[0]['peak_mb']:>6.0f}..{tasks[-1]['peak_mb']:<5.0f} "
                f"{sum(t['seconds'] for t in tasks):>7.1f} {result['files']:>6} {result['stored_mb']:>10.1f}"
            )
    for w in result["workers"]:
        chunks = [t for t in w["tasks"] if t["kind"] == "vae"]
        if w["worker"] == "vae" and len(chunks) > 1:
            # RSS held between chunks: a warm worker that keeps freed memory climbs here.
            drift = (chunks[-1]["start_mb"] - chunks[0]["start_mb"]) / (len(chunks) - 1)
            # The first chunks also fill the base-subject cache (bounded); the last half is the drift
            # that would go on with n.
            half = chunks[len(chunks) // 2 :]
            late = (half[-1]["start_mb"] - half[0]["start_mb"]) / max(len(half) - 1, 1)
            lines.append(
                f"{'':>9} {'vae: RSS before each chunk':>29} "
                f"{chunks[0]['start_mb']:.0f}..{chunks[-1]['start_mb']:.0f} MiB over {len(chunks)} chunks "
                f"({drift:+.1f} MiB per chunk; last half {late:+.2f})"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None, help="ACDC-layout data (default: the phantom)")
    parser.add_argument("--model", default=None, help="model version (default: the shipped default)")
    parser.add_argument("--pathology", default="HCM")
    parser.add_argument("--chunk-size", type=int, default=None, help="default: the worker setting's default")
    parser.add_argument(
        "--shape",
        action="append",
        default=[],
        help="N x STEPS[:M], e.g. 16x20 or 50x1:5000 (M: then the per-job parts at n = M)",
    )
    parser.add_argument("--out", type=Path, default=None, help="append each shape's result as a JSON line")
    parser.add_argument(
        "--child", choices=("vae", "spade", "finalize", "build", "gateway"), help=argparse.SUPPRESS
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, default=None, help="print the table of an --out file")
    parser.add_argument(
        "--vae-only", action="store_true", help="run only the VAE worker (its drift over many chunks)"
    )
    args = parser.parse_args(argv)
    if args.table is not None:
        sys.stdout.write(HEADER + "\n")
        for line in args.table.read_text(encoding="utf-8").splitlines():
            sys.stdout.write("\n".join(rows_of(json.loads(line))) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    from cardiosynth.models.catalog import DEFAULT_VERSION

    model = args.model or DEFAULT_VERSION
    if args.child:
        if args.child == "build":
            answer = build_scale(args.job, args.n)
        elif args.child == "gateway":
            answer = gateway_reads(args.job)
        else:
            answer = child(args.child, args.job, model)
        sys.stdout.write(json.dumps(answer) + "\n")
        return 0

    from cardiosynth.data.default import default_data

    data = args.data or default_data()
    shapes = args.shape or ["50x1:5000", "16x20:250", "200x1"]
    print(f"data {data}, model {model}, pathology {args.pathology}, both phases, chunk size "
          f"{args.chunk_size or 'default'}; peak = VmHWM of the worker process; target {TARGET_MB:.0f} MiB",
          flush=True)  # fmt: skip
    print(HEADER, flush=True)
    worst, failed = 0.0, []
    for shape in shapes:
        size, _, to = shape.lower().partition(":")
        n, k = (int(x) for x in size.split("x"))
        try:
            results = measure(
                n, k, data, model, args.pathology, args.chunk_size, int(to) if to else None, args.vae_only
            )
        except (RuntimeError, ValueError) as exc:
            log.error("%s failed: %s", shape, exc)
            print(f"{shape:>11} FAILED: {str(exc).splitlines()[0]}", flush=True)
            failed.append(shape)
            continue
        for result in results:
            worst = max([worst] + [w["peak_mb"] for w in result["workers"]])
            print("\n".join(rows_of(result)), flush=True)
            if result.get("scaled"):
                print(f"{'':>11} job record (result JSON) {result['record_mb']} MiB, manifest "
                      f"{result['manifest_mb']} MiB, {result['chunks']} chunks", flush=True)  # fmt: skip
            if args.out is not None:
                with args.out.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(result) + "\n")
    verdict = "PASS" if worst <= TARGET_MB and not failed else "FAIL"
    print(f"worst peak {worst:.1f} MiB: {verdict} (target <= {TARGET_MB:.0f} MiB)"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
