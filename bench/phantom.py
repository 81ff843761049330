"""Phantom generator throughput: wall and CPU time of a full data set, printed as a table and JSON.

.venv/bin/python bench/phantom.py --subjects 100 --workers 1,2

For each worker count it writes the data set (phantom version ``--version``) and reports the wall
time, the CPU time of this process and its worker processes together (``resource.getrusage``,
what the generation costs whatever else runs on the machine), and the load average before and
after (the machine may be shared: wall time under load says little). The data sets written with
different worker counts are compared array by array (they must be identical), and ``--out``
keeps the last one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from cardiosynth.data.phantom import PHANTOM_CONTENT, PHANTOM_VERSION, generate_dataset, generate_subject
from cardiosynth.data.phantom.generator import group_for_index, write_subject


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its waited-for children (the pool's workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _content_digest(root: Path) -> str:
    """sha256 over every subject's arrays and ground truth, in file order (gzip headers aside)."""
    h = hashlib.sha256()
    for path in sorted((root / "training").rglob("*")):
        if path.name.endswith(".nii.gz"):
            array = np.asanyarray(nib.load(path).dataobj)
            h.update(f"{path.relative_to(root)} {array.dtype} {array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        elif path.name == "phantom.json":
            meta = json.loads(path.read_text(encoding="utf-8"))
            meta.pop("generator", None)  # the package version, not content
            h.update(json.dumps(meta, sort_keys=True).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument(
        "--workers", default=str(os.cpu_count() or 1), help="comma-separated worker counts (e.g. 1,2)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", type=int, default=PHANTOM_VERSION)
    parser.add_argument("--out", type=Path, default=None, help="keep the last data set here")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        # Per-stage cost on one subject of each group (one process).
        render = write = 0.0
        for i in range(5):
            index = i * (args.subjects // 5)
            t0 = time.process_time()
            subject = generate_subject(index, group_for_index(index, args.subjects), args.seed, args.version)
            t1 = time.process_time()
            write_subject(subject, Path(tmp) / "single")
            render += t1 - t0
            write += time.process_time() - t1

        runs = []
        digests = set()
        for workers in worker_counts:
            root = Path(tmp) / f"workers-{workers}"
            load_before = os.getloadavg()
            cpu0, t0 = _cpu_seconds(), time.perf_counter()
            generate_dataset(root, args.subjects, args.seed, workers=workers, version=args.version)
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds() - cpu0
            load_after = os.getloadavg()
            digest = _content_digest(root)
            digests.add(digest)
            runs.append(
                {
                    "workers": workers,
                    "wall_s": round(wall, 1),
                    "cpu_s": round(cpu, 1),
                    "load_1min_before": round(load_before[0], 1),
                    "load_1min_after": round(load_after[0], 1),
                    "content_sha256": digest[:16],
                }
            )
        if args.out is not None:
            if args.out.exists():
                shutil.rmtree(args.out)
            shutil.copytree(Path(tmp) / f"workers-{worker_counts[-1]}", args.out)

    result = {
        "subjects": args.subjects,
        "seed": args.seed,
        "phantom_version": args.version,
        "phantom_content": PHANTOM_CONTENT[args.version],
        "cpus": os.cpu_count(),
        "render_cpu_s_per_subject": round(render / 5, 3),
        "write_cpu_s_per_subject": round(write / 5, 3),
        "runs": runs,
        "identical_across_workers": len(digests) == 1,
    }
    for key, value in result.items():
        if key != "runs":
            print(f"{key.ljust(26)}  {value}")
    for run in runs:
        print("  ".join(f"{k} {v}" for k, v in run.items()))
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
