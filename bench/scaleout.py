"""Scale-out of one job over several workers (issue 13), on this machine's CPU with tiny models.

Two measurements, each on a stack of its own (a ``redis-server`` on a free port, local storage, real
Celery worker processes, solo pool, one thread each), jobs created in the job store and sent with the
service's dispatcher (the gateway is not what is measured here; bench/api.py measures it):

- ``split``: one job of ``--n`` subjects in chunks of ``--chunk`` over ``--vae`` VAE and ``--spade``
  SPADE workers. Per worker, the seconds of the graph tasks it ran (from the job's ``result.chunks``);
  per queue, how far the busiest worker is above the even share (``max / mean - 1``); the job's wall
  time (submit -> ``succeeded`` seen) and its orchestration overhead, ``wall - busiest worker's
  seconds``, as a share of wall.
- ``drain``: ``--jobs`` jobs of n = 1 queued at once, drained by the workers: every job terminal,
  none lost (a record not terminal by the deadline), none with duplicated or missing outputs (its
  stored files equal its result's files, each once).

Usage::

    nice -n 10 python bench/scaleout.py split --n 200 --chunk 10 --out reports/scaleout.txt
    nice -n 10 python bench/scaleout.py drain --jobs 1000 --out reports/scaleout_drain.txt
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cardiosynth.jobs.base import TERMINAL, JobState
from cardiosynth.jobs.celery_app import make_celery
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.jobs.store import RedisJobStore
from cardiosynth.workers.settings import WorkerSettings
from stack import PYTHON, Proc, RedisServer, wait_for

log = logging.getLogger("scaleout")
PHASES = ["ED", "ES"]


def _models(root: Path) -> Path:
    """The tests' tiny models (seed 0): seconds per subject on a CPU, not minutes."""
    import torch

    from cardiosynth.models.registry import save_model
    from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
    from cardiosynth.models.vae import LabelVAE, VAEConfig

    torch.manual_seed(0)
    save_model(LabelVAE(VAEConfig()).eval(), root / "vae" / "t0", kind="vae", version="t0")
    spade = SpadeTranslator(SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4))
    save_model(spade.eval(), root / "spade" / "t0", kind="spade", version="t0")
    return root


class Bench:
    """A redis-server, tiny models, a 5-subject phantom and the workers asked for."""

    def __init__(self, root: Path, chunk: int, vae: int, spade: int) -> None:
        from cardiosynth.data.phantom import generate_dataset

        self.root = root
        self.redis = RedisServer(root / "redis")
        self.redis.start(persistent=False)
        data = root / "phantom"
        generate_dataset(data, n_subjects=5, seed=0, workers=1)
        base = {k: v for k, v in os.environ.items() if not k.startswith("CARDIOSYNTH_")}
        self.env = {**base, "CARDIOSYNTH_REDIS_URL": self.redis.url, "CARDIOSYNTH_JOB_PREFIX": "bench",
                    "CARDIOSYNTH_STORAGE_DIR": str(root / "storage"), "CARDIOSYNTH_SIGNING_KEY": "b" * 32,
                    "CARDIOSYNTH_DATA_DIR": str(data),
                    "CARDIOSYNTH_MODEL_ROOT": str(_models(root / "models")),
                    "CARDIOSYNTH_CHUNK_SIZE": str(chunk), "CARDIOSYNTH_HEARTBEAT_S": "2",
                    "CARDIOSYNTH_DEVICE": "cpu", "XDG_CACHE_HOME": str(root / "cache"),
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
        self.storage = root / "storage"
        self.workers: list[Proc] = []
        for queue, count in (("vae", vae), ("spade", spade)):
            for i in range(count):
                name = f"{queue}{i + 1}@bench"
                cmd = [PYTHON, "-m", "celery", "-A", "cardiosynth.workers.tasks", "worker", "-Q", queue,
                       "--pool", "solo", "-n", name, "--loglevel", "INFO", "--without-gossip",
                       "--without-mingle"]  # fmt: skip
                self.workers.append(Proc(name, cmd, self.env, root / "logs" / f"{queue}{i + 1}.log"))
        self.store = RedisJobStore(self.redis.client(), prefix="bench")
        app = make_celery(WorkerSettings(redis_url=self.redis.url))
        self.dispatcher = CeleryDispatcher(app, self.store)
        want = {"vae": vae, "spade": spade}
        if not wait_for(lambda: self.dispatcher.workers() == want, 600, 0.5):
            raise RuntimeError(f"workers not live after 600 s: {self.dispatcher.workers()}")

    def submit(self, request: dict[str, Any]) -> str:
        job, _ = self.store.create("bench", request)
        self.dispatcher.submit(job.id, request)
        return job.id

    def outputs(self, job_id: str) -> list[str]:
        folder = self.storage / "jobs" / job_id
        return sorted(p.relative_to(self.storage).as_posix() for p in folder.rglob("*")
                      if p.is_file() and p.name != "manifest.json" and "work" not in p.parts)  # fmt: skip

    def close(self) -> None:
        for proc in self.workers:
            proc.stop()
        self.redis.stop()


def split(args: argparse.Namespace) -> list[str]:
    lines = [f"split: one job of n={args.n} in chunks of {args.chunk}, {args.vae} VAE + {args.spade} SPADE "
             "workers (solo pool, 1 thread each), tiny models, 5-subject phantom, CPU"]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        bench = Bench(Path(tmp), args.chunk, args.vae, args.spade)
        try:
            load0 = os.getloadavg()
            request = {"pathology": "HCM", "n": args.n, "seed": 0, "model": "t0", "phases": PHASES}
            started = time.time()
            job_id = bench.submit(request)
            done = wait_for(lambda: (j := bench.store.get(job_id)) is not None and j.state in TERMINAL and j,
                            args.timeout, 0.2)  # fmt: skip
            wall = time.time() - started
            load1 = os.getloadavg()
            if not done or done.state is not JobState.SUCCEEDED:
                lines.append(f"job {job_id} did not succeed: {done.state if done else 'timeout'}")
                return lines
            chunks = done.result["chunks"]
            per_worker: dict[str, dict[str, float]] = {}
            for c in chunks:
                w = per_worker.setdefault(c["worker"], {"seconds": 0.0, "tasks": 0})
                w["seconds"] += c["seconds"]
                w["tasks"] += 1
            lines.append(f"job wall (submit -> succeeded seen): {wall:.1f} s; job timings: "
                         + json.dumps({k: round(v, 1) for k, v in done.timings.items()}))  # fmt: skip
            lines.append("worker                 tasks   seconds")
            for name, w in sorted(per_worker.items()):
                lines.append(f"{name:22s} {int(w['tasks']):5d} {w['seconds']:9.1f}")
            for queue in ("vae", "spade"):
                secs = [w["seconds"] for n, w in per_worker.items() if n.startswith(queue)]
                mean = sum(secs) / len(secs)
                spread = (max(secs) - min(secs)) / mean
                lines.append(f"{queue}: busiest worker {max(secs) / mean - 1:+.1%} above the even share "
                             f"({len(secs)} workers, spread (max-min)/mean {spread:.1%})")  # fmt: skip
            busiest = max(w["seconds"] for w in per_worker.values())
            overhead = wall - busiest
            lines.append(f"orchestration overhead: wall {wall:.1f} s - busiest worker {busiest:.1f} s = "
                         f"{overhead:.1f} s = {overhead / wall:.1%} of wall")  # fmt: skip
            files = len(done.result["files"])
            lines.append(f"files: {files} in the result, {len(bench.outputs(job_id))} stored "
                         f"(expected {args.n * 2 * len(PHASES) + args.n * 2})")  # fmt: skip
            lines.append(f"load average (1/5/15 min) before {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
                         f"after {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} "
                         f"on {os.cpu_count()} CPUs")  # fmt: skip
        finally:
            bench.close()
    return lines


def drain(args: argparse.Namespace) -> list[str]:
    lines = [f"drain: {args.jobs} jobs of n=1 (phases {'/'.join(PHASES)}) queued at once, {args.vae} VAE + "
             f"{args.spade} SPADE workers (solo pool), tiny models, CPU"]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        bench = Bench(Path(tmp), args.chunk, args.vae, args.spade)
        try:
            load0 = os.getloadavg()
            started = time.time()
            ids = [bench.submit({"pathology": "DCM", "n": 1, "seed": i, "model": "t0", "phases": PHASES})
                   for i in range(args.jobs)]  # fmt: skip
            queued_s = time.time() - started

            def finished() -> bool:
                return all((j := bench.store.get(i)) is not None and j.state in TERMINAL for i in ids)

            wait_for(finished, args.timeout, 2.0)
            wall = time.time() - started
            load1 = os.getloadavg()
            states: dict[str, int] = {}
            lost, unfinished, duplicated, missing = [], [], [], []
            per_job = 2 * len(PHASES) + 2
            for job_id in ids:
                job = bench.store.get(job_id)
                state = job.state.value if job else "gone"
                states[state] = states.get(state, 0) + 1
                if job is None:
                    lost.append(job_id)
                    continue
                if job.state not in TERMINAL:
                    unfinished.append(job_id)
                    continue
                if job.state is JobState.SUCCEEDED:
                    keys = [f["key"] for f in job.result["files"]]
                    stored = bench.outputs(job_id)
                    if len(keys) != len(set(keys)) or len(keys) > per_job:
                        duplicated.append(job_id)
                    if sorted(set(keys)) != stored or len(keys) < per_job:
                        missing.append(job_id)
            terminal = args.jobs - len(unfinished) - len(lost)
            lines.append(f"queued {args.jobs} jobs in {queued_s:.1f} s; {terminal} terminal after "
                         f"{wall:.0f} s "
                         f"({terminal / wall:.2f} jobs/s; deadline {args.timeout:.0f} s)")  # fmt: skip
            lines.append(f"states: {json.dumps(states, sort_keys=True)}")
            lines.append(f"lost (record gone): {len(lost)}; not yet terminal at the deadline (queued or "
                         f"running, their records live): {len(unfinished)}")  # fmt: skip
            lines.append(f"duplicated outputs: {len(duplicated)}; "
                         f"missing or extra stored files: {len(missing)}")  # fmt: skip
            lines.append(f"load average (1/5/15 min) before {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
                         f"after {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} "
                         f"on {os.cpu_count()} CPUs")  # fmt: skip
        finally:
            bench.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["split", "drain"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--vae", type=int, default=2)
    parser.add_argument("--spade", type=int, default=2)
    parser.add_argument("--phases", default="ED,ES", help="phases per subject (ED,ES or ED)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    global PHASES
    PHASES = args.phases.split(",")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lines = split(args) if args.what == "split" else drain(args)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join([f"bench/scaleout.py {' '.join(sys.argv[1:])} ({stamp})", *lines]) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
