"""Phantom generator throughput: subjects per second for a full data set, printed as a table and JSON.

.venv/bin/python bench/phantom.py --subjects 100 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from cardiosynth.data.phantom import generate_dataset, generate_subject
from cardiosynth.data.phantom.generator import group_for_index, write_subject


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # Per-stage cost on one subject of each group (one process).
        render = write = 0.0
        for i in range(5):
            index = i * (args.subjects // 5)
            t0 = time.perf_counter()
            subject = generate_subject(index, group_for_index(index, args.subjects), args.seed)
            t1 = time.perf_counter()
            write_subject(subject, Path(tmp) / "single")
            t2 = time.perf_counter()
            render += t1 - t0
            write += t2 - t1
        t0 = time.perf_counter()
        generate_dataset(Path(tmp) / "all", args.subjects, args.seed, workers=args.workers)
        total = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (Path(tmp) / "all").rglob("*") if p.is_file())

    result = {
        "subjects": args.subjects,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "total_s": round(total, 2),
        "subjects_per_s": round(args.subjects / total, 2),
        "render_s_per_subject": round(render / 5, 3),
        "write_s_per_subject": round(write / 5, 3),
        "dataset_mb": round(size / 1e6, 1),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
